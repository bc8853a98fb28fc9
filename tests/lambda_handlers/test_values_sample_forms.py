"""One reading of a sample's form (`graders.samples.output_form`) for grading here and for the Lambda backend:
the same inputs are refused with the same flag and message on both sides, and the same answer is read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gradekit.graders import GradingError, make_sample
from gradekit.graders.samples import output_form
from gradekit.lambda_handlers import parse_event
from gradekit.lambda_handlers.backend import to_bedrock_sample

CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
NEITHER = (
    "sample object has neither `output_text` nor `choices`; expected a string, a sample, "
    "a chat completion or a message list"
)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"output_text": 3}, "sample field `output_text` is not a string"),
        ({"output_text": None, "choices": []}, "sample field `output_text` is not a string"),
        ({"choices": []}, "chat completion has no `choices[0]`"),
        ({"choices": "x"}, "chat completion has no `choices[0]`"),
        ({"choices": ["x"]}, "chat completion has no `choices[0]`"),
        ({"choices": [{"index": 0}]}, "chat completion `choices[0]` has no `message`"),
        ({"choices": [{"message": "hi"}]}, "chat completion `choices[0]` has no `message`"),
        ({"foo": 1}, NEITHER),
        ({}, NEITHER),
        ({"role": "user", "content": "q"}, "message list has no `assistant` message"),
        ([], "message list has no `assistant` message"),
        ([{"role": "user", "content": "q"}, "assistant"], "message list has no `assistant` message"),
        ([{"role": ["assistant"], "content": "q"}], "message list has no `assistant` message"),
        (7, "cannot build a sample from int"),
        (None, "cannot build a sample from NoneType"),
        (("a",), "cannot build a sample from tuple"),
    ],
)
def test_both_sides_refuse_with_the_same_message(sample: Any, message: str) -> None:
    for read in (output_form, make_sample, lambda s: to_bedrock_sample(s, {}, "0")):
        with pytest.raises(GradingError) as caught:
            read(sample)
        assert (caught.value.flag, caught.value.message) == ("sample_parse_error", message)


def test_both_sides_pass_a_readers_error_along() -> None:
    error = GradingError("sample_parse_error", "line 3 is not JSON")
    for read in (output_form, make_sample, lambda s: to_bedrock_sample(s, None, "0")):
        with pytest.raises(GradingError) as caught:
            read(error)
        assert caught.value is error


def test_a_bad_sample_is_refused_before_a_bad_row_only_when_it_is_a_readers_error() -> None:
    """The row check comes first, except for an error a reader passed along as the sample."""
    with pytest.raises(GradingError) as caught:
        to_bedrock_sample({"output_text": 3}, [1], "0")
    assert caught.value.message == "data row is a list, not an object"
    error = GradingError("sample_parse_error", "line 3 is not JSON")
    with pytest.raises(GradingError) as caught:
        to_bedrock_sample(error, [1], "0")
    assert caught.value is error


FORMS: list[tuple[Any, tuple[str, Any, Any], list[Any], str]] = [
    # sample, its form, the Lambda event's messages, the output_text graded here
    ("42", ("text", "42", None), [{"role": "assistant", "content": "42"}], "42"),
    (
        {"output_text": "42", "output_tools": [CALL]},
        ("sample", "42", {"output_text": "42", "output_tools": [CALL]}),
        [{"role": "assistant", "content": "42", "tool_calls": [CALL]}],
        "42",
    ),
    ({"output_text": "", "output_tools": []}, None, [{"role": "assistant", "content": ""}], ""),
    (
        {"choices": [{"message": {"role": "other", "content": "7"}}], "output": "ignored"},
        ("completion", {"role": "other", "content": "7"}, [{"message": {"role": "other", "content": "7"}}]),
        [{"role": "assistant", "content": "7"}],
        "7",
    ),
    (
        {"role": "nova_assistant", "content": [{"type": "text", "text": "4"}, "2"]},
        None,
        [{"role": "nova_assistant", "content": [{"type": "text", "text": "4"}, "2"]}],
        "42",
    ),
    (
        [
            {"role": "assistant", "content": "first"},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "last"},
            {"role": "user", "content": "thanks"},
        ],
        None,
        [
            {"role": "assistant", "content": "first"},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "last"},
            {"role": "user", "content": "thanks"},
        ],
        "last",
    ),
]


@pytest.mark.parametrize(("sample", "form", "messages", "text"), FORMS)
def test_both_sides_read_the_same_answer(sample: Any, form: Any, messages: list[Any], text: str) -> None:
    if form is not None:
        assert output_form(sample) == form
    event = to_bedrock_sample(sample, {"k": 1}, "5")
    assert event == {"id": "5", "messages": messages, "metadata": {"k": 1}}
    assert make_sample(sample)["output_text"] == text
    # what the deployed handler rebuilds from the event is graded as the original is here
    (row,) = parse_event([json.loads(json.dumps(event))])
    assert make_sample(row.sample)["output_text"] == text


def test_the_answer_of_a_message_list_is_its_last_assistant_message() -> None:
    messages = [{"role": "assistant", "content": "a"}, {"role": "nova_assistant", "content": "b"}, {"role": "user"}]
    form, answer, rest = output_form(messages)
    assert (form, answer, rest) == ("messages", {"role": "nova_assistant", "content": "b"}, messages)
    assert answer is messages[1] and rest is messages
    single = {"role": "assistant", "content": "c"}
    assert output_form(single) == ("messages", single, [single])
