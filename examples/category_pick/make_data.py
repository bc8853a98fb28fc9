"""Regenerate the category-pick example files (train.jsonl, valid.jsonl) deterministically.

"Which of these is a fruit: chair, mango, cloud?", answered with the one word that fits. The prompt names the
allowed answers (three words, one of them in the category); validation asks about words no training question
uses, so a model that scores well there knows the categories rather than remembering answers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
INSTRUCTION = "Answer with one word from the list."
CATEGORIES = {
    "an animal": ["horse", "tiger", "rabbit", "eagle", "dolphin", "sheep", "wolf", "camel"],
    "a fruit": ["apple", "banana", "cherry", "mango", "grape", "lemon", "peach", "pear"],
    "a vehicle": ["truck", "bicycle", "train", "boat", "airplane", "bus", "tractor", "scooter"],
    "a color": ["red", "green", "blue", "yellow", "purple", "orange", "brown", "pink"],
    "a musical instrument": ["piano", "guitar", "violin", "drum", "flute", "trumpet", "harp", "cello"],
}
OTHERS = ["chair", "table", "cloud", "pencil", "window", "river", "book", "shoe", "spoon", "mountain", "lamp", "door"]
HELD_OUT = 2  # words of each category asked about only in validation


def row(category: str, answer: str, options: list[str], n: int) -> dict[str, object]:
    """One RFT row: the prompt messages plus the grader's fields (`answer`, `options`, `question_id`)."""
    question = f"Which of these is {category}: {', '.join(options)}?"
    messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": question}]
    return {"messages": messages, "answer": answer, "options": options, "question_id": f"C{n:04d}"}


def question(rng: random.Random, category: str, answer: str) -> tuple[str, str, list[str]]:
    """The category, the answer and three options: the answer and two words of no category, shuffled."""
    options = [answer, *rng.sample(OTHERS, 2)]
    rng.shuffle(options)
    return category, answer, options


def main() -> None:
    """Write 160 training rows and 30 validation rows (validation words never in a training question)."""
    rng = random.Random(17)
    train, valid = [], []
    for category, words in CATEGORIES.items():
        held, seen = words[:HELD_OUT], words[HELD_OUT:]
        valid += [question(rng, category, w) for w in held for _ in range(3)]
        train += [question(rng, category, rng.choice(seen)) for _ in range(32)]
    rng.shuffle(train)
    rng.shuffle(valid)
    for name, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        start = 0 if name == "train.jsonl" else 1000
        lines = [json.dumps(row(*r, start + i)) for i, r in enumerate(rows)]
        (HERE / name).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
