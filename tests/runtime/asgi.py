"""An in-process ASGI client for the tests: one request through the app's middleware and routes, no socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message


async def acall(app: ASGIApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send one HTTP request to `app`; its status and body bytes."""
    status, answer, _ = await astream(app, method, path, [body], sized=True)
    return status, answer


async def astream(app: ASGIApp, method: str, path: str, parts: list[bytes], *, sized: bool) -> tuple[int, bytes, int]:
    """Send one request whose body arrives in `parts`; its status, body bytes, and how many parts the app read."""
    length = (
        [(b"content-length", str(sum(map(len, parts))).encode())] if sized else [(b"transfer-encoding", b"chunked")]
    )
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *length],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    read = 0
    status = 0
    out: list[bytes] = []

    async def receive() -> Message:
        nonlocal read
        if read < len(parts):
            read += 1
            return {"type": "http.request", "body": parts[read - 1], "more_body": read < len(parts)}
        await asyncio.Event().wait()  # the client never disconnects while the app answers
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(out), read


def call(app: ASGIApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """`acall` on a fresh event loop."""
    return asyncio.run(acall(app, method, path, body))


def post_json(app: ASGIApp, path: str, body: bytes | Any) -> tuple[int, Any]:
    """POST a JSON body (bytes as they are); the status and the answer, parsed as strict UTF-8 JSON."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, raw = call(app, "POST", path, data)
    return status, strict_json(raw)


def _no_constant(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def strict_json(raw: bytes) -> Any:
    """`raw` parsed as strict JSON: UTF-8 (no encoded surrogates), no NaN or Infinity, no lone surrogate escapes."""
    text = raw.decode("utf-8")  # strict: fails on surrogates encoded with surrogatepass
    value = json.loads(text, parse_constant=_no_constant)
    assert_no_surrogates(value)
    return value


def assert_no_surrogates(value: Any) -> None:
    """Fail if a string anywhere in `value` (keys included) holds a surrogate code point."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            assert not any("\ud800" <= c <= "\udfff" for c in v), f"surrogate in {v!r}"
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
