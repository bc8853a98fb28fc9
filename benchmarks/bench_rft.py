"""The integrated RFT loop on the demo task: reward rise, the step split, and steps/s beside TRL's GRPOTrainer.

1. The demo (examples/demo.py settings, fixed seed): valid_reward_mean at step 0 and at the end, and when it had
   risen by 0.3 (target: within 10 minutes on 2 cores).
2. The mean step split into generation, grading (seconds the grading took, and seconds the step waited for
   it after generating) and update (target: grading at most 5% of the step with deterministic graders).
3. The same warm-started tiny model, batch (8 prompts x 8 samples, 4 new tokens), learning rate and reward
   (the same grader through `to_trl`) on TRL's GRPOTrainer and on our loop: steps per second of each.
4. The same on SmolLM2-135M-Instruct (issue 13's figure), when it is installed: a few steps only (each is
   seconds on 2 cores; GRADEKIT_BENCH_SMOLLM2_STEPS, default 3, 0 skips it), 4 prompts x 4 samples, 8 new
   tokens: TRL's `trainer.train()` against our trainer step (`Trainer.step`, the loop without the job's
   events, checkpoints and validations), each by wall and CPU seconds. `python bench_rft.py smollm2` runs
   this part alone.
"""

from __future__ import annotations

import json
import os
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
from gradekit.trainer_bridge.models.catalogue import SMOLLM2, available  # noqa: E402
from gradekit.trainer_bridge.models.policy import Policy  # noqa: E402

COMPARE_STEPS = 40  # two epochs of the demo's training file at batch 8
SMOLLM2_STEPS = int(os.environ.get("GRADEKIT_BENCH_SMOLLM2_STEPS", "3"))  # each step is seconds on 2 cores
SMOLLM2_SHAPE = {"prompts": 4, "group_size": 4, "max_completion_tokens": 8, "learning_rate": 1e-5}


def run_demo(root: Path) -> tuple[RFTJob, float]:
    """The demo's job in `root`; returns it and its wall time."""
    base = demo.base_model(root / "base")
    job = demo.demo_job(base, root / "run")
    start = time.perf_counter()
    job.run()
    return job, time.perf_counter() - start


def trl_steps_per_second(base: Path, root: Path) -> float:
    """GRPOTrainer on the demo's base model and data: steps per second over COMPARE_STEPS steps."""
    seconds, _ = trl_run(
        base,
        root,
        steps=COMPARE_STEPS,
        prompts=8,
        group=8,
        tokens=demo.OPTIONS["max_completion_tokens"],
        lr=demo.OPTIONS["learning_rate"],
    )
    return COMPARE_STEPS / seconds


def trl_run(
    model: str | Path, root: Path, *, steps: int, prompts: int, group: int, tokens: int, lr: float
) -> tuple[float, float]:
    """GRPOTrainer on `model` and the demo's data: wall and CPU seconds of `trainer.train()` for `steps` steps."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(line) for line in (demo.TASK / "train.jsonl").read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"], "team": r["team"]} for r in rows])
    policy = Policy.load(model)
    config = GRPOConfig(
        output_dir=str(root / "trl"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=prompts * group,  # completions per step
        num_generations=group,
        max_completion_length=tokens,
        max_steps=steps,
        learning_rate=lr,
        temperature=1.0,
        logging_steps=steps,
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
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    return time.perf_counter() - wall, time.process_time() - cpu


def trainer_run(model: str, *, steps: int, prompts: int, group: int, tokens: int, lr: float) -> dict[str, float]:
    """Our trainer step (`Trainer`, no job around it) on `model` and the demo's data: seconds and token rates."""
    import torch

    from gradekit.graders import validate
    from gradekit.trainer_bridge.loop.data import load_rows
    from gradekit.trainer_bridge.loop.hyperparameters import LoopOptions, Resolved
    from gradekit.trainer_bridge.loop.trainer import Trainer

    rows = load_rows(demo.TASK / "train.jsonl")
    policy = Policy.load(model)
    settings = Resolved(
        n_epochs=1,
        batch_size=prompts,
        learning_rate_multiplier=1.0,
        eval_interval=steps,
        eval_samples=1,
        compute_multiplier=1.0,
        reasoning_effort="default",
        group_size=group,
        steps_per_epoch=steps,
        total_steps=steps,
        max_completion_tokens=tokens,
        learning_rate=lr,
    )
    options = LoopOptions(group_size=group, max_completion_tokens=tokens, learning_rate=lr, temperature=1.0)
    torch.manual_seed(demo.SEED)
    grader = validate(json.loads((demo.TASK / "grader.json").read_text()))
    own = []
    with Trainer(policy, grader, settings, options) as trainer:
        wall, cpu = time.perf_counter(), time.process_time()
        for step in range(steps):
            outcome = trainer.step(rows[step * prompts : (step + 1) * prompts], step=step + 1)
            assert outcome.data is not None
            own.append(outcome.data["gradekit"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "sampling": sum(g["sampled_tokens"] for g in own) / sum(g["generation_s"] for g in own),
        "training": sum(g["trained_tokens"] for g in own) / sum(g["update_s"] for g in own),
        "update_share": sum(g["update_s"] for g in own) / sum(g["step_s"] for g in own),
    }


def smollm2_rows(root: Path) -> list[list[str]] | None:
    """TRL's GRPOTrainer and our trainer step on SmolLM2-135M-Instruct, SMOLLM2_STEPS steps each; None: skipped.

    Both are timed by wall and by CPU seconds of the process: on a machine shared with other work the wall
    time of each depends on what else ran meanwhile; the CPU seconds are the work each did.
    """
    if SMOLLM2_STEPS <= 0 or SMOLLM2 not in available():
        return None
    shape = {
        "steps": SMOLLM2_STEPS,
        "prompts": SMOLLM2_SHAPE["prompts"],
        "group": SMOLLM2_SHAPE["group_size"],
        "tokens": SMOLLM2_SHAPE["max_completion_tokens"],
        "lr": SMOLLM2_SHAPE["learning_rate"],
    }
    trl_wall, trl_cpu = trl_run(SMOLLM2, root, **shape)
    ours = trainer_run(SMOLLM2, **shape)
    n = SMOLLM2_STEPS
    return [
        [
            "TRL GRPOTrainer",
            f"{n / trl_wall:.3f}",
            f"{trl_wall / n:.1f} s",
            f"{trl_cpu / n:.1f} s",
            "1.00x / 1.00x",
            "-",
        ],
        [
            "gradekit `Trainer.step`",
            f"{n / ours['wall']:.3f}",
            f"{ours['wall'] / n:.1f} s",
            f"{ours['cpu'] / n:.1f} s",
            f"{trl_wall / ours['wall']:.2f}x / {trl_cpu / ours['cpu']:.2f}x",
            f"sampling {ours['sampling']:.0f} tok/s, training {ours['training']:.0f} tok/s, "
            f"update {ours['update_share']:.0%} of the step",
        ],
    ]


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


def print_smollm2(root: Path) -> None:
    """Print the SmolLM2 table (or why it was skipped)."""
    smollm2 = smollm2_rows(root)
    if smollm2 is None:
        print(f"{SMOLLM2}: skipped (not installed, or GRADEKIT_BENCH_SMOLLM2_STEPS=0)")
        return
    print(f"{SMOLLM2}, {SMOLLM2_STEPS} steps of {SMOLLM2_SHAPE}:")
    head = ["trainer", "steps/s", "a step (wall)", "a step (CPU)", "speed vs TRL (wall / CPU)", "ours"]
    print(table(head, smollm2))


def main() -> None:
    """Print the tables (`smollm2` as the argument: the SmolLM2 table alone)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if sys.argv[1:] == ["smollm2"]:
            print_smollm2(root / "smollm2")
            return
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
        keys = ("step_s", "generation_s", "grading_s", "grading_wait_s", "update_s")
        timings = [e["data"]["gradekit"] for e in data if "step_s" in e["data"].get("gradekit", {})]
        mean: dict[str, Any] = {k: sum(t[k] for t in timings) / len(timings) for k in keys}
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
        print()
        print_smollm2(root / "smollm2")


if __name__ == "__main__":
    main()
