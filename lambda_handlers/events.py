"""The Bedrock RFT reward-Lambda contract: parse the event into (sample, item) pairs, shape the response.

Event: a list of samples `{"id", "messages", ...}`, the model's answer being the last `assistant` message;
`reference_answer` sits at the top level or under `metadata`, beside the other dataset fields. A dict
wrapping the list (`{"trajectories": [...]}` or `{"samples": [...]}`) is accepted too.
Response: one `{"id", "aggregate_reward_score", "metrics_list"}` per sample, in input order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradekit.graders import GradingError

WRAPPER_KEYS = ("trajectories", "samples")
#: Longest answer graded, in characters; a longer one is `truncated_observation_error`.
DEFAULT_MAX_CHARS = 200_000


class EventError(ValueError):
    """The event is not a list of samples at all."""


@dataclass(frozen=True, slots=True)
class Row:
    """One sample of the event, ready to grade."""

    id: Any
    sample: Any  # the message list, or a GradingError that fails the row
    item: dict[str, Any]


def samples_of(event: Any) -> list[Any]:
    """The list of samples of an event (bare list, or a dict wrapping one)."""
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


def parse_event(event: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Row]:
    """One `Row` per sample; a malformed sample becomes a row whose sample is its error."""
    rows = []
    for n, raw in enumerate(samples_of(event)):
        if not isinstance(raw, Mapping):
            rows.append(Row(None, GradingError("sample_parse_error", f"sample {n} is not an object"), {}))
            continue
        error = _answer_check(raw.get("messages"), max_chars)
        if raw.get("id") is None:
            error = GradingError("sample_parse_error", f"sample {n} has no `id`")
        rows.append(Row(raw.get("id"), error or raw["messages"], _item(raw)))
    return rows


def response_item(
    row_id: Any, grader: str, reward: float, sub_rewards: Mapping[str, float], flags: list[str]
) -> dict[str, Any]:
    """The Bedrock response entry for one graded sample: sub-rewards as `Reward`, fired flags as `Metric`."""
    rewards = sub_rewards or {grader: reward}
    metrics = [{"name": name, "value": float(value), "type": "Reward"} for name, value in rewards.items()]
    metrics += [{"name": flag, "value": 1.0, "type": "Metric"} for flag in flags]
    return {"id": row_id, "aggregate_reward_score": float(reward), "metrics_list": metrics}
