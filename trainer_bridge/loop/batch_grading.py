"""Grading during training: a background event loop, one re-grade of what got no reward, per-grader error and
no-reward tables, and how a batch is cut into parts."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from gradekit.graders import BatchResult, Grader
from gradekit.graders.errors import ERROR_FLAGS
from gradekit.graders.samples import SampleInput
from gradekit.runtime.engine import Engine

__all__ = ["BackgroundGrader", "error_table", "grader_names", "no_reward_table", "split_range"]


class BackgroundGrader:
    """An event loop in a thread that grades chunks while the main thread goes on generating."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gradekit-rft-grading", daemon=True)
        self.thread.start()

    def submit(self, samples: list[SampleInput], items: list[Any]) -> Future[tuple[BatchResult, float]]:
        """Start grading; the future holds the result and the seconds grading took."""

        async def grade() -> tuple[BatchResult, float]:
            start = time.perf_counter()
            result = await self.engine.grade(list(samples), items)
            return result, time.perf_counter() - start

        return asyncio.run_coroutine_threadsafe(grade(), self.loop)

    def regrade(
        self, samples: Sequence[SampleInput], items: Sequence[Any], result: BatchResult
    ) -> tuple[BatchResult, float]:
        """`result` with every sample that got no reward graded once more (blocks); and the seconds it took."""
        again = [i for i in range(len(result)) if result.no_reward(i) is not None]
        if not again:
            return result, 0.0
        second, seconds = self.submit([samples[i] for i in again], [items[i] for i in again]).result()
        return result.with_rows(again, second), seconds

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def grader_names(grader: Grader) -> list[str]:
    """The grader's name, then its sub-graders' names for a `multi`."""
    subs = getattr(grader, "graders", None)
    if isinstance(subs, dict):
        return [grader.name, *subs]
    return [grader.name]


def error_table(summary: dict[str, Any], names: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Every grader's count and rate of every error flag (zeros included), as `event.data.errors` holds them."""
    seen = summary["errors"]
    zero = {"count": 0, "rate": 0.0}
    return {g: {flag: dict(seen.get(g, {}).get(flag, zero)) for flag in ERROR_FLAGS} for g in [*names, *seen]}


def no_reward_table(summary: dict[str, Any], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Every grader's count and rate of samples it gave no reward (zeros included), as `event.data.no_reward`."""
    seen = summary["no_reward"]
    zero = {"count": 0, "rate": 0.0}
    return {g: dict(seen.get(g, zero)) for g in [*names, *seen]}


def split_range(n: int, parts: int) -> list[range]:
    """`range(n)` cut into at most `parts` contiguous, non-empty pieces."""
    parts = max(1, min(parts, n))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]
