"""The integrated RFT loop on the demo task: reward rise, the step split, and steps/s beside TRL's GRPOTrainer.

1. The demo (examples/demo.py settings, fixed seed): valid_reward_mean at step 0 and at the end, and when it had
   risen by 0.3 (target: within 10 minutes on 2 cores).
2. The mean step split into generation, grading (seconds the grading took, and seconds the step waited for
   it after generating) and update (target: grading at most 5% of the step with deterministic graders).
3. The same warm-started tiny model, batch (8 prompts x 8 samples, 4 new tokens), learning rate and reward
   (the same grader through `to_trl`) on TRL's GRPOTrainer and on our loop: steps per second of each.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import demo  # noqa: E402

from gradekit.trainer_bridge import RFTJob, to_trl  # noqa: E402
from gradekit.trainer_bridge.models.policy import Policy  # noqa: E402

COMPARE_STEPS = 40  # two epochs of the demo's training file at batch 8


def run_demo(root: Path) -> tuple[RFTJob, float]:
    """The demo's job in `root`; returns it and its wall time."""
    base = demo.base_model(root / "base")
    job = demo.demo_job(base, root / "run")
    start = time.perf_counter()
    job.run()
    return job, time.perf_counter() - start


def trl_steps_per_second(base: Path, root: Path) -> float:
    """GRPOTrainer on the demo's base model and data: steps per second over COMPARE_STEPS steps."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(line) for line in (demo.TASK / "train.jsonl").read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"], "team": r["team"]} for r in rows])
    policy = Policy.load(base)
    config = GRPOConfig(
        output_dir=str(root / "trl"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=64,  # completions per step: 8 prompts x 8 generations
        num_generations=8,
        max_completion_length=demo.OPTIONS["max_completion_tokens"],
        max_steps=COMPARE_STEPS,
        learning_rate=demo.OPTIONS["learning_rate"],
        temperature=1.0,
        logging_steps=COMPARE_STEPS,
        log_completions=False,
        report_to="none",
        save_strategy="no",
        seed=demo.SEED,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=policy.model,
        reward_funcs=to_trl(json.loads((demo.TASK / "grader.json").read_text())),
        args=config,
        train_dataset=dataset,
        processing_class=policy.tokenizer,
    )
    start = time.perf_counter()
    trainer.train()
    return COMPARE_STEPS / (time.perf_counter() - start)


def ours_steps_per_second(base: Path, root: Path) -> float:
    """Our loop on the same model and data: COMPARE_STEPS steps over the wall time of the whole job.

    The job also validates at step 0 and at its last step and writes a checkpoint and snapshots, which TRL's
    run does not: the comparison counts them against us.
    """
    job = demo.demo_job(
        base, root / "ours", hyperparameters={"n_epochs": 2, "batch_size": 8, "eval_interval": COMPARE_STEPS}
    )
    start = time.perf_counter()
    job.run()
    seconds = time.perf_counter() - start
    assert job.record["gradekit"]["resolved"]["total_steps"] == COMPARE_STEPS
    return COMPARE_STEPS / seconds


def main() -> None:
    """Print the three tables."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        job, seconds = run_demo(root / "demo")
        data = [e for e in job.events if e["type"] == "metrics"]
        valid = [(d["step"], d["valid_reward_mean"], e) for e in data if "valid_reward_mean" in (d := e["data"])]
        v0 = valid[0][1]
        started = data[0]["created_at"]
        risen = next(((s, v, e["created_at"] - started) for s, v, e in valid if v - v0 >= 0.3), None)
        print(
            table(
                ["valid_reward_mean at step 0", "at the end", "rise", "first +0.3 at", "demo wall time"],
                [
                    [
                        f"{v0:.3f}",
                        f"{valid[-1][1]:.3f}",
                        f"{valid[-1][1] - v0:+.3f}",
                        f"step {risen[0]}, {risen[2]} s" if risen else "never",
                        f"{seconds:.1f} s ({len(data) - 1} steps)",
                    ]
                ],
            )
        )
        timings = [e["data"]["timing"] for e in data if "timing" in e["data"]]
        mean: dict[str, Any] = {k: sum(t[k] for t in timings) / len(timings) for k in timings[0]}
        print()
        print(
            table(
                ["step (mean)", "generation", "grading (work)", "waiting for grading", "update", "grading share"],
                [
                    [
                        f"{mean['step_s'] * 1e3:.1f} ms",
                        f"{mean['generation_s'] * 1e3:.1f} ms",
                        f"{mean['grading_s'] * 1e3:.2f} ms",
                        f"{mean['grading_wait_s'] * 1e3:.3f} ms",
                        f"{mean['update_s'] * 1e3:.1f} ms",
                        f"{mean['grading_s'] / mean['step_s']:.1%} "
                        f"(exposed {mean['grading_wait_s'] / mean['step_s']:.2%})",
                    ]
                ],
            )
        )
        base = root / "demo" / "base"
        trl = trl_steps_per_second(base, root)
        ours = ours_steps_per_second(base, root)
        print()
        print(
            table(
                ["trainer", "steps/s", "ratio to TRL"],
                [["TRL GRPOTrainer", f"{trl:.2f}", "1.00x"], ["gradekit RFTJob", f"{ours:.2f}", f"{ours / trl:.2f}x"]],
            )
        )


if __name__ == "__main__":
    main()
