"""The numbers a training step reports (`trainer_bridge/loop/metrics.py`), each checked against its value."""

from __future__ import annotations

import math
import statistics

import pytest

from gradekit.graders import BatchResult, StringCheck, validate
from gradekit.graders.results import SampleNotes
from gradekit.trainer_bridge.loop.metrics import (
    add_validation_time,
    estimated_finish,
    grading_tables,
    per_grader,
    rate,
    speed_summary,
    train_metrics,
    valid_metrics,
    validation_steps_left,
)

GRADER = validate(StringCheck(name="team", input="{{ sample.output_text }}", reference="billing", operation="eq"))


def _batch(rewards: list[float], failed: int | None = None, skipped: int | None = None) -> BatchResult:
    """A graded part: `failed` is an `other_error` (a zero reward), `skipped` got no reward."""
    notes: list[SampleNotes | None] = [None] * len(rewards)
    if failed is not None:
        notes[failed] = SampleNotes()
        notes[failed].fail("team", "other_error", "boom", no_reward=False)
    if skipped is not None:
        notes[skipped] = SampleNotes()
        notes[skipped].skip("team")
    return BatchResult("team", "string_check", rewards, notes, {}, 0.0)


def test_train_metrics_values() -> None:
    parts = [_batch([1.0, 0.0, 0.5], failed=1), _batch([0.0, 1.0], skipped=0)]
    data = train_metrics(
        GRADER,
        parts,
        step=2,
        total_steps=10,
        completion_tokens=[3, 5, 4, 8],
        stats={"clip_fraction": 0.125, "kl": 0.25},
        timing={"generation_s": 2.0, "grading_s": 0.5, "update_s": 4.0, "step_s": 7.0},
        trained_tokens=40,
    )
    rewarded = [1.0, 0.0, 0.5, 1.0]  # the skipped sample got no reward: left out of the means
    assert data["train_reward_mean"] == pytest.approx(statistics.fmean(rewarded))
    assert data["train_reward_std"] == pytest.approx(statistics.pstdev(rewarded))
    assert data["train_completion_tokens_mean"] == 5.0
    assert data["graders"] == {"team": {"train_reward_mean": pytest.approx(0.625)}}
    assert data["errors"]["team"]["other_error"] == {"count": 1, "rate": pytest.approx(1 / 5)}
    assert data["errors"]["team"]["sample_parse_error"] == {"count": 0, "rate": 0.0}
    assert data["no_reward"] == {"team": {"count": 1, "rate": pytest.approx(1 / 5)}}
    assert (data["step"], data["total_steps"], data["kl"], data["clip_fraction"]) == (2, 10, 0.25, 0.125)
    assert data["timing"] == {"step": {"sampling": 2.0, "training": 4.0, "full_iteration": 7.0}}
    assert data["gradekit"] == {
        "generation_s": 2.0,
        "grading_s": 0.5,
        "update_s": 4.0,
        "step_s": 7.0,
        "sampled_tokens": 20,
        "sampled_tokens_per_s": 10.0,
        "trained_tokens": 40,
        "trained_tokens_per_s": 10.0,
    }


def test_train_metrics_without_timing_or_trained_tokens() -> None:
    data = train_metrics(
        GRADER,
        [_batch([1.0])],
        step=1,
        total_steps=1,
        completion_tokens=[2],
        stats={"clip_fraction": 0, "kl": 0},
        timing={},
    )
    assert data["timing"] == {"step": {}}
    assert data["gradekit"] == {"sampled_tokens": 2, "sampled_tokens_per_s": None}


def test_valid_metrics_and_grading_tables() -> None:
    parts = [_batch([0.0, 1.0, 1.0], skipped=0), _batch([0.0], failed=0)]
    data = valid_metrics(GRADER, parts)
    assert data["valid_reward_mean"] == pytest.approx(2 / 3)
    assert data["valid_reward_std"] == pytest.approx(statistics.pstdev([1.0, 1.0, 0.0]))
    assert data["graders"] == {"team": {"valid_reward_mean": pytest.approx(2 / 3)}}
    assert data["valid_no_reward"] == {"team": {"count": 1, "rate": 0.25}}
    assert data["valid_errors"]["team"]["other_error"] == {"count": 1, "rate": 0.25}
    tables = grading_tables(GRADER, parts)
    assert tables == {"errors": data["valid_errors"], "no_reward": data["valid_no_reward"]}


def test_per_grader_names_the_split() -> None:
    summary = {"reward_mean": 0.5, "graders": {"a": {"reward_mean": 0.25}, "b": {"reward_mean": 1.0}}}
    assert per_grader(GRADER, summary, "valid") == {
        "team": {"valid_reward_mean": 0.5},
        "a": {"valid_reward_mean": 0.25},
        "b": {"valid_reward_mean": 1.0},
    }


@pytest.mark.parametrize(
    ("count", "seconds", "expected"), [(10, 4.0, 2.5), (0, 2.0, 0.0), (5, 0.0, None), (5, None, None)]
)
def test_rate(count: int, seconds: float | None, expected: float | None) -> None:
    assert rate(count, seconds) == expected


def test_add_validation_time() -> None:
    data: dict = {"timing": {"step": {"sampling": 1.0, "full_iteration": 3.0}}, "gradekit": {"step_s": 3.0}}
    add_validation_time(data, 1.5)
    assert data == {
        "timing": {"step": {"sampling": 1.0, "full_iteration": 4.5, "eval": 1.5}},
        "gradekit": {"step_s": 3.0, "valid_s": 1.5},
    }
    empty: dict = {}
    add_validation_time(empty, 2.0)
    assert empty == {"timing": {"step": {"eval": 2.0, "full_iteration": 2.0}}, "gradekit": {"valid_s": 2.0}}


@pytest.mark.parametrize(
    ("step", "total", "every", "left"),
    [
        (0, 10, 5, 2),  # steps 5 and 10
        (4, 10, 5, 2),
        (5, 10, 5, 1),  # step 10
        (9, 10, 5, 1),
        (10, 10, 5, 0),
        (10, 10, 3, 0),  # at the last step nothing is left, though 10 is no multiple of 3
        (11, 10, 5, 0),
        (0, 10, 3, 4),  # 3, 6, 9 and the last, 10
        (9, 10, 3, 1),  # the last only
        (8, 9, 3, 1),  # 9 is both
        (0, 1, 1, 1),
    ],
)
def test_validation_steps_left(step: int, total: int, every: int, left: int) -> None:
    assert validation_steps_left(step, total, every) == left


def test_estimated_finish() -> None:
    assert estimated_finish(100.0, [], [5.0], step=1, total_steps=4, eval_interval=2) is None
    # 3 steps left at 2 s each, 2 validations (steps 2 and 4) at 0.25 s each: 100 + 6 + 0.5, rounded up
    assert estimated_finish(100.0, [1.0, 3.0], [0.5, 0.0], step=1, total_steps=4, eval_interval=2) == 107
    assert estimated_finish(100.0, [1.0, 3.0], [], step=1, total_steps=4, eval_interval=2) == 106
    assert estimated_finish(100.2, [2.0], [], step=1, total_steps=4, eval_interval=2) == 107
    assert estimated_finish(100.0, [2.0], [1.0], step=6, total_steps=4, eval_interval=2) == 100  # past the end
    assert estimated_finish(99.5, [2.0], [], step=4, total_steps=4, eval_interval=2) == math.ceil(99.5)


def test_speed_summary() -> None:
    history = [
        {
            "step": 1,
            "gradekit": {
                "step_s": 2.0,
                "valid_s": 1.0,
                "sampled_tokens": 30,
                "generation_s": 1.0,
                "trained_tokens": 50,
            },
        },
        {"step": 2, "gradekit": {"step_s": 4.0, "valid_s": 3.0, "sampled_tokens": 10, "generation_s": 3.0}},
        {"step": 3, "gradekit": {"update_s": 5.0, "trained_tokens": 50, "sampled_tokens": "n/a"}},
        {"step": 4, "gradekit": "not an object"},
        {"step": 5},
    ]
    assert speed_summary(history) == {
        "steps": 2,
        "step_s": 3.0,
        "valid_s": 2.0,
        "sampled_tokens_per_s": 10.0,  # 40 tokens over 4 s
        "trained_tokens_per_s": 20.0,  # 100 tokens over 5 s
    }
    assert speed_summary([]) == {
        "steps": 0,
        "step_s": None,
        "valid_s": None,
        "sampled_tokens_per_s": None,
        "trained_tokens_per_s": None,
    }
