"""RFT hyperparameters with OpenAI's names (or Amazon Bedrock's) and `"auto"`, and the values a run resolves them to.

OpenAI's seven names come first. Bedrock's native RFT API (`RFTHyperParameters` of CreateModelCustomizationJob)
names its settings in camelCase; `BEDROCK_NAMES` maps each to the field that holds it here. Four of them have no
OpenAI name, so they have gradekit's own (`learning_rate`, `group_size`, `max_completion_tokens`,
`max_prompt_length`): given for a job, each beats the loop option of the same name (`LoopOptions`). A request
that names one setting twice (`n_epochs` and `epochCount`) is refused (`SettingNamedTwice`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models.catalogue import AutoOptions, auto_options

__all__ = [
    "BEDROCK_NAMES",
    "OPENAI_NAMES",
    "Hyperparameters",
    "LoopOptions",
    "Resolved",
    "SettingNamedTwice",
    "canonical_names",
]

Auto = Literal["auto"]

#: How `reasoning_effort` scales the completion budget of a model that has no separate reasoning channel.
EFFORT_SCALE = {"default": 1.0, "low": 0.5, "medium": 1.0, "high": 2.0}

#: Amazon Bedrock's RFT hyperparameter names -> the field here that holds the same setting. Bedrock's service
#: ranges (batchSize 16 to 512, ...) are not enforced: a local run is smaller.
BEDROCK_NAMES = {
    "epochCount": "n_epochs",
    "batchSize": "batch_size",
    "learningRate": "learning_rate",
    "trainingSamplePerPrompt": "group_size",
    "inferenceMaxTokens": "max_completion_tokens",
    "maxPromptLength": "max_prompt_length",
    "reasoningEffort": "reasoning_effort",
    "evalInterval": "eval_interval",
}
#: The fields of OpenAI's `method.reinforcement.hyperparameters` (a job object always lists them).
OPENAI_NAMES = (
    "n_epochs",
    "batch_size",
    "learning_rate_multiplier",
    "eval_interval",
    "eval_samples",
    "compute_multiplier",
    "reasoning_effort",
)


class SettingNamedTwice(ValueError):
    """Hyperparameters that give one setting under two names (OpenAI's or gradekit's, and Bedrock's)."""

    def __init__(self, name: str, alias: str) -> None:
        self.name, self.alias = name, alias
        super().__init__(f"{name!r} and {alias!r} name the same setting; give only one of them")


def canonical_names(given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`given` with Bedrock's names replaced by the fields here, and {field: the name it was given as}.

    Raises `SettingNamedTwice` when both names of one setting are given.
    """
    out: dict[str, Any] = {}
    used: dict[str, str] = {}
    for key, value in given.items():
        name = BEDROCK_NAMES.get(key, key)
        if name in out:
            first = used[name]
            raise SettingNamedTwice(*((first, key) if first == name else (key, first)))
        out[name] = value
        used[name] = key
    return out, used


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
    # gradekit's names for settings Bedrock exposes and OpenAI does not ("auto": the loop option of that name).
    learning_rate: float | Auto = Field("auto", description="base learning rate (Bedrock's learningRate)")
    group_size: int | Auto = Field(
        "auto", description="completions sampled per prompt at compute_multiplier 1 (trainingSamplePerPrompt)"
    )
    max_completion_tokens: int | Auto = Field(
        "auto", description="tokens a training sample may have, not scaled by reasoning_effort (inferenceMaxTokens)"
    )
    max_prompt_length: int | Auto = Field(
        "auto", description="prompt tokens kept, the last ones (maxPromptLength); auto: the whole prompt"
    )

    @model_validator(mode="before")
    @classmethod
    def _bedrock_names(cls, data: Any) -> Any:
        return canonical_names(data)[0] if isinstance(data, Mapping) else data

    def to_json(self) -> dict[str, Any]:
        """OpenAI's fields, then those of gradekit's own that were given (not `"auto"`): a job object's form."""
        values = self.model_dump()
        return {k: v for k, v in values.items() if k in OPENAI_NAMES or v != "auto"}

    def resolve(self, n_train: int, options: LoopOptions | None = None) -> Resolved:
        """Concrete values for a training file of `n_train` rows (`"auto"` chosen as documented in the README)."""
        # Options not filled for a model take the tiny model's values.
        options = (options or LoopOptions()).with_auto(auto_options(0))
        for name in ("n_epochs", "batch_size", "eval_interval", "eval_samples", "max_completion_tokens"):
            value = getattr(self, name)
            if value != "auto" and value < 1:
                raise ValueError(f"hyperparameters.{name} must be at least 1 (got {value})")
        for name, least in (("group_size", 2), ("max_prompt_length", 1)):
            value = getattr(self, name)
            if value != "auto" and value < least:
                raise ValueError(f"hyperparameters.{name} must be at least {least} (got {value})")
        for name in ("learning_rate_multiplier", "compute_multiplier", "learning_rate"):
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
        group = options.group_size if self.group_size == "auto" else self.group_size
        if self.max_completion_tokens == "auto":
            max_tokens = max(1, round(options.max_completion_tokens * EFFORT_SCALE[self.reasoning_effort]))
        else:
            max_tokens = self.max_completion_tokens
        return Resolved(
            n_epochs=n_epochs,
            batch_size=batch_size,
            learning_rate_multiplier=lr_mult,
            eval_interval=max(1, total_steps // 10) if self.eval_interval == "auto" else self.eval_interval,
            eval_samples=1 if self.eval_samples == "auto" else self.eval_samples,
            compute_multiplier=multiplier,
            reasoning_effort=self.reasoning_effort,
            group_size=max(2, round(group * multiplier)),
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            max_completion_tokens=max_tokens,
            learning_rate=options.learning_rate if self.learning_rate == "auto" else self.learning_rate,
            max_prompt_length=None if self.max_prompt_length == "auto" else self.max_prompt_length,
        )


@dataclass(frozen=True)
class LoopOptions:
    """Settings of gradekit's loop that OpenAI does not expose; None is "auto": chosen by the model's size."""

    group_size: int | None = None  # completions sampled per prompt at compute_multiplier 1
    max_completion_tokens: int | None = None  # at reasoning_effort medium
    learning_rate: float | None = None  # base rate (AdamW)
    temperature: float | None = None  # sampling temperature of training rollouts and validation
    clip_epsilon: float = 0.2
    kl_beta: float = 0.0  # > 0 keeps a frozen reference model and adds a KL penalty
    lora_rank: int = 0  # > 0 trains LoRA adapters of this rank (peft) on every linear layer instead of all weights
    lora_alpha: float = 16.0  # LoRA's scale numerator: adapters are scaled by lora_alpha / lora_rank
    update_epochs: int = 1  # policy updates per sampled batch (clipping matters only above 1)
    grading_chunks: int = 2  # the batch is generated in this many parts so grading overlaps generation

    def to_json(self) -> dict[str, Any]:
        """The options as a JSON object."""
        return asdict(self)

    def with_auto(self, auto: AutoOptions) -> LoopOptions:
        """These options with each "auto" (None) setting taken from `auto` (`catalogue.auto_options`)."""
        chosen = {k: getattr(auto, k) for k in asdict(auto) if getattr(self, k) is None}
        return replace(self, **chosen)


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
    learning_rate: float | None = None  # the base rate; None: the model's default (RFTJob)
    max_prompt_length: int | None = None  # None: prompts are not cut

    def to_json(self) -> dict[str, Any]:
        """The resolved values as a JSON object."""
        return asdict(self)
