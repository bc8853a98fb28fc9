"""`Aggregate` (`graders/aggregate.py`) by value on samples without a reward and on passes, from notes and from
results read back."""

from __future__ import annotations

import pytest

from gradekit.graders import BatchResult
from gradekit.graders.aggregate import Aggregate
from gradekit.graders.results import SampleNotes, make_result


def _skipped(grader: str) -> SampleNotes:
    notes = SampleNotes()
    notes.skip(grader)
    return notes


def _unreachable(grader: str) -> SampleNotes:
    notes = SampleNotes()
    notes.fail(grader, "unresponsive_reward_error", "timed out")
    return notes


def test_no_reward_is_counted_per_grader_and_for_the_whole_sample() -> None:
    agg = Aggregate(name="multi")
    agg.add(0.0, {"a": 0.0, "b": 1.0}, _skipped("a"))
    agg.add(0.0, {"a": 0.0, "b": 0.0}, _unreachable("a"))
    agg.add(0.5, {"a": 1.0, "b": 0.0}, None)
    agg.add(0.0, {}, _skipped("multi"))  # the multi itself gave none: counted once under its name
    summary = agg.summary()
    assert summary["no_reward"] == {
        "multi": {"count": 3, "rate": 0.75},
        "a": {"count": 2, "rate": 0.5},
    }
    assert (summary["no_reward_samples"], summary["no_reward_rate"]) == (3, 0.75)
    assert (summary["count"], summary["reward_mean"]) == (4, 0.5)
    # a sub-grader's mean leaves out the samples it gave no reward
    assert summary["graders"]["a"]["reward_mean"] == 1.0
    assert summary["graders"]["b"]["reward_mean"] == pytest.approx(1 / 3)
    assert summary["errors"] == {"a": {"unresponsive_reward_error": {"count": 1, "rate": 0.25}}}


def test_passes_count_rewards_at_or_above_the_threshold() -> None:
    agg = Aggregate(name="g", pass_threshold=0.5)
    for reward in (0.49, 0.5, 0.75, 0.9, 0.0):
        agg.add(reward, {}, None)
    agg.add(0.9, {}, _skipped("g"))  # no reward: neither a pass nor a fail
    summary = agg.summary()
    assert summary["passed"] == {"count": 3, "rate": 0.6}
    assert summary["pass_threshold"] == 0.5
    assert "passed" not in Aggregate(name="g").summary()


def test_results_read_back_keep_whose_fault_a_failure_was() -> None:
    agg = Aggregate()
    unreachable = make_result("judge", "score_model", 0.0, {}, _unreachable("judge"), 0.1)
    skipped = make_result("judge", "score_model", 0.0, {}, _skipped("judge"), 0.1)
    bad = SampleNotes()
    bad.fail("judge", "sample_parse_error", "not JSON")
    zero = make_result("judge", "score_model", 0.0, {}, bad, 0.1)
    for result in (unreachable, skipped, zero, make_result("judge", "score_model", 1.0, {}, None, 0.1)):
        agg.add_result(result)
    summary = agg.summary()
    assert agg.name == "judge"
    assert summary["no_reward"] == {"judge": {"count": 2, "rate": 0.5}}
    assert (summary["no_reward_samples"], summary["reward_mean"]) == (2, 0.5)  # the 0 of `zero` and the 1
    assert summary["errors"]["judge"] == {
        "sample_parse_error": {"count": 1, "rate": 0.25},
        "unresponsive_reward_error": {"count": 1, "rate": 0.25},
    }


def test_a_named_aggregate_keeps_its_name() -> None:
    agg = Aggregate(name="mine")
    agg.add_result(make_result("theirs", "python", 1.0, {}, None, 0.1))
    agg.add_batch(BatchResult("other", "python", [1.0], [None], {}, 0.0))
    assert agg.name == "mine"
    unnamed = Aggregate()
    unnamed.add_batch(BatchResult("batch", "python", [1.0], [None], {}, 0.0))
    assert unnamed.name == "batch"
