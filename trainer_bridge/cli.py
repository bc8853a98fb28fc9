"""`gradekit train` (the integrated RFT loop) and `gradekit evals diff`, added to the `gradekit` command line.

`register(subparsers)` is found through the `gradekit.commands` entry point group.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from gradekit.runtime.cli import CLIError, load_grader_arg, number_arg
from gradekit.runtime.jsonl import write_text

__all__ = ["register", "speed_line"]

_HYPER = {
    "n_epochs": int,
    "batch_size": int,
    "learning_rate_multiplier": float,
    "eval_interval": int,
    "eval_samples": int,
    "compute_multiplier": float,
}
_OPTIONS = {
    "group_size": int,
    "max_completion_tokens": int,
    "learning_rate": float,
    "temperature": float,
    "kl_beta": float,
    "lora_rank": int,
}


def register(subparsers: Any) -> None:
    """Adds `train` and `evals diff` to the `gradekit` command line."""
    p = subparsers.add_parser(
        "train",
        help="reinforcement fine-tune a local model with a grader (GRPO; OpenAI's hyperparameters and metrics)",
        description="Train a local model on RFT JSONL with a grader as the reward; writes job.json, events.jsonl, "
        "eval runs, checkpoints and reward_curve.png to --output. Ctrl-C pauses (resume with --resume).",
    )
    p.add_argument("--grader", metavar="GRADER", help="a .json/.yaml grader file or module:function")
    p.add_argument("--train", metavar="FILE", help="training file (RFT JSONL: messages + item fields)")
    p.add_argument(
        "--valid", metavar="FILE", help="validation file (same format; default: validate on the training file)"
    )
    p.add_argument(
        "--model",
        help="smollm2-135m-instruct (the default when installed, else tiny-local), tiny-local, a local Hugging Face "
        "model folder or a Hub id (docs/models.md)",
    )
    for name, kind in _HYPER.items():
        p.add_argument(
            f"--{name.replace('_', '-')}", type=number_arg(kind, words=("auto",)), default="auto", metavar="N|auto"
        )
    p.add_argument("--reasoning-effort", default="default", choices=["default", "low", "medium", "high"])
    for name, kind in _OPTIONS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=number_arg(kind), metavar="N", help="gradekit loop option")
    p.add_argument("--seed", type=number_arg(int), help="random seed (default: a random one, recorded in job.json)")
    p.add_argument("--suffix", help="up to 40 characters, part of the fine-tuned model's name")
    p.add_argument("--output", type=Path, help="the run folder (default gradekit-runs/<job id>)")
    p.add_argument("--backend", metavar="NAME:SPEC", help="grade elsewhere, e.g. lambda:<function arn>")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a paused or killed run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    evals = subparsers.add_parser("evals", help="inspect the eval runs a training run wrote at validation steps")
    commands = evals.add_subparsers(dest="evals_command", metavar="COMMAND", required=True)
    d = commands.add_parser("diff", help="the validation samples whose output or reward changed between two steps")
    d.add_argument("before", type=Path, help="an eval-run JSONL (run/evals/step-N.jsonl)")
    d.add_argument("after", type=Path, help="a later eval-run JSONL of the same run")
    d.add_argument(
        "--jsonl",
        action="store_true",
        help="one JSON line per changed sample (index, sample_index, reward_delta, before, after) instead of the table",
    )
    d.set_defaults(func=_diff)


def _job(args: argparse.Namespace) -> Any:
    from gradekit.runtime.engine import load_backend

    from .loop.job import RFTJob

    if args.resume is not None:
        return RFTJob.resume(args.resume, progress=not args.quiet)
    missing = [f"--{n}" for n in ("grader", "train") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or give --resume RUN_DIR)")
    grader = load_grader_arg(args.grader)
    hyper = {name: getattr(args, name) for name in _HYPER}
    hyper["reasoning_effort"] = args.reasoning_effort
    options = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    return RFTJob(
        args.model,
        grader,
        args.train,
        args.valid if args.valid is not None else args.train,  # as the fine-tuning API: no file, the training one
        hyper,
        seed=args.seed,
        suffix=args.suffix,
        output_dir=args.output,
        options=options,
        backend=load_backend(args.backend, grader) if args.backend else None,
        progress=not args.quiet,
    )


def _train(args: argparse.Namespace) -> int:
    from gradekit.graders import GraderValidationError

    from .loop.job import JobError
    from .loop.report import format_history

    try:
        job = _job(args)
    except GraderValidationError:
        raise  # main prints it as the CLI's invalid-grader line
    except (ValueError, OSError, JobError) as e:
        raise CLIError(str(e), status=2) from None

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if job.pause_requested:
            job.cancel()
            print("\ncancelling...", file=sys.stderr)
        else:
            job.pause()
            print("\npausing at the end of this step (Ctrl-C again cancels)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        record = job.run()
    except JobError as e:
        raise CLIError(f"job {job.id} failed: {e.message}") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    history = [e["data"] for e in job.events if e["type"] == "metrics"]
    print(format_history(history))
    speed = speed_line(history)
    if speed:
        print(speed)
    print(f"job {record['id']}: {record['status']}")
    if record["status"] == "paused":
        print(f"resume with: gradekit train --resume {job.dir}")
    if record["fine_tuned_model"]:
        print(f"fine-tuned model: {record['fine_tuned_model']} ({job.dir / 'final'})")
    print(f"events: {job.dir / 'events.jsonl'}\nreward curve: {job.dir / 'reward_curve.png'}")
    return 0


def speed_line(history: list[dict[str, Any]]) -> str:
    """`speed: 12 steps, 10.52 s a step, sampling 85.1 tokens/s, training 540.2 tokens/s, 31.20 s a validation`."""
    from .loop.metrics import speed_summary

    s = speed_summary(history)
    if not s["steps"]:
        return ""
    parts = [f"speed: {s['steps']} steps, {s['step_s']:.2f} s a step"]
    if s["sampled_tokens_per_s"] is not None:
        parts.append(f"sampling {s['sampled_tokens_per_s']:.1f} tokens/s")
    if s["trained_tokens_per_s"] is not None:
        parts.append(f"training {s['trained_tokens_per_s']:.1f} tokens/s")
    if s["valid_s"] is not None:
        parts.append(f"{s['valid_s']:.2f} s a validation")
    return ", ".join(parts)


def _missing_run(path: Path) -> CLIError:
    """The error for an eval run that is not there, listing the steps its folder has."""
    from .loop.evals import eval_steps

    if path.is_dir():
        return CLIError(f"{path} is a directory; give an eval run, <run>/evals/step-N.jsonl")
    steps = eval_steps(path.parent) if path.parent.is_dir() else []
    if steps:
        return CLIError(f"{path}: no such eval run; {path.parent} has steps {', '.join(map(str, steps))}")
    return CLIError(f"{path}: no such file (and no eval runs, step-N.jsonl, in {path.parent})")


def _diff(args: argparse.Namespace) -> int:
    from .loop.evals import EvalRunError, compare_eval_runs, diff_eval_runs, format_diff

    for path in (args.before, args.after):
        if not path.is_file():
            raise _missing_run(path)
    try:
        if not args.jsonl:
            diff = compare_eval_runs(args.before, args.after)
            width = shutil.get_terminal_size((120, 24)).columns
            text = format_diff(diff, width=max(width, 80), before_name=args.before.name, after_name=args.after.name)
            write_text(sys.stdout, text)
            sys.stdout.flush()  # in one piece, now: a reader that stops early (`| head`) is main's quiet 141
            return 0
        changed = 0
        for c in diff_eval_runs(args.before, args.after):
            line = {
                "index": c.index,
                "sample_index": c.sample_index,
                "reward_delta": round(c.reward_delta, 6),
                "before": c.before["sample"],
                "after": c.after["sample"],
            }
            print(json.dumps(line, ensure_ascii=False))
            changed += 1
    except EvalRunError as e:
        raise CLIError(str(e)) from None
    print(f"{changed} samples changed", file=sys.stderr)
    return 0
