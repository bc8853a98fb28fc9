"""The GRPO trainer step: a policy with its optimizer and reference model, sampling, grading and one update.

`Trainer` knows nothing of run folders, events, checkpoints or snapshots (the job runner, `RFTJob`, keeps those):
given a batch of rows it samples `group_size` completions of each, grades them and applies one GRPO update, and
returns the step's metrics event data with its timing and token counts. `evaluate` samples and grades validation
rows without training.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradekit.graders import BatchResult, Env, Grader
from gradekit.runtime.engine import Backend, Engine

from .batch_grading import BackgroundGrader, split_range
from .completions import to_sample
from .grpo import group_advantages, grpo_update, rewards_tensor
from .metrics import train_metrics, valid_metrics

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..models.policy import Policy, Rollout
    from .data import Row
    from .hyperparameters import LoopOptions, Resolved

__all__ = ["GradedPart", "StepOutcome", "Trainer", "batch_rows"]


@dataclass(frozen=True)
class GradedPart:
    """One graded part of a batch: its rows, their sampled completions (n per row, contiguous) and the grading."""

    rows: list[Row]
    rollout: Rollout
    result: BatchResult


@dataclass(frozen=True)
class StepOutcome:
    """What one training step did; `data` is its metrics event data, None when no sample got a reward."""

    data: dict[str, Any] | None
    parts: list[GradedPart]
    trained_tokens: int  # prompt and completion tokens of every sample (what the job's `trained_tokens` counts)
    sampled_tokens: int  # completion tokens generated
    advantages: list[float]  # each sample's GRPO advantage, in the parts' order (0 for a sample without a reward)

    @property
    def results(self) -> list[BatchResult]:
        """The grading results of the step's parts, in order."""
        return [part.result for part in self.parts]


def batch_rows(rows: Sequence[Row], step: int, *, seed: int, batch_size: int, steps_per_epoch: int) -> list[Row]:
    """The rows of training step `step` (from 1): each epoch is a seeded permutation of `rows`, cut into batches."""
    import torch

    epoch, position = divmod(step - 1, steps_per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(rows), generator=gen).tolist()
    return [rows[i] for i in order[position * batch_size : (position + 1) * batch_size]]


class Trainer:
    """Samples, grades and updates `policy` with GRPO, one batch of rows at a time (`step`); `close()` when done.

    `settings` give the group size, completion budget, prompt length, step count and learning rate multiplier;
    `options` the loop options (temperature, clipping, KL weight, grading chunks, base learning rate). With
    `options.kl_beta > 0` the KL term is to `reference`, by default a frozen copy of the policy as given.
    """

    def __init__(
        self,
        policy: Policy,
        grader: Grader,
        settings: Resolved,
        options: LoopOptions,
        *,
        reference: PreTrainedModel | None = None,
        env: Env | None = None,
        backend: Backend | None = None,
    ) -> None:
        import torch

        self.policy = policy
        self.grader = grader
        self.settings = settings
        self.options = options
        base_lr = settings.learning_rate or options.learning_rate
        trained = [p for p in policy.model.parameters() if p.requires_grad]  # with LoRA: the adapters only
        self.optimizer = torch.optim.AdamW(trained, lr=base_lr * settings.learning_rate_multiplier, weight_decay=0.0)
        if options.kl_beta > 0 and reference is None:
            reference = copy.deepcopy(policy.model).eval().requires_grad_(False)
        self.reference = reference if options.kl_beta > 0 else None
        self.grading = BackgroundGrader(Engine(grader, env=env, backend=backend))
        self._prompts: dict[int, tuple[Row, list[int]]] = {}

    def close(self) -> None:
        """Stop the background grading thread."""
        self.grading.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prompt_ids(self, row: Row) -> list[int]:
        """The row's prompt tokens (the last `max_prompt_length` when set: where the reply begins), rendered once."""
        cached = self._prompts.get(id(row))
        if cached is not None and cached[0] is row:
            return cached[1]
        ids = self.policy.prompt_ids(row)[-(self.settings.max_prompt_length or 0) :]  # `[-0:]`: the whole prompt
        self._prompts[id(row)] = (row, ids)
        return ids

    def generate_and_grade(self, rows: Sequence[Row], n: int) -> tuple[list[GradedPart], dict[str, float]]:
        """Sample `n` completions per row, a part at a time, grading each part while the next is generated.

        Every sample that got no reward is graded once more. Also returns the seconds spent generating
        (`generation_s`), grading (`grading_s`, overlapping generation) and waiting for grading (`grading_wait_s`).
        """
        generation = 0.0
        pending: list[tuple[list[Row], Rollout, list[Any], list[Any], Future[tuple[BatchResult, float]]]] = []
        for part in split_range(len(rows), self.options.grading_chunks):
            chunk = [rows[i] for i in part]
            start = time.perf_counter()
            rollout = self.policy.sample(
                [self.prompt_ids(r) for r in chunk],
                n,
                max_new_tokens=self.settings.max_completion_tokens,
                temperature=self.options.temperature,
            )
            generation += time.perf_counter() - start
            items = [r.item for r in chunk for _ in range(n)]
            samples = [to_sample(text, i) for i, text in enumerate(rollout.texts)]
            pending.append((chunk, rollout, samples, items, self.grading.submit(samples, items)))
        start = time.perf_counter()
        done, grading = [], 0.0
        for chunk, rollout, samples, items, future in pending:
            result, seconds = future.result()
            result, again = self.grading.regrade(samples, items, result)  # what got no reward, once more
            grading += seconds + again
            done.append(GradedPart(chunk, rollout, result))
        timing = {"generation_s": generation, "grading_s": grading, "grading_wait_s": time.perf_counter() - start}
        return done, timing

    def step(self, rows: Sequence[Row], *, step: int = 1, total_steps: int | None = None) -> StepOutcome:
        """One training step on `rows`: sample `group_size` completions each, grade, apply one GRPO update.

        When no sample got a reward (even graded twice) nothing is updated and the outcome's `data` is None.
        """
        started = time.perf_counter()
        group = self.settings.group_size
        parts, timing = self.generate_and_grade(rows, group)
        completion_tokens = [int(m.sum()) for part in parts for m in part.rollout.completion_mask]
        trained_tokens = sum(part.rollout.tokens for part in parts)
        rewards = [(part.rollout, part.result.rewards_or_none()) for part in parts]
        advantages = [a for _, column in rewards for a in group_advantages(rewards_tensor(column), group).tolist()]
        if all(r is None for _, column in rewards for r in column):
            return StepOutcome(None, parts, 0, sum(completion_tokens), advantages)
        update_start = time.perf_counter()
        stats = grpo_update(
            self.policy, self.optimizer, rewards, group_size=group, options=self.options, reference=self.reference
        )
        timing["update_s"] = time.perf_counter() - update_start
        timing["step_s"] = time.perf_counter() - started
        data = train_metrics(
            self.grader,
            [part.result for part in parts],
            step=step,
            total_steps=self.settings.total_steps if total_steps is None else total_steps,
            completion_tokens=completion_tokens,
            stats=stats,
            timing=timing,
            trained_tokens=trained_tokens,
        )
        return StepOutcome(data, parts, trained_tokens, sum(completion_tokens), advantages)

    def evaluate(self, rows: Sequence[Row], *, seed: int) -> tuple[list[GradedPart], dict[str, Any]]:
        """Sample `eval_samples` completions per validation row and grade them; the parts and `valid_metrics`.

        Samples come from their own generator seeded with `seed`, so evaluating never moves training's RNG.
        """
        import torch

        parts: list[GradedPart] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for piece in split_range(len(rows), math.ceil(len(rows) / self.settings.batch_size)):
                done, _ = self.generate_and_grade([rows[i] for i in piece], self.settings.eval_samples)
                parts.extend(done)
        return parts, valid_metrics(self.grader, [part.result for part in parts])
