"""One aggregator for every consumer (CLI report, Lambda metrics, trainer events): streaming, constant memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .base import Grader
from .errors import ERROR_FLAGS
from .results import BatchResult, RunResult, SampleNotes
from .safety import json_safe


@dataclass(slots=True)
class _Moments:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        # Welford's update: stable over millions of rewards.
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0


@dataclass
class Aggregate:
    """Reward mean/std, per-grader reward means, per-grader counts and rates of every error flag and of no reward.

    Reward means and stds are over the samples that got a reward: a sample without one (docs/no-reward.md) is
    counted in `no_reward`, never as a 0.
    """

    name: str = ""
    rewards: _Moments = field(default_factory=_Moments)
    graders: dict[str, _Moments] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    failed_samples: int = 0
    samples: int = 0
    #: grader (or `multi` key) -> samples it gave no reward; the aggregate's own name counts whole samples
    no_reward: dict[str, int] = field(default_factory=dict)
    no_reward_samples: int = 0
    #: the grader's `pass_threshold`: a sample that got a reward of at least this passes (as in OpenAI's evals)
    pass_threshold: float | None = None
    passed: int = 0

    @classmethod
    def for_grader(cls, grader: Grader) -> Aggregate:
        """An empty aggregate named for `grader`, counting passes when it has a `pass_threshold`."""
        return cls(name=grader.name, pass_threshold=getattr(grader, "pass_threshold", None))

    def add(self, reward: float, sub_rewards: dict[str, float], notes: SampleNotes | None) -> None:
        """Count one graded sample."""
        self.samples += 1
        missing = notes.unrewarded if notes is not None else {}
        if notes is not None and notes.no_reward is not None:
            self.no_reward_samples += 1
            if self.name not in missing:
                self.no_reward[self.name] = self.no_reward.get(self.name, 0) + 1
        else:
            self.rewards.add(reward)
            if self.pass_threshold is not None and reward >= self.pass_threshold:
                self.passed += 1
        for grader in missing:
            self.no_reward[grader] = self.no_reward.get(grader, 0) + 1
        for key, value in sub_rewards.items():
            if key not in missing:
                self.graders.setdefault(key, _Moments()).add(value)
        if notes is not None and notes.failures:
            self.failed_samples += 1
            for grader, (flag, _) in notes.failures.items():
                per = self.errors.setdefault(grader, {})
                per[flag] = per.get(flag, 0) + 1

    def add_result(self, result: RunResult) -> None:
        """Count one sample from its OpenAI-shaped result (e.g. read back from a results file)."""
        if not self.name:
            self.name = result.metadata.name
        notes = None
        details = result.metadata.scores.get("error_details")
        missing = result.metadata.no_reward
        if result.errors.any or missing is not None:
            notes = SampleNotes()
            if isinstance(details, dict) and details:
                for grader, failure in details.items():
                    notes.fail(grader, failure.get("flag", "other_error"), failure.get("message", ""), no_reward=False)
            else:
                for flag in result.errors.flags():
                    notes.fail(result.metadata.name, flag, "", no_reward=False)  # type: ignore[arg-type]
            notes.sample_fault = missing is None and result.errors.any
            notes.unrewarded = dict(missing.graders) if missing is not None else {}
        self.add(result.reward, {k: float(v) for k, v in result.sub_rewards.items()}, notes)

    def add_batch(self, result: BatchResult) -> None:
        """Count every sample of a batch result."""
        if not self.name:
            self.name = result.name
        keys = list(result.sub_rewards)
        cols = [result.sub_rewards[k] for k in keys]
        for i, reward in enumerate(result.rewards):
            self.add(reward, {k: c[i] for k, c in zip(keys, cols, strict=True)}, result.notes[i])

    @property
    def count(self) -> int:
        """Samples counted."""
        return self.samples

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (encodable as UTF-8); `errors[grader][flag]` and `no_reward[grader]` hold `count`
        and `rate`; reward means and stds are over the samples that got a reward, and so is the pass rate
        (`passed`, present when a `pass_threshold` is set)."""
        n = self.count
        passing = {}
        if self.pass_threshold is not None:
            graded = self.rewards.n
            passing = {
                "pass_threshold": self.pass_threshold,
                "passed": {"count": self.passed, "rate": self.passed / graded if graded else 0.0},
            }
        return json_safe(
            {
                "count": n,
                "reward_mean": self.rewards.mean,
                "reward_std": self.rewards.std,
                "graders": {k: {"reward_mean": m.mean, "reward_std": m.std} for k, m in self.graders.items()},
                "errors": {
                    grader: {
                        flag: {"count": flags[flag], "rate": flags[flag] / n if n else 0.0}
                        for flag in ERROR_FLAGS
                        if flag in flags
                    }
                    for grader, flags in self.errors.items()
                },
                "failed_samples": self.failed_samples,
                "failed_rate": self.failed_samples / n if n else 0.0,
                "no_reward": {g: {"count": c, "rate": c / n if n else 0.0} for g, c in self.no_reward.items()},
                "no_reward_samples": self.no_reward_samples,
                "no_reward_rate": self.no_reward_samples / n if n else 0.0,
                **passing,
            }
        )  # type: ignore[no-any-return]
