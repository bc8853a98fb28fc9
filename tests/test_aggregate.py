"""The aggregator: reward mean/std, per-grader means, per-grader error counts and rates."""

from __future__ import annotations

import statistics

from gradekit.graders import Multi, StringCheck, run_batch
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
