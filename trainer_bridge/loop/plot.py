"""The reward curve PNG: the grader's reward, each sub-grader's reward and the error rates of every step.

Panels, one above the other on a shared step axis: `train_reward_mean` per step and `valid_reward_mean` at
each validation step; each sub-grader's train and valid reward means (a `multi` grader only); the rate of
every error flag that fired, per grader (training samples per step, validation samples at validation steps).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_rewards", "reward_figure"]

_TRAIN, _VALID = "#9db4d6", "#d2553f"


def _points(history: Sequence[Mapping[str, Any]], value: Any) -> list[tuple[int, float]]:
    """(step, value(data)) for every step where `value` gives a number."""
    points = []
    for data in history:
        v = value(data)
        if v is not None:
            points.append((data["step"], float(v)))
    return points


def _line(ax: Axes, points: list[tuple[int, float]], label: str, color: Any, valid: bool) -> None:
    if not points:
        return
    steps, values = zip(*points, strict=True)
    if valid:
        ax.plot(steps, values, label=label, color=color, marker="o", linewidth=2)
    else:
        ax.plot(steps, values, label=label, color=color, linewidth=1, alpha=0.6)


def _sub_graders(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sub-graders' names: every name under `graders` but the first (the grader itself)."""
    names: dict[str, None] = {}
    for data in history:
        names.update(dict.fromkeys(list(data.get("graders", {}))[1:]))
    return list(names)


def _fired(history: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(grader, flag) of every error flag with a non-zero rate at some step, train or valid."""
    fired: dict[tuple[str, str], None] = {}
    for data in history:
        for key in ("errors", "valid_errors"):
            for grader, flags in data.get(key, {}).items():
                fired.update(dict.fromkeys((grader, f) for f, c in flags.items() if c.get("rate")))
    return list(fired)


def reward_figure(history: Sequence[Mapping[str, Any]], *, title: str = "") -> Figure:
    """The reward curve of `history` (metrics event data) as a matplotlib figure (panels as the module says)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    subs = _sub_graders(history)
    panels = 3 if subs else 2
    fig = Figure(figsize=(8, 2.6 * panels + 0.6), dpi=100)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    _line(ax, _points(history, lambda d: d.get("train_reward_mean")), "train_reward_mean", _TRAIN, False)
    _line(ax, _points(history, lambda d: d.get("valid_reward_mean")), "valid_reward_mean", _VALID, True)
    ax.set_title(title or "reward")
    ax.set_ylabel("reward")
    colors = colormaps["tab10"]
    if subs:
        ax = axes[1]
        for n, name in enumerate(subs):
            for split, valid in (("train", False), ("valid", True)):
                key = f"{split}_reward_mean"
                points = _points(history, lambda d, name=name, key=key: d.get("graders", {}).get(name, {}).get(key))
                _line(ax, points, f"{name} {split}", colors(n % 10), valid)
        ax.set_title("reward per sub-grader")
        ax.set_ylabel("reward")
    ax = axes[-1]
    for n, (grader, flag) in enumerate(_fired(history)):
        for key, split, valid in (("errors", "train", False), ("valid_errors", "valid", True)):
            points = _points(
                history,
                lambda d, key=key, grader=grader, flag=flag: d.get(key, {}).get(grader, {}).get(flag, {}).get("rate"),
            )
            _line(ax, points, f"{grader}: {flag} ({split})", colors(n % 10), valid)
    ax.set_title("error rate per grader and flag" if ax.lines else "error rate: no grading errors")
    ax.set_ylabel("share of samples")
    ax.set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def plot_rewards(history: Sequence[Mapping[str, Any]], path: Path, *, title: str = "") -> None:
    """Draw `reward_figure(history)` to `path` as a PNG, replacing it atomically."""
    fig = reward_figure(history, title=title)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
