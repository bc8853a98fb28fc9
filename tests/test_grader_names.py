"""Graders without a `name`, as OpenAI's API accepts them: named by their `multi` key, else their type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import graders as oa
from openai.types.fine_tuning import ReinforcementMethod
from openai.types.fine_tuning.alpha import GraderValidateResponse

from gradekit.graders import Grader, GraderValidationError, Multi, StringCheck, grader, run, run_batch, validate
from gradekit.lambda_handlers import bedrock_reward_handler
from gradekit.runtime import cli
from gradekit.runtime.server import create_app, running
from gradekit.trainer_bridge.service.config import ServiceConfig
from gradekit.trainer_bridge.service.grading import resolve_grader

# In the shape of the graders guide's "validate a python grader" request
# (https://developers.openai.com/api/docs/guides/graders, "Python graders"): `type` and `source`, no `name`.
# The text is ours.
PYTHON_NO_NAME: dict[str, Any] = {
    "type": "python",
    "source": (
        "def grade(sample, item) -> float:\n"
        "    said = sample['output_text'].strip().lower()\n"
        "    return 1.0 if said == item['label'].lower() else 0.0\n"
    ),
}

# In the shape of the RFT guide's job payload (https://developers.openai.com/api/docs/guides/reinforcement-fine-tuning,
# "Define your grader"): a `multi` with no `name`, its sub-graders keyed in a dict, some without a `name`.
MULTI_NO_NAME: dict[str, Any] = {
    "type": "multi",
    "graders": {
        "verdict": {
            "type": "string_check",
            "input": "{{ sample.output_json.verdict }}",
            "reference": "{{ item.verdict }}",
            "operation": "eq",
        },
        "reason": {
            "type": "text_similarity",
            "input": "{{ sample.output_json.reason }}",
            "reference": "{{ item.reason }}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * verdict + 0.5 * reason",
}
ITEM = {"verdict": "allow", "reason": "policy 4.2", "label": "allow"}
SAMPLE = '{"verdict": "allow", "reason": "policy 4.2"}'


def test_a_nameless_grader_is_named_by_its_type_and_dumps_what_the_sdk_accepts() -> None:
    g = validate(PYTHON_NO_NAME)
    assert (g.name, g.named) == ("python", False)
    dumped = g.to_json()
    assert dumped == {"name": "python", **PYTHON_NO_NAME}
    assert oa.PythonGrader.model_validate(dumped).name == "python"
    GraderValidateResponse.model_validate({"grader": dumped})
    ReinforcementMethod.model_validate({"grader": dumped})
    r = run(PYTHON_NO_NAME, "Allow", ITEM)
    assert (r.reward, r.metadata.name, r.metadata.type) == (1.0, "python", "python")


def test_a_nameless_multi_names_its_sub_graders_by_their_keys() -> None:
    g = validate(MULTI_NO_NAME)
    assert g.name == "multi" and {k: s.name for k, s in g.graders.items()} == {"verdict": "verdict", "reason": "reason"}
    dumped = g.to_json()
    assert [s["name"] for s in dumped["graders"].values()] == ["verdict", "reason"]
    for sub in dumped["graders"].values():  # the SDK types `graders` as one grader: check each one
        assert oa.MultiGrader.model_validate({**dumped, "graders": sub}).name == "multi"
    assert Grader.model_validate(dumped).to_json() == dumped
    r = run(MULTI_NO_NAME, SAMPLE, ITEM)
    assert (r.reward, r.sub_rewards, r.metadata.name) == (1.0, {"verdict": 1.0, "reason": 1.0}, "multi")
    bad = run(MULTI_NO_NAME, '{"verdict": "deny"}', ITEM)
    assert bad.reward == 0.0 and bad.errors.invalid_variable_error
    assert list(bad.metadata.scores["error_details"]) == ["reason"]


def test_given_names_are_kept_and_python_objects_default_the_same_way() -> None:
    named = {**MULTI_NO_NAME, "name": "review", "graders": {"v": {**MULTI_NO_NAME["graders"]["verdict"], "name": "x"}}}
    g = validate({**named, "calculate_output": "v"})
    assert (g.name, g.graders["v"].name) == ("review", "x")
    check = StringCheck(input="{{ sample.output_text }}", reference="{{ item.label }}", operation="eq")
    assert (check.name, check.named) == ("string_check", False)
    m = Multi(graders={"same": check}, calculate_output="same")
    assert (m.name, m.graders["same"].name) == ("multi", "same")
    assert run_batch(m, ["allow", "deny"], [ITEM, ITEM]).rewards == [1.0, 0.0]


def test_a_list_of_nameless_sub_graders_is_keyed_by_type_and_duplicates_are_refused() -> None:
    one = MULTI_NO_NAME["graders"]["verdict"]
    g = validate({"type": "multi", "graders": [one], "calculate_output": "string_check"})
    assert list(g.graders) == ["string_check"]
    with pytest.raises(GraderValidationError, match="two graders in the list are named 'string_check'"):
        validate({"type": "multi", "graders": [one, one], "calculate_output": "string_check"})


def test_function_graders_keep_their_function_name() -> None:
    @grader
    def polite(sample: dict[str, Any]) -> float:
        return 1.0 if "please" in sample["output_text"] else 0.0

    m = Multi(graders={"p": polite}, calculate_output="p")
    assert m.graders["p"].name == "polite"  # a function's name is given, not defaulted


def test_http_api_validate_and_run_accept_nameless_graders() -> None:
    with running(create_app()) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        checked = client.fine_tuning.alpha.graders.validate(grader=PYTHON_NO_NAME)  # type: ignore[arg-type]
        assert checked.grader is not None and checked.grader.name == "python"
        r = client.fine_tuning.alpha.graders.run(grader=MULTI_NO_NAME, model_sample=SAMPLE, item=ITEM)  # type: ignore[arg-type]
        assert (r.reward, r.sub_rewards, r.metadata.name) == (1.0, {"verdict": 1.0, "reason": 1.0}, "multi")


def test_cli_validate_and_run_accept_nameless_graders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "grader.json"
    path.write_text(json.dumps(MULTI_NO_NAME))
    assert cli.main(["validate", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["graders"]["verdict"]["name"] == "verdict"
    assert cli.main(["run", str(path), "--sample", SAMPLE, "--item", json.dumps(ITEM)]) == 0
    assert json.loads(capsys.readouterr().out)["reward"] == 1.0


def test_jobs_accept_a_nameless_grader(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=tmp_path, start_worker=False)
    g, backend = resolve_grader(MULTI_NO_NAME, config)
    assert backend is None and g.name == "multi" and list(g.graders) == ["verdict", "reason"]


def test_the_lambda_handler_accepts_a_nameless_grader() -> None:
    handler = bedrock_reward_handler(MULTI_NO_NAME)
    event = [
        {
            "id": "n1",
            "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": SAMPLE}],
            "metadata": {"reference_answer": "allow", "verdict": "allow", "reason": "policy 4.2"},
        }
    ]
    assert handler(event, None) == [
        {
            "id": "n1",
            "aggregate_reward_score": 1.0,
            "metrics_list": [
                {"name": "verdict", "value": 1.0, "type": "Reward"},
                {"name": "reason", "value": 1.0, "type": "Reward"},
            ],
        }
    ]
