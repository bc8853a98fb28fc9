"""Tools in inference: the prompt that offers them, the calls a reply makes, calls given back in a conversation.

Models write calls in the Hermes/Qwen form the grader side reads, `<tool_call>{"name": ..., "arguments": {...}}
</tool_call>` (`loop.completions.to_sample` parses them); how a prompt offers tools is `loop.completions.offer_tools`,
shared with the RFT loop. A `tool_choice` that asks for a call ("required", a named function, `allowed_tools` in
"required" mode) is enforced with `call_grammar`: only call blocks of the chosen functions, their arguments
following each function's `parameters` schema.

A block that begins `{"name": <string>, "arguments": ` is a call from then on, its arguments the JSON the model
writes after that, exactly as written: so a stream can send them as they are generated (`read_calls`) and the
whole reply reads the same. Other blocks are calls once closed if `to_sample` reads them as one.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradekit.graders.safety import loads_json
from gradekit.runtime.server import APIError

from ..loop.completions import CLOSE, OPEN, to_sample

__all__ = [
    "Written",
    "call_block",
    "call_grammar",
    "call_id",
    "chat_functions",
    "chosen_functions",
    "read_calls",
    "response_functions",
    "split_calls",
]

# The start of a call block whose name comes first: what a stream needs to send the call before its arguments.
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\\x00-\x1f]|\\.)*")\s*,\s*"arguments"\s*:\s*')
_SCALAR_END = re.compile(r"[\s,}\]]")


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


def chosen_functions(
    tools: Sequence[Any] | None, tool_choice: Any, *, responses: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The functions a request offers the model and, when its `tool_choice` asks for a call, those it may call.

    "none" offers none; "auto" (the default) offers all and the reply may call one or not; "required" makes the
    reply call at least one; a named function (`{"type": "function", "function": {"name": ...}}` in chat,
    `{"type": "function", "name": ...}` in Responses) that one; `allowed_tools` offers those it lists, in
    "required" mode a call of one of them.
    """
    functions = (response_functions if responses else chat_functions)(tools or [])
    if tool_choice is None or tool_choice in ("auto", "none"):
        return ([] if tool_choice == "none" else functions), None
    if not functions:
        raise _bad_choice("it asks for a call but there are no tools.")
    if tool_choice == "required":
        return functions, functions
    kind = tool_choice.get("type") if isinstance(tool_choice, Mapping) else None
    by_name = {f["name"]: f for f in functions}
    if kind == "function":
        name = _chosen_name(tool_choice, responses=responses)
        if name not in by_name:
            raise _bad_choice(f"no function named {name!r} in 'tools'.")
        return functions, [by_name[name]]
    if kind == "allowed_tools":
        allowed = tool_choice if responses else tool_choice.get("allowed_tools")
        if not isinstance(allowed, Mapping) or allowed.get("mode") not in ("auto", "required"):
            raise _bad_choice("allowed_tools needs a 'mode' and 'tools'.")
        listed = allowed.get("tools")
        names = [_chosen_name(t, responses=responses) for t in (listed if isinstance(listed, list) else [])]
        unknown = [n for n in names if n not in by_name]
        if not names or unknown:
            what = f"no function named {unknown[0]!r} in 'tools'" if unknown else "it allows no tools"
            raise _bad_choice(f"{what}.")
        offered = [by_name[n] for n in dict.fromkeys(names)]
        return offered, (offered if allowed["mode"] == "required" else None)
    expected = "'none', 'auto', 'required', a function or allowed_tools"
    raise _bad_choice(f"expected {expected}.")


def _chosen_name(entry: Any, *, responses: bool) -> str:
    """The function name a `tool_choice` entry gives (`name` in Responses, `function.name` in chat): 400 if none."""
    where = entry if responses else entry.get("function") if isinstance(entry, Mapping) else None
    name = where.get("name") if isinstance(where, Mapping) else None
    if not isinstance(name, str):
        shape = '{"type": "function", "name": ...}' if responses else '{"type": "function", "function": {"name": ...}}'
        raise _bad_choice(f"a function is chosen as {shape}.")
    return name


def _bad_choice(why: str) -> APIError:
    return APIError(400, f"Invalid value for 'tool_choice': {why}", param="tool_choice")


def call_grammar(functions: Sequence[Mapping[str, Any]], *, parallel: bool) -> str:
    """A Lark grammar (llguidance's dialect) of replies that are call blocks of `functions` and nothing else.

    Each block is written compactly, name first, its arguments an object following the function's `parameters`
    JSON schema; one block, or one or more when `parallel`.
    """
    rules = []
    for i, f in enumerate(functions):
        parameters = f.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise APIError(
                400, f"Invalid value for 'tools': the parameters of {f['name']!r} are not a JSON schema.", param="tools"
            )
        head = f'{OPEN}{{"name":{json.dumps(f["name"], ensure_ascii=False)},"arguments":'
        schema = {"type": "object", **parameters, "x-guidance": {"whitespace_flexible": False}}
        rules.append(f"call_{i}: {json.dumps(head, ensure_ascii=False)} args_{i} {json.dumps('}' + CLOSE)}")
        rules.append(f"args_{i}: %json {json.dumps(schema, ensure_ascii=False)}")
    calls = " | ".join(f"call_{i}" for i in range(len(functions)))
    return "\n".join([f"start: {'call+' if parallel else 'call'}", f"call: {calls}", *rules])


def call_block(name: str, arguments: Any) -> str:
    """A call written as the model writes it; `arguments` as a JSON string (kept as text if it is not JSON)."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = loads_json(arguments) if arguments.strip() else {}
    return f"{OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{CLOSE}"


def split_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text outside call blocks (stripped when there are calls) and the calls, fresh ids each."""
    rest, written = read_calls(text, final=True)
    calls = [
        {"id": call_id(), "type": "function", "function": {"name": w.name, "arguments": w.arguments}} for w in written
    ]
    return rest, calls


@dataclass(frozen=True)
class Written:
    """A call as far as a reply has written it: `arguments` only grows until `done`."""

    name: str
    arguments: str
    done: bool


def read_calls(text: str, *, final: bool) -> tuple[str, list[Written]]:
    """The text outside call blocks and the calls of a reply so far (all of it when `final`).

    While the reply goes on, a block still open is a call once its head is written, and text that may yet
    turn out to be the start of a block or of its closing tag is held back. The text is stripped when there are
    calls, as `to_sample` strips it.
    """
    parts: list[str] = []
    calls: list[Written] = []
    end = 0
    while (start := text.find(OPEN, end)) >= 0:
        close = text.find(CLOSE, start + len(OPEN))
        if close < 0:  # the last block, still being written (or never closed)
            content = text[start + len(OPEN) :]
            if not final:
                content = content[: len(content) - _partial(content, CLOSE)]
            call = _head_call(content, done=final)
            if call is not None:
                calls.append(call)
                parts.append(text[end:start])
            else:
                parts.append(text[end:] if final else text[end:start])
            end = len(text)
            break
        after = close + len(CLOSE)
        call = _head_call(text[start + len(OPEN) : close], done=True) or _whole_call(text[start:after])
        parts.append(text[end:start] if call else text[end:after])
        calls += [call] if call else []
        end = after
    tail = text[end:]
    parts.append(tail if final else tail[: len(tail) - _partial(tail, OPEN)])
    rest = "".join(parts)
    return (rest.strip() if calls else rest), calls


def _partial(text: str, tag: str) -> int:
    """The length of the longest end of `text` that starts `tag` (without being all of it)."""
    return next((k for k in range(min(len(tag) - 1, len(text)), 0, -1) if text.endswith(tag[:k])), 0)


def _head_call(content: str, *, done: bool) -> Written | None:
    """The call of a block that begins with its name then `"arguments":`, its arguments so far; None otherwise."""
    head = _HEAD.match(content)
    if head is None:
        return None
    try:
        name = json.loads(head.group(1))
    except ValueError:
        return None
    arguments = _value(content[head.end() :], done=done)
    return Written(name, arguments or ("{}" if done else ""), done)


def _value(text: str, *, done: bool) -> str:
    """The arguments in `text` (what follows `"arguments":`) that can be sent: an object or array as far as
    written; a string (a JSON text itself) or another value once complete (or the block is over)."""
    if not text:
        return ""
    if text[0] in "{[":
        depth, inside, escaped = 0, False, False
        for i, c in enumerate(text):
            if inside:
                inside, escaped = (escaped or c != '"'), (not escaped and c == "\\")
            elif c == '"':
                inside = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return text[: i + 1]
        return text
    if text[0] == '"':
        try:
            value, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return text if done else ""
        return value
    scalar = _SCALAR_END.search(text)
    if scalar is not None:
        return text[: scalar.start()]
    return text if done else ""


def _whole_call(block: str) -> Written | None:
    """A closed block `to_sample` reads as a call (its name need not come first)."""
    sample = to_sample(block)
    if isinstance(sample, str):
        return None
    (call,) = sample["output_tools"]
    return Written(call["function"]["name"], call["function"]["arguments"], True)
