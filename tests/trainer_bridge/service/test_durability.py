"""Ctrl-C, then kill -9, of `gradekit serve` and its worker in the middle of a job: after each restart on the same
data folder the job goes on from its last snapshot and succeeds, with every event exactly once and the metrics of
an unbroken run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from openai import OpenAI

from gradekit.trainer_bridge.loop.events import read_events
from gradekit.trainer_bridge.service.store import Store

from ...http import gradekit_serve
from ..rft_task import FAST, WALL_CLOCK, write_task
from .helpers import ARN, GRADER_FILE, client, rft_method, upload, wait_for, wait_until

HYPER = {"n_epochs": 3, "batch_size": 2, "eval_interval": 4}  # 16 rows: 24 steps, validation every 4


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for a reaper that may never come counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def serve_with(config: Path, log: Path) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    """`gradekit serve` with the config file `config` in its own process: (base URL, process)."""
    env = {**os.environ, "GRADEKIT_FINETUNE_CONFIG": str(config)}
    return gradekit_serve(["--log-level", "warning"], log=log, env=env)


def _metrics(sdk: OpenAI, job_id: str) -> list[dict[str, Any]]:
    events = sdk.fine_tuning.jobs.list_events(job_id, limit=1000).data[::-1]
    return [{k: v for k, v in e.data.items() if k not in WALL_CLOCK} for e in events if e.type == "metrics"]  # type: ignore[union-attr]


def _wait_for_event(sdk: OpenAI, job_id: str, message: str) -> None:
    wait_until(lambda: any(e.message == message for e in sdk.fine_tuning.jobs.list_events(job_id, limit=1000)), 60)


def test_a_stopped_or_killed_server_resumes_its_job_on_restart(tmp_path: Path) -> None:
    train, _ = write_task(tmp_path / "task")
    data = tmp_path / "data"
    config = tmp_path / "service.json"
    settings = {
        "data_dir": "data",  # relative to the config file
        "base_models": {"tiny-local": "tiny-local"},
        "lambda_graders": {ARN: str(GRADER_FILE)},
        "options": FAST,
        "poll_interval": 0.05,
        "shutdown_grace": 5,
    }
    config.write_text(json.dumps(settings))
    log = tmp_path / "server.log"
    request = {"model": "tiny-local", "seed": 3, "extra_body": {"method": rft_method(**HYPER)}}

    # 1. Ctrl-C: the worker pauses the job at the end of its step and puts it back in the queue.
    with serve_with(config, log) as (url, server), client(url) as sdk:
        file_id = upload(sdk, train)
        job = sdk.fine_tuning.jobs.create(training_file=file_id, **request)
        _wait_for_event(sdk, job.id, "Checkpoint created at step 4")
        server.send_signal(signal.SIGINT)
        server.wait(15)
    assert Store(data / "service.db").get_job(job.id).status == "queued"  # type: ignore[union-attr]
    assert json.loads((data / "jobs" / job.id / "job.json").read_text())["status"] == "paused"
    paused_at = int(read_events(data / "jobs" / job.id / "events.jsonl")[-1]["message"].rsplit(" ", 1)[1])
    assert 4 <= paused_at < 16
    kill_after = (paused_at // 4 + 2) * 4  # the second validation step after the pause: a snapshot is in between

    # 2. It goes on after a restart; then kill -9 of the server and its worker mid-job.
    with serve_with(config, log) as (url, server), client(url) as sdk:
        _wait_for_event(sdk, job.id, f"Checkpoint created at step {kill_after}")
        worker = int((data / "worker.lock").read_text())  # the worker writes its pid there
        os.kill(server.pid, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        server.wait(10)
        wait_until(lambda: not _alive(worker), timeout=10)
    assert json.loads((data / "jobs" / job.id / "job.json").read_text())["status"] == "running"

    # 3. After the next restart it resumes from its last snapshot and succeeds.
    with serve_with(config, log) as (url, _), client(url) as sdk:
        done = wait_for(sdk, job.id, timeout=90)
        assert done.status == "succeeded", done.error
        events = sdk.fine_tuning.jobs.list_events(job.id, limit=1000).data[::-1]
        assert len({e.id for e in events}) == len(events)
        messages = [e.message for e in events]
        assert messages.count(f"Created fine-tuning job: {job.id}") == 1
        paused = [int(m.rsplit(" ", 1)[1]) for m in messages if m.startswith("Fine-tuning job paused at step ")]
        resumed = [int(m.rsplit(" ", 1)[1]) for m in messages if m.startswith("Fine-tuning job resumed from step ")]
        assert paused == [paused_at] and resumed[0] == paused_at and len(resumed) == 2
        # The kill may come between that checkpoint's event and the snapshot after it: then the run goes on from
        # the validation step before, and the events written after that snapshot are dropped, then redone.
        assert resumed[1] in (kill_after - 4, kill_after)
        assert [m["step"] for m in _metrics(sdk, job.id)] == list(range(25))
        assert sdk.files.retrieve(file_id).status == "processed"

        # The same job, never interrupted, on the restarted server: exactly the same metrics and checkpoints.
        twin = sdk.fine_tuning.jobs.create(training_file=file_id, **request)
        assert wait_for(sdk, twin.id, timeout=90).status == "succeeded"
        assert _metrics(sdk, job.id) == _metrics(sdk, twin.id)
        steps = [c.step_number for c in sdk.fine_tuning.jobs.checkpoints.list(job.id)]
        assert steps == [c.step_number for c in sdk.fine_tuning.jobs.checkpoints.list(twin.id)]
        assert len(steps) == 3

    assert not _alive(int((data / "worker.lock").read_text()))  # the worker stopped with the server
    assert "Traceback" not in log.read_text()
