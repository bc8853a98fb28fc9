"""examples/service_learning.py, the newcomer's service flow, run whole on `tiny-local` (the SmolLM2 run is
measured in docs/fine-tuning-service.md): it serves, uploads, trains, and compares the two models' answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_flow_runs_whole_and_counts_both_models_answers(tmp_path: Path) -> None:
    env = {**os.environ, "GRADEKIT_DEMO_MODEL": "tiny-local", "GRADEKIT_DEMO_DIR": str(tmp_path / "run")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "service_learning.py"), "sentiment"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "job ftjob-" in out and "on tiny-local: 32 training rows, 8 steps" in out
    steps = [int(s) for s in re.findall(r"step +(\d+): valid_reward_mean \d\.\d{3}", out)]
    assert steps == [0, 4, 8]
    assert re.search(r"ftjob-\w+: succeeded in \d+ s; model ft:tiny-local:sentiment:\w+", out)
    counts = re.findall(r"^(\S+): (\d+) of 32 greedy answers name an allowed answer, (\d+) the right one$", out, re.M)
    assert len(counts) == 2 and counts[0][0] == "tiny-local" and counts[1][0].startswith("ft:tiny-local:sentiment:")
    assert all(int(right) <= int(named) <= 32 for _, named, right in counts)
    assert (tmp_path / "run" / "gradekit-data").is_dir()  # the server's data where the script said
