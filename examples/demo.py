"""`make demo`: grade the shipped security-review dataset and print the report (no network, no keys)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gradekit.graders import load_grader, run_batch
from gradekit.graders.aggregate import Aggregate

HERE = Path(__file__).parent / "security_review"


def read_jsonl(path: Path) -> list:
    """Every line of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(summary: dict, out=sys.stdout) -> None:
    """Print an aggregate summary as a small table."""
    n = summary["count"]
    print(f"samples graded      {n}", file=out)
    print(f"reward mean         {summary['reward_mean']:.4f}", file=out)
    print(f"reward std          {summary['reward_std']:.4f}", file=out)
    print("\nper-grader reward means", file=out)
    for name, g in summary["graders"].items():
        print(f"  {name:<18}{g['reward_mean']:.4f}", file=out)
    print("\nerrors (count, rate)", file=out)
    if not summary["errors"]:
        print("  none", file=out)
    for grader, flags in summary["errors"].items():
        for flag, c in flags.items():
            print(f"  {grader:<18}{flag:<28}{c['count']:>4}  {c['rate']:.1%}", file=out)


def main() -> None:
    """Grade the example samples against the example dataset."""
    grader = load_grader(HERE / "grader.json")
    items = read_jsonl(HERE / "valid.jsonl")
    samples = read_jsonl(HERE / "samples.jsonl")
    result = run_batch(grader, samples, items)
    agg = Aggregate()
    agg.add_batch(result)
    print(f"grader: {grader.name} ({grader.type}) on {HERE.name}/valid.jsonl\n")
    report(agg.summary())


if __name__ == "__main__":
    main()
