"""Executor interfaces for graders whose work happens outside pure Python: user code, models, embeddings.

The defaults here run in-process; `gradekit.runtime` supplies a sandbox pool and OpenAI-compatible clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sys
import threading
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import GradingError
from .safety import exception_text

T = TypeVar("T")

if TYPE_CHECKING:
    from .models import Endpoint, LabelModel, PythonGrader, ScoreModel


@dataclass(frozen=True, slots=True)
class Call:
    """What one call of user code returned, or the error it ended with."""

    value: Any = None
    error: GradingError | None = None


class PythonExecutor(Protocol):
    """Runs a `python` grader's `grade(sample, item)` for many samples."""

    async def run(self, grader: PythonGrader, samples: Sequence[dict[str, Any]], items: Sequence[Any]) -> list[Call]:
        """One `Call` per sample, in order."""
        ...


@dataclass(frozen=True, slots=True)
class ModelGrade:
    """A model grader's verdict on one sample."""

    result: float | None = None
    label: str | None = None
    steps: list[Any] = field(default_factory=list)
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error: GradingError | None = None


class ModelClient(Protocol):
    """Asks a judge model about rendered grader messages."""

    async def grade(
        self, grader: ScoreModel | LabelModel, messages: Sequence[list[dict[str, Any]]]
    ) -> list[ModelGrade]:
        """One `ModelGrade` per message list, in order."""
        ...


class EndpointCaller(Protocol):
    """POSTs an `endpoint` grader's JSON request bodies to its `url` and reads the JSON replies."""

    async def post(self, grader: Endpoint, bodies: Sequence[dict[str, Any]]) -> list[Call]:
        """One `Call` per body, in order: the decoded reply, or the `GradingError` the request ended with."""
        ...


class Embedder(Protocol):
    """Turns texts into embedding vectors (for `text_similarity` with `cosine`)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        ...


_WORKERS: concurrent.futures.ThreadPoolExecutor | None = None
_WORKERS_LOCK = threading.Lock()


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking `fn` in gradekit's shared worker threads, from any event loop.

    Unlike `asyncio.to_thread`, the threads outlive the loop: `run_batch` starts a loop per call, and a
    fresh default executor per loop made thread start-up the main cost of small batches.
    """
    global _WORKERS
    if _WORKERS is None:
        with _WORKERS_LOCK:
            if _WORKERS is None:
                _WORKERS = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="gradekit")
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, call)


#: What user code (a grader function, an in-process `python` grader) may raise that fails only its sample:
#: every Exception, and SystemExit (`sys.exit()` in a grader must not end the process grading it).
USER_CODE_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit)


def format_exception(exc: BaseException) -> str:
    """A traceback as text, without gradekit's own frames at the top (never raises)."""
    try:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        return exception_text(exc)


class InProcessPythonExecutor:
    """Runs `python` graders in this process with no limits: for trusted code and tests only.

    The source is compiled once per grader; `gradekit.runtime` replaces this with a sandboxed worker pool.
    """

    def __init__(self) -> None:
        self._compiled: dict[str, Any] = {}

    def _function(self, grader: PythonGrader) -> Any:
        fn = self._compiled.get(grader.source)
        if fn is None:
            # A real module in sys.modules, as a grader file would be: dataclasses and pickling need one.
            module = types.ModuleType(f"gradekit_python_grader_{len(self._compiled)}")
            sys.modules[module.__name__] = module
            exec(compile(grader.source, f"<python grader {grader.name}>", "exec"), module.__dict__)
            fn = self._compiled[grader.source] = module.grade
        return fn

    async def run(self, grader: PythonGrader, samples: Sequence[dict[str, Any]], items: Sequence[Any]) -> list[Call]:
        # A worker thread, as OpenAI runs grade() outside any event loop (so it may call asyncio.run).
        return await in_thread(self._run_all, grader, samples, items)

    def _run_all(self, grader: PythonGrader, samples: Sequence[dict[str, Any]], items: Sequence[Any]) -> list[Call]:
        try:
            fn = self._function(grader)
        except USER_CODE_ERRORS as e:
            message = f"grader source failed to load: {exception_text(e)}"
            err = GradingError("python_grader_runtime_error", message, format_exception(e))
            return [Call(error=err)] * len(samples)
        out = []
        for sample, item in zip(samples, items, strict=True):
            try:
                value = fn(sample, item)
                if asyncio.iscoroutine(value):
                    value = asyncio.run(value)
                out.append(Call(value=value))
            except USER_CODE_ERRORS as e:
                error = GradingError("python_grader_runtime_error", exception_text(e), format_exception(e))
                out.append(Call(error=error))
        return out


@dataclass(slots=True)
class Env:
    """Where graders send work that is not pure: user Python code, judge models, embeddings, HTTP endpoints."""

    python: PythonExecutor = field(default_factory=InProcessPythonExecutor)
    model: ModelClient | None = None
    embedder: Embedder | None = None
    endpoint: EndpointCaller | None = None
