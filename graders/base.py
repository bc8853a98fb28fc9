"""The base of every grader model: shared config, validation entry point and the batch grading method."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .batch import Batch
from .errors import GradingError
from .executors import Env
from .results import Outcome


def coerce_reward(value: Any) -> float:
    """A user-returned reward as a finite float; anything else is a `python_grader_runtime_error`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GradingError(
            "python_grader_runtime_error",
            f"grader returned {type(value).__name__} {value!r:.80}, not a number",
            f"grade() must return a float, got {type(value).__name__}: {value!r:.200}",
        )
    reward = float(value)
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

    name: str
    type: str

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
        """The grader's JSON form (what the OpenAI API or `Grader.model_validate` takes)."""
        return self.model_dump(mode="json", exclude_none=True)

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`; failures become zero rewards with error flags, never exceptions."""
        raise NotImplementedError
