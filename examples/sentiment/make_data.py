"""Regenerate the sentiment example files (train.jsonl, valid.jsonl) deterministically.

Short product and place reviews, each clearly positive or negative; the validation reviews use opinions that no
training review uses, so a model that scores well there reads the sentiment rather than remembering reviews.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
INSTRUCTION = "Classify the sentiment of the review. Answer with one word: positive or negative."
SUBJECTS = [
    "The hotel",
    "This phone",
    "The restaurant",
    "This laptop",
    "The movie",
    "This book",
    "The headphones",
    "The course",
    "This game",
    "The coffee shop",
]
OPINIONS = {
    "positive": [
        "was wonderful and I would come back",
        "exceeded every expectation I had",
        "is excellent value for the price",
        "made my whole week better",
        "works perfectly and looks great",
        "is the best I have tried in years",
        "was a delight from start to finish",
        "is fantastic, highly recommended",
        "was friendly, fast and pleasant",
        "is a joy to use every day",
        "impressed all of my friends",
        "was worth every penny",
    ],
    "negative": [
        "was awful and I want a refund",
        "broke after two days",
        "is a complete waste of money",
        "ruined my whole weekend",
        "was dirty, slow and rude",
        "is the worst I have tried in years",
        "was boring from start to finish",
        "is terrible, avoid it",
        "keeps crashing and freezing",
        "disappointed everyone I know",
        "was overpriced and cheaply made",
        "made me angry and I will never return",
    ],
}
HELD_OUT = 4  # opinions of each label seen only in validation


def row(label: str, subject: str, opinion: str, n: int) -> dict[str, object]:
    """One RFT row: the prompt messages plus the grader's fields (`label`, `review_id`)."""
    messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": f"{subject} {opinion}."}]
    return {"messages": messages, "label": label, "review_id": f"R{n:04d}"}


def main() -> None:
    """Write 160 training rows and 32 validation rows (disjoint opinions, both labels equally often)."""
    rng = random.Random(11)
    train, valid = [], []
    for label, opinions in OPINIONS.items():
        shuffled = opinions[:]
        rng.shuffle(shuffled)
        held, seen = shuffled[:HELD_OUT], shuffled[HELD_OUT:]
        valid_combos = list(itertools.product(SUBJECTS, held))
        train_combos = list(itertools.product(SUBJECTS, seen))
        rng.shuffle(valid_combos)
        rng.shuffle(train_combos)
        valid += [(label, *c) for c in valid_combos[:16]]
        train += [(label, *c) for c in train_combos[:80]]
    rng.shuffle(train)
    rng.shuffle(valid)
    for name, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        start = 0 if name == "train.jsonl" else 1000
        lines = [json.dumps(row(*r, start + i)) for i, r in enumerate(rows)]
        (HERE / name).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
