"""Streamed tool calls: their arguments arrive in pieces as they are generated (real uvicorn on 127.0.0.1, the real
openai SDK's streaming helpers).

Chat sends a call's id, type and name in its first `tool_calls` delta, then `function.arguments` pieces; Responses
adds the `function_call` item, sends `response.function_call_arguments.delta` events, then `.done` and the item
done (the order of OpenAI's events). `tiny-local` answers with `tool_choice` "required", so every reply is calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from .helpers import client, make_config, serving

pytest.importorskip("llguidance")

LOOKUP: dict[str, Any] = {
    "name": "lookup_order",
    "description": "Find an order and its shipments",
    "parameters": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "minLength": 6, "maxLength": 12},
            "fields": {"type": "array", "items": {"type": "string", "enum": ["status", "items", "address"]}},
            "notify": {"type": "boolean"},
        },
        "required": ["order_id", "fields", "notify"],
        "additionalProperties": False,
    },
}
CHAT_TOOLS: Any = [{"type": "function", "function": LOOKUP}]
RESPONSE_TOOLS: Any = [{"type": "function", **LOOKUP, "strict": True}]
MESSAGES: Any = [{"role": "user", "content": "Where is my order A1B2C3? It has not arrived."}]
SEEDS = range(3)


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAI]:
    """The SDK on the service (inference only)."""
    with serving(make_config(tmp_path_factory.mktemp("streamed-calls") / "data")) as (url, _app), client(url) as sdk:
        yield sdk


def _chat(seed: int) -> dict[str, Any]:
    return {
        "model": "tiny-local",
        "messages": MESSAGES,
        "tools": CHAT_TOOLS,
        "tool_choice": "required",
        "temperature": 1.0,
        "seed": seed,
        "max_tokens": 128,
    }


def test_chat_arguments_stream_in_pieces_that_join_to_the_answer(sdk: OpenAI) -> None:
    for seed in SEEDS:
        whole = sdk.chat.completions.create(**_chat(seed)).choices[0]
        expected = [(c.function.name, c.function.arguments) for c in whole.message.tool_calls or []]
        assert expected and whole.finish_reason == "tool_calls"

        deltas = [
            t
            for chunk in sdk.chat.completions.create(**_chat(seed), stream=True)
            for t in chunk.choices[0].delta.tool_calls or []
        ]
        firsts = [t for t in deltas if t.id]
        assert [(t.index, t.type, t.function.name, t.function.arguments) for t in firsts] == [
            (i, "function", name, "") for i, (name, _) in enumerate(expected)
        ]
        pieces = [t for t in deltas if not t.id]
        assert all(t.type is None and t.function.name is None and t.function.arguments for t in pieces)
        for i, (_name, arguments) in enumerate(expected):
            mine = [t.function.arguments for t in pieces if t.index == i]
            assert len(mine) > 1 and "".join(mine) == arguments

        with sdk.chat.completions.stream(**_chat(seed)) as stream:
            events = list(stream)
            final = stream.get_final_completion().choices[0]
        assert [(c.function.name, c.function.arguments) for c in final.message.tool_calls or []] == expected
        assert final.finish_reason == "tool_calls"
        growing = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
        assert len(growing) > len(expected)  # more than one piece per call
        done = [(e.name, e.arguments) for e in events if e.type == "tool_calls.function.arguments.done"]
        assert done == expected
        for name, arguments in done:
            assert name == "lookup_order" and set(json.loads(arguments)) == {"order_id", "fields", "notify"}


def _respond(seed: int) -> dict[str, Any]:
    return {
        "model": "tiny-local",
        "input": MESSAGES,
        "tools": RESPONSE_TOOLS,
        "tool_choice": "required",
        "temperature": 1.0,
        "max_output_tokens": 128,
        "extra_body": {"seed": seed},
    }


def test_responses_arguments_stream_as_delta_events_in_openais_order(sdk: OpenAI) -> None:
    for seed in SEEDS:
        whole = sdk.responses.create(**_respond(seed))
        expected = [(i.name, i.arguments) for i in whole.output if i.type == "function_call"]
        assert expected and len(expected) == len(whole.output)

        with sdk.responses.stream(**_respond(seed)) as stream:
            events = list(stream)
            final = stream.get_final_response()
        assert [(i.name, i.arguments) for i in final.output if i.type == "function_call"] == expected
        assert [e.sequence_number for e in events] == list(range(len(events)))
        kinds = [e.type for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"

        for index, (name, arguments) in enumerate(expected):
            mine = [e for e in events if getattr(e, "output_index", None) == index]
            added, *deltas, done, item_done = mine
            assert added.type == "response.output_item.added" and added.item.type == "function_call"
            assert (added.item.name, added.item.arguments, added.item.status) == (name, "", "in_progress")
            assert {d.type for d in deltas} == {"response.function_call_arguments.delta"} and len(deltas) > 1
            assert "".join(d.delta for d in deltas) == arguments
            assert done.type == "response.function_call_arguments.done" and done.arguments == arguments
            assert item_done.type == "response.output_item.done" and item_done.item.status == "completed"
            assert {e.item_id for e in [*deltas, done]} == {added.item.id} == {item_done.item.id}
            assert (item_done.item.call_id, item_done.item.arguments) == (added.item.call_id, arguments)
