"""Streamed inference: what of a reply may be sent while it is generated, and Server-Sent Events in OpenAI's form.

One mechanism serves the three endpoints: `Inference` generates in a thread into a streamer, `Reply` turns the
decoded pieces into text deltas and tool-call deltas (a call's start, its arguments as they are written, its end;
so that they join to the non-streamed reply), and each endpoint wraps those in its own events, which `sse` frames.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from .tool_calls import Written, call_id, read_calls

__all__ = ["CallDelta", "Delta", "Reply", "cut_at_stop", "sse"]


def cut_at_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """`text` up to its first stop sequence, and whether one was found."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [text.index(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class CallDelta:
    """What a new piece of a reply adds to one tool call: its start, more of its arguments, its end."""

    index: int  # the call's place among the reply's calls
    call: dict[str, Any]  # the call so far (`id`, `type`, `function` with `name` and the `arguments` so far)
    arguments: str  # the arguments written since the last delta
    new: bool  # the call's first delta: it carries the id and name
    done: bool  # the call is complete: its arguments are all sent


@dataclass(frozen=True)
class Delta:
    """What a new piece of a reply lets the server send: more text, and the tool calls that started, grew or ended."""

    text: str = ""
    calls: list[CallDelta] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.text or self.calls)


class Reply:
    """A reply arriving in pieces: what can be sent so far, so that the deltas join to the non-streamed reply.

    That reply is stripped and cut at the first stop sequence, and with `tools` its call blocks become calls
    (`read_calls`; the text outside them stripped). So trailing whitespace, a possible start of a stop sequence
    or of a call block are held back until more text shows what they are; a call is sent once its name is
    written, then its arguments as they are.
    """

    def __init__(self, stop: str | list[str] | None = None, *, tools: bool = False) -> None:
        self.stop = stop
        self.tools = tools
        self.hold = max((len(s) for s in ([stop] if isinstance(stop, str) else stop or [])), default=1) - 1
        self.raw = ""
        self.sent = 0
        self.stopped = False
        self.calls: list[dict[str, Any]] = []
        self._done: list[bool] = []
        self._text = ""

    def add(self, piece: str) -> Delta:
        """What can be sent now that `piece` arrived."""
        if self.stopped:
            return Delta()
        self.raw = (self.raw + piece).lstrip()
        cut, self.stopped = cut_at_stop(self.raw, self.stop)
        if self.stopped:
            return self._settle(cut, final=True)
        return self._settle(cut[: len(cut) - self.hold], final=False)

    def finish(self) -> Delta:
        """The rest of the reply once generation is over."""
        return self._settle(cut_at_stop(self.raw.strip(), self.stop)[0], final=True)

    @property
    def text(self) -> str:
        """The text sent so far."""
        return self._text[: self.sent]

    def _settle(self, raw: str, *, final: bool) -> Delta:
        text, written = read_calls(raw, final=final) if self.tools else (raw, [])
        self._text = text
        ready = text if final else text.rstrip()
        delta, self.sent = ready[self.sent :], max(self.sent, len(ready))
        return Delta(delta, [d for i, w in enumerate(written) if (d := self._call(i, w))])

    def _call(self, index: int, written: Written) -> CallDelta | None:
        """The delta of call `index`, now written as far as `written`; None if nothing changed."""
        new = index == len(self.calls)
        if new:
            self.calls.append(
                {"id": call_id(), "type": "function", "function": {"name": written.name, "arguments": ""}}
            )
            self._done.append(False)
        call = self.calls[index]
        if self._done[index]:
            return None
        sent = call["function"]["arguments"]
        # what was sent is never taken back (read_calls only ever extends a call's arguments)
        piece = written.arguments[len(sent) :] if written.arguments.startswith(sent) else ""
        if not (new or piece or written.done):
            return None
        call["function"]["arguments"] = sent + piece
        self._done[index] = written.done
        return CallDelta(index, call, piece, new, written.done)


def sse(events: Iterator[dict[str, Any]], *, named: bool = False) -> StreamingResponse:
    """Events as Server-Sent Events in OpenAI's form.

    Chat completions and completions send `data: <json>` each, then `data: [DONE]`; Responses events are
    `event: <type>` and `data: <json>`, and the stream ends after the last one.
    """

    def frames() -> Iterator[str]:
        for event in events:
            data = json.dumps(event, ensure_ascii=False)
            yield f"event: {event['type']}\ndata: {data}\n\n" if named else f"data: {data}\n\n"
        if not named:
            yield "data: [DONE]\n\n"

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
