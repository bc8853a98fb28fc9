"""The fine-tuning jobs API's logic: create (OpenAI's and Bedrock's request forms), list, retrieve, control,
events and checkpoints.

A new job is checked at once (model, files, grader, hyperparameters, suffix, metadata: a 400 naming the
parameter); a job whose file failed the RFT check is created `failed` in `validating_files` with the file's
line-numbered message; otherwise it is `queued` for the worker. Cancel is immediate in the API (the worker
stops training at the end of the step); pause asks the worker to snapshot and stop; resume queues a paused job
again, and the worker continues it from its snapshot.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gradekit.runtime.server import APIError

from ..loop.events import EventLog, read_events
from ..loop.hyperparameters import Hyperparameters, SettingNamedTwice, canonical_names
from ..loop.job import fine_tuned_model_name, job_object
from ..models import catalogue
from . import transitions
from .config import ServiceConfig
from .files import Files
from .grading import GraderProblem, normalise_grader, resolve_grader
from .models import CHECKPOINT_MARK, Models, kept_checkpoints
from .store import JobRow, Store

__all__ = ["CreateJobRequest", "Jobs", "checkpoint_objects", "page"]

MAX_LIMIT = 10_000


class ReinforcementSpec(BaseModel):
    """`method.reinforcement`: the grader and the hyperparameters."""

    model_config = ConfigDict(extra="forbid")

    grader: dict[str, Any]
    hyperparameters: dict[str, Any] | None = None


class MethodSpec(BaseModel):
    """`method`: only `reinforcement` is trained here."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo", "reinforcement"]
    reinforcement: ReinforcementSpec | None = None
    supervised: dict[str, Any] | None = None
    dpo: dict[str, Any] | None = None


class CreateJobRequest(BaseModel):
    """Body of `POST /v1/fine_tuning/jobs` (OpenAI's `JobCreateParams`; Bedrock sends `method` the same way)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str
    validation_file: str | None = None
    method: MethodSpec | None = None
    hyperparameters: dict[str, Any] | None = Field(None, description="deprecated top-level form")
    suffix: str | None = Field(None, min_length=1, max_length=40)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None


def page(items: list[dict[str, Any]], limit: int, after: str | None, *, param: str = "after") -> dict[str, Any]:
    """One cursor page of `items` (already in list order): those after the id `after`, at most `limit`."""
    start = 0
    if after is not None:
        ids = [i["id"] for i in items]
        if after not in ids:
            raise APIError(400, f"Invalid value for '{param}': no object {after!r} in this list.", param=param)
        start = ids.index(after) + 1
    chunk = items[start : start + limit]
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items)}


def checkpoint_objects(job_id: str, model_name: str, run_dir: Path) -> list[dict[str, Any]]:
    """The run's kept checkpoints as OpenAI's `fine_tuning.job.checkpoint` objects, newest step first."""
    return [
        {
            "object": "fine_tuning.job.checkpoint",
            "id": c["id"],
            "created_at": c["created_at"],
            "fine_tuned_model_checkpoint": f"{model_name}{CHECKPOINT_MARK}{c['step_number']}",
            "fine_tuning_job_id": job_id,
            "metrics": c["metrics"],
            "step_number": c["step_number"],
        }
        for c in kept_checkpoints(run_dir)
    ]


def _hyperparameters(body: CreateJobRequest) -> Hyperparameters:
    """The job's hyperparameters (OpenAI's names or Bedrock's); a 400 naming the parameter as it was given."""
    given = dict(body.hyperparameters or {})
    assert body.method is not None and body.method.reinforcement is not None
    where = "method.reinforcement.hyperparameters"
    try:
        # The deprecated top-level form and the method's are one set: a setting named in both is named twice.
        top, top_names = canonical_names(given)
        method, names = canonical_names(body.method.reinforcement.hyperparameters or {})
        for field, name in names.items():
            if field in top and top_names[field] != name:
                raise SettingNamedTwice(top_names[field], name)
    except SettingNamedTwice as e:
        message = f"Invalid value for '{where}': {e}."
        raise APIError(400, message, param=f"{where}.{e.alias}", code="duplicate_hyperparameter") from None
    names = {**top_names, **names}
    try:
        hyper = Hyperparameters.model_validate({**top, **method})
    except ValidationError as e:
        err = e.errors()[0]
        field = names.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else ""
        message = "unknown hyperparameter" if err["type"] == "extra_forbidden" else err["msg"]
        raise APIError(400, f"Invalid value for '{where}.{field}': {message}.", param=f"{where}.{field}") from None
    try:
        hyper.resolve(1)
    except ValueError as e:  # "hyperparameters.n_epochs must be at least 1 (got 0)"
        field, _, problem = str(e).removeprefix("hyperparameters.").partition(" ")
        field = names.get(field, field)
        raise APIError(400, f"Invalid value for '{where}.{field}': {problem}.", param=f"{where}.{field}") from None
    return hyper


class Jobs:
    """Fine-tuning jobs: rows in the store, runs under `config.jobs_dir`."""

    def __init__(
        self,
        config: ServiceConfig,
        store: Store,
        files: Files,
        models: Models,
        *,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.files = files
        self.models = models
        self.on_queued = on_queued  # called when a job joins the queue (the service starts its worker then)

    # --- create -------------------------------------------------------------------------------------------

    def _method(self, body: CreateJobRequest) -> ReinforcementSpec:
        method = body.method
        if method is None:
            raise APIError(
                400,
                "Missing required parameter: 'method'. This server runs reinforcement fine-tuning: send "
                "method={'type': 'reinforcement', 'reinforcement': {'grader': ..., 'hyperparameters': ...}}.",
                param="method",
            )
        if method.type != "reinforcement":
            raise APIError(
                400,
                f"Invalid value for 'method.type': {method.type!r}; only 'reinforcement' is supported here.",
                param="method.type",
            )
        if method.reinforcement is None:
            raise APIError(400, "Missing required parameter: 'method.reinforcement'.", param="method.reinforcement")
        return method.reinforcement

    def _file(self, file_id: str, param: str) -> dict[str, Any]:
        obj = self.store.get_file(file_id)
        if obj is None:
            raise APIError(400, f"Invalid file ID for '{param}': {file_id}", param=param, code="file_not_found")
        return obj

    def create(self, body: CreateJobRequest) -> dict[str, Any]:
        """Check the request, store the job (`queued`, or `failed` on a bad file); its job object."""
        reinforcement = self._method(body)
        try:
            grader = normalise_grader(reinforcement.grader)
            resolve_grader(grader, self.config, build_backend=False)
        except GraderProblem as e:
            listed = "\n".join(f"  - {p}" for p in e.problems)
            raise APIError(400, f"Invalid grader ({len(e.problems)} problem(s)):\n{listed}", param=e.param) from None
        hyper = _hyperparameters(body)
        base = self.models.resolve(body.model)
        if base is None or CHECKPOINT_MARK in body.model:
            known = ", ".join(self.models.base_models()) or "none"
            raise APIError(
                400,
                f"The model `{body.model}` does not exist or cannot be fine-tuned here "
                f"(base models: {known}; or a fine-tuned model of a succeeded job).",
                param="model",
                code="model_not_found",
            )
        problem = catalogue.unavailable(base.path)
        if problem is not None:
            raise APIError(
                400, f"The model `{body.model}` cannot be loaded: {problem}", param="model", code="model_not_found"
            )
        if body.suffix is not None and (":" in body.suffix or not body.suffix.isprintable()):
            message = "Invalid value for 'suffix': it may not contain ':' or control characters."
            raise APIError(400, message, param="suffix")
        self._check_metadata(body.metadata)
        if body.integrations:
            raise APIError(400, "Integrations are not supported by this server.", param="integrations")
        training = self._file(body.training_file, "training_file")
        validation = self._file(body.validation_file, "validation_file") if body.validation_file else None

        job_id = f"ftjob-{secrets.token_hex(12)}"
        hyper_json = hyper.to_json()
        obj = job_object(
            job_id,
            body.model,
            training_file=body.training_file,
            validation_file=body.validation_file,
            hyperparameters=hyper,
            grader=grader,
            seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
            suffix=body.suffix,
            metadata=body.metadata,
            status="queued",
        )
        spec = {
            "base": base.base,
            "model_path": base.path,
            "training_path": str(self.files.path(training["id"])),
            # Bedrock's form has no validation file: validate on the training file then.
            "validation_path": str(self.files.path((validation or training)["id"])),
            "grader": grader,
            "hyperparameters": hyper_json,
            "options": dict(self.config.options),
            "fine_tuned_model": fine_tuned_model_name(base.base, body.suffix, job_id),
        }
        bad = next(
            (
                (param, f)
                for param, f in (("training_file", training), ("validation_file", validation))
                if f and f["status"] == "error"
            ),
            None,
        )
        if bad is not None:
            obj = self._failed_on_file(obj, *bad)
        self.store.add_job(JobRow(job_id, obj, spec))
        if obj["status"] == "queued" and self.on_queued is not None:
            self.on_queued()
        return obj

    @staticmethod
    def _check_metadata(metadata: dict[str, str] | None) -> None:
        if metadata is None:
            return
        if len(metadata) > 16:
            raise APIError(400, "Invalid 'metadata': at most 16 key-value pairs.", param="metadata")
        for key, value in metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise APIError(
                    400, "Invalid 'metadata': keys are at most 64 characters, values 512.", param=f"metadata.{key}"
                )

    def _failed_on_file(self, obj: dict[str, Any], param: str, file: dict[str, Any]) -> dict[str, Any]:
        what = param.replace("_", " ")
        message = f"Invalid {what} {file['id']}: {file['status_details']}"
        log = self._events(obj["id"])
        log.emit(f"Created fine-tuning job: {obj['id']}")
        log.emit("Validating training file and validation file")
        log.emit(f"Fine-tuning job failed: {message}", level="error")
        return {
            **obj,
            "status": "failed",
            "error": {"code": f"invalid_{param}", "message": message, "param": param},
            "finished_at": int(time.time()),
        }

    def _events(self, job_id: str) -> EventLog:
        run = self.models.run_dir(job_id)
        run.mkdir(parents=True, exist_ok=True)
        return EventLog(run / "events.jsonl")

    # --- read ---------------------------------------------------------------------------------------------

    def row(self, job_id: str) -> JobRow:
        """The job's row; 404 when there is none."""
        row = self.store.get_job(job_id)
        if row is None:
            raise APIError(
                404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id", code="fine_tune_not_found"
            )
        return row

    def get(self, job_id: str) -> dict[str, Any]:
        """The job object."""
        return self.row(job_id).object

    def has(self, job_id: str) -> bool:
        """Whether there is a job `job_id`."""
        return self.store.get_job(job_id) is not None

    def run_dir(self, job_id: str) -> Path:
        """The job's run folder (events, eval runs, checkpoints); 404 when there is no such job."""
        self.row(job_id)
        return self.models.run_dir(job_id)

    def list(self, limit: int, after: str | None, metadata: dict[str, str]) -> dict[str, Any]:
        """A page of jobs, newest first."""
        if after is not None:
            self.row(after)
        data, more = self.store.list_jobs(limit=limit, after=after, metadata=metadata)
        return {"object": "list", "data": data, "has_more": more}

    def events(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the job's events, newest first, read from its run's events file."""
        self.row(job_id)
        path = self.models.run_dir(job_id) / "events.jsonl"
        events = read_events(path)[::-1] if path.exists() else []
        return page(events, limit, after)

    def checkpoints(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the job's kept checkpoints, newest step first."""
        row = self.row(job_id)
        return page(checkpoint_objects(job_id, row.model_name, self.models.run_dir(job_id)), limit, after)

    # --- control ------------------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job that has not finished (a running one stops at the end of its step)."""
        before = self.row(job_id)
        try:
            row = self.store.modify_job(job_id, transitions.cancel)
        except transitions.NotAllowed as e:
            raise APIError(
                400, f"Job {job_id} has already {e.status}; it cannot be cancelled.", code="job_not_cancellable"
            ) from None
        assert row is not None
        if before.status != "cancelled" and row.worker is None:  # no worker will write this event
            self._events(job_id).emit("Fine-tuning job cancelled")
        return row.object

    def pause(self, job_id: str) -> dict[str, Any]:
        """Pause a job: a queued one at once, a running one at the end of its step (after a snapshot)."""
        self.row(job_id)
        try:
            row = self.store.modify_job(job_id, transitions.pause)
        except transitions.NotAllowed as e:
            raise APIError(
                400, f"Job {job_id} has already {e.status}; it cannot be paused.", code="job_not_pausable"
            ) from None
        assert row is not None
        return row.object

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a paused job again; the worker continues it from its snapshot."""
        self.row(job_id)
        try:
            row = self.store.modify_job(job_id, transitions.resume)
        except transitions.NotAllowed as e:
            message = f"Job {job_id} is {e.status}, not paused; only a paused job can be resumed."
            raise APIError(400, message, code="job_not_resumable") from None
        assert row is not None
        if self.on_queued is not None:
            self.on_queued()
        return row.object
