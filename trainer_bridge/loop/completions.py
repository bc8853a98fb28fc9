"""What a local model's completion becomes for the grader: its text, plus tool calls written as `<tool_call>` blocks."""

from __future__ import annotations

import json
import re
from typing import Any

from gradekit.graders.safety import loads_json

__all__ = ["to_sample"]

# The Hermes/Qwen convention for tool calls in generated text: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
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
