"""Regenerate the ticket-routing example files deterministically.

train.jsonl and valid.jsonl hold the instruction and the ticket; train_fewshot.jsonl and valid_fewshot.jsonl hold
the same rows with four worked examples (a ticket and its team, as earlier turns) before the ticket, which a small
pretrained model needs to answer with a team name at all (docs/models.md).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
INSTRUCTION = (
    "Route the support ticket to one team: billing, account, shipping or technical. Answer with the team only."
)
PROBLEMS = {
    "billing": [
        "I was charged twice for one order",
        "my invoice shows the wrong amount",
        "the refund never reached my card",
        "my payment was declined",
        "there is an unknown fee on my bill",
        "the subscription price went up without notice",
    ],
    "account": [
        "I cannot log in",
        "my password reset link expired",
        "my profile is locked",
        "I want to change my email address",
        "two-factor codes never arrive",
        "someone took over my username",
    ],
    "shipping": [
        "my package has not arrived",
        "the courier left the parcel at the wrong door",
        "tracking has not updated for a week",
        "the delivery date keeps moving",
        "the box arrived damaged",
        "I need to change the delivery address",
    ],
    "technical": [
        "the app crashes on start",
        "the website shows an error page",
        "sync stops after the update",
        "the export button does nothing",
        "the screen freezes when I upload a photo",
        "notifications stopped working",
    ],
}
#: The worked examples of the few-shot files (user turn, assistant turn); none is a training or validation ticket.
EXAMPLES = [
    ("My credit card was billed for a plan I cancelled.", "billing"),
    ("I forgot the answer to my security question.", "account"),
    ("The courier says my address does not exist.", "shipping"),
    ("The page goes blank when I press save.", "technical"),
]
OPENERS = ["", "Hi,", "Hello team,", "Urgent:"]
CLOSERS = ["", "Please help.", "What should I do?", "Thanks."]


def row(team: str, opener: str, problem: str, closer: str, n: int, *, fewshot: bool = False) -> dict[str, object]:
    """One RFT row: the prompt messages (with the worked examples if `fewshot`) plus the grader's fields."""
    ticket = " ".join(p for p in (opener, problem[0].upper() + problem[1:] + ".", closer) if p)
    shown = [{"role": r, "content": t} for pair in EXAMPLES for r, t in zip(("user", "assistant"), pair, strict=True)]
    messages = [
        {"role": "developer", "content": INSTRUCTION},
        *(shown if fewshot else []),
        {"role": "user", "content": ticket},
    ]
    return {"messages": messages, "team": team, "ticket_id": f"T{n:04d}"}


def main() -> None:
    """Write 160 training rows and 32 validation rows (disjoint tickets, every team equally often), in both forms."""
    rng = random.Random(7)
    train, valid = [], []
    for team, problems in PROBLEMS.items():
        combos = list(itertools.product(OPENERS, problems, CLOSERS))
        rng.shuffle(combos)
        valid += [(team, *c) for c in combos[:8]]
        train += [(team, *c) for c in combos[8:48]]
    rng.shuffle(train)
    rng.shuffle(valid)
    for split, rows in (("train", train), ("valid", valid)):
        start = 0 if split == "train" else 1000
        for fewshot, name in ((False, f"{split}.jsonl"), (True, f"{split}_fewshot.jsonl")):
            lines = [json.dumps(row(*r, start + i, fewshot=fewshot)) for i, r in enumerate(rows)]
            (HERE / name).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
