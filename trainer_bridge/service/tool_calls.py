"""Tools in inference: the prompt that offers them, the calls a reply makes, calls given back in a conversation.

Models write calls in the Hermes/Qwen form the grader side reads, `<tool_call>{"name": ..., "arguments": {...}}
</tool_call>` (`loop.completions.to_sample` parses them); how a prompt offers tools is `loop.completions.offer_tools`,
shared with the RFT loop.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from gradekit.graders.safety import loads_json
from gradekit.runtime.server import APIError

from ..loop.completions import CLOSE, OPEN, to_sample

__all__ = [
    "call_block",
    "call_id",
    "chat_functions",
    "open_block",
    "response_functions",
    "split_calls",
]


def call_id() -> str:
    """A fresh tool-call id (`call_...`)."""
    return f"call_{secrets.token_hex(12)}"


def chat_functions(tools: Sequence[Any], param: str = "tools") -> list[dict[str, Any]]:
    """The function definitions of chat-completions `tools` (`{"type": "function", "function": {...}}`)."""
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not (isinstance(function, Mapping) and isinstance(function.get("name"), str)):
            raise APIError(
                400, f"Invalid value for '{param}[{i}]': expected a function tool with a name.", param=f"{param}[{i}]"
            )
        out.append(dict(function))
    return out


def response_functions(tools: Sequence[Any], param: str = "tools") -> list[dict[str, Any]]:
    """The function definitions of Responses `tools` (`{"type": "function", "name": ..., "parameters": ...}`)."""
    out = []
    for i, tool in enumerate(tools):
        if not (isinstance(tool, Mapping) and tool.get("type") == "function" and isinstance(tool.get("name"), str)):
            raise APIError(
                400, f"Invalid value for '{param}[{i}]': only function tools are supported here.", param=f"{param}[{i}]"
            )
        out.append({k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None})
    return out


def call_block(name: str, arguments: Any) -> str:
    """A call written as the model writes it; `arguments` as a JSON string (kept as text if it is not JSON)."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = loads_json(arguments) if arguments.strip() else {}
    return f"{OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{CLOSE}"


def split_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text outside well-formed call blocks (stripped when there are calls) and the calls, fresh ids each."""
    sample = to_sample(text)
    if isinstance(sample, str):
        return sample, []
    calls = [{**call, "id": call_id()} for call in sample["output_tools"]]
    return sample["output_text"], calls


def open_block(text: str) -> int:
    """Where the call block still being written starts (or a partial `<tool_call>` at the end); len(text) if none."""
    end = 0
    while (start := text.find(OPEN, end)) >= 0:
        close = text.find(CLOSE, start + len(OPEN))
        if close < 0:
            return start
        end = close + len(CLOSE)
    for k in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if text.endswith(OPEN[:k]):
            return len(text) - k
    return len(text)
