"""The reward handler against hostile events: non-finite ids, surrogates, deep nesting, deadlines, property tests.

Every answer must be strict JSON (`json.dumps(out, allow_nan=False)` and UTF-8 encoding succeed), with one
result per sample, whatever the event holds.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradekit.graders import Env, StringCheck, grader, validate
from gradekit.lambda_handlers import EventError, bedrock_reward_handler
from gradekit.lambda_handlers.events import MAX_SAMPLE_DEPTH, parse_event
from gradekit.lambda_handlers.handler import grades_in_process
from gradekit.runtime.jsonl import TOO_DEEP, clean_text
from gradekit.runtime.sandbox import SandboxPool

from ..values import deep_list
from .test_handler import Context

ANSWER = StringCheck(name="answer", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq")


def sample(id: Any, answer: Any = "yes", **extra: Any) -> dict[str, Any]:
    return {"id": id, "messages": [{"role": "assistant", "content": answer}], "answer": "yes", **extra}


def strict(out: list[dict[str, Any]]) -> Any:
    """The response as the Lambda runtime would send it: strict JSON, encodable as UTF-8."""
    text = json.dumps(out, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    return json.loads(text)


def flags(entry: dict[str, Any]) -> list[str]:
    return [m["name"] for m in entry["metrics_list"] if m["type"] == "Metric"]


def records(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines Powertools printed (log records and EMF metrics)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_non_finite_and_unprintable_ids_are_answered_as_null_with_sample_parse_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = bedrock_reward_handler(ANSWER, service="test-hostile-ids")
    event = [
        sample("ok"),
        sample(float("nan")),
        sample(float("inf")),
        sample(-math.inf),
        sample(10**5000),
        sample(["a", "list"]),
        sample(2.5),
        sample(7),
    ]
    out = strict(handler(event, Context()))
    assert [o["id"] for o in out] == ["ok", None, None, None, None, None, 2.5, 7]
    assert [o["aggregate_reward_score"] for o in out] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert [flags(o) for o in out] == [[], *[["sample_parse_error"]] * 5, [], []]
    warning = next(r for r in records(capsys.readouterr().out) if r.get("message") == "samples failed")
    assert [f["details"] for f in warning["failed"]] == [
        "sample 1 has a non-finite `id` (nan), which JSON cannot carry",
        "sample 2 has a non-finite `id` (inf), which JSON cannot carry",
        "sample 3 has a non-finite `id` (-inf), which JSON cannot carry",
        "sample 4 has an integer `id` too long to print",
        "sample 5 has an `id` of type list; expected a string or a number",
    ]


def test_surrogates_in_ids_answers_names_and_messages_keep_the_failure_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @grader(name="loud\ud800")
    def loud(sample: dict[str, Any]) -> float:
        if "raise" in sample["output_text"]:
            raise ValueError("bad \udc80 value")
        return 1.0

    handler = bedrock_reward_handler(loud, env=Env(), service="test-hostile-surrogates")
    out = strict(handler([sample("a\ud800"), sample("b", "raise \udfff"), sample("c", "fine \udfff")], Context()))
    assert [o["id"] for o in out] == ["a\ufffd", "b", "c"]
    assert [o["aggregate_reward_score"] for o in out] == [1.0, 0.0, 1.0]
    assert out[0]["metrics_list"][0] == {"name": "loud\ufffd", "value": 1.0, "type": "Reward"}
    assert flags(out[1]) == ["python_grader_runtime_error"]
    emitted = records(capsys.readouterr().out)
    warning = next(r for r in emitted if r.get("message") == "samples failed")  # the record was not dropped
    assert warning["failed"] == [
        {
            "sample_id": "b",
            "errors": ["python_grader_runtime_error"],
            "details": {"loud\ufffd": warning["failed"][0]["details"]["loud\ufffd"]},
        }
    ]
    assert "bad \ufffd value" in warning["failed"][0]["details"]["loud\ufffd"]
    emf = next(r for r in emitted if "_aws" in r)
    assert emf["errors.loud\ufffd.python_grader_runtime_error"] == [1.0]


def test_metric_names_over_cloudwatchs_limit_do_not_fail_the_batch(capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "n" * 400
    check = StringCheck(name=long_name, input="{{ sample.output_text }}", reference="{{ item.nope }}", operation="eq")
    out = strict(bedrock_reward_handler(check, service="test-hostile-metric-names")([sample("1")], Context()))
    assert flags(out[0]) == ["invalid_variable_error"]
    emf = next(r for r in records(capsys.readouterr().out) if "_aws" in r)
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"samples", "reward_mean", "no_reward_samples", f"errors.{long_name}"[:255]}


def test_a_deep_event_text_is_one_clear_error_and_deep_samples_are_flagged_rows() -> None:
    handler = bedrock_reward_handler(ANSWER, service="test-hostile-deep")
    with pytest.raises(EventError) as caught:
        handler("[" * 100_000 + "]" * 100_000, Context())
    assert str(caught.value) == f"the event is text but not JSON: {TOO_DEEP}"
    assert strict(handler(json.dumps([sample("t")]), Context()))[0]["aggregate_reward_score"] == 1.0
    event = [
        sample("deep-answer", deep_list(100_000)),
        sample("deep-item", "yes", reference_answer=deep_list(100_000)),
        sample("limit", "yes", reference_answer=deep_list(MAX_SAMPLE_DEPTH - 1)),
        sample("over", "yes", reference_answer=deep_list(MAX_SAMPLE_DEPTH)),
        sample("fine"),
    ]
    out = strict(handler(event, Context()))
    assert [o["id"] for o in out] == ["deep-answer", "deep-item", "limit", "over", "fine"]
    assert [flags(o) for o in out] == [["sample_parse_error"], ["sample_parse_error"], [], ["sample_parse_error"], []]
    assert [o["aggregate_reward_score"] for o in out] == [0.0, 0.0, 1.0, 0.0, 1.0]
    rows = parse_event(event)
    assert rows[3].sample.message == f"sample 3 nests deeper than {MAX_SAMPLE_DEPTH} levels"


def test_grades_in_process_decides_per_sample_grading() -> None:
    assert grades_in_process(ANSWER)

    @grader
    def fn(sample: dict[str, Any]) -> float:
        return 1.0

    assert not grades_in_process(fn)
    python = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0\n"}
    assert not grades_in_process(validate(python))
    similarity = {"type": "text_similarity", "name": "s", "input": "a", "reference": "b"}
    assert grades_in_process(validate({**similarity, "evaluation_metric": "fuzzy_match"}))
    assert not grades_in_process(validate({**similarity, "evaluation_metric": "cosine"}))
    multi = {"type": "multi", "name": "m", "calculate_output": "a + b", "graders": {"a": ANSWER}}
    assert grades_in_process(validate({**multi, "graders": {"a": ANSWER, "b": ANSWER}}))
    assert not grades_in_process(validate({**multi, "graders": {"a": ANSWER, "b": python}}))


def test_the_deadline_keeps_every_finished_sample_of_a_chunk() -> None:
    @grader
    async def waits(sample: dict[str, Any]) -> float:
        if "hang" in sample["output_text"]:
            await asyncio.Event().wait()  # never set: only the deadline ends it
        return 1.0

    # the default chunk size (64) would hold all four samples in one chunk
    handler = bedrock_reward_handler(waits, safety_margin=0.0, service="test-hostile-deadline")
    event = [sample(str(i), "hang" if i == 1 else "fast") for i in range(4)]
    out = strict(handler(event, Context(remaining_ms=500)))
    assert [o["aggregate_reward_score"] for o in out] == [1.0, 0.0, 1.0, 1.0]
    # the unfinished sample got no reward: its flag and the no_reward metric (docs/no-reward.md)
    assert [flags(o) for o in out] == [[], ["unresponsive_reward_error", "no_reward"], [], []]


SLEEPER = {
    "type": "python",
    "name": "sleeper",
    "source": (
        "import time\n"
        "def grade(sample, item):\n"
        "    if sample['output_text'] == 'hang':\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "    return 1.0\n"
    ),
}


def test_a_warm_container_grades_its_next_batch_after_a_deadline() -> None:
    # One worker: if the hung run kept it busy after its deadline, the second batch could not be graded.
    with SandboxPool(workers=1) as pool:
        handler = bedrock_reward_handler(SLEEPER, env=Env(python=pool), safety_margin=0.0, service="test-hostile-warm")
        first = strict(handler([sample("0", "done"), sample("1", "hang")], Context(remaining_ms=3000)))
        assert [o["aggregate_reward_score"] for o in first] == [1.0, 0.0]
        assert [flags(o) for o in first] == [[], ["unresponsive_reward_error", "no_reward"]]
        second = strict(handler([sample("2", "done"), sample("3", "done")], Context(remaining_ms=30_000)))
        assert [o["aggregate_reward_score"] for o in second] == [1.0, 1.0]
        assert [flags(o) for o in second] == [[], []]


# --- property tests --------------------------------------------------------------------------------------

TEXT = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "yes", "x" * 300])
# (integers over 4300 digits are built by `map`: hypothesis cannot print them in a strategy's repr)
HUGE = st.sampled_from([5000, -400]).map(lambda n: 10 ** abs(n) * (1 if n > 0 else -1))
NUMBER = st.integers() | st.floats() | st.sampled_from([math.nan, math.inf, -math.inf]) | HUGE
SCALAR = st.none() | st.booleans() | NUMBER | TEXT
JSONISH = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
DEEP = st.integers(min_value=100, max_value=3000).map(deep_list)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", 7]), "content": TEXT | JSONISH | DEEP}
)
SAMPLE = st.one_of(
    JSONISH,
    DEEP,
    st.fixed_dictionaries(
        {"id": SCALAR | JSONISH, "messages": st.lists(MESSAGE, max_size=3) | JSONISH},
        optional={"reference_answer": JSONISH | DEEP, "answer": TEXT, "metadata": JSONISH | DEEP},
    ),
)
HANDLER = bedrock_reward_handler(ANSWER, service="test-hostile-properties")


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(SAMPLE, max_size=5))
def test_arbitrary_events_answer_strict_json_one_result_per_sample(event: list[Any]) -> None:
    out = strict(HANDLER(event, Context()))
    assert len(out) == len(event)
    for raw, o in zip(event, out, strict=True):
        if isinstance(raw, dict) and raw.get("id") is None:  # no id: graded, and the result says so
            assert set(o) == {"aggregate_reward_score", "metrics_list"} and "missing_id" in flags(o)
            continue
        assert set(o) == {"id", "aggregate_reward_score", "metrics_list"}
        assert o["aggregate_reward_score"] in (0.0, 1.0)
        assert o["id"] == expected_id(raw.get("id") if isinstance(raw, dict) else None)
        if o["id"] is None:
            assert "sample_parse_error" in flags(o) and o["aggregate_reward_score"] == 0.0


def expected_id(raw_id: Any) -> Any:
    """What the response must echo for an id: strings cleaned, printable finite numbers as they are, else null."""
    if isinstance(raw_id, str):
        return clean_text(raw_id)
    if isinstance(raw_id, float):
        return raw_id if math.isfinite(raw_id) else None
    if isinstance(raw_id, int):
        return raw_id if abs(raw_id) < 10**4000 else None
    return None


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.fixed_dictionaries({"id": SCALAR.filter(lambda v: not isinstance(v, int) or abs(v) < 10**4000)})).map(
        json.dumps
    )  # NaN and Infinity as Python's json writes (and lenient parsers read) them
    | st.integers(min_value=1, max_value=100_000).map(lambda n: "[" * n + "]" * n)
    | st.binary(max_size=40)
    | TEXT
)
def test_arbitrary_event_text_answers_or_is_one_event_error(text: str | bytes) -> None:
    try:
        out = HANDLER(text, Context())
    except EventError as e:
        assert str(e).startswith(("the event is text but not JSON: ", "expected the Bedrock RFT event"))
    else:
        strict(out)
