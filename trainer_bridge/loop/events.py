"""Job events as `fine_tuning.job.event` objects, appended to a JSONL file as they happen."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

__all__ = ["EventLog", "read_events"]

Level = Literal["info", "warn", "error"]


class EventLog:
    """Appends events to `path`; `offset()` marks a point that `truncate` can return to after a crash."""

    def __init__(self, path: Path, *, listener: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = path
        self.listener = listener
        path.touch()

    def emit(
        self, message: str, *, level: Level = "info", type: Literal["message", "metrics"] = "message", data: Any = None
    ) -> dict[str, Any]:
        """Append one event and hand it to the listener."""
        event = {
            "object": "fine_tuning.job.event",
            "id": f"ftevent-{secrets.token_hex(12)}",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "data": data,
            "type": type,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        if self.listener is not None:
            self.listener(event)
        return event

    def offset(self) -> int:
        """The file's length in bytes, made durable."""
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())
            return f.seek(0, os.SEEK_END)

    def truncate(self, offset: int) -> None:
        """Drop every event written after `offset` (events of steps that a resumed run repeats)."""
        with open(self.path, "rb+") as f:
            f.truncate(offset)
            os.fsync(f.fileno())


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in an events file, oldest first (a torn last line is skipped)."""
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                events.append(json.loads(line))
    return events
