"""OpenAI RFT training data: JSONL rows of `messages` (ending with a user turn) plus extra fields (the `item`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gradekit.runtime.jsonl import iter_lines

__all__ = ["ROLES", "DataError", "Row", "check_row", "load_rows"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: Fields of a row that shape the prompt; every other field goes to the grader as `item`.
PROMPT_FIELDS = ("messages", "tools", "response_format")


class DataError(ValueError):
    """A training or validation row that is not RFT data; `str()` reads `path:line: message`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Row:
    """One RFT datapoint: the prompt messages, optional tools and response format, and the grader's `item`."""

    messages: list[dict[str, Any]]
    item: dict[str, Any]
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    line: int = 0
    texts: list[str] = field(default_factory=list, repr=False)  # every text of the row (for building a vocabulary)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not (isinstance(part, Mapping) and isinstance(part.get("text"), str)):
                raise ValueError(f"{where}.content[{j}] must be a text part ({{'type': 'text', 'text': ...}})")
            parts.append(part["text"])
        return "".join(parts)
    raise ValueError(f"{where}.content must be a string or a list of text parts")


def check_row(value: Any) -> Row:
    """The row `value` describes; `ValueError` naming the field that is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f"a row must be a JSON object, not {type(value).__name__}")
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of chat messages")
    clean: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise ValueError(f"{where} must be an object with 'role' and 'content'")
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(f"{where}.role must be one of {', '.join(sorted(ROLES))} (got {role!r})")
        clean.append({**m, "content": _text(m.get("content", ""), where)})
    if clean[-1]["role"] != "user":
        last = len(clean) - 1
        raise ValueError(f"the last message must have role 'user' (messages[{last}] is {clean[last]['role']!r})")
    tools = value.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ValueError("'tools' must be a list of tool definitions")
    response_format = value.get("response_format")
    if response_format is not None and not isinstance(response_format, Mapping):
        raise ValueError("'response_format' must be an object")
    item = {k: v for k, v in value.items() if k not in PROMPT_FIELDS}
    texts = [m["content"] for m in clean] + [v for v in item.values() if isinstance(v, str)]
    return Row(clean, item, tools, dict(response_format) if response_format else None, texts=texts)


def load_rows(path: str | os.PathLike[str], *, what: str = "file") -> list[Row]:
    """Every row of an RFT JSONL file; `DataError` at the first bad line, naming file, line and field."""
    rows: list[Row] = []
    name = os.fspath(path)
    for line in iter_lines(name):
        try:
            row = check_row(line.parse())
        except ValueError as e:
            message = getattr(e, "message", str(e))
            raise DataError(name, line.number, f"{what}: {message}") from None
        rows.append(Row(row.messages, row.item, row.tools, row.response_format, line.number, row.texts))
    if not rows:
        raise DataError(name, 0, f"{what}: no rows")
    return rows
