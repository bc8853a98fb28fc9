"""The call grammar of a `tool_choice` that asks for a call, over a byte-level BPE vocabulary (as pretrained models
have, tokens spanning a call's head and its arguments): random logits through its mask always write call blocks of
the chosen functions whose arguments validate, and a stream of those replies, cut anywhere, reads the same calls.
"""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest

from gradekit.trainer_bridge.models.structured import grammar_output
from gradekit.trainer_bridge.service.streaming import Reply
from gradekit.trainer_bridge.service.tool_calls import call_block, call_grammar, split_calls

from ..random_decoding import byte_level_tokenizer, random_replies

pytest.importorskip("llguidance")

WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
NOTE: dict[str, Any] = {
    "name": "note",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 16}, "score": {"type": "number"}},
        "required": ["text", "score"],
        "additionalProperties": False,
    },
}
FUNCTIONS = [WEATHER, NOTE]
PARAMETERS = {f["name"]: f["parameters"] for f in FUNCTIONS}


@pytest.fixture(scope="module")
def byte_level() -> Any:
    """A byte-level BPE tokenizer trained here on call blocks: tokens such as `"arguments":{"` abound."""
    calls = [
        call_block("get_weather", {"city": "Zürich", "days": 3, "unit": "celsius"}),
        call_block("note", {"text": "€5 café", "score": 0.75}),
    ]
    return byte_level_tokenizer([c.replace(" ", "") for c in calls] * 30, vocab_size=700)


def _sample(byte_level: Any, functions: list[dict[str, Any]], *, parallel: bool, seed: int) -> list[str]:
    """Replies of random logits under the call grammar, as the service decodes them."""
    grammar = call_grammar(functions, parallel=parallel)
    constraint = grammar_output(byte_level, grammar, schemas=[f["parameters"] for f in functions])
    return random_replies(byte_level, constraint, rows=12, budget=160, seed=seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_logits_write_calls_whose_arguments_validate(byte_level: Any, seed: int) -> None:
    for text in _sample(byte_level, FUNCTIONS, parallel=True, seed=seed):
        rest, calls = split_calls(text)
        assert rest == "" and calls, text
        for call in calls:
            jsonschema.validate(json.loads(call["function"]["arguments"]), PARAMETERS[call["function"]["name"]])


def test_one_named_function_without_parallel_calls_is_one_call_of_it(byte_level: Any) -> None:
    for text in _sample(byte_level, [NOTE], parallel=False, seed=2):
        (call,) = split_calls(text)[1]
        assert call["function"]["name"] == "note"
        jsonschema.validate(json.loads(call["function"]["arguments"]), NOTE["parameters"])


def test_streamed_in_any_pieces_the_calls_are_the_same(byte_level: Any) -> None:
    rng = random.Random(3)
    for text in _sample(byte_level, FUNCTIONS, parallel=True, seed=3):
        expected = [c["function"] for c in split_calls(text)[1]]
        reply, pieces = Reply(tools=True), []
        cuts = sorted(rng.sample(range(1, len(text)), 8))
        for piece in (text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)):
            pieces += reply.add(piece).calls
        pieces += reply.finish().calls
        assert [c["function"] for c in reply.calls] == expected
        assert sum(1 for p in pieces if p.new) == sum(1 for p in pieces if p.done) == len(expected)
