"""The HTTP API's exact shapes: `/graders/run` keeps OpenAI's null fields; a streamed body over the limit is a 413."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse
from openai.types.fine_tuning.alpha.grader_run_response import Metadata, MetadataErrors
from pydantic import BaseModel

from gradekit.runtime.server import RUN_PATH, create_app
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


def test_streamed_body_over_the_limit_is_413_before_the_rest_is_read() -> None:
    body = json.dumps({"grader": STRING_CHECK, "model_sample": "x" * 20_000, "item": {"answer": "4"}}).encode()
    status, answer, read = asyncio.run(_stream(4096, _chunks(body, 1000)))
    assert status == 413
    assert answer["error"]["code"] == "request_too_large"
    assert answer["error"]["message"] == "Request body too large: the limit is 4096 bytes."
    assert read == 5  # stopped at the first chunk past 4096 bytes, not after all of them
    assert len(_chunks(body, 1000)) > 20


def test_streamed_body_under_the_limit_is_graded() -> None:
    body = json.dumps({"grader": STRING_CHECK, "model_sample": "4", "item": {"answer": "4"}}).encode()
    status, answer, read = asyncio.run(_stream(4096, _chunks(body, 7)))
    assert status == 200, answer
    assert answer["reward"] == 1.0
    assert read == len(_chunks(body, 7))
