"""The grading engine: a stream of (sample, item) pairs in, a stream of results out, in constant memory.

Pairs are graded a chunk at a time through `arun_batch` (each grader node picks its executor: pure graders
in-process and column-wise, Python graders in the environment's sandbox pool, model graders as concurrent
requests); several chunks are in flight at once. Results come back in input order or as completed.
No row can fail a stream: a chunk whose grading raises is graded again row by row, and a row whose grading
still raises gets reward 0 and `other_error` (see `Engine.grade`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from gradekit.graders import BatchResult, Env, Grader, RunResult, arun_batch, validate
from gradekit.graders.aggregate import Aggregate
from gradekit.graders.api import GraderLike
from gradekit.graders.results import SampleNotes
from gradekit.graders.samples import SampleInput

Pair = tuple[SampleInput, Mapping[str, Any] | None]

logger = logging.getLogger(__name__)

#: Entry point group of grading backends: each names a factory `(spec: str, grader: Grader) -> Backend`.
BACKENDS_GROUP = "gradekit.backends"


class Backend(Protocol):
    """Grades one chunk of rows somewhere else (e.g. a deployed reward Lambda) instead of in this process."""

    async def grade(self, grader: Grader, samples: list[SampleInput], items: list[Any]) -> BatchResult:
        """The chunk's results, in order, one per row; failures are flags, never exceptions."""
        ...


def load_backend(name_and_spec: str, grader: Grader) -> Backend:
    """The backend that `NAME:SPEC` names (`lambda:arn:aws:lambda:...`), from the `gradekit.backends` group."""
    name, _, spec = name_and_spec.partition(":")
    found = [e for e in entry_points(group=BACKENDS_GROUP) if e.name == name]
    if not found:
        known = ", ".join(sorted(e.name for e in entry_points(group=BACKENDS_GROUP))) or "none installed"
        raise ValueError(f"unknown grading backend {name!r} (known: {known})")
    return found[0].load()(spec, grader)


@dataclass(frozen=True, slots=True)
class Graded:
    """One graded row: its position in the input, and its place in the batch result that holds it."""

    index: int
    batch: BatchResult
    position: int

    @property
    def reward(self) -> float:
        """The row's reward (no result model is built)."""
        return self.batch.rewards[self.position]

    @property
    def result(self) -> RunResult:
        """The row's OpenAI-shaped result, built on each access."""
        return self.batch[self.position]


#: Longest exception message kept in a row's `other_error`.
_MAX_MESSAGE = 2000


def _failed_row(grader: Grader, error: Exception) -> BatchResult:
    """One row failed with `other_error` because grading it raised `error`."""
    try:
        text = str(error)
    except Exception:
        text = ""
    message = f"grading raised {type(error).__name__}" + (f": {text[:_MAX_MESSAGE]}" if text else "")
    notes = SampleNotes()
    notes.fail(grader.name, "other_error", message)
    return BatchResult(grader.name, grader.type, [0.0], [notes], {}, 0.0)


def _concat(grader: Grader, parts: list[BatchResult]) -> BatchResult:
    """Batch results one after another (a sub-reward a part lacks is 0 there)."""
    keys = list(dict.fromkeys(k for p in parts for k in p.sub_rewards))
    sub: dict[str, list[float]] = {k: [] for k in keys}
    rewards: list[float] = []
    notes: list[SampleNotes | None] = []
    for p in parts:
        rewards += p.rewards
        notes += p.notes
        for k in keys:
            sub[k] += p.sub_rewards.get(k, [0.0] * len(p))
    return BatchResult(grader.name, grader.type, rewards, notes, sub, sum(p.execution_time for p in parts))


async def grade_rows(
    grader: Grader,
    samples: Sequence[SampleInput],
    items: Sequence[Any],
    *,
    env: Env | None = None,
    backend: Backend | None = None,
) -> BatchResult:
    """Grade rows (here, or on `backend`), one result per row, never raising for what a row holds.

    Graders turn failures into flags; should grading the rows raise all the same (a bug, or input no
    grader guards against), each row is graded alone so the others keep their results, and a row whose
    grading still raises gets reward 0 and `other_error` naming the exception.
    """
    try:
        if backend is not None:
            return await backend.grade(grader, list(samples), list(items))
        return await arun_batch(grader, samples, items, env=env)
    except Exception as e:
        if len(samples) == 1:
            logger.warning("grading a row raised; it is failed with other_error", exc_info=True)
            return _failed_row(grader, e)
    parts = await asyncio.gather(
        *(grade_rows(grader, [s], [i], env=env, backend=backend) for s, i in zip(samples, items, strict=True))
    )
    return _concat(grader, parts)


async def _chunks(pairs: Iterable[Pair] | AsyncIterable[Pair], size: int) -> AsyncIterator[tuple[int, list[Pair]]]:
    start, chunk = 0, []
    if isinstance(pairs, AsyncIterable):
        async for pair in pairs:
            chunk.append(pair)
            if len(chunk) == size:
                yield start, chunk
                start, chunk = start + size, []
    else:
        for pair in pairs:
            chunk.append(pair)
            if len(chunk) == size:
                yield start, chunk
                start, chunk = start + size, []
                await asyncio.sleep(0)  # let finished chunks be collected while a sync source is read
    if chunk:
        yield start, chunk


class Engine:
    """Grades streams of rows with one grader; `aggregate` holds the running summary.

    Chunks are graded in this process, or by `backend` when one is given (see `load_backend`).
    """

    def __init__(
        self,
        grader: GraderLike,
        *,
        env: Env | None = None,
        chunk_size: int = 256,
        concurrency: int = 4,
        ordered: bool = True,
        backend: Backend | None = None,
    ) -> None:
        if chunk_size < 1 or concurrency < 1:
            raise ValueError("chunk_size and concurrency must be at least 1")
        self.grader: Grader = validate(grader)
        self.env = env
        self.chunk_size = chunk_size
        self.concurrency = concurrency
        self.ordered = ordered
        self.backend = backend
        self.aggregate = Aggregate.for_grader(self.grader)

    async def grade(self, samples: list[SampleInput], items: list[Any]) -> BatchResult:
        """Grade one chunk of rows with `grade_rows` (here or on the backend); `aggregate` is left untouched."""
        return await grade_rows(self.grader, samples, items, env=self.env, backend=self.backend)

    async def _grade_chunk(self, start: int, chunk: list[Pair]) -> tuple[int, BatchResult]:
        return start, await self.grade([s for s, _ in chunk], [i for _, i in chunk])

    def _emit(self, start: int, result: BatchResult) -> list[Graded]:
        self.aggregate.add_batch(result)
        return [Graded(start + i, result, i) for i in range(len(result))]

    async def astream(self, pairs: Iterable[Pair] | AsyncIterable[Pair]) -> AsyncIterator[Graded]:
        """Grade `pairs`, yielding each row's result (in input order unless `ordered=False`)."""
        pending: set[asyncio.Task[tuple[int, BatchResult]]] = set()
        waiting: dict[int, BatchResult] = {}  # finished chunks held back until the ones before them finish
        next_start = 0

        async def finished() -> list[Graded]:
            nonlocal next_start
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.difference_update(done)
            out: list[Graded] = []
            for task in done:
                start, result = task.result()
                if self.ordered:
                    waiting[start] = result
                else:
                    out.extend(self._emit(start, result))
            while next_start in waiting:
                result = waiting.pop(next_start)
                out.extend(self._emit(next_start, result))
                next_start += len(result)
            return out

        try:
            async for start, chunk in _chunks(pairs, self.chunk_size):
                pending.add(asyncio.create_task(self._grade_chunk(start, chunk)))
                # Held-back chunks count against the bound too: memory stays at `concurrency` chunks.
                while len(pending) + len(waiting) >= self.concurrency:
                    for graded in await finished():
                        yield graded
            while pending:
                for graded in await finished():
                    yield graded
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def stream(self, pairs: Iterable[Pair], *, buffer: int = 1024) -> Iterator[Graded]:
        """`astream` for synchronous callers: grading runs on an event loop in a worker thread."""
        out: queue.Queue[Any] = queue.Queue(maxsize=buffer)
        stop = threading.Event()
        end = object()

        async def pump() -> None:
            async for graded in self.astream(pairs):
                while not stop.is_set():
                    try:
                        out.put(graded, timeout=0.1)
                        break
                    except queue.Full:
                        await asyncio.sleep(0)
                if stop.is_set():
                    return

        def worker() -> None:
            try:
                asyncio.run(pump())
            except BaseException as e:  # surfaced to the consumer below
                out.put(e)
            else:
                out.put(end)

        thread = threading.Thread(target=worker, name="gradekit-engine", daemon=True)
        thread.start()
        try:
            while True:
                got = out.get()
                if got is end:
                    return
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.05)
            thread.join()
