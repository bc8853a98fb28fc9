"""The interop oracle: what we dump is what the `openai` package's own types accept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import graders as oa
from openai.types.fine_tuning import ReinforcementMethod, ReinforcementMethodParam
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse
from openai.types.fine_tuning.alpha.grader_run_params import Grader as RunGraderParam
from pydantic import TypeAdapter

from gradekit.graders import Grader, GraderErrors, RunResult, load_grader, run, validate

# The examples of ../shared/reference/contracts.md §1, and the OpenAI RFT guide's security-review grader.
EXAMPLES: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    },
    {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "evaluation_metric": "fuzzy_match",
    },
    {
        "type": "python",
        "name": "py",
        "source": "def grade(sample, item):\n    return 1.0",
        "image_tag": "2025-05-08",
    },
    {
        "type": "score_model",
        "name": "judge",
        "model": "o4-mini-2025-04-16",
        "range": [0, 1],
        "input": [{"role": "user", "content": "Score 0-1: {{sample.output_text}} vs {{item.answer}}"}],
        "sampling_params": {"temperature": 0, "seed": 42},
    },
    {
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
                "model": "gpt-4o-2024-08-06",
                "input": [
                    {"role": "system", "content": "Grade the explanation 0 to 1."},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_text",
                                "text": "Reference: {{ item.explanation }}\n"
                                "Answer: {{ sample.output_json.explanation }}",
                            }
                        ],
                    },
                ],
                "range": [0, 1],
            },
            "policy": {
                "type": "label_model",
                "name": "policy",
                "model": "gpt-4o-2024-08-06",
                "input": [{"role": "user", "content": "Label: {{ sample.output_text }}", "type": "message"}],
                "labels": ["ok", "bad"],
                "passing_labels": ["ok"],
            },
        },
        "calculate_output": "0.5 * compliant + 0.3 * explanation + 0.2 * policy",
    },
]

RESPONSE_TYPES = {
    "string_check": oa.StringCheckGrader,
    "text_similarity": oa.TextSimilarityGrader,
    "python": oa.PythonGrader,
    "score_model": oa.ScoreModelGrader,
    "label_model": oa.LabelModelGrader,
}
RUN_PARAM = TypeAdapter(RunGraderParam)


def _force(value: Any) -> Any:
    # pydantic validates `Iterable[...]` fields of TypedDicts lazily; iterate to validate them.
    if isinstance(value, dict):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | bytes)):
        return [_force(v) for v in value]
    return value


def assert_openai_accepts(dumped: dict[str, Any], *, top_level: bool = True) -> None:
    if dumped["type"] == "multi":
        # The SDK types `multi.graders` as a single grader (a spec artefact, see contracts.md §1); the API and
        # guide use the dict form. Check every sub-grader, and the envelope with one sub-grader in SDK form.
        for sub in dumped["graders"].values():
            assert_openai_accepts(sub, top_level=False)
        first = next(iter(dumped["graders"].values()))
        oa.MultiGrader.model_validate({**dumped, "graders": first})
        envelope = _force(RUN_PARAM.validate_python({**dumped, "graders": first}))
        assert envelope["calculate_output"] == dumped["calculate_output"]
        return
    model = RESPONSE_TYPES[dumped["type"]].model_validate(dumped)
    assert model.model_dump(mode="json", exclude_none=True) == dumped
    if top_level:
        assert _force(RUN_PARAM.validate_python(dumped)) == _force(dumped)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["type"])
def test_examples_load_round_trip_and_validate(example: dict[str, Any]) -> None:
    g = validate(example)
    dumped = g.to_json()
    assert Grader.model_validate(dumped) == g
    assert json.loads(json.dumps(dumped)) == dumped
    assert_openai_accepts(dumped)
    method = {
        "type": "reinforcement",
        "reinforcement": {"grader": dumped, "hyperparameters": {"n_epochs": 1}},
    }
    if dumped["type"] != "multi":
        ReinforcementMethod.model_validate(method["reinforcement"])
        _force(TypeAdapter(ReinforcementMethodParam).validate_python(method["reinforcement"]))
    GraderValidateResponse.model_validate({"grader": dumped} if dumped["type"] != "multi" else {})


def test_dump_equals_input_for_examples() -> None:
    for example in EXAMPLES[:3]:
        assert load_grader(example).to_json() == example


def test_run_result_matches_openai_response_type() -> None:
    r = run(EXAMPLES[0], "hello", {"answer": "hello"})
    wire = r.model_dump(mode="json")
    parsed = GraderRunResponse.model_validate(wire)
    assert parsed.reward == 1.0
    assert parsed.metadata.errors.api_model_grader_server_error is False
    assert parsed.metadata.name == "exact"
    assert set(wire) == {f.alias or n for n, f in GraderRunResponse.model_fields.items()}
    assert set(wire["metadata"]) == {f.alias or n for n, f in type(parsed.metadata).model_fields.items()}
    sdk_errors = {f.alias or n for n, f in type(parsed.metadata.errors).model_fields.items()}
    assert set(GraderErrors.model_fields) == sdk_errors
    assert len(sdk_errors) == 14
    assert RunResult.model_validate(wire) == r
