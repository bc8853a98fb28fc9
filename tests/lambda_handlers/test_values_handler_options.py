"""The reward handler's options and records by value: the deadline budget, per-sample grading of graders that
wait, the failure record of a malformed sample, the time it logs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from gradekit.graders import StringCheck, grader
from gradekit.lambda_handlers import bedrock_reward_handler

ANSWER = StringCheck(name="answer", input="{{ sample.output_text }}", reference="42", operation="eq")


class FixedContext:
    """A Lambda context whose remaining time stays `remaining_ms` (the budget is then exact)."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _event(*answers: str) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "messages": [{"role": "assistant", "content": a}]} for i, a in enumerate(answers)]


def _records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_the_safety_margin_comes_off_the_remaining_time() -> None:
    # 1 s left and a 1 s margin: no time to grade, every sample is unresponsive (without the margin all would be 1)
    handler = bedrock_reward_handler(ANSWER, safety_margin=1.0, service="test-values-budget")
    out = handler(_event("42", "42"), FixedContext(1000))
    assert [o["aggregate_reward_score"] for o in out] == [0.0, 0.0]
    assert all({"name": "unresponsive_reward_error", "value": 1.0, "type": "Metric"} in o["metrics_list"] for o in out)
    # with time to spare, the same batch is graded
    out = handler(_event("42", "42"), FixedContext(60_000))
    assert [o["aggregate_reward_score"] for o in out] == [1.0, 1.0]


def test_a_grader_that_waits_is_graded_sample_by_sample() -> None:
    """Chunks of 64 would lose the three finished samples with the one that hangs; one per task keeps them."""

    @grader
    async def waits(sample: dict[str, Any]) -> float:
        if sample["output_text"] == "hang":
            await asyncio.Event().wait()  # only the deadline ends it
        return 1.0

    handler = bedrock_reward_handler(waits, safety_margin=0.0, service="test-values-per-sample")
    out = handler(_event("a", "hang", "b", "c"), FixedContext(2000))
    assert [o["aggregate_reward_score"] for o in out] == [1.0, 0.0, 1.0, 1.0]


def test_a_malformed_samples_failure_record_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    handler = bedrock_reward_handler(ANSWER, service="test-values-malformed")
    before = time.monotonic()
    handler([*_event("42"), {"id": "bad", "messages": "none"}], FixedContext(60_000))
    elapsed = time.monotonic() - before
    records = _records(capsys)
    (warning,) = [r for r in records if r.get("message") == "samples failed"]
    assert warning["failed"] == [
        {"sample_id": "bad", "errors": ["sample_parse_error"], "details": "sample has no `messages` list"}
    ]
    (graded,) = [r for r in records if r.get("message") == "batch graded"]
    assert graded["samples"] == 2
    assert 0.0 <= graded["seconds"] <= round(elapsed, 4) + 1e-4
