"""A plain-text table of an `Aggregate.summary()`: what the CLI and the demo print after grading."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from .jsonl import clean_text, write_text

__all__ = ["format_summary", "print_summary"]

_LABEL = 20


def format_summary(summary: Mapping[str, Any], *, title: str | None = None) -> str:
    """The summary as a small aligned table: rewards, failed and no-reward samples, per-grader reward means, per-grader
    error counts and rates.

    Surrogates in grader names are replaced (`clean_text`), so the table can always be printed as UTF-8.
    """
    n = summary["count"]
    lines = [title, ""] if title else []
    lines += [
        f"{'samples graded':<{_LABEL}}{n}",
        f"{'reward mean':<{_LABEL}}{summary['reward_mean']:.4f}",
        f"{'reward std':<{_LABEL}}{summary['reward_std']:.4f}",
        f"{'failed samples':<{_LABEL}}{summary.get('failed_samples', 0)} ({summary.get('failed_rate', 0.0):.1%})",
        # samples the grading could not grade: outside the reward mean and std (docs/no-reward.md)
        f"{'no reward':<{_LABEL}}{summary.get('no_reward_samples', 0)} ({summary.get('no_reward_rate', 0.0):.1%})",
    ]
    if "passed" in summary:
        passed = summary["passed"]
        label = f"passed (>= {summary['pass_threshold']:g})"
        lines.append(f"{label:<{_LABEL}}{passed['count']} ({passed['rate']:.1%} of those with a reward)")
    graders: Mapping[str, Any] = summary.get("graders", {})
    if graders:
        width = max(_LABEL - 2, *(len(k) + 2 for k in graders))
        lines += ["", "per-grader reward means"]
        lines += [f"  {name:<{width}}{g['reward_mean']:.4f}" for name, g in graders.items()]
    errors: Mapping[str, Mapping[str, Any]] = summary.get("errors", {})
    lines += ["", "errors (count, rate)"]
    rows = [(grader, flag, c) for grader, flags in errors.items() for flag, c in flags.items()]
    if not rows:
        lines.append("  none")
    else:
        gw = max(_LABEL - 2, *(len(g) + 2 for g, _, _ in rows))
        fw = max(28, *(len(f) + 2 for _, f, _ in rows))
        lines += [f"  {g:<{gw}}{f:<{fw}}{c['count']:>6}  {c['rate']:6.1%}" for g, f, c in rows]
    return clean_text("\n".join(lines) + "\n")


def print_summary(summary: Mapping[str, Any], *, title: str | None = None, file: TextIO | None = None) -> None:
    """Print `format_summary(summary)` (to stdout unless `file` is given)."""
    write_text(file or sys.stdout, format_summary(summary, title=title))
