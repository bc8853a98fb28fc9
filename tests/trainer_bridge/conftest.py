"""Shared fixtures of the trainer bridge tests: the small ticket-routing task and its base model."""

from __future__ import annotations

from pathlib import Path

import pytest

from .rft_task import build_base, write_task


@pytest.fixture(scope="session")
def task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(training file, validation file, warm-started base model folder), built once per session."""
    root = tmp_path_factory.mktemp("rft-task")
    train, valid = write_task(root)
    return train, valid, build_base(root / "base", train, valid)
