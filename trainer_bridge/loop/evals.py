"""The evals view: one eval-run JSONL per validation step (prompts, samples, grader outputs) and diffs of two."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradekit.graders import BatchResult

from .data import Row

__all__ = [
    "DIFF_COLUMNS",
    "EVAL_FIELDS",
    "EvalChange",
    "EvalDiff",
    "EvalRunError",
    "compare_eval_runs",
    "diff_eval_runs",
    "diff_table",
    "eval_run_path",
    "eval_steps",
    "format_diff",
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
                    # null when graded; else why there is no reward (`reward` is then 0.0, not a grade)
                    "no_reward": result.no_reward(i),
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

    @property
    def prompt(self) -> str:
        """The text of the sample's last user message ("" when the run kept no messages)."""
        for message in reversed(self.after.get("messages") or self.before.get("messages") or []):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return _text(message.get("content"))
        return ""

    @property
    def graders_changed(self) -> list[str]:
        """Each sub-grader whose reward or error flag changed: `name 0→1`, `name +flag`, `name -flag`."""
        old, new = self.before.get("sub_rewards") or {}, self.after.get("sub_rewards") or {}
        changed = [
            f"{name} {_short(old.get(name))}→{_short(new.get(name))}"
            for name in dict.fromkeys([*old, *new])
            if old.get(name) != new.get(name)
        ]
        old_flags, new_flags = self.before.get("errors") or {}, self.after.get("errors") or {}
        for name in dict.fromkeys([*old_flags, *new_flags]):
            was, now = old_flags.get(name), new_flags.get(name)
            if was != now:
                changed += [f"{name} -{was}"] if was else []
                changed += [f"{name} +{now}"] if now else []
        return changed


@dataclass(frozen=True)
class EvalDiff:
    """Two eval runs of one validation file compared: the changed samples, and every paired sample's rewards."""

    before_step: Any
    after_step: Any
    paired: int
    reward_mean_before: float
    reward_mean_after: float
    changes: list[EvalChange]


def _paired(before: Path, after: Path) -> Iterator[tuple[tuple[int, int], dict[str, Any], dict[str, Any]]]:
    old = {(r["index"], r["sample_index"]): r for r in read_eval_run(before)}
    for new in read_eval_run(after):
        key = (new["index"], new["sample_index"])
        if key in old:
            yield key, old[key], new


def diff_eval_runs(before: Path, after: Path) -> Iterator[EvalChange]:
    """The samples that changed output or reward between two eval runs of the same validation file."""
    for key, prev, new in _paired(before, after):
        if prev["sample"] != new["sample"] or prev["reward"] != new["reward"]:
            yield EvalChange(key[0], key[1], prev, new)


def compare_eval_runs(before: Path, after: Path) -> EvalDiff:
    """`diff_eval_runs` with the steps and the reward means of every sample both runs hold."""
    pairs = list(_paired(before, after))
    changes = [
        EvalChange(key[0], key[1], prev, new)
        for key, prev, new in pairs
        if prev["sample"] != new["sample"] or prev["reward"] != new["reward"]
    ]
    n = len(pairs)
    return EvalDiff(
        before_step=pairs[0][1].get("step") if pairs else None,
        after_step=pairs[0][2].get("step") if pairs else None,
        paired=n,
        reward_mean_before=sum(float(p["reward"]) for _, p, _ in pairs) / n if n else 0.0,
        reward_mean_after=sum(float(a["reward"]) for _, _, a in pairs) / n if n else 0.0,
        changes=changes,
    )


# --- the table a person reads ---------------------------------------------------------------------------------

#: The columns of `diff_table`, in order.
DIFF_COLUMNS = ("sample", "prompt", "before", "after", "reward", "graders changed")
#: Lines a wrapped cell keeps at most (the whole text is in `--jsonl`).
_CELL_LINES = 4
_GAP = "  "


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def _short(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return "-" if value is None else str(value)


def _answer(line: Mapping[str, Any]) -> str:
    sample = line["sample"]
    return sample if isinstance(sample, str) else json.dumps(sample, ensure_ascii=False)


def diff_table(changes: Iterable[EvalChange]) -> list[tuple[str, ...]]:
    """One row of `DIFF_COLUMNS` cells per changed sample: its number, prompt, both answers, both rewards
    (`before → after`), the graders that changed."""
    return [
        (
            str(c.index) if c.sample_index == 0 else f"{c.index}.{c.sample_index}",
            c.prompt,
            _answer(c.before),
            _answer(c.after),
            f"{_short(float(c.before['reward']))} → {_short(float(c.after['reward']))}",
            ", ".join(c.graders_changed) or "-",
        )
        for c in changes
    ]


#: Columns never wrapped (the sample number, the rewards); the graders column is at most `_GRADERS_WIDTH` wide
#: (a fifth of a narrow terminal),
#: and the prompt and the two answers share what the terminal has left, the answers first.
_FIXED = (0, 4)
_GRADERS_WIDTH = 32
_SHARES = {2: 0.35, 3: 0.35, 1: 0.3}
_MIN_WIDTH = 10


def _widths(rows: Sequence[tuple[str, ...]], width: int) -> list[int]:
    """Column widths filling `width` (each column at most as wide as its longest cell)."""
    natural = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(DIFF_COLUMNS)]
    widths = natural[:]
    widths[5] = min(natural[5], _GRADERS_WIDTH, max(_MIN_WIDTH, width // 5))
    room = width - sum(widths[i] for i in (*_FIXED, 5)) - len(_GAP) * (len(DIFF_COLUMNS) - 1)
    room = max(room, _MIN_WIDTH * len(_SHARES))
    for i, share in _SHARES.items():
        widths[i] = max(_MIN_WIDTH, min(natural[i], int(room * share)))
    spare = room - sum(widths[i] for i in _SHARES)
    for i in _SHARES:  # what a short column leaves goes to the longer ones
        grow = min(spare, natural[i] - widths[i])
        if grow > 0:
            widths[i] += grow
            spare -= grow
    return widths


def _cell(text: str, width: int) -> list[str]:
    lines = textwrap.wrap(" ".join(text.split()), width, max_lines=_CELL_LINES, placeholder=" …")
    return lines or [""]


def _table_lines(rows: Sequence[tuple[str, ...]], width: int) -> list[str]:
    widths = _widths(rows, width)
    lines = [_GAP.join(h.ljust(w) for h, w in zip(DIFF_COLUMNS, widths, strict=True)).rstrip()]
    lines.append(_GAP.join("-" * w for w in widths))
    for n, row in enumerate(rows):
        cells = [[text] if i in _FIXED else _cell(text, w) for i, (text, w) in enumerate(zip(row, widths, strict=True))]
        if n:
            lines.append("")
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)]
            lines.append(_GAP.join(parts).rstrip())
    return lines


def format_diff(diff: EvalDiff, *, width: int = 120, before_name: str = "before", after_name: str = "after") -> str:
    """The diff as a table a person reads: one block per changed sample, long texts wrapped, then the means."""
    steps = f"step {diff.before_step} ({before_name}) and step {diff.after_step} ({after_name})"
    lines = [f"{len(diff.changes)} of {diff.paired} validation samples changed between {steps}"]
    rows = diff_table(diff.changes)
    if rows:
        lines += ["", *_table_lines(rows, width)]
    mean = f"{diff.reward_mean_before:.4f} → {diff.reward_mean_after:.4f}"
    lines += ["", f"reward mean over the {diff.paired} samples: {mean}"]
    return "\n".join(lines) + "\n"
