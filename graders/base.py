"""The base of every grader model: shared config, validation entry point and the batch grading method."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from .batch import Batch
from .errors import GradingError
from .executors import Env
from .limits import MAX_JSON_DEPTH
from .results import Outcome
from .safety import describe, exception_text, json_safe, nesting_exceeds


def coerce_reward(value: Any) -> float:
    """A user-returned reward as a finite float; anything else is a `python_grader_runtime_error`.

    Never raises anything else: an int too large for a float, or a number type whose conversion fails,
    is a runtime error too.
    """
    name = type(value).__name__
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GradingError(
            "python_grader_runtime_error",
            f"grader returned {name} {describe(value, 80)}, not a number",
            f"grade() must return a float, got {name}: {describe(value, 200)}",
        )
    try:
        reward = float(value)
    except Exception as e:  # OverflowError for an int past 1e308; anything from a float subclass's __float__
        bits = f" of {value.bit_length():,} bits" if isinstance(value, int) else ""
        raise GradingError(
            "python_grader_runtime_error",
            f"grader returned {name}{bits} that is not a finite float ({exception_text(e)})",
            f"grade() returned {name}{bits} that cannot be converted to a float: {exception_text(e)}",
        ) from None
    if not math.isfinite(reward):
        raise GradingError(
            "python_grader_runtime_error",
            f"grader returned {reward}",
            f"grade() returned a non-finite {reward}",
        )
    return reward


class Grader(BaseModel):
    """Base of all graders. `Grader.model_validate(obj)` picks the right grader type from `obj["type"]`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_assignment=False)

    #: Whether OpenAI's API accepts this grader type as it is.
    openai_native: ClassVar[bool] = True

    #: Optional, as in OpenAI's API: a grader without one is named by its key inside a `multi`, else its `type`.
    name: str = ""
    type: str

    @model_validator(mode="after")
    def _default_name(self) -> Any:
        # Not in `model_fields_set`, so a `multi` can still tell a defaulted name from a given one.
        if "name" not in self.model_fields_set:
            self.__dict__["name"] = self.type
        return self

    @property
    def named(self) -> bool:
        """Whether the grader was given a `name` (else it defaulted to its key inside a `multi`, or its type)."""
        return "name" in self.model_fields_set

    @model_validator(mode="before")
    @classmethod
    def _bounded_nesting(cls, data: Any) -> Any:
        # pydantic and every consumer of `to_json` walk a definition recursively: refuse deep ones here
        if nesting_exceeds(data, MAX_JSON_DEPTH):
            raise ValueError(f"the grader definition nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels")
        return data

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Validate `obj` as this grader type; on `Grader` itself, as whichever type `obj["type"]` names."""
        if cls is Grader:
            from .models import grader_adapter

            return grader_adapter().validate_python(obj, **kwargs)
        return super().model_validate(obj, **kwargs)

    @classmethod
    def model_validate_json(cls, data: str | bytes, **kwargs: Any) -> Any:  # type: ignore[override]
        """Like `model_validate`, from JSON text."""
        if cls is Grader:
            from .models import grader_adapter

            return grader_adapter().validate_json(data, **kwargs)
        return super().model_validate_json(data, **kwargs)

    def to_json(self) -> dict[str, Any]:
        """The grader's JSON form (what the OpenAI API or `Grader.model_validate` takes), encodable as UTF-8."""
        return json_safe(self.model_dump(mode="json", exclude_none=True))  # type: ignore[no-any-return]

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`; failures become zero rewards with error flags, never exceptions."""
        raise NotImplementedError
