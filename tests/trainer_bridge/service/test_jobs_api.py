"""The jobs API without training (no worker): creation checks, OpenAI errors, listing, cancel/pause/resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from ..rft_task import GRADER, write_task
from .helpers import ARN, client, make_config, rft_method, serving, upload

API = tuple[OpenAI, dict[str, str]]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[API]:
    """An SDK client on a server without a worker (jobs stay queued), and uploaded file ids."""
    root = tmp_path_factory.mktemp("jobs-service")
    train, valid = write_task(root / "task", n_train=8, n_valid=4)
    bad = root / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": []}\n')
    models = {"openai.gpt-oss-20b": "tiny-local", "gone": str(root / "no-such-model")}
    config = make_config(root / "data", start_worker=False, base_models=models)
    with serving(config) as (url, _), client(url) as sdk:
        yield sdk, {"train": upload(sdk, train), "valid": upload(sdk, valid), "bad": upload(sdk, bad)}


def create(sdk: OpenAI, files: dict[str, str], **fields: Any) -> Any:
    fields.setdefault("model", "openai.gpt-oss-20b")
    fields.setdefault("training_file", files["train"])
    extra = {"method": fields.pop("method", rft_method(n_epochs=1))}
    return sdk.fine_tuning.jobs.create(**fields, extra_body=extra)


def error(excinfo: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = excinfo.value.body
    assert isinstance(body, dict)
    return body


def test_a_new_job_is_queued_with_openai_fields(api: API) -> None:
    sdk, files = api
    job = create(sdk, files, validation_file=files["valid"], suffix="routing", seed=7, metadata={"team": "support"})
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-")
    assert (job.status, job.model, job.seed, job.suffix) == ("queued", "openai.gpt-oss-20b", 7, "routing")
    assert (job.training_file, job.validation_file) == (files["train"], files["valid"])
    assert job.fine_tuned_model is None and job.error is None and job.finished_at is None
    assert job.metadata == {"team": "support"}
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == "auto"
    assert job.method is not None and job.method.type == "reinforcement"
    raw = sdk.fine_tuning.jobs.with_raw_response.retrieve(job.id).http_response.json()
    assert raw["method"]["reinforcement"]["grader"] == {"type": "lambda", "lambda": {"function": ARN}}
    assert raw["method"]["reinforcement"]["hyperparameters"]["reasoning_effort"] == "default"
    # The SDK's FineTuningJob has no `lambda` grader type: check the envelope with an OpenAI grader.
    raw["method"]["reinforcement"]["grader"] = GRADER["graders"]["team"]
    assert FineTuningJob.model_validate(raw).id == job.id


def test_openai_and_bedrock_native_grader_forms(api: API) -> None:
    sdk, files = api
    openai_form = create(sdk, files, method=rft_method(GRADER, batch_size=4))
    assert openai_form.status == "queued"
    native = create(sdk, files, method=rft_method({"lambdaGrader": {"lambdaArn": ARN}}))
    raw = sdk.fine_tuning.jobs.with_raw_response.retrieve(native.id).http_response.json()
    assert raw["method"]["reinforcement"]["grader"] == {"type": "lambda", "lambda": {"function": ARN}}


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"suffix": "x" * 41}, "suffix", "at most 40 characters"),
        ({"suffix": "a:b"}, "suffix", "may not contain ':'"),
        ({"model": "gpt-4o-mini"}, "model", "does not exist"),
        ({"model": "gone"}, "model", "not a Hugging Face model folder"),
        ({"training_file": "file-nope"}, "training_file", "file-nope"),
        ({"validation_file": "file-nope"}, "validation_file", "file-nope"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16"),
        ({"method": {"type": "supervised", "supervised": {}}}, "method.type", "only 'reinforcement'"),
        ({"method": rft_method(n_epochs=0)}, "method.reinforcement.hyperparameters.n_epochs", "must be at least 1"),
        ({"method": rft_method(epochs=3)}, "method.reinforcement.hyperparameters.epochs", "unknown hyperparameter"),
        (
            {"method": rft_method({"type": "string_check", "name": "x", "input": "a", "reference": "b"})},
            "method.reinforcement.grader.operation",
            "operation",
        ),
        (
            {"method": rft_method({"type": "function", "name": "f", "function": "os:system"})},
            "method.reinforcement.grader.type",
            "`function` graders",
        ),
        (
            {
                "method": rft_method(
                    {
                        "type": "multi",
                        "graders": {"f": {"type": "function", "function": "os:system"}},
                        "calculate_output": "f",
                    }
                )
            },
            "method.reinforcement.grader.graders.f.type",
            "`function` graders",
        ),
        (
            {"method": rft_method({"type": "lambda", "lambda": {"function": "arn:aws:lambda:::function:nope"}})},
            "method.reinforcement.grader.lambda.function",
            "map it to a grader under lambda_graders",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(api: API, fields: dict[str, Any], param: str, says: str) -> None:
    sdk, files = api
    with pytest.raises(openai.BadRequestError) as caught:
        create(sdk, files, **fields)
    body = error(caught)
    assert body["param"] == param and body["type"] == "invalid_request_error"
    assert says in body["message"]


def test_a_job_without_method_is_refused(api: API) -> None:
    sdk, files = api
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.fine_tuning.jobs.create(model="openai.gpt-oss-20b", training_file=files["train"])
    assert error(caught)["param"] == "method"


def test_a_bad_file_fails_the_job_in_validating_files(api: API) -> None:
    sdk, files = api
    job = create(sdk, files, validation_file=files["bad"])
    assert job.status == "failed" and job.error is not None and job.finished_at is not None
    assert job.error.param == "validation_file" and job.error.code == "invalid_validation_file"
    assert job.error.message == (
        f"Invalid validation file {files['bad']}: bad.jsonl:2: 'messages' must be a non-empty list of chat messages"
    )
    events = sdk.fine_tuning.jobs.list_events(job.id).data
    for event in events:
        FineTuningJobEvent.model_validate(event.model_dump())
    assert [e.message for e in events][::-1] == [
        f"Created fine-tuning job: {job.id}",
        "Validating training file and validation file",
        f"Fine-tuning job failed: {job.error.message}",
    ]
    assert events[0].level == "error"


def test_unknown_jobs_are_404(api: API) -> None:
    sdk, _ = api
    for call in (
        lambda: sdk.fine_tuning.jobs.retrieve("ftjob-nope"),
        lambda: sdk.fine_tuning.jobs.cancel("ftjob-nope"),
        lambda: sdk.fine_tuning.jobs.list_events("ftjob-nope"),
        lambda: sdk.fine_tuning.jobs.checkpoints.list("ftjob-nope"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert error(caught) == {
            "message": "No such fine-tuning job: ftjob-nope",
            "type": "invalid_request_error",
            "param": "fine_tuning_job_id",
            "code": "fine_tune_not_found",
        }


def test_list_pages_newest_first_and_filters_by_metadata(api: API) -> None:
    sdk, files = api
    ids = [create(sdk, files, metadata={"batch": "paging", "i": str(i)}).id for i in range(3)]
    first = sdk.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == ids[::-1][:2] and first.has_more
    rest = sdk.fine_tuning.jobs.list(limit=1, after=first.data[-1].id)
    assert [j.id for j in rest.data] == [ids[0]] and rest.has_more
    tagged = sdk.fine_tuning.jobs.list(metadata={"batch": "paging"})
    assert [j.id for j in tagged.data] == ids[::-1] and not tagged.has_more
    assert [j.id for j in sdk.fine_tuning.jobs.list(metadata={"i": "1"}).data] == [ids[1]]
    # auto-pagination follows has_more and the last id
    assert [j.id for j in sdk.fine_tuning.jobs.list(limit=1, metadata={"batch": "paging"})] == ids[::-1]


def test_cancel_pause_resume_a_queued_job(api: API) -> None:
    sdk, files = api
    job = create(sdk, files)
    paused = sdk.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"  # type: ignore[comparison-overlap]  # the SDK's Literal lacks "paused"
    assert sdk.fine_tuning.jobs.resume(job.id).status == "queued"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.fine_tuning.jobs.resume(job.id)
    assert error(caught)["message"] == f"Job {job.id} is queued, not paused; only a paused job can be resumed."

    cancelled = sdk.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert sdk.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # again: no change
    assert [e.message for e in sdk.fine_tuning.jobs.list_events(job.id)] == ["Fine-tuning job cancelled"]
    for control in (sdk.fine_tuning.jobs.pause, sdk.fine_tuning.jobs.resume):
        with pytest.raises(openai.BadRequestError) as caught:
            control(job.id)
        assert "cancelled" in error(caught)["message"]


def test_a_file_in_use_cannot_be_deleted(api: API, tmp_path: Path) -> None:
    sdk, files = api
    train, _ = write_task(tmp_path, n_train=3, n_valid=1)
    file_id = upload(sdk, train)
    job = create(sdk, files, training_file=file_id)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.delete(file_id)
    assert job.id in error(caught)["message"]
    sdk.fine_tuning.jobs.cancel(job.id)
    assert sdk.files.delete(file_id).deleted


def test_paging_events_with_an_unknown_cursor_is_400(api: API) -> None:
    sdk, files = api
    job = create(sdk, files, validation_file=files["bad"])
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.fine_tuning.jobs.list_events(job.id, after="ftevent-nope")
    assert error(caught)["param"] == "after"


def test_without_a_config_the_routes_say_the_service_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADEKIT_FINETUNE_CONFIG", raising=False)
    with serving(None) as (url, _), client(url) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.fine_tuning.jobs.list()
        assert error(caught)["code"] == "not_enabled"


def test_the_api_key_guards_the_service(tmp_path: Path) -> None:
    with serving(make_config(tmp_path, start_worker=False), api_key="sekrit") as (url, _):
        with client(url, api_key="wrong") as intruder, pytest.raises(openai.AuthenticationError):
            intruder.files.list()
        with client(url, api_key="sekrit") as sdk:
            assert sdk.files.list().data == []
    assert (tmp_path / "service.db").is_file()
