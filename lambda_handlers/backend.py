"""`LambdaBackend`: grade the engine's chunks with a deployed gradekit reward Lambda (`--backend lambda:ARN`).

Each chunk becomes Bedrock RFT events (the contract of `events.py`), split so that every synchronous invoke stays
under Lambda's 6 MB payload limit; the invokes run concurrently in threads (boto3 is synchronous), throttling and
transient failures are retried with exponential backoff and full jitter, and the per-sample responses are merged
back in order into one `BatchResult`. Failures become `other_error` rows, never exceptions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gradekit.graders import ERROR_FLAGS, BatchResult, Grader, GradingError, Multi
from gradekit.graders.errors import ErrorFlag
from gradekit.graders.results import SampleNotes
from gradekit.graders.safety import loads_json
from gradekit.graders.samples import SampleInput, output_form
from gradekit.runtime.retry import backoff_delay

__all__ = ["LambdaBackend", "to_bedrock_sample"]

#: Error codes worth another try: throttling, Lambda's own faults, a function still being set up or updated.
RETRYABLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "ServiceException",
        "ResourceConflictException",
        "ResourceNotReadyException",
        "EC2ThrottledException",
    }
)
#: Seconds one synchronous invoke may take: Lambda's 900 s maximum plus some slack.
READ_TIMEOUT = 910


def _answer_messages(sample: SampleInput) -> list[Any]:
    """The event's messages for a sample, of any form `make_sample` reads (and refused with its errors)."""
    form, answer, rest = output_form(sample)
    if form == "messages":
        return list(rest)
    if form == "completion":
        return [{**answer, "role": "assistant"}]
    message: dict[str, Any] = {"role": "assistant", "content": answer}
    if form == "sample" and rest.get("output_tools"):
        message["tool_calls"] = list(rest["output_tools"])
    return [message]


def to_bedrock_sample(sample: SampleInput, item: Mapping[str, Any] | None, id: str) -> dict[str, Any]:
    """The Bedrock RFT event sample for one row; `GradingError` when the sample cannot be one."""
    if isinstance(sample, GradingError):
        raise sample
    if item is not None and not isinstance(item, Mapping):
        raise GradingError("sample_parse_error", f"data row is a {type(item).__name__}, not an object")
    return {"id": id, "messages": _answer_messages(sample), "metadata": dict(item or {})}


def _region_of(spec: str) -> str | None:
    parts = spec.split(":")
    return parts[3] if spec.startswith("arn:") and len(parts) > 3 and parts[3] else None


def _make_client(spec: str, pool: int) -> Any:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise ValueError("the lambda backend needs boto3: pip install 'gradekit[lambda]'") from None
    # gradekit retries itself (with jitter, per sub-batch); botocore's own retries would multiply the attempts
    config = Config(
        max_pool_connections=pool,
        read_timeout=READ_TIMEOUT,
        connect_timeout=10,
        tcp_keepalive=True,
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    try:
        # boto3 honours AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL and the usual AWS settings by itself
        return boto3.client("lambda", region_name=_region_of(spec), config=config)
    except BotoCoreError as e:
        raise ValueError(f"cannot make a Lambda client for {spec}: {e} (set AWS_REGION or give a full ARN)") from None


class _Failed(Exception):
    """A sub-batch that got no usable response; the message says why."""


class LambdaBackend:
    """Grades chunks by invoking the deployed gradekit reward Lambda `spec` (a name or ARN, optionally qualified)."""

    def __init__(
        self,
        spec: str,
        grader: Grader,
        *,
        client: Any = None,
        max_payload_bytes: int = 5_500_000,
        max_retries: int = 8,
        base_delay: float = 0.2,
        max_delay: float = 20.0,
        max_workers: int = 64,
    ) -> None:
        if not spec:
            raise ValueError("the lambda backend needs a function: lambda:<function name or ARN>")
        if max_payload_bytes < 64 or max_retries < 0 or max_workers < 1:
            raise ValueError("max_payload_bytes must be at least 64, max_retries at least 0, max_workers at least 1")
        self.function = spec
        self.grader = grader
        self.max_payload_bytes = max_payload_bytes
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.client = client if client is not None else _make_client(spec, max_workers)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gradekit-lambda")
        self._sub_keys = list(grader.graders) if isinstance(grader, Multi) else []

    def close(self) -> None:
        """Stop the invoke threads (they also end with the interpreter)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def grade(self, grader: Grader, samples: list[SampleInput], items: list[Any]) -> BatchResult:
        """The chunk's results, in order, one per row; failures are flags, never exceptions."""
        start = time.perf_counter()
        n = len(samples)
        rewards = [0.0] * n
        notes: list[SampleNotes | None] = [None] * n
        subs: dict[str, list[float]] = {k: [0.0] * n for k in self._sub_keys}

        def fail(
            i: int, flag: ErrorFlag, message: str, detail: str | None = None, *, no_reward: bool | None = None
        ) -> None:
            note = notes[i] = SampleNotes()
            note.fail(grader.name, flag, message, detail, no_reward=no_reward)
            rewards[i] = 0.0
            for column in subs.values():
                column[i] = 0.0

        try:
            encoded: list[tuple[int, bytes]] = []
            for i, (sample, item) in enumerate(zip(samples, items, strict=True)):
                try:
                    body = json.dumps(to_bedrock_sample(sample, item, str(i)), separators=(",", ":"))
                except GradingError as e:
                    fail(i, e.flag, e.message, e.detail)
                    continue
                except (TypeError, ValueError) as e:
                    fail(i, "sample_parse_error", f"row cannot be sent to Lambda {self.function} as JSON: {e}")
                    continue
                part = body.encode()
                if len(part) + 2 > self.max_payload_bytes:
                    fail(
                        i,
                        "other_error",
                        f"row is {len(part)} bytes as a Lambda event, over the {self.max_payload_bytes}-byte "
                        f"invoke limit of the lambda backend ({self.function})",
                    )
                    continue
                encoded.append((i, part))
            batches = self._split(encoded)
            outcomes = await asyncio.gather(*(self._invoke([p for _, p in b]) for b in batches))
            for batch, outcome in zip(batches, outcomes, strict=True):
                if isinstance(outcome, str):  # the Lambda could not be invoked: the grading's fault, no reward
                    for i, _ in batch:
                        fail(i, "other_error", outcome, no_reward=True)
                    continue
                for i, _ in batch:
                    entry = outcome.get(str(i))
                    try:
                        rewards[i], notes[i], sub = self._merge(grader, entry)
                    except _Failed as e:
                        fail(i, "other_error", str(e))
                        continue
                    for key, column in subs.items():
                        column[i] = sub.get(key, 0.0)
        except Exception as e:  # grade() never raises: the whole chunk fails instead
            for i in range(n):
                if (note := notes[i]) is None or not note.failed:
                    fail(
                        i,
                        "other_error",
                        f"lambda backend ({self.function}) failed: {type(e).__name__}: {e}",
                        no_reward=True,
                    )
        return BatchResult(
            name=grader.name,
            type=grader.type,
            rewards=rewards,
            notes=notes,
            sub_rewards=subs,
            execution_time=time.perf_counter() - start,
        )

    def _split(self, encoded: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
        """Consecutive rows packed into sub-batches whose JSON array stays under `max_payload_bytes`."""
        batches: list[list[tuple[int, bytes]]] = []
        current: list[tuple[int, bytes]] = []
        size = 2  # the brackets
        for row in encoded:
            extra = len(row[1]) + (1 if current else 0)
            if current and size + extra > self.max_payload_bytes:
                batches.append(current)
                current, size = [], 2
                extra = len(row[1])
            current.append(row)
            size += extra
        if current:
            batches.append(current)
        return batches

    def _merge(self, grader: Grader, entry: Any) -> tuple[float, SampleNotes | None, dict[str, float]]:
        """Reward, notes and sub-rewards of one response entry."""
        if entry is None:
            raise _Failed(f"Lambda {self.function} returned no result for this row")
        score = entry.get("aggregate_reward_score")
        metrics = entry.get("metrics_list") or []
        if isinstance(score, bool) or not isinstance(score, int | float) or not isinstance(metrics, list):
            raise _Failed(f"Lambda {self.function} returned a malformed result for this row: {entry!r:.300}")
        sub: dict[str, float] = {}
        note: SampleNotes | None = None
        entries = [m for m in metrics if isinstance(m, Mapping)]
        # A gradekit Lambda marks a sample it gave no reward with a `no_reward` metric: whose fault its flags were
        # is what the Lambda decided, not what the flags alone would say.
        no_reward = any(m.get("type") == "Metric" and m.get("name") == "no_reward" and m.get("value") for m in entries)
        for metric in entries:
            name, value, kind = metric.get("name"), metric.get("value"), metric.get("type")
            if kind == "Reward" and name in self._sub_keys and isinstance(value, int | float):
                sub[name] = float(value)
            elif kind == "Metric" and name in ERROR_FLAGS and value:
                note = note or SampleNotes()
                message = f"{name} reported by Lambda {self.function} (its logs say why)"
                note.fail(grader.name, name, message, no_reward=no_reward)
        if no_reward:
            note = note or SampleNotes()
            note.skip(grader.name)  # no flag came with it: the grader did not apply
        return float(score), note, sub

    async def _invoke(self, parts: list[bytes]) -> dict[str, Any] | str:
        """The response entries by id of one sub-batch, or why there are none."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

        payload = b"[" + b",".join(parts) + b"]"
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                body, function_error = await loop.run_in_executor(self._pool, self._call, payload)
                break
            except ClientError as e:
                error = e.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                retry = code in RETRYABLE_CODES or status == 429 or status >= 500
                why = f"{code or status}: {error.get('Message') or e}"
            except (ConnectionError, HTTPClientError) as e:
                retry, why = True, f"{type(e).__name__}: {e}"
            except BotoCoreError as e:
                retry, why = False, f"{type(e).__name__}: {e}"
            if not retry or attempt >= self.max_retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                return f"invoking Lambda {self.function} failed{tries}: {why}"
            await asyncio.sleep(backoff_delay(attempt, base_delay=self.base_delay, max_delay=self.max_delay))
            attempt += 1
        if function_error:
            try:
                failure = loads_json(body.decode("utf-8", "replace"))
            except ValueError:
                failure = {}
            if not isinstance(failure, Mapping):
                failure = {}
            error_type = failure.get("errorType", function_error)
            message = failure.get("errorMessage") or body[:300].decode("utf-8", "replace")
            return f"Lambda {self.function} failed ({function_error}): {error_type}: {message}"
        try:
            out = loads_json(body.decode("utf-8", "replace"))
            if isinstance(out, Mapping) and "body" in out:  # `{"statusCode": 200, "body": "<JSON list>"}`
                out = loads_json(out["body"]) if isinstance(out["body"], str) else out["body"]
        except ValueError:
            return f"Lambda {self.function} returned a payload that is not JSON: {body[:200]!r}"
        if not isinstance(out, list):
            return f"Lambda {self.function} returned {type(out).__name__}, not a list of results: {body[:200]!r}"
        return {str(e["id"]): e for e in out if isinstance(e, Mapping) and "id" in e}

    def _call(self, payload: bytes) -> tuple[bytes, str | None]:
        """One synchronous invoke (runs in a worker thread): the response body and the function error, if any."""
        response = self.client.invoke(FunctionName=self.function, InvocationType="RequestResponse", Payload=payload)
        return response["Payload"].read(), response.get("FunctionError")
