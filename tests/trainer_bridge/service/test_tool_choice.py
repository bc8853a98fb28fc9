"""`tool_choice` on the service's chat completions and Responses: real uvicorn on 127.0.0.1, the real openai SDK.

"required", a named function and `allowed_tools` in "required" mode are enforced by constrained decoding:
`tiny-local` has random weights, so every reply being a call of an allowed function whose arguments validate
against its `parameters` comes from the constraint alone. "none" offers no tools; "auto" is unconstrained.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI

from .helpers import client, make_config, serving

pytest.importorskip("llguidance")

WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
TIME: dict[str, Any] = {
    "name": "get_time",
    "description": "The local time in a time zone",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}, "seconds": {"type": "boolean"}},
        "required": ["zone", "seconds"],
        "additionalProperties": False,
    },
}
PARAMETERS = {f["name"]: f["parameters"] for f in (WEATHER, TIME)}
CHAT_TOOLS: Any = [{"type": "function", "function": f} for f in (WEATHER, TIME)]
RESPONSE_TOOLS: Any = [{"type": "function", **f, "strict": True} for f in (WEATHER, TIME)]
MESSAGES: Any = [{"role": "user", "content": "What is the weather in Oslo, and what time is it there?"}]


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAI]:
    """The SDK on the service (inference only)."""
    with serving(make_config(tmp_path_factory.mktemp("tool-choice") / "data")) as (url, _app), client(url) as sdk:
        yield sdk


def _chat(sdk: OpenAI, seed: int, **extra: Any) -> Any:
    return sdk.chat.completions.create(
        model="tiny-local", messages=MESSAGES, temperature=1.0, seed=seed, max_tokens=128, **extra
    )


def _valid(name: str, arguments: str) -> str:
    """The call's function name, after checking its arguments against that function's parameters."""
    jsonschema.validate(json.loads(arguments), PARAMETERS[name])
    return name


def test_required_always_answers_calls_whose_arguments_validate(sdk: OpenAI) -> None:
    names = set()
    for seed in range(3):
        reply = _chat(sdk, seed, tools=CHAT_TOOLS, tool_choice="required", n=4)
        for choice in reply.choices:
            assert choice.finish_reason == "tool_calls" and choice.message.content is None
            assert choice.message.tool_calls
            names |= {_valid(c.function.name, c.function.arguments) for c in choice.message.tool_calls}
    assert names <= set(PARAMETERS)


def test_without_parallel_calls_required_answers_one_call(sdk: OpenAI) -> None:
    for seed in range(3):
        reply = _chat(sdk, seed, tools=CHAT_TOOLS, tool_choice="required", parallel_tool_calls=False, n=4)
        for choice in reply.choices:
            (call,) = choice.message.tool_calls
            _valid(call.function.name, call.function.arguments)


def test_a_named_function_is_the_one_called(sdk: OpenAI) -> None:
    for name in PARAMETERS:
        choice: Any = {"type": "function", "function": {"name": name}}
        for seed in range(2):
            reply = _chat(sdk, seed, tools=CHAT_TOOLS, tool_choice=choice, n=4)
            for c in reply.choices:
                assert c.finish_reason == "tool_calls"
                assert {_valid(t.function.name, t.function.arguments) for t in c.message.tool_calls} == {name}


def test_allowed_tools_in_required_mode_call_only_those(sdk: OpenAI) -> None:
    choice: Any = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]},
    }
    reply = _chat(sdk, 0, tools=CHAT_TOOLS, tool_choice=choice, n=4)
    for c in reply.choices:
        assert {_valid(t.function.name, t.function.arguments) for t in c.message.tool_calls} == {"get_time"}


def test_responses_required_and_named_answer_function_calls(sdk: OpenAI) -> None:
    kwargs: Any = {"model": "tiny-local", "input": MESSAGES, "tools": RESPONSE_TOOLS, "max_output_tokens": 128}
    for seed in range(3):
        answer = sdk.responses.create(tool_choice="required", extra_body={"seed": seed}, **kwargs)
        assert answer.status == "completed" and answer.output and answer.output_text == ""
        for item in answer.output:
            assert item.type == "function_call" and item.call_id.startswith("call_")
            _valid(item.name, item.arguments)
        named = sdk.responses.create(
            tool_choice={"type": "function", "name": "get_weather"}, extra_body={"seed": seed}, **kwargs
        )
        assert {_valid(i.name, i.arguments) for i in named.output if i.type == "function_call"} == {"get_weather"}
        assert named.tool_choice.type == "function" and named.tool_choice.name == "get_weather"


def test_none_offers_no_tools_and_auto_is_unconstrained(sdk: OpenAI) -> None:
    bare = _chat(sdk, 5)
    none = _chat(sdk, 5, tools=CHAT_TOOLS, tool_choice="none")
    assert none.usage.prompt_tokens == bare.usage.prompt_tokens  # the prompt does not mention the tools
    assert none.choices[0].message.content == bare.choices[0].message.content and not none.choices[0].message.tool_calls
    auto, default = _chat(sdk, 5, tools=CHAT_TOOLS, tool_choice="auto"), _chat(sdk, 5, tools=CHAT_TOOLS)
    assert auto.usage.prompt_tokens == default.usage.prompt_tokens > bare.usage.prompt_tokens  # offered
    assert auto.choices[0].message.content == default.choices[0].message.content
    assert not auto.choices[0].message.tool_calls  # random weights, unconstrained: free text, not a call block


@pytest.mark.parametrize(
    ("tools", "tool_choice", "param", "says"),
    [
        (CHAT_TOOLS, {"type": "function", "function": {"name": "get_stock"}}, "tool_choice", "no function named"),
        (None, "required", "tool_choice", "there are no tools"),
        (CHAT_TOOLS, {"type": "custom", "custom": {"name": "x"}}, "tool_choice", "expected 'none', 'auto'"),
        (CHAT_TOOLS, {"type": "function", "name": "get_time"}, "tool_choice", '"function": {"name": ...}}'),
        (
            [{"type": "function", "function": {"name": "f", "parameters": "x"}}],
            "required",
            "tools",
            "not a JSON schema",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "if": {}}}}],
            "required",
            "tools",
            "Unimplemented keys",
        ),
    ],
)
def test_a_tool_choice_that_cannot_be_enforced_is_a_400(
    sdk: OpenAI, tools: Any, tool_choice: Any, param: str, says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="tiny-local", messages=MESSAGES, tools=tools, tool_choice=tool_choice)
    error = raised.value.body
    assert isinstance(error, dict) and error["param"] == param
    assert error["message"].startswith(f"Invalid value for '{param}': ") and says in error["message"]
    assert "\n" not in error["message"]
