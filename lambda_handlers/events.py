"""The Bedrock RFT reward-Lambda contract: parse the event into (sample, item) pairs, shape the response.

Event: a list of samples `{"id", "messages", ...}`, the model's answer being the last `assistant` message;
`reference_answer` sits at the top level or under `metadata`, beside the other dataset fields. A dict
wrapping the list (`{"trajectories": [...]}` or `{"samples": [...]}`) is accepted too, and so is the event
as JSON text (parsed here; text nested too deeply to parse is an `EventError` saying so).
Response: one `{"id", "aggregate_reward_score", "metrics_list"}` per sample, in input order, always strict
JSON (see `sample_id` for the ids that cannot be echoed as they came).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradekit.graders import GradingError
from gradekit.graders.safety import nesting_exceeds
from gradekit.runtime.jsonl import clean_text, loads

WRAPPER_KEYS = ("trajectories", "samples")
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


def samples_of(event: Any) -> list[Any]:
    """The list of samples of an event (bare list, a dict wrapping one, or either as JSON text)."""
    if isinstance(event, str | bytes | bytearray):
        try:
            event = loads(event)
        except ValueError as e:
            raise EventError(f"the event is text but not JSON: {e}") from None
    if isinstance(event, list):
        return event
    if isinstance(event, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(event.get(key), list):
                return event[key]
    got = type(event).__name__ if not isinstance(event, Mapping) else f"an object with keys {sorted(event)[:10]}"
    raise EventError(
        "expected the Bedrock RFT event: a JSON list of samples "
        '[{"id": ..., "messages": [..., {"role": "assistant", "content": ...}], "reference_answer": ...}] '
        f"(or {{'trajectories': [...]}}), got {got}"
    )


def _item(raw: Mapping[str, Any]) -> dict[str, Any]:
    metadata = raw.get("metadata")
    item: dict[str, Any] = dict(metadata) if isinstance(metadata, Mapping) else {}
    item.update((k, v) for k, v in raw.items() if k not in ("id", "messages", "metadata"))
    return item


def _answer_check(messages: Any, max_chars: int) -> GradingError | None:
    if not isinstance(messages, list):
        return GradingError("sample_parse_error", "sample has no `messages` list")
    answer = next((m for m in reversed(messages) if isinstance(m, Mapping) and m.get("role") == "assistant"), None)
    if answer is None:
        return GradingError("sample_parse_error", "sample has no `assistant` message (the model's answer)")
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
    metric of the response counts it; a missing id is the same.
    """
    if value is None:
        return None, GradingError("sample_parse_error", f"sample {n} has no `id`")
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

    Names have surrogates replaced; a non-finite value (graders never produce one) would be sent as 0.
    """
    rewards = sub_rewards or {grader: reward}
    metrics = [{"name": clean_text(name), "value": _finite(value), "type": "Reward"} for name, value in rewards.items()]
    metrics += [{"name": flag, "value": 1.0, "type": "Metric"} for flag in flags]
    return {"id": row_id, "aggregate_reward_score": _finite(reward), "metrics_list": metrics}
