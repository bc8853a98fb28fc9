"""`run_batch` with string_check on plain-path templates vs a hand-written loop and per-sample jinja2."""

from __future__ import annotations

import random

import jinja2.sandbox
from common import best_of, table

from gradekit.graders import StringCheck, run_batch

N = 1_000_000
JINJA_N = 50_000


def main() -> None:
    """Print throughput of the three ways, with ratios."""
    rng = random.Random(0)
    words = ["yes", "no", "needs review", "maybe"]
    samples = [rng.choice(words) for _ in range(N)]
    items = [{"answer": rng.choice(words), "id": i} for i in range(N)]
    g = StringCheck(name="eq", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq")

    def ours() -> list[float]:
        return run_batch(g, samples, items).rewards

    outputs = list(samples)  # pre-extracted strings: the hand loop does no template work at all
    answers = [it["answer"] for it in items]

    def hand_loop() -> list[float]:
        rewards = []
        for a, b in zip(outputs, answers, strict=True):
            rewards.append(1.0 if a == b else 0.0)
        return rewards

    env = jinja2.sandbox.SandboxedEnvironment()
    t_in, t_ref = env.from_string("{{ sample.output_text }}"), env.from_string("{{ item.answer }}")

    def jinja_loop() -> list[float]:
        rewards = []
        for s, it in zip(samples[:JINJA_N], items[:JINJA_N], strict=True):
            sample = {"output_text": s}
            rewards.append(1.0 if t_in.render(sample=sample, item=it) == t_ref.render(sample=sample, item=it) else 0.0)
        return rewards

    assert ours() == hand_loop()
    assert ours()[:JINJA_N] == jinja_loop()
    t_ours, t_hand = best_of(ours), best_of(hand_loop)
    t_jinja = best_of(jinja_loop, repeat=1) * N / JINJA_N
    rows = [
        ["gradekit run_batch", f"{N / t_ours:,.0f}", "1.00"],
        ["hand-written loop on pre-extracted strings", f"{N / t_hand:,.0f}", f"{t_hand / t_ours:.2f}"],
        ["per-sample jinja2 render (sandboxed)", f"{N / t_jinja:,.0f}", f"{t_jinja / t_ours:.2f}"],
    ]
    print(f"### string_check, {N:,} samples (rows/s; ratio = gradekit throughput / that row's)\n")
    print(table(["way", "rows/s", "gradekit ÷ this"], rows))
    print(
        f"\ngradekit vs hand loop: {t_hand / t_ours:.2f}x (target >= 0.5x); "
        f"vs jinja2: {t_jinja / t_ours:.1f}x (target >= 5x)"
    )


if __name__ == "__main__":
    main()
