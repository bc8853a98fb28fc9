"""GRPO by value (`trainer_bridge/loop/grpo.py`): advantages with and without rewards, the clipped loss and its KL
term, and one update's gradient on a policy whose log-probabilities are its parameters (no model to load)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from gradekit.trainer_bridge.loop.grpo import group_advantages, grpo_update, policy_loss, rewards_tensor
from gradekit.trainer_bridge.loop.hyperparameters import LoopOptions

EPS = 1e-4


def test_rewards_tensor_is_float32_with_nan_for_no_reward() -> None:
    values = rewards_tensor([1, None, 0.25])
    assert values.dtype == torch.float32
    assert values[0].item() == 1.0 and math.isnan(values[1].item()) and values[2].item() == 0.25


def test_advantages_are_over_the_rewarded_samples_of_each_group() -> None:
    nan = math.nan
    rewards = torch.tensor([1.0, nan, 0.0, nan, nan, nan, 0.3, nan, nan, 0.0, 1.0, 0.0])
    got = group_advantages(rewards, 3).tolist()
    # group 1: 1 and 0 (mean 0.5, std 0.5); group 2: none; group 3: 0.3 alone; group 4: 0, 1, 0
    assert got[:3] == pytest.approx([0.5 / (0.5 + EPS), 0.0, -0.5 / (0.5 + EPS)], rel=1e-6)
    assert got[3:9] == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    std = math.sqrt(2 / 9)
    assert got[9:] == pytest.approx([-1 / 3 / (std + EPS), 2 / 3 / (std + EPS), -1 / 3 / (std + EPS)], rel=1e-6)
    # the same groups without the no-reward samples give the same advantages
    assert group_advantages(torch.tensor([1.0, 0.0]), 2).tolist() == pytest.approx(got[0:3:2], rel=1e-6)


def test_advantages_use_the_given_eps_and_the_population_std() -> None:
    got = group_advantages(torch.tensor([3.0, 1.0]), 2, eps=1.0).tolist()
    assert got == pytest.approx([0.5, -0.5])  # (3 - 2) / (1 + 1)
    assert group_advantages(torch.tensor([3.0, 1.0, math.nan]), 3, eps=1.0).tolist() == pytest.approx([0.5, -0.5, 0])


def test_advantages_of_several_fully_rewarded_groups_are_per_group() -> None:
    got = group_advantages(torch.tensor([1.0, 0.0, 3.0, 1.0]), 2).tolist()
    # group 1: mean 0.5, std 0.5; group 2: mean 2, std 1
    assert got == pytest.approx([0.5 / (0.5 + EPS), -0.5 / (0.5 + EPS), 1 / (1 + EPS), -1 / (1 + EPS)], rel=1e-6)


def test_the_clipped_surrogate_per_token() -> None:
    # ratios 1.5, 0.5, 0.5, 1.5 against advantages +1, +1, -1, -1 (epsilon 0.2)
    old = torch.zeros(4, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5], [0.5], [1.5]]))
    loss, stats = policy_loss(logp, old, torch.tensor([1.0, 1.0, -1.0, -1.0]), torch.ones(4, 1))
    # the pessimistic term each: -min(1.5, 1.2), -min(0.5, 0.8), -min(-0.5, -0.8), -min(-1.5, -1.2)
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 0.8 + 1.5) / 4, rel=1e-6)
    assert stats == {"clip_fraction": 1.0, "kl": 0.0}


def test_the_clip_fraction_counts_masked_in_tokens_beyond_epsilon_only() -> None:
    logp = torch.log(torch.tensor([[1.0, 1.5, 1.1, 3.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 4th token (ratio 3) is padding
    loss, stats = policy_loss(logp, torch.zeros(1, 4), torch.tensor([2.0]), mask, clip_epsilon=0.2)
    assert stats["clip_fraction"] == pytest.approx(1 / 3)
    assert float(loss) == pytest.approx(-(2.0 + 2.4 + 2.2) / 3, rel=1e-6)
    # a ratio of exactly 1 is not clipped, even with no room at all
    _, stats = policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), clip_epsilon=0)
    assert stats["clip_fraction"] == 0.0


def test_the_kl_term_is_k3_to_the_reference_token_averaged() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    mask = torch.ones(1, 2)
    delta = math.log(0.5)  # ref - logp of the first token; 0 for the second
    k3 = math.exp(delta) - delta - 1.0
    loss, stats = policy_loss(logp, logp, torch.tensor([1.0]), mask, ref_logp=ref, beta=0.5)
    assert stats["kl"] == pytest.approx(k3 / 2, rel=1e-6)
    assert float(loss) == pytest.approx((-1.0 * 2 + 0.5 * k3) / 2, rel=1e-6)
    # beta 0 leaves the KL out entirely, reference or not; and no reference means no KL
    loss0, stats0 = policy_loss(logp, logp, torch.tensor([1.0]), mask, ref_logp=ref, beta=0.0)
    assert stats0["kl"] == 0.0 and float(loss0) == pytest.approx(-1.0)
    loss1, stats1 = policy_loss(logp, logp, torch.tensor([1.0]), mask, beta=0.5)
    assert stats1["kl"] == 0.0 and float(loss1) == pytest.approx(-1.0)


def test_the_kl_of_padding_tokens_is_left_out() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.05]]))  # the padding token is far from the reference
    delta = math.log(0.5)
    _, stats = policy_loss(logp, logp, torch.tensor([0.0]), torch.tensor([[1.0, 0.0]]), ref_logp=ref, beta=1.0)
    assert stats["kl"] == pytest.approx(math.exp(delta) - delta - 1.0, rel=1e-6)


def test_an_all_padding_batch_has_zero_loss_not_nan() -> None:
    loss, stats = policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([1.0]), torch.zeros(1, 2))
    assert float(loss) == 0.0 and stats == {"clip_fraction": 0.0, "kl": 0.0}


# --- grpo_update on a policy whose token log-probabilities are its parameters --------------------------------


class Table(torch.nn.Module):
    """A "model" whose parameter is the token log-probability table of every sample of every part."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.logp = torch.nn.Parameter(values.clone())


@dataclass
class Part:
    """A rollout's stand-in: its rows of the table and its completion mask."""

    rows: slice
    completion_mask: torch.Tensor


class TablePolicy:
    """`grpo_update`'s view of a policy: `model` and `token_logprobs`."""

    def __init__(self, values: torch.Tensor) -> None:
        self.model = Table(values)
        self.calls: list[tuple[Any, bool, bool]] = []  # (temperature, with a model given, under no_grad)

    def token_logprobs(self, rollout: Part, *, temperature: float, model: Any = None) -> torch.Tensor:
        self.calls.append((temperature, model is not None, not torch.is_grad_enabled()))
        return (model or self.model).logp[rollout.rows].clone()  # a copy: the optimizer changes the table in place


def _update(
    policy: TablePolicy,
    graded: list[tuple[Part, list[float | None]]],
    *,
    reference: Any = None,
    group_size: int = 2,
    **options: Any,
) -> tuple[dict[str, float], torch.Tensor]:
    """One update with plain SGD at rate 1: returns the stats and the parameter's change (minus the gradient)."""
    before = policy.model.logp.detach().clone()
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=1.0)
    stats = grpo_update(
        policy,  # type: ignore[arg-type]
        optimizer,
        graded,  # type: ignore[arg-type]
        group_size=group_size,
        options=LoopOptions(temperature=0.7, **options),
        reference=reference,  # type: ignore[arg-type]
    )
    return stats, policy.model.logp.detach() - before


def test_the_update_is_a_token_mean_over_the_whole_batch() -> None:
    policy = TablePolicy(torch.full((4, 3), -1.0))
    policy.model.eval()
    first = Part(slice(0, 2), torch.tensor([[1, 1, 0], [1, 1, 0]]))  # 4 tokens, rewards 1 and 0
    second = Part(slice(2, 4), torch.tensor([[1, 1, 1], [1, 0, 0]]))  # 4 tokens, rewards 0 and 1
    stats, change = _update(policy, [(first, [1.0, 0.0]), (second, [0.0, 1.0])])
    a = 0.5 / (0.5 + EPS)  # each group's advantages are +a and -a
    # d loss / d logp of a token is -advantage / 8 (the batch's 8 tokens), whichever part it is in
    expected = torch.tensor([[a, a, 0], [-a, -a, 0], [-a, -a, -a], [a, 0, 0]]) / 8
    assert torch.allclose(change, expected, rtol=1e-5, atol=1e-7)
    assert stats == {"clip_fraction": 0.0, "kl": 0.0}
    assert policy.model.training
    assert policy.calls == [(0.7, False, False), (0.7, False, False)]  # one epoch: no old log-probs to compute


def test_samples_without_a_reward_are_left_out_of_advantages_and_tokens() -> None:
    policy = TablePolicy(torch.full((4, 2), -1.0))
    first = Part(slice(0, 2), torch.ones(2, 2, dtype=torch.long))
    second = Part(slice(2, 4), torch.ones(2, 2, dtype=torch.long))
    # the second part has no reward at all: skipped; the first's tokens (4) are the whole batch
    _, change = _update(policy, [(first, [1.0, 0.0]), (second, [None, None])])
    a = 0.5 / (0.5 + EPS)
    assert torch.allclose(change, torch.tensor([[a, a], [-a, -a], [0, 0], [0, 0]]) / 4, rtol=1e-5, atol=1e-7)
    # one sample without a reward in a group of two: the other is alone, advantage 0; nothing moves
    policy = TablePolicy(torch.full((2, 2), -1.0))
    _, change = _update(policy, [(Part(slice(0, 2), torch.ones(2, 2, dtype=torch.long)), [None, 1.0])])
    assert torch.equal(change, torch.zeros(2, 2))


def test_no_reward_anywhere_updates_nothing() -> None:
    policy = TablePolicy(torch.full((2, 2), -1.0))
    policy.model.eval()
    part = Part(slice(0, 2), torch.ones(2, 2, dtype=torch.long))
    stats, change = _update(policy, [(part, [None, None])], update_epochs=2, kl_beta=0.5)
    assert stats == {"clip_fraction": 0.0, "kl": 0.0}
    assert torch.equal(change, torch.zeros(2, 2)) and not policy.model.training and policy.calls == []


# policy_loss reads the KL of a tensor that requires grad with float(): torch warns (reported to grpo.py's owner)
def test_the_kl_gradient_is_clipped_to_norm_one_and_stats_are_token_weighted() -> None:
    policy = TablePolicy(torch.tensor([[-3.0], [-3.0]]))
    reference = Table(torch.tensor([[0.0], [-3.0]]))  # the first token is e^3 times likelier to the reference
    part = Part(slice(0, 2), torch.ones(2, 1, dtype=torch.long))
    stats, change = _update(policy, [(part, [1.0, 1.0])], reference=reference, kl_beta=1.0)
    # equal rewards: advantages 0; the KL's gradient on the first token is (1 - e^3) / 2, over norm 1
    assert torch.allclose(change, torch.tensor([[1.0], [0.0]]), atol=1e-6)
    k3 = math.exp(3) - 3 - 1
    assert stats["kl"] == pytest.approx(k3 / 2, rel=1e-5) and stats["clip_fraction"] == 0.0
    assert policy.calls == [(0.7, True, True), (0.7, False, False)]  # the reference's under no_grad
    # within the norm, the gradient is not rescaled
    policy = TablePolicy(torch.tensor([[-1.0], [-1.0]]))
    reference = Table(torch.tensor([[-0.5], [-1.0]]))
    _, change = _update(policy, [(part, [1.0, 1.0])], reference=reference, kl_beta=1.0)
    assert change[0, 0].item() == pytest.approx((math.exp(0.5) - 1) / 2, rel=1e-5) and change[1, 0].item() == 0.0


def test_several_epochs_clip_against_the_first_log_probs_and_average_the_stats() -> None:
    policy = TablePolicy(torch.tensor([[-1.0], [-1.0]]))
    part = Part(slice(0, 2), torch.ones(2, 1, dtype=torch.long))
    stats, change = _update(policy, [(part, [1.0, 0.0])], update_epochs=3, clip_epsilon=0.2)
    a = 0.5 / (0.5 + EPS)
    # epoch 1 at ratio 1 moves each log-prob by a/2 (ratio e^0.5 or e^-0.5 afterwards: clipped, no gradient)
    assert torch.allclose(change, torch.tensor([[a / 2], [-a / 2]]), rtol=1e-5)
    assert stats["clip_fraction"] == pytest.approx(2 / 3, rel=1e-6)  # 0, then 1, then 1, over 3 epochs
    assert stats["kl"] == 0.0
    assert policy.calls[0] == (0.7, False, True)  # the old log-probs, under no_grad
    assert len(policy.calls) == 4


def test_the_kl_stat_is_weighted_by_each_parts_tokens() -> None:
    policy = TablePolicy(torch.full((2, 3), -1.0))
    reference = Table(torch.tensor([[0.0, -9.0, -9.0], [-2.0, -2.0, -2.0]]))
    short = Part(slice(0, 1), torch.tensor([[1, 0, 0]]))  # 1 token, its reference log-prob 1 higher
    long = Part(slice(1, 2), torch.tensor([[1, 1, 1]]))  # 3 tokens, each 1 lower
    stats, _ = _update(policy, [(short, [1.0]), (long, [0.0])], reference=reference, kl_beta=1.0, group_size=1)
    k_up, k_down = math.exp(1) - 1 - 1, math.exp(-1) + 1 - 1
    assert stats["kl"] == pytest.approx((k_up * 1 + k_down * 3) / 4, rel=1e-5)


def test_two_epochs_clip_the_second_against_the_first_log_probs() -> None:
    policy = TablePolicy(torch.tensor([[-1.0], [-1.0]]))
    part = Part(slice(0, 2), torch.ones(2, 1, dtype=torch.long))
    stats, change = _update(policy, [(part, [1.0, 0.0])], update_epochs=2, clip_epsilon=0.2)
    a = 0.5 / (0.5 + EPS)
    assert torch.allclose(change, torch.tensor([[a / 2], [-a / 2]]), rtol=1e-5)  # the second epoch is clipped
    assert stats["clip_fraction"] == pytest.approx(0.5, rel=1e-6)
    assert policy.calls == [(0.7, False, True), (0.7, False, False), (0.7, False, False)]
