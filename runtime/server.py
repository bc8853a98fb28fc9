"""The HTTP API: OpenAI's grader `run`/`validate` endpoints, gradekit's batch endpoint, and plugin routes.

```
POST /v1/fine_tuning/alpha/graders/run        {"grader", "model_sample", "item"?}  -> RunResult JSON
POST /v1/fine_tuning/alpha/graders/validate   {"grader"}                           -> {"grader": normalised}
POST /v1/gradekit/graders/run_batch           {"grader", "model_samples", "items"?} -> {"results", "summary"}
POST /v1/gradekit/graders/render              {"grader", "model_sample", "item"?}  -> {"templates": [...]}
POST /score                                   {"sample", "item", "trace_id"}       -> {"score"} (endpoint_route)
GET  /health                                                                       -> {"status": "ok"}
GET  /  and  /dashboard/...                    the web dashboard (gradekit.runtime.dashboard; no key needed)
```

Requests and responses are OpenAI's, so the `openai` SDK talks to this server with `base_url=".../v1"`;
errors are OpenAI's too: `{"error": {"message", "type", "param", "code"}}`. No request can make a route
answer 500 through what it holds: a body nested too deeply to parse is a 400 saying so, every response is
strict JSON in UTF-8 (lone surrogates replaced, see `gradekit.runtime.jsonl`), and a sample whose grading
raises is failed with `other_error`. Validation and grading run in worker threads, never on the event
loop, so `/health` answers while a slow grader runs. Graders arrive as JSON objects
only: a string is never read as a file path, and `function` graders (which import server-side code) are
refused. `python` graders run in the environment's Python executor: a sandbox when the runtime's environment
provides one, in-process (trusted code only) with the bare default `Env`.

Plugins: upper layers add routes without this module importing them. Every entry point in the group
`gradekit.routes` names a callable `register(app: FastAPI) -> None`, called once per `create_app` after the
built-in routes (which therefore win on a clash). A plugin that fails to load is logged and skipped. Plugin
routes sit behind the same API key and body limit and may raise `APIError` for OpenAI-style errors; they
find the environment in `app.state.env` and the server's own grader (`gradekit serve --grader`, else None) in
`app.state.grader`. `serve` (`gradekit serve`) sets `app.state.serve_defaults`: a plugin may then serve on its
default configuration what an app of `create_app` serves only when configured (the fine-tuning API). Plugins
log under the `gradekit` logger, which `serve` shows as uvicorn shows its own lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

import anyio.to_thread
import uvicorn
from fastapi import FastAPI, Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gradekit.graders import BatchResult, Env, Grader, GraderValidationError, RunResult, validate_untrusted
from gradekit.graders.aggregate import Aggregate
from gradekit.testing.asserts import rendered_templates

from . import dashboard, endpoint_route
from .engine import grade_rows
from .jsonl import TOO_DEEP, dumps, model_json, utf8

__all__ = [
    "BATCH_PATH",
    "MAX_BODY_BYTES",
    "RENDER_PATH",
    "ROUTES_GROUP",
    "RUN_PATH",
    "VALIDATE_PATH",
    "APIError",
    "SafeJSONResponse",
    "create_app",
    "error_response",
    "running",
    "serve",
]

logger = logging.getLogger(__name__)

RUN_PATH = "/v1/fine_tuning/alpha/graders/run"
VALIDATE_PATH = "/v1/fine_tuning/alpha/graders/validate"
BATCH_PATH = "/v1/gradekit/graders/run_batch"
RENDER_PATH = "/v1/gradekit/graders/render"
#: Entry point group of route plugins: each names `register(app: FastAPI) -> None`.
ROUTES_GROUP = "gradekit.routes"
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Paths answered without an API key (load balancers and orchestrators probe them; the dashboard's page asks
#: for the key itself), and a prefix of such paths (the dashboard's static files).
PUBLIC_PATHS = frozenset({"/health", "/"})
PUBLIC_PREFIX = dashboard.PREFIX

_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. The API expects a JSON payload, "
    "but what was sent was not valid JSON."
)
_TOO_DEEP = f"We could not parse the JSON body of your request: {TOO_DEEP}."
_NOT_UTF8 = "We could not parse the JSON body of your request: it is not valid UTF-8."
_HUGE_INT = (
    "We could not parse the JSON body of your request: it holds an integer longer than "
    f"{sys.get_int_max_str_digits() or 'the allowed'} digits."
)

T = TypeVar("T")


class APIError(Exception):
    """Raise in a route to answer with an OpenAI-style error (`status`, and the fields of `error`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code


class SafeJSONResponse(JSONResponse):
    """A JSON response that always renders: strict JSON in UTF-8, surrogates replaced (`jsonl.dumps`)."""

    def render(self, content: Any) -> bytes:
        """`content` as strict JSON bytes."""
        return utf8(dumps(content))


class SafeRoute(APIRoute):
    """A route whose result, unless it names a `response_model`, is rendered by `SafeJSONResponse` as it is.

    FastAPI would otherwise turn a `-> dict` annotation into a pydantic response model, whose serialiser
    refuses lone surrogates (a 500 from a plugin route such as OpenRLHF's or the fine-tuning API's).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if isinstance(kwargs.get("response_model", DefaultPlaceholder(None)), DefaultPlaceholder):
            kwargs["response_model"] = None
        super().__init__(path, endpoint, **kwargs)


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error response: `{"error": {"message", "type", "param", "code"}}`."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return SafeJSONResponse(body, status_code=status, headers=dict(headers or {}))


# --- requests ---------------------------------------------------------------------------------------------


class RunRequest(BaseModel):
    """Body of `POST /v1/fine_tuning/alpha/graders/run` (OpenAI's `GraderRunParams`)."""

    model_config = ConfigDict(extra="forbid")

    grader: dict[str, Any]
    model_sample: str
    item: dict[str, Any] | None = None


class ValidateRequest(BaseModel):
    """Body of `POST /v1/fine_tuning/alpha/graders/validate`."""

    model_config = ConfigDict(extra="forbid")

    grader: dict[str, Any]


class BatchRequest(BaseModel):
    """Body of `POST /v1/gradekit/graders/run_batch`: samples are strings, samples, completions or messages."""

    model_config = ConfigDict(extra="forbid")

    grader: dict[str, Any]
    model_samples: list[Any]
    items: list[dict[str, Any] | None] | None = None


class RenderResponse(BaseModel):
    """Response of `POST /v1/gradekit/graders/render`: `gradekit.testing.rendered_templates` of the sample."""

    templates: list[dict[str, Any]]


class ValidateResponse(BaseModel):
    """Response of `POST /v1/fine_tuning/alpha/graders/validate`: the grader, normalised."""

    grader: dict[str, Any]


class BatchResponse(BaseModel):
    """Response of `POST /v1/gradekit/graders/run_batch`."""

    results: list[RunResult]
    summary: dict[str, Any] = Field(description="Aggregate.summary() of the results")


# --- graders from request bodies --------------------------------------------------------------------------


def _invalid_grader(error: GraderValidationError) -> APIError:
    """The 400 for an invalid grader: every problem listed, `param` the first field named (`grader.…`)."""
    fields = [(".".join(["grader", *map(str, p.field)]) if p.field or p.loc else None, p.msg) for p in error.details]
    param = next((f for f, _ in fields if f is not None), "grader")
    listed = "\n".join(f"  - {f}: {msg}" if f else f"  - {msg}" for f, msg in fields)
    return APIError(400, f"Invalid grader ({len(fields)} problem(s)):\n{listed}", param=param)


def _grader(obj: dict[str, Any]) -> Grader:
    try:
        return validate_untrusted(obj)
    except GraderValidationError as e:
        raise _invalid_grader(e) from None


def _json(text: str, status: int = 200) -> Response:
    return Response(utf8(text), status_code=status, media_type="application/json")


async def _off_loop(fn: Callable[[], T]) -> T:
    """`fn()` in a worker thread: validation and grading are CPU work that must not stall the event loop."""
    return await anyio.to_thread.run_sync(fn)


def _run_one(obj: dict[str, Any], sample: str, item: dict[str, Any] | None, env: Env | None) -> str:
    grader = _grader(obj)
    batch = asyncio.run(grade_rows(grader, [sample], [item], env=env))
    return model_json(batch[0])


def _run_many(
    obj: dict[str, Any], samples: list[Any], items: list[dict[str, Any] | None] | None, env: Env | None
) -> str:
    grader = _grader(obj)
    if items is not None and len(items) != len(samples):
        raise APIError(
            400,
            f"'items' has {len(items)} entries but 'model_samples' has {len(samples)}; give one item per sample.",
            param="items",
        )
    batch: BatchResult = asyncio.run(grade_rows(grader, samples, items or [None] * len(samples), env=env))
    aggregate = Aggregate.for_grader(grader)
    aggregate.add_batch(batch)
    results = ",".join(model_json(r) for r in batch)
    return f'{{"results":[{results}],"summary":{dumps(aggregate.summary())}}}'


# --- error mapping ----------------------------------------------------------------------------------------


def _request_field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(parts) or None


_TYPE_NAMES = {
    "string_type": "a string",
    "dict_type": "an object",
    "list_type": "an array",
    "model_attributes_type": "an object",
}


def _validation_message(error: Mapping[str, Any]) -> tuple[str | None, str]:
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    param = _request_field(loc)
    if kind == "json_invalid":
        return None, _BAD_JSON
    if kind == "string_unicode":  # pydantic refuses object keys holding lone surrogates
        where = f" in '{param}'" if param else ""
        return param, f"Invalid string {error.get('input')!r}{where}: it holds a lone surrogate, which is not Unicode."
    if param is None:
        if kind == "missing":
            return None, "The request has no body; send a JSON object."
        return None, "The request body must be a JSON object."
    if kind == "missing":
        return param, f"Missing required parameter: '{param}'."
    if kind == "extra_forbidden":
        return param, f"Unrecognized request argument supplied: {param}"
    if kind in _TYPE_NAMES:
        got = type(error.get("input")).__name__
        return param, f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {_json_type(got)} instead."
    return param, f"Invalid value for '{param}': {error.get('msg', 'invalid')}."


def _json_type(python_type: str) -> str:
    return {
        "str": "a string",
        "int": "an integer",
        "float": "a decimal",
        "bool": "a boolean",
        "NoneType": "null",
        "list": "an array",
        "dict": "an object",
    }.get(python_type, python_type)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    found = [_validation_message(e) for e in exc.errors()]
    param = next((p for p, _ in found if p is not None), None)
    message = " ".join(dict.fromkeys(m for _, m in found)) or "Invalid request."
    return error_response(400, message, param=param)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    where = f"{request.method} {request.url.path}"
    # FastAPI answers 400 to any failure reading the body, keeping the reason as the cause: name it.
    cause = exc.__cause__ if exc.status_code == 400 else None
    if isinstance(cause, RecursionError):
        return error_response(400, _TOO_DEEP, code="json_too_deep")
    if isinstance(cause, UnicodeDecodeError):
        return error_response(400, _NOT_UTF8)
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return error_response(400, _HUGE_INT)
    if exc.status_code == 404:
        message = f"Invalid URL ({where})"
    elif exc.status_code == 405:
        message = f"Method not allowed ({where})"
    else:
        message = str(exc.detail)
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    return error_response(exc.status_code, message, type=kind, headers=exc.headers)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code)


# --- middleware (pure ASGI: they answer before a body is read or a route runs) ------------------------------


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class _InternalErrors:
    """Any exception a route leaks: logged with its traceback, answered 500 `server_error` without it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            logger.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, _SERVER_ERROR, type="server_error")(scope, receive, send)


class _ApiKey:
    """Requires `Authorization: Bearer <key>` on every path but `PUBLIC_PATHS`."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        message = "Incorrect API key provided." if token.strip() else _NO_KEY
        response = error_response(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


#: How much of a refused body `_BodyLimit` reads before it answers 413 and closes the connection.
_DRAIN_BYTES = 1 << 20


class _BodyLimit:
    """Answers 413 to bodies over `limit` bytes (declared or streamed), before the app reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, more_body: bool = True) -> None:
        # Read (a bounded part of) the refused body first: a socket closed with unread bytes in it is reset,
        # and the client then loses the 413 and sees a broken connection instead.
        drained = 0
        while more_body and drained <= _DRAIN_BYTES:
            received = await receive()
            if received["type"] == "http.disconnect":
                return
            drained += len(received.get("body", b""))
            more_body = received.get("more_body", False)
        message = f"Request body too large: the limit is {self.limit} bytes."
        response = error_response(413, message, code="request_too_large", headers={"Connection": "close"})
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send, message.get("more_body", False))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


# --- the app ----------------------------------------------------------------------------------------------


def _load_plugins(app: FastAPI) -> None:
    from gradekit.runtime.cli import CLIError

    for ep in sorted(entry_points(group=ROUTES_GROUP), key=lambda e: e.name):
        try:
            ep.load()(app)
        except CLIError:  # the user's mistake (e.g. a bad config file): the server must not start without it
            raise
        except Exception:
            logger.warning("%s plugin %r (%s) failed; skipped", ROUTES_GROUP, ep.name, ep.value, exc_info=True)


def create_app(
    *,
    api_key: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    env: Env | None = None,
    grader: Grader | None = None,
) -> FastAPI:
    """The gradekit HTTP API; `env` grades (None: default), `api_key` guards every route, `grader` is for plugins."""
    app = FastAPI(
        default_response_class=SafeJSONResponse,  # plugin routes too: no value can make a response fail
        title="gradekit",
        summary="OpenAI-compatible grader run/validate API and gradekit's batch grading",
        version=_version(),
    )
    app.router.route_class = SafeRoute
    app.state.env = env
    app.state.grader = grader

    @app.post(RUN_PATH, responses={200: {"model": RunResult}})
    async def run_grader(body: RunRequest) -> Response:
        """Grade one sample, as OpenAI's `fine_tuning.alpha.graders.run`."""
        env = app.state.env
        return _json(await _off_loop(lambda: _run_one(body.grader, body.model_sample, body.item, env)))

    @app.post(VALIDATE_PATH, responses={200: {"model": ValidateResponse}})
    async def validate_grader(body: ValidateRequest) -> Response:
        """Validate a grader, as OpenAI's `fine_tuning.alpha.graders.validate`; answers it normalised."""
        return _json(await _off_loop(lambda: dumps({"grader": _grader(body.grader).to_json()})))

    @app.post(BATCH_PATH, responses={200: {"model": BatchResponse}})
    async def run_batch(body: BatchRequest) -> Response:
        """Grade many samples with one grader (the fast path); results in order plus their summary."""
        env = app.state.env
        return _json(await _off_loop(lambda: _run_many(body.grader, body.model_samples, body.items, env)))

    @app.post(RENDER_PATH, responses={200: {"model": RenderResponse}})
    async def render_templates(body: RunRequest) -> Response:
        """What each template of the grader renders to for one sample (the dashboard's playground shows it)."""

        def render() -> str:
            return dumps({"templates": rendered_templates(_grader(body.grader), body.model_sample, body.item)})

        return _json(await _off_loop(render))

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness probe (no API key needed)."""
        return {"status": "ok"}

    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(APIError, _on_api_error)
    # The last added runs first: errors wrap everything, the key is checked before any body is read.
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    if api_key:
        app.add_middleware(_ApiKey, api_key=api_key)
    app.add_middleware(_InternalErrors)
    dashboard.mount(app)
    endpoint_route.register(app)
    _load_plugins(app)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradekit")
    except PackageNotFoundError:
        return "0"


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    env: Env | None = None,
    grader: Grader | None = None,
    log_level: str = "info",
) -> None:
    """Serve the API with uvicorn until interrupted (on 127.0.0.1 unless `host` says otherwise)."""
    app = create_app(api_key=api_key, max_body_bytes=max_body_bytes, env=env, grader=grader)
    app.state.serve_defaults = True
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=_log_config(log_level))


def _log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging config, with gradekit's loggers printed as uvicorn's own (`INFO:     ...`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["gradekit"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return config


@contextlib.contextmanager
def running(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its base URL and stops the server on exit.

    `port=0` picks a free port. Used by tests and by callers that need a grader server for a while.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="auto",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(1, int(timeout)),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name=f"gradekit-server-{bound}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {host}:{bound} did not start within {timeout} s")
            time.sleep(0.005)
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
