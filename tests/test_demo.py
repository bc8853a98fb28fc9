"""`make demo` trains a tiny model on the ticket-routing example and shows valid_reward_mean rising."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_trains_and_the_validation_reward_rises(tmp_path: Path) -> None:
    env = {**os.environ, "GRADEKIT_DEMO_DIR": str(tmp_path / "demo")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")], check=True, capture_output=True, text=True, env=env
    ).stdout
    assert "train_reward_mean  valid_reward_mean" in out
    first, last = map(float, re.search(r"valid_reward_mean: ([\d.]+) -> ([\d.]+)", out).groups())  # type: ignore[union-attr]
    assert last - first >= 0.3, out
    run = tmp_path / "demo" / "run"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    valid = [
        e["data"]["valid_reward_mean"] for e in events if e["type"] == "metrics" and "valid_reward_mean" in e["data"]
    ]
    assert (round(valid[0], 3), round(valid[-1], 3)) == (first, last)
    assert (run / "reward_curve.png").stat().st_size > 10_000
    assert json.loads((run / "job.json").read_text())["status"] == "succeeded"
