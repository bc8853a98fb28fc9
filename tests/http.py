"""HTTP helpers shared by the tests of gradekit's servers."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: The `gradekit` console script of the environment running the tests.
GRADEKIT = Path(sys.executable).with_name("gradekit")


def post(url: str, body: bytes | Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST JSON (or raw bytes) with urllib; the status and the decoded JSON answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeFailed(AssertionError):
    """`gradekit serve` exited or did not answer /health in time; the message holds its log."""


@contextlib.contextmanager
def gradekit_serve(
    args: Sequence[str] = (),
    *,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    command: Sequence[str] = (str(GRADEKIT), "serve"),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gradekit serve ARGS` on 127.0.0.1 and a free port, once /health answers: (base URL, process).

    Its output goes to `log`; it is stopped with Ctrl-C (then killed) on exit.
    """
    port = free_port()
    full = [*command, *args, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "ab") as out:
        process = subprocess.Popen(full, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise ServeFailed(f"`{' '.join(full)}` exited {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    message = f"`{' '.join(full)}` did not answer /health in {timeout:g} s:\n{log.read_text()}"
                    raise ServeFailed(message) from None
                time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
