"""The fine-tuning service's job status transitions, checked as a table without training or a database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gradekit.trainer_bridge.service import transitions
from gradekit.trainer_bridge.service.store import JobRow

STATUSES = ["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]
FINAL = {"succeeded", "failed", "cancelled"}


def job(status: str, control: str | None = None, worker: str | None = None, deaths: int = 0) -> JobRow:
    """A job row in `status`, with a live field that every change must keep."""
    obj = {"id": "ftjob-1", "status": status, "estimated_finish": 123, "seed": 7}
    return JobRow("ftjob-1", obj, {"fine_tuned_model": "ft:base:x"}, control, worker, deaths)


def shape(row: JobRow | None) -> tuple[Any, ...] | None:
    """What a transition decides: status, control and worker (None: the row is left as it is)."""
    return None if row is None else (row.status, row.control, row.worker)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("worker", [None, "w1"])
def test_cancel(status: str, worker: str | None) -> None:
    row = job(status, control="pause", worker=worker)
    if status in FINAL - {"cancelled"}:
        with pytest.raises(transitions.NotAllowed) as refused:
            transitions.cancel(row)
        assert refused.value.status == status
        return
    new = transitions.cancel(row)
    if status == "cancelled":
        assert new is None
        return
    assert new is not None
    assert shape(new) == ("cancelled", None, worker)  # the worker stops the run at the end of its step
    assert new.object["estimated_finish"] is None and new.object["finished_at"] > 0
    assert new.object["seed"] == 7


@pytest.mark.parametrize(
    ("status", "control", "worker", "expected"),
    [
        ("queued", None, None, ("paused", None, None)),
        ("running", None, "w1", ("running", "pause", "w1")),
        ("queued", None, "w1", ("queued", "pause", "w1")),
        ("paused", None, None, None),
        ("running", "pause", "w1", None),
    ],
)
def test_pause(status: str, control: str | None, worker: str | None, expected: tuple[Any, ...] | None) -> None:
    assert shape(transitions.pause(job(status, control, worker))) == expected


@pytest.mark.parametrize("status", sorted(FINAL))
def test_a_finished_job_cannot_be_paused(status: str) -> None:
    with pytest.raises(transitions.NotAllowed):
        transitions.pause(job(status))


@pytest.mark.parametrize("status", STATUSES)
def test_only_a_paused_job_resumes(status: str) -> None:
    row = job(status, control="pause", worker="w1")
    if status != "paused":
        with pytest.raises(transitions.NotAllowed):
            transitions.resume(row)
        return
    assert shape(transitions.resume(row)) == ("queued", None, None)


@pytest.mark.parametrize("status", STATUSES)
def test_sync_copies_live_fields_while_the_job_is_live(status: str) -> None:
    new = transitions.sync(job(status, worker="w1"), {"status": "running", "trained_tokens": 40})
    if status in FINAL or status == "paused":
        assert new is None
    else:
        assert new is not None
        assert (shape(new), new.object["trained_tokens"]) == (("running", None, "w1"), 40)


@pytest.mark.parametrize("status", STATUSES)
def test_release_and_release_interrupted(status: str) -> None:
    row = job(status, control="pause", worker="w1")
    released = transitions.release(row)
    assert shape(released) == ("queued" if status == "running" else status, "pause", None)
    assert released.object["estimated_finish"] == 123
    interrupted = transitions.release_interrupted(row)
    requeued = status in ("running", "validating_files")
    assert shape(interrupted) == ("queued" if requeued else status, "pause", None)
    assert interrupted.object["estimated_finish"] is None


@pytest.mark.parametrize(
    ("control", "stopping", "expected"),
    [(None, False, "paused"), ("pause", False, "paused"), ("pause", True, "paused"), (None, True, "queued")],
)
def test_a_paused_run_is_paused_unless_the_worker_stopped_it(
    control: str | None, stopping: bool, expected: str
) -> None:
    new = transitions.finish(job("running", control, "w1"), {"status": "paused"}, stopping=stopping)
    assert shape(new) == (expected, None, None)


def test_a_finished_run_writes_its_outcome() -> None:
    record = {"status": "succeeded", "trained_tokens": 99, "error": None, "finished_at": 1000}
    new = transitions.finish(job("running", worker="w1"), record, stopping=False)
    assert shape(new) == ("succeeded", None, None)
    expected = {"trained_tokens": 99, "error": None, "finished_at": 1000, "fine_tuned_model": "ft:base:x"}
    assert {k: new.object[k] for k in expected} == expected
    failed = transitions.finish(job("running", worker="w1"), {"status": "running"}, stopping=False)
    assert shape(failed) == ("failed", None, None)
    assert failed.object["error"] == {"code": "training_error", "message": "run ended running", "param": None}
    assert "fine_tuned_model" not in failed.object


@pytest.mark.parametrize("status", sorted(FINAL))
def test_a_final_status_stands(status: str) -> None:
    row = job(status, control="pause", worker="w1")
    outcomes = [
        transitions.finish(row, {"status": "succeeded"}, stopping=False),
        transitions.fail(row, "training_error", "boom"),
        transitions.worker_died(replace(row, deaths=9), limit=3, code="worker_died", message=str),
    ]
    for new in outcomes:
        assert shape(new) == (status, None, None)
        assert new.object == row.object


def test_fail() -> None:
    new = transitions.fail(job("running", "pause", "w1"), "training_error", "boom")
    assert shape(new) == ("failed", None, None)
    assert new.object["error"] == {"code": "training_error", "message": "boom", "param": None}
    assert new.object["estimated_finish"] is None


@pytest.mark.parametrize(
    ("deaths", "control", "expected"),
    [(1, None, "queued"), (2, "pause", "paused"), (3, None, "failed"), (4, "pause", "failed")],
)
def test_worker_died(deaths: int, control: str | None, expected: str) -> None:
    row = job("running", control, "w1", deaths=deaths)
    new = transitions.worker_died(row, limit=3, code="worker_died", message=lambda n: f"died {n} times")
    assert shape(new) == (expected, None, None)
    assert new.object["estimated_finish"] is None
    if expected == "failed":
        assert new.object["error"] == {"code": "worker_died", "message": f"died {deaths} times", "param": None}
    else:
        assert "error" not in new.object
