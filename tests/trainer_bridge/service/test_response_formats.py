"""Structured outputs of the service's Responses endpoint (`text.format`): real uvicorn on 127.0.0.1, the real openai
SDK's `responses.create`, `responses.parse` and `responses.stream`.

`tiny-local` has random weights, so whatever it writes comes from the constraint alone: every reply validating
against its schema shows that `text.format` is enforced as chat's `response_format` is (the same decoder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from .helpers import client, make_config, serving

pytest.importorskip("llguidance")

QUESTION = "Route this ticket: the refund never reached my card."
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "team": {"type": "string", "enum": ["billing", "account", "shipping", "technical"]},
        "urgent": {"type": "boolean"},
        "steps": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["team", "urgent", "steps"],
    "additionalProperties": False,
}
FORMAT: Any = {"type": "json_schema", "name": "routing", "schema": SCHEMA, "strict": True}


class Routing(BaseModel):
    """The routing verdict as a pydantic model (the SDK's `text_format`)."""

    team: Literal["billing", "account", "shipping", "technical"]
    urgent: bool
    priority: int


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAI]:
    """The SDK on the service (inference only)."""
    with serving(make_config(tmp_path_factory.mktemp("response-formats") / "data")) as (url, _app), client(url) as sdk:
        yield sdk


def _create(sdk: OpenAI, text_format: Any, seed: int, **extra: Any) -> Any:
    return sdk.responses.create(
        model="tiny-local",
        input=QUESTION,
        text={"format": text_format},
        temperature=1.0,
        max_output_tokens=96,
        extra_body={"seed": seed},
        **extra,
    )


def test_every_response_validates_against_its_json_schema(sdk: OpenAI) -> None:
    for seed in range(4):
        answer = _create(sdk, FORMAT, seed)
        assert answer.status == "completed"
        jsonschema.validate(json.loads(answer.output_text), SCHEMA)
        assert list(json.loads(answer.output_text)) == ["team", "urgent", "steps"]  # compact, in the schema's order
        assert answer.text.format.type == "json_schema" and answer.text.format.name == "routing"


def test_a_json_object_format_answers_a_json_object(sdk: OpenAI) -> None:
    for seed in range(3):
        answer = _create(sdk, {"type": "json_object"}, seed)
        assert isinstance(json.loads(answer.output_text), dict)
        assert answer.text.format.type == "json_object"


def test_the_streamed_response_is_the_same_document(sdk: OpenAI) -> None:
    for seed in range(3):
        whole = _create(sdk, FORMAT, seed).output_text
        events = list(_create(sdk, FORMAT, seed, stream=True))
        streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert streamed == whole
        (done,) = [e for e in events if e.type == "response.output_text.done"]
        assert done.text == whole and events[-1].type == "response.completed"
        jsonschema.validate(json.loads(streamed), SCHEMA)


def test_the_sdk_parses_a_pydantic_text_format(sdk: OpenAI) -> None:
    kwargs: Any = {"model": "tiny-local", "input": QUESTION, "temperature": 1.0, "max_output_tokens": 64}
    for seed in range(3):
        parsed = sdk.responses.parse(text_format=Routing, extra_body={"seed": seed}, **kwargs).output_parsed
        assert isinstance(parsed, Routing)
        with sdk.responses.stream(text_format=Routing, extra_body={"seed": seed}, **kwargs) as stream:
            final = stream.get_final_response()
        assert final.output_parsed == parsed  # the same seed, the same verdict, streamed or not


def test_a_text_format_is_plain_generation(sdk: OpenAI) -> None:
    plain, text = (
        sdk.responses.create(
            model="tiny-local", input=QUESTION, temperature=0, max_output_tokens=8, extra_body={"seed": 1}, **extra
        ).output_text
        for extra in ({}, {"text": {"format": {"type": "text"}}})
    )
    assert plain == text


@pytest.mark.parametrize(
    ("text_format", "says"),
    [
        ({"type": "json_schema", "name": "x", "schema": {"type": "object", "if": {}}}, "Unimplemented keys"),
        ({"type": "xml"}, "unsupported type 'xml'"),
        ({"type": "json_schema", "name": "x", "schema": "object"}, "must be a JSON schema object"),
    ],
)
def test_a_format_the_decoder_cannot_enforce_is_a_400_naming_text_format(
    sdk: OpenAI, text_format: Any, says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="tiny-local", input=QUESTION, text={"format": text_format})
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == "text.format"
    assert error["message"].startswith("Invalid value for 'text.format': ") and says in error["message"]
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
