"""Plain-text tables of a run's metrics: what `gradekit train` and the demo print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_history"]


def _errors(data: Mapping[str, Any], key: str) -> int:
    return sum(c["count"] for flags in data.get(key, {}).values() for c in flags.values())


def format_history(history: Sequence[Mapping[str, Any]], *, validation_only: bool = True) -> str:
    """One row per step (validation steps only by default): step, train and valid reward means, errors."""
    lines = [f"{'step':>6}  {'train_reward_mean':>17}  {'valid_reward_mean':>17}  {'grading errors':>14}"]
    for data in history:
        if validation_only and "valid_reward_mean" not in data:
            continue
        train = f"{data['train_reward_mean']:.4f}" if "train_reward_mean" in data else "-"
        valid = f"{data['valid_reward_mean']:.4f}" if "valid_reward_mean" in data else "-"
        errors = _errors(data, "errors") + _errors(data, "valid_errors")
        lines.append(f"{data['step']:>6}  {train:>17}  {valid:>17}  {errors:>14}")
    return "\n".join(lines) + "\n"
