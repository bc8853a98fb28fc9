"""The evals view: one eval-run JSONL per validation step (prompts, samples, grader outputs) and diffs of two."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradekit.graders import BatchResult

from .data import Row

__all__ = ["EvalChange", "diff_eval_runs", "eval_run_path", "read_eval_run", "write_eval_run"]


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


def read_eval_run(path: Path) -> list[dict[str, Any]]:
    """Every line of an eval-run file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


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
