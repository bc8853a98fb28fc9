"""The GRPO objective: group-normalised advantages and the clipped policy-gradient loss with an optional KL term."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["group_advantages", "policy_loss"]


def group_advantages(rewards: Tensor, group_size: int, *, eps: float = 1e-4) -> Tensor:
    """Each reward minus its group's mean, over the group's std (rows of one prompt are contiguous)."""
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    # A group where every sample got the same reward teaches nothing: its advantages are exactly 0.
    return (centred / (groups.std(dim=1, keepdim=True, unbiased=False) + eps)).view(-1)


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
        kl_mean = float((kl * mask).sum() / tokens)
    loss = (per_token * mask).sum() / tokens
    clip_fraction = float((((ratio - 1.0).abs() > clip_epsilon).float() * mask).sum() / tokens)
    return loss, {"clip_fraction": clip_fraction, "kl": kl_mean}
