"""The numbers a step reports: train and validation reward means, per-grader means, error and no-reward tables.

Reward means are over the samples that got a reward; `no_reward` (`valid_no_reward`) counts, per grader, the
samples it gave none (docs/no-reward.md), beside `errors` (`valid_errors`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradekit.graders import BatchResult, Grader
from gradekit.graders.aggregate import Aggregate

from .batch_grading import error_table, grader_names, no_reward_table

__all__ = ["grading_tables", "per_grader", "train_metrics", "valid_metrics"]


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
) -> dict[str, Any]:
    """A training step's `metrics` event data, over every sample of the step's graded parts."""
    summary = _summary(grader, results)
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
        "timing": dict(timing),
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
