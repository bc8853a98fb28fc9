"""`Reply`: a reply cut into pieces anywhere joins to the non-streamed reply, text and tool calls (their arguments
sent as they are written) alike."""

from __future__ import annotations

import random

import pytest

from gradekit.trainer_bridge.service.streaming import CallDelta, Reply, cut_at_stop
from gradekit.trainer_bridge.service.tool_calls import Written, read_calls, split_calls

CALL = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
REPLIES = [
    "the billing team will look at it , thanks  ",
    f'Sure.\n{CALL}\n<tool_call>{{"name": "g"}}</tool_call>  ',
    f"{CALL}\nDone then",
    f"Hi <tool_call>{{bad json}}</tool_call> there {CALL} end",  # a malformed block stays text
    "no calls here <tool_ca",  # a partial opening tag at the end is text once the reply is over
    'text <tool_call>{"name": "f"',  # so is a block never closed
    f"a <tool_call> x {CALL} b",  # the first opening tag starts the block: one malformed block
    '<tool_call>{"name":"f","arguments":{"s":"}]</tool_ca","n":[1,{"b":2}]}}</tool_call>',  # tags inside strings
    '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>',  # arguments given as a JSON string
    '<tool_call>{"name":"f","arguments":{"a":[1,2',  # a call cut short (max tokens): its arguments so far
    '<tool_call>{"name":"f","arguments":{"a":1}} junk</tool_call> then',  # a call from its head on
]


def _join(deltas: list[CallDelta]) -> list[dict[str, str]]:
    """The calls the deltas of a stream add up to, each started once and done once, at its last delta."""
    calls: list[dict[str, str]] = []
    done: list[bool] = []
    for d in deltas:
        assert d.new == (d.index == len(calls)) and not (d.index < len(done) and done[d.index])
        if d.new:
            calls.append({"name": d.call["function"]["name"], "arguments": ""})
            done.append(False)
        calls[d.index]["arguments"] += d.arguments
        done[d.index] = d.done
    assert all(done)
    return calls


def _pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
    return [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize("stop", [None, "end", " b", ["there", "\n"]])
@pytest.mark.parametrize("text", REPLIES)
def test_any_split_joins_to_the_non_streamed_reply(text: str, stop: str | list[str] | None) -> None:
    rng = random.Random(text)
    want_text, want_calls = split_calls(cut_at_stop(text.strip(), stop)[0])
    plain = cut_at_stop(text.strip(), stop)[0]
    for _ in range(30):
        with_tools, without = Reply(stop, tools=True), Reply(stop)
        sent, calls, sent_plain = "", [], ""
        for piece in _pieces(text, rng):
            delta = with_tools.add(piece)
            sent, calls = sent + delta.text, calls + delta.calls
            assert want_text.startswith(sent)  # never a character the whole reply would not have
            sent_plain += without.add(piece).text
        delta = with_tools.finish()
        sent, calls = sent + delta.text, calls + delta.calls
        assert sent == want_text and with_tools.text == want_text
        assert _join(calls) == [c["function"] for c in want_calls]
        assert sent_plain + without.finish().text == plain


def test_a_call_is_sent_once_its_name_is_written_then_its_arguments_as_they_are() -> None:
    reply = Reply(tools=True)
    assert reply.add("Checking <tool").text == "Checking"
    assert not reply.add('_call>{"name": "f", "argu')
    (start,) = reply.add('ments": ').calls
    assert start.new and not start.done and start.arguments == "" and start.call["function"]["name"] == "f"
    assert start.call["id"].startswith("call_") and start.call["type"] == "function"
    assert [(d.arguments, d.new, d.done) for d in reply.add('{"a": 1, ').calls] == [('{"a": 1, ', False, False)]
    # the object's last brace ends the arguments; the block's brace and a partial closing tag are not sent
    assert [(d.arguments, d.done) for d in reply.add('"b": [2]}}</tool').calls] == [('"b": [2]}', False)]
    assert start.call["function"]["arguments"] == '{"a": 1, "b": [2]}'
    (end,) = reply.add("_call>").calls
    assert end.done and end.arguments == ""
    assert reply.add(" later").text == "  later" and reply.finish().text == ""  # the spaces either side of the block


@pytest.mark.parametrize(
    ("text", "final", "expected"),
    [
        ("a <tool_", False, ("a ", [])),  # maybe the start of a block: held back
        ("a <tool_", True, ("a <tool_", [])),  # the reply is over: text
        ('a <tool_call>{"name":"f","argu', False, ("a ", [])),  # no call until its head is written
        ('a <tool_call>{"name":"f","arguments":{"x":"</tool', False, ("a", [Written("f", '{"x":"', False)])),
        ('a <tool_call>{"name":"f","arguments":{"x":"</tool', True, ("a", [Written("f", '{"x":"</tool', True)])),
        (f"{CALL} b <", False, ("b", [Written("f", '{"a": 1}', True)])),
    ],
)
def test_a_reply_so_far_holds_back_what_may_be_a_tag(
    text: str, final: bool, expected: tuple[str, list[Written]]
) -> None:
    assert read_calls(text, final=final) == expected
