"""Crash-safe files: JSON replaced atomically, and directories published by a single rename."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["FULL_BELOW", "fsync_dir", "publish_dir", "read_json", "remove_leftovers", "write_json"]

#: Free bytes below which a failed write is taken for a full device (a model checkpoint is hundreds of MB).
FULL_BELOW = 64 * 2**20


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value: Any) -> None:
    """Replace `path` with `value` as JSON: readers see the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    """The JSON value in `path`."""
    return json.loads(path.read_text(encoding="utf-8"))


def publish_dir(path: Path, write: Callable[[Path], None]) -> Path:
    """Build a directory with `write(tmp)` beside `path`, then rename it into place (replacing any old one).

    A write that fails leaves nothing behind; on a full device it is an `OSError` (ENOSPC) naming `path`, since
    torch's writer reports one only as a RuntimeError about a zip position.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb") as f:
                    os.fsync(f.fileno())
    except Exception as e:
        free = shutil.disk_usage(path.parent).free
        shutil.rmtree(tmp, ignore_errors=True)
        if free < FULL_BELOW:
            raise OSError(errno.ENOSPC, f"no space left on the device writing {path} ({free} bytes free)") from e
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def remove_leftovers(root: Path) -> None:
    """Delete half-built `.name.tmp`/`.name.old` entries a killed process left in `root`."""
    for child in root.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    for child in root.glob(".*.old"):
        shutil.rmtree(child, ignore_errors=True)
