"""Shared pieces of the fine-tuning service tests: configs, an in-process server, waiting for jobs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI
from openai import DefaultHttpxClient, OpenAI
from openai.types.fine_tuning import FineTuningJob

from gradekit.runtime.server import create_app, running
from gradekit.trainer_bridge.service import ServiceConfig

from ..rft_task import FAST, TASK

#: The reward Lambda of the seed snippets, mapped to the ticket-routing grader in every test config.
ARN = "arn:aws:lambda:us-west-2:123456789012:function:my-reward-function"
GRADER_FILE = TASK / "grader.json"
TEAMS = {"account", "billing", "shipping", "technical"}
FINAL = {"succeeded", "failed", "cancelled"}


def make_config(data_dir: Path, base: Path | str = "tiny-local", **overrides: Any) -> ServiceConfig:
    """A test config: the warm-started base as `openai.gpt-oss-20b`, the seed ARN mapped, fast loop options."""
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "base_models": {"openai.gpt-oss-20b": str(base), "tiny-local": "tiny-local"},
        "lambda_graders": {ARN: str(GRADER_FILE)},
        "options": FAST,
        "poll_interval": 0.05,
        "shutdown_grace": 3.0,
    }
    return ServiceConfig.model_validate({**settings, **overrides})


@contextlib.contextmanager
def serving(config: ServiceConfig | None, **app_options: Any) -> Iterator[tuple[str, FastAPI]]:
    """The gradekit app with the service on real uvicorn on 127.0.0.1; (base URL, app); stops within 15 s."""
    app = create_app(**app_options)
    app.state.fine_tuning_config = config
    with running(app, timeout=15.0) as url:
        yield url, app


def client(url: str, **options: Any) -> OpenAI:
    """The real openai SDK pointed at the server, without retries and without keep-alive.

    Tests wait on the store for minutes between requests; past uvicorn's 5 s keep-alive a pooled connection
    can be closed by the server just as the client reuses it, which only a retry would absorb.
    """
    options.setdefault("http_client", DefaultHttpxClient(limits=httpx2.Limits(max_keepalive_connections=0)))
    return OpenAI(base_url=f"{url}/v1", api_key=options.pop("api_key", "x"), max_retries=0, **options)


def wait_for(
    sdk: OpenAI, job_id: str, statuses: set[str] = FINAL, timeout: float = 60.0, poll: float = 0.1
) -> FineTuningJob:
    """Poll the job until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} still {job.status} after {timeout} s (wanted {statuses})")
        time.sleep(poll)


def wait_until(check: Any, timeout: float = 60.0, poll: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)
    return value


def upload(sdk: OpenAI, path: Path) -> str:
    """Upload a JSONL file for fine-tuning; its id."""
    with open(path, "rb") as f:
        return sdk.files.create(file=f, purpose="fine-tune").id


def rft_method(grader: dict[str, Any] | None = None, **hyperparameters: Any) -> dict[str, Any]:
    """`method` of an RFT job (the seed's Lambda grader unless `grader` is given)."""
    return {
        "type": "reinforcement",
        "reinforcement": {
            "grader": grader or {"type": "lambda", "lambda": {"function": ARN}},
            "hyperparameters": hyperparameters,
        },
    }
