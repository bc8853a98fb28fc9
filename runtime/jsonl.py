"""JSON and JSONL in and out for the runtime: safe encoding, safe parsing, lazy line readers, a flushing writer.

Every JSON or text output of the runtime (HTTP responses, JSONL files, reports, Lambda responses and logs)
goes through `dumps`, `model_json`, `clean_text` or `utf8`, so no value can make an output fail: lone
surrogates become U+FFFD, non-finite floats and integers too long to print become null, values JSON has no
type for become a short description, and nesting deeper than `MAX_JSON_DEPTH` a marker string: the
values are made safe by `gradekit.graders.safety`, the one place that does it for every layer.
Every JSON input goes through `loads` (or `Line.parse`), which turns input nested too deeply for Python's
parser into a `ValueError` naming the problem instead of a `RecursionError`.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel

from gradekit.graders.limits import MAX_JSON_DEPTH
from gradekit.graders.safety import clean_text, json_safe

__all__ = [
    "TOO_DEEP",
    "JsonDepthError",
    "JsonlError",
    "JsonlWriter",
    "Line",
    "clean_text",
    "count_lines",
    "dumps",
    "iter_lines",
    "json_safe",
    "loads",
    "model_json",
    "read_jsonl",
    "scan_complete_lines",
    "utf8",
    "write_text",
]

StrPath = str | os.PathLike[str]

_COMPACT = (",", ":")


def utf8(text: str) -> bytes:
    """`text` encoded as UTF-8, surrogates replaced by U+FFFD; never raises."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return clean_text(text).encode("utf-8")


def write_text(stream: IO[str], text: str) -> None:
    """Write `text` to a text stream, replacing what its encoding cannot carry; never a `UnicodeEncodeError`."""
    text = clean_text(text)
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(encoding, "replace").decode(encoding))


def dumps(value: Any, *, indent: int | None = None) -> str:
    """`value` as strict JSON text (`json.loads` reads it back, `allow_nan=False` holds); never raises."""
    options: dict[str, Any] = {
        "ensure_ascii": False,
        "allow_nan": False,
        "indent": indent,
        "separators": None if indent is not None else _COMPACT,
    }
    try:
        return clean_text(json.dumps(value, **options))
    except (ValueError, TypeError, RecursionError):
        pass
    # Called from deep in the stack, even the bounded copy may be too deep for the encoder: bound it harder.
    for depth in (MAX_JSON_DEPTH, 16):
        try:
            return clean_text(json.dumps(json_safe(value, depth), **options))
        except RecursionError:
            continue
    return "null"


def model_json(model: BaseModel, *, indent: int | None = None) -> str:
    """A pydantic model as strict JSON text, like `model_dump_json` but never raising (e.g. on surrogates)."""
    try:
        return model.model_dump_json(indent=indent)
    except Exception:  # pydantic refuses surrogates and values it cannot serialise
        return dumps(model.model_dump(), indent=indent)


class JsonDepthError(ValueError):
    """JSON input nested too deeply for Python's parser."""


#: What `loads` says about input too deep to parse.
TOO_DEEP = f"JSON nested too deeply to parse (the limit is about {sys.getrecursionlimit()} levels)"


def loads(text: str | bytes) -> Any:
    """`json.loads`, raising `JsonDepthError` (a `ValueError`) instead of `RecursionError` on very deep input."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonDepthError(TOO_DEEP) from None


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
            return loads(self.text)
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
    """Writes one JSON value per line in UTF-8; flushes at least every `flush_interval` seconds and on close.

    Surrogates are replaced (see `utf8`). The file is written in place, line by line (appended to with
    `append=True`): what was written before an interruption stays, which lets `gradekit grade --resume` go on.
    """

    def __init__(self, path: StrPath, *, append: bool = False, flush_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.count = 0
        self._file: IO[bytes] = open(self.path, "ab" if append else "wb")  # noqa: SIM115
        self._flushed_at = time.monotonic()

    def write_line(self, text: str) -> None:
        """Write one already-serialised JSON value (without its newline)."""
        self._file.write(utf8(text) + b"\n")
        self.count += 1
        now = time.monotonic()
        if now - self._flushed_at >= self.flush_interval:
            self.flush()
            self._flushed_at = now

    def write(self, value: Any) -> None:
        """Write one JSON value (through `dumps`: strict JSON whatever it holds)."""
        self.write_line(dumps(value))

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
