"""The trainer step on its own (no run folder, events or checkpoints): the values of one step of known completions.

A scripted policy (the tiny model, whose `sample` returns chosen completions) makes every group known, so the
step's rewards, advantages, train mean, token counts and update can be checked against numbers worked out here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from gradekit.graders import grader, validate
from gradekit.trainer_bridge.loop.data import Row
from gradekit.trainer_bridge.loop.hyperparameters import LoopOptions, Resolved
from gradekit.trainer_bridge.loop.metrics import add_validation_time, estimated_finish, validation_steps_left
from gradekit.trainer_bridge.loop.trainer import Trainer, batch_rows
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy, Rollout

from .rft_task import rollout_of

TEAMS = ["billing", "account", "shipping", "technical"]
PROMPT = "where is my parcel"
EPS = 1e-4  # group_advantages' epsilon


class Scripted(Policy):
    """The tiny model, answering each `sample` call with the next list of completions of `script`."""

    script: list[list[str]]

    def sample(self, prompts: list[list[int]], n: int, **_: Any) -> Rollout:
        assert len(prompts) == 1, "one row per part in these tests"
        completions = self.script.pop(0)
        assert len(completions) == n
        return rollout_of(self, PROMPT, completions)


def _policy(script: list[list[str]]) -> Scripted:
    base = Policy.load(TINY_MODEL, texts=[" ".join(TEAMS), PROMPT, "no reward"], seed=0)
    policy = Scripted(base.model, base.tokenizer, base.name, base.base)
    policy.script = [list(s) for s in script]
    return policy


def _row(team: str) -> Row:
    return Row(messages=[{"role": "user", "content": PROMPT}], item={"team": team})


def _settings(*, batch_size: int = 2, total_steps: int = 5) -> Resolved:
    return Resolved(
        n_epochs=1,
        batch_size=batch_size,
        learning_rate_multiplier=1.0,
        eval_interval=1,
        eval_samples=4,
        compute_multiplier=1.0,
        reasoning_effort="default",
        group_size=4,
        steps_per_epoch=1,
        total_steps=total_steps,
        max_completion_tokens=3,
        learning_rate=1e-3,
    )


@grader(name="team")
def _team(sample: dict[str, Any], item: dict[str, Any]) -> float | None:
    """1 for the item's team, 0 for another; no reward at all for the answer `account`."""
    if sample["output_text"] == "account":
        return None
    return float(sample["output_text"] == item["team"])


OPTIONS = LoopOptions(group_size=4, temperature=1.0, grading_chunks=2)
EXACT = validate({"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
                  "reference": "{{ item.team }}", "operation": "eq"})  # fmt: skip


def test_a_step_of_known_groups_reports_their_mean_advantages_and_tokens() -> None:
    # Two rows (two parts of one row each): the first group gets one right answer of four, the second two of four.
    policy = _policy([TEAMS, ["billing", "billing", "shipping", "shipping"]])
    with Trainer(policy, EXACT, _settings(), OPTIONS) as trainer:
        outcome = trainer.step([_row("shipping"), _row("billing")], step=3)
    assert [part.result.rewards for part in outcome.parts] == [[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
    data = outcome.data
    assert data is not None
    assert data["train_reward_mean"] == pytest.approx(3 / 8)  # over the eight samples, not a mean of means
    assert data["train_reward_std"] == pytest.approx(math.sqrt(3 / 8 * 5 / 8))
    assert (data["step"], data["total_steps"]) == (3, 5)
    # Group 1: mean 0.25, population std sqrt(0.1875); group 2: mean 0.5, std 0.5.
    big, small = 0.75 / (math.sqrt(0.1875) + EPS), -0.25 / (math.sqrt(0.1875) + EPS)
    half = 0.5 / (0.5 + EPS)
    assert outcome.advantages == pytest.approx([small, small, big, small, half, half, -half, -half], rel=1e-6)
    # Each completion is its word and end-of-sequence: 2 sampled tokens; the prompt's tokens are trained too.
    assert outcome.sampled_tokens == 16 and data["gradekit"]["sampled_tokens"] == 16
    assert data["train_completion_tokens_mean"] == 2.0
    prompt_tokens = len(policy.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    assert outcome.trained_tokens == 8 * (prompt_tokens + 2) == data["gradekit"]["trained_tokens"]


def test_a_step_rates_its_tokens_by_the_seconds_it_recorded() -> None:
    policy = _policy([TEAMS, TEAMS])
    with Trainer(policy, EXACT, _settings(), OPTIONS) as trainer:
        outcome = trainer.step([_row("shipping"), _row("billing")])
    assert outcome.data is not None
    own, step = outcome.data["gradekit"], outcome.data["timing"]["step"]
    assert all(isinstance(own[k], float) and own[k] > 0 for k in ("generation_s", "update_s", "step_s"))
    assert own["sampled_tokens_per_s"] == pytest.approx(own["sampled_tokens"] / own["generation_s"], rel=1e-12)
    assert own["trained_tokens_per_s"] == pytest.approx(own["trained_tokens"] / own["update_s"], rel=1e-12)
    assert own["step_s"] >= own["generation_s"] + own["update_s"]  # the parts of the step, one after the other
    # OpenAI's names for the same seconds
    assert step == {"sampling": own["generation_s"], "training": own["update_s"], "full_iteration": own["step_s"]}


def test_a_sample_without_reward_is_left_out_of_its_group_and_the_mean() -> None:
    # `account` gets no reward: group 1 is graded on three samples (0, 1, 0), group 2 on two (1, 0).
    policy = _policy([TEAMS, ["account", "billing", "account", "shipping"]])
    with Trainer(policy, validate(_team), _settings(), OPTIONS) as trainer:
        outcome = trainer.step([_row("shipping"), _row("billing")])
    assert [part.result.rewards_or_none() for part in outcome.parts] == [
        [0.0, None, 1.0, 0.0],
        [None, 1.0, None, 0.0],
    ]
    data = outcome.data
    assert data is not None
    assert data["train_reward_mean"] == pytest.approx(2 / 5)  # the five graded samples, not / 8
    assert data["no_reward"]["team"] == {"count": 3, "rate": 3 / 8}
    third = math.sqrt(2 / 9) + EPS  # population std of (0, 1, 0)
    assert outcome.advantages == pytest.approx(
        [-1 / 3 / third, 0.0, 2 / 3 / third, -1 / 3 / third, 0.0, 0.5 / (0.5 + EPS), 0.0, -0.5 / (0.5 + EPS)],
        rel=1e-6,
    )


def test_a_step_where_nothing_got_a_reward_updates_nothing() -> None:
    policy = _policy([["account"] * 4, ["account"] * 4])
    before = [p.detach().clone() for p in policy.model.parameters()]
    with Trainer(policy, validate(_team), _settings(), OPTIONS) as trainer:
        outcome = trainer.step([_row("shipping"), _row("billing")])
        assert trainer.optimizer.state == {}  # AdamW never stepped
    assert outcome.data is None and outcome.trained_tokens == 0
    assert outcome.advantages == [0.0] * 8
    assert [r.no_reward(i) for r in outcome.results for i in range(4)] == ["not_applicable"] * 8
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))


def test_a_step_makes_the_rewarded_completion_more_likely() -> None:
    policy = _policy([TEAMS])
    rollout = rollout_of(policy, PROMPT, TEAMS)

    def logps() -> list[float]:
        with torch.no_grad():
            return policy.token_logprobs(rollout, temperature=1.0).sum(dim=1).tolist()

    before = logps()
    with Trainer(policy, EXACT, _settings(batch_size=1), OPTIONS) as trainer:
        trainer.step([_row("shipping")])
    change = [a - b for a, b in zip(logps(), before, strict=True)]
    assert change[2] > 0 and all(change[i] < change[2] for i in (0, 1, 3))


def test_evaluate_grades_eval_samples_per_row_without_training() -> None:
    policy = _policy([TEAMS, ["billing"] * 4, ["technical"] * 4])
    before = [p.detach().clone() for p in policy.model.parameters()]
    rng = torch.get_rng_state()
    with Trainer(policy, EXACT, _settings(batch_size=2), OPTIONS) as trainer:
        parts, valid = trainer.evaluate([_row("shipping"), _row("billing"), _row("shipping")], seed=7)
    assert [p.result.rewards for p in parts] == [[0.0, 0.0, 1.0, 0.0], [1.0] * 4, [0.0] * 4]
    assert valid["valid_reward_mean"] == pytest.approx(5 / 12)
    assert torch.equal(torch.get_rng_state(), rng)  # validation draws from its own generator
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))


def test_batches_are_a_seeded_permutation_per_epoch() -> None:
    rows = [_row(f"t{i}") for i in range(10)]
    kw = {"seed": 3, "batch_size": 4, "steps_per_epoch": 3}
    epoch1 = [batch_rows(rows, s, **kw) for s in (1, 2, 3)]
    assert [len(b) for b in epoch1] == [4, 4, 2]
    assert sorted(id(r) for b in epoch1 for r in b) == sorted(id(r) for r in rows)  # every row once
    assert batch_rows(rows, 2, **kw) == epoch1[1]  # the same seed, the same batch
    epoch2 = [batch_rows(rows, s, **kw) for s in (4, 5, 6)]
    assert [r.item for b in epoch2 for r in b] != [r.item for b in epoch1 for r in b]  # a new order each epoch


def test_the_finish_estimate_is_mean_step_time_times_steps_left_plus_validations() -> None:
    # Step 3 of 10, validation every 4 steps: steps 4, 8 and 10 (the last) validate.
    assert validation_steps_left(3, 10, 4) == 3
    assert validation_steps_left(8, 10, 4) == 1
    assert validation_steps_left(8, 8, 4) == 0
    assert validation_steps_left(0, 8, 2) == 4
    times = {"step": 3, "total_steps": 10, "eval_interval": 4}
    assert estimated_finish(1000.0, [2.0, 4.0], [10.0, 20.0], **times) == 1000 + 7 * 3 + 3 * 15
    assert estimated_finish(1000.5, [2.0], [], **times) == 1015  # rounded up
    assert estimated_finish(1000.0, [], [10.0], **times) is None  # no step timed yet
    assert estimated_finish(1000.0, [2.0], [10.0], step=10, total_steps=10, eval_interval=4) == 1000


def test_validation_time_is_added_to_the_step_in_both_namings() -> None:
    data: dict[str, Any] = {"timing": {"step": {"sampling": 1.0, "full_iteration": 3.0}}, "gradekit": {"step_s": 3.0}}
    add_validation_time(data, 2.5)
    assert data["timing"]["step"] == {"sampling": 1.0, "eval": 2.5, "full_iteration": 5.5}
    assert data["gradekit"] == {"step_s": 3.0, "valid_s": 2.5}
    first: dict[str, Any] = {"step": 0}
    add_validation_time(first, 1.5)
    assert first == {"step": 0, "timing": {"step": {"eval": 1.5, "full_iteration": 1.5}}, "gradekit": {"valid_s": 1.5}}
