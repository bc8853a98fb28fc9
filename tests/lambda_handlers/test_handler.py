"""The Bedrock RFT reward handler on real event shapes: right rewards, metrics and flags, never a failed batch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradekit.graders import Multi, StringCheck, grader
from gradekit.lambda_handlers import EventError, bedrock_reward_handler

EVENTS = Path(__file__).parent / "events"

COMPLIANT = Multi(
    name="security_review",
    graders={
        "compliant": StringCheck(
            name="compliant",
            input="{{ sample.output_json.compliant }}",
            reference="{{ item.reference_answer.compliant }}",
            operation="eq",
        ),
        "explained": StringCheck(
            name="explained", input="{{ sample.output_json.explanation }}", reference="", operation="like"
        ),
    },
    calculate_output="0.8 * compliant + 0.2 * explained",
)

ANSWER = StringCheck(
    name="answer",
    input="{{ sample.output_text }}",
    reference="The answer is {{ item.reference_answer }}",
    operation="like",
)


class Context:
    """The parts of the Lambda context object the handler reads."""

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000
        self.function_name = "reward"
        self.aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def test_nova_metadata_form(capsys: pytest.CaptureFixture[str]) -> None:
    # A service name of its own: Powertools binds a logger to the stdout of the first handler with that name.
    handler = bedrock_reward_handler(COMPLIANT, namespace="test", service="test-nova-form")
    out = handler(load("nova_metadata_form.json"), Context())
    assert [o["id"] for o in out] == ["123", "124"]
    assert out[0]["aggregate_reward_score"] == pytest.approx(1.0)
    assert out[0]["metrics_list"] == [
        {"name": "compliant", "value": 1.0, "type": "Reward"},
        {"name": "explained", "value": 1.0, "type": "Reward"},
    ]
    # sample 124: wrong label and no explanation -> the undefined variable fails the sample
    assert out[1]["aggregate_reward_score"] == 0.0
    assert {"name": "invalid_variable_error", "value": 1.0, "type": "Metric"} in out[1]["metrics_list"]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = next(e for e in emitted if "_aws" in e)
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "test"
    assert emf["samples"] == [2.0] and emf["reward_mean"] == [pytest.approx(0.5)]
    assert emf["errors.explained.invalid_variable_error"] == [1.0]
    warning = next(e for e in emitted if e.get("message") == "samples failed")
    assert [f["sample_id"] for f in warning["failed"]] == ["124"]
    assert warning["failed"][0]["errors"] == ["invalid_variable_error"]


@pytest.mark.parametrize("wrap", [lambda e: e, lambda e: {"trajectories": e}, lambda e: {"samples": e}])
def test_open_weight_top_level_form(wrap: Any) -> None:
    out = bedrock_reward_handler(ANSWER)(wrap(load("open_weight_top_level_form.json")), Context())
    assert [(o["id"], o["aggregate_reward_score"]) for o in out] == [("gsm8k-0", 1.0), ("gsm8k-1", 0.0)]


def test_item_holds_reference_answer_and_other_fields() -> None:
    seen: list[dict[str, Any]] = []

    @grader
    def spy(item: dict[str, Any]) -> float:
        seen.append(item)
        return 1.0

    bedrock_reward_handler(spy)(load("nova_metadata_form.json")[:1] + load("open_weight_top_level_form.json")[:1], None)
    assert seen[0] == {
        "reference_answer": {"compliant": "No", "explanation": "The company has no dedicated security team."},
        "my_key": "sample-001",
    }
    assert seen[1] == {"reference_answer": "72", "task_id": "gsm8k-0", "domain": "math"}


def test_bad_samples_never_fail_the_batch() -> None:
    good = load("open_weight_top_level_form.json")[0]
    event = [
        good,
        {k: v for k, v in good.items() if k != "id"},
        {"id": "no-answer", "messages": [{"role": "user", "content": "q"}], "reference_answer": "1"},
        {"id": "image", "messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": "x"}]}]},
        {"id": "huge", "messages": [{"role": "assistant", "content": "x" * 300_000}], "reference_answer": "1"},
        "not an object",
    ]
    out = bedrock_reward_handler(ANSWER)(event, Context())
    assert len(out) == 6
    assert out[0]["aggregate_reward_score"] == 1.0
    flags = [[m["name"] for m in o["metrics_list"] if m["type"] == "Metric"] for o in out]
    assert flags[1:] == [
        ["missing_id"],  # graded as usual, without an id in its result
        ["sample_parse_error"],
        ["sample_parse_error"],
        ["truncated_observation_error"],
        ["sample_parse_error"],
    ]
    assert out[1]["aggregate_reward_score"] == 1.0 and "id" not in out[1]
    assert all(o["aggregate_reward_score"] == 0.0 for o in out[2:])
    assert out[2]["id"] == "no-answer"


def test_not_an_event_is_one_clear_error() -> None:
    with pytest.raises(EventError, match="expected the Bedrock RFT event: a JSON list of samples"):
        bedrock_reward_handler(ANSWER)({"hello": "world"}, Context())


def test_deadline_marks_unfinished_samples_unresponsive() -> None:
    @grader
    async def slow(sample: dict[str, Any]) -> float:
        import asyncio

        if "slow" in sample["output_text"]:
            await asyncio.Event().wait()  # never set: only the deadline ends it
        return 1.0

    event = [
        {"id": str(i), "messages": [{"role": "assistant", "content": "slow" if i == 1 else "fast"}]} for i in range(4)
    ]
    out = bedrock_reward_handler(slow, safety_margin=0.0, chunk_size=1)(event, Context(remaining_ms=3000))
    assert [o["aggregate_reward_score"] for o in out] == [1.0, 0.0, 1.0, 1.0]
    # A sample the deadline cut off got no reward: 0.0 (Bedrock needs a number), its flag and the no_reward metric.
    assert out[1]["metrics_list"][-2:] == [
        {"name": "unresponsive_reward_error", "value": 1.0, "type": "Metric"},
        {"name": "no_reward", "value": 1.0, "type": "Metric"},
    ]
    assert all(o["metrics_list"] == [{"name": "slow", "value": 1.0, "type": "Reward"}] for o in (out[0], *out[2:]))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]), "content": st.one_of(st.text(max_size=30), JSONISH)}
)
SAMPLE = st.one_of(
    JSONISH,
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.text(max_size=5), st.none(), st.integers()),
            "messages": st.one_of(st.lists(MESSAGE, max_size=3), JSONISH),
        },
        optional={
            "reference_answer": JSONISH,
            "metadata": st.one_of(JSONISH, st.fixed_dictionaries({"reference_answer": JSONISH})),
        },
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SAMPLE, max_size=6))
def test_fuzzed_events_never_raise(event: list[Any]) -> None:
    out = bedrock_reward_handler(COMPLIANT)(event, None)
    assert len(out) == len(event)
    for raw, o in zip(event, out, strict=True):
        no_id = isinstance(raw, dict) and raw.get("id") is None  # graded; its result has no id
        assert set(o) == {"aggregate_reward_score", "metrics_list"} | (set() if no_id else {"id"})
        assert 0.0 <= o["aggregate_reward_score"] <= 1.0
