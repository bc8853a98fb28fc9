"""The training worker: a separate process that claims queued jobs from the database and trains them with `RFTJob`.

`WorkerProcess` starts it when the service first has a queued job and stops it with the app; it runs
`python -m gradekit.trainer_bridge.service.worker` in its own session, with the config in the environment and
its output in `<data_dir>/worker.log`.

One worker serves a data folder (it holds `<data_dir>/worker.lock`, so a worker left over from a killed
server must exit before the next one starts) and trains up to `max_concurrent_jobs` jobs, each in a thread.
Every `poll_interval` it: exits at once if its parent server died (the jobs resume on the next start); hands
cancel and pause requests to the running `RFTJob`s (honoured at the end of the step); copies their live fields
(`running`, `trained_tokens`, `estimated_finish`) to the database; and claims the next queued job.

A job whose run folder already exists (the server was killed, or it was paused) goes on from its last
snapshot with `RFTJob.resume`: events, eval runs and checkpoints written after the snapshot are dropped and
redone (a run killed before its first snapshot starts over, keeping only its creation event). On SIGTERM the
worker pauses its jobs (a snapshot at the end of the step) and puts them back in the queue, so the next start
continues them.

The server supervises its worker: when the worker dies on its own (a signal, `os._exit`, a crash in native
code, a grader that kills it), `record_worker_death` counts the death against each job it held, in the
database, and puts them back in the queue, and a new worker starts (after 0.5 s, doubling up to 30 s while
workers keep dying within a minute). A job counted `max_worker_deaths` times (3) fails with the error code
`worker_died` instead of being resumed again, so the queue moves on. A job that has killed a worker runs
alone after that, so that a further death is surely its own. Jobs a worker held when the server itself died
are resumed without counting a death (the server's death is not theirs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal

from gradekit.graders import Env

from . import transitions
from .config import ServiceConfig
from .grading import resolve_grader
from .store import FINAL_STATUSES, JobRow, Store

if TYPE_CHECKING:
    from ..loop.job import RFTJob

__all__ = ["CONFIG_VAR", "WORKER_DIED", "Worker", "WorkerProcess", "describe_exit", "main", "record_worker_death"]

logger = logging.getLogger(__name__)

#: The environment variable that carries the config (JSON) to the worker process.
CONFIG_VAR = "GRADEKIT_FINETUNE_WORKER_CONFIG"
#: `error.code` of a job that failed because the worker process kept dying while running it.
WORKER_DIED = "worker_died"
_PARENT_DIED = 70
_FIRST_RESTART_DELAY, _MAX_RESTART_DELAY = 0.5, 30.0
_STABLE_SECONDS = 60.0  # a worker that lived this long resets the restart delay


@dataclass
class _Active:
    """A job this worker holds: its thread and, once built, its `RFTJob`."""

    row: JobRow
    thread: threading.Thread | None = None
    job: RFTJob | None = None
    stopping: bool = False  # paused because the worker stops, not because the user asked


class Worker:
    """Runs queued jobs of one data folder until SIGTERM (see the module docstring)."""

    def __init__(self, config: ServiceConfig, *, parent_pid: int | None = None) -> None:
        self.config = config
        self.store = Store(config.db_path)
        self.parent_pid = parent_pid
        self.name = f"worker-{os.getpid()}"
        self.active: dict[str, _Active] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.preloaded = threading.Event()

    # --- the loop -----------------------------------------------------------------------------------------

    def run(self) -> None:
        """Recover jobs a killed worker held, then claim and train jobs until `stop` is set."""
        self.recover()
        threading.Thread(target=_preload, args=(self.preloaded,), name="gradekit-preload", daemon=True).start()
        while not self.stop.is_set():
            self._check_parent()
            self._tick()
            self.stop.wait(self.config.poll_interval)
        self._shutdown()

    def _check_parent(self) -> None:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            print("gradekit worker: the server died; exiting (its jobs resume on the next start)", flush=True)
            os._exit(_PARENT_DIED)

    def recover(self) -> None:
        """Put back in the queue every unfinished job a previous worker held (it was killed)."""
        for row in self.store.jobs():
            if row.worker is None or row.status in FINAL_STATUSES:
                continue

            self.store.modify_job(row.id, transitions.release_interrupted)
            print(f"gradekit worker: {row.id} was interrupted ({row.status}); it will resume", flush=True)

    def _tick(self) -> None:
        with self.lock:
            active = list(self.active.values())
        for a in active:
            current = self.store.get_job(a.row.id)
            if current is None:
                continue
            if a.job is not None:
                if current.status == "cancelled":
                    a.job.cancel()
                elif current.control == "pause":
                    a.job.pause()
                self._sync(a)
        # Jobs are claimed once the training stack is imported, so a worker that cannot even start (a broken
        # environment) dies holding no job, and no job is blamed for it.
        while self.preloaded.is_set() and len(self.active) < self.config.max_concurrent_jobs and not self.stop.is_set():
            with self.lock:
                held = list(self.active.values())
            # A job that has killed a worker before runs alone, so that a further death is surely its own.
            if any(a.row.deaths for a in held):
                break
            row = self.store.claim_next(self.name, only_clean=bool(held))
            if row is None:
                break
            a = _Active(row)
            a.thread = threading.Thread(target=self._train, args=(a,), name=f"gradekit-{row.id}", daemon=True)
            with self.lock:
                self.active[row.id] = a
            a.thread.start()

    def _shutdown(self) -> None:
        with self.lock:
            active = list(self.active.values())
        for a in active:
            a.stopping = True
            if a.job is not None:
                a.job.pause()
        for a in active:
            if a.thread is not None:
                a.thread.join()

    # --- one job ------------------------------------------------------------------------------------------

    def _sync(self, a: _Active, *_: Any) -> None:
        """Copy the run's live fields to the job object (the database keeps `queued` until training starts)."""
        job = a.job
        if job is None:
            return
        record = dict(job.record)
        fields = {k: record.get(k) for k in ("trained_tokens", "estimated_finish")}
        if record.get("status") == "running":
            fields["status"] = "running"

        self.store.modify_job(a.row.id, lambda row: transitions.sync(row, fields))

    def _train(self, a: _Active) -> None:
        row = a.row
        # transformers' lazy imports are not safe to run from two threads at once: wait for the preload.
        self.preloaded.wait()
        try:
            job = self._build(a)
            if job is None:
                return
            a.job = job
            current = self.store.get_job(row.id)
            if current is not None and current.status == "cancelled":  # cancelled while the job was being built
                self._event(row.id, "Fine-tuning job cancelled")
            if self.stop.is_set() or current is None or current.status == "cancelled":
                self._release(row.id)
                return
            if current.control == "pause":
                job.pause()
            from ..loop.job import JobError

            try:
                record = job.run()
            except JobError:
                record = job.record
            self._finish(a, record)
        except Exception as e:
            traceback.print_exc()
            self._fail(row, "training_error", f"{type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.active.pop(row.id, None)

    def _build(self, a: _Active) -> RFTJob | None:
        """The `RFTJob` to run: a fresh one, or the interrupted run continued; None when there is nothing to do."""
        from ..loop.atomic_files import read_json
        from ..loop.job import RFTJob

        row, spec = a.row, a.row.spec
        run = self.config.jobs_dir / row.id
        grader, backend = resolve_grader(spec["grader"], self.config)
        listener = lambda event: self._sync(a)  # noqa: E731
        if (run / "job.json").is_file():
            record = read_json(run / "job.json")
            if record["status"] in FINAL_STATUSES:  # finished, but the worker died before it said so
                self._finish(a, record)
                return None
            # From its last snapshot, or from the start when it was killed before the first one.
            after = f" after {row.deaths} worker death(s)" if row.deaths else ""
            print(f"gradekit worker: {row.id}: resuming{after}", flush=True)
            return RFTJob.resume(
                run,
                grader=grader,
                backend=backend,
                env=job_env(row.id),
                progress=False,
                listener=listener,
                model_name=spec["base"],
            )
        print(f"gradekit worker: {row.id}: starting", flush=True)
        obj = row.object
        return RFTJob(
            spec["model_path"],
            grader,
            spec["training_path"],
            spec["validation_path"],
            spec["hyperparameters"],
            seed=obj["seed"],
            suffix=obj["suffix"],
            output_dir=run,
            options=spec["options"],
            backend=backend,
            env=job_env(row.id),
            progress=False,
            job_id=row.id,
            listener=listener,
            metadata=obj["metadata"],
            model_name=spec["base"],
        )

    def _finish(self, a: _Active, record: dict[str, Any]) -> None:
        """Write the run's outcome to the job object."""
        self.store.modify_job(a.row.id, lambda row: transitions.finish(row, record, stopping=a.stopping))
        print(f"gradekit worker: {a.row.id}: {record['status']}", flush=True)

    def _release(self, job_id: str) -> None:
        self.store.modify_job(job_id, transitions.release)

    def _event(self, job_id: str, message: str, *, level: Literal["info", "warn", "error"] = "info") -> None:
        """Append an event to the run's events file (for outcomes that no `RFTJob` reports)."""
        _append_event(self.config, job_id, message, level=level)

    def _fail(self, row: JobRow, code: str, message: str) -> None:
        self._event(row.id, f"Fine-tuning job failed: {message}", level="error")

        self.store.modify_job(row.id, lambda r: transitions.fail(r, code, message))


def _append_event(
    config: ServiceConfig, job_id: str, message: str, *, level: Literal["info", "warn", "error"] = "info"
) -> None:
    from ..loop.events import EventLog

    run = config.jobs_dir / job_id
    run.mkdir(parents=True, exist_ok=True)
    EventLog(run / "events.jsonl").emit(message, level=level)


def describe_exit(returncode: int) -> str:
    """How a process ended, from its `Popen.returncode`: `killed by signal SIGKILL`, `exited with status 3`."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def record_worker_death(config: ServiceConfig, store: Store, worker: str, how: str) -> list[JobRow]:
    """Count the death of the worker process named `worker` against each job it held; those jobs afterwards.

    A job whose count reaches `config.max_worker_deaths` fails (error code `worker_died`); the others go back
    to the queue, or to `paused` when a pause was pending, and the next worker resumes them from their last
    snapshot. A job cancelled meanwhile stays cancelled.
    """
    from ..loop.atomic_files import read_json, write_json
    from ..loop.events import read_events

    limit = config.max_worker_deaths
    log = config.data_dir / "worker.log"
    changed = []
    for held in store.jobs():
        if held.worker != worker:
            continue

        def message(deaths: int) -> str:
            return (
                f"The training worker process died {deaths} times while running this job (the last time "
                f"{how}); it is not retried. Its grader, model or data may crash the process: see {log}."
            )

        change = functools.partial(transitions.worker_died, limit=limit, code=WORKER_DIED, message=message)
        row = store.count_death(held.id, change)
        if row is None:
            continue
        changed.append(row)
        if row.status not in ("failed", "cancelled"):
            continue
        # No run will write these outcomes: the run folder gets them here.
        run, cancelled = config.jobs_dir / row.id, "Fine-tuning job cancelled"
        events = run / "events.jsonl"
        if row.status == "failed":
            _append_event(config, row.id, f"Fine-tuning job failed: {row.object['error']['message']}", level="error")
        elif not (events.is_file() and [e["message"] for e in read_events(events)[-1:]] == [cancelled]):
            _append_event(config, row.id, cancelled)
        if (run / "job.json").is_file():
            record = read_json(run / "job.json")
            fields = {k: row.object.get(k) for k in ("status", "error", "finished_at", "estimated_finish")}
            write_json(run / "job.json", {**record, **fields})
    return changed


def _preload(done: threading.Event) -> None:
    """Import the training stack in the background, so the first job does not wait for it (torch takes seconds)."""
    with contextlib.suppress(Exception):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
        from transformers import (  # noqa: F401
            AutoModelForCausalLM,
            AutoTokenizer,
            GenerationConfig,
            PreTrainedTokenizerFast,
            Qwen2Config,
            Qwen2ForCausalLM,
        )

        from ..loop import job  # noqa: F401
    done.set()


# --- the process ------------------------------------------------------------------------------------------


def _lock(config: ServiceConfig, parent_pid: int | None) -> IO[str]:
    """Hold `<data_dir>/worker.lock` (waiting for a worker left over from a killed server to exit)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    f = open(config.data_dir / "worker.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held for the process
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if parent_pid is not None and os.getppid() != parent_pid:
                os._exit(_PARENT_DIED)
            time.sleep(0.1)
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def main(argv: Sequence[str] | None = None) -> None:
    """Run the worker of the config in `$GRADEKIT_FINETUNE_WORKER_CONFIG` until SIGTERM, then exit the process."""
    parser = argparse.ArgumentParser(prog="python -m gradekit.trainer_bridge.service.worker")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer the parent")
    args = parser.parse_args(argv)
    config = ServiceConfig.model_validate_json(os.environ[CONFIG_VAR])
    worker = Worker(config, parent_pid=args.parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    lock = _lock(config, args.parent_pid)
    print(f"gradekit worker {os.getpid()}: serving {config.data_dir}", flush=True)
    worker.run()
    lock.close()
    sys.stdout.flush()
    # Everything is on disk by now; skipping the interpreter's teardown (torch's takes a second or two) lets the
    # server stop quickly.
    os._exit(0)


def job_env(job_id: str) -> Env:
    """The grading environment of one job: the default one, its sandbox workers serving that job only."""
    from gradekit.graders.api import shared_env
    from gradekit.runtime.sandbox import SandboxPool

    env = shared_env()
    if isinstance(env.python, SandboxPool):
        return dataclasses.replace(env, python=env.python.for_owner(job_id))
    return env


class WorkerProcess:
    """The worker process of a server: `start()` with the app, `stop()` (bounded in time) with it.

    A thread supervises the worker: when it dies on its own, `record_worker_death` settles the jobs it held and
    a new worker starts (see the module docstring); `deaths` counts the deaths this server has seen.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.deaths = 0
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._started = False  # start() spawns the worker once, when the service first has work for it

    def start(self) -> None:
        """Spawn the worker and its supervisor, once (a later call does nothing); its output goes to `worker.log`."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(self.config.data_dir / "worker.log", "ab")  # noqa: SIM115 - closed in stop()
            self._stopping.clear()
            self._spawn()
            self._supervisor = threading.Thread(target=self._supervise, name="gradekit-worker-supervisor", daemon=True)
            self._supervisor.start()

    def _spawn(self) -> None:
        env = {**os.environ, CONFIG_VAR: self.config.model_dump_json()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gradekit.trainer_bridge.service.worker", "--parent-pid", str(os.getpid())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches the server, which stops the worker
        )

    def _supervise(self) -> None:
        delay = _FIRST_RESTART_DELAY
        while True:
            process = self.process
            if process is None:
                return
            started = time.monotonic()
            returncode = process.wait()
            if self._stopping.is_set():
                return
            self.deaths += 1
            how = describe_exit(returncode)
            try:
                jobs = record_worker_death(self.config, Store(self.config.db_path), f"worker-{process.pid}", how)
                limit = self.config.max_worker_deaths
                held = ", ".join(f"{j.id} now {j.status} (death {j.deaths} of {limit})" for j in jobs)
            except Exception:
                held = f"its jobs could not be settled:\n{traceback.format_exc()}"
            if time.monotonic() - started >= _STABLE_SECONDS:
                delay = _FIRST_RESTART_DELAY
            self._note(f"the worker (pid {process.pid}) {how}; {held or 'it held no job'}; restarting in {delay:g} s")
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _MAX_RESTART_DELAY)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()

    def _note(self, message: str) -> None:
        """Say something about the worker in the server's log and in `worker.log`."""
        logger.warning("gradekit fine-tuning service: %s", message)
        if self._log is not None:
            with contextlib.suppress(ValueError, OSError):  # closed by stop() meanwhile
                self._log.write(f"gradekit service: {message}\n".encode())
                self._log.flush()

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs."""
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def stop(self) -> None:
        """SIGTERM (jobs pause at the end of their step), then SIGKILL after `shutdown_grace` seconds."""
        with self._lock:
            self._stopping.set()
            process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(self.config.shutdown_grace + 1.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._supervisor is not None:
            self._supervisor.join(timeout=30.0)  # it may be settling a dead worker's jobs in the database
            self._supervisor = None
        if self._log is not None:
            self._log.close()
            self._log = None


if __name__ == "__main__":
    main()
