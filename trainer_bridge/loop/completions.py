"""What a local model's completion becomes for the grader: its text, plus tool calls written as `<tool_call>` blocks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gradekit.graders.safety import loads_json

__all__ = ["CLOSE", "OPEN", "as_system", "offer_tools", "template_takes_tools", "to_sample", "tools_message"]

# The Hermes/Qwen convention for tool calls in generated text: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
OPEN, CLOSE = "<tool_call>", "</tool_call>"
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def to_sample(text: str, index: int = 0) -> str | dict[str, Any]:
    """The sample for `text`: the text itself, or, when it holds tool-call blocks, text and OpenAI-style tool calls.

    A block that is not a JSON object with a string `name` stays in the text, so the grader sees what the model
    wrote; `index` only makes the call ids unique within a batch.
    """
    calls: list[dict[str, Any]] = []

    def take(match: re.Match[str]) -> str:
        try:
            call = loads_json(match.group(1))  # a model's deep JSON stays text, never a RecursionError
        except ValueError:
            return match.group(0)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return match.group(0)
        arguments = call.get("arguments", {})
        calls.append(
            {
                "id": f"call_{index}_{len(calls)}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
        return ""

    rest = _TOOL_CALL.sub(take, text)
    if not calls:
        return text
    return {"output_text": rest.strip(), "output_tools": calls}


def as_system(
    messages: list[dict[str, Any]], template: str | None, special_tokens: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The messages with OpenAI's `developer` role written as `system` when the model has no developer role (its
    chat template and its special tokens never name one).

    OpenAI's developer messages take the place of system messages; a template that only knows `system` would
    otherwise render an unknown turn after its own default system prompt.
    """
    if not template or "developer" in template or any("developer" in t for t in special_tokens):
        return messages
    return [{**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]


def template_takes_tools(template: str | None) -> bool:
    """Whether a chat template renders the `tools` it is given (it names them)."""
    return bool(template) and "tools" in str(template)


def tools_message(functions: Sequence[Mapping[str, Any]]) -> str:
    """A system message offering `functions` and saying how to call them, for templates that ignore `tools`."""
    listed = "\n".join(json.dumps(f, ensure_ascii=False) for f in functions)
    return (
        "You can call the functions described below (one JSON schema a line).\n"
        f"<tools>\n{listed}\n</tools>\n"
        f'To call one, answer with {OPEN}{{"name": "<function name>", "arguments": {{<arguments>}}}}{CLOSE}, '
        "one block a call."
    )


def offer_tools(
    messages: list[dict[str, Any]], functions: Sequence[Mapping[str, Any]], template: str | None
) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]] | None]:
    """The messages and the chat template's `tools` that offer `functions` to a model: through the template when it
    renders them, else in the system message (the first one, or a new one)."""
    if not functions or template_takes_tools(template):
        return messages, list(functions) or None
    offer = tools_message(functions)
    if messages and messages[0]["role"] in ("system", "developer"):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{offer}"}, *messages[1:]], None
    return [{"role": "system", "content": offer}, *messages], None
