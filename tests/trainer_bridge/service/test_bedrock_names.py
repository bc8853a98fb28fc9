"""Amazon Bedrock's RFT hyperparameter names in job creation, beside OpenAI's: one setting each, named once.

Bedrock's names and ranges follow the API reference of `RFTHyperParameters` (the `hyperParameters` of
CreateModelCustomizationJob's reinforcement fine-tuning config):
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_RFTHyperParameters.html
It lists batchSize, epochCount, evalInterval, inferenceMaxTokens, learningRate, maxPromptLength, reasoningEffort
(low | medium | high) and trainingSamplePerPrompt (there is no `learningRateMultiplier`: Bedrock takes the
learning rate itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from pydantic import ValidationError

from gradekit.trainer_bridge.loop.hyperparameters import BEDROCK_NAMES, Hyperparameters, LoopOptions
from gradekit.trainer_bridge.loop.job import RFTJob

from ..rft_task import GRADER, write_task
from .helpers import client, make_config, rft_method, serving, upload, wait_for

WHERE = "method.reinforcement.hyperparameters"
#: One value for every Bedrock name (within Bedrock's documented ranges, but batchSize: a local run is small).
BEDROCK = {
    "epochCount": 2,
    "batchSize": 4,
    "learningRate": 0.0005,
    "trainingSamplePerPrompt": 6,
    "inferenceMaxTokens": 24,
    "maxPromptLength": 64,
    "reasoningEffort": "high",
    "evalInterval": 3,
}
#: The same settings under the names a job object carries (OpenAI's, and gradekit's where OpenAI has none).
CANONICAL = {
    "n_epochs": 2,
    "batch_size": 4,
    "learning_rate": 0.0005,
    "group_size": 6,
    "max_completion_tokens": 24,
    "max_prompt_length": 64,
    "reasoning_effort": "high",
    "eval_interval": 3,
}
#: An OpenAI (or gradekit) value for each setting, different from BEDROCK's.
OTHER = {
    "n_epochs": 1,
    "batch_size": 2,
    "learning_rate": 0.001,
    "group_size": 3,
    "max_completion_tokens": 8,
    "max_prompt_length": 32,
    "reasoning_effort": "low",
    "eval_interval": 1,
}

API = tuple[OpenAI, dict[str, str]]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[API]:
    """An SDK client on a server without a worker (jobs stay queued), and an uploaded training file."""
    root = tmp_path_factory.mktemp("bedrock-names")
    train, _ = write_task(root / "task", n_train=8, n_valid=2)
    with serving(make_config(root / "data", start_worker=False)) as (url, _), client(url) as sdk:
        yield sdk, {"train": upload(sdk, train)}


def create(sdk: OpenAI, files: dict[str, str], given: dict[str, Any], **body: Any) -> Any:
    """A job of the seed's Lambda grader with the hyperparameters `given` (other request fields in `body`)."""
    return sdk.fine_tuning.jobs.create(
        model="openai.gpt-oss-20b", training_file=files["train"], extra_body={"method": rft_method(**given), **body}
    )


def error(excinfo: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = excinfo.value.body
    assert isinstance(body, dict)
    return body


def test_the_mapping_table_covers_bedrocks_documented_names() -> None:
    assert set(BEDROCK_NAMES) == set(BEDROCK)
    assert {BEDROCK_NAMES[k]: v for k, v in BEDROCK.items()} == CANONICAL


def test_bedrock_names_set_the_same_settings_as_openais(api: API) -> None:
    sdk, files = api
    job = create(sdk, files, BEDROCK)
    raw = sdk.fine_tuning.jobs.with_raw_response.retrieve(job.id).http_response.json()
    # OpenAI's seven names always, then gradekit's own settings that were given; no Bedrock name is kept.
    assert raw["method"]["reinforcement"]["hyperparameters"] == {
        "n_epochs": 2,
        "batch_size": 4,
        "learning_rate_multiplier": "auto",
        "eval_interval": 3,
        "eval_samples": "auto",
        "compute_multiplier": "auto",
        "reasoning_effort": "high",
        "learning_rate": 0.0005,
        "group_size": 6,
        "max_completion_tokens": 24,
        "max_prompt_length": 64,
    }
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (2, 4)
    assert job.hyperparameters.learning_rate_multiplier == "auto"
    # The same job with OpenAI's and gradekit's names is the same job.
    same = create(sdk, files, CANONICAL)
    again = sdk.fine_tuning.jobs.with_raw_response.retrieve(same.id).http_response.json()
    assert again["method"]["reinforcement"] == raw["method"]["reinforcement"]


def test_openai_names_alone_keep_openais_job_object(api: API) -> None:
    sdk, files = api
    job = create(sdk, files, {"n_epochs": 1, "compute_multiplier": 2.0})
    raw = sdk.fine_tuning.jobs.with_raw_response.retrieve(job.id).http_response.json()
    assert set(raw["method"]["reinforcement"]["hyperparameters"]) == {
        "n_epochs",
        "batch_size",
        "learning_rate_multiplier",
        "eval_interval",
        "eval_samples",
        "compute_multiplier",
        "reasoning_effort",
    }


@pytest.mark.parametrize("bedrock", sorted(BEDROCK))
def test_both_names_of_one_setting_are_a_400_naming_both(api: API, bedrock: str) -> None:
    sdk, files = api
    name = BEDROCK_NAMES[bedrock]
    with pytest.raises(openai.BadRequestError) as caught:
        create(sdk, files, {name: OTHER[name], bedrock: BEDROCK[bedrock]})
    assert caught.value.status_code == 400
    assert error(caught) == {
        "message": f"Invalid value for '{WHERE}': {name!r} and {bedrock!r} name the same setting; give only one "
        "of them.",
        "type": "invalid_request_error",
        "param": f"{WHERE}.{bedrock}",
        "code": "duplicate_hyperparameter",
    }


def test_a_setting_named_in_the_top_level_form_and_in_the_method_is_named_twice(api: API) -> None:
    sdk, files = api
    with pytest.raises(openai.BadRequestError) as caught:
        create(sdk, files, {"epochCount": 2}, hyperparameters={"n_epochs": 1})
    assert error(caught)["message"] == (
        f"Invalid value for '{WHERE}': 'n_epochs' and 'epochCount' name the same setting; give only one of them."
    )
    assert error(caught)["param"] == f"{WHERE}.epochCount"


@pytest.mark.parametrize(
    ("given", "param", "says"),
    [
        ({"epochCount": 0}, "epochCount", "must be at least 1 (got 0)"),
        ({"trainingSamplePerPrompt": 1}, "trainingSamplePerPrompt", "must be at least 2 (got 1)"),
        ({"learningRate": -1e-5}, "learningRate", "must be positive (got -1e-05)"),
        ({"reasoningEffort": "extreme"}, "reasoningEffort", "Input should be 'default', 'low', 'medium' or 'high'"),
        ({"inferenceMaxTokens": "many"}, "inferenceMaxTokens", "Input should be a valid integer"),
        ({"learningRateMultiplier": 2.0}, "learningRateMultiplier", "unknown hyperparameter"),
    ],
)
def test_a_bad_value_under_a_bedrock_name_names_that_name(
    api: API, given: dict[str, Any], param: str, says: str
) -> None:
    sdk, files = api
    with pytest.raises(openai.BadRequestError) as caught:
        create(sdk, files, given)
    body = error(caught)
    assert body["param"] == f"{WHERE}.{param}"
    assert body["message"].startswith(f"Invalid value for '{WHERE}.{param}': {says}")


def test_resolution_gives_bedrocks_settings_exactly() -> None:
    options = LoopOptions(group_size=8, max_completion_tokens=32, learning_rate=1e-3)
    res = Hyperparameters.model_validate(BEDROCK).resolve(40, options)
    assert (res.n_epochs, res.batch_size, res.eval_interval, res.total_steps) == (2, 4, 3, 20)
    # An explicit budget is not scaled by the reasoning effort; an explicit rate replaces the loop's.
    assert (res.group_size, res.max_completion_tokens, res.learning_rate, res.max_prompt_length) == (6, 24, 5e-4, 64)
    auto = Hyperparameters.model_validate({"reasoningEffort": "high"}).resolve(40, options)
    assert (auto.group_size, auto.max_completion_tokens, auto.learning_rate, auto.max_prompt_length) == (
        8,
        64,
        1e-3,
        None,
    )
    # compute_multiplier still scales the samples per prompt, whichever name set them.
    scaled = Hyperparameters.model_validate({"trainingSamplePerPrompt": 6, "compute_multiplier": 0.5})
    assert scaled.resolve(40, options).group_size == 3


def test_rftjob_takes_the_same_names(tmp_path: Path) -> None:
    files = ("train.jsonl", "valid.jsonl")  # not read before run()
    job = RFTJob("tiny-local", GRADER, *files, BEDROCK, output_dir=tmp_path)
    assert job.hyperparameters == Hyperparameters.model_validate(CANONICAL)
    assert job.hyperparameters.to_json() == {**Hyperparameters().to_json(), **CANONICAL}
    with pytest.raises(ValidationError, match="'batch_size' and 'batchSize' name the same setting"):
        RFTJob("tiny-local", GRADER, *files, {"batch_size": 2, "batchSize": 16}, output_dir=tmp_path)


def test_a_job_trains_with_the_bedrock_settings(tmp_path: Path) -> None:
    """A real run through the service: the worker resolves and uses Bedrock's settings."""
    train, valid = write_task(tmp_path / "task", n_train=4, n_valid=2)
    given = {
        "epochCount": 1,
        "batchSize": 2,
        "evalInterval": 1,
        "trainingSamplePerPrompt": 3,
        "inferenceMaxTokens": 2,
        "maxPromptLength": 5,
        "learningRate": 0.002,
    }
    config = make_config(tmp_path / "data")
    with serving(config) as (url, _), client(url) as sdk:
        job = create(sdk, {"train": upload(sdk, train)}, given, validation_file=upload(sdk, valid))
        done = wait_for(sdk, job.id, timeout=180.0)
        assert done.status == "succeeded", done.error
        record = json.loads((config.jobs_dir / job.id / "job.json").read_text())
        resolved = record["gradekit"]["resolved"]
        assert {k: resolved[k] for k in ("n_epochs", "batch_size", "eval_interval", "total_steps")} == {
            "n_epochs": 1,
            "batch_size": 2,
            "eval_interval": 1,
            "total_steps": 2,
        }
        assert {k: resolved[k] for k in ("group_size", "max_completion_tokens", "learning_rate")} == {
            "group_size": 3,
            "max_completion_tokens": 2,
            "learning_rate": 0.002,
        }
        assert resolved["max_prompt_length"] == 5
        events = sdk.fine_tuning.jobs.list_events(job.id, limit=100).data
        steps = [e.data for e in events if e.type == "metrics" and e.data and e.data["step"] > 0]
        assert sorted(d["step"] for d in steps) == [1, 2]
        assert all(d["train_completion_tokens_mean"] <= 2 for d in steps)
        # Each step trains 2 prompts x 3 samples of at most 5 prompt and 2 completion tokens.
        assert done.trained_tokens is not None and 0 < done.trained_tokens <= 2 * 2 * 3 * (5 + 2)
