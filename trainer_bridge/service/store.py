"""The service's database: uploaded files and fine-tuning jobs in SQLite (WAL mode, one connection per call).

The server process and the worker process share it. A job row holds the OpenAI job object the API returns
(`object`), what the worker needs to run it (`spec`: file paths, resolved model, grader), a pending control
request (`control`: `pause`), which worker holds it (`worker`), and how many times the worker process died while
holding it (`deaths`, kept across restarts so that a job that crashes the worker fails instead of being resumed
forever). Events and checkpoints are not copied
here: they are read from the job's run folder, which a resumed run rewinds, so they are never doubled.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..loop.job import FINAL_STATUSES

__all__ = ["FINAL_STATUSES", "JobRow", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    object TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    model_name TEXT NOT NULL,
    object TEXT NOT NULL,
    spec TEXT NOT NULL,
    control TEXT,
    worker TEXT,
    deaths INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_model_name ON jobs (model_name);
"""


@dataclass(frozen=True)
class JobRow:
    """One job: its API object, the worker's spec, a pending control request, the worker holding it, and how many
    times a worker died while holding it (read-only here: only `Store.count_death` changes it).
    """

    id: str
    object: dict[str, Any]
    spec: dict[str, Any]
    control: str | None = None
    worker: str | None = None
    deaths: int = field(default=0, compare=False)

    @property
    def status(self) -> str:
        """The job's OpenAI status."""
        return str(self.object["status"])

    @property
    def model_name(self) -> str:
        """The name the fine-tuned model has (or will have once the job succeeds)."""
        return str(self.spec["fine_tuned_model"])

    def with_object(self, **fields: Any) -> JobRow:
        """A copy with `fields` set in the API object."""
        return replace(self, object={**self.object, **fields})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Store:
    """Files and jobs in the SQLite database at `path` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        with self._write() as db:  # a database from before `deaths` (in a transaction: two processes open it)
            if "deaths" not in {r[1] for r in db.execute("PRAGMA table_info(jobs)")}:
                db.execute("ALTER TABLE jobs ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock at once (no upgrade deadlocks between processes)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- files ------------------------------------------------------------------------------------------

    def add_file(self, obj: Mapping[str, Any]) -> None:
        """Insert a file object."""
        with self._write() as db:
            db.execute("INSERT INTO files (id, object) VALUES (?, ?)", (obj["id"], _dumps(obj)))

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        """The file object `file_id`, or None."""
        with self._connect() as db:
            row = db.execute("SELECT object FROM files WHERE id = ?", (file_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_files(
        self, *, limit: int, after: str | None = None, ascending: bool = False, purpose: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of file objects (newest first unless `ascending`) after the file `after`, and whether more follow."""
        op, order = (">", "ASC") if ascending else ("<", "DESC")
        query, args = "SELECT object FROM files WHERE 1", []
        if after is not None:
            query += f" AND seq {op} (SELECT seq FROM files WHERE id = ?)"
            args.append(after)
        if purpose is not None:
            query += " AND json_extract(object, '$.purpose') = ?"
            args.append(purpose)
        query += f" ORDER BY seq {order} LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, [*args, limit + 1]).fetchall()
        return [json.loads(r[0]) for r in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str) -> bool:
        """Remove the file's row; False when there was none."""
        with self._write() as db:
            return db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def file_ids(self) -> set[str]:
        """Every stored file id."""
        with self._connect() as db:
            return {r[0] for r in db.execute("SELECT id FROM files")}

    # --- jobs -------------------------------------------------------------------------------------------

    def add_job(self, row: JobRow) -> None:
        """Insert a job."""
        with self._write() as db:
            db.execute(
                "INSERT INTO jobs (id, status, model_name, object, spec, control, worker) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.status, row.model_name, _dumps(row.object), _dumps(row.spec), row.control, row.worker),
            )

    @staticmethod
    def _row(values: tuple[Any, ...]) -> JobRow:
        job_id, obj, spec, control, worker, deaths = values
        return JobRow(job_id, json.loads(obj), json.loads(spec), control, worker, deaths)

    _COLUMNS = "id, object, spec, control, worker, deaths"

    def get_job(self, job_id: str) -> JobRow | None:
        """The job `job_id`, or None."""
        with self._connect() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def job_by_model(self, model_name: str) -> JobRow | None:
        """The job whose fine-tuned model is (or will be) `model_name`, or None."""
        with self._connect() as db:
            row = db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE model_name = ?", (model_name,)).fetchone()
        return self._row(row) if row else None

    def list_jobs(
        self, *, limit: int, after: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of job objects, newest first, after the job `after`, and whether more follow."""
        query, args = "SELECT object FROM jobs WHERE 1", []
        if after is not None:
            query += " AND seq < (SELECT seq FROM jobs WHERE id = ?)"
            args.append(after)
        for key, value in (metadata or {}).items():
            query += " AND json_extract(object, '$.metadata.' || json_quote(?)) = ?"
            args += [key, value]
        query += " ORDER BY seq DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, [*args, limit + 1]).fetchall()
        return [json.loads(r[0]) for r in rows[:limit]], len(rows) > limit

    def jobs(self, *, statuses: frozenset[str] | None = None) -> list[JobRow]:
        """Every job (optionally only those in `statuses`), oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {self._COLUMNS}, status FROM jobs ORDER BY seq").fetchall()
        return [self._row(r[:6]) for r in rows if statuses is None or r[6] in statuses]

    def modify_job(self, job_id: str, change: Callable[[JobRow], JobRow | None]) -> JobRow | None:
        """Apply `change` to the job atomically (None from it: leave the job as it is); the job afterwards.

        Returns None only when there is no such job. `deaths` is not written (see `count_death`).
        """
        with self._write() as db:
            return self._modify(db, job_id, change)

    def _modify(self, db: sqlite3.Connection, job_id: str, change: Callable[[JobRow], JobRow | None]) -> JobRow | None:
        row = db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        current = self._row(row)
        new = change(current)
        if new is None or new == current:
            return current
        db.execute(
            "UPDATE jobs SET status = ?, object = ?, spec = ?, control = ?, worker = ? WHERE id = ?",
            (new.status, _dumps(new.object), _dumps(new.spec), new.control, new.worker, job_id),
        )
        return replace(new, deaths=current.deaths)

    def count_death(self, job_id: str, change: Callable[[JobRow], JobRow | None]) -> JobRow | None:
        """Count one worker death against the job and apply `change` (which sees the new count), atomically."""
        with self._write() as db:
            db.execute("UPDATE jobs SET deaths = deaths + 1 WHERE id = ?", (job_id,))
            return self._modify(db, job_id, change)

    def claim_next(self, worker: str, *, only_clean: bool = False) -> JobRow | None:
        """Give the oldest unclaimed `queued` job to `worker`; None when there is none.

        With `only_clean`, None too when that job has killed a worker before (it waits to run alone).
        """
        with self._write() as db:
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM jobs WHERE status = 'queued' AND worker IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            found = self._row(row)
            if only_clean and found.deaths > 0:
                return None
            db.execute("UPDATE jobs SET worker = ? WHERE id = ?", (worker, found.id))
        return replace(found, worker=worker)

    def jobs_using_file(self, file_id: str) -> list[str]:
        """Ids of unfinished jobs that read the file `file_id`."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') AND "
                "(json_extract(object, '$.training_file') = ? OR json_extract(object, '$.validation_file') = ?)",
                (file_id, file_id),
            ).fetchall()
        return [r[0] for r in rows]
