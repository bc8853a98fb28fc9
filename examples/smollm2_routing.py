"""Reinforcement fine-tune SmolLM2-135M-Instruct on ticket routing, offline, on the CPU (docs/models.md's run).

Out of the box the instruct model answers a ticket in free text. A short supervised warm start teaches only the
answer format (a team name picked at random, never the right one, as `make demo` does for its tiny model); RFT
with a partial-credit grader (ticket_routing/grader_partial.json: 1 for the exact team, 0.3 for naming it in a
longer answer) then has to learn which team each ticket belongs to. 20 steps of 4 tickets (the first 80 training
rows), 8 samples each, validation on all 32 validation tickets every 5 steps. Needs the model (docs/models.md).
Measured there: this setting does not learn the routing yet (the policy drifts toward one team).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path

from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.loop.data import load_rows
from gradekit.trainer_bridge.loop.report import format_history
from gradekit.trainer_bridge.loop.warm_start import warm_start
from gradekit.trainer_bridge.models.catalogue import SMOLLM2
from gradekit.trainer_bridge.models.policy import Policy

TASK = Path(__file__).parent / "ticket_routing"
OUT = Path(os.environ.get("GRADEKIT_DEMO_DIR", "gradekit-runs/smollm2-routing"))
SEED = 1
TRAIN_ROWS = 80
WARM_START = {"steps": 12, "batch_size": 8, "learning_rate": 5e-5}
HYPERPARAMETERS = {"n_epochs": 1, "batch_size": 4, "eval_interval": 5}
OPTIONS = {"max_completion_tokens": 6}  # a team name and end-of-text; the rest is "auto" for a 135M model


def base_model(path: Path) -> Path:
    """SmolLM2-135M-Instruct plus a format-only warm start (random team names), saved as a model folder."""
    train = load_rows(TASK / "train.jsonl")
    policy = Policy.load(SMOLLM2)
    teams = sorted({row.item["team"] for row in train})
    rng = random.Random(0)
    warm_start(policy, train, [rng.choice(teams) for _ in train], seed=0, **WARM_START)
    policy.save(path)
    return path


def main() -> int:
    """Warm-start the base model, run the RFT job, print the validation table and where the outputs are."""
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    started = time.monotonic()
    base = base_model(OUT / "base-model")
    train = OUT / "train.jsonl"
    train.write_text("\n".join((TASK / "train.jsonl").read_text().splitlines()[:TRAIN_ROWS]) + "\n")
    job = RFTJob(
        base,
        TASK / "grader_partial.json",
        train,
        TASK / "valid.jsonl",
        HYPERPARAMETERS,
        seed=SEED,
        suffix="ticket-routing",
        output_dir=OUT / "run",
        options=OPTIONS,
        progress=sys.stderr.isatty(),
    )
    record = job.run()
    history = [e["data"] for e in job.events if e["type"] == "metrics"]
    valid = [h["valid_reward_mean"] for h in history if "valid_reward_mean" in h]
    print(f"RFT of {SMOLLM2} on {TASK.name} (grader: {job.grader.name}), seed {SEED}\n")
    print(format_history(history))
    print(f"valid_reward_mean: {valid[0]:.3f} -> {valid[-1]:.3f} (best {max(valid):.3f})")
    print(f"wall time: {time.monotonic() - started:.0f} s (warm start included)")
    print(f"job {record['id']}: {record['status']}; fine-tuned model {record['fine_tuned_model']}")
    print(f"reward curve: {job.dir / 'reward_curve.png'}")
    print(f"eval runs:    {job.dir / 'evals'}")
    return 0 if record["status"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
