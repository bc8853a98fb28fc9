"""Aggregate values against `statistics` and hand counts: means, spreads, per-grader error counts and rates."""

from __future__ import annotations

import statistics

from gradekit.graders.aggregate import Aggregate
from gradekit.graders.models import TextSimilarity
from gradekit.graders.results import BatchResult, GraderErrors, GraderMetadata, RunResult, SampleNotes
from gradekit.runtime.report import format_summary


def _failed(*pairs: tuple[str, str]) -> SampleNotes:
    notes = SampleNotes()
    for grader, flag in pairs:
        notes.fail(grader, flag, "why")  # type: ignore[arg-type]
    return notes


def test_empty_summary() -> None:
    assert Aggregate().summary() == {
        "count": 0,
        "reward_mean": 0.0,
        "reward_std": 0.0,
        "graders": {},
        "errors": {},
        "failed_samples": 0,
        "failed_rate": 0.0,
        "no_reward": {},
        "no_reward_samples": 0,
        "no_reward_rate": 0.0,
    }


def test_moments_match_statistics() -> None:
    rewards = [0.25, 1.0, 0.0, 0.75, 0.5, 0.125, 1.0]
    subs = [{"a": r, "b": 1.0 - r / 2} for r in rewards]
    agg = Aggregate()
    for r, s in zip(rewards, subs, strict=True):
        agg.add(r, s, None)
    got = agg.summary()
    assert got["count"] == 7
    assert abs(got["reward_mean"] - statistics.fmean(rewards)) < 1e-15
    assert abs(got["reward_std"] - statistics.pstdev(rewards)) < 1e-15
    b = [s["b"] for s in subs]
    assert abs(got["graders"]["b"]["reward_mean"] - statistics.fmean(b)) < 1e-15
    assert abs(got["graders"]["b"]["reward_std"] - statistics.pstdev(b)) < 1e-15
    assert got["failed_samples"] == 0 and got["failed_rate"] == 0.0 and got["errors"] == {}


def test_single_value_and_large_offset() -> None:
    one = Aggregate()
    one.add(0.5, {}, None)
    assert (one.summary()["reward_mean"], one.summary()["reward_std"]) == (0.5, 0.0)
    values = [1e9 + x for x in (0.0, 1.0, 2.0, 3.0)]  # a naive sum-of-squares loses these digits
    agg = Aggregate()
    for v in values:
        agg.add(v, {}, None)
    assert agg.summary()["reward_mean"] == 1e9 + 1.5
    assert abs(agg.summary()["reward_std"] - statistics.pstdev([0.0, 1.0, 2.0, 3.0])) < 1e-6


def test_error_counts_and_rates() -> None:
    agg = Aggregate()
    agg.add(0.0, {}, _failed(("a", "invalid_variable_error"), ("b", "other_error")))
    agg.add(0.0, {}, _failed(("a", "invalid_variable_error")))
    agg.add(0.0, {}, _failed(("a", "sample_parse_error")))
    agg.add(1.0, {}, SampleNotes(scores={"x": 1}))  # notes without a failure: not a failed sample
    agg.add(1.0, {}, None)
    s = agg.summary()
    assert s["errors"] == {
        "a": {
            "sample_parse_error": {"count": 1, "rate": 1 / 5},
            "invalid_variable_error": {"count": 2, "rate": 2 / 5},
        },
        "b": {"other_error": {"count": 1, "rate": 1 / 5}},
    }
    assert list(s["errors"]["a"]) == ["sample_parse_error", "invalid_variable_error"]  # OpenAI's flag order
    assert s["failed_samples"] == 3
    assert s["failed_rate"] == 3 / 5
    assert s["reward_mean"] == 2 / 5


def _result(name: str, reward: float, errors: GraderErrors, scores: dict[str, object]) -> RunResult:
    meta = GraderMetadata(name=name, type="multi", execution_time=0.0, scores=scores, errors=errors)
    return RunResult(
        reward=reward, sub_rewards={"a": 1, "b": 0.5}, model_grader_token_usage_per_model={}, metadata=meta
    )


def test_add_result_reads_details_or_falls_back_to_flags() -> None:
    agg = Aggregate()
    details = {"error_details": {"sub": {"flag": "model_grader_parse_error", "message": "m"}}}
    agg.add_result(_result("top", 0.0, GraderErrors(model_grader_parse_error=True), details))
    agg.add_result(_result("top", 0.0, GraderErrors(other_error=True, sample_parse_error=True), {}))
    agg.add_result(_result("top", 1.0, GraderErrors(), {"error_details": {"ignored": {"flag": "other_error"}}}))
    s = agg.summary()
    assert s["errors"] == {
        "sub": {"model_grader_parse_error": {"count": 1, "rate": 1 / 3}},
        "top": {"sample_parse_error": {"count": 1, "rate": 1 / 3}},  # a grader's first failure, in flag order
    }
    assert s["failed_samples"] == 2
    assert s["graders"] == {"a": {"reward_mean": 1.0, "reward_std": 0.0}, "b": {"reward_mean": 0.5, "reward_std": 0.0}}
    assert s["reward_mean"] == 1 / 3


def test_add_batch_keeps_the_first_name_and_pairs_columns() -> None:
    agg = Aggregate()
    agg.add_batch(BatchResult("first", "multi", [1.0, 0.0], [None, None], {"a": [0.25, 0.75]}, 0.0))
    agg.add_batch(BatchResult("second", "multi", [0.5], [_failed(("a", "other_error"))], {"a": [0.5]}, 0.0))
    assert agg.name == "first"
    assert agg.count == 3
    s = agg.summary()
    assert s["graders"]["a"]["reward_mean"] == 0.5
    assert abs(s["graders"]["a"]["reward_std"] - statistics.pstdev([0.25, 0.75, 0.5])) < 1e-15
    assert s["reward_mean"] == 0.5
    assert s["errors"] == {"a": {"other_error": {"count": 1, "rate": 1 / 3}}}
    named = Aggregate(name="mine")
    named.add_batch(BatchResult("theirs", "multi", [], [], {}, 0.0))
    assert named.name == "mine" and named.count == 0


def test_add_result_with_empty_or_odd_details_counts_the_flags() -> None:
    agg = Aggregate()
    agg.add_result(_result("top", 0.0, GraderErrors(other_error=True), {"error_details": {}}))
    agg.add_result(_result("top", 0.0, GraderErrors(formula_parse_error=True), {"error_details": "not a dict"}))
    s = agg.summary()
    assert s["errors"] == {
        "top": {"formula_parse_error": {"count": 1, "rate": 0.5}, "other_error": {"count": 1, "rate": 0.5}}
    }
    assert s["failed_samples"] == 2


def test_pass_threshold_counts_passes_among_the_rewarded_samples() -> None:
    grader = TextSimilarity(
        name="sim", input="{{ sample.output_text }}", reference="x", evaluation_metric="bleu", pass_threshold=0.5
    )
    agg = Aggregate.for_grader(grader)
    for reward in (0.2, 0.5, 0.9, 0.49):
        agg.add(reward, {}, None)
    ungraded = SampleNotes()
    ungraded.fail("sim", "unresponsive_reward_error", "judge down")
    agg.add(0.0, {}, ungraded)  # no reward: neither passed nor failed
    summary = agg.summary()
    assert summary["pass_threshold"] == 0.5
    assert summary["passed"] == {"count": 2, "rate": 0.5}  # 0.5 and 0.9 of the four rewarded samples
    assert "passed (>= 0.5)     2 (50.0% of those with a reward)" in format_summary(summary)


def test_no_pass_threshold_adds_no_pass_keys() -> None:
    grader = TextSimilarity(name="sim", input="a", reference="b", evaluation_metric="bleu")
    agg = Aggregate.for_grader(grader)
    agg.add(1.0, {}, None)
    assert "passed" not in agg.summary() and "pass_threshold" not in agg.summary()
    assert "passed" not in format_summary(agg.summary())
