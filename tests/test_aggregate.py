"""The aggregator: reward mean/std, per-grader means, per-grader error counts and rates."""

from __future__ import annotations

import statistics

from gradekit.graders import Multi, RunResult, StringCheck, run_batch
from gradekit.graders.aggregate import Aggregate


def test_aggregate_over_batches_matches_direct_statistics() -> None:
    m = Multi(
        name="m",
        graders={
            "a": StringCheck(name="a", input="{{ sample.output_text }}", reference="{{ item.a }}", operation="eq"),
            "b": StringCheck(name="b", input="{{ sample.output_text }}", reference="x", operation="like"),
        },
        calculate_output="0.5 * a + 0.5 * b",
    )
    samples = ["x", "xy", "y", "x", "z", "x"]
    items = [{"a": "x"}, {"a": "x"}, {}, {"a": "x"}, {"a": "z"}, {}]
    agg = Aggregate()
    first = run_batch(m, samples[:3], items[:3])
    second = run_batch(m, samples[3:], items[3:])
    agg.add_batch(first)
    agg.add_batch(second)
    s = agg.summary()
    rewards = first.rewards + second.rewards
    assert rewards == [1.0, 0.5, 0.0, 1.0, 0.5, 0.0]
    assert s["count"] == 6
    assert abs(s["reward_mean"] - statistics.fmean(rewards)) < 1e-12
    assert abs(s["reward_std"] - statistics.pstdev(rewards)) < 1e-12
    assert s["graders"]["b"]["reward_mean"] == 4 / 6
    assert s["errors"] == {"a": {"invalid_variable_error": {"count": 2, "rate": 2 / 6}}}
    assert s["failed_samples"] == 2


def test_add_result_matches_add_batch() -> None:
    m = Multi(
        name="m",
        graders={
            "a": StringCheck(name="a", input="{{ sample.output_text }}", reference="{{ item.a }}", operation="eq"),
            "b": StringCheck(name="b", input="{{ sample.output_json.x }}", reference="1", operation="eq"),
        },
        calculate_output="a + b",
    )
    res = run_batch(m, ["x", '{"x": 1}', "y"], [{"a": "x"}, {}, {"a": "y"}])
    by_batch, by_result = Aggregate(), Aggregate()
    by_batch.add_batch(res)
    for r in res:
        by_result.add_result(RunResult.model_validate_json(r.model_dump_json()))
    assert by_result.summary() == by_batch.summary()
    assert by_batch.summary()["errors"] == {
        "b": {"invalid_variable_error": {"count": 2, "rate": 2 / 3}},
        "a": {"invalid_variable_error": {"count": 1, "rate": 1 / 3}},
    }
