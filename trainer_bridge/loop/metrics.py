"""The numbers a step reports: train and validation reward means, per-grader means, error and no-reward tables,
and how long the step took.

Reward means are over the samples that got a reward; `no_reward` (`valid_no_reward`) counts, per grader, the
samples it gave none (docs/no-reward.md), beside `errors` (`valid_errors`).

Time goes two ways. `timing.step` has OpenAI's shape (`sampling`, `training`, `eval`, `full_iteration`, in
seconds); gradekit's own figures sit under the `gradekit` key, apart from OpenAI's names: the parts of the step
(`generation_s`, `grading_s`, `grading_wait_s`, `update_s`, `step_s`, `valid_s`), the tokens it sampled and
trained with their rates (`sampled_tokens_per_s` = `sampled_tokens` / `generation_s`, `trained_tokens_per_s` =
`trained_tokens` / `update_s`), and the run's `estimated_finish` when the event was written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gradekit.graders import BatchResult, Grader
from gradekit.graders.aggregate import Aggregate

from .batch_grading import error_table, grader_names, no_reward_table

__all__ = [
    "add_validation_time",
    "estimated_finish",
    "grading_tables",
    "per_grader",
    "rate",
    "speed_summary",
    "train_metrics",
    "valid_metrics",
    "validation_steps_left",
]


def _summary(grader: Grader, results: Sequence[BatchResult]) -> dict[str, Any]:
    agg = Aggregate(name=grader.name)
    for result in results:
        agg.add_batch(result)
    return agg.summary()


def grading_tables(grader: Grader, results: Sequence[BatchResult]) -> dict[str, Any]:
    """`{"errors": ..., "no_reward": ...}` over the results: every grader's error and no-reward counts and rates."""
    summary, names = _summary(grader, results), grader_names(grader)
    return {"errors": error_table(summary, names), "no_reward": no_reward_table(summary, names)}


def per_grader(grader: Grader, summary: Mapping[str, Any], split: str) -> dict[str, dict[str, float]]:
    """`{grader: {"<split>_reward_mean": mean}}` for the grader and each of its sub-graders."""
    per = {grader.name: {f"{split}_reward_mean": summary["reward_mean"]}}
    for name, moments in summary["graders"].items():
        per[name] = {f"{split}_reward_mean": moments["reward_mean"]}
    return per


def train_metrics(
    grader: Grader,
    results: Sequence[BatchResult],
    *,
    step: int,
    total_steps: int,
    completion_tokens: Sequence[int],
    stats: Mapping[str, float],
    timing: Mapping[str, float],
    trained_tokens: int | None = None,
) -> dict[str, Any]:
    """A training step's `metrics` event data, over every sample of the step's graded parts.

    `timing` holds the step's seconds by part (`generation_s`, `grading_s`, `grading_wait_s`, `update_s`,
    `step_s`; any may be missing); `trained_tokens` the prompt and completion tokens the update trained on.
    """
    summary = _summary(grader, results)
    sampled = sum(completion_tokens)
    own: dict[str, Any] = {**timing, "sampled_tokens": sampled}
    own["sampled_tokens_per_s"] = rate(sampled, timing.get("generation_s"))
    if trained_tokens is not None:
        own["trained_tokens"] = trained_tokens
        own["trained_tokens_per_s"] = rate(trained_tokens, timing.get("update_s"))
    step_timing = {
        name: timing[key]
        for name, key in (("sampling", "generation_s"), ("training", "update_s"), ("full_iteration", "step_s"))
        if key in timing
    }
    return {
        "step": step,
        "total_steps": total_steps,
        "train_reward_mean": summary["reward_mean"],
        "train_reward_std": summary["reward_std"],
        "train_completion_tokens_mean": sum(completion_tokens) / len(completion_tokens),
        "graders": per_grader(grader, summary, "train"),
        "errors": error_table(summary, grader_names(grader)),
        "no_reward": no_reward_table(summary, grader_names(grader)),
        "kl": stats["kl"],
        "clip_fraction": stats["clip_fraction"],
        "timing": {"step": step_timing},
        "gradekit": own,
    }


def valid_metrics(grader: Grader, results: Sequence[BatchResult]) -> dict[str, Any]:
    """A validation run's metrics (merged into its step's `metrics` event data)."""
    summary = _summary(grader, results)
    return {
        "valid_reward_mean": summary["reward_mean"],
        "valid_reward_std": summary["reward_std"],
        "graders": per_grader(grader, summary, "valid"),
        "valid_errors": error_table(summary, grader_names(grader)),
        "valid_no_reward": no_reward_table(summary, grader_names(grader)),
    }


def rate(count: float, seconds: float | None) -> float | None:
    """`count` per second of `seconds`; None when no time was measured."""
    return count / seconds if seconds else None


def add_validation_time(data: dict[str, Any], seconds: float) -> None:
    """Count a validation run of `seconds` in a step's metrics event data (`timing.step.eval`, `gradekit.valid_s`)."""
    step = data.setdefault("timing", {}).setdefault("step", {})
    step["eval"] = seconds
    step["full_iteration"] = step.get("full_iteration", 0.0) + seconds
    data.setdefault("gradekit", {})["valid_s"] = seconds


def validation_steps_left(step: int, total_steps: int, eval_interval: int) -> int:
    """How many of the steps after `step` validate (every `eval_interval`-th step and the last one)."""
    if step >= total_steps:
        return 0
    every = total_steps // eval_interval - step // eval_interval
    return every + (total_steps % eval_interval != 0)


def estimated_finish(
    now: float,
    step_seconds: Sequence[float],
    valid_seconds: Sequence[float],
    *,
    step: int,
    total_steps: int,
    eval_interval: int,
) -> int | None:
    """When a run at `step` should end, in unix seconds (rounded up): the mean step time times the steps left,
    plus the mean validation time times the validations left; None before any step was timed."""
    if not step_seconds:
        return None
    left = max(0, total_steps - step) * (sum(step_seconds) / len(step_seconds))
    if valid_seconds:
        left += validation_steps_left(step, total_steps, eval_interval) * (sum(valid_seconds) / len(valid_seconds))
    return math.ceil(now + left)


def speed_summary(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A run's speed from its metrics events' data: steps timed, mean step and validation seconds, token rates.

    The rates are over all the timed steps (their tokens over their seconds); a figure is None when no step
    recorded it.
    """
    own = [h["gradekit"] for h in history if isinstance(h.get("gradekit"), Mapping)]

    def total(key: str) -> float:
        return sum(g[key] for g in own if isinstance(g.get(key), int | float))

    steps = [g["step_s"] for g in own if "step_s" in g]
    valid = [g["valid_s"] for g in own if "valid_s" in g]
    return {
        "steps": len(steps),
        "step_s": sum(steps) / len(steps) if steps else None,
        "valid_s": sum(valid) / len(valid) if valid else None,
        "sampled_tokens_per_s": rate(total("sampled_tokens"), total("generation_s")),
        "trained_tokens_per_s": rate(total("trained_tokens"), total("update_s")),
    }
