"""GRPO: group-normalised advantages, the clipped policy-gradient loss with an optional KL term, and one update."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor
    from torch.optim import Optimizer
    from transformers import PreTrainedModel

    from ..models.policy import Policy, Rollout
    from .hyperparameters import LoopOptions

__all__ = ["group_advantages", "grpo_update", "policy_loss", "rewards_tensor"]


def _normalise(groups: Tensor, eps: float) -> Tensor:
    centred = groups - groups.mean(dim=1, keepdim=True)
    # A group where every sample got the same reward teaches nothing: its advantages are exactly 0.
    return centred / (groups.std(dim=1, keepdim=True, unbiased=False) + eps)


def group_advantages(rewards: Tensor, group_size: int, *, eps: float = 1e-4) -> Tensor:
    """Each reward minus its group's mean, over the group's std (rows of one prompt are contiguous).

    A NaN reward is a sample that got no reward: the group's mean and std are over its other samples only
    (exactly as if it had never been drawn), and its own advantage is 0.
    """
    import torch

    groups = rewards.view(-1, group_size)
    graded = ~torch.isnan(groups)
    if bool(graded.all()):
        return _normalise(groups, eps).view(-1)
    out = torch.zeros_like(groups)
    for g in range(groups.shape[0]):
        keep = graded[g]
        if bool(keep.any()):
            out[g, keep] = _normalise(groups[g, keep].view(1, -1), eps).view(-1)
    return out.view(-1)


def rewards_tensor(rewards: Sequence[float | None]) -> Tensor:
    """Rewards as a float32 tensor, NaN where a sample got no reward (None)."""
    import torch

    return torch.tensor([math.nan if r is None else r for r in rewards], dtype=torch.float32)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_epsilon: float = 0.2,
    ref_logp: Tensor | None = None,
    beta: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped surrogate per token, plus `beta` times the k3 KL estimate to the reference, token-averaged.

    `logp`, `old_logp`, `ref_logp` and `mask` are [samples, completion tokens]; `advantages` is [samples].
    """
    import torch

    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl_mean = 0.0
    tokens = mask.sum().clamp(min=1)
    if ref_logp is not None and beta > 0:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1.0
        per_token = per_token + beta * kl
        kl_mean = float((kl.detach() * mask).sum() / tokens)  # a statistic: no graph, no warning
    loss = (per_token * mask).sum() / tokens
    clip_fraction = float((((ratio - 1.0).abs() > clip_epsilon).float() * mask).sum() / tokens)
    return loss, {"clip_fraction": clip_fraction, "kl": kl_mean}


def grpo_update(
    policy: Policy,
    optimizer: Optimizer,
    graded: Sequence[tuple[Rollout, Sequence[float | None]]],
    *,
    group_size: int,
    options: LoopOptions,
    reference: PreTrainedModel | None = None,
) -> dict[str, float]:
    """One GRPO step on graded rollouts (each with one reward per sample, groups of `group_size` contiguous).

    Advantages are normalised within each group; `options.update_epochs` clipped policy-gradient updates follow,
    the loss a token-level mean over the whole batch. A sample whose reward is None got no reward: it is left out
    of its group's advantage and its tokens out of the loss; when no sample got one, nothing is updated.
    Returns the batch's `clip_fraction` and `kl`.
    """
    import torch

    stats = {"clip_fraction": 0.0, "kl": 0.0}
    prepared = []
    for rollout, rewards in graded:
        values = rewards_tensor(rewards)
        mask = rollout.completion_mask.float() * (~torch.isnan(values)).float().unsqueeze(1)
        prepared.append((rollout, group_advantages(values, group_size), mask))
    total_tokens = sum(float(mask.sum()) for _, _, mask in prepared)
    if total_tokens == 0:
        return stats
    policy.model.train()
    inputs = []
    for rollout, advantages, mask in prepared:
        old = ref = None
        if options.update_epochs > 1 or reference is not None:
            with torch.no_grad():
                if options.update_epochs > 1:
                    old = policy.token_logprobs(rollout, temperature=options.temperature)
                if reference is not None:
                    ref = policy.token_logprobs(rollout, temperature=options.temperature, model=reference)
        inputs.append((rollout, advantages, mask, old, ref))
    for _ in range(options.update_epochs):
        optimizer.zero_grad(set_to_none=True)
        for rollout, advantages, mask, old, ref in inputs:
            if not mask.any():
                continue
            logp = policy.token_logprobs(rollout, temperature=options.temperature)
            loss, part_stats = policy_loss(
                logp,
                logp.detach() if old is None else old,
                advantages,
                mask,
                clip_epsilon=options.clip_epsilon,
                ref_logp=ref,
                beta=options.kl_beta,
            )
            weight = float(mask.sum()) / total_tokens  # token-level mean over the whole batch
            (loss * weight).backward()
            for key, value in part_stats.items():
                stats[key] += value * weight / options.update_epochs
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), 1.0)
        optimizer.step()
    return stats
