"""Streamed inference: what of a reply may be sent while it is generated, and Server-Sent Events in OpenAI's form.

One mechanism serves the three endpoints: `Inference` generates in a thread into a transformers streamer, `Reply`
turns the decoded pieces into text deltas and finished tool calls (so that they join to the non-streamed reply),
and each endpoint wraps those in its own events, which `sse` frames.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from .tool_calls import open_block, split_calls

__all__ = ["Delta", "Reply", "cut_at_stop", "sse"]


def cut_at_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """`text` up to its first stop sequence, and whether one was found."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [text.index(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class Delta:
    """What a new piece of a reply lets the server send: more text and the tool calls finished meanwhile."""

    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.text or self.calls)


class Reply:
    """A reply arriving in pieces: what can be sent so far, so that the deltas join to the non-streamed reply.

    That reply is stripped and cut at the first stop sequence, and with `tools` its well-formed `<tool_call>`
    blocks become calls (the text outside them stripped). So trailing whitespace, a possible start of a stop
    sequence and a call block still being written are held back until more text shows what they are.
    """

    def __init__(self, stop: str | list[str] | None = None, *, tools: bool = False) -> None:
        self.stop = stop
        self.tools = tools
        self.hold = max((len(s) for s in ([stop] if isinstance(stop, str) else stop or [])), default=1) - 1
        self.raw = ""
        self.sent = 0
        self.stopped = False
        self.calls: list[dict[str, Any]] = []
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
        if self.tools:
            text, calls = split_calls(raw if final else raw[: open_block(raw)])
        else:
            text, calls = raw, []
        self._text = text
        ready = text if final else text.rstrip()
        delta, self.sent = ready[self.sent :], max(self.sent, len(ready))
        new = calls[len(self.calls) :]
        self.calls.extend(new)
        return Delta(delta, new)


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
