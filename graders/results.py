"""Result models: exactly the fields of OpenAI's `GraderRunResponse`, plus a columnar batch result.

One extension key: `metadata.no_reward`, present only on a sample that got no reward (docs/no-reward.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import DETAIL_FIELDS, ERROR_FLAGS, ErrorFlag, NoReward, is_grading_fault, truncate_detail
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


class NoRewardInfo(BaseModel):
    """`metadata.no_reward` (gradekit extension): why the sample got no reward, and from which graders."""

    model_config = _FROZEN

    #: `grading_error` when any grader failed through no fault of the sample, else `not_applicable`.
    reason: NoReward
    #: Each grader (or `multi` key) that gave no reward, and why.
    graders: dict[str, NoReward]


class GraderMetadata(BaseModel):
    """`metadata` of a run response (OpenAI's fields, plus `no_reward` on a sample that got none)."""

    model_config = _FROZEN

    name: str
    type: str
    execution_time: float
    scores: dict[str, Any]
    token_usage: int | None = None
    sampled_model_name: str | None = None
    errors: GraderErrors
    # Absent from the JSON when a reward was given: the response is then OpenAI's, key for key.
    no_reward: NoRewardInfo | None = Field(default=None, exclude_if=lambda v: v is None)


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

    @property
    def rewarded(self) -> bool:
        """False when the sample got no reward (`reward` is then 0.0 only for OpenAI's wire format)."""
        return self.metadata.no_reward is None


@dataclass(slots=True)
class SampleNotes:
    """Everything but the reward that one grader learned about one sample (kept sparse: most have none)."""

    errors: dict[str, Any] = field(default_factory=dict)
    #: grader name -> (flag, message) of its first failure: which grader failed, how and why
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    #: grader name (or `multi` key) -> why it gave this sample no reward
    unrewarded: dict[str, NoReward] = field(default_factory=dict)
    #: True once any failure was the sample's fault: the reward is then 0, whatever else gave none
    sample_fault: bool = False
    token_usage: int | None = None
    sampled_model_name: str | None = None
    usage_per_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def fail(
        self, grader: str, flag: ErrorFlag, message: str, detail: str | None = None, *, no_reward: bool | None = None
    ) -> None:
        """Record a failure of `grader` with one flag; the first message per grader is kept.

        Whether it is the grading's fault (no reward) or the sample's (reward 0) follows the flag
        (`errors.is_grading_fault`) unless `no_reward` says otherwise (e.g. a Lambda that could not be invoked).
        Texts are kept encodable as UTF-8 (lone surrogates become U+FFFD) and cut to `MAX_MESSAGE_CHARS`
        (details to `MAX_DETAIL_CHARS`), whatever a sample or user code put in them.
        """
        if no_reward is None:
            no_reward = is_grading_fault(flag)
        if no_reward:
            self.unrewarded[clean_text(str(grader))] = "grading_error"
        else:
            self.sample_fault = True
        self.errors[flag] = True
        if flag in DETAIL_FIELDS and detail is not None and DETAIL_FIELDS[flag] not in self.errors:
            self.errors[DETAIL_FIELDS[flag]] = clean_text(truncate_detail(str(detail)))
        grader = clean_text(str(grader))
        if grader not in self.failures:
            self.failures[grader] = (flag, clean_text(cut(str(message), MAX_MESSAGE_CHARS)))

    def skip(self, grader: str) -> None:
        """Record that `grader` does not apply to this sample (it returned None): no reward, no error flag."""
        self.unrewarded.setdefault(clean_text(str(grader)), "not_applicable")

    @property
    def no_reward(self) -> NoReward | None:
        """Why the sample got no reward, or None when it got one (0 included). The one place this is decided.

        A failure that is the sample's fault decides the reward (0) whatever else happened; otherwise any grader
        that gave no reward leaves the sample without one: `grading_error` if one failed, else `not_applicable`.
        """
        if self.sample_fault or not self.unrewarded:
            return None
        return "grading_error" if "grading_error" in self.unrewarded.values() else "not_applicable"

    def merge(self, other: SampleNotes, key: str | None = None) -> None:
        """Fold a sub-grader's notes into these (scores nest under the sub-grader's key).

        A sub-grader that gave no reward is recorded under `key` too (its formula variable), besides its name.
        """
        self.sample_fault = self.sample_fault or other.sample_fault
        for k, reason in other.unrewarded.items():
            if self.unrewarded.get(k) != "grading_error":
                self.unrewarded[k] = reason
        missing = other.no_reward
        if key is not None and missing is not None and self.unrewarded.get(key) != "grading_error":
            self.unrewarded[key] = missing
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

    def fail(
        self,
        i: int,
        grader: str,
        flag: ErrorFlag,
        message: str,
        detail: str | None = None,
        *,
        no_reward: bool | None = None,
    ) -> None:
        """Fail sample `i`: reward 0 (or no reward, for the grading's fault) and the flag."""
        self.rewards[i] = 0.0
        self.note(i).fail(grader, flag, message, detail, no_reward=no_reward)

    def skip(self, i: int, grader: str) -> None:
        """Sample `i` gets no reward from `grader`: it does not apply (0.0 stands in the column)."""
        self.rewards[i] = 0.0
        self.note(i).skip(grader)

    def no_reward(self, i: int) -> NoReward | None:
        """Why sample `i` got no reward, or None when it got one (see `SampleNotes.no_reward`)."""
        n = self.notes[i]
        return None if n is None else n.no_reward


def _errors_model(notes: SampleNotes | None) -> GraderErrors:
    if notes is None or not notes.errors:
        return _NO_ERRORS
    fields = GraderErrors.model_fields
    return GraderErrors(**{k: json_safe(v) for k, v in notes.errors.items() if k in fields})


_NO_ERRORS = GraderErrors()


def _no_reward_info(notes: SampleNotes | None) -> NoRewardInfo | None:
    reason = notes.no_reward if notes is not None else None
    if reason is None or notes is None:
        return None
    return NoRewardInfo(reason=reason, graders=dict(notes.unrewarded))


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
            no_reward=_no_reward_info(notes),
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

    def no_reward(self, i: int) -> NoReward | None:
        """Why sample `i` got no reward, or None when it got one (see `SampleNotes.no_reward`)."""
        n = self.notes[i]
        return None if n is None else n.no_reward

    def with_rows(self, rows: Sequence[int], other: BatchResult) -> BatchResult:
        """A copy with sample `rows[j]` replaced by `other`'s sample `j` (e.g. graded again)."""
        rewards, notes = list(self.rewards), list(self.notes)
        sub = {k: list(v) for k, v in self.sub_rewards.items()}
        for j, i in enumerate(rows):
            rewards[i], notes[i] = other.rewards[j], other.notes[j]
            for k, column in sub.items():
                column[i] = other.sub_rewards[k][j] if k in other.sub_rewards else 0.0
        seconds = self.execution_time + other.execution_time
        return BatchResult(self.name, self.type, rewards, notes, sub, seconds)

    def rewards_or_none(self) -> list[float | None]:
        """The rewards, None where a sample got no reward (what a trainer should see)."""
        return [None if n is not None and n.no_reward else r for r, n in zip(self.rewards, self.notes, strict=True)]

    def error_flags(self, i: int) -> list[str]:
        """Flags that fired for sample `i` (cheap: no result model is built)."""
        n = self.notes[i]
        return [f for f in ERROR_FLAGS if n is not None and n.errors.get(f)]
