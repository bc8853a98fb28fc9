"""Values of one training step, computed apart from a run: GRPO advantages, the loss, the update's direction, the
and metrics of a known batch.
"""

from __future__ import annotations

import math

import pytest
import torch

from gradekit.graders import run_batch, validate
from gradekit.trainer_bridge.loop.grpo import group_advantages, grpo_update, policy_loss
from gradekit.trainer_bridge.loop.hyperparameters import LoopOptions
from gradekit.trainer_bridge.loop.metrics import train_metrics, valid_metrics
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy

from .rft_task import GRADER, rollout_of


def test_group_advantages_of_known_groups() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 1.0, 0.0])
    advantages = group_advantages(rewards, 4).tolist()
    # Group 1: mean 0.25, population std sqrt(0.1875) = 0.4330127; + eps 1e-4.
    big, small = 0.75 / (math.sqrt(0.1875) + 1e-4), -0.25 / (math.sqrt(0.1875) + 1e-4)
    assert advantages[:4] == pytest.approx([big, small, small, small], rel=1e-6)
    assert advantages[0] == pytest.approx(1.731651, rel=1e-6)
    assert advantages[4:8] == [0.0, 0.0, 0.0, 0.0]  # every sample scored the same: nothing to learn
    # Group 3: mean 0.5, std 0.5.
    assert advantages[8:] == pytest.approx([-0.5 / 0.5001, 0.5 / 0.5001, 0.5 / 0.5001, -0.5 / 0.5001], rel=1e-6)


def test_policy_loss_at_ratio_one_is_minus_the_token_mean_advantage() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.5]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # 3 completion tokens
    loss, stats = policy_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), mask)
    assert float(loss) == pytest.approx((-1.0 - 1.0 + 1.0) / 3)
    assert stats == {"clip_fraction": 0.0, "kl": 0.0}


def test_a_grpo_update_makes_the_rewarded_completions_more_likely() -> None:
    words = ["billing", "account", "shipping", "technical"]
    policy = Policy.load(TINY_MODEL, texts=[" ".join(words), "where is my parcel"], seed=0)
    rollout = rollout_of(policy, "where is my parcel", words)
    rewards = [0.0, 0.0, 1.0, 0.0]  # only "shipping" is right
    options = LoopOptions(group_size=4, temperature=1.0)

    def logps() -> list[float]:
        with torch.no_grad():
            return policy.token_logprobs(rollout, temperature=1.0).sum(dim=1).tolist()

    before = logps()
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3, weight_decay=0.0)
    stats = grpo_update(policy, optimizer, [(rollout, rewards)], group_size=4, options=options)
    after = logps()
    change = [a - b for a, b in zip(after, before, strict=True)]
    assert change[2] > 0  # the rewarded completion gained probability ...
    assert all(change[i] < change[2] for i in (0, 1, 3))  # ... more than any other
    assert stats == {"clip_fraction": 0.0, "kl": 0.0}


def test_train_and_valid_metrics_are_over_every_sample_of_the_step() -> None:
    grader = validate(GRADER)
    item = {"team": "billing"}
    # Two graded parts of one step: team (the reward) 1, 1, 1, 0 and then 0; mentions_team 1, 1, 1, 1 and then 0.
    first = run_batch(grader, ["billing", "billing", "billing", "the billing team"], [item] * 4)
    second = run_batch(grader, ["shipping"], [item])
    assert first.rewards == [1.0, 1.0, 1.0, 0.0] and second.rewards == [0.0]
    timing = {"generation_s": 1.0}
    data = train_metrics(
        grader,
        [first, second],
        step=3,
        total_steps=8,
        completion_tokens=[2, 2, 2, 4, 1],
        stats={"clip_fraction": 0.25, "kl": 0.5},
        timing=timing,
    )
    assert data["train_reward_mean"] == pytest.approx(0.6)  # 3 of 5 samples; not the mean of the parts' means
    assert data["train_reward_std"] != pytest.approx(0.6)
    assert data["graders"] == {
        "ticket_routing": {"train_reward_mean": pytest.approx(0.6)},
        "team": {"train_reward_mean": pytest.approx(0.6)},
        "mentions_team": {"train_reward_mean": pytest.approx(0.8)},
    }
    assert (data["step"], data["total_steps"], data["kl"], data["clip_fraction"]) == (3, 8, 0.5, 0.25)
    assert data["train_completion_tokens_mean"] == pytest.approx(11 / 5)
    assert data["timing"] == {"step": {"sampling": 1.0}}  # OpenAI's names; gradekit's own under "gradekit"
    assert data["gradekit"] == {"generation_s": 1.0, "sampled_tokens": 11, "sampled_tokens_per_s": 11.0}
    assert data["errors"]["team"]["invalid_variable_error"] == {"count": 0, "rate": 0.0}

    valid = valid_metrics(grader, [second, first])
    assert valid["valid_reward_mean"] == pytest.approx(0.6)
    assert valid["graders"]["mentions_team"] == {"valid_reward_mean": pytest.approx(0.8)}
