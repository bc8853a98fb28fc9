"""Result models: exactly the fields of OpenAI's `GraderRunResponse`, plus a columnar batch result."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import DETAIL_FIELDS, ERROR_FLAGS, ErrorFlag, truncate_detail
from .limits import MAX_MESSAGE_CHARS
from .safety import clean_text, cut, json_safe

_FROZEN = ConfigDict(frozen=True, protected_namespaces=())


class GraderErrors(BaseModel):
    """`metadata.errors`: the 11 OpenAI error flags and their 3 detail strings."""

    model_config = _FROZEN

    formula_parse_error: bool = False
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    invalid_variable_error: bool = False
    other_error: bool = False
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    model_grader_refusal_error: bool = False
    model_grader_parse_error: bool = False

    def flags(self) -> list[str]:
        """Names of the flags that fired."""
        return [f for f in ERROR_FLAGS if getattr(self, f)]

    @property
    def any(self) -> bool:
        """True when any flag fired."""
        return any(getattr(self, f) for f in ERROR_FLAGS)


class GraderMetadata(BaseModel):
    """`metadata` of a run response."""

    model_config = _FROZEN

    name: str
    type: str
    execution_time: float
    scores: dict[str, Any]
    token_usage: int | None = None
    sampled_model_name: str | None = None
    errors: GraderErrors


class RunResult(BaseModel):
    """One graded sample, field for field OpenAI's `fine_tuning.alpha.graders.run` response."""

    model_config = _FROZEN

    reward: float
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]
    metadata: GraderMetadata

    @property
    def errors(self) -> GraderErrors:
        """Shortcut for `metadata.errors`."""
        return self.metadata.errors


@dataclass(slots=True)
class SampleNotes:
    """Everything but the reward that one grader learned about one sample (kept sparse: most have none)."""

    errors: dict[str, Any] = field(default_factory=dict)
    #: grader name -> (flag, message) of its first failure: which grader failed, how and why
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    token_usage: int | None = None
    sampled_model_name: str | None = None
    usage_per_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def fail(self, grader: str, flag: ErrorFlag, message: str, detail: str | None = None) -> None:
        """Record a failure of `grader` with one flag; the first message per grader is kept.

        Texts are kept encodable as UTF-8 (lone surrogates become U+FFFD) and cut to `MAX_MESSAGE_CHARS`
        (details to `MAX_DETAIL_CHARS`), whatever a sample or user code put in them.
        """
        self.errors[flag] = True
        if flag in DETAIL_FIELDS and detail is not None and DETAIL_FIELDS[flag] not in self.errors:
            self.errors[DETAIL_FIELDS[flag]] = clean_text(truncate_detail(str(detail)))
        grader = clean_text(str(grader))
        if grader not in self.failures:
            self.failures[grader] = (flag, clean_text(cut(str(message), MAX_MESSAGE_CHARS)))

    def merge(self, other: SampleNotes, key: str | None = None) -> None:
        """Fold a sub-grader's notes into these (scores nest under the sub-grader's key)."""
        for k, v in other.errors.items():
            if k in DETAIL_FIELDS.values():
                self.errors.setdefault(k, v)
            else:
                self.errors[k] = self.errors.get(k, False) or v
        for k, v in other.failures.items():
            self.failures.setdefault(k, v)
        if other.scores:
            if key is None:
                self.scores.update(other.scores)
            else:
                self.scores[key] = other.scores
        if other.token_usage is not None:
            self.token_usage = (self.token_usage or 0) + other.token_usage
        if other.sampled_model_name is not None and self.sampled_model_name is None:
            self.sampled_model_name = other.sampled_model_name
        for model, usage in other.usage_per_model.items():
            total = self.usage_per_model.setdefault(model, {})
            for k, v in usage.items():
                total[k] = total.get(k, 0) + v

    @property
    def failed(self) -> bool:
        """True when any error flag fired."""
        return any(self.errors.get(f) for f in ERROR_FLAGS)


@dataclass(slots=True, repr=False)
class Outcome:
    """A grader's results over a batch, column by column: rewards plus sparse notes."""

    rewards: list[float]
    notes: list[SampleNotes | None]
    sub_rewards: dict[str, list[float]] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Short on purpose: asyncio may repr a task's result, and a million rewards make a slow repr.
        return f"Outcome(n={len(self.rewards)})"

    @classmethod
    def empty(cls, n: int) -> Outcome:
        """All-zero rewards, no notes."""
        return cls([0.0] * n, [None] * n)

    def note(self, i: int) -> SampleNotes:
        """The notes of sample `i`, created on first use."""
        n = self.notes[i]
        if n is None:
            n = self.notes[i] = SampleNotes()
        return n

    def fail(self, i: int, grader: str, flag: ErrorFlag, message: str, detail: str | None = None) -> None:
        """Fail sample `i`: reward 0 and the flag."""
        self.rewards[i] = 0.0
        self.note(i).fail(grader, flag, message, detail)


def _errors_model(notes: SampleNotes | None) -> GraderErrors:
    if notes is None or not notes.errors:
        return _NO_ERRORS
    fields = GraderErrors.model_fields
    return GraderErrors(**{k: json_safe(v) for k, v in notes.errors.items() if k in fields})


_NO_ERRORS = GraderErrors()


def make_result(
    name: str, type_: str, reward: float, sub: dict[str, float], notes: SampleNotes | None, seconds: float
) -> RunResult:
    """Assemble the OpenAI-shaped result of one sample; every text and score in it encodes as UTF-8 JSON."""
    scores: dict[str, Any] = dict(notes.scores) if notes else {}
    if notes and notes.failures:
        scores["error_details"] = {g: {"flag": flag, "message": m} for g, (flag, m) in notes.failures.items()}
    usage = notes.usage_per_model if notes else {}
    token_usage = notes.token_usage if notes else None
    model = notes.sampled_model_name if notes else None
    return RunResult(
        reward=reward,
        sub_rewards=json_safe(sub) if sub else {},
        model_grader_token_usage_per_model=json_safe(usage) if usage else {},
        metadata=GraderMetadata(
            name=clean_text(name),
            type=clean_text(type_),
            execution_time=seconds,
            scores=json_safe(scores) if scores else scores,
            token_usage=token_usage if type(token_usage) is int else None,
            sampled_model_name=clean_text(model) if isinstance(model, str) else None,
            errors=_errors_model(notes),
        ),
    )


@dataclass(slots=True, repr=False)
class BatchResult(Sequence[RunResult]):
    """Results of `run_batch`: `rewards` as a column; each `RunResult` is built only when asked for."""

    name: str
    type: str
    rewards: list[float]
    notes: list[SampleNotes | None]
    sub_rewards: dict[str, list[float]]
    execution_time: float

    def __repr__(self) -> str:
        return f"BatchResult(name={self.name!r}, type={self.type!r}, n={len(self.rewards)})"

    def __len__(self) -> int:
        return len(self.rewards)

    def __getitem__(self, i: int) -> RunResult:  # type: ignore[override]
        n = len(self.rewards)
        if not -n <= i < n:
            raise IndexError(i)
        i %= n
        sub = {k: v[i] for k, v in self.sub_rewards.items()}
        per_sample = self.execution_time / n
        return make_result(self.name, self.type, self.rewards[i], sub, self.notes[i], per_sample)

    def __iter__(self) -> Iterator[RunResult]:
        return (self[i] for i in range(len(self.rewards)))

    def error_flags(self, i: int) -> list[str]:
        """Flags that fired for sample `i` (cheap: no result model is built)."""
        n = self.notes[i]
        return [f for f in ERROR_FLAGS if n is not None and n.errors.get(f)]
