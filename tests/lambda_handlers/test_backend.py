"""`LambdaBackend` with real boto3 against Lambda Invoke APIs on 127.0.0.1: one running the handler in this
process (throttling, payload splitting, function errors), one running the built bundle (`gradekit grade
--backend lambda:NAME` end to end)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from gradekit.graders import GradingError, make_sample, run_batch, validate
from gradekit.lambda_handlers import bedrock_reward_handler, parse_event
from gradekit.lambda_handlers.backend import LambdaBackend, to_bedrock_sample
from gradekit.runtime import engine
from gradekit.runtime.cli import main

from .bundles import EXAMPLES, REGION, SECURITY_GRADER, JsonPostServer, built_bundle
from .test_deploy import InvokeAPI

NAME = "reward"
DATA = EXAMPLES / "security_review" / "valid.jsonl"
SAMPLES = EXAMPLES / "security_review" / "samples.jsonl"
#: Most requests one in-process Invoke API answers; past it, a non-retryable error ends any runaway loop.
MAX_CALLS = 40
LAMBDA_ENTRY = EntryPoint("lambda", "gradekit.lambda_handlers.backend:LambdaBackend", engine.BACKENDS_GROUP)


pytestmark = pytest.mark.usefixtures("fake_aws")


def rows() -> tuple[list[Any], list[dict[str, Any]]]:
    """The security-review example: samples and data rows."""
    samples = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    items = [json.loads(line) for line in DATA.read_text().splitlines()]
    return samples, items


GRADER = validate(SECURITY_GRADER)
EXPECTED = run_batch(GRADER, *rows())


class Context:
    """The Lambda context the handler reads its deadline from."""

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class HandlerAPI(JsonPostServer):
    """The Lambda Invoke API running `bedrock_reward_handler(security_review)` in this process.

    The first `throttle` calls answer `error` (status, error type: a 429 throttle by default); a payload
    containing `fail_on` answers an Unhandled function error; the response leaves out the entry of id `drop`;
    `reply` replaces every successful response body.
    """

    def __init__(
        self,
        *,
        throttle: int = 0,
        fail_on: str | None = None,
        drop: str | None = None,
        error: tuple[int, str] = (429, "TooManyRequestsException"),
        reply: bytes | None = None,
    ) -> None:
        self.throttle, self.fail_on, self.drop, self.error, self.reply = throttle, fail_on, drop, error, reply
        self.calls: list[tuple[int, list[str]]] = []  # (status, ids) per request
        self.sizes: list[int] = []
        self._lock = threading.Lock()  # one invoke at a time: the handler's Powertools metrics are shared
        self._handler = bedrock_reward_handler(GRADER, service="gradekit-test-backend", namespace="test")
        self._start_server()

    def invoke(self, payload: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers of one invocation, as Lambda answers them."""
        with self._lock:
            event = json.loads(payload)
            ids = [s["id"] for s in event]
            self.sizes.append(len(payload))
            if len(self.calls) >= MAX_CALLS:
                self.calls.append((400, ids))
                return 400, b'{"Message": "too many calls"}', {"x-amzn-ErrorType": "InvalidRequestContentException"}
            if len(self.calls) < self.throttle:
                status, error_type = self.error
                self.calls.append((status, ids))
                return status, b'{"message": "Rate exceeded"}', {"x-amzn-ErrorType": error_type}
            self.calls.append((200, ids))
            if self.fail_on is not None and self.fail_on.encode() in payload:
                failure = {"errorType": "RuntimeError", "errorMessage": "boom", "stackTrace": []}
                return 200, json.dumps(failure).encode(), {"X-Amz-Function-Error": "Unhandled"}
            if self.reply is not None:
                return 200, self.reply, {}
            out = [r for r in self._handler(event, Context()) if r["id"] != self.drop]
            return 200, json.dumps(out).encode(), {}

    def respond(self, path: str, payload: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Every POST is an invocation of the one function."""
        return self.invoke(payload)


def lambda_client(url: str) -> Any:
    """A boto3 Lambda client on `url` with short timeouts and no retries of its own."""
    config = Config(read_timeout=30, connect_timeout=5, retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("lambda", endpoint_url=url, region_name=REGION, config=config)


def grade(api_url: str, samples: list[Any], items: list[Any], **options: Any) -> Any:
    """`LambdaBackend.grade` of one chunk (near-zero backoff: the tests count retries, not seconds)."""
    backend = LambdaBackend(NAME, GRADER, client=lambda_client(api_url), base_delay=0.001, max_delay=0.01, **options)
    try:
        return asyncio.run(backend.grade(GRADER, samples, items))
    finally:
        backend.close()


def flags(result: Any) -> list[list[str]]:
    """The fired flags, row by row."""
    return [result.error_flags(i) for i in range(len(result))]


# --- to_bedrock_sample ------------------------------------------------------------------------------------

CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
ITEM = {"messages": [{"role": "user", "content": "hi"}], "reference_answer": "42", "id": "row-7"}


@pytest.mark.parametrize(
    ("sample", "messages"),
    [
        ("The answer is 42", [{"role": "assistant", "content": "The answer is 42"}]),
        ({"output_text": "42"}, [{"role": "assistant", "content": "42"}]),
        (
            {"output_text": "", "output_tools": [CALL]},
            [{"role": "assistant", "content": "", "tool_calls": [CALL]}],
        ),
        (
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}]},
            [{"role": "assistant", "content": None, "tool_calls": [CALL]}],
        ),
        ({"role": "assistant", "content": "42"}, [{"role": "assistant", "content": "42"}]),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "42"}],
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "42"}],
        ),
    ],
)
def test_to_bedrock_sample_forms(sample: Any, messages: list[Any]) -> None:
    event_sample = to_bedrock_sample(sample, ITEM, "3")
    assert event_sample == {"id": "3", "messages": messages, "metadata": ITEM}
    # what the deployed handler rebuilds is what grading the original in this process sees
    (row,) = parse_event([json.loads(json.dumps(event_sample))])
    assert (row.id, row.item) == ("3", ITEM)
    rebuilt, original = make_sample(row.sample), make_sample(sample)
    assert (rebuilt["output_text"], rebuilt["output_json"], rebuilt["output_tools"]) == (
        original["output_text"],
        original["output_json"],
        original["output_tools"],
    )


@pytest.mark.parametrize(
    ("sample", "item", "flag", "message"),
    [
        (GradingError("sample_parse_error", "bad line 3"), None, "sample_parse_error", "bad line 3"),
        ({"output_text": 3}, None, "sample_parse_error", "`output_text` is not a string"),
        ({"choices": []}, None, "sample_parse_error", "no `choices[0]`"),
        ({"foo": 1}, None, "sample_parse_error", "neither `output_text` nor `choices`"),
        ([{"role": "user", "content": "q"}], None, "sample_parse_error", "no `assistant` message"),
        (7, None, "sample_parse_error", "cannot build a sample from int"),
        ("ok", [1], "sample_parse_error", "data row is a list"),
    ],
)
def test_to_bedrock_sample_rejects(sample: Any, item: Any, flag: str, message: str) -> None:
    with pytest.raises(GradingError, match=re.escape(message)) as caught:
        to_bedrock_sample(sample, item, "0")
    assert caught.value.flag == flag


def test_to_bedrock_sample_without_item() -> None:
    assert to_bedrock_sample("x", None, "0") == {
        "id": "0",
        "messages": [{"role": "assistant", "content": "x"}],
        "metadata": {},
    }


# --- LambdaBackend against the in-process handler ------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [(429, "TooManyRequestsException"), (500, "ServiceException"), (502, "ResourceNotReadyException")]
)
def test_throttled_and_failed_invokes_are_retried(error: tuple[int, str]) -> None:
    samples, items = rows()
    with HandlerAPI(throttle=3, error=error) as api:
        result = grade(api.url, samples, items)
    assert [status for status, _ in api.calls] == [error[0]] * 3 + [200]
    assert api.calls[-1][1] == [str(i) for i in range(24)]
    assert result.rewards == EXPECTED.rewards
    assert result.sub_rewards == EXPECTED.sub_rewards
    assert flags(result) == flags(EXPECTED)
    assert (result.name, result.type) == ("security_review", "multi")


def test_retries_run_out() -> None:
    samples, items = rows()
    with HandlerAPI(throttle=MAX_CALLS) as api:
        result = grade(api.url, samples[:2], items[:2], max_retries=2)
    assert [status for status, _ in api.calls] == [429, 429, 429]
    assert result.rewards == [0.0, 0.0] and flags(result) == [["other_error"], ["other_error"]]
    # a Lambda that could not be invoked is the grading's fault: no reward (docs/no-reward.md)
    assert result.rewards_or_none() == [None, None]
    details = result[0].metadata.scores["error_details"]
    assert details == {
        "security_review": {
            "flag": "other_error",
            "message": f"invoking Lambda {NAME} failed after 3 attempts: TooManyRequestsException: Rate exceeded",
        }
    }


def test_payload_is_split_and_merged_in_order() -> None:
    samples, items = rows()
    with HandlerAPI() as api:
        result = grade(api.url, samples, items, max_payload_bytes=3000)
    assert len(api.calls) > 3 and all(size <= 3000 for size in api.sizes)
    sent = [i for _, ids in api.calls for i in ids]
    assert sorted(sent, key=int) == [str(i) for i in range(24)]  # every row once, none twice
    assert result.rewards == EXPECTED.rewards
    assert result.sub_rewards == EXPECTED.sub_rewards


def test_function_error_fails_its_sub_batch_only() -> None:
    samples, items = rows()
    with HandlerAPI(fail_on="q005") as api:
        result = grade(api.url, samples, items, max_payload_bytes=1200)
    failed_ids = next(ids for _, ids in api.calls if "5" in ids)
    failed = [int(i) for i in failed_ids]
    assert 5 in failed and len(failed) < 24
    for i in range(24):
        if i in failed:
            assert (result.rewards[i], result.error_flags(i)) == (0.0, ["other_error"])
            message = result[i].metadata.scores["error_details"]["security_review"]["message"]
            assert message == f"Lambda {NAME} failed (Unhandled): RuntimeError: boom"
            assert result.no_reward(i) == "grading_error"
        else:
            assert (result.rewards[i], result.error_flags(i)) == (EXPECTED.rewards[i], EXPECTED.error_flags(i))


def test_a_deeply_nested_response_fails_its_rows_not_the_run() -> None:
    samples, items = rows()
    with HandlerAPI(reply=b"[" * 100_000) as api:
        result = grade(api.url, samples[:3], items[:3])
    assert result.rewards == [0.0] * 3 and [result.error_flags(i) for i in range(3)] == [["other_error"]] * 3
    message = result[0].metadata.scores["error_details"]["security_review"]["message"]
    assert message.startswith(f"Lambda {NAME} returned a payload that is not JSON")


def test_missing_result_and_local_errors() -> None:
    samples, items = rows()
    samples[1] = GradingError("sample_parse_error", "samples.jsonl:2: not JSON")
    samples[2] = [{"role": "user", "content": "no answer"}]
    items[3] = None  # no data row: still sent, graded with an empty item
    with HandlerAPI(drop="4") as api:
        result = grade(api.url, samples[:6], items[:6])
    assert api.calls == [(200, ["0", "3", "4", "5"])]
    assert flags(result)[:3] == [[], ["sample_parse_error"], ["sample_parse_error"]]
    assert result[1].metadata.scores["error_details"]["security_review"]["message"] == "samples.jsonl:2: not JSON"
    assert flags(result)[4] == ["other_error"]
    assert result[4].metadata.scores["error_details"]["security_review"]["message"] == (
        f"Lambda {NAME} returned no result for this row"
    )
    assert [result.rewards[i] for i in (0, 5)] == [EXPECTED.rewards[i] for i in (0, 5)]
    assert result.rewards[1:3] == [0.0, 0.0] and result.sub_rewards["compliant"][1] == 0.0


def test_remote_flags_come_back_as_flags() -> None:
    samples, items = rows()
    flagged = [i for i in range(24) if EXPECTED.error_flags(i)]
    assert flagged  # the example has rows with a missing explanation
    with HandlerAPI() as api:
        result = grade(api.url, [samples[i] for i in flagged], [items[i] for i in flagged])
    assert flags(result) == [EXPECTED.error_flags(i) for i in flagged]
    message = result[0].metadata.scores["error_details"]["security_review"]["message"]
    assert message == f"{flags(result)[0][0]} reported by Lambda {NAME} (its logs say why)"


def test_unreachable_endpoint_fails_every_row() -> None:
    with HandlerAPI() as api:
        url = api.url
    result = grade(url, ["a", "b"], [None, None], max_retries=1)
    assert flags(result) == [["other_error"], ["other_error"]]
    assert result.rewards_or_none() == [None, None]
    message = result[0].metadata.scores["error_details"]["security_review"]["message"]
    assert message.startswith(f"invoking Lambda {NAME} failed after 2 attempts: EndpointConnectionError")


def test_an_empty_chunk_makes_no_call() -> None:
    with HandlerAPI() as api:
        result = grade(api.url, [], [])
    assert (len(result), api.calls) == (0, [])


# --- gradekit grade --backend lambda:NAME with the built bundle ------------------------------------------------


@pytest.fixture
def lambda_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `lambda` backend entry point, whether or not the installed metadata has it yet."""
    real = engine.entry_points

    def entry_points(**select: Any) -> Any:
        found = real(**select)
        if select.get("group") == engine.BACKENDS_GROUP and not any(e.name == "lambda" for e in found):
            return [*found, LAMBDA_ENTRY]
        return found

    monkeypatch.setattr(engine, "entry_points", entry_points)


@pytest.mark.slow
def test_cli_grade_through_the_built_bundle(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lambda_entry_point: None,
) -> None:
    report = built_bundle("security311", tmp_path_factory)[1]
    out = tmp_path / "results.jsonl"
    with InvokeAPI({NAME: report.path}) as api:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", api.url)
        argv = ["grade", "--grader", str(SECURITY_GRADER), "--data", str(DATA), "--samples", str(SAMPLES)]
        argv += ["--out", str(out), "--backend", f"lambda:{NAME}", "--chunk-size", "8", "--concurrency", "3", "-q"]
        assert main(argv) == 0
    assert api.calls == [NAME] * 3
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in results] == list(range(24))
    assert [r["reward"] for r in results] == EXPECTED.rewards
    assert [r["sub_rewards"] for r in results] == [EXPECTED[i].sub_rewards for i in range(24)]
    assert [[f for f, on in r["metadata"]["errors"].items() if on is True] for r in results] == flags(EXPECTED)
    assert "security_review" in capsys.readouterr().out


def test_cli_unknown_function_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lambda_entry_point: None
) -> None:
    out = tmp_path / "results.jsonl"
    with InvokeAPI({}) as api:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", api.url)
        argv = ["grade", "--grader", str(SECURITY_GRADER), "--data", str(DATA), "--samples", str(SAMPLES)]
        assert main([*argv, "--out", str(out), "--backend", "lambda:missing", "--chunk-size", "24", "-q"]) == 1
    # every row failed alike: the run stops with the cause, and writes no failed row (--resume grades them later)
    assert capsys.readouterr().err == (
        "gradekit: error: --backend lambda:missing: the first 20 rows failed alike, so the run stopped: "
        "other_error: invoking Lambda missing failed: ResourceNotFoundException: Function not found: missing\n"
    )
    assert out.read_text() == ""


def test_a_no_reward_metric_comes_back_as_no_reward() -> None:
    # what a gradekit Lambda answers for a sample it gave no reward (lambda_handlers.handler.NO_REWARD_METRIC)
    reply = [
        {"id": "0", "aggregate_reward_score": 1.0, "metrics_list": []},
        {
            "id": "1",
            "aggregate_reward_score": 0.0,
            "metrics_list": [
                {"name": "unresponsive_reward_error", "value": 1.0, "type": "Metric"},
                {"name": "no_reward", "value": 1.0, "type": "Metric"},
            ],
        },
        {
            "id": "2",
            "aggregate_reward_score": 0.0,
            "metrics_list": [{"name": "no_reward", "value": 1.0, "type": "Metric"}],
        },
        {  # a judge that refused this sample's request: its flag, but a reward (0) the Lambda gave
            "id": "3",
            "aggregate_reward_score": 0.0,
            "metrics_list": [{"name": "model_grader_server_error", "value": 1.0, "type": "Metric"}],
        },
    ]
    with HandlerAPI(reply=json.dumps(reply).encode()) as api:
        result = grade(api.url, ["a", "b", "c", "d"], [None] * 4)
    # whose fault a flag was is what the Lambda decided (its no_reward metric), not what the flag alone says
    assert result.rewards_or_none() == [1.0, None, None, 0.0]
    assert [result.no_reward(i) for i in range(4)] == [None, "grading_error", "not_applicable", None]
    assert flags(result) == [[], ["unresponsive_reward_error"], [], ["model_grader_server_error"]]
