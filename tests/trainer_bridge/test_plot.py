"""The reward curve: the grader's reward, each sub-grader's reward and the error rates, checked in the figure's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradekit.trainer_bridge.loop.plot import plot_rewards, reward_figure

ZERO = {"count": 0, "rate": 0.0}


def step(n: int, team: float, tone: float, bad_json: float, valid: bool) -> dict[str, Any]:
    """One step's metrics event data as RFTJob records it (a multi grader `route` with `team` and `tone`)."""
    data: dict[str, Any] = {
        "step": n,
        "train_reward_mean": (team + tone) / 2,
        "graders": {
            "route": {"train_reward_mean": (team + tone) / 2},
            "team": {"train_reward_mean": team},
            "tone": {"train_reward_mean": tone},
        },
        "errors": {
            "route": {"sample_parse_error": ZERO},
            "team": {"sample_parse_error": {"count": int(bad_json * 8), "rate": bad_json}},
            "tone": {"sample_parse_error": ZERO},
        },
    }
    if valid:
        data["valid_reward_mean"] = team
        for name in ("route", "team", "tone"):
            data["graders"][name]["valid_reward_mean"] = {"route": team, "team": team + 0.1, "tone": tone}[name]
        data["valid_errors"] = {"team": {"sample_parse_error": {"count": 1, "rate": bad_json / 2}}}
    return data


HISTORY = [step(0, 0.0, 0.5, 0.5, True), step(1, 0.25, 0.5, 0.25, False), step(2, 0.5, 1.0, 0.0, True)]


def lines(ax: Any) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def test_panels_hold_each_grader_and_error_rate() -> None:
    fig = reward_figure(HISTORY, title="ftjob-1 (route)")
    overall, per_grader, errors = fig.axes
    assert overall.get_title() == "ftjob-1 (route)"
    assert lines(overall) == {
        "train_reward_mean": ([0, 1, 2], [0.25, 0.375, 0.75]),
        "valid_reward_mean": ([0, 2], [0.0, 0.5]),
    }
    assert per_grader.get_title() == "reward per sub-grader"
    assert lines(per_grader) == {
        "team train": ([0, 1, 2], [0.0, 0.25, 0.5]),
        "team valid": ([0, 2], [0.1, 0.6]),
        "tone train": ([0, 1, 2], [0.5, 0.5, 1.0]),
        "tone valid": ([0, 2], [0.5, 1.0]),
    }
    assert errors.get_title() == "error rate per grader and flag"
    assert lines(errors) == {  # only the flags that fired; zero everywhere else is not drawn
        "team: sample_parse_error (train)": ([0, 1, 2], [0.5, 0.25, 0.0]),
        "team: sample_parse_error (valid)": ([0, 2], [0.25, 0.0]),
    }
    assert errors.get_xlabel() == "step" and errors.get_ylim() == (-0.02, 1.02)
    assert [t.get_text() for t in per_grader.get_legend().get_texts()] == list(lines(per_grader))


def test_a_single_grader_without_errors() -> None:
    history = [
        {"step": s, "train_reward_mean": r, "graders": {"g": {"train_reward_mean": r}}, "errors": {"g": {}}}
        for s, r in ((0, 0.1), (1, 0.3))
    ]
    fig = reward_figure(history)
    overall, errors = fig.axes  # no sub-graders: no per-grader panel
    assert lines(overall) == {"train_reward_mean": ([0, 1], [0.1, 0.3])}
    assert errors.get_title() == "error rate: no grading errors" and len(errors.lines) == 0


def test_plot_rewards_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "reward_curve.png"
    plot_rewards(HISTORY, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reward_curve.png"]  # no temporary file left behind
