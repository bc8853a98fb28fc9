"""The bundle under AWS's real runtime interface client (awslambdaric), against a Lambda Runtime API served here.

The client runs as Lambda starts it: `python -m awslambdaric gradekit.lambda_handlers.entry.handler` in the
unpacked bundle (the task root), with `-S -s` so that `sys.path` is the task root, a runtime directory holding
only awslambdaric and its two dependencies (linked from the test environment), and the standard library.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

from gradekit.lambda_handlers.build import HANDLER
from gradekit.lambda_handlers.invoke import lambda_environment

from .bundles import SECURITY_GRADER, LoopbackServer, bedrock_event, built_bundle, handler_output

PREFIX = "/2018-06-01/runtime"
#: How long one `next` request waits for an event before answering 503 (the client is stopped long before).
NEXT_WAIT = 30.0
#: How long a test waits for the client to answer everything.
TEST_WAIT = 90.0
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:reward"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # the client is stopped while its last `next` request waits: a reset connection is expected then
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RuntimeAPI(LoopbackServer):
    """A Lambda Runtime API on 127.0.0.1 handing out a fixed list of events and recording the answers."""

    server_class = _Server

    def __init__(self, events: list[Any]) -> None:
        self.ids = [str(uuid.uuid4()) for _ in events]
        self.pending: queue.Queue[tuple[str, Any]] = queue.Queue()
        for request_id, event in zip(self.ids, events, strict=True):
            self.pending.put((request_id, event))
        self.responses: dict[str, Any] = {}
        self.errors: dict[str, tuple[str, Any]] = {}
        self.init_errors: list[tuple[str, Any]] = []
        self.done = threading.Event()
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._start_server()

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        super().__exit__(*exc)

    def _record(self, kind: str, request_id: str | None, body: Any, error_type: str = "") -> None:
        with self._lock:
            if kind == "response":
                self.responses[request_id or ""] = body
            elif kind == "error":
                self.errors[request_id or ""] = (error_type, body)
            else:
                self.init_errors.append((error_type, body))
            if self.init_errors or len(self.responses) + len(self.errors) == len(self.ids):
                self.done.set()

    def _next(self) -> tuple[str, Any] | None:
        deadline = time.monotonic() + NEXT_WAIT
        while not self.closing.is_set() and time.monotonic() < deadline:
            try:
                return self.pending.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404)
                    return
                job = api._next()
                if job is None:
                    self._reply(503, b'{"errorMessage": "no more events"}')
                    return
                request_id, event = job
                deadline_ms = int(time.time() * 1000) + 60_000
                headers = {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
                }
                self._reply(200, json.dumps(event).encode(), headers)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api._record("init", None, body, error_type)
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    api._record(parts[2], parts[1], body, error_type)
                else:
                    self._reply(404)
                    return
                self._reply(202, b'{"status": "OK"}', {"Content-Type": "application/json"})

        return Handler


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The security-review bundle (built for this Python), unpacked as Lambda's /var/task."""
    report = built_bundle("security311", tmp_path_factory)[1]
    root = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(report.path) as zf:
        zf.extractall(root)
    return root


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lambda's /var/runtime: awslambdaric and its dependencies only, linked from the test environment."""
    root = tmp_path_factory.mktemp("runtime")
    for name in ("awslambdaric", "simplejson", "snapshot-restore-py"):
        dist = distribution(name)
        for top in sorted({f.parts[0] for f in dist.files or []} - {"__pycache__"}):
            (root / top).symlink_to(Path(str(dist.locate_file(top))))
    return root


def run_client(api: RuntimeAPI, task_root: Path, runtime_dir: Path, log: Path) -> None:
    """Runs awslambdaric in `task_root` until the API has every answer (or TEST_WAIT passes), then stops it."""
    env = lambda_environment(task_root, handler=HANDLER, function_name="reward", timeout=60)
    env |= {
        "PYTHONPATH": f"{task_root}:{runtime_dir}",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "GRADEKIT_GRADER": "grader.json",
        "HOME": str(log.parent),
        "TMPDIR": str(log.parent),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-s", "-m", "awslambdaric", HANDLER],
            cwd=task_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            api.done.wait(TEST_WAIT)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def api_events() -> Iterator[RuntimeAPI]:
    """The Runtime API serving three invocations: the example event, the same wrapped, and not an event."""
    event = bedrock_event()
    with RuntimeAPI([event, {"trajectories": event}, {"hello": "world"}]) as api:
        yield api


def test_handler_under_awslambdaric(api_events: RuntimeAPI, task_root: Path, runtime_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "client.log"
    run_client(api_events, task_root, runtime_dir, log)
    logs = log.read_text()
    assert api_events.done.is_set(), logs
    assert api_events.init_errors == []
    first, wrapped, bad = api_events.ids

    expected = handler_output(bedrock_event())
    assert api_events.responses == {first: expected, wrapped: expected}
    assert [r["aggregate_reward_score"] for r in expected][::2] == [1.0, 0.0]
    _, body = api_events.errors[bad]
    assert body["errorType"] == "EventError"
    assert body["errorMessage"].startswith("expected the Bedrock RFT event: a JSON list of samples")
    assert '"message":"batch graded"' in logs  # the handler's Powertools logs reach the client's output


def test_import_failure_is_reported_as_an_init_error(runtime_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "task"
    empty.mkdir()
    (empty / "grader.json").write_text(SECURITY_GRADER.read_text())
    with RuntimeAPI([bedrock_event()]) as api:
        run_client(api, empty, runtime_dir, tmp_path / "client.log")  # a bundle without gradekit
    assert api.responses == {} and api.errors == {}
    [(error_type, body)] = api.init_errors
    assert error_type == body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == (
        "Unable to import module 'gradekit.lambda_handlers.entry': No module named 'gradekit'"
    )
