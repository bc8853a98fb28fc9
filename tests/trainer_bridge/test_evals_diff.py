"""`gradekit evals diff`: a table a person reads (prompt, both answers, both rewards, the graders that changed),
and `--jsonl` for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradekit.runtime.cli import main
from gradekit.trainer_bridge.loop.evals import DIFF_COLUMNS, compare_eval_runs, diff_table, format_diff

PROMPT = "Route this ticket: my invoice from March was charged twice, please refund the second charge"
LONG = "I think this belongs to technical support, because the customer mentions an invoice " * 2


def line(step: int, index: int, sample: str, team: float, flag: str | None = None, tone: float = 1.0) -> dict:
    """One eval-run line as `write_eval_run` writes it: a multi grader with `team` and `tone` sub-graders."""
    return {
        "step": step,
        "index": index,
        "sample_index": 0,
        "line": index + 1,
        "messages": [
            {"role": "system", "content": "You route support tickets."},
            {"role": "user", "content": [{"type": "text", "text": f"{PROMPT} (#{index})"}]},
        ],
        "item": {"team": "billing"},
        "sample": sample,
        "reward": 0.5 * team + 0.5 * tone,
        "sub_rewards": {"team": team, "tone": tone},
        "errors": {"team": flag, "tone": None},
    }


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    evals = tmp_path / "run" / "evals"
    before = write(
        evals / "step-000000.jsonl",
        [line(0, 0, "billing", 1.0), line(0, 1, LONG, 0.0), line(0, 2, "{{", 0.0, "invalid_variable_error")],
    )
    after = write(
        evals / "step-000004.jsonl",
        [line(4, 0, "billing", 1.0), line(4, 1, "billing", 1.0, tone=0.5), line(4, 2, "sales", 0.0)],
    )
    return before, after


def test_the_table_rows_hold_the_values(runs: tuple[Path, Path]) -> None:
    diff = compare_eval_runs(*runs)
    assert (diff.before_step, diff.after_step, diff.paired) == (0, 4, 3)
    assert (diff.reward_mean_before, diff.reward_mean_after) == (pytest.approx(2.0 / 3), pytest.approx(2.25 / 3))
    assert DIFF_COLUMNS == ("sample", "prompt", "before", "after", "reward", "graders changed")
    assert diff_table(diff.changes) == [
        ("1", f"{PROMPT} (#1)", LONG, "billing", "0.5 → 0.75", "team 0→1, tone 1→0.5"),
        ("2", f"{PROMPT} (#2)", "{{", "sales", "0.5 → 0.5", "team -invalid_variable_error"),
    ]


def test_the_printed_table(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    before, after = runs
    assert main(["evals", "diff", str(before), str(after)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert (
        lines[0]
        == "2 of 3 validation samples changed between step 0 (step-000000.jsonl) and step 4 (step-000004.jsonl)"
    )
    assert lines[-1] == "reward mean over the 3 samples: 0.6667 → 0.7500"
    header = lines[2]
    assert header.split() == ["sample", "prompt", "before", "after", "reward", "graders", "changed"]
    starts = [header.index(name) for name in DIFF_COLUMNS]
    blocks = "\n".join(lines[4:-2]).split("\n\n")  # one block of lines per changed sample
    assert len(blocks) == 2

    def column(block: str, i: int) -> str:
        """The words of column `i` of one block, its wrapped lines joined."""
        end = starts[i + 1] if i + 1 < len(starts) else None
        return " ".join(" ".join(row[starts[i] : end].split()) for row in block.splitlines()).strip()

    first, second = blocks
    assert column(first, 0) == "1" and column(second, 0) == "2"
    assert column(first, 3) == "billing" and column(second, 3) == "sales"
    assert column(first, 4) == "0.5 → 0.75" and column(second, 4) == "0.5 → 0.5"
    assert column(first, 5) == "team 0→1, tone 1→0.5"
    assert column(second, 5) == "team -invalid_variable_error"
    assert column(second, 2) == "{{"
    # long texts are wrapped in their column, never cut mid-word, and end with … when longer than 4 lines
    assert column(first, 1).startswith("Route this ticket: my invoice from March")
    assert LONG.split()[:8] == column(first, 2).split()[:8]
    assert all(len(row) <= 120 for row in lines)


def test_wrapped_cells_fit_a_narrow_terminal(runs: tuple[Path, Path]) -> None:
    text = format_diff(compare_eval_runs(*runs), width=80)
    assert all(len(row) <= 80 for row in text.splitlines()[1:-1])
    assert "…" in text  # the long answer did not fit in four lines of its narrow column


def test_nothing_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = [line(0, 0, "billing", 1.0)]
    before = write(tmp_path / "evals" / "step-000000.jsonl", same)
    after = write(tmp_path / "evals" / "step-000002.jsonl", [dict(same[0], step=2)])
    assert main(["evals", "diff", str(before), str(after)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "0 of 1 validation samples changed between step 0 (step-000000.jsonl) and step 2 (step-000002.jsonl)",
        "",
        "reward mean over the 1 samples: 1.0000 → 1.0000",
    ]


def test_jsonl_for_machines(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evals", "diff", *map(str, runs), "--jsonl"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x) for x in out.splitlines()] == [
        {"index": 1, "sample_index": 0, "reward_delta": 0.25, "before": LONG, "after": "billing"},
        {"index": 2, "sample_index": 0, "reward_delta": 0.0, "before": "{{", "after": "sales"},
    ]
    assert err == "2 samples changed\n"
