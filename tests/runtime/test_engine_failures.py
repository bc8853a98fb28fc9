"""The engine when grading raises: only the row that raises fails, the others keep their results, in order."""

from __future__ import annotations

from typing import Any

import pytest

from gradekit.graders import Multi, StringCheck
from gradekit.runtime import engine
from gradekit.runtime.engine import Engine

GRADER = Multi(
    name="combo",
    graders={
        "a": StringCheck(name="a", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq"),
        "b": StringCheck(name="b", input="{{ sample.output_text }}", reference="x", operation="ne"),
    },
    calculate_output="0.5 * a + 0.5 * b",
)


def test_a_row_whose_grading_raises_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine.arun_batch
    calls: list[int] = []

    async def flaky(grader: Any, samples: Any, items: Any, *, env: Any = None) -> Any:
        calls.append(len(samples))
        if "boom" in samples:
            raise MemoryError("no room")
        return await real(grader, samples, items, env=env)

    monkeypatch.setattr(engine, "arun_batch", flaky)
    samples = ["y", "boom", "y", "x", "y"]
    items = [{"answer": "y"}] * 5
    eng = Engine(GRADER, chunk_size=3, concurrency=2)
    got = list(eng.stream(zip(samples, items, strict=True)))
    assert [g.index for g in got] == [0, 1, 2, 3, 4]
    assert [g.reward for g in got] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert [g.result.sub_rewards for g in got] == [
        {"a": 1.0, "b": 1.0},
        {"a": 0.0, "b": 0.0},
        {"a": 1.0, "b": 1.0},
        {"a": 0.0, "b": 0.0},
        {"a": 1.0, "b": 1.0},
    ]
    failed = got[1].result.metadata
    assert failed.errors.other_error is True
    assert failed.scores["error_details"] == {
        "combo": {"flag": "other_error", "message": "grading raised MemoryError: no room"}
    }
    assert not got[3].result.metadata.errors.other_error  # "x" fails `b` by its own logic, not by an error
    # the first chunk failed whole, then was graded row by row; the second chunk graded at once
    assert sorted(calls) == [1, 1, 1, 2, 3]
    assert eng.aggregate.summary()["count"] == 5
    assert eng.aggregate.summary()["errors"]["combo"]["other_error"]["count"] == 1
