"""Build the `sample` namespace from what a model produced: a string, a chat completion, or messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from .errors import GradingError
from .frozen import FrozenDict, FrozenList, freeze
from .limits import MAX_JSON_DEPTH
from .safety import NestingError, describe, loads_json

SampleInput = str | Mapping[str, Any] | list[Any] | GradingError

#: Roles whose message is the model's reply: OpenAI's `assistant`, and `nova_assistant`, which Amazon Nova's RFT
#: sends as the last message of a reward Lambda's sample (its content a list of `{"type": "text", "text"}` parts).
ASSISTANT_ROLES: Final[frozenset[str]] = frozenset({"assistant", "nova_assistant"})


def is_assistant(message: Any) -> bool:
    """Whether `message` is a message dict holding the model's reply (role `assistant` or `nova_assistant`)."""
    if not isinstance(message, Mapping):
        return False
    role = message.get("role")
    return isinstance(role, str) and role in ASSISTANT_ROLES


#: Why `output_json` is empty for a model output that is JSON nested past the bound.
TOO_DEEP_MESSAGE: Final[str] = (
    f"the model output is JSON nested deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels; "
    "output_json is {} (output_text is unchanged)"
)


class UnparsedJSON(FrozenDict):
    """The empty `output_json` of an output that is JSON but nests past `MAX_JSON_DEPTH`: `{}`, with a reason.

    It equals `{}` and renders as `{}`; a template path into it fails with `sample_parse_error` and this
    reason instead of `invalid_variable_error`. Read-only, like every sample a grader sees.
    """

    __slots__ = ()
    reason: Final[str] = TOO_DEEP_MESSAGE


def parse_json_output(text: str) -> Any:
    """`output_json` for a model output string: the parsed object or array, else `{}`.

    Never raises and never recurses deeper than `MAX_JSON_DEPTH`: deeper JSON gives an `UnparsedJSON`.
    """
    s = text.lstrip()
    if not s or s[0] not in "{[":
        return {}
    try:
        value = loads_json(s)
    except NestingError:
        return UnparsedJSON()
    except ValueError:  # not JSON, or an int of more digits than Python reads
        return {}
    return value if isinstance(value, dict | list) else {}


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise GradingError("sample_parse_error", f"message content part is not text: {describe(part)}")
        return "".join(parts)
    raise GradingError("sample_parse_error", f"message content is not text: {describe(content)}")


def _from_message(message: Mapping[str, Any], choices: list[Any]) -> dict[str, Any]:
    text = _content_text(message.get("content"))
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise GradingError("sample_parse_error", f"message tool_calls is not a list: {describe(tool_calls)}")
    return {
        "output_text": text,
        "output_json": parse_json_output(text),
        "output_tools": list(tool_calls),
        "choices": choices,
    }


#: A model output told apart by `output_form`, as `(form, answer, rest)`: `("text", the string, None)`,
#: `("sample", its output_text, the sample dict)`, `("completion", the message of choices[0], the choices)` or
#: `("messages", the last assistant message, the message list)`. Plain tuples: it runs once per sample.
OutputForm = (
    tuple[Literal["text"], str, None]
    | tuple[Literal["sample"], str, Mapping[str, Any]]
    | tuple[Literal["completion"], Mapping[str, Any], list[Any]]
    | tuple[Literal["messages"], Mapping[str, Any], list[Any]]
)


def output_form(output: SampleInput) -> OutputForm:
    """Which form `output` takes, its parts checked; `GradingError` (`sample_parse_error`) when it is none.

    One place for what a sample may be: `make_sample` builds the `sample` namespace from the form, the Lambda
    backend the messages of a reward event. A message's content is not read here.
    """
    if isinstance(output, GradingError):
        raise output  # a reader that could not parse a row passes its error along as the sample
    if isinstance(output, str):
        return "text", output, None
    if isinstance(output, Mapping):
        if "output_text" in output:
            text = output["output_text"]
            if not isinstance(text, str):
                raise GradingError("sample_parse_error", "sample field `output_text` is not a string")
            return "sample", text, output
        if "choices" in output:
            choices = output["choices"]
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
                raise GradingError("sample_parse_error", "chat completion has no `choices[0]`")
            message = choices[0].get("message")
            if not isinstance(message, Mapping):
                raise GradingError("sample_parse_error", "chat completion `choices[0]` has no `message`")
            return "completion", message, choices
        if "role" in output:
            return output_form([output])
        raise GradingError(
            "sample_parse_error",
            "sample object has neither `output_text` nor `choices`; expected a string, a sample, "
            "a chat completion or a message list",
        )
    if isinstance(output, list):
        for message in reversed(output):
            if is_assistant(message):
                return "messages", message, output
        raise GradingError("sample_parse_error", "message list has no `assistant` message")
    raise GradingError("sample_parse_error", f"cannot build a sample from {type(output).__name__}")


def make_sample(output: SampleInput) -> dict[str, Any]:
    """The `sample` dict (`output_text`, `output_json`, `output_tools`, `choices`) for a model output.

    Accepts the model's output string, a dict already shaped as a sample (has `output_text`), a chat
    completion (has `choices`), or a message list whose last `assistant` (or Amazon Nova's `nova_assistant`)
    message is the answer.
    """
    form, answer, rest = output_form(output)
    if form == "sample":
        sample = {"output_json": parse_json_output(answer), "output_tools": [], "choices": []}
        sample.update(rest)
        return sample
    if form == "completion":
        return _from_message(answer, rest)
    if form == "messages":
        return _from_message(answer, [{"index": 0, "message": dict(answer), "finish_reason": "stop"}])
    return {"output_text": answer, "output_json": parse_json_output(answer), "output_tools": [], "choices": []}


def frozen_sample(output: SampleInput) -> FrozenDict:
    """`make_sample(output)` as a read-only deep copy (what user code gets); raises GradingError likewise."""
    if type(output) is str:  # the common case, built read-only directly
        parsed = parse_json_output(output)
        return FrozenDict(
            output_text=output,
            output_json=parsed if type(parsed) is UnparsedJSON else freeze(parsed),
            output_tools=FrozenList(),
            choices=FrozenList(),
        )
    return freeze_sample(make_sample(output))


def freeze_sample(sample: dict[str, Any]) -> FrozenDict:
    """A read-only deep copy of a sample dict (keeping an `UnparsedJSON` marker, which `freeze` would drop)."""
    frozen: FrozenDict = freeze(sample)
    if type(sample.get("output_json")) is UnparsedJSON:
        dict.__setitem__(frozen, "output_json", sample["output_json"])
    return frozen
