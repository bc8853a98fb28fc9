"""The Bedrock RFT reward-Lambda contract: parse the event into (sample, item) pairs, shape the response.

Event: a list of samples `{"id", "messages", ...}`, the model's answer being the last `assistant` message
(Amazon Nova's RFT sends it with role `nova_assistant` and its content as `{"type": "text", "text"}` parts);
`reference_answer` sits at the top level or under `metadata`, beside the other dataset fields. The event may
come in any of these envelopes (`unwrap_event`), and is answered in the form its caller expects
(`wrap_response`):

| event | answer |
|---|---|
| a list of samples (Bedrock, SageMaker and Nova RFT docs) | the list of results |
| `{"trajectories": [...]}` or `{"samples": [...]}` (aws-samples reward functions) | the list of results |
| one sample object (the Nova RFT evaluation notebook's `event if list else [event]`) | a list of one result |
| `{"batch": [...]}` | `{"statusCode": 200, "body": "<the list as JSON text>"}` |
| `{"body": "<JSON text of any of the above>"}` (an API Gateway style invocation) | `{"statusCode": 200, "body": ...}` |

Any of them may also arrive as JSON text (parsed here; text nested too deeply to parse is an `EventError`).
Response: one `{"id", "aggregate_reward_score", "metrics_list"}` per sample, in input order, always strict
JSON (see `sample_id` for the ids that cannot be echoed as they came). A sample without an `id` is graded as
usual; its result has no `id` and carries a `missing_id` metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from gradekit.graders import GradingError
from gradekit.graders.safety import nesting_exceeds
from gradekit.graders.samples import is_assistant
from gradekit.runtime.jsonl import clean_text, dumps, loads

WRAPPER_KEYS = ("trajectories", "samples")
#: Keys of envelopes answered as `{"statusCode": 200, "body": "<JSON text>"}`.
STATUS_WRAPPER_KEYS = ("batch",)
#: The metric a result carries when its sample had no `id` (the result then has no `id` either).
MISSING_ID_METRIC: Final[str] = "missing_id"

#: How an event came, which decides how it is answered (see the module docstring).
EventForm = Literal["list", "wrapped", "single", "status"]


class _Missing:
    """The id of a sample that had none (absent or null): its result is sent without an `id`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING_ID"


MISSING_ID: Final[Any] = _Missing()
#: Longest answer graded, in characters; a longer one is `truncated_observation_error`.
DEFAULT_MAX_CHARS = 200_000
#: Deepest nesting of lists and objects in one sample; a deeper sample is a `sample_parse_error`.
MAX_SAMPLE_DEPTH = 128
#: Longest metric name CloudWatch (and Powertools) accept.
MAX_METRIC_NAME = 255


class EventError(ValueError):
    """The event is not a list of samples at all."""


@dataclass(frozen=True, slots=True)
class Row:
    """One sample of the event, ready to grade."""

    id: Any
    sample: Any  # the message list, or a GradingError that fails the row
    item: dict[str, Any]


def _loaded(event: Any) -> Any:
    if isinstance(event, str | bytes | bytearray):
        try:
            return loads(event)
        except ValueError as e:
            raise EventError(f"the event is text but not JSON: {e}") from None
    return event


def unwrap_event(event: Any) -> tuple[list[Any], EventForm]:
    """The list of samples of an event in any documented envelope, and the form to answer it in."""
    event = _loaded(event)
    if isinstance(event, list):
        return event, "list"
    if isinstance(event, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(event.get(key), list):
                return event[key], "wrapped"
        for key in STATUS_WRAPPER_KEYS:
            if isinstance(event.get(key), list):
                return event[key], "status"
        if "messages" in event:
            return [event], "single"
        if "body" in event and isinstance(event["body"], str | bytes | bytearray | list | Mapping):
            inner, _ = unwrap_event(event["body"])
            return inner, "status"
    got = type(event).__name__ if not isinstance(event, Mapping) else f"an object with keys {sorted(event)[:10]}"
    raise EventError(
        "expected the Bedrock RFT event: a JSON list of samples "
        '[{"id": ..., "messages": [..., {"role": "assistant", "content": ...}], "reference_answer": ...}] '
        f"(or {{'trajectories': [...]}}, {{'batch': [...]}}, one sample object), got {got}"
    )


def samples_of(event: Any) -> list[Any]:
    """The list of samples of an event (any envelope `unwrap_event` accepts)."""
    return unwrap_event(event)[0]


def wrap_response(results: list[dict[str, Any]], form: EventForm) -> Any:
    """The handler's answer in the form the event's caller expects: the list, or a status-code envelope."""
    if form == "status":
        return {"statusCode": 200, "body": dumps(results)}
    return results


def _item(raw: Mapping[str, Any]) -> dict[str, Any]:
    metadata = raw.get("metadata")
    item: dict[str, Any] = dict(metadata) if isinstance(metadata, Mapping) else {}
    item.update((k, v) for k, v in raw.items() if k not in ("id", "messages", "metadata"))
    return item


def _answer_check(messages: Any, max_chars: int) -> GradingError | None:
    if not isinstance(messages, list):
        return GradingError("sample_parse_error", "sample has no `messages` list")
    answer = next((m for m in reversed(messages) if is_assistant(m)), None)
    if answer is None:
        return GradingError(
            "sample_parse_error", "sample has no `assistant` (or `nova_assistant`) message (the model's answer)"
        )
    content = answer.get("content")
    if isinstance(content, str) and len(content) > max_chars:
        return GradingError("truncated_observation_error", f"answer has {len(content)} characters, over {max_chars}")
    return None


def sample_id(value: Any, n: int) -> tuple[Any, GradingError | None]:
    """The id to echo for sample `n`, and the error that fails the sample when its id cannot be echoed.

    Strings are echoed with lone surrogates replaced by U+FFFD (UTF-8 cannot carry them); finite numbers and
    booleans as they are. An id that strict JSON cannot carry as it came (NaN or an infinity, which lenient
    parsers read from `NaN`/`Infinity`; an integer too long to print) or that is no scalar (a list, an object)
    is answered as `null`, and the sample fails with `sample_parse_error`, so that the `sample_parse_error`
    metric of the response counts it. A missing id (absent or null) is `MISSING_ID`: the sample is graded.
    """
    if value is None:
        return MISSING_ID, None
    if isinstance(value, str):
        return clean_text(value), None
    if isinstance(value, float):
        if math.isfinite(value):
            return value, None
        return None, GradingError(
            "sample_parse_error", f"sample {n} has a non-finite `id` ({value}), which JSON cannot carry"
        )
    if isinstance(value, int):  # bools too
        if value.bit_length() < 10_000:  # `str(value)` works up to sys.get_int_max_str_digits() digits
            return value, None
        return None, GradingError("sample_parse_error", f"sample {n} has an integer `id` too long to print")
    return None, GradingError(
        "sample_parse_error", f"sample {n} has an `id` of type {type(value).__name__}; expected a string or a number"
    )


def parse_event(event: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Row]:
    """One `Row` per sample; a malformed sample becomes a row whose sample is its error."""
    rows = []
    for n, raw in enumerate(samples_of(event)):
        if not isinstance(raw, Mapping):
            rows.append(Row(None, GradingError("sample_parse_error", f"sample {n} is not an object"), {}))
            continue
        row_id, id_error = sample_id(raw.get("id"), n)
        if nesting_exceeds(raw if isinstance(raw, dict) else dict(raw), MAX_SAMPLE_DEPTH):
            too_deep = GradingError("sample_parse_error", f"sample {n} nests deeper than {MAX_SAMPLE_DEPTH} levels")
            rows.append(Row(row_id, too_deep, {}))
            continue
        error = id_error or _answer_check(raw.get("messages"), max_chars)
        rows.append(Row(row_id, error or raw["messages"], _item(raw)))
    return rows


def metric_name(name: str) -> str:
    """`name` as CloudWatch accepts it: surrogates replaced, trimmed, 1 to 255 characters."""
    name = clean_text(name).strip()[:MAX_METRIC_NAME].strip()
    return name or "unnamed"


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def response_item(
    row_id: Any, grader: str, reward: float, sub_rewards: Mapping[str, float], flags: list[str]
) -> dict[str, Any]:
    """The Bedrock response entry for one graded sample: sub-rewards as `Reward`, fired flags as `Metric`.

    Names have surrogates replaced; a non-finite value (graders never produce one) would be sent as 0. For a
    sample without an id (`MISSING_ID`) the entry has no `id` and a `missing_id` metric.
    """
    rewards = sub_rewards or {grader: reward}
    metrics = [{"name": clean_text(name), "value": _finite(value), "type": "Reward"} for name, value in rewards.items()]
    metrics += [{"name": flag, "value": 1.0, "type": "Metric"} for flag in flags]
    if row_id is MISSING_ID:  # the sample had no id: a result without one, saying so
        metrics.append({"name": MISSING_ID_METRIC, "value": 1.0, "type": "Metric"})
        return {"aggregate_reward_score": _finite(reward), "metrics_list": metrics}
    return {"id": row_id, "aggregate_reward_score": _finite(reward), "metrics_list": metrics}
