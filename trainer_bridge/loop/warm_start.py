"""A short supervised warm start: teach a policy an answer format before RFT (the demos' base models)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..models.policy import Policy
from .data import Row

__all__ = ["warm_start"]


def warm_start(
    policy: Policy,
    rows: Sequence[Row],
    targets: Sequence[str],
    *,
    steps: int = 60,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train on `targets[i]` (then end-of-sequence) as the reply to `rows[i]`; returns the loss per step."""
    import torch

    tok = policy.tokenizer
    examples = []
    for row, target in zip(rows, targets, strict=True):
        prompt = policy.prompt_ids(row)
        reply = [*tok(target, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        examples.append((prompt, reply))
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=learning_rate)
    policy.model.train()
    losses = []
    for _ in range(steps):
        batch = rng.sample(examples, min(batch_size, len(examples)))
        width = max(len(p) + len(r) for p, r in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (p, r) in enumerate(batch):
            seq = p + r
            ids[i, width - len(seq) :] = torch.tensor(seq)
            mask[i, width - len(seq) :] = 1
            labels[i, width - len(r) :] = torch.tensor(r)  # loss on the reply only
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        loss = policy.model(input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
