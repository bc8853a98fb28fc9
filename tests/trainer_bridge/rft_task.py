"""A small slice of the ticket-routing example and a warm-started tiny base model, for the RFT loop tests."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from gradekit.trainer_bridge.loop.data import load_rows
from gradekit.trainer_bridge.loop.warm_start import warm_start
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy, Rollout

TASK = Path(__file__).resolve().parents[2] / "examples" / "ticket_routing"
GRADER = json.loads((TASK / "grader.json").read_text())
FAST = {"max_completion_tokens": 3, "group_size": 4, "learning_rate": 2e-3}
WALL_CLOCK = ("timing", "gradekit")  # the metrics data's keys that hold seconds, rates and finish estimates


def write_task(root: Path, n_train: int = 16, n_valid: int = 8) -> tuple[Path, Path]:
    """The first rows of the example's training and validation files, copied under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, n in (("train.jsonl", n_train), ("valid.jsonl", n_valid)):
        lines = (TASK / name).read_text().splitlines()[:n]
        path = root / name
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def build_base(path: Path, train: Path, valid: Path) -> Path:
    """A tiny-local model that answers with some team name (format-only warm start)."""
    rows = load_rows(train) + load_rows(valid)
    policy = Policy.load(TINY_MODEL, texts=[t for r in rows for t in r.texts], seed=0)
    rng = random.Random(0)
    teams = ["account", "billing", "shipping", "technical"]
    warm_start(policy, rows, [rng.choice(teams) for _ in rows], steps=40)
    policy.save(path)
    return path


def metrics(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics events' data without wall-clock timings (what must match between two runs)."""
    return [{k: v for k, v in e["data"].items() if k not in WALL_CLOCK} for e in events if e["type"] == "metrics"]


def rollout_of(policy: Policy, prompt: str, completions: list[str]) -> Rollout:
    """A rollout of chosen completions (no sampling), each ending with end-of-sequence."""
    tok = policy.tokenizer
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    rows = [ids + tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in completions]
    assert len({len(r) for r in rows}) == 1
    input_ids = torch.tensor(rows)
    completion_mask = torch.ones((len(rows), len(rows[0]) - len(ids)), dtype=torch.long)
    return Rollout(input_ids, torch.ones_like(input_ids), completion_mask, len(ids), completions)
