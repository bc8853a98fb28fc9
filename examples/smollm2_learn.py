"""Reinforcement fine-tune SmolLM2-135M-Instruct on a shipped task, offline, on the CPU, and show that it learned.

    python examples/smollm2_learn.py sentiment   # review -> positive / negative (two labels)
    python examples/smollm2_learn.py city        # sentence -> the city it names (a short answer, many values)
    python examples/smollm2_learn.py category    # "which of these is a fruit: chair, mango, cloud?" -> mango
    python examples/smollm2_learn.py routing     # support ticket -> one of four teams (few-shot prompts)

Each task is a folder of this directory (a data generator, train.jsonl, valid.jsonl, the grader JSON). The run:

1. the best constant answer: every distinct reference answer of the validation set, every other allowed answer
   the items list, and all reference answers in one answer, graded on every validation row with the task's
   grader; the best mean is the score a model gets without reading the prompt, which a learned task must beat;
2. for `category`, a format-only warm start (as `make demo` does for its tiny model): a few supervised steps on
   the training prompts with an allowed answer picked at random as the target, never the right one on purpose,
   so the model answers in the format and RFT has a signal (the others start from the base model: a warm start
   with random answers can erase what the task needs, docs/models.md; `routing` reads the task's few-shot files,
   whose worked examples show the answer's form instead);
3. `RFTJob` with the task's hyperparameters and loop options (the rest "auto"), validation on every validation
   row (one sample at the sampling temperature) every few steps.

It prints `valid_reward_mean` at step 0 and at the end, the best constant, the wall time to reach step 0 + 0.25,
and the reward curve's path. Needs the model (docs/models.md). `GRADEKIT_DEMO_DIR` sets the output folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradekit.graders import run_batch
from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.loop.data import load_rows
from gradekit.trainer_bridge.loop.report import format_history
from gradekit.trainer_bridge.loop.warm_start import warm_start
from gradekit.trainer_bridge.models.catalogue import SMOLLM2
from gradekit.trainer_bridge.models.policy import Policy

HERE = Path(__file__).parent
RISE = 0.25  # the rise whose wall time is reported


@dataclass(frozen=True)
class Task:
    """A shipped task: its folder, grader file, the item field holding the answer, and the run's settings."""

    folder: str
    grader: str
    answer: str
    hyperparameters: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    warm_start: dict[str, Any] | None = None  # None: RFT starts from the base model itself
    train_rows: int | None = None  # the first rows of the training file used (None: all)
    files: tuple[str, str] = ("train.jsonl", "valid.jsonl")  # the task folder's training and validation files
    options_field: str | None = None  # an item field listing the row's allowed answers (the warm start's targets)
    seed: int = 1


TASKS = {
    "sentiment": Task(
        "sentiment",
        "grader.json",
        "label",
        {"n_epochs": 1, "batch_size": 4, "eval_interval": 4},
        {"max_completion_tokens": 4},
        train_rows=32,
    ),
    "city": Task(
        "city_extraction",
        "grader.json",
        "city",
        {"n_epochs": 1, "batch_size": 4, "eval_interval": 4},
        {"max_completion_tokens": 12, "temperature": 0.7},
        train_rows=80,
    ),
    "category": Task(
        "category_pick",
        "grader.json",
        "answer",
        {"n_epochs": 1, "batch_size": 4, "eval_interval": 4},
        {"max_completion_tokens": 4},
        warm_start={"steps": 8, "batch_size": 8, "learning_rate": 3e-5},
        train_rows=48,
        options_field="options",
    ),
    "routing": Task(
        "ticket_routing",
        "grader.json",
        "team",
        {"n_epochs": 1, "batch_size": 4, "eval_interval": 4},
        {"max_completion_tokens": 6},
        train_rows=96,
        files=("train_fewshot.jsonl", "valid_fewshot.jsonl"),
    ),
}


def task_rows(task: Task, name: str, limit: int | None = None) -> list[str]:
    """The first `limit` JSONL lines of the task's file `name`."""
    return (HERE / task.folder / name).read_text().splitlines()[:limit]


def best_constant(task: Task) -> tuple[str, float]:
    """The constant answer with the best mean reward on the validation set, and that reward (exactly graded)."""
    folder = HERE / task.folder
    grader = json.loads((folder / task.grader).read_text())
    items = [row.item for row in load_rows(folder / task.files[1])]
    answers = sorted({str(item[task.answer]) for item in items})
    listed = sorted({str(o) for item in items for o in item.get(task.options_field or "", [])} - set(answers))
    candidates = [*answers, *listed, ", ".join(answers)]
    scored = []
    for answer in candidates:
        rewards = run_batch(grader, [answer] * len(items), items).rewards
        scored.append((sum(rewards) / len(rewards), answer))
    reward, answer = max(scored)
    return answer, reward


def warm_started(task: Task, training_file: Path, path: Path) -> Path | str:
    """SmolLM2-135M-Instruct after the task's format-only warm start (random allowed answers), saved as a model
    folder; the catalogue name itself when the task has no warm start."""
    if task.warm_start is None:
        return SMOLLM2
    train = load_rows(training_file)
    policy = Policy.load(SMOLLM2)
    answers = sorted({str(row.item[task.answer]) for row in train})  # training answers only: never validation's
    rng = random.Random(0)
    if task.options_field is None:
        targets = [rng.choice(answers) for _ in train]
    else:  # one of the row's own allowed answers, at random
        targets = [str(rng.choice(row.item[task.options_field])) for row in train]
    warm_start(policy, train, targets, seed=0, **task.warm_start)
    policy.save(path)
    return path


def learn(name: str, out: Path) -> dict[str, Any]:
    """Run task `name` into folder `out`; returns the figures printed (step 0, end, best constant, times)."""
    task = TASKS[name]
    folder = HERE / task.folder
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    constant, constant_reward = best_constant(task)
    train, valid = out / "train.jsonl", out / "valid.jsonl"
    train.write_text("\n".join(task_rows(task, task.files[0], task.train_rows)) + "\n")
    valid.write_text("\n".join(task_rows(task, task.files[1])) + "\n")
    started, cpu_started = time.monotonic(), time.process_time()
    base = warm_started(task, train, out / "base-model")
    warm_s = time.monotonic() - started
    reached: dict[int, float] = {}

    def listen(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if event.get("type") == "metrics" and "valid_reward_mean" in data:
            reached[data["step"]] = time.monotonic() - started

    job = RFTJob(
        base,
        folder / task.grader,
        train,
        valid,
        task.hyperparameters,
        seed=task.seed,
        suffix=name,
        output_dir=out / "run",
        options=task.options,
        progress=sys.stderr.isatty(),
        listener=listen,
        model_name=SMOLLM2,
    )
    record = job.run()
    history = [e["data"] for e in job.events if e["type"] == "metrics"]
    valid = [(h["step"], h["valid_reward_mean"]) for h in history if "valid_reward_mean" in h]
    first, last = valid[0][1], valid[-1][1]
    to_rise = next((reached[s] for s, v in valid if v >= first + RISE), None)
    return {
        "task": name,
        "status": record["status"],
        "step0": first,
        "end": last,
        "best": max(v for _, v in valid),
        "steps": valid[-1][0],
        "valid_curve": valid,
        "best_constant": constant,
        "best_constant_reward": constant_reward,
        "warm_start_s": warm_s,
        "wall_s": time.monotonic() - started,
        "cpu_s": time.process_time() - cpu_started,
        "load": os.getloadavg(),
        "to_rise_s": to_rise,
        "history": history,
        "reward_curve": str(job.dir / "reward_curve.png"),
        "settings": {
            "hyperparameters": task.hyperparameters,
            "options": job.options.to_json(),
            "resolved": job.record["gradekit"]["resolved"],
            "warm_start": task.warm_start,
        },
    }


def report(result: dict[str, Any]) -> str:
    """The run's figures as printed lines."""
    rise = "not reached" if result["to_rise_s"] is None else f"{result['to_rise_s']:.0f} s"
    curve = ", ".join(f"{s}: {v:.3f}" for s, v in result["valid_curve"])
    return "\n".join(
        [
            format_history(result["history"]),
            f"valid_reward_mean at step 0: {result['step0']:.3f}",
            f"valid_reward_mean at the end (step {result['steps']}): {result['end']:.3f} (best {result['best']:.3f})",
            f"best constant answer {result['best_constant']!r}: {result['best_constant_reward']:.3f}",
            f"end - best constant: {result['end'] - result['best_constant_reward']:+.3f}; "
            f"end - step 0: {result['end'] - result['step0']:+.3f}",
            f"validation curve: {curve}",
            f"wall time: {result['wall_s']:.0f} s (of which the warm start {result['warm_start_s']:.0f} s); "
            f"to step 0 + {RISE}: {rise}; CPU time of this process {result['cpu_s']:.0f} s, "
            f"load average at the end {result['load'][0]:.1f} on {os.cpu_count()} cores",
            f"reward curve: {result['reward_curve']}",
        ]
    )


def main(argv: list[str]) -> int:
    """Run the task named on the command line and print its figures."""
    if len(argv) != 1 or argv[0] not in TASKS:
        print(f"usage: smollm2_learn.py {{{','.join(TASKS)}}}", file=sys.stderr)
        return 2
    name = argv[0]
    out = Path(os.environ.get("GRADEKIT_DEMO_DIR", f"gradekit-runs/smollm2-{name}"))
    result = learn(name, out)
    print(f"RFT of {SMOLLM2} on {name} ({TASKS[name].folder}/{TASKS[name].grader})\n")
    print(report(result))
    (out / "result.json").write_text(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
