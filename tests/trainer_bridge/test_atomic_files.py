"""Directories published by one rename (`loop/atomic_files.publish_dir`): a failed write leaves nothing, and on a
full device the failure says so, naming the path, even when torch's writer only reports a zip position."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import pytest

from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.loop import atomic_files
from gradekit.trainer_bridge.loop.atomic_files import publish_dir
from gradekit.trainer_bridge.loop.job import JobError
from gradekit.trainer_bridge.models.policy import Policy

from .rft_task import FAST, GRADER

TORCH_ON_A_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 492112896 vs 492112784"


def _torn_write(tmp: Path) -> None:
    (tmp / "model.safetensors").write_bytes(b"\0" * 1024)
    raise RuntimeError(TORCH_ON_A_FULL_DISK)


def _free(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    real = shutil.disk_usage

    def usage(path: Any) -> Any:
        return real(path)._replace(free=free)

    monkeypatch.setattr(atomic_files.shutil, "disk_usage", usage)


def test_a_write_that_fails_with_room_left_raises_its_own_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="unexpected pos"):
        publish_dir(tmp_path / "step-000008", _torn_write)
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_on_a_full_device_says_so_and_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _free(monkeypatch, 408 * 1024)
    with pytest.raises(OSError, match=r"no space left on the device writing .*step-000008 \(417792 bytes free\)") as e:
        publish_dir(tmp_path / "step-000008", _torn_write)
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the half-written copy is gone: its space is given back


def test_a_job_whose_checkpoint_fills_the_device_fails_with_that_reason(
    task: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, valid, base = task
    hyper = {"n_epochs": 1, "batch_size": 4, "eval_interval": 2}
    job = RFTJob(base, GRADER, train, valid, hyper, output_dir=tmp_path / "job", options=FAST, progress=False)
    _free(monkeypatch, 408 * 1024)
    monkeypatch.setattr(Policy, "save", lambda self, path: _torn_write(Path(path)))
    with pytest.raises(JobError) as e:
        job.run()
    assert e.value.code == "training_error"
    assert "no space left on the device writing" in e.value.message and str(tmp_path / "job") in e.value.message
    assert job.record["status"] == "failed" and job.record["error"]["message"] == e.value.message
    assert not list((tmp_path / "job").rglob("*.tmp"))
