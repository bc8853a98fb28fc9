"""One aggregator for every consumer (CLI report, Lambda metrics, trainer events): streaming, constant memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
    """Reward mean/std, per-grader reward means, and per-grader counts and rates of every error flag."""

    name: str = ""
    rewards: _Moments = field(default_factory=_Moments)
    graders: dict[str, _Moments] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    failed_samples: int = 0

    def add(self, reward: float, sub_rewards: dict[str, float], notes: SampleNotes | None) -> None:
        """Count one graded sample."""
        self.rewards.add(reward)
        for key, value in sub_rewards.items():
            self.graders.setdefault(key, _Moments()).add(value)
        if notes is not None and notes.failures:
            self.failed_samples += 1
            for grader, (flag, _) in notes.failures.items():
                per = self.errors.setdefault(grader, {})
                per[flag] = per.get(flag, 0) + 1

    def add_result(self, result: RunResult) -> None:
        """Count one sample from its OpenAI-shaped result (e.g. read back from a results file)."""
        notes = None
        details = result.metadata.scores.get("error_details")
        if result.errors.any:
            notes = SampleNotes()
            if isinstance(details, dict) and details:
                for grader, failure in details.items():
                    notes.fail(grader, failure.get("flag", "other_error"), failure.get("message", ""))
            else:
                for flag in result.errors.flags():
                    notes.fail(result.metadata.name, flag, "")  # type: ignore[arg-type]
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
        return self.rewards.n

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (encodable as UTF-8); `errors[grader][flag]` holds `count` and `rate`."""
        n = self.count
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
            }
        )  # type: ignore[no-any-return]
