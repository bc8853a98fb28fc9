"""`make demo`: reinforcement fine-tune a tiny local model on the ticket-routing task and watch the reward rise.

Runs on the CPU with no network and no keys. The base model is a small Qwen2 built from a config with a
word-level tokenizer over the task's text, given a short supervised warm start that teaches only the answer
format (a team name picked at random, not the right one), so it starts near chance (about 0.25) and RFT with
the grader in examples/ticket_routing/grader.json has to learn which team each ticket belongs to.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.loop.data import load_rows
from gradekit.trainer_bridge.loop.report import format_history
from gradekit.trainer_bridge.loop.warm_start import warm_start
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy

TASK = Path(__file__).parent / "ticket_routing"
OUT = Path(os.environ.get("GRADEKIT_DEMO_DIR", "gradekit-runs/demo"))
SEED = 1
HYPERPARAMETERS = {"n_epochs": 12, "batch_size": 8, "eval_interval": 20}
OPTIONS = {"max_completion_tokens": 4, "learning_rate": 1e-3, "group_size": 8}


def base_model(path: Path) -> Path:
    """Build the demo's base model: tiny-local plus a format-only warm start."""
    train = load_rows(TASK / "train.jsonl")
    valid = load_rows(TASK / "valid.jsonl")
    policy = Policy.load(TINY_MODEL, texts=[t for row in [*train, *valid] for t in row.texts], seed=0)
    teams = sorted({row.item["team"] for row in train})
    rng = random.Random(0)
    warm_start(policy, train, [rng.choice(teams) for _ in train], steps=60)
    policy.save(path)
    return path


def demo_job(
    base: Path, output_dir: Path, *, hyperparameters: dict[str, Any] = HYPERPARAMETERS, progress: bool = False
) -> RFTJob:
    """The demo's RFT job on `base` (benchmarks run it with other hyperparameters)."""
    return RFTJob(
        base,
        TASK / "grader.json",
        TASK / "train.jsonl",
        TASK / "valid.jsonl",
        hyperparameters,
        seed=SEED,
        suffix="ticket-routing",
        output_dir=output_dir,
        options=OPTIONS,
        progress=progress,
    )


def main() -> int:
    """Warm-start the base model, run the RFT job, print the validation table and where the outputs are."""
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    base = base_model(OUT / "base-model")
    job = demo_job(base, OUT / "run", progress=sys.stderr.isatty())
    record = job.run()
    history = [e["data"] for e in job.events if e["type"] == "metrics"]
    valid = [h["valid_reward_mean"] for h in history if "valid_reward_mean" in h]
    print(f"RFT of a tiny local model on {TASK.name} (grader: {job.grader.name}), seed {SEED}\n")
    print(format_history(history))
    print(f"valid_reward_mean: {valid[0]:.3f} -> {valid[-1]:.3f} (best {max(valid):.3f})")
    print(f"job {record['id']}: {record['status']}; fine-tuned model {record['fine_tuned_model']}")
    print(f"events:       {job.dir / 'events.jsonl'}")
    print(f"reward curve: {job.dir / 'reward_curve.png'}")
    print(f"eval runs:    {job.dir / 'evals'}")
    print(f"checkpoints:  {', '.join(str(c.step_number) for c in job.checkpoints)} (best three by valid_reward_mean)")
    return 0 if record["status"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
