"""Tool calls a local model writes as `<tool_call>` blocks reach tool-call graders as OpenAI tool calls; tools are
offered in its prompt one way for the loop and the service."""

from __future__ import annotations

import json

from gradekit.graders import run_batch
from gradekit.trainer_bridge.loop.completions import as_system, offer_tools, to_sample, tools_message

GRADER = {"type": "tool_call", "name": "weather_call"}  # expects the item's `expected_tool_calls`
ITEM = {"expected_tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}


def test_plain_text_stays_a_string() -> None:
    assert to_sample("billing") == "billing"


def test_tool_call_blocks_become_tool_calls() -> None:
    text = 'Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    sample = to_sample(text, index=3)
    assert sample == {
        "output_text": "Let me check.",
        "output_tools": [
            {
                "id": "call_3_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
            }
        ],
    }


def test_malformed_blocks_stay_in_the_text() -> None:
    text = "<tool_call>{not json}</tool_call> <tool_call>[1]</tool_call>"
    assert to_sample(text) == text
    deep = "<tool_call>" + "[" * 100_000 + "</tool_call>"  # a policy's answer: text, never a RecursionError
    assert to_sample(deep) == deep


def test_a_tool_call_grader_scores_the_parsed_calls() -> None:
    right = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    wrong = '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>'
    result = run_batch(GRADER, [to_sample(right), to_sample(wrong, 1), to_sample("no call")], [ITEM] * 3)
    assert result.rewards[0] == 1.0 and result.rewards[1] < 1.0 and result.rewards[2] == 0.0


def test_offer_tools_uses_the_template_when_it_renders_tools_else_the_system_message() -> None:
    fn = {"name": "lookup", "description": "Find a ticket", "parameters": {"type": "object"}}
    asked = [{"role": "user", "content": "where is my order?"}]
    # a template that renders `tools` gets them as they are, the messages untouched
    assert offer_tools(asked, [fn], "{% for t in tools %}{{ t }}{% endfor %}") == (asked, [fn])
    # one that ignores them: a system message of their own, before the conversation
    messages, tools = offer_tools(asked, [fn], "{{ messages }}")
    assert tools is None and messages == [{"role": "system", "content": tools_message([fn])}, *asked]
    assert '{"name": "lookup", "description": "Find a ticket"' in messages[0]["content"]
    # an existing system or developer message is extended, not doubled
    told = [{"role": "developer", "content": "Be brief."}, *asked]
    messages, _ = offer_tools(told, [fn], None)
    assert messages == [{"role": "developer", "content": f"Be brief.\n\n{tools_message([fn])}"}, *asked]
    # no functions: nothing changes
    assert offer_tools(asked, [], None) == (asked, None)


def test_as_system_writes_developer_as_system_only_for_a_template_without_that_role() -> None:
    asked = [{"role": "developer", "content": "Route it."}, {"role": "user", "content": "I cannot log in."}]
    # SmolLM2's template renders any role after its own default system prompt: developer becomes system.
    generic = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
    assert as_system(asked, generic) == [{"role": "system", "content": "Route it."}, asked[1]]
    assert as_system(asked, "{% if m['role'] == 'developer' %}{% endif %}") == asked
    assert as_system(asked, None) == asked  # role lines keep the role as written
    assert as_system(asked, generic, ["<|system|>", "<|developer|>"]) == asked  # tiny-local: a developer role token
    assert asked[0]["role"] == "developer"  # the caller's messages are not changed
