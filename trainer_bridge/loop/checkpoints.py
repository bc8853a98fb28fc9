"""Checkpoints at validation steps (the best three by `valid_reward_mean` are kept) and the resume snapshot."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .atomic_files import publish_dir, read_json, remove_leftovers, write_json

__all__ = ["Checkpoint", "CheckpointStore", "Snapshots"]

META = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    """One kept checkpoint: a Hugging Face model directory plus its step and metrics."""

    id: str
    step_number: int
    metrics: dict[str, Any]
    created_at: int
    path: Path

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's record (without its path)."""
        record = asdict(self)
        del record["path"]
        return record


def checkpoint_id(job_id: str, step: int) -> str:
    """A stable id for the checkpoint of `job_id` at `step` (the same after a resume)."""
    return "ftckpt_" + hashlib.sha256(f"{job_id}:{step}".encode()).hexdigest()[:24]


class CheckpointStore:
    """The `checkpoints/` folder of a run: `step-NNNNNN/` model directories, each with `checkpoint.json`."""

    def __init__(self, root: Path, job_id: str, *, keep: int = 3) -> None:
        self.root = root
        self.job_id = job_id
        self.keep = keep

    def prepare(self) -> None:
        """Create the folder and clear what a killed writer left half-built (only the run that writes calls this)."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.root)

    def save(self, step: int, metrics: dict[str, Any], write_model: Callable[[Path], None]) -> Checkpoint:
        """Write a checkpoint for `step`, then delete all but the `keep` best."""
        created = int(time.time())
        ckpt_id = checkpoint_id(self.job_id, step)

        def write(tmp: Path) -> None:
            write_model(tmp)
            meta = {"id": ckpt_id, "step_number": step, "metrics": metrics, "created_at": created}
            write_json(tmp / META, meta)

        path = publish_dir(self.root / f"step-{step:06d}", write)
        self.prune()
        return Checkpoint(ckpt_id, step, metrics, created, path)

    def list(self) -> list[Checkpoint]:
        """Kept checkpoints, newest first."""
        found = []
        for meta in self.root.glob(f"step-*/{META}"):  # a half-built checkpoint has no META yet: not listed
            m = read_json(meta)
            found.append(Checkpoint(m["id"], m["step_number"], m["metrics"], m["created_at"], meta.parent))
        return sorted(found, key=lambda c: c.step_number, reverse=True)

    def prune(self) -> None:
        """Keep the `keep` checkpoints with the highest `valid_reward_mean` (the later step wins a tie)."""
        ranked = sorted(
            self.list(), key=lambda c: (c.metrics.get("valid_reward_mean", float("-inf")), c.step_number), reverse=True
        )
        for ckpt in ranked[self.keep :]:
            shutil.rmtree(ckpt.path, ignore_errors=True)

    def drop_after(self, step: int) -> None:
        """Delete checkpoints of steps after `step` (written after the snapshot a resumed run starts from)."""
        for ckpt in self.list():
            if ckpt.step_number > step:
                shutil.rmtree(ckpt.path, ignore_errors=True)


class Snapshots:
    """The resume snapshot: `snapshot-NNNNNN-*/` directories and `snapshot.json` naming the current one.

    The pointer is replaced atomically after the new directory is complete, so a process killed at any moment
    leaves either the old snapshot or the new one in force.
    """

    POINTER = "snapshot.json"

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        """Create the folder and clear what a killed writer left half-built (only the run that writes calls this)."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.root)

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write the snapshot of `step` and make it current; older snapshots are deleted."""
        name = f"snapshot-{step:06d}-{time.time_ns():x}"  # never the name of the snapshot in force
        path = publish_dir(self.root / name, write)
        write_json(self.root / self.POINTER, {"current": name, "step": step})
        for old in self.root.glob("snapshot-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def current(self) -> Path | None:
        """The snapshot in force, or None before the first one."""
        pointer = self.root / self.POINTER
        if not pointer.exists():
            return None
        path = self.root / read_json(pointer)["current"]
        return path if path.is_dir() else None
