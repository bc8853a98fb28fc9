"""The `sample` namespace built from each form of model output (`graders/samples.py`), value by value."""

from __future__ import annotations

from typing import Any

import pytest

from gradekit.graders import GradingError
from gradekit.graders.frozen import FrozenDict, FrozenList
from gradekit.graders.limits import MAX_JSON_DEPTH
from gradekit.graders.samples import (
    TOO_DEEP_MESSAGE,
    UnparsedJSON,
    freeze_sample,
    frozen_sample,
    is_assistant,
    make_sample,
    parse_json_output,
)

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "assistant"}, True),
        ({"role": "nova_assistant", "content": []}, True),
        ({"role": "user"}, False),
        ({"role": "Assistant"}, False),
        ({"role": None}, False),
        ({"role": ["assistant"]}, False),
        ({}, False),
        ("assistant", False),
        (None, False),
    ],
)
def test_is_assistant(message: Any, expected: bool) -> None:
    assert is_assistant(message) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  \n[1, 2]", [1, 2]),
        ("[]", []),
        ("", {}),
        ("   ", {}),
        ("42", {}),
        ('"{a}"', {}),
        ("{not json", {}),
        ("{} trailing", {}),
        ("null", {}),
    ],
)
def test_parse_json_output(text: str, expected: Any) -> None:
    assert parse_json_output(text) == expected
    assert type(parse_json_output(text)) is type(expected)


def test_json_nested_past_the_bound_is_unparsed_with_its_reason() -> None:
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    parsed = parse_json_output(deep)
    assert type(parsed) is UnparsedJSON and parsed == {}
    assert parsed.reason == TOO_DEEP_MESSAGE
    assert str(MAX_JSON_DEPTH) in TOO_DEEP_MESSAGE
    at_bound = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert type(parse_json_output(at_bound)) is list


def test_a_string_is_its_own_output_text() -> None:
    assert make_sample('{"k": [1]}') == {
        "output_text": '{"k": [1]}',
        "output_json": {"k": [1]},
        "output_tools": [],
        "choices": [],
    }


def test_a_sample_dict_keeps_its_fields_over_the_defaults() -> None:
    assert make_sample({"output_text": "[3]"}) == {
        "output_text": "[3]",
        "output_json": [3],
        "output_tools": [],
        "choices": [],
    }
    given = {"output_text": "[3]", "output_json": {"mine": 1}, "output_tools": [CALL], "extra": 2}
    assert make_sample(given) == {**given, "choices": []}


def test_a_chat_completion_reads_the_message_of_choices_0() -> None:
    choices = [
        {"index": 0, "message": {"role": "assistant", "content": '{"x": 1}', "tool_calls": [CALL]}},
        {"index": 1, "message": {"role": "assistant", "content": "other"}},
    ]
    assert make_sample({"choices": choices}) == {
        "output_text": '{"x": 1}',
        "output_json": {"x": 1},
        "output_tools": [CALL],
        "choices": choices,
    }


def test_a_message_list_reads_its_last_assistant_message() -> None:
    messages = [
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "q"},
        {"role": "nova_assistant", "content": [{"type": "text", "text": "[1"}, "]"], "tool_calls": None},
        {"role": "user", "content": "thanks"},
    ]
    sample = make_sample(messages)
    assert sample == {
        "output_text": "[1]",
        "output_json": [1],
        "output_tools": [],
        "choices": [{"index": 0, "message": messages[2], "finish_reason": "stop"}],
    }
    assert sample["choices"][0]["message"] is not messages[2]  # a copy: the caller's message is not shared
    assert make_sample({"role": "assistant", "content": None})["output_text"] == ""


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"role": "assistant", "content": 3}, "message content is not text: 3"),
        ({"role": "assistant", "content": {"text": "a"}}, "message content is not text: {'text': 'a'}"),
        ({"role": "assistant", "content": ["a", 7]}, "message content part is not text: 7"),
        ({"role": "assistant", "content": [{"text": 1}]}, "message content part is not text: {'text': 1}"),
        ({"role": "assistant", "content": "a", "tool_calls": "f"}, "message tool_calls is not a list: 'f'"),
        ({"role": "assistant", "content": "a", "tool_calls": {"a": 1}}, "message tool_calls is not a list: {'a': 1}"),
    ],
)
def test_an_unreadable_answer_is_a_parse_error(message: dict[str, Any], error: str) -> None:
    for output in ([message], {"choices": [{"message": message}]}):
        with pytest.raises(GradingError) as caught:
            make_sample(output)
        assert (caught.value.flag, caught.value.message) == ("sample_parse_error", error)


def test_frozen_sample_of_a_string_is_read_only() -> None:
    sample = frozen_sample('{"a": [1]}')
    assert sample == make_sample('{"a": [1]}')
    assert type(sample) is FrozenDict
    assert type(sample["output_json"]) is FrozenDict and type(sample["output_json"]["a"]) is FrozenList
    assert type(sample["output_tools"]) is FrozenList and type(sample["choices"]) is FrozenList


def test_frozen_sample_keeps_the_unparsed_marker() -> None:
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    for output in (deep, {"output_text": deep}, [{"role": "assistant", "content": deep}]):
        sample = frozen_sample(output)
        assert type(sample["output_json"]) is UnparsedJSON and sample["output_text"] == deep


def test_freeze_sample_copies_every_level() -> None:
    given = {"output_text": "", "output_json": {"a": [1]}, "output_tools": [], "choices": []}
    frozen = freeze_sample(given)
    assert frozen == given and type(frozen) is FrozenDict and type(frozen["output_json"]["a"]) is FrozenList
    given["output_json"]["a"].append(2)
    assert frozen["output_json"] == {"a": [1]}


def test_frozen_sample_of_a_str_subclass_reads_it_as_text() -> None:
    class Text(str):
        pass

    sample = frozen_sample(Text("[5]"))
    assert sample == {"output_text": "[5]", "output_json": [5], "output_tools": [], "choices": []}
    assert type(sample) is FrozenDict
