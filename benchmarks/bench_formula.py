"""Benchmark: ns per sample of `Formula.evaluate_columns` next to a hand-written Python lambda.

Run with ``python benchmarks/bench_formula.py [--samples N] [--repeat R]``; prints a markdown table.
The lambda does no error checking, so the ratio is the price of the checked, column-at-a-time evaluator.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence

from gradekit.graders.formula import Formula

Reference = Callable[..., float]

CASES: list[tuple[str, Reference]] = [
    (
        "0.7 * compliant + 0.3 * explained",
        lambda compliant, explained: 0.7 * compliant + 0.3 * explained,
    ),
    (
        "max(0, min(1, 0.5 * a + 0.3 * b ^ 2 - 0.2 * abs(c - 0.5))) / (1 + exp(-a))",
        lambda a, b, c: max(0.0, min(1.0, 0.5 * a + 0.3 * b**2 - 0.2 * abs(c - 0.5))) / (1 + math.exp(-a)),
    ),
]


def _best_ns(run: Callable[[], object], repeat: int) -> int:
    """The fastest of `repeat` timed calls, in nanoseconds."""
    best = None
    for _ in range(repeat):
        start = time.perf_counter_ns()
        run()
        elapsed = time.perf_counter_ns() - start
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best


def _columns(names: Sequence[str], n: int, seed: int) -> dict[str, list[float]]:
    """Sub-grader rewards in [0, 1], one column per name."""
    rng = random.Random(seed)
    return {name: [rng.random() for _ in range(n)] for name in names}


def main() -> None:
    """Time every case and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples per formula")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best is kept)")
    args = parser.parse_args()
    n = args.samples

    rows = []
    for source, reference in CASES:
        formula = Formula(source)
        names = reference.__code__.co_varnames[: reference.__code__.co_argcount]
        columns = _columns(names, n, seed=len(rows))
        ordered = [columns[name] for name in names]

        results, errors = formula.evaluate_columns(columns, n)
        expected = list(map(reference, *ordered))
        assert not errors, errors
        assert all(math.isclose(x, y, rel_tol=1e-12) for x, y in zip(results, expected, strict=True))

        gradekit_ns = _best_ns(lambda f=formula, c=columns: f.evaluate_columns(c, n), args.repeat)
        lambda_ns = _best_ns(lambda r=reference, o=ordered: list(map(r, *o)), args.repeat)
        rows.append((source, gradekit_ns / n, lambda_ns / n))

    print(f"`Formula.evaluate_columns` over {n:,} samples (best of {args.repeat}), Python lambda as reference\n")
    print("| formula | evaluate_columns (ns/sample) | lambda (ns/sample) | ratio |")
    print("|---|---:|---:|---:|")
    for source, gradekit_ns, lambda_ns in rows:
        print(f"| `{source}` | {gradekit_ns:.1f} | {lambda_ns:.1f} | {gradekit_ns / lambda_ns:.2f}x |")


if __name__ == "__main__":
    main()
