"""The `openai` SDK snippets of Bedrock's fine-tuning API page (seed 001) and OpenAI's RFT guide flow, unmodified,
against `gradekit`'s service on real uvicorn, with a worker process that really trains.

Each `snippet_*` function body is the page's Python code as published (placeholders such as `"ftjob-abc123"`
become the function's arguments); `OpenAI()` finds the server through OPENAI_BASE_URL and OPENAI_API_KEY.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from openai import OpenAI
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion
from openai.types.fine_tuning import FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from openai.types.responses import Response

from gradekit.graders.errors import ERROR_FLAGS
from gradekit.lambda_handlers import bedrock_reward_handler
from gradekit.testing.fake_llm import FakeLLM, Judge

from ...lambda_handlers.bundles import JsonPostServer
from ..rft_task import GRADER, write_task
from .helpers import ARN, TEAMS, client, make_config, serving, upload, wait_for, wait_until

MODEL_ID = "openai.gpt-oss-20b"
DEPLOYED_ARN = "arn:aws:lambda:us-west-2:123456789012:function:deployed-reward"  # not in lambda_graders
Task = tuple[Path, Path, Path]


# --- the seed's snippets, as published ----------------------------------------------------------------------


def snippet_create(MODEL_ID: str, training_file_id: str) -> str:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Create fine-tuning job with RFT method
    job_response = client.fine_tuning.jobs.create(
        model=MODEL_ID,
        training_file=training_file_id,
        # Suffix field is not supported so commenting for now.
        # suffix="rft-example",  # Optional: suffix for fine-tuned model name
        extra_body={
            "method": {
                "type": "reinforcement",
                "reinforcement": {
                    "grader": {
                        "type": "lambda",
                        "lambda": {
                            "function": "arn:aws:lambda:us-west-2:123456789012:function:my-reward-function"  # Replace with your Lambda ARN  # noqa: E501
                        },
                    },
                    "hyperparameters": {
                        "n_epochs": 1,  # Number of training epochs
                        "batch_size": 4,  # Batch size
                        "learning_rate_multiplier": 1.0,  # Learning rate multiplier
                    },
                },
            }
        },
    )

    # Store job ID for next steps
    job_id = job_response.id
    print({job_id})
    return job_id


def snippet_list_events(ftjob_abc123: str) -> None:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # List fine-tuning events
    events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=ftjob_abc123, limit=50)

    for event in events.data:
        print(f"[{event.created_at}] {event.level}: {event.message}")
        if event.data:
            print(f"  Metrics: {event.data}")


def snippet_all_events(ftjob_abc123: str, page_size: int = 100) -> list[Any]:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Paginate through all events
    all_events = []
    after = None

    while True:
        events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=ftjob_abc123, limit=page_size, after=after)

        all_events.extend(events.data)

        if not events.has_more:
            break
        after = events.data[-1].id
    return all_events


def snippet_retrieve(job_id: str) -> None:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Retrieve specific job details
    job_details = client.fine_tuning.jobs.retrieve(job_id)

    # Print raw response
    print(json.dumps(job_details.model_dump(), indent=2))


def snippet_list_jobs() -> None:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # List fine-tuning jobs with limit and pagination
    response = client.fine_tuning.jobs.list(
        limit=20  # Maximum number of jobs to return
    )

    # Print raw response
    print(json.dumps(response.model_dump(), indent=2))


def snippet_cancel(ftjob_abc123: str) -> None:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Cancel fine-tuning job
    cancel_response = client.fine_tuning.jobs.cancel(ftjob_abc123)

    print(f"Job ID: {cancel_response.id}")
    print(f"Status: {cancel_response.status}")  # Should be "cancelled"


def snippet_checkpoints(ftjob_abc123: str) -> Any:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # List checkpoints for a fine-tuning job
    checkpoints = client.fine_tuning.jobs.checkpoints.list(fine_tuning_job_id=ftjob_abc123, limit=10)

    for checkpoint in checkpoints.data:
        print(f"Checkpoint ID: {checkpoint.id}")
        print(f"Step: {checkpoint.step_number}")
        print(f"Model: {checkpoint.fine_tuned_model_checkpoint}")
        print(f"Metrics: {checkpoint.metrics}")
        print("---")
    return checkpoint


def snippet_checkpoint_inference(checkpoint: Any) -> Any:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Test inference with a checkpoint
    response = client.chat.completions.create(
        model=checkpoint.fine_tuned_model_checkpoint,
        messages=[{"role": "user", "content": "What is AI?"}],
        max_tokens=100,
    )

    print(response.choices[0].message.content)
    return response


def snippet_responses_api(ftjob_abc123: str) -> None:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Get the fine-tuned model ID
    job_details = client.fine_tuning.jobs.retrieve(ftjob_abc123)

    if job_details.status == "succeeded" and job_details.fine_tuned_model:
        fine_tuned_model = job_details.fine_tuned_model
        print(f"Using fine-tuned model: {fine_tuned_model}")

        # Run inference with Responses API
        response = client.completions.create(
            model=fine_tuned_model, prompt="What is the capital of France?", max_tokens=100, temperature=0.7
        )

        print(f"Response: {response.choices[0].text}")
    else:
        print(f"Job status: {job_details.status}")
        print("Job must be in 'succeeded' status to run inference")


def snippet_chat_completions(ftjob_abc123: str) -> None:
    # Requires OPENAI_API_KEY and OPENAI_BASE_URL environment variables
    from openai import OpenAI

    client = OpenAI()

    # Get the fine-tuned model ID
    job_details = client.fine_tuning.jobs.retrieve(ftjob_abc123)

    if job_details.status == "succeeded" and job_details.fine_tuned_model:
        fine_tuned_model = job_details.fine_tuned_model
        print(f"Using fine-tuned model: {fine_tuned_model}")

        # Run inference
        inference_response = client.chat.completions.create(
            model=fine_tuned_model,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=100,
        )

        print(f"Response: {inference_response.choices[0].message.content}")
    else:
        print(f"Job status: {job_details.status}")
        print("Job must be in 'succeeded' status to run inference")


# --- the server ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def judge() -> Iterator[FakeLLM]:
    """The score_model judge of the guide flow: every verdict 0.8."""
    with FakeLLM(script=[Judge(0.8)], max_lifetime=300.0) as llm:
        yield llm


class DeployedLambda(JsonPostServer):
    """The Lambda Invoke API on 127.0.0.1, running gradekit's Bedrock reward handler with the ticket grader."""

    def __init__(self) -> None:
        self.events: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._handler = bedrock_reward_handler(GRADER, service="gradekit-test-service", namespace="test")
        self._start_server()

    def respond(self, path: str, payload: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Every POST invokes the function with a Bedrock RFT event."""
        assert path.endswith(f"/functions/{quote(DEPLOYED_ARN, safe='')}/invocations"), path
        with self._lock:
            event = json.loads(payload)
            self.events.append(event)
            return 200, json.dumps(self._handler(event, _Context())).encode(), {}


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture(scope="module")
def deployed() -> Iterator[DeployedLambda]:
    """A "deployed" reward Lambda the worker reaches through boto3 (`lambda_backend`)."""
    with DeployedLambda() as api:
        yield api  # type: ignore[misc]


@pytest.fixture(scope="module")
def server(
    task: Task, judge: FakeLLM, deployed: DeployedLambda, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OpenAI, FastAPI]]:
    """The service with a worker; OPENAI_BASE_URL points the snippets' `OpenAI()` at it."""
    data = tmp_path_factory.mktemp("seed-service")
    aws = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADEKIT_MODEL_BASE_URL", judge.base_url)  # the worker's score_model judge
        patch.setenv("GRADEKIT_MODEL_API_KEY", "x")
        for name, value in {
            "AWS_ENDPOINT_URL_LAMBDA": deployed.url,  # boto3 in the worker invokes the loopback Lambda
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": str(aws / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        config = make_config(data, base=task[2], lambda_backend=True)
        with serving(config) as (url, app), client(url) as sdk:
            patch.setenv("OPENAI_BASE_URL", f"{url}/v1")
            patch.setenv("OPENAI_API_KEY", "x")
            yield sdk, app


@pytest.fixture(scope="module")
def training_file_id(server: tuple[OpenAI, FastAPI], task: Task) -> str:
    return upload(server[0], task[0])


@pytest.fixture(scope="module")
def job_id(server: tuple[OpenAI, FastAPI], training_file_id: str) -> str:
    """The seed's job (Lambda grader, n_epochs 1, batch_size 4), trained to the end."""
    job_id = snippet_create(MODEL_ID, training_file_id)
    assert wait_for(server[0], job_id).status == "succeeded"
    return job_id


# --- the tests ----------------------------------------------------------------------------------------------


def test_create_prints_the_job_id_and_training_succeeds(
    server: tuple[OpenAI, FastAPI], job_id: str, training_file_id: str
) -> None:
    sdk, _ = server
    job = sdk.fine_tuning.jobs.retrieve(job_id)
    assert job.fine_tuned_model == f"ft:{MODEL_ID}:gradekit:{job_id.removeprefix('ftjob-')}"
    assert job.training_file == training_file_id and job.validation_file is None
    assert job.trained_tokens is not None and job.trained_tokens > 0
    assert job.finished_at is not None and job.finished_at >= job.created_at and job.error is None
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 4


def test_list_events_prints_messages_and_metrics(job_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    snippet_list_events(job_id)
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\[\d+\] info: The job has successfully completed", lines[0])
    assert lines[-1].endswith(f"info: Created fine-tuning job: {job_id}")
    metrics = [line for line in lines if line.startswith("  Metrics: ") and "'valid_reward_mean'" in line]
    assert len(metrics) == 5  # steps 0..4: 16 rows / batch 4, eval_interval auto = every step


def test_paging_through_events_loses_and_doubles_nothing(server: tuple[OpenAI, FastAPI], job_id: str) -> None:
    everything = snippet_all_events(job_id)
    assert [e.id for e in snippet_all_events(job_id, page_size=3)] == [e.id for e in everything]
    assert len({e.id for e in everything}) == len(everything)
    for event in everything:
        FineTuningJobEvent.model_validate(event.model_dump())
    oldest_first = everything[::-1]
    assert oldest_first[0].message == f"Created fine-tuning job: {job_id}"
    steps = [e.data["step"] for e in oldest_first if e.type == "metrics"]  # type: ignore[index]
    assert steps == [0, 1, 2, 3, 4]
    last = next(e.data for e in everything if e.type == "metrics")
    assert isinstance(last, dict) and 0.0 <= last["valid_reward_mean"] <= 1.0
    # per-grader error counts and rates, every flag, as the guide describes under event.data.errors
    assert set(last["errors"]) == {"ticket_routing", "team", "mentions_team"}
    assert last["errors"]["team"]["invalid_variable_error"] == {"count": 0, "rate": 0.0}
    assert all(set(flags) == set(ERROR_FLAGS) for flags in last["errors"].values())


def test_retrieve_and_list_print_the_raw_jobs(job_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The SDK has no `lambda` grader type: it keeps the grader as a StringCheckGrader with extra fields, and
    # `model_dump()` warns about it (it does the same with Bedrock's answers); the JSON printed is complete.
    with pytest.warns(UserWarning, match="Pydantic serializer warnings"):
        snippet_retrieve(job_id)
    shown = json.loads(capsys.readouterr().out)
    assert (shown["id"], shown["status"], shown["object"]) == (job_id, "succeeded", "fine_tuning.job")
    assert shown["method"]["type"] == "reinforcement"
    assert shown["method"]["reinforcement"]["grader"]["lambda"] == {"function": ARN}
    with pytest.warns(UserWarning, match="Pydantic serializer warnings"):
        snippet_list_jobs()
    listed = json.loads(capsys.readouterr().out)
    assert listed["object"] == "list" and job_id in [j["id"] for j in listed["data"]]


def test_checkpoints_and_inference_on_a_checkpoint(
    server: tuple[OpenAI, FastAPI], job_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sdk, _ = server
    checkpoint = snippet_checkpoints(job_id)
    out = capsys.readouterr().out
    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job_id).data
    assert out.count("---") == len(checkpoints) == 3  # one per validation step, the best three kept
    model = sdk.fine_tuning.jobs.retrieve(job_id).fine_tuned_model
    for ckpt in checkpoints:
        FineTuningJobCheckpoint.model_validate(ckpt.model_dump())
        assert ckpt.fine_tuned_model_checkpoint == f"{model}:ckpt-step-{ckpt.step_number}"
        assert ckpt.fine_tuning_job_id == job_id and ckpt.id.startswith("ftckpt_")
        assert 0.0 <= ckpt.metrics.valid_reward_mean <= 1.0  # type: ignore[attr-defined]
    assert [c.step_number for c in checkpoints] == sorted((c.step_number for c in checkpoints), reverse=True)
    assert checkpoint.id == checkpoints[-1].id

    response = snippet_checkpoint_inference(checkpoint)
    ChatCompletion.model_validate(response.model_dump())
    assert response.model == checkpoint.fine_tuned_model_checkpoint
    assert capsys.readouterr().out.strip() == response.choices[0].message.content
    assert response.usage.completion_tokens <= 100


def test_completions_and_chat_on_the_fine_tuned_model(
    server: tuple[OpenAI, FastAPI], job_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sdk, _ = server
    model = sdk.fine_tuning.jobs.retrieve(job_id).fine_tuned_model
    snippet_responses_api(job_id)
    assert capsys.readouterr().out.splitlines()[0] == f"Using fine-tuned model: {model}"
    snippet_chat_completions(job_id)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Using fine-tuned model: {model}" and lines[1].startswith("Response: ")

    # The model answers in the task's format: a team name.
    ticket = "Hello, I was charged twice for my subscription this month."
    instruction = (
        "Route the support ticket to one team: billing, account, shipping or technical. Answer with the team only."
    )
    answer = sdk.chat.completions.create(
        model=model,  # type: ignore[arg-type]
        messages=[{"role": "developer", "content": instruction}, {"role": "user", "content": ticket}],
        temperature=0,
    )
    ChatCompletion.model_validate(answer.model_dump())
    words = (answer.choices[0].message.content or "").split()
    # The seed's job has a random seed: a short run may end with the model answering nothing (end of text first).
    assert all(w in TEAMS for w in words)
    completion = sdk.completions.create(model=model, prompt=ticket, max_tokens=3, temperature=0, n=2)  # type: ignore[arg-type]
    Completion.model_validate(completion.model_dump())
    assert len(completion.choices) == 2 and completion.choices[0].text == completion.choices[1].text
    # The same prompt through the Responses API (instructions become the developer message): the same answer.
    response = sdk.responses.create(
        model=model,  # type: ignore[arg-type]
        instructions=instruction,
        input=ticket,
        max_output_tokens=1,
        temperature=0,
    )
    Response.model_validate(response.model_dump())
    assert response.output_text == " ".join(words[:1]) and response.usage is not None
    assert response.usage.output_tokens == 1

    ids = [m.id for m in sdk.models.list()]
    for m in sdk.models.list():
        Model.model_validate(m.model_dump())
    assert ids[:2] == [MODEL_ID, "tiny-local"] and model in ids
    assert sdk.models.retrieve(model).owned_by == "org-gradekit-local"  # type: ignore[arg-type]


def test_cancel_a_running_job(
    server: tuple[OpenAI, FastAPI], training_file_id: str, job_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sdk, _ = server
    long_job = sdk.fine_tuning.jobs.create(
        model=MODEL_ID,
        training_file=training_file_id,
        extra_body={"method": _lambda_method(n_epochs=4, batch_size=2, eval_interval=4)},
    )
    wait_for(sdk, long_job.id, {"running"})
    snippet_cancel(long_job.id)
    assert capsys.readouterr().out.splitlines() == [f"Job ID: {long_job.id}", "Status: cancelled"]
    wait_until(
        lambda: sdk.fine_tuning.jobs.list_events(long_job.id, limit=1).data[0].message == "Fine-tuning job cancelled",
        timeout=30,
    )
    job = sdk.fine_tuning.jobs.retrieve(long_job.id)
    assert job.status == "cancelled" and job.fine_tuned_model is None
    steps = [
        e.data["step"]
        for e in sdk.fine_tuning.jobs.list_events(long_job.id, limit=1000).data  # type: ignore[index]
        if e.type == "metrics"
    ]
    assert 0 < len(steps) < 33
    assert f"ft:{MODEL_ID}:gradekit:{long_job.id.removeprefix('ftjob-')}" not in [m.id for m in sdk.models.list()]


def _lambda_method(**hyperparameters: Any) -> dict[str, Any]:
    grader = {
        "type": "lambda",
        "lambda": {"function": "arn:aws:lambda:us-west-2:123456789012:function:my-reward-function"},
    }
    return {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": hyperparameters}}


def test_pause_then_resume_continues_from_the_snapshot(
    server: tuple[OpenAI, FastAPI], training_file_id: str, job_id: str
) -> None:
    sdk, _ = server
    job = sdk.fine_tuning.jobs.create(
        model=MODEL_ID,
        training_file=training_file_id,
        seed=11,
        extra_body={"method": _lambda_method(n_epochs=2, batch_size=2, eval_interval=4)},
    )

    def metrics_steps() -> list[int]:
        events = sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data[::-1]
        return [e.data["step"] for e in events if e.type == "metrics"]  # type: ignore[index]

    wait_until(lambda: len(metrics_steps()) >= 3, timeout=60)
    sdk.fine_tuning.jobs.pause(job.id)
    wait_for(sdk, job.id, {"paused"}, timeout=30)
    paused_at = metrics_steps()[-1]
    assert paused_at < 16
    messages = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert messages[0] == f"Fine-tuning job paused at step {paused_at}"

    assert sdk.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(sdk, job.id, timeout=90)
    assert done.status == "succeeded"
    assert metrics_steps() == list(range(17))  # 16 rows / batch 2 * 2 epochs: nothing lost, nothing doubled
    messages = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data][::-1]
    assert messages.count(f"Created fine-tuning job: {job.id}") == 1
    assert f"Fine-tuning job resumed from step {paused_at}" in messages


def test_the_openai_guide_flow_multi_grader_with_a_judge_and_a_validation_file(
    server: tuple[OpenAI, FastAPI], task: Task, judge: FakeLLM, tmp_path: Path, job_id: str
) -> None:
    sdk, _ = server
    train, valid = write_task(tmp_path, n_train=8, n_valid=4)
    grader = {
        "type": "multi",
        "name": "ticket_review",
        "graders": {
            "team": {
                "type": "string_check",
                "name": "team",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.team }}",
                "operation": "eq",
            },
            "explanation": {
                "type": "score_model",
                "name": "explanation",
                "model": "o4-mini-2025-04-16",
                "input": [
                    {"role": "user", "content": "Is '{{ sample.output_text }}' the team for {{ item.ticket_id }}?"}
                ],
                "range": [0, 1],
                "sampling_params": {"temperature": 0, "seed": 42},
            },
        },
        "calculate_output": "0.5 * team + 0.5 * explanation",
    }
    before = judge.count
    job = sdk.fine_tuning.jobs.create(
        model=MODEL_ID,
        training_file=upload(sdk, train),
        validation_file=upload(sdk, valid),
        suffix="ticket-review",
        seed=42,
        method={
            "type": "reinforcement",
            "reinforcement": {
                "grader": grader,
                "hyperparameters": {"n_epochs": 1, "batch_size": 4, "eval_interval": 1},
            },
        },  # type: ignore[typeddict-item]  # the SDK types multi.graders as one grader, the guide uses a dict
    )
    done = wait_for(sdk, job.id, timeout=90)
    assert done.status == "succeeded"
    assert done.fine_tuned_model == f"ft:{MODEL_ID}:ticket-review:{job.id.removeprefix('ftjob-')}"
    assert judge.count > before
    data = [e.data for e in sdk.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    valid_means = [d["valid_reward_mean"] for d in data]  # type: ignore[index]
    assert all(0.4 - 1e-9 <= v <= 0.9 + 1e-9 for v in valid_means)  # 0.5 * {0, 1} + 0.5 * 0.8 per sample
    assert data[0]["errors"]["explanation"]["model_grader_parse_error"]["count"] == 0  # type: ignore[index]
    assert {c.step_number for c in sdk.fine_tuning.jobs.checkpoints.list(job.id)} <= {1, 2}


def test_an_unmapped_arn_is_graded_by_the_deployed_lambda(
    server: tuple[OpenAI, FastAPI], deployed: DeployedLambda, training_file_id: str, job_id: str
) -> None:
    sdk, _ = server
    job = sdk.fine_tuning.jobs.create(
        model=MODEL_ID,
        training_file=training_file_id,
        seed=5,
        extra_body={
            "method": {
                "type": "reinforcement",
                "reinforcement": {
                    "grader": {"type": "lambda", "lambda": {"function": DEPLOYED_ARN}},
                    "hyperparameters": {"n_epochs": 1, "batch_size": 8, "eval_interval": 1},
                },
            }
        },
    )
    assert wait_for(sdk, job.id).status == "succeeded"
    # Bedrock's event: the sample as the last assistant message, the data row's other fields as metadata.
    sample = deployed.events[0][0]
    assert sample["messages"][-1]["role"] == "assistant" and sample["metadata"]["team"] in TEAMS
    data = [e.data for e in sdk.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    assert {d["step"] for d in data} == {0, 1, 2}  # type: ignore[index]
    rewards = [d["valid_reward_mean"] for d in data]  # type: ignore[index]
    assert all(0.0 <= r <= 1.0 for r in rewards) and max(rewards) > 0.0
    assert "deployed-reward" in data[0]["errors"]  # type: ignore[index]  # the run reports under the function's name
