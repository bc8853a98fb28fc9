"""A small OpenAI-compatible chat-completions (and embeddings) server for tests and benchmarks.

```python
with FakeLLM(script=[RateLimited(retry_after=0.01), Judge(0.8)]) as llm:
    client = openai.OpenAI(base_url=llm.base_url, api_key="x")
    ...
assert llm.count == 2
```

It is a FastAPI app served by real uvicorn on 127.0.0.1 in a background thread, so the real `openai` SDK
talks to it over real HTTP. It is bounded: it answers at most `max_requests` chat requests (then 503) and
shuts itself down after `max_lifetime` seconds. `python -m gradekit.testing.fake_llm` serves one in its own
process (for benchmarks) and prints its base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

__all__ = [
    "ContentFilter",
    "Delay",
    "FakeLLM",
    "Flaky",
    "Judge",
    "Malformed",
    "RateLimited",
    "RecordedRequest",
    "Refusal",
    "Reply",
    "Script",
    "ServerError",
    "Status",
    "Text",
    "embed_text",
]


@dataclass(frozen=True)
class Judge:
    """A judge's JSON answer: content `{"result": result, "steps": steps}`."""

    result: float | str
    steps: list[dict[str, str]] = field(
        default_factory=lambda: [{"description": "compared the answer with the reference", "conclusion": "done"}]
    )
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Text:
    """Plain-text content (any string, JSON or not)."""

    text: str
    finish_reason: str = "stop"
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Malformed:
    """Content that is broken JSON (a truncated judge answer)."""

    text: str = '{"result": 0.5, "steps": [{"description": "the answer'
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Refusal:
    """A structured-output refusal: `message.refusal` set, `content` null."""

    text: str = "I'm sorry, I can't help with that."
    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ContentFilter:
    """A completion stopped by the content filter: `finish_reason` "content_filter", no content."""

    usage: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Status:
    """An HTTP error: `code` with an OpenAI-style error body, and `Retry-After` when given."""

    code: int
    message: str = "fake error"
    retry_after: float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def RateLimited(retry_after: float | str | None = None, message: str = "rate limit exceeded") -> Status:
    """HTTP 429, with `Retry-After` (seconds or an HTTP date) when given."""
    return Status(429, message, retry_after)


def ServerError(message: str = "internal server error", code: int = 500) -> Status:
    """HTTP 500 (or another 5xx)."""
    return Status(code, message)


@dataclass(frozen=True)
class Delay:
    """Wait `seconds`, then answer with `then` (the wait ends early when the server stops)."""

    seconds: float
    then: Reply


@dataclass
class Flaky:
    """Answer `failure` with probability `p` (from a generator seeded with `seed`), else `reply`."""

    p: float
    reply: Reply
    failure: Reply = field(default_factory=ServerError)
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self) -> Reply:
        """The reply for one call."""
        return self.failure if self._rng.random() < self.p else self.reply


#: What a script yields for one request; a `str` is plain text, a dict is dumped as JSON content.
Reply = Judge | Text | Malformed | Refusal | ContentFilter | Status | Delay | Flaky | str | dict[str, Any]
#: A list of replies (used in order; the last repeats once the list is used up) or `f(request_json, n)`.
Script = Sequence[Reply] | Callable[[dict[str, Any], int], Reply]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received, and the status it answered with."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int


def embed_text(text: str, dimensions: int = 32) -> list[float]:
    """A deterministic unit vector: hashed bag of words, so texts sharing words have a high cosine."""
    vec = [0.0] * dimensions
    for word in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec[h % dimensions] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[0], norm = 1.0, 1.0  # empty text: a fixed unit vector rather than a zero vector (cosine is undefined)
    return [v / norm for v in vec]


def _words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_words(p) for p in content)
    if isinstance(content, dict):
        return _words(content.get("text"))
    return 0


def _usage(given: Mapping[str, int] | None, prompt: int, completion: int) -> dict[str, Any]:
    given = dict(given or {})
    p = given.get("prompt_tokens", prompt)
    c = given.get("completion_tokens", completion)
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": given.get("total_tokens", p + c),
        "prompt_tokens_details": {"cached_tokens": given.get("cached_tokens", 0)},
        "completion_tokens_details": {"reasoning_tokens": given.get("reasoning_tokens", 0)},
    }


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=dict(headers or {}))


_ERROR_TYPES = {429: "rate_limit_error", 401: "authentication_error", 404: "not_found_error"}


class FakeLLM:
    """A scripted OpenAI-compatible server on 127.0.0.1; use as a context manager, read `base_url`."""

    def __init__(
        self,
        script: Script = (Judge(1.0),),
        *,
        response_model: str | None = None,
        max_requests: int = 10_000,
        max_lifetime: float = 60.0,
        record: bool = True,
        embedding_dimensions: int = 32,
    ) -> None:
        if isinstance(script, Sequence) and not script:
            raise ValueError("script must not be empty")
        self.script = script
        self.response_model = response_model
        self.max_requests = max_requests
        self.max_lifetime = max_lifetime
        self.record = record
        self.embedding_dimensions = embedding_dimensions
        self.requests: list[RecordedRequest] = []
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self.app = self._build_app()
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server, e.g. `http://127.0.0.1:40123/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat-completions requests, in arrival order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._chat(request)

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            response = self._embeddings(body)
            self._record(request, body, response.status_code)
            return response

        return app

    def _record(self, request: Request, body: Any, status: int) -> None:
        if self.record:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.requests.append(RecordedRequest(request.method, request.url.path, headers, body, status))

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            response = _json({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, 400)
            self._record(request, None, 400)
            return response
        n = self.count
        self.count += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if n >= self.max_requests:
                self._schedule_stop()
                response = self._error(Status(503, f"fake LLM request budget of {self.max_requests} is used up"))
            else:
                response = await self._answer(self._pick(body, n), body, n)
        finally:
            self.in_flight -= 1
        self._record(request, body, response.status_code)
        return response

    def _pick(self, body: dict[str, Any], n: int) -> Reply:
        if callable(self.script):
            return self.script(body, n)
        return self.script[min(n, len(self.script) - 1)]

    async def _answer(self, reply: Reply, body: dict[str, Any], n: int) -> Response:
        while True:
            if isinstance(reply, Flaky):
                reply = reply.pick()
            elif isinstance(reply, Delay):
                if await self._sleep(reply.seconds):
                    return self._error(Status(503, "fake LLM is shutting down"))
                reply = reply.then
            else:
                break
        if isinstance(reply, Status):
            return self._error(reply)
        content: str | None = None
        refusal: str | None = None
        finish_reason = "stop"
        if isinstance(reply, Judge):
            content = json.dumps({"result": reply.result, "steps": reply.steps})
        elif isinstance(reply, Text):
            content, finish_reason = reply.text, reply.finish_reason
        elif isinstance(reply, Malformed):
            content = reply.text
        elif isinstance(reply, Refusal):
            refusal = reply.text
        elif isinstance(reply, ContentFilter):
            finish_reason = "content_filter"
        elif isinstance(reply, str):
            content = reply
        elif isinstance(reply, dict):
            content = json.dumps(reply)
        else:
            raise TypeError(f"unknown fake LLM reply {reply!r}")
        given = getattr(reply, "usage", None)
        prompt = sum(_words(m.get("content")) for m in body.get("messages", []) if isinstance(m, dict))
        completion = {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.response_model or body.get("model", "fake"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": _usage(given, prompt, _words(content) + _words(refusal)),
        }
        return _json(completion)

    def _error(self, reply: Status) -> Response:
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            ra = reply.retry_after
            headers["retry-after"] = (
                ra if isinstance(ra, str) else (str(int(ra)) if float(ra).is_integer() else str(ra))
            )
        kind = _ERROR_TYPES.get(reply.code, "server_error" if reply.code >= 500 else "invalid_request_error")
        error = {"error": {"message": reply.message, "type": kind, "param": None, "code": None}}
        return _json(error, reply.code, headers)

    def _embeddings(self, body: dict[str, Any]) -> Response:
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._error(Status(400, "input must be a string or a list of strings"))
        dims = body.get("dimensions") or self.embedding_dimensions
        data = []
        for i, text in enumerate(texts):
            vec: Any = embed_text(text, dims)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": body.get("model", "fake-embedding"), "usage": usage})

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; True when the server started stopping meanwhile."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    # lifecycle

    def start(self) -> FakeLLM:
        """Start serving (returns once the server accepts connections)."""
        import uvicorn

        if self._thread is not None:
            raise RuntimeError("FakeLLM already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            ws="none",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"fake-llm-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.005)
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        expiry = asyncio.get_running_loop().call_later(self.max_lifetime, self._schedule_stop)
        try:
            await self._server.serve(sockets=[sock])
        finally:
            expiry.cancel()
            sock.close()

    def _schedule_stop(self) -> None:
        # Runs on the server's loop: wake delayed handlers, then let uvicorn shut down.
        if self._stopping is not None:
            self._stopping.set()
        self._server.should_exit = True

    def stop(self) -> None:
        """Stop serving and wait for the server thread (at most a few seconds)."""
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None:
                return
            if loop is not None and thread.is_alive():
                with contextlib.suppress(RuntimeError):  # the loop may have closed on its own (lifetime)
                    loop.call_soon_threadsafe(self._schedule_stop)
            thread.join(timeout=10.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server stops by itself (lifetime or request budget); True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fake LLM in this process until its lifetime or request budget ends; print its base URL."""
    parser = argparse.ArgumentParser(prog="python -m gradekit.testing.fake_llm", description=main.__doc__)
    parser.add_argument("--reply", default='{"result": 1.0, "steps": []}', help="content of every answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--max-lifetime", type=float, default=600.0)
    args = parser.parse_args(argv)
    reply: Reply = Text(args.reply)
    if args.delay > 0:
        reply = Delay(args.delay, reply)
    llm = FakeLLM([reply], max_requests=args.max_requests, max_lifetime=args.max_lifetime, record=False)
    with llm:
        print(llm.base_url, flush=True)
        llm.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
