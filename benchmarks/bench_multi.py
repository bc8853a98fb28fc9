"""`multi`: what `calculate_output` costs per sample next to what its sub-graders cost."""

from __future__ import annotations

import asyncio
import random

from common import best_of, table

from gradekit.graders import Batch, Env, Multi, StringCheck, TextSimilarity, run_batch
from gradekit.graders.formula import Formula

N = 200_000


def main() -> None:
    """Print per-sample costs of the sub-graders, the formula and the whole multi grader."""
    rng = random.Random(0)
    labels = ["yes", "no", "needs review"]
    words = ["policy", "requires", "encryption", "of", "customer", "data", "at", "rest", "in", "transit", "keys"]
    items, samples = [], []
    for _ in range(N):
        label, text = rng.choice(labels), " ".join(rng.sample(words, 8))
        items.append({"compliant": label, "explanation": text})
        samples.append({"output_text": "", "output_json": {"compliant": rng.choice(labels), "explanation": text}})
    string_check = StringCheck(
        name="compliant", input="{{ sample.output_json.compliant }}", reference="{{ item.compliant }}", operation="eq"
    )
    fuzzy = TextSimilarity(
        name="explanation",
        input="{{ sample.output_json.explanation }}",
        reference="{{ item.explanation }}",
        evaluation_metric="fuzzy_match",
    )
    multi = Multi(
        name="security_review",
        graders={"compliant": string_check, "explanation": fuzzy},
        calculate_output="0.7 * compliant + 0.3 * explanation",
    )
    env = Env()

    def sub(g: StringCheck | TextSimilarity) -> None:
        asyncio.run(g.grade_batch(Batch(samples, items), env))

    columns = {"compliant": [rng.random() for _ in range(N)], "explanation": [rng.random() for _ in range(N)]}
    formula = Formula(multi.calculate_output, names=columns)
    costs = {
        "string_check sub-grader": best_of(lambda: sub(string_check)),
        "text_similarity (fuzzy_match) sub-grader": best_of(lambda: sub(fuzzy)),
        "calculate_output formula": best_of(lambda: formula.evaluate_columns(columns, N)),
        "whole multi grader (run_batch)": best_of(lambda: run_batch(multi, samples, items)),
    }
    subs = costs["string_check sub-grader"] + costs["text_similarity (fuzzy_match) sub-grader"]
    rows = [[k, f"{v / N * 1e9:,.0f}", f"{v / subs:.2f}"] for k, v in costs.items()]
    print(f"### multi grader, {N:,} samples (ns per sample; share = cost / both sub-graders' cost)\n")
    print(table(["part", "ns/sample", "share"], rows))


if __name__ == "__main__":
    main()
