"""The engine: streams in order or as completed, bounded in flight, aggregates as it goes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gradekit.graders import StringCheck, grader
from gradekit.runtime.engine import Engine

CHECK = StringCheck(name="eq", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq")


def pairs(n: int) -> list[tuple[str, dict[str, Any] | None]]:
    return [(str(i % 3), {"answer": "0"} if i % 5 else None) for i in range(n)]


def expected_reward(i: int) -> float:
    return 1.0 if i % 5 and i % 3 == 0 else 0.0


@pytest.mark.parametrize("ordered", [True, False])
def test_stream_grades_every_row(ordered: bool) -> None:
    engine = Engine(CHECK, chunk_size=7, concurrency=3, ordered=ordered)
    out = list(engine.stream(pairs(100)))
    assert len(out) == 100
    if ordered:
        assert [g.index for g in out] == list(range(100))
    assert sorted(g.index for g in out) == list(range(100))
    assert all(g.result.reward == expected_reward(g.index) for g in out)
    s = engine.aggregate.summary()
    assert s["count"] == 100
    assert s["errors"]["eq"]["invalid_variable_error"]["count"] == 20


def test_as_completed_overtakes_and_in_flight_is_bounded() -> None:
    in_flight = 0
    peak = 0

    @grader
    async def slow_first(sample: dict[str, Any]) -> float:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.2 if sample["output_text"] == "slow" else 0.001)
        in_flight -= 1
        return 1.0

    rows = [("slow", None)] + [("fast", None)] * 19
    engine = Engine(slow_first, chunk_size=1, concurrency=4, ordered=False)
    order = [g.index for g in engine.stream(rows)]
    assert order[0] != 0 and sorted(order) == list(range(20))
    assert peak <= 4
    ordered = Engine(slow_first, chunk_size=1, concurrency=4, ordered=True)
    assert [g.index for g in ordered.stream(rows)] == list(range(20))


def test_async_stream_from_async_source() -> None:
    async def source() -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        for p in pairs(30):
            await asyncio.sleep(0)
            yield p

    async def main() -> list[float]:
        engine = Engine(CHECK, chunk_size=4)
        return [g.result.reward async for g in engine.astream(source())]

    assert asyncio.run(main()) == [expected_reward(i) for i in range(30)]


def test_consumer_can_stop_early() -> None:
    engine = Engine(CHECK, chunk_size=5, concurrency=2)
    rng = random.Random(0)
    stream = engine.stream((str(rng.random()), {"answer": "x"}) for _ in range(10_000))
    first = [next(stream) for _ in range(12)]
    stream.close()
    assert [g.index for g in first] == list(range(12))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Engine(CHECK, chunk_size=0)


def test_backend_grades_the_chunks() -> None:
    from gradekit.graders import BatchResult, Grader, run_batch
    from gradekit.graders.samples import SampleInput

    seen: list[int] = []

    class Doubling:
        """A backend that grades in-process and records chunk sizes (what a remote backend would receive)."""

        async def grade(self, grader: Grader, samples: list[SampleInput], items: list[Any]) -> BatchResult:
            seen.append(len(samples))
            return run_batch(grader, samples, items)

    engine = Engine(CHECK, chunk_size=4, concurrency=2, backend=Doubling())
    out = list(engine.stream(pairs(10)))
    assert [g.result.reward for g in out] == [expected_reward(i) for i in range(10)]
    assert sorted(seen) == [2, 4, 4]


def test_unknown_backend_is_a_clear_error() -> None:
    from gradekit.runtime.engine import load_backend

    with pytest.raises(ValueError, match="unknown grading backend 'nope'"):
        load_backend("nope:x", CHECK)
