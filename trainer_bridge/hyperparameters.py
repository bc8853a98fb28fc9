"""RFT hyperparameters with OpenAI's names and `"auto"`, and the concrete values a run resolves them to."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Hyperparameters", "LoopOptions", "Resolved"]

Auto = Literal["auto"]

#: How `reasoning_effort` scales the completion budget of a model that has no separate reasoning channel.
EFFORT_SCALE = {"default": 1.0, "low": 0.5, "medium": 1.0, "high": 2.0}


class Hyperparameters(BaseModel):
    """`method.reinforcement.hyperparameters` of an OpenAI RFT job; every field may be `"auto"`."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: int | Auto = Field("auto", description="passes over the training file")
    batch_size: int | Auto = Field("auto", description="prompts per training step")
    learning_rate_multiplier: float | Auto = Field("auto", description="multiplies the model's base learning rate")
    eval_interval: int | Auto = Field("auto", description="training steps between validation runs")
    eval_samples: int | Auto = Field("auto", description="samples per validation prompt")
    compute_multiplier: float | Auto = Field("auto", description="scales the samples drawn per prompt")
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"

    def resolve(self, n_train: int, options: LoopOptions | None = None) -> Resolved:
        """Concrete values for a training file of `n_train` rows (`"auto"` chosen as documented in the README)."""
        options = options or LoopOptions()
        for name in ("n_epochs", "batch_size", "eval_interval", "eval_samples"):
            value = getattr(self, name)
            if value != "auto" and value < 1:
                raise ValueError(f"hyperparameters.{name} must be at least 1 (got {value})")
        for name in ("learning_rate_multiplier", "compute_multiplier"):
            value = getattr(self, name)
            if value != "auto" and not value > 0:
                raise ValueError(f"hyperparameters.{name} must be positive (got {value})")
        if n_train < 1:
            raise ValueError("the training file has no rows")
        batch_size = min(8, n_train) if self.batch_size == "auto" else min(self.batch_size, n_train)
        n_epochs = 3 if self.n_epochs == "auto" else self.n_epochs
        steps_per_epoch = math.ceil(n_train / batch_size)
        total_steps = steps_per_epoch * n_epochs
        multiplier = 1.0 if self.compute_multiplier == "auto" else self.compute_multiplier
        lr_mult = 1.0 if self.learning_rate_multiplier == "auto" else self.learning_rate_multiplier
        return Resolved(
            n_epochs=n_epochs,
            batch_size=batch_size,
            learning_rate_multiplier=lr_mult,
            eval_interval=max(1, total_steps // 10) if self.eval_interval == "auto" else self.eval_interval,
            eval_samples=1 if self.eval_samples == "auto" else self.eval_samples,
            compute_multiplier=multiplier,
            reasoning_effort=self.reasoning_effort,
            group_size=max(2, round(options.group_size * multiplier)),
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            max_completion_tokens=max(1, round(options.max_completion_tokens * EFFORT_SCALE[self.reasoning_effort])),
        )


@dataclass(frozen=True)
class LoopOptions:
    """Settings of gradekit's loop that OpenAI does not expose (defaults suit the tiny local model)."""

    group_size: int = 8  # completions sampled per prompt at compute_multiplier 1
    max_completion_tokens: int = 32  # at reasoning_effort medium
    learning_rate: float | None = None  # base rate; None: 1e-3 for tiny-local, 1e-5 for other models
    temperature: float = 1.0
    clip_epsilon: float = 0.2
    kl_beta: float = 0.0  # > 0 keeps a frozen reference model and adds a KL penalty
    update_epochs: int = 1  # policy updates per sampled batch (clipping matters only above 1)
    grading_chunks: int = 2  # the batch is generated in this many parts so grading overlaps generation

    def to_json(self) -> dict[str, Any]:
        """The options as a JSON object."""
        return asdict(self)


@dataclass(frozen=True)
class Resolved:
    """Hyperparameters after `"auto"` is resolved, plus what follows from them."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    eval_interval: int
    eval_samples: int
    compute_multiplier: float
    reasoning_effort: str
    group_size: int
    steps_per_epoch: int
    total_steps: int
    max_completion_tokens: int

    def to_json(self) -> dict[str, Any]:
        """The resolved values as a JSON object."""
        return asdict(self)
