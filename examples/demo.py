"""`make demo`: grade the shipped security-review dataset and print the report (no network, no keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradekit.graders import load_grader, run_batch
from gradekit.graders.aggregate import Aggregate
from gradekit.runtime.report import print_summary

HERE = Path(__file__).parent / "security_review"


def read_jsonl(path: Path) -> list[Any]:
    """Every line of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    """Grade the example samples against the example dataset."""
    grader = load_grader(HERE / "grader.json")
    result = run_batch(grader, read_jsonl(HERE / "samples.jsonl"), read_jsonl(HERE / "valid.jsonl"))
    agg = Aggregate()
    agg.add_batch(result)
    print_summary(agg.summary(), title=f"grader: {grader.name} ({grader.type}) on {HERE.name}/valid.jsonl")


if __name__ == "__main__":
    main()
