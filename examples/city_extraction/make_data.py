"""Regenerate the city-extraction example files (train.jsonl, valid.jsonl) deterministically.

A sentence about a person and a city; the answer is the city, written alone. Validation sentences name cities
that no training sentence names, so a model that scores well there reads the city out of the sentence rather
than remembering answers, and no constant answer can score well.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
INSTRUCTION = "Which city does the sentence mention? Answer with the city only."
NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena"]
TEMPLATES = [
    "{name} flew to {city} last week for a conference.",
    "Last summer {name} moved to {city} with their family.",
    "{name} says the best coffee is in {city}.",
    "After the match, {name} took the night train to {city}.",
    "{name} grew up in {city} and still visits every year.",
    "The package for {name} was sent from {city} on Monday.",
    "{name} is looking for a flat in {city}.",
    "My cousin {name} works at a hospital in {city}.",
]
TRAIN_CITIES = [
    "Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Chicago", "Boston", "Dublin", "Oslo", "Lisbon",
    "Vienna", "Prague", "Warsaw", "Athens", "Cairo", "Toronto", "Sydney", "Seattle", "Munich",
]  # fmt: skip
VALID_CITIES = [
    "Amsterdam", "Barcelona", "Stockholm", "Helsinki", "Budapest", "Denver", "Montreal", "Melbourne",
    "Istanbul", "Nairobi", "Lima", "Manila", "Seoul", "Mumbai", "Zurich", "Glasgow",
]  # fmt: skip


def row(name: str, city: str, template: str, n: int) -> dict[str, object]:
    """One RFT row: the prompt messages plus the grader's fields (`city`, `sentence_id`)."""
    sentence = template.format(name=name, city=city)
    messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": sentence}]
    return {"messages": messages, "city": city, "sentence_id": f"S{n:04d}"}


def main() -> None:
    """Write 160 training rows and 32 validation rows (disjoint cities; each validation city twice)."""
    rng = random.Random(3)
    train = [(rng.choice(NAMES), rng.choice(TRAIN_CITIES), rng.choice(TEMPLATES)) for _ in range(160)]
    valid = [(rng.choice(NAMES), city, rng.choice(TEMPLATES)) for city in VALID_CITIES for _ in range(2)]
    rng.shuffle(valid)
    for name, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        start = 0 if name == "train.jsonl" else 1000
        lines = [json.dumps(row(*r, start + i)) for i, r in enumerate(rows)]
        (HERE / name).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
