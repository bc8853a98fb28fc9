"""The server's log of its jobs' progress: a line per metrics event (step, rewards, speed, error rates), throttled.

The worker writes each job's events to its run folder; `ProgressLog` reads what is new there every
`progress_interval` seconds and logs, for each job, the newest metrics event of that interval (so a fast job
gives at most one line per job per interval, and its last step is always logged), then the job's outcome.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import ServiceConfig
from .store import FINAL_STATUSES, Store

__all__ = ["ProgressLog", "progress_line", "speed_parts"]

logger = logging.getLogger(__name__)


def progress_line(job_id: str, data: dict[str, Any]) -> str:
    """`<job id>: step 3/12 train_reward_mean=0.4500 valid_reward_mean=0.5000 errors: none` for a metrics event.

    The step's time and token rates and the run's finish estimate follow the rewards when the event has them
    (`speed_parts`). The errors part names the job's grader's error flags that fired and its share of samples
    without a reward.
    """
    parts = [f"{job_id}: step {data['step']}/{data['total_steps']}"]
    for key in ("train_reward_mean", "valid_reward_mean"):
        if isinstance(data.get(key), int | float):
            parts.append(f"{key}={data[key]:.4f}")
    parts += speed_parts(data)
    parts.append(f"errors: {_error_rates(data)}")
    return " ".join(parts)


def speed_parts(data: dict[str, Any]) -> list[str]:
    """A progress line's speed words (`step_s=12.31 sampled_tokens_per_s=85.2 ...`) from an event's `gradekit` data.

    `valid_s` is there at validation steps, `estimated_finish` (as a UTC time) from step 1 on.
    """
    own = data.get("gradekit")
    if not isinstance(own, dict):
        return []
    parts = []
    for key, spec in (
        ("step_s", ".2f"),
        ("valid_s", ".2f"),
        ("sampled_tokens_per_s", ".1f"),
        ("trained_tokens_per_s", ".1f"),
    ):
        if isinstance(own.get(key), int | float):
            parts.append(f"{key}={own[key]:{spec}}")
    if isinstance(own.get("estimated_finish"), int):
        when = datetime.fromtimestamp(own["estimated_finish"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts.append(f"estimated_finish={when}")
    return parts


def _error_rates(data: dict[str, Any]) -> str:
    """The whole grader's nonzero error-flag and no-reward rates in training, then validation; or `none`."""
    found = []
    for split, errors, no_reward in (("train", "errors", "no_reward"), ("valid", "valid_errors", "valid_no_reward")):
        # The first grader of each table is the job's grader (its sub-graders follow).
        flags = next(iter((data.get(errors) or {}).values()), {})
        found += [f"{split} {flag}={v['rate']:.3f}" for flag, v in flags.items() if v.get("rate")]
        missing = next(iter((data.get(no_reward) or {}).values()), {})
        if missing.get("rate"):
            found.append(f"{split} no_reward={missing['rate']:.3f}")
    return ", ".join(found) or "none"


class ProgressLog:
    """Follows the events files of the service's running jobs and logs their progress (see the module docstring)."""

    def __init__(self, config: ServiceConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._read: dict[str, int] = {}  # job id -> bytes of its events file already read
        self._done: set[str] = set()  # jobs whose outcome was logged
        self._since = time.time()  # jobs that finished since then are reported even if never seen running
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Log every `config.progress_interval` seconds in a thread, until `stop()`."""
        if self.config.progress_interval <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gradekit-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop logging (after one last look, so a job that just finished gets its lines)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.config.progress_interval):
            self._tick_safely()
        self._tick_safely()

    def _tick_safely(self) -> None:
        try:
            self.tick()
        except Exception:  # a progress line is never worth the server: say it and go on
            logger.warning("fine-tuning progress log failed", exc_info=True)

    def tick(self) -> list[str]:
        """Log what the followed jobs did since the last tick; the lines logged."""
        lines = []
        since, self._since = self._since, time.time()
        for row in self.store.jobs():
            finished = row.status in FINAL_STATUSES
            ended_now = finished and (row.object.get("finished_at") or 0) >= int(since) and row.id not in self._done
            if not (row.status == "running" or row.id in self._read or ended_now):
                continue
            newest = self._newest_metrics(row.id)
            if newest is not None:
                lines.append(progress_line(row.id, newest))
            if row.status != "running":  # finished, paused or put back in the queue
                self._read.pop(row.id, None)
                lines.append(f"{row.id}: {row.status}" + _outcome(row.object))
                if finished:
                    self._done.add(row.id)
        for line in lines:
            logger.info("fine-tuning %s", line)
        return lines

    def _newest_metrics(self, job_id: str) -> dict[str, Any] | None:
        path: Path = self.config.jobs_dir / job_id / "events.jsonl"
        offset = self._read.get(job_id, 0)
        try:
            with open(path, "rb") as f:
                if f.seek(0, 2) < offset:  # a resumed run cut the file back to its snapshot
                    offset = 0
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            self._read[job_id] = 0
            return None
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a torn last line is read next time
        self._read[job_id] = offset + len(complete)
        newest = None
        for line in complete.splitlines():
            event = json.loads(line)
            if event.get("type") == "metrics" and isinstance(event.get("data"), dict):
                newest = event["data"]
        return newest


def _outcome(obj: dict[str, Any]) -> str:
    if obj.get("status") == "succeeded" and obj.get("fine_tuned_model"):
        return f" ({obj['fine_tuned_model']})"
    error = obj.get("error") or {}
    return f" ({error.get('code')}: {error.get('message')})" if error.get("message") else ""
