"""`Reply`: a reply cut into pieces anywhere joins to the non-streamed reply, text and tool calls alike."""

from __future__ import annotations

import random

import pytest

from gradekit.trainer_bridge.service.streaming import Reply, cut_at_stop
from gradekit.trainer_bridge.service.tool_calls import open_block, split_calls

CALL = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
REPLIES = [
    "the billing team will look at it , thanks  ",
    f'Sure.\n{CALL}\n<tool_call>{{"name": "g"}}</tool_call>  ',
    f"{CALL}\nDone then",
    f"Hi <tool_call>{{bad json}}</tool_call> there {CALL} end",  # a malformed block stays text
    "no calls here <tool_ca",  # a partial opening tag at the end is text once the reply is over
    'text <tool_call>{"name": "f"',  # so is a block never closed
    f"a <tool_call> x {CALL} b",  # the first opening tag starts the block: one malformed block
]


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
        assert [c["function"] for c in calls] == [c["function"] for c in want_calls]
        assert sent_plain + without.finish().text == plain


def test_calls_are_sent_when_their_block_closes_and_their_text_is_held_until_then() -> None:
    reply = Reply(tools=True)
    assert reply.add("Checking <tool").text == "Checking"
    assert not reply.add('_call>{"name": "f", "arguments": {"a": ')
    delta = reply.add("1}}</tool_call>")
    assert delta.text == "" and [c["function"] for c in delta.calls] == [{"name": "f", "arguments": '{"a": 1}'}]
    assert delta.calls[0]["id"].startswith("call_") and delta.calls[0]["type"] == "function"
    assert reply.add(" later").text == "  later" and reply.finish().text == ""  # the spaces either side of the block


@pytest.mark.parametrize(
    ("text", "start"),
    [("plain", 5), ("a <tool_call>{", 2), ("a <tool_", 2), (f"{CALL} b", len(CALL) + 2), (f"{CALL}<", len(CALL))],
)
def test_the_block_being_written_starts_at_its_opening_tag(text: str, start: int) -> None:
    assert open_block(text) == start
