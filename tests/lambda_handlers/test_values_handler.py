"""The Lambda handler's records by value: per-sample reasons in the failure log, per-grader reward means in EMF."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gradekit.graders import Multi, StringCheck
from gradekit.lambda_handlers import bedrock_reward_handler

from .test_handler import Context

GRADER = Multi(
    name="review",
    graders={
        "compliant": StringCheck(
            name="compliant",
            input="{{ sample.output_json.compliant }}",
            reference="{{ item.reference_answer }}",
            operation="eq",
        ),
        "explained": StringCheck(
            name="explained", input="{{ sample.output_json.explanation }}", reference="", operation="like"
        ),
    },
    calculate_output="0.8 * compliant + 0.2 * explained",
)

# (id, the model's answer, the reference) -> compliant, explained (None: that sub-grader fails)
CASES = [
    ("s1", {"compliant": "Yes", "explanation": "why"}, "Yes"),  # 1, 1
    ("s2", {"compliant": "No", "explanation": "why"}, "Yes"),  # 0, 1
    ("s3", {"compliant": "Yes"}, "Yes"),  # 1, fails
    ("s4", "not json at all", "Yes"),  # fails, fails
    ("s5", {"compliant": "No"}, "No"),  # 1, fails
]


def _event() -> list[dict[str, Any]]:
    return [
        {
            "id": sid,
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": answer if isinstance(answer, str) else json.dumps(answer)},
            ],
            "metadata": {"reference_answer": reference},
        }
        for sid, answer, reference in CASES
    ]


def _records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_failure_record_keeps_each_samples_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    handler = bedrock_reward_handler(GRADER, namespace="values", service="test-values-failures")
    out = handler(_event(), Context())
    assert [o["aggregate_reward_score"] for o in out] == pytest.approx([1.0, 0.2, 0.0, 0.0, 0.0])
    records = _records(capsys)
    (warning,) = [r for r in records if r.get("message") == "samples failed"]
    failed = {f["sample_id"]: f for f in warning["failed"]}
    assert list(failed) == ["s3", "s4", "s5"]
    assert {sid: f["errors"] for sid, f in failed.items()} == {
        "s3": ["invalid_variable_error"],
        "s4": ["invalid_variable_error"],
        "s5": ["invalid_variable_error"],
    }
    # the reasons: which sub-grader failed on which sample, and why (the variable it could not read)
    explanation = "template variable `sample.output_json.explanation` is undefined for this sample"
    compliant = "template variable `sample.output_json.compliant` is undefined for this sample"
    assert {sid: f["details"] for sid, f in failed.items()} == {
        "s3": {"explained": explanation},
        "s4": {"compliant": compliant, "explained": explanation},
        "s5": {"explained": explanation},
    }


def test_emf_has_a_reward_mean_per_grader(capsys: pytest.CaptureFixture[str]) -> None:
    handler = bedrock_reward_handler(GRADER, namespace="values", service="test-values-metrics")
    handler(_event(), Context())
    (emf,) = [r for r in _records(capsys) if "_aws" in r]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "values"
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"samples", "reward_mean", "reward_mean.compliant", "reward_mean.explained"} <= names
    assert emf["samples"] == [5.0]
    assert emf["reward_mean"] == [pytest.approx((1.0 + 0.2) / 5)]
    assert emf["reward_mean.compliant"] == [pytest.approx(3 / 5)]  # s1, s3, s5 (a failed sub-grader scores 0)
    assert emf["reward_mean.explained"] == [pytest.approx(2 / 5)]  # s1, s2
    assert emf["errors.compliant.invalid_variable_error"] == [1.0]
    assert emf["errors.explained.invalid_variable_error"] == [3.0]
