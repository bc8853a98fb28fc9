"""Every change of a fine-tuning job's status, as pure functions of its `JobRow` (testable without training).

Each function takes the stored row and returns the row to store, None to leave it as it is, or raises
`NotAllowed` (the API answers 400). `Store.modify_job` applies them atomically. The whole table:

| change | from | to | control, worker afterwards |
|---|---|---|---|
| `cancel` | not final | cancelled | worker kept (it stops at the end of its step) |
| `pause` | queued, no worker | paused | none |
| `pause` | held by a worker | unchanged | control `pause`, worker kept |
| `resume` | paused | queued | none |
| `sync` | queued, running | running once the run says so, live fields copied | unchanged |
| `release` | running | queued | worker none |
| `release_interrupted` | running, validating_files | queued | worker none |
| `finish` | paused run | paused (asked by the user, or not stopping), else queued | none |
| `finish` | any other run | the run's final status (a non-final one is failed) | none |
| `fail` | not final | failed | none |
| `worker_died` | not final | failed at the limit of deaths, else paused (pause pending) or queued | none |

A final status (succeeded, failed, cancelled) never changes again; changes that find one only drop the control
request and the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .store import FINAL_STATUSES, JobRow

__all__ = [
    "NotAllowed",
    "cancel",
    "fail",
    "finish",
    "pause",
    "release",
    "release_interrupted",
    "resume",
    "sync",
    "worker_died",
]


class NotAllowed(Exception):
    """The change is not allowed from the job's status (kept in `status`)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _settled(row: JobRow, **fields: Any) -> JobRow:
    """The row with `fields` set in its object, no control request and no worker."""
    return replace(row, object={**row.object, **fields}, control=None, worker=None)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None}


def cancel(row: JobRow) -> JobRow | None:
    """Cancel a job that has not finished; a running one stops at the end of its step."""
    if row.status == "cancelled":
        return None
    if row.status in FINAL_STATUSES:
        raise NotAllowed(row.status)
    fields = {"status": "cancelled", "finished_at": int(time.time()), "estimated_finish": None}
    return replace(_settled(row, **fields), worker=row.worker)


def pause(row: JobRow) -> JobRow | None:
    """Pause a job: one no worker holds at once, a held one through a control request the worker reads."""
    if row.status == "paused" or row.control == "pause":
        return None
    if row.status in FINAL_STATUSES:
        raise NotAllowed(row.status)
    if row.worker is None:
        return _settled(row, status="paused")
    return replace(row, control="pause")


def resume(row: JobRow) -> JobRow:
    """Queue a paused job again."""
    if row.status != "paused":
        raise NotAllowed(row.status)
    return _settled(row, status="queued")


def sync(row: JobRow, fields: dict[str, Any]) -> JobRow | None:
    """Copy a run's live fields to a job that is neither finished nor paused."""
    if row.status in FINAL_STATUSES or row.status == "paused":
        return None
    return row.with_object(**fields)


def release(row: JobRow) -> JobRow:
    """A worker lets go of a job it did not finish: a running one goes back to the queue."""
    status = "queued" if row.status == "running" else row.status
    return replace(row, object={**row.object, "status": status}, worker=None)


def release_interrupted(row: JobRow) -> JobRow:
    """A job whose worker was killed goes back to the queue (a new worker resumes it from its snapshot)."""
    status = "queued" if row.status in ("running", "validating_files") else row.status
    return replace(row, object={**row.object, "status": status, "estimated_finish": None}, worker=None)


def finish(row: JobRow, record: dict[str, Any], *, stopping: bool) -> JobRow:
    """Write a run's outcome (`record`, its job.json); `stopping`: the worker is shutting down."""
    status = record["status"]
    if row.status in FINAL_STATUSES:  # cancelled in the API meanwhile: that stands
        return _settled(row)
    if status == "paused":
        user_asked = row.control == "pause"
        return _settled(row, status="queued" if stopping and not user_asked else "paused", estimated_finish=None)
    fields: dict[str, Any] = {
        "status": status,
        "trained_tokens": record.get("trained_tokens"),
        "error": record.get("error"),
        "finished_at": record.get("finished_at") or int(time.time()),
        "estimated_finish": None,
    }
    if status == "succeeded":
        fields["fine_tuned_model"] = row.model_name
    elif status not in FINAL_STATUSES:
        fields.update(status="failed", error=_error("training_error", f"run ended {status}"))
    return _settled(row, **fields)


def fail(row: JobRow, code: str, message: str) -> JobRow:
    """Fail a job that has not finished with the error `code`."""
    if row.status in FINAL_STATUSES:
        return _settled(row)
    fields = {"status": "failed", "error": _error(code, message), "finished_at": int(time.time())}
    return _settled(row, **fields, estimated_finish=None)


def worker_died(row: JobRow, *, limit: int, code: str, message: Callable[[int], str]) -> JobRow:
    """After a worker died holding the job (`row.deaths` counts it): failed with `message(deaths)` at `limit`."""
    if row.status in FINAL_STATUSES:
        return _settled(row)
    if row.deaths >= limit:
        error = _error(code, message(row.deaths))
        return _settled(row, status="failed", error=error, finished_at=int(time.time()), estimated_finish=None)
    return _settled(row, status="paused" if row.control == "pause" else "queued", estimated_finish=None)
