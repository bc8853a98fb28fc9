"""The HTTP API's exact shapes: `/graders/run` keeps OpenAI's null fields; a body over the limit is a 413."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse
from openai.types.fine_tuning.alpha.grader_run_response import Metadata, MetadataErrors
from pydantic import BaseModel

from gradekit.runtime.server import _DRAIN_BYTES, RUN_PATH, create_app, running
from tests.runtime.asgi import astream, post_json


def _wire_keys(model: type[BaseModel]) -> set[str]:
    """Every key of `model` on the wire (its aliases), required or optional."""
    return {f.alias or name for name, f in model.model_fields.items()}


STRING_CHECK = {
    "type": "string_check",
    "name": "s",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


@pytest.mark.parametrize(("item", "reward"), [({"answer": "4"}, 1.0), ({}, 0.0)])
def test_run_response_has_every_openai_key_nulls_included(item: dict[str, Any], reward: float) -> None:
    status, body = post_json(create_app(), RUN_PATH, {"grader": STRING_CHECK, "model_sample": "4", "item": item})
    assert status == 200, body
    assert set(body) == _wire_keys(GraderRunResponse)
    assert set(body["metadata"]) == _wire_keys(Metadata)
    assert set(body["metadata"]["errors"]) == _wire_keys(MetadataErrors)
    assert body["reward"] == reward
    # null fields stay in the answer, as OpenAI sends them (a client reading them by key must not KeyError)
    assert body["metadata"]["token_usage"] is None
    assert body["metadata"]["sampled_model_name"] is None
    errors = body["metadata"]["errors"]
    for detail in ("python_grader_server_error_type", "python_grader_runtime_error_details"):
        assert errors[detail] is None
    assert errors["model_grader_server_error_details"] is None
    assert errors["invalid_variable_error"] is (reward == 0.0)
    GraderRunResponse.model_validate(body)  # and OpenAI's own client reads it


async def _stream(limit: int, chunks: list[bytes]) -> tuple[int, dict[str, Any], int]:
    """POST `chunks` as a streamed body (no Content-Length); status, JSON answer, and chunks the server read."""
    status, raw, read = await astream(create_app(max_body_bytes=limit), "POST", RUN_PATH, chunks, sized=False)
    return status, json.loads(raw), read


def _chunks(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def test_streamed_body_over_the_limit_is_413_and_the_rest_is_read_not_kept() -> None:
    body = json.dumps({"grader": STRING_CHECK, "model_sample": "x" * 20_000, "item": {"answer": "4"}}).encode()
    status, answer, read = asyncio.run(_stream(4096, _chunks(body, 1000)))
    assert status == 413
    assert answer["error"]["code"] == "request_too_large"
    assert answer["error"]["message"] == "Request body too large: the limit is 4096 bytes."
    # the rest is read before the answer (so that closing the socket does not reset it), and thrown away
    assert read == len(_chunks(body, 1000)) > 20


def test_a_refused_body_is_read_no_further_than_the_drain_bound() -> None:
    chunk = 64 * 1024
    parts = [b"x" * chunk] * 40  # 2.5 MiB, past the limit at the first part
    status, answer, read = asyncio.run(_stream(4096, parts))
    assert status == 413
    # the first part, then parts until more than _DRAIN_BYTES were drained
    assert read == 1 + -(-(_DRAIN_BYTES + 1) // chunk) == 18
    assert answer["error"]["code"] == "request_too_large"


def test_a_declared_body_over_the_limit_is_413_over_a_real_socket() -> None:
    # The socket test of what the SDK met: the server answered before reading the body and closed the socket
    # with the body unread, which resets the connection: the client then lost the 413.
    body = b"x" * 300_000
    head = (
        f"POST {RUN_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with running(create_app(max_body_bytes=4096)) as url:
        host, port = url.removeprefix("http://").split(":")
        for _ in range(5):
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(head + body)
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_too_large"


def test_streamed_body_under_the_limit_is_graded() -> None:
    body = json.dumps({"grader": STRING_CHECK, "model_sample": "4", "item": {"answer": "4"}}).encode()
    status, answer, read = asyncio.run(_stream(4096, _chunks(body, 7)))
    assert status == 200, answer
    assert answer["reward"] == 1.0
    assert read == len(_chunks(body, 7))
