"""Tool calls in inference: a tiny model taught to call a function, read through the unmodified openai SDK.

The model writes Hermes/Qwen `<tool_call>` blocks; the service returns them as chat `tool_calls` and as Responses
`function_call` items, streamed (the arguments in pieces as generated) and not. Its tokenizer joins tokens without
spaces (a `Fuse` decoder), so that a word-level vocabulary can spell compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from gradekit.trainer_bridge.loop.completions import tools_message
from gradekit.trainer_bridge.loop.data import Row
from gradekit.trainer_bridge.loop.warm_start import warm_start
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy
from gradekit.trainer_bridge.service.tool_calls import call_block

from .service.helpers import client, make_config, serving

INSTRUCTION = "You answer questions about the weather."
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}
CHAT_TOOLS: Any = [{"type": "function", "function": WEATHER}]
RESPONSE_TOOLS: Any = [{"type": "function", **WEATHER, "strict": False}]
PARIS = "What is the weather in Paris?"
OSLO = "Is it cold in Oslo today?"
# What the model is taught to answer to each question: a call alone, and text before a call.
REPLIES = {
    PARIS: '<tool_call>{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}}</tool_call>',
    OSLO: 'Checking<tool_call>{"name":"get_weather","arguments":{"city":"Oslo"}}</tool_call>',
}


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "developer", "content": INSTRUCTION}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAI]:
    """The service serving `caller`, a tiny model warm-started to call get_weather."""
    from tokenizers import decoders

    root: Path = tmp_path_factory.mktemp("tool-calls")
    offer = tools_message([WEATHER])
    # Rows with tools, as an RFT dataset has them: the loop's prompt offers them as the service's does (tiny-local's
    # template ignores `tools`, so both put them in the system message), so what it learns is what the service asks.
    rows = [Row(_messages(q), {}, CHAT_TOOLS) for q in REPLIES]
    texts = [INSTRUCTION, offer, *REPLIES, *REPLIES.values()]
    policy = Policy.load(TINY_MODEL, texts=texts, seed=0)
    policy.tokenizer.backend_tokenizer.decoder = decoders.Fuse()
    warm_start(policy, rows, list(REPLIES.values()), steps=120, batch_size=2, learning_rate=1e-2)
    policy.save(root / "caller")
    config = make_config(root / "data", start_worker=False, base_models={"caller": str(root / "caller")})
    with serving(config) as (url, _), client(url) as sdk:
        yield sdk


def _chat(sdk: OpenAI, question: str, **extra: Any) -> Any:
    """A greedy chat completion (or its stream) of `question` with the weather tool offered."""
    return sdk.chat.completions.create(
        model="caller", messages=_messages(question), tools=CHAT_TOOLS, temperature=0, **extra
    )


def _call(call: Any) -> tuple[str, Any]:
    """A chat tool call's function name and parsed arguments."""
    return call.function.name, json.loads(call.function.arguments)


PARIS_CALL = ("get_weather", {"city": "Paris", "unit": "celsius"})
OSLO_CALL = ("get_weather", {"city": "Oslo"})


def test_a_chat_answer_that_calls_a_tool(sdk: OpenAI) -> None:
    choice = _chat(sdk, PARIS).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert _call(call) == PARIS_CALL

    choice = _chat(sdk, OSLO).choices[0]  # the text outside the block is the content
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking"
    assert [_call(c) for c in choice.message.tool_calls] == [OSLO_CALL]


def test_tool_calls_stream_as_deltas(sdk: OpenAI) -> None:
    for question, content, expected in ((PARIS, None, PARIS_CALL), (OSLO, "Checking", OSLO_CALL)):
        chunks = list(_chat(sdk, question, stream=True))
        calls = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
        first, *pieces = calls  # the first carries the id, type and name; the others pieces of the arguments
        assert (first.index, first.type, first.id[:5], first.function.name) == (0, "function", "call_", expected[0])
        assert len(pieces) > 1 and all(t.index == 0 and t.id is None for t in pieces)
        assert json.loads("".join(t.function.arguments for t in calls)) == expected[1]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == (content or "")
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        with sdk.chat.completions.stream(
            model="caller", messages=_messages(question), tools=CHAT_TOOLS, temperature=0
        ) as stream:
            final = stream.get_final_completion().choices[0]
        assert final.finish_reason == "tool_calls" and (final.message.content or None) == content
        assert [_call(c) for c in final.message.tool_calls or []] == [expected]


def test_responses_answer_function_call_items(sdk: OpenAI) -> None:
    kwargs: Any = {"model": "caller", "instructions": INSTRUCTION, "tools": RESPONSE_TOOLS, "temperature": 0}
    answer = sdk.responses.create(input=PARIS, **kwargs)
    assert answer.status == "completed" and answer.output_text == ""
    (item,) = answer.output
    assert item.type == "function_call" and item.call_id.startswith("call_") and item.status == "completed"
    assert (item.name, json.loads(item.arguments)) == PARIS_CALL

    events = list(sdk.responses.create(input=PARIS, stream=True, **kwargs))
    kinds = [e.type for e in events]
    assert kinds.count("response.function_call_arguments.delta") > 1  # the arguments in pieces, as generated
    assert [k for i, k in enumerate(kinds) if k not in kinds[:i] or "delta" not in k] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with sdk.responses.stream(input=OSLO, **kwargs) as stream:
        final = stream.get_final_response()
    message, call = final.output
    assert message.type == "message" and final.output_text == "Checking"
    assert call.type == "function_call" and (call.name, json.loads(call.arguments)) == OSLO_CALL


def test_a_conversation_gives_the_calls_and_their_results_back(sdk: OpenAI) -> None:
    first = _chat(sdk, PARIS)
    (call,) = first.choices[0].message.tool_calls
    history: Any = [
        *_messages(PARIS),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = sdk.chat.completions.create(model="caller", messages=history, tools=CHAT_TOOLS, max_tokens=4)
    # the prompt grew by the call (as a block the model writes), the tool's answer and 4 role and end markers
    block = call_block(*PARIS_CALL)
    written = sdk.completions.create(model="caller", prompt=block, max_tokens=1).usage.prompt_tokens
    assert second.usage.prompt_tokens - first.usage.prompt_tokens == written + 4

    kwargs: Any = {"model": "caller", "instructions": INSTRUCTION, "tools": RESPONSE_TOOLS}
    item = sdk.responses.create(input=PARIS, temperature=0, **kwargs).output[0]
    assert item.type == "function_call"
    back = [
        {"role": "user", "content": PARIS},
        item.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": item.call_id, "output": "sunny"},
    ]
    again = sdk.responses.create(input=back, max_output_tokens=4, **kwargs)
    assert again.usage.input_tokens == second.usage.prompt_tokens


def test_tools_that_are_not_functions_are_refused(sdk: OpenAI) -> None:
    tools: Any = [{"type": "web_search"}]
    with pytest.raises(openai.BadRequestError, match="only function tools") as e:
        sdk.responses.create(model="caller", input=PARIS, tools=tools)
    assert e.value.body["param"] == "tools[0]"  # type: ignore[index]
    tools = [{"type": "function"}]
    with pytest.raises(openai.BadRequestError, match="function tool with a name") as e:
        sdk.chat.completions.create(model="caller", messages=_messages(PARIS), tools=tools)
    assert e.value.body["param"] == "tools[0]"  # type: ignore[index]


def test_a_model_without_a_chat_template_gets_role_lines_and_the_tools_in_its_system_message() -> None:
    offer = tools_message([WEATHER])
    policy = Policy.load(TINY_MODEL, texts=[INSTRUCTION, offer, PARIS, "system user assistant"], seed=0)
    policy.tokenizer.chat_template = None  # e.g. a base model folder
    ids = policy.prompt_ids(Row(_messages(PARIS), {}, CHAT_TOOLS))
    expected = f"developer: {INSTRUCTION}\n\n{offer}\nuser: {PARIS}\nassistant:"
    assert ids == policy.tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert (
        policy.prompt_ids(Row(_messages(PARIS), {}))
        == policy.tokenizer(f"developer: {INSTRUCTION}\nuser: {PARIS}\nassistant:", add_special_tokens=False)[
            "input_ids"
        ]
    )
