"""JSONL reading and writing for the CLI: lazy line readers, cheap line counts, a flushing writer, resume scans."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["JsonlError", "JsonlWriter", "Line", "count_lines", "iter_lines", "read_jsonl", "scan_complete_lines"]

StrPath = str | os.PathLike[str]


class JsonlError(ValueError):
    """A line of a JSONL file that is not valid JSON; `str()` reads `path:line: message`."""

    def __init__(self, path: StrPath, line: int, message: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line of a JSONL file, with its 1-based line number."""

    path: str
    number: int
    text: str
    #: Why the line could not even be decoded (then `text` is empty).
    error: str | None = None

    def parse(self) -> Any:
        """The line's JSON value; a `JsonlError` naming file and line when it does not parse."""
        if self.error is not None:
            raise JsonlError(self.path, self.number, self.error)
        try:
            return json.loads(self.text)
        except ValueError as e:
            raise JsonlError(self.path, self.number, f"invalid JSON: {e}") from None

    @property
    def where(self) -> str:
        """`path:line`."""
        return f"{self.path}:{self.number}"


def _decode(name: str, number: int, raw: bytes) -> Line:
    try:
        # Only "\n" ends a line (as in `count_lines`); a byte-order mark may open the file.
        return Line(name, number, raw.decode("utf-8-sig" if number == 1 else "utf-8"))
    except UnicodeDecodeError as e:
        return Line(name, number, "", f"not UTF-8: {e}")


def iter_lines(path: StrPath) -> Iterator[Line]:
    """The non-blank lines of a file, read lazily (one line in memory at a time)."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.isspace():
                yield _decode(name, number, raw)


def read_jsonl(path: StrPath) -> Iterator[Any]:
    """Every value of a JSONL file, lazily; raises `JsonlError` at the first line that does not parse."""
    for line in iter_lines(path):
        yield line.parse()


def count_lines(path: StrPath) -> int | None:
    """How many non-blank lines a regular file has (what `iter_lines` yields); None for pipes and the like."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return sum(1 for raw in f if not raw.isspace())
    except OSError:
        return None


def scan_complete_lines(path: StrPath) -> Iterator[tuple[Line, int]]:
    """Each non-blank, newline-terminated line with the byte offset just past it.

    A last line without its newline (a write cut short by a killed process) is not yielded, so the offset
    of the last line yielded is where a resumed writer should continue.
    """
    name = os.fspath(path)
    offset = 0
    with open(name, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return
            offset += len(raw)
            if not raw.isspace():
                yield _decode(name, number, raw), offset


class JsonlWriter:
    """Writes one JSON value per line; flushes at least every `flush_interval` seconds and on close."""

    def __init__(self, path: StrPath, *, append: bool = False, flush_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.count = 0
        self._file: IO[str] = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self._flushed_at = time.monotonic()

    def write_line(self, text: str) -> None:
        """Write one already-serialised JSON value (without its newline)."""
        self._file.write(text + "\n")
        self.count += 1
        now = time.monotonic()
        if now - self._flushed_at >= self.flush_interval:
            self.flush()
            self._flushed_at = now

    def write(self, value: Any) -> None:
        """Write one JSON value."""
        self.write_line(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def flush(self) -> None:
        """Push what was written to the operating system."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
