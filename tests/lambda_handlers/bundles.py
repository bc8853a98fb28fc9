"""Shared helpers of the Lambda packaging tests: bundles built once per session, the example event."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import run_batch
from gradekit.lambda_handlers import bedrock_reward_handler
from gradekit.lambda_handlers.build import BuildReport, build_zip
from gradekit.lambda_handlers.events import parse_event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SECURITY_GRADER = EXAMPLES / "security_review" / "grader.json"
BEDROCK_EVENT = EXAMPLES / "bedrock_event.json"
LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
#: The AWS region of the tests that talk to AWS APIs on loopback.
REGION = "us-east-1"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)

ANSWER_GRADER = {
    "type": "string_check",
    "name": "answer",
    "input": "{{ sample.output_text }}",
    "reference": "The answer is {{ item.reference_answer }}",
    "operation": "like",
}

_built: dict[str, tuple[Path, BuildReport]] = {}


def _source_snapshot(directory: Path) -> Path:
    """A copy of the gradekit source tree, so that repeated builds see the same files."""
    ignore = shutil.ignore_patterns(".*", "__pycache__", "tests", "benchmarks", "docs", "dist", "build", "*.egg-info")
    return Path(shutil.copytree(ROOT, directory / "gradekit-src", ignore=ignore))


def built_bundle(name: str, factory: pytest.TempPathFactory) -> tuple[Path, BuildReport]:
    """A bundle built once per test session: `default` (python 3.12 x86_64) or `security311` (this Python)."""
    if name not in _built:
        directory = factory.mktemp(f"bundle-{name}")
        if name == "default":
            grader = directory / "answer.json"
            grader.write_text(json.dumps(ANSWER_GRADER))
            project = _source_snapshot(directory)
            _built[name] = (project, build_zip(str(grader), directory / "reward.zip", project=project))
        elif name == "security311":
            _built[name] = (ROOT, build_zip(str(SECURITY_GRADER), directory / "reward.zip", python=LOCAL_PYTHON))
        else:
            raise KeyError(name)
    return _built[name]


def bedrock_event() -> list[dict[str, Any]]:
    """The shipped example event."""
    return json.loads(BEDROCK_EVENT.read_text())


def expected_rewards(grader: Any, event: Any) -> list[float]:
    """The rewards of `run_batch` in this process on the event's (sample, item) pairs."""
    rows = parse_event(event)
    return run_batch(grader, [r.sample for r in rows], [r.item for r in rows]).rewards


def handler_output(event: Any) -> list[dict[str, Any]]:
    """The Bedrock handler's output for the security-review grader, computed in this process."""

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    # a service name of its own: Powertools loggers are per service, and their stream is bound at creation
    handler = bedrock_reward_handler(SECURITY_GRADER, service="gradekit-test-expected", namespace="test")
    return handler(event, Context())


def without(zip_path: Path, out: Path, predicate: Any) -> Path:
    """A copy of the zip without the entries `predicate` picks (stored uncompressed: quicker)."""
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not predicate(info.filename):
                dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_STORED)
    return out


def gradekit_cli(*argv: str) -> int:
    """Runs `gradekit ARGV` through the CLI's `main` (errors printed as its one `gradekit: error:` line)."""
    from gradekit.runtime.cli import main

    return main(list(argv))


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) for the duration of a `with` block."""

    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _start_server(self) -> None:
        self.server = self.server_class(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        """host:port."""
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        """http://host:port."""
        return f"http://{self.address}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class JsonPostServer(LoopbackServer):
    """A `LoopbackServer` answering every POST with what `respond(path, payload)` returns."""

    def respond(self, path: str, payload: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, JSON body and extra headers for one request."""
        raise NotImplementedError

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body, headers = api.respond(self.path, payload)
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
