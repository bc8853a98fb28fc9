"""`make demo` grades the shipped example and prints the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_prints_report() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")], check=True, capture_output=True, text=True
    ).stdout
    assert "samples graded      24" in out
    assert "reward mean" in out and "per-grader reward means" in out
    assert "invalid_variable_error" in out
