"""`gradekit train` and `gradekit evals diff` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradekit.runtime.cli import main

from .rft_task import FAST, GRADER

Task = tuple[Path, Path, Path]


def _options() -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]


def test_train_prints_the_validation_table_and_resumes(
    task: Task, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, valid, base = task
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(GRADER))
    out = tmp_path / "run"
    argv = ["train", "--grader", str(grader), "--train", str(train), "--valid", str(valid), "--model", str(base)]
    argv += ["--n-epochs", "1", "--batch-size", "4", "--eval-interval", "2", "--seed", "4", "--output", str(out), "-q"]
    assert main(argv + _options()) == 0
    printed = capsys.readouterr().out
    assert "train_reward_mean  valid_reward_mean" in printed
    record = json.loads((out / "job.json").read_text())
    assert record["status"] == "succeeded" and record["hyperparameters"]["batch_size"] == 4
    assert record["gradekit"]["options"]["group_size"] == FAST["group_size"]
    rows = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit() and len(line.split()) == 4]
    assert [int(r[0]) for r in rows] == [0, 2, 4]
    assert f"fine-tuned model: {record['fine_tuned_model']}" in printed

    steps = [str(out / "evals" / "step-000000.jsonl"), str(out / "evals" / "step-000004.jsonl")]
    assert main(["evals", "diff", *steps, "--jsonl"]) == 0
    captured = capsys.readouterr()
    changed = [json.loads(line) for line in captured.out.splitlines()]
    assert f"{len(changed)} samples changed" in captured.err
    assert all(set(c) == {"index", "sample_index", "reward_delta", "before", "after"} for c in changed)
    assert main(["evals", "diff", *steps]) == 0  # the table: its first line counts the same samples
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith(f"{len(changed)} of ") and "between step 0 (step-000000.jsonl) and step 4" in table[0]

    assert main(["train", "--resume", str(out), "-q"]) == 2  # a finished job is not resumable
    assert "cannot be resumed" in capsys.readouterr().err


def test_train_names_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--grader", "g.json"]) == 2
    assert capsys.readouterr().err == "gradekit: error: missing --train (or give --resume RUN_DIR)\n"
