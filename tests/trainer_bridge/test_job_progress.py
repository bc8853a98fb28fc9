"""Honest progress (issue 13.6): each step's time and token rates in its metrics event, `estimated_finish` from them,
and the same figures in the service's progress lines and `gradekit train`'s output.

Wall-clock values are never bounded here: the tests check that the figures are there, of the right types, and
consistent with one another (a rate is the step's own tokens over the step's own recorded seconds).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gradekit.runtime.cli import main
from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.cli import speed_line
from gradekit.trainer_bridge.loop.metrics import speed_summary
from gradekit.trainer_bridge.models.policy import TINY_MODEL
from gradekit.trainer_bridge.service.progress import progress_line

from .rft_task import FAST, GRADER, write_task

HYPER = {"n_epochs": 2, "batch_size": 4, "eval_interval": 2}  # 8 rows: 4 steps, validating at 0, 2 and 4
OWN = {"generation_s", "grading_s", "grading_wait_s", "update_s", "step_s", "estimated_finish"}
OWN |= {"sampled_tokens", "sampled_tokens_per_s", "trained_tokens", "trained_tokens_per_s"}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> tuple[RFTJob, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """A 4-step run, with each metrics event and a copy of the job object as it stood when the event was written."""
    root = tmp_path_factory.mktemp("progress")
    train, valid = write_task(root, n_train=8, n_valid=4)
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    job = RFTJob(TINY_MODEL, GRADER, train, valid, HYPER, seed=2, output_dir=root / "run", options=FAST, progress=False)
    job.listener = lambda event: seen.append((event, copy.deepcopy(job.record))) if event["type"] == "metrics" else None
    job.run()
    return job, seen


def test_each_step_reports_its_time_and_token_rates(observed: tuple[RFTJob, list[Any]]) -> None:
    job, seen = observed
    data = [event["data"] for event, _ in seen]
    assert [d["step"] for d in data] == [0, 1, 2, 3, 4]
    for d in data[1:]:
        own = d["gradekit"]
        assert set(own) >= OWN and set(own) - OWN <= {"valid_s"}
        assert all(isinstance(own[k], float) and own[k] > 0 for k in ("generation_s", "update_s", "step_s"))
        assert isinstance(own["sampled_tokens"], int) and isinstance(own["trained_tokens"], int)
        assert own["sampled_tokens_per_s"] == pytest.approx(own["sampled_tokens"] / own["generation_s"], rel=1e-12)
        assert own["trained_tokens_per_s"] == pytest.approx(own["trained_tokens"] / own["update_s"], rel=1e-12)
        # every sample of the step was sampled: 4 prompts x group_size, their completion tokens
        samples = HYPER["batch_size"] * FAST["group_size"]
        assert own["sampled_tokens"] == pytest.approx(d["train_completion_tokens_mean"] * samples)
        step = d["timing"]["step"]  # OpenAI's names for the same seconds
        assert (step["sampling"], step["training"]) == (own["generation_s"], own["update_s"])
        assert step["full_iteration"] == pytest.approx(own["step_s"] + own.get("valid_s", 0.0))
    # validation steps carry the validation's time, also under OpenAI's `timing.step.eval`
    for d in (data[0], data[2], data[4]):
        assert isinstance(d["gradekit"]["valid_s"], float) and d["timing"]["step"]["eval"] == d["gradekit"]["valid_s"]
    assert "valid_s" not in data[1]["gradekit"] and "eval" not in data[1]["timing"]["step"]
    # the steps' trained tokens add up to the job's trained_tokens
    assert sum(d["gradekit"]["trained_tokens"] for d in data[1:]) == job.record["trained_tokens"]


def test_estimated_finish_follows_the_steps(observed: tuple[RFTJob, list[Any]]) -> None:
    job, seen = observed
    # Step 0 (validation before training): no step timed yet, so no estimate.
    event, record = seen[0]
    assert event["data"]["gradekit"].get("estimated_finish") is None and record["estimated_finish"] is None
    finishes = []
    for event, record in seen[1:]:
        finish = event["data"]["gradekit"]["estimated_finish"]
        assert isinstance(finish, int)
        assert record["estimated_finish"] == finish  # the job object said the same when the event was written
        assert record["status"] == "running"
        assert finish >= event["created_at"]  # not in the past while running
        finishes.append(finish)
    assert finishes[-1] <= job.record["finished_at"] + 1  # the last estimate: now (rounded up to the second)
    assert job.record["status"] == "succeeded" and job.record["estimated_finish"] is None


def test_progress_lines_and_the_train_summary_show_the_speed(observed: tuple[RFTJob, list[Any]]) -> None:
    job, seen = observed
    data = seen[2][0]["data"]  # step 2, a validation step
    own = data["gradekit"]
    line = progress_line(job.id, data)
    assert line.startswith(f"{job.id}: step 2/4 train_reward_mean=") and line.endswith("errors: none")
    assert f" step_s={own['step_s']:.2f} valid_s={own['valid_s']:.2f} " in line
    assert f" sampled_tokens_per_s={own['sampled_tokens_per_s']:.1f} " in line
    assert f" trained_tokens_per_s={own['trained_tokens_per_s']:.1f} " in line
    assert " estimated_finish=20" in line and line.split("estimated_finish=")[1].split()[0].endswith("Z")

    history = [d for d, _ in ((e["data"], r) for e, r in seen)]
    summary = speed_summary(history)
    timed = [d["gradekit"] for d in history[1:]]
    assert summary["steps"] == 4
    assert summary["step_s"] == pytest.approx(sum(g["step_s"] for g in timed) / 4)
    assert summary["valid_s"] == pytest.approx(sum(d["gradekit"]["valid_s"] for d in (history[0], *history[2::2])) / 3)
    assert summary["sampled_tokens_per_s"] == pytest.approx(
        sum(g["sampled_tokens"] for g in timed) / sum(g["generation_s"] for g in timed)
    )
    assert speed_line(history) == (
        f"speed: 4 steps, {summary['step_s']:.2f} s a step, sampling {summary['sampled_tokens_per_s']:.1f} tokens/s, "
        f"training {summary['trained_tokens_per_s']:.1f} tokens/s, {summary['valid_s']:.2f} s a validation"
    )
    assert speed_line([{"step": 0}]) == ""  # nothing timed: no line


def test_train_prints_its_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, valid = write_task(tmp_path, n_train=4, n_valid=2)
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(GRADER))
    out = tmp_path / "run"
    argv = ["train", "--grader", str(grader), "--train", str(train), "--valid", str(valid), "--model", TINY_MODEL]
    argv += ["--n-epochs", "1", "--batch-size", "2", "--seed", "1", "--output", str(out), "-q"]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    history = [e["data"] for e in events if e["type"] == "metrics"]
    assert speed_line(history).startswith("speed: 2 steps, ")
    assert speed_line(history) in printed
