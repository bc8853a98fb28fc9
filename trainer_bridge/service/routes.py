"""The fine-tuning service's HTTP routes (a `gradekit.routes` plugin) and its start/stop with the app.

```
POST   /v1/files                                   multipart: file, purpose=fine-tune  -> file object
GET    /v1/files  ?limit&after&order&purpose       GET /v1/files/{id}   GET /v1/files/{id}/content
DELETE /v1/files/{id}
POST   /v1/fine_tuning/jobs                        -> fine_tuning.job (queued)
GET    /v1/fine_tuning/jobs ?limit&after&metadata[k]=v     GET /v1/fine_tuning/jobs/{id}
POST   /v1/fine_tuning/jobs/{id}/cancel | pause | resume
GET    /v1/fine_tuning/jobs/{id}/events ?limit&after       newest first
GET    /v1/fine_tuning/jobs/{id}/checkpoints ?limit&after  newest first
POST   /v1/chat/completions   POST /v1/completions   POST /v1/responses
GET    /v1/models   GET /v1/models/{model}
GET    /v1/gradekit/fine_tuning/jobs/{id}/eval_runs[/{step}]   gradekit's extension (dashboard_routes)
```

The service starts with the app (its lifespan) on the config found first: `app.state.fine_tuning_config`, the
file named by `$GRADEKIT_FINETUNE_CONFIG`, or, under `gradekit serve` (`app.state.serve_defaults`), the default
config (`ServiceConfig.default()`: data in `./gradekit-data`). It logs one line saying where its data lives,
opens the database, removes half-written uploads, spawns the worker process (at once when a job waits, else
with the first queued job) and logs the jobs' progress (`ProgressLog`); it stops them when the app stops. An
app made by `create_app` with no config answers 404 here.
The jobs routes also serve the run folders named by `app.state.runs_dir` (`gradekit serve --runs DIR`, else
`$GRADEKIT_RUNS`), read-only, with the service's jobs or without the service (see `runs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse

from gradekit.runtime.server import APIError

from . import dashboard_routes
from .config import CONFIG_ENV, DEFAULT_DATA_DIR, ConfigError, ServiceConfig
from .files import FilePart, Files, form_filename
from .inference import ChatRequest, CompletionRequest, Inference, ResponseRequest
from .jobs import MAX_LIMIT, CreateJobRequest, Jobs
from .models import Models
from .progress import ProgressLog
from .runs import Combined, JobSource, RunFolders, runs_dir_from_env
from .store import FINAL_STATUSES, Store
from .worker import WorkerProcess

__all__ = ["Service", "register"]

logger = logging.getLogger(__name__)

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": ["fine-tune"]},
                    },
                }
            }
        },
    }
}


class Service:
    """The running service: database, files, jobs, model names, inference and the worker process."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.db_path)
        self.files = Files(self.store, config.files_dir)
        self.models = Models(config, self.store)
        self.jobs = Jobs(config, self.store, self.files, self.models, on_queued=self.wake_worker)
        self.inference = Inference(config, self.models)
        self.worker = WorkerProcess(config) if config.start_worker else None
        self.progress = ProgressLog(config, self.store)

    def start(self) -> None:
        """Clean up after a crash, start the worker if a job waits for it, and the progress log."""
        self.files.remove_orphans()
        # Without work the worker (which imports torch) starts with the first queued job, not before.
        if any(r.status not in FINAL_STATUSES and (r.status != "paused" or r.worker) for r in self.store.jobs()):
            self.wake_worker()
        self.progress.start()

    def wake_worker(self) -> None:
        """Start the worker, unless it runs already (or the config says not to train)."""
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        """Stop the worker (its jobs pause and are queued again for the next start), then the progress log."""
        if self.worker is not None:
            self.worker.stop()
        self.progress.stop()


def _start(app: FastAPI, env_config: ServiceConfig | None, source: str) -> Service | None:
    config = getattr(app.state, "fine_tuning_config", None)
    if config is not None:
        source = "app.state.fine_tuning_config"
    elif env_config is not None:
        config = env_config
    elif getattr(app.state, "serve_defaults", False):
        config = ServiceConfig.default()
    app.state.fine_tuning = None
    if config is None:
        return None
    try:
        service = Service(config)
        service.start()
    except (OSError, sqlite3.Error) as e:  # e.g. a file where the data folder should be: say so, serve the rest
        reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
        app.state.fine_tuning_problem = f"its data folder {config.data_dir} cannot be used ({reason})"
        logger.error("fine-tuning API off: %s (%s)", app.state.fine_tuning_problem, source)
        return None
    app.state.fine_tuning = service
    logger.info("fine-tuning API: data in %s (%s)", config.data_dir, source)
    return service


def _service(request: Request) -> Service:
    service = getattr(request.app.state, "fine_tuning", None)
    if service is None:
        problem = getattr(request.app.state, "fine_tuning_problem", None)
        if problem is not None:
            raise APIError(404, f"The fine-tuning service is off on this server: {problem}.", code="not_enabled")
        raise APIError(
            404,
            "The fine-tuning service is not enabled on this server: `gradekit serve` serves it (data in "
            f"./{DEFAULT_DATA_DIR}, or as the config file named by ${CONFIG_ENV} says).",
            code="not_enabled",
        )
    return service


def _jobs(request: Request) -> JobSource:
    """The jobs the API serves: the service's, the run folders' (`--runs`), or both; 404 when neither."""
    runs_dir = getattr(request.app.state, "runs_dir", None)
    if runs_dir is None:
        return _service(request).jobs
    service = getattr(request.app.state, "fine_tuning", None)
    runs = RunFolders(runs_dir)
    return runs if service is None else Combined(service.jobs, runs)


def _limit(limit: int | None, default: int) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= MAX_LIMIT:
        raise APIError(400, f"Invalid value for 'limit': it must be between 1 and {MAX_LIMIT}.", param="limit")
    return limit


def _metadata_filter(request: Request) -> dict[str, str]:
    found = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            found[key[len("metadata[") : -1]] = value
    return found


def register(app: FastAPI) -> None:
    """Add the fine-tuning service's routes to `app`, and start/stop the service with it.

    The config named by `$GRADEKIT_FINETUNE_CONFIG` is read now, so a bad one stops the app from being made
    (a `CLIError`: `gradekit serve` prints its one line) instead of failing the server's startup later.
    """
    from gradekit.runtime.cli import CLIError

    try:
        env_config = ServiceConfig.from_env()
    except ConfigError as e:
        raise CLIError(str(e)) from None
    if env_config is not None:
        source = f"config file {os.environ[CONFIG_ENV]}"
    else:
        source = f"the default config; ${CONFIG_ENV} may name a config file"
    app.state.runs_dir = runs_dir_from_env()
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        service = await anyio.to_thread.run_sync(_start, app, env_config, source)
        try:
            async with inner(a) as state:
                yield state
        finally:
            if service is not None:
                await anyio.to_thread.run_sync(service.stop)

    app.router.lifespan_context = lifespan

    # --- files --------------------------------------------------------------------------------------------

    @app.post("/v1/files", openapi_extra=_UPLOAD_SCHEMA)
    async def upload_file(request: Request) -> dict[str, Any]:
        """Upload a JSONL file for fine-tuning (multipart `file` and `purpose=fine-tune`); it is checked as RFT data."""
        service = _service(request)
        if request.headers.get("content-type", "").partition(";")[0].strip() != "multipart/form-data":
            raise APIError(400, "The request must be multipart/form-data (upload with the files API).")
        async with request.form(max_files=1, max_fields=8) as form:
            parts = [
                FilePart(name, None, value.encode())
                if isinstance(value, str)
                else FilePart(name, form_filename(value.filename), await value.read())
                for name, value in form.multi_items()
            ]
        return await anyio.to_thread.run_sync(service.files.upload, parts)

    @app.get("/v1/files")
    def list_files(
        request: Request,
        limit: int | None = None,
        after: str | None = None,
        order: Literal["asc", "desc"] = "desc",
        purpose: str | None = None,
    ) -> dict[str, Any]:
        """List uploaded files (newest first unless order=asc)."""
        service = _service(request)
        if after is not None:
            service.files.get(after)
        data, more = service.store.list_files(
            limit=_limit(limit, MAX_LIMIT), after=after, ascending=order == "asc", purpose=purpose
        )
        return {"object": "list", "data": data, "has_more": more, "first_id": None, "last_id": None} | (
            {"first_id": data[0]["id"], "last_id": data[-1]["id"]} if data else {}
        )

    @app.get("/v1/files/{file_id}")
    def retrieve_file(request: Request, file_id: str) -> dict[str, Any]:
        """A file object."""
        return _service(request).files.get(file_id)

    @app.get("/v1/files/{file_id}/content", response_class=FileResponse)
    def file_content(request: Request, file_id: str) -> FileResponse:
        """The file's bytes, as uploaded."""
        path = _service(request).files.content(file_id)
        return FileResponse(path, media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(request: Request, file_id: str) -> dict[str, Any]:
        """Delete a file that no unfinished job uses."""
        return _service(request).files.delete(file_id)

    # --- jobs ---------------------------------------------------------------------------------------------

    @app.post("/v1/fine_tuning/jobs")
    def create_job(request: Request, body: CreateJobRequest) -> dict[str, Any]:
        """Create a reinforcement fine-tuning job (OpenAI's or Bedrock's request form)."""
        return _service(request).jobs.create(body)  # run folders are read-only

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        """List jobs, newest first; `metadata[key]=value` filters."""
        return _jobs(request).list(_limit(limit, 20), after, _metadata_filter(request))

    @app.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}")
    def retrieve_job(request: Request, fine_tuning_job_id: str) -> dict[str, Any]:
        """A job object."""
        return _jobs(request).get(fine_tuning_job_id)

    @app.post("/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel")
    def cancel_job(request: Request, fine_tuning_job_id: str) -> dict[str, Any]:
        """Cancel a job (a running one stops at the end of its step)."""
        return _jobs(request).cancel(fine_tuning_job_id)

    @app.post("/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause")
    def pause_job(request: Request, fine_tuning_job_id: str) -> dict[str, Any]:
        """Pause a job (a running one snapshots at the end of its step, then shows `paused`)."""
        return _jobs(request).pause(fine_tuning_job_id)

    @app.post("/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume")
    def resume_job(request: Request, fine_tuning_job_id: str) -> dict[str, Any]:
        """Queue a paused job again; it continues from its snapshot."""
        return _jobs(request).resume(fine_tuning_job_id)

    @app.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}/events")
    def list_events(
        request: Request, fine_tuning_job_id: str, limit: int | None = None, after: str | None = None
    ) -> dict[str, Any]:
        """The job's events, newest first."""
        return _jobs(request).events(fine_tuning_job_id, _limit(limit, 20), after)

    @app.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints")
    def list_checkpoints(
        request: Request, fine_tuning_job_id: str, limit: int | None = None, after: str | None = None
    ) -> dict[str, Any]:
        """The job's kept checkpoints, newest first."""
        return _jobs(request).checkpoints(fine_tuning_job_id, _limit(limit, 10), after)

    dashboard_routes.register(app, _jobs)

    # --- inference ----------------------------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    def chat_completions(request: Request, body: ChatRequest) -> dict[str, Any]:
        """A chat completion from a base model, a fine-tuned model or a checkpoint."""
        return _service(request).inference.chat(body)

    @app.post("/v1/completions")
    def completions(request: Request, body: CompletionRequest) -> dict[str, Any]:
        """A text completion from a base model, a fine-tuned model or a checkpoint."""
        return _service(request).inference.complete(body)

    @app.post("/v1/responses")
    def responses(request: Request, body: ResponseRequest) -> dict[str, Any]:
        """A response (one assistant message) from a base model, a fine-tuned model or a checkpoint."""
        return _service(request).inference.respond(body)

    @app.get("/v1/models")
    def list_models(request: Request) -> dict[str, Any]:
        """Base models, fine-tuned models and checkpoints."""
        return {"object": "list", "data": [m.to_json() for m in _service(request).models.list()]}

    @app.get("/v1/models/{model}")
    def retrieve_model(request: Request, model: str) -> dict[str, Any]:
        """One model."""
        ref = _service(request).models.resolve(model)
        if ref is None:
            raise APIError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return ref.to_json()
