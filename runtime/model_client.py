"""`OpenAIModelClient`: asks any OpenAI-compatible chat-completions endpoint to judge `score_model` and
`label_model` messages, with bounded concurrency, our own retries and an optional on-disk cache.

Retries: 429, 408, 5xx, timeouts and connection errors are retried up to `max_retries` times. The wait
before retry k (0-based) is the server's `Retry-After` / `retry-after-ms` when present (seconds or an HTTP
date), else full jitter `uniform(0, base_delay * 2**k)`; either is capped at `max_delay`. Other 4xx fail
at once. Every failure is that sample's `ModelGrade.error`; `grade` itself never raises.

Parsing: the judge is asked for `{"steps": [{"description", "conclusion"}], "result": ...}` through a strict
JSON-schema `response_format`. When the content is not that JSON (endpoints without structured outputs),
`parse_score` and `parse_label` document the fallbacks.

Cache: the key is a SHA-256 of the exact request (base URL, model, messages as sent, `response_format`,
sampling parameters); the value is the raw chat completion, so a hit makes no HTTP request and replays the
same verdict, model name and token usage.

The client owns one event loop in a background thread: `run_batch` starts a new loop per call, and an HTTP
connection pool (and an `asyncio.Semaphore`) must stay on one loop, so callers on any loop share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

try:  # openai >= 3.x is built on httpx2; older releases on httpx (same API for what is used here)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx  # type: ignore[no-redef]
import openai

from gradekit.graders.errors import GradingError
from gradekit.graders.executors import ModelGrade, format_exception
from gradekit.graders.safety import json_nesting_exceeds

from .retry import Retryable, backoff_delay, retry_after_seconds, retryable_status

if TYPE_CHECKING:
    from gradekit.graders.models import LabelModel, ScoreModel

__all__ = [
    "DEFAULT_BASE_URL",
    "PLACEHOLDER_API_KEY",
    "OpenAIModelClient",
    "chat_content",
    "chat_messages",
    "interpret",
    "label_instruction",
    "label_response_format",
    "parse_label",
    "parse_score",
    "score_instruction",
    "score_response_format",
    "usage_dict",
]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
#: The api key sent when none is configured: local OpenAI-compatible servers usually ignore it.
PLACEHOLDER_API_KEY: Final = "gradekit-no-api-key"
#: Plain-text answers longer than this are never read as a bare number (too likely to be prose).
MAX_PLAIN_SCORE_CHARS: Final = 200
_CACHE_VERSION: Final = 1

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)

_STEPS_SCHEMA: Final[dict[str, Any]] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
        "required": ["description", "conclusion"],
        "additionalProperties": False,
    },
}


async def _sleep(seconds: float) -> None:
    # A module-level indirection so tests can observe the backoff without waiting for it.
    await asyncio.sleep(seconds)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def score_response_format() -> dict[str, Any]:
    """The strict JSON-schema `response_format` of a `score_model` judge."""
    # "steps" comes first: structured outputs emit keys in schema order, so the judge reasons before scoring.
    schema = {
        "type": "object",
        "properties": {"steps": _STEPS_SCHEMA, "result": {"type": "number"}},
        "required": ["steps", "result"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "score_model_result", "strict": True, "schema": schema}}


def label_response_format(labels: Sequence[str]) -> dict[str, Any]:
    """The strict JSON-schema `response_format` of a `label_model` judge."""
    schema = {
        "type": "object",
        "properties": {"steps": _STEPS_SCHEMA, "result": {"type": "string", "enum": list(labels)}},
        "required": ["steps", "result"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "label_model_result", "strict": True, "schema": schema}}


def _fmt(x: float) -> str:
    return f"{x:g}"


def score_instruction(low: float, high: float) -> str:
    """The system instruction added to a `score_model` judge's messages."""
    return (
        'Respond with a JSON object {"steps": [{"description": "...", "conclusion": "..."}], "result": <number>}: '
        f"the steps of your reasoning, then your score as `result`, a number from {_fmt(low)} to {_fmt(high)} "
        "inclusive."
    )


def label_instruction(labels: Sequence[str]) -> str:
    """The system instruction added to a `label_model` judge's messages."""
    allowed = ", ".join(json.dumps(label) for label in labels)
    return (
        'Respond with a JSON object {"steps": [{"description": "...", "conclusion": "..."}], "result": "<label>"}: '
        f"the steps of your reasoning, then your verdict as `result`, exactly one of: {allowed}."
    )


def _chat_part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image":
        image = {"url": part.get("image_url", "")}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    return dict(part)  # input_audio, image_url, file: already in chat-completions form


def chat_content(content: Any) -> str | list[dict[str, Any]]:
    """A grader message's content (string, part or list of parts) as chat-completions content."""
    if isinstance(content, str):
        return content
    parts = [_chat_part(p) for p in (content if isinstance(content, list) else [content])]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def chat_messages(messages: Sequence[Mapping[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """The grader's rendered messages in chat-completions form, with `instruction` in the system message.

    The instruction is appended to a leading system/developer message with text content, else prepended as a
    system message of its own (some chat templates accept only one system message, and only first).
    """
    out = [{"role": m["role"], "content": chat_content(m["content"])} for m in messages]
    if out and out[0]["role"] in ("system", "developer") and isinstance(out[0]["content"], str):
        out[0]["content"] = f"{out[0]['content']}\n\n{instruction}" if out[0]["content"] else instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


# parsing


def _parse_error(message: str, content: str) -> GradingError:
    snippet = content if len(content) <= 200 else content[:200] + "..."
    return GradingError("model_grader_parse_error", f"{message}: {snippet!r}")


def _json_object(content: str) -> dict[str, Any] | None:
    """The judge's JSON object: the whole content (fences allowed), else the first object in it with "result"."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if json_nesting_exceeds(text):  # a sample can make the judge echo it: deep JSON must not reach the parser
        return None
    try:
        whole = json.loads(text)
    except ValueError:
        pass
    else:
        if isinstance(whole, dict):
            return whole
    decoder = json.JSONDecoder()
    for tries, m in enumerate(re.finditer(r"\{", text)):
        if tries >= 50:
            break
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and "result" in obj:
            return obj
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _steps(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def parse_score(content: str) -> tuple[float, list[Any]]:
    """A score judge's `(result, steps)` from its answer, or a `model_grader_parse_error`.

    Rules, in order: (1) the content, or the first JSON object in it that has a `result` key (Markdown fences
    allowed), is the answer, and its `result` must be a finite number (or a numeric string); (2) otherwise
    the content is plain text, accepted when it has no `{`, is at most `MAX_PLAIN_SCORE_CHARS` characters
    and holds exactly one number (`0.8`, `Score: 0.8`); `8/10` holds two and is rejected. No rescaling:
    the grader clips to its range.
    """
    obj = _json_object(content)
    if obj is not None:
        if "result" not in obj:
            raise _parse_error("judge JSON has no `result`", content)
        result = _number(obj["result"])
        if result is None:
            raise _parse_error("judge JSON `result` is not a finite number", content)
        return result, _steps(obj.get("steps"))
    text = content.strip()
    numbers = _NUMBER.findall(text)
    # Braces mean the judge tried JSON and broke it (truncated, invalid): its numbers are not a verdict.
    if len(text) <= MAX_PLAIN_SCORE_CHARS and len(numbers) == 1 and "{" not in text:
        result = _number(numbers[0])
        if result is not None:
            return result, []
    raise _parse_error("judge answer is neither the JSON verdict nor one unambiguous number", content)


def _match_label(value: Any, labels: Sequence[str]) -> str | None:
    if not isinstance(value, str):
        return None
    if value in labels:
        return value
    key = value.strip().casefold()
    found = [label for label in labels if label.strip().casefold() == key]
    return found[0] if len(found) == 1 else None


def parse_label(content: str, labels: Sequence[str]) -> tuple[str, list[Any]]:
    """A label judge's `(label, steps)` from its answer, or a `model_grader_parse_error`.

    Rules: (1) a JSON answer (as for `parse_score`) must have a `result` that is one of `labels`; (2) plain
    text must equal one label, ignoring case, surrounding whitespace and quotes, and a final full stop. The
    label returned is spelled as in `labels`.
    """
    obj = _json_object(content)
    if obj is not None:
        label = _match_label(obj.get("result"), labels)
        if label is None:
            raise _parse_error(f"judge JSON `result` is not one of the labels {list(labels)}", content)
        return label, _steps(obj.get("steps"))
    text = content.strip().removesuffix(".").strip().strip("\"'`").strip().removesuffix(".").strip()
    label = _match_label(text, labels)
    if label is None:
        raise _parse_error(f"judge answer is not one of the labels {list(labels)}", content)
    return label, []


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_dict(usage: Any) -> dict[str, int]:
    """Token counts of a completion's `usage`: prompt/completion/total, plus reasoning/cached tokens when reported."""
    out = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if (value := _count(_get(usage, key))) is not None:
            out[key] = value
    if (reasoning := _count(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))) is not None:
        out["reasoning_tokens"] = reasoning
    if (cached := _count(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))) is not None:
        out["cached_tokens"] = cached
    return out


def interpret(grader: ScoreModel | LabelModel, completion: dict[str, Any]) -> ModelGrade:
    """A `ModelGrade` from a judge's chat completion JSON (refusals and unparseable answers are errors)."""
    model = _get(completion, "model")
    model = model if isinstance(model, str) and model else None
    usage = usage_dict(_get(completion, "usage"))

    def failed(error: GradingError) -> ModelGrade:
        return ModelGrade(model=model, usage=usage, error=error)

    choices = _get(completion, "choices")
    if not isinstance(choices, list) or not choices or not isinstance(_get(choices[0], "message"), dict):
        text = json.dumps(completion)[:500]
        return failed(GradingError("model_grader_server_error", "judge response has no message", text))
    choice = choices[0]
    message = choice["message"]
    finish_reason = choice.get("finish_reason")
    refusal = message.get("refusal")
    if refusal:
        return failed(GradingError("model_grader_refusal_error", f"judge model refused: {refusal}"))
    if finish_reason == "content_filter":
        return failed(GradingError("model_grader_refusal_error", "judge response was stopped by the content filter"))
    content = message.get("content")
    content = content if isinstance(content, str) else ""
    truncated = " (cut off: finish_reason=length)" if finish_reason == "length" else ""
    if not content.strip():
        return failed(GradingError("model_grader_parse_error", f"judge returned no content{truncated}"))
    try:
        if grader.type == "label_model":
            label, steps = parse_label(content, grader.labels)  # type: ignore[union-attr]
            return ModelGrade(label=label, steps=steps, model=model, usage=usage)
        result, steps = parse_score(content)
        return ModelGrade(result=result, steps=steps, model=model, usage=usage)
    except GradingError as e:
        if truncated:
            e = GradingError(e.flag, e.message + truncated, e.detail)
        return failed(e)


# retries

#: Judge statuses that refuse the request one sample made (bad request, too large, unprocessable): reward 0.
SAMPLE_REFUSED = frozenset({400, 413, 422})


def _status_detail(e: openai.APIStatusError, url: str) -> str:
    request_id = f" (request id {e.request_id})" if e.request_id else ""
    return f"HTTP {e.status_code} from {url}{request_id}: {e.message}"


class _DiskCache:
    """Raw chat completions by request hash, one JSON file each (written atomically)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class OpenAIModelClient:
    """A `ModelClient` for any OpenAI-compatible chat-completions endpoint (see the module docstring)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        concurrency: int = 16,
        cache_dir: str | os.PathLike[str] | None = None,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        structured_output: bool = True,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.base_url = (base_url or _env("GRADEKIT_MODEL_BASE_URL", "OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.structured_output = structured_output
        cache = cache_dir if cache_dir is not None else _env("GRADEKIT_MODEL_CACHE_DIR")
        self.cache_dir = Path(cache) if cache is not None else None
        self._cache = _DiskCache(self.cache_dir) if self.cache_dir is not None else None
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or _env("GRADEKIT_MODEL_API_KEY", "OPENAI_API_KEY") or PLACEHOLDER_API_KEY,
            timeout=timeout,
            max_retries=0,  # ours: jittered backoff that also covers timeouts
            default_headers=default_headers,
            # The semaphore bounds connections in use; keep that many alive (the SDK's default keeps 100).
            http_client=openai.DefaultAsyncHttpxClient(
                timeout=timeout, limits=httpx.Limits(max_connections=None, max_keepalive_connections=concurrency)
            ),
        )
        self._semaphore = asyncio.Semaphore(concurrency)
        self._random = random.Random()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAIModelClient(base_url={self.base_url!r}, concurrency={self.concurrency})"

    # the loop thread

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("model client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._run_loop, args=(loop,), name="gradekit-model-client", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def grade(
        self, grader: ScoreModel | LabelModel, messages: Sequence[list[dict[str, Any]]]
    ) -> list[ModelGrade]:
        """One `ModelGrade` per message list, in order; failures are per-sample errors, never exceptions."""
        if not messages:
            return []
        try:
            loop = self._ensure_loop()
            work = self._grade_all(grader, list(messages))
            if asyncio.get_running_loop() is loop:
                return await work
            future = asyncio.run_coroutine_threadsafe(work, loop)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not future.cancelled() or (task is not None and task.cancelling()):
                    raise  # our caller was cancelled: pass it on
                raise RuntimeError("model client was closed while grading") from None
        except Exception as e:  # never raise: every sample carries the failure
            error = GradingError("model_grader_server_error", f"model client failed: {e}", format_exception(e))
            return [ModelGrade(error=error) for _ in messages]

    async def _grade_all(
        self, grader: ScoreModel | LabelModel, messages: list[list[dict[str, Any]]]
    ) -> list[ModelGrade]:
        body, instruction = self._request_template(grader)
        return await asyncio.gather(*(self._grade_one(grader, body, instruction, m) for m in messages))

    def _request_template(self, grader: ScoreModel | LabelModel) -> tuple[dict[str, Any], str]:
        """The request body shared by all samples (all but `messages`), and the judge instruction."""
        body: dict[str, Any] = {"model": grader.model}
        if grader.type == "label_model":
            if self.structured_output:
                body["response_format"] = label_response_format(grader.labels)  # type: ignore[union-attr]
            return body, label_instruction(grader.labels)  # type: ignore[union-attr]
        low, high = grader.range  # type: ignore[union-attr]
        if self.structured_output:
            body["response_format"] = score_response_format()
        params = grader.sampling_params  # type: ignore[union-attr]
        if params is not None:
            for name, value in (
                ("temperature", params.temperature),
                ("top_p", params.top_p),
                ("seed", params.seed),
                ("max_completion_tokens", params.max_completions_tokens),
                ("reasoning_effort", params.reasoning_effort),
            ):
                if value is not None:
                    body[name] = value
        return body, score_instruction(low, high)

    def cache_key(self, body: Mapping[str, Any]) -> str:
        """The cache key of one request body sent to this client's endpoint."""
        canonical = json.dumps(
            {"v": _CACHE_VERSION, "base_url": self.base_url, "request": body},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def _grade_one(
        self,
        grader: ScoreModel | LabelModel,
        template: dict[str, Any],
        instruction: str,
        messages: list[dict[str, Any]],
    ) -> ModelGrade:
        try:
            body = {**template, "messages": chat_messages(messages, instruction)}
            key = self.cache_key(body) if self._cache is not None else None
            cached = self._cache.get(key) if self._cache is not None and key is not None else None
            completion = cached if cached is not None else await self._create(body)
            if cached is None and self._cache is not None and key is not None:
                self._cache.put(key, completion)
            return interpret(grader, completion)
        except GradingError as e:
            return ModelGrade(error=e)
        except Exception as e:
            error = GradingError(
                "model_grader_server_error", f"judge request failed: {type(e).__name__}: {e}", format_exception(e)
            )
            return ModelGrade(error=error)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return backoff_delay(
            attempt, base_delay=self.base_delay, max_delay=self.max_delay, retry_after=retry_after, rng=self._random
        )

    async def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        attempts = self.max_retries + 1
        url = f"{self.base_url}/chat/completions"
        for attempt in range(attempts):
            try:
                return await self._attempt(body, url)
            except Retryable as e:
                if attempt + 1 == attempts:
                    raise GradingError(
                        "model_grader_server_error",
                        f"judge model request failed after {attempts} attempt(s): {e.summary}",
                        f"{e.detail} (after {attempts} attempt(s))",
                    ) from None
                await _sleep(self._backoff(attempt, e.retry_after))
        raise AssertionError("unreachable")

    async def _attempt(self, body: dict[str, Any], url: str) -> dict[str, Any]:
        """One HTTP request; the completion's JSON, or `Retryable` or a final `GradingError`."""
        try:
            async with self._semaphore, asyncio.timeout(self.timeout):
                # The SDK's generic `post`, returning the raw response: `chat.completions.create` would walk
                # every message through the SDK's TypedDicts and build a `ChatCompletion` model, which together
                # cost more CPU than the HTTP exchange itself; we read a few fields of the JSON instead.
                response = await self._client.post("/chat/completions", body=body, cast_to=httpx.Response)
        except openai.APIStatusError as e:
            detail = _status_detail(e, url)
            if retryable_status(e.status_code):
                wait = retry_after_seconds(e.response.headers)
                raise Retryable(f"HTTP {e.status_code}", detail, retry_after=wait) from None
            # The judge refused the request this sample made (too long for its context, say): the sample's fault,
            # reward 0, else a policy would escape grading by breaking the judge. Other statuses (401, 403, 404)
            # are the grading's (docs/no-reward.md).
            raise GradingError(
                "model_grader_server_error",
                f"judge model request failed: HTTP {e.status_code}",
                detail,
                no_reward=False if e.status_code in SAMPLE_REFUSED else None,
            ) from None
        except (openai.APITimeoutError, TimeoutError):
            raise Retryable(
                f"timed out after {_fmt(self.timeout)} s", f"request to {url} timed out after {_fmt(self.timeout)} s"
            ) from None
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            raise Retryable("connection error", f"cannot reach {url}: {type(cause).__name__}: {cause}") from None
        except openai.APIError as e:
            raise GradingError(
                "model_grader_server_error", f"judge model request failed: {e.message}", f"{url}: {e.message}"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise GradingError(
                "model_grader_server_error",
                "judge endpoint answered with something that is not a chat completion",
                f"HTTP {response.status_code} from {url}: {response.text[:500]!r}",
            )
        return data

    # lifecycle

    def close(self) -> None:
        """Close the HTTP client and stop the client's loop thread; later `grade` calls fail every sample."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("close() called from inside the model client's own loop")
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10.0)

    async def _shutdown(self) -> None:
        # Grading still under way is cancelled, so its callers see failed samples instead of waiting forever.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.close()

    async def aclose(self) -> None:
        """`close` without blocking the caller's event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> OpenAIModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAIModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
