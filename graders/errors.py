"""OpenAI's grader error flags and gradekit's exceptions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, NamedTuple, get_args

from .limits import MAX_MESSAGE_CHARS
from .safety import clean_text, cut

ErrorFlag = Literal[
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
]

#: The 11 boolean flags of `metadata.errors`, in OpenAI's wire order.
ERROR_FLAGS: Final[tuple[ErrorFlag, ...]] = get_args(ErrorFlag)

#: The flags that carry a detail string, and the field that carries it.
DETAIL_FIELDS: Final[dict[str, str]] = {
    "python_grader_server_error": "python_grader_server_error_type",
    "python_grader_runtime_error": "python_grader_runtime_error_details",
    "model_grader_server_error": "model_grader_server_error_details",
}

#: Failures that are the grading's fault, not the sample's: a reward that did not answer in time, a sandbox that
#: failed (limits, crashes), a judge that could not be reached (transport error, rate limit, 5xx). Such a sample
#: gets *no reward* (see docs/no-reward.md); every other flag is the sample's fault and stays reward 0, as OpenAI.
GRADING_FAULTS: Final[frozenset[ErrorFlag]] = frozenset(
    {"unresponsive_reward_error", "python_grader_server_error", "model_grader_server_error"}
)

#: Why a sample got no reward: a grader said it does not apply (returned None), or grading failed.
NoReward = Literal["not_applicable", "grading_error"]


def is_grading_fault(flag: str) -> bool:
    """True when `flag` means the grading failed (no reward), False when the sample did (reward 0)."""
    return flag in GRADING_FAULTS


#: Longest detail string kept in a result (tracebacks are cut from the front).
MAX_DETAIL_CHARS: Final[int] = 4000


class Problem(NamedTuple):
    """One problem of a grader definition: the field it concerns, as written in the definition, and what is wrong.

    `field` is the path in the JSON the user wrote (`("graders", "a", "operation")`); empty when the problem
    concerns the whole definition. `loc` is where the validator found it, with the grader-type tags it adds
    (`("multi", "graders", "a", "string_check", "operation")`): the problem's text starts with it.
    """

    field: tuple[str | int, ...]
    msg: str
    loc: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.loc or self.field)
        return f"{where}: {self.msg}" if where else self.msg


class GraderValidationError(ValueError):
    """A grader definition is invalid; `problems` lists every problem found, each naming its field.

    `details` holds the same problems structured (`Problem`), for callers that point at the field.
    """

    def __init__(self, problems: Sequence[str | Problem]) -> None:
        # Problems quote the definition, which arrives over HTTP: keep them short and encodable as UTF-8.
        self.details = [
            Problem(p.field, clean_text(cut(p.msg, MAX_MESSAGE_CHARS)), p.loc)
            if isinstance(p, Problem)
            else Problem((), clean_text(cut(str(p), MAX_MESSAGE_CHARS)))
            for p in problems
        ]
        self.problems = [clean_text(cut(str(p), MAX_MESSAGE_CHARS)) for p in self.details]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid grader ({len(self.problems)} problem(s)):\n{lines}")


class GradingError(Exception):
    """Raised inside grading code to fail one sample with a named OpenAI error flag.

    `no_reward` overrides what the flag says about whose fault it is (`is_grading_fault`): True for the grading's
    (the sample gets no reward), False for the sample's (reward 0); None keeps the flag's classification.
    """

    def __init__(
        self, flag: ErrorFlag, message: str, detail: str | None = None, *, no_reward: bool | None = None
    ) -> None:
        super().__init__(message)
        self.flag: ErrorFlag = flag
        self.message = message
        self.detail = detail
        self.no_reward = no_reward


def truncate_detail(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Keep the end of a long detail string (the end of a traceback says the most)."""
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]
