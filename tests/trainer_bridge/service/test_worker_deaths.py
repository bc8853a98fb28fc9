"""A dead training worker: the server notices, counts the death against the jobs it held (in SQLite, so restarts
keep the count), starts a new worker, and fails a job that has killed `max_worker_deaths` workers, so the queue
moves on.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from openai import OpenAI

from gradekit.trainer_bridge.loop.events import read_events
from gradekit.trainer_bridge.service.store import JobRow, Store
from gradekit.trainer_bridge.service.worker import WORKER_DIED, describe_exit, record_worker_death

from ..rft_task import write_task
from .helpers import ARN, client, make_config, rft_method, serving, upload, wait_for, wait_until
from .hostile import KILLS_VAR

ROOT = Path(__file__).resolve().parents[3]
HOSTILE_ARN = "arn:aws:lambda:us-west-2:123456789012:function:kills-its-worker"
HOSTILE = "tests.trainer_bridge.service.hostile:kill_the_worker"


def _job(
    job_id: str, status: str = "running", *, control: str | None = None, worker: str | None = "worker-1"
) -> JobRow:
    obj = {"id": job_id, "status": status, "error": None, "finished_at": None, "estimated_finish": 1}
    return JobRow(job_id, obj, {"fine_tuned_model": f"ft:tiny-local:gradekit:{job_id}"}, control, worker)


def test_a_worker_death_counts_against_the_jobs_it_held(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", start_worker=False, max_worker_deaths=2)
    store = Store(config.db_path)
    store.add_job(_job("ftjob-a"))
    store.add_job(_job("ftjob-b", control="pause"))
    store.add_job(_job("ftjob-c", "cancelled"))
    store.add_job(_job("ftjob-d", worker="worker-2"))  # another worker's: untouched
    store.add_job(_job("ftjob-e", "queued", worker=None))
    run = config.jobs_dir / "ftjob-a"
    run.mkdir(parents=True)
    (run / "job.json").write_text(json.dumps({"id": "ftjob-a", "status": "running", "error": None}))

    changed = record_worker_death(config, store, "worker-1", "killed by signal SIGKILL")
    assert {r.id: (r.status, r.deaths) for r in changed} == {
        "ftjob-a": ("queued", 1),
        "ftjob-b": ("paused", 1),  # its pause was pending: it waits for a resume
        "ftjob-c": ("cancelled", 1),
    }
    rows = {r.id: r for r in store.jobs()}
    assert [(r.worker, r.control) for r in changed] == [(None, None)] * 3
    assert rows["ftjob-a"].object["estimated_finish"] is None
    assert (rows["ftjob-d"].worker, rows["ftjob-d"].deaths, rows["ftjob-e"].deaths) == ("worker-2", 0, 0)
    cancelled = read_events(config.jobs_dir / "ftjob-c" / "events.jsonl")
    assert [e["message"] for e in cancelled] == ["Fine-tuning job cancelled"]  # the dead run never said it

    # The job that killed a worker waits to run alone: a claim for a busy worker skips the queue's head.
    assert store.claim_next("worker-3", only_clean=True) is None
    claimed = store.claim_next("worker-3")
    assert claimed is not None and (claimed.id, claimed.deaths) == ("ftjob-a", 1)

    # The count lives in the database: a new Store (a restarted server) sees it, and the next death fails the job.
    (failed,) = record_worker_death(config, Store(config.db_path), "worker-3", "exited with status 1")
    assert (failed.status, failed.deaths) == ("failed", 2)
    error = failed.object["error"]
    assert (error["code"], error["param"]) == (WORKER_DIED, None)
    assert "died 2 times while running this job (the last time exited with status 1)" in error["message"]
    assert failed.object["finished_at"] is not None
    assert Store(config.db_path).get_job("ftjob-a") == failed
    last = read_events(run / "events.jsonl")[-1]
    assert (last["level"], last["message"]) == ("error", f"Fine-tuning job failed: {error['message']}")
    assert json.loads((run / "job.json").read_text())["status"] == "failed"  # the run folder agrees
    assert store.claim_next("worker-3", only_clean=True).id == "ftjob-e"  # type: ignore[union-attr]


def test_a_database_from_before_the_death_count_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, "
            "model_name TEXT NOT NULL, object TEXT NOT NULL, spec TEXT NOT NULL, control TEXT, worker TEXT)"
        )
        row = _job("ftjob-old")
        db.execute(
            "INSERT INTO jobs (id, status, model_name, object, spec, worker) VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, row.status, row.model_name, json.dumps(row.object), json.dumps(row.spec), row.worker),
        )
    store = Store(path)
    assert store.get_job("ftjob-old").deaths == 0  # type: ignore[union-attr]
    assert store.count_death("ftjob-old", lambda r: r.with_object(status="queued")).deaths == 1  # type: ignore[union-attr]
    assert Store(path).get_job("ftjob-old").deaths == 1  # type: ignore[union-attr]


def test_exits_are_described() -> None:
    assert describe_exit(-9) == "killed by signal SIGKILL"
    assert describe_exit(3) == "exited with status 3"


def _create(sdk: OpenAI, file_id: str, arn: str) -> str:
    method = rft_method({"type": "lambda", "lambda": {"function": arn}}, n_epochs=1, batch_size=2, eval_interval=2)
    return sdk.fine_tuning.jobs.create(
        model="openai.gpt-oss-20b", training_file=file_id, extra_body={"method": method}
    ).id


def _kills(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_job_that_kills_its_worker_fails_after_three_deaths_and_the_next_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kills = tmp_path / "kills.txt"
    monkeypatch.setenv(KILLS_VAR, str(kills))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    train, _ = write_task(tmp_path / "task", n_train=4, n_valid=2)
    config = make_config(tmp_path / "data")
    config = config.model_copy(update={"lambda_graders": {**config.lambda_graders, HOSTILE_ARN: HOSTILE}})
    assert config.max_worker_deaths == 3
    store = Store(config.db_path)

    # 1. The worker dies; the server counts it, and the job, queued again, keeps its place before the next one.
    with serving(config) as (url, app), client(url) as sdk:
        file_id = upload(sdk, train)
        hostile = _create(sdk, file_id, HOSTILE_ARN)
        good = _create(sdk, file_id, ARN)
        wait_until(lambda: store.get_job(hostile).deaths >= 1, timeout=120)  # type: ignore[union-attr]
        assert sdk.fine_tuning.jobs.retrieve(hostile).status in ("queued", "running")
        assert sdk.fine_tuning.jobs.retrieve(good).status == "queued"
        assert app.state.fine_tuning.worker.deaths >= 1
    counted = store.get_job(hostile).deaths  # type: ignore[union-attr]
    before = len(_kills(kills))

    # 2. After a restart the count goes on: the job fails at its third death, then the queued job trains.
    with serving(config) as (url, app), client(url) as sdk:
        failed = wait_for(sdk, hostile, timeout=240)
        assert failed.status == "failed" and failed.error is not None
        assert (failed.error.code, failed.error.param) == (WORKER_DIED, None)
        assert failed.error.message.startswith(
            "The training worker process died 3 times while running this job (the last time killed by signal SIGKILL)"
        )
        events = sdk.fine_tuning.jobs.list_events(hostile, limit=100).data
        assert (events[0].level, events[0].message) == ("error", f"Fine-tuning job failed: {failed.error.message}")

        done = wait_for(sdk, good, timeout=240)
        assert done.status == "succeeded", done.error
        run = json.loads((config.jobs_dir / good / "job.json").read_text())
        assert run["fine_tuned_model"] == done.fine_tuned_model  # one name, in the run folder and the API
        assert app.state.fine_tuning.worker.pid is not None  # the last worker lives on

    assert store.get_job(hostile).deaths == 3  # type: ignore[union-attr]
    assert len(_kills(kills)) - before == 3 - counted  # not reset by the restart
    assert len(set(_kills(kills))) == len(_kills(kills))  # each attempt in a new worker process
