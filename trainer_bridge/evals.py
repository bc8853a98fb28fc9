"""The evals view: one eval-run JSONL per validation step (prompts, samples, grader outputs) and diffs of two."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradekit.graders import BatchResult

from .data import Row

__all__ = [
    "EVAL_FIELDS",
    "EvalChange",
    "EvalRunError",
    "diff_eval_runs",
    "eval_run_path",
    "eval_steps",
    "read_eval_run",
    "write_eval_run",
]


def eval_run_path(root: Path, step: int) -> Path:
    """Where the eval run of `step` lives under a run's `evals/` folder."""
    return root / f"step-{step:06d}.jsonl"


def write_eval_run(path: Path, step: int, parts: Iterable[tuple[list[Row], list[str], BatchResult]]) -> None:
    """Write one line per validation sample: its row, the model's output and the grader's verdict.

    `parts` are consecutive pieces of the validation set: rows, their samples (the same number per row), results.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    first = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for rows, samples, result in parts:
            per_row = len(samples) // len(rows)
            for i, text in enumerate(samples):
                row = rows[i // per_row]
                details = result[i].metadata.scores.get("error_details") or {}
                line = {
                    "step": step,
                    "index": first + i // per_row,
                    "sample_index": i % per_row,
                    "line": row.line,
                    "messages": row.messages,
                    "item": row.item,
                    "sample": text,
                    "reward": result.rewards[i],
                    "sub_rewards": {k: col[i] for k, col in result.sub_rewards.items()},
                    "errors": {grader: d.get("flag") for grader, d in details.items()},
                }
                f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            first += len(rows)
    tmp.replace(path)


#: The fields `diff_eval_runs` needs in every line of an eval run.
EVAL_FIELDS = ("index", "sample_index", "sample", "reward")


class EvalRunError(ValueError):
    """A file that is not an eval run (not JSON, or lines without the eval-run fields); names the file and line."""


def read_eval_run(path: Path) -> list[dict[str, Any]]:
    """Every line of an eval-run file; `EvalRunError` naming the file and line when it is not one."""
    lines = []
    hint = "an eval run is <run>/evals/step-N.jsonl"
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except (ValueError, RecursionError) as e:
                raise EvalRunError(f"{path}:{number}: not JSON ({e}); {hint}") from None
            missing = [k for k in EVAL_FIELDS if k not in line] if isinstance(line, dict) else list(EVAL_FIELDS)
            if missing:
                raise EvalRunError(
                    f"{path}:{number}: not an eval-run line (no {', '.join(repr(k) for k in missing)}); {hint}"
                )
            lines.append(line)
    return lines


def eval_steps(folder: Path) -> list[int]:
    """The steps that have an eval run in `folder` (a run's `evals/`), in order."""
    steps = []
    for file in folder.glob("step-*.jsonl"):
        number = file.stem.removeprefix("step-")
        if number.isdigit():
            steps.append(int(number))
    return sorted(steps)


@dataclass(frozen=True)
class EvalChange:
    """One validation sample whose output or reward differs between two eval runs."""

    index: int
    sample_index: int
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def reward_delta(self) -> float:
        """The reward after minus the reward before."""
        return float(self.after["reward"]) - float(self.before["reward"])


def diff_eval_runs(before: Path, after: Path) -> Iterator[EvalChange]:
    """The samples that changed output or reward between two eval runs of the same validation file."""
    old = {(r["index"], r["sample_index"]): r for r in read_eval_run(before)}
    for new in read_eval_run(after):
        key = (new["index"], new["sample_index"])
        prev = old.get(key)
        if prev is not None and (prev["sample"] != new["sample"] or prev["reward"] != new["reward"]):
            yield EvalChange(key[0], key[1], prev, new)
