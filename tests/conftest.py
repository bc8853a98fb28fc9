"""Shared fixtures: paths to the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def examples() -> Path:
    """The examples/ folder."""
    return ROOT / "examples"
