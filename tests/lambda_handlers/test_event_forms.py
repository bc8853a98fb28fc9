"""Every reward-Lambda event form AWS's Nova, SageMaker and Bedrock RFT docs and samples use, answered in kind.

Each fixture is ours, in the shape of the page or sample named beside it.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from typing import Any

import pytest

from gradekit.graders import StringCheck, make_sample, run
from gradekit.lambda_handlers import bedrock_reward_handler
from gradekit.lambda_handlers.backend import LambdaBackend
from gradekit.lambda_handlers.events import MISSING_ID, parse_event, unwrap_event

ANSWER = StringCheck(
    name="verdict",
    input="{{ sample.output_json.verdict }}",
    reference="{{ item.reference_answer.verdict }}",
    operation="eq",
)
HANDLER = bedrock_reward_handler(ANSWER, service="test-event-forms")

# SageMaker's "RFT evaluation" page for Nova (https://docs.aws.amazon.com/sagemaker/latest/dg/nova-hp-evaluate-rft.html,
# "Lambda request format"): a list of samples whose messages have `content` as a list of text parts, the last one
# with role `nova_assistant` holding the model's reply; the answer is the bare list of results.
NOVA_SAMPLE: dict[str, Any] = {
    "id": "ticket-7",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "May I share my badge with a visitor?"}]},
        {
            "role": "nova_assistant",
            "content": [{"type": "text", "text": '{"verdict": "deny", '}, {"type": "text", "text": '"why": "policy"}'}],
        },
    ],
    "reference_answer": {"verdict": "deny"},
}
NOVA_WRONG = {
    **NOVA_SAMPLE,
    "id": "ticket-8",
    "messages": [NOVA_SAMPLE["messages"][0], {"role": "nova_assistant", "content": [{"type": "text", "text": "{}"}]}],
}
REWARD = [{"name": "verdict", "value": 1.0, "type": "Reward"}]


def test_nova_assistant_is_the_reply_in_the_sample_namespace() -> None:
    sample = make_sample(NOVA_SAMPLE["messages"])
    assert sample["output_text"] == '{"verdict": "deny", "why": "policy"}'
    assert sample["output_json"] == {"verdict": "deny", "why": "policy"}
    r = run(ANSWER, sample, {"reference_answer": {"verdict": "deny"}})
    assert r.reward == 1.0 and not r.errors.sample_parse_error


def test_the_nova_list_form_is_graded_and_answered_as_a_list() -> None:
    out = HANDLER([NOVA_SAMPLE, NOVA_WRONG], None)
    assert out == [
        {"id": "ticket-7", "aggregate_reward_score": 1.0, "metrics_list": REWARD},
        {
            "id": "ticket-8",
            "aggregate_reward_score": 0.0,
            "metrics_list": [
                {"name": "verdict", "value": 0.0, "type": "Reward"},
                {"name": "invalid_variable_error", "value": 1.0, "type": "Metric"},
            ],
        },
    ]


def test_one_sample_object_is_answered_as_a_list_of_one() -> None:
    # The Nova RFT evaluation notebook's Lambda (aws-samples/amazon-nova-samples:customization/Nova_2.0/04_eval/
    # RFT_Single_Turn_Evaluation_Example/RFT_Eval_Example.ipynb) takes `event if isinstance(event, list) else [event]`
    # and returns a list.
    assert unwrap_event(NOVA_SAMPLE)[1] == "single"
    assert HANDLER(NOVA_SAMPLE, None) == [{"id": "ticket-7", "aggregate_reward_score": 1.0, "metrics_list": REWARD}]


def test_a_batch_envelope_is_answered_with_a_status_code_and_a_json_body() -> None:
    # `{"batch": [...]}` answered `{"statusCode": 200, "body": "..."}`: the form named in gradekit issue 12; we did
    # not find it on the AWS pages we searched (Bedrock reward-functions, SageMaker nova-implementing-reward-functions,
    # nova-hp-evaluate-rft), so it is accepted as the issue describes it.
    out = HANDLER({"batch": [NOVA_SAMPLE]}, None)
    assert set(out) == {"statusCode", "body"} and out["statusCode"] == 200
    assert json.loads(out["body"]) == [{"id": "ticket-7", "aggregate_reward_score": 1.0, "metrics_list": REWARD}]


@pytest.mark.parametrize("body", [json.dumps([NOVA_SAMPLE]), [NOVA_SAMPLE], json.dumps({"batch": [NOVA_SAMPLE]})])
def test_an_http_style_body_is_unwrapped_and_answered_in_kind(body: Any) -> None:
    # A public custom scorer for SageMaker's managed evaluation reads `event["body"]` (JSON text of the list) and
    # answers `{"statusCode": 200, "body": json.dumps(results)}`, as an API Gateway proxy integration does.
    out = HANDLER({"body": body}, None)
    assert out["statusCode"] == 200
    assert json.loads(out["body"]) == [{"id": "ticket-7", "aggregate_reward_score": 1.0, "metrics_list": REWARD}]


def test_the_event_as_json_text_keeps_its_form() -> None:
    assert HANDLER(json.dumps([NOVA_SAMPLE]), None)[0]["id"] == "ticket-7"
    assert HANDLER(json.dumps({"batch": [NOVA_SAMPLE]}), None)["statusCode"] == 200


@pytest.mark.parametrize("missing", [lambda s: {k: v for k, v in s.items() if k != "id"}, lambda s: {**s, "id": None}])
def test_a_sample_without_an_id_is_graded_and_its_result_says_so(missing: Any) -> None:
    out = HANDLER([missing(NOVA_SAMPLE), NOVA_WRONG], None)
    assert out[0] == {
        "aggregate_reward_score": 1.0,
        "metrics_list": [*REWARD, {"name": "missing_id", "value": 1.0, "type": "Metric"}],
    }
    assert out[1]["id"] == "ticket-8"
    assert parse_event([missing(NOVA_SAMPLE)])[0].id is MISSING_ID


@pytest.mark.parametrize("bad", [math.nan, math.inf, [1, 2]])
def test_ids_json_cannot_carry_are_still_null_with_sample_parse_error(bad: Any) -> None:
    (out,) = HANDLER([{**NOVA_SAMPLE, "id": bad}], None)
    assert out == {
        "id": None,
        "aggregate_reward_score": 0.0,
        "metrics_list": [
            {"name": "verdict", "value": 0.0, "type": "Reward"},
            {"name": "sample_parse_error", "value": 1.0, "type": "Metric"},
        ],
    }


class _StatusFunction:
    """A Lambda client whose function answers every batch as `{"statusCode": 200, "body": "<JSON>"}`."""

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        out = HANDLER({"body": Payload.decode()}, None)
        return {"Payload": io.BytesIO(json.dumps(out).encode())}


def test_the_lambda_backend_reads_a_status_code_answer() -> None:
    # The grading backend invokes a deployed function with a bare list; a function written in the `{"body": ...}`
    # style above answers with a status-code envelope, which the backend unwraps.
    backend = LambdaBackend("status-fn", ANSWER, client=_StatusFunction())
    try:
        samples = ['{"verdict": "deny"}', '{"verdict": "allow"}']
        items = [{"reference_answer": {"verdict": "deny"}}] * 2
        result = asyncio.run(backend.grade(ANSWER, samples, items))  # type: ignore[arg-type]
    finally:
        backend.close()
    assert result.rewards == [1.0, 0.0]
