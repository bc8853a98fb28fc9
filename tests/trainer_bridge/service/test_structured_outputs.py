"""Structured outputs of the service's chat completions, and a judge it serves (issue 13.5): real uvicorn on
127.0.0.1, the real openai SDK and gradekit's real judge client.

`tiny-local` has random weights, so whatever it writes comes from the constraint alone: every reply validating
against its schema is the proof that the decoder enforces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import openai
import pytest

from gradekit.graders import run_batch
from gradekit.graders.executors import Env
from gradekit.runtime.model_client import OpenAIModelClient, label_response_format, score_response_format

from .helpers import client, make_config, serving

pytest.importorskip("llguidance")

LABELS = ["compliant", "non_compliant", "unsure"]
FORMATS = {"score": score_response_format(), "label": label_response_format(LABELS)}
MESSAGES = [
    {"role": "system", "content": "Grade the answer against the reference."},
    {"role": "user", "content": "Reference: AES-256 at rest.\nAnswer: we encrypt data with AES-256."},
]

# The OpenAI guide's security-review multi: an exact verdict and a judged explanation, half each.
GUIDE_MULTI = {
    "type": "multi",
    "name": "security_review",
    "graders": {
        "compliant": {
            "type": "string_check",
            "name": "compliant",
            "input": "{{ sample.output_json.compliant }}",
            "reference": "{{ item.compliant }}",
            "operation": "eq",
        },
        "explanation": {
            "type": "score_model",
            "name": "explanation",
            "model": "tiny-local",
            "range": [0, 1],
            "input": [
                {"role": "system", "content": "Grade the explanation from 0 (wrong) to 1 (the reference's facts)."},
                {
                    "role": "user",
                    "content": "Reference: {{ item.explanation }}\nAnswer: {{ sample.output_json.explanation }}",
                },
            ],
            # seeded: the same verdicts every run (no number a double cannot hold is written: test_structured_numbers)
            "sampling_params": {"max_completions_tokens": 96, "seed": 7},
        },
    },
    "calculate_output": "0.5 * compliant + 0.5 * explanation",
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on real uvicorn (no training here: only inference)."""
    with serving(make_config(tmp_path_factory.mktemp("structured") / "data")) as (base, _app):
        yield base


@pytest.mark.parametrize("kind", ["score", "label"])
def test_every_reply_validates_against_the_judge_schema(url: str, kind: str) -> None:
    response_format = FORMATS[kind]
    schema = response_format["json_schema"]["schema"]
    with client(url) as sdk:
        for seed in range(3):
            reply = sdk.chat.completions.create(
                model="tiny-local",
                messages=MESSAGES,
                response_format=response_format,
                n=4,
                seed=seed,
                temperature=1.0,
                max_tokens=96,
            )
            assert len(reply.choices) == 4
            for choice in reply.choices:
                verdict = json.loads(choice.message.content)
                jsonschema.validate(verdict, schema)
                assert choice.finish_reason == "stop"
                assert list(verdict) == ["steps", "result"]  # compact JSON in the schema's key order
                if kind == "label":
                    assert verdict["result"] in LABELS


def test_json_object_replies_are_json_objects(url: str) -> None:
    with client(url) as sdk:
        reply = sdk.chat.completions.create(
            model="tiny-local",
            messages=[{"role": "user", "content": "Answer in JSON."}],
            response_format={"type": "json_object"},
            seed=1,
            max_tokens=64,
        )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    assert reply.choices[0].finish_reason == "stop"


def test_a_text_format_is_plain_generation(url: str) -> None:
    with client(url) as sdk:
        plain, text = (
            sdk.chat.completions.create(
                model="tiny-local", messages=MESSAGES, seed=2, max_tokens=8, temperature=0, **extra
            )
            .choices[0]
            .message.content
            for extra in ({}, {"response_format": {"type": "text"}})
        )
    assert plain == text


@pytest.mark.parametrize(
    ("response_format", "says"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {}}}},
            "Unimplemented keys",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(?=a)b"}},
            },
            "look-around",
        ),
        ({"type": "xml"}, "unsupported type 'xml'"),
        ({"type": "json_schema"}, "'json_schema' must be an object"),
    ],
)
def test_a_schema_the_decoder_cannot_enforce_is_a_400_naming_response_format(
    url: str, response_format: dict[str, object], says: str
) -> None:
    with client(url) as sdk, pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="tiny-local", messages=MESSAGES, response_format=response_format)
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == "response_format"
    assert error["message"].startswith("Invalid value for 'response_format': ")
    assert says in error["message"]
    assert "\n" not in error["message"] and "Traceback" not in error["message"]


def test_the_guide_multi_is_graded_end_to_end_by_the_served_judge(url: str) -> None:
    samples = [
        json.dumps({"compliant": "yes", "explanation": "Data is encrypted with AES-256 at rest."}),
        json.dumps({"compliant": "no", "explanation": "Nothing is encrypted."}),
        json.dumps({"compliant": "yes", "explanation": "Keys rotate yearly."}),
        json.dumps({"compliant": "no", "explanation": "AES-256 at rest, TLS 1.3 in transit."}),
    ]
    items = [{"compliant": "yes", "explanation": "Policy 3.1 requires AES-256 at rest."}] * 4
    with OpenAIModelClient(base_url=f"{url}/v1", api_key="x", max_retries=0) as judge:
        result = run_batch(GUIDE_MULTI, samples, items, env=Env(model=judge))
    exact = [1.0, 0.0, 1.0, 0.0]
    for i, row in enumerate(result):
        errors = row.metadata.errors
        assert not errors.model_grader_parse_error and not errors.model_grader_server_error, row.metadata
        assert row.sub_rewards["compliant"] == exact[i]
        judged = row.sub_rewards["explanation"]
        assert 0.0 <= judged <= 1.0  # the score_model's range: the judge's number, clipped
        assert row.reward == pytest.approx(0.5 * exact[i] + 0.5 * judged)
        assert row.model_grader_token_usage_per_model["tiny-local"]["completion_tokens"] > 0


def test_a_label_model_judged_by_the_served_model_always_gets_a_label(url: str) -> None:
    judge = {
        "type": "label_model",
        "name": "verdict",
        "model": "tiny-local",
        "input": [{"role": "user", "content": "Is this answer compliant? {{ sample.output_text }}"}],
        "labels": LABELS,
        "passing_labels": ["compliant"],
    }
    grader = {"type": "multi", "name": "review", "graders": {"verdict": judge}, "calculate_output": "verdict"}
    samples = ["We encrypt everything with AES-256.", "We do not encrypt.", "Unsure.", "Keys rotate yearly."]
    with OpenAIModelClient(base_url=f"{url}/v1", api_key="x", max_retries=0) as served:
        result = run_batch(grader, samples, env=Env(model=served))
    for row in result:
        assert not row.metadata.errors.model_grader_parse_error, row.metadata
        label = row.metadata.scores["verdict"]["label"]
        assert label in LABELS
        assert row.reward == (1.0 if label == "compliant" else 0.0)
