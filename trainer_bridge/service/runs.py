"""Run folders written by `gradekit train` / `RFTJob`, served read-only through the fine-tuning jobs API.

`gradekit serve --runs DIR` (or `$GRADEKIT_RUNS`) names a run folder (it holds `job.json`) or a folder of run
folders. Their jobs are listed, retrieved, and their events and checkpoints paged exactly as the service's own
jobs are, so the dashboard and the `openai` SDK read them the same way; pause, resume and cancel answer 400
(the run belongs to the process that writes it). With the service running too, both sets of jobs are listed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from gradekit.runtime.cli import RUNS_ENV
from gradekit.runtime.server import APIError

from ..loop.atomic_files import read_json
from ..loop.events import read_events
from ..loop.job import base_model_name, fine_tuned_model_name
from .jobs import Jobs, checkpoint_objects, page

__all__ = ["RUNS_ENV", "Combined", "JobSource", "RunFolders", "runs_dir_from_env"]

_LIST_ALL = 1_000_000


def runs_dir_from_env() -> Path | None:
    """The folder `$GRADEKIT_RUNS` names, or None."""
    value = os.environ.get(RUNS_ENV)
    return Path(value) if value else None


def _not_found(job_id: str) -> APIError:
    return APIError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id", code="fine_tune_not_found")


class JobSource(Protocol):
    """What the jobs routes and the dashboard's routes read: the service's `Jobs`, `RunFolders`, or both."""

    def list(self, limit: int, after: str | None, metadata: dict[str, str]) -> dict[str, Any]: ...
    def get(self, job_id: str) -> dict[str, Any]: ...
    def events(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]: ...
    def checkpoints(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def pause(self, job_id: str) -> dict[str, Any]: ...
    def resume(self, job_id: str) -> dict[str, Any]: ...
    def run_dir(self, job_id: str) -> Path: ...


class RunFolders:
    """The run folders under `root` (or `root` itself), read on every call: runs that appear or change show."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folders(self) -> dict[str, Path]:
        """Job id -> run folder, for every folder holding a readable `job.json`."""
        candidates = [self.root] if (self.root / "job.json").is_file() else sorted(self.root.glob("*/"))
        found = {}
        for folder in candidates:
            try:
                record = read_json(folder / "job.json")
            except (OSError, ValueError):  # not a run folder, or job.json being replaced right now
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                found[record["id"]] = folder
        return found

    def run_dir(self, job_id: str) -> Path:
        """The run folder of `job_id`; 404 when there is none."""
        folder = self.folders().get(job_id)
        if folder is None:
            raise _not_found(job_id)
        return folder

    def _record(self, job_id: str) -> dict[str, Any]:
        return dict(read_json(self.run_dir(job_id) / "job.json"))

    def get(self, job_id: str) -> dict[str, Any]:
        """The job object (job.json without gradekit's own `gradekit` section)."""
        record = self._record(job_id)
        record.pop("gradekit", None)
        return record

    def list(self, limit: int, after: str | None, metadata: dict[str, str]) -> dict[str, Any]:
        """A page of the runs' jobs, newest first; `metadata` filters as the service's list does."""
        jobs = [self.get(job_id) for job_id in self.folders()]
        jobs = [j for j in jobs if all((j.get("metadata") or {}).get(k) == v for k, v in metadata.items())]
        jobs.sort(key=lambda j: (j.get("created_at") or 0, j["id"]), reverse=True)
        return page(jobs, limit, after)

    def events(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the run's events, newest first."""
        path = self.run_dir(job_id) / "events.jsonl"
        return page(read_events(path)[::-1] if path.exists() else [], limit, after)

    def checkpoints(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the run's kept checkpoints, newest step first."""
        record = self._record(job_id)
        base = (record.get("gradekit") or {}).get("model_name") or base_model_name(record["model"])
        model = fine_tuned_model_name(base, record.get("suffix"), job_id)
        return page(checkpoint_objects(job_id, model, self.run_dir(job_id)), limit, after)

    def _read_only(self, job_id: str) -> dict[str, Any]:
        self.run_dir(job_id)
        raise APIError(
            400,
            f"Job {job_id} is a run folder opened with --runs ({self.root}): it is read-only here; "
            "pause, resume or cancel it in the process that runs it.",
            code="job_read_only",
        )

    cancel = pause = resume = _read_only


class Combined:
    """The service's jobs, then the run folders' jobs (each id is looked up in the service first)."""

    def __init__(self, service: Jobs, runs: RunFolders) -> None:
        self.service = service
        self.runs = runs

    def _source(self, job_id: str) -> Jobs | RunFolders:
        return self.service if self.service.has(job_id) else self.runs

    def list(self, limit: int, after: str | None, metadata: dict[str, str]) -> dict[str, Any]:
        """Every job of both, the service's first (newest first in each)."""
        jobs = self.service.list(_LIST_ALL, None, metadata)["data"] + self.runs.list(_LIST_ALL, None, metadata)["data"]
        return page(jobs, limit, after)

    def get(self, job_id: str) -> dict[str, Any]:
        """The job object."""
        return self._source(job_id).get(job_id)

    def events(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the job's events."""
        return self._source(job_id).events(job_id, limit, after)

    def checkpoints(self, job_id: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the job's checkpoints."""
        return self._source(job_id).checkpoints(job_id, limit, after)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a service job (a run folder's: 400)."""
        return self._source(job_id).cancel(job_id)

    def pause(self, job_id: str) -> dict[str, Any]:
        """Pause a service job (a run folder's: 400)."""
        return self._source(job_id).pause(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        """Resume a service job (a run folder's: 400)."""
        return self._source(job_id).resume(job_id)

    def run_dir(self, job_id: str) -> Path:
        """The job's run folder."""
        return self._source(job_id).run_dir(job_id)
