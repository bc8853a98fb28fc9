"""Python function graders (`@grader`) and `python` JSON graders run in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gradekit.graders import FunctionGrader, PythonGrader, Score, grader, load_grader, run, run_batch


@grader
def has_explanation(sample: dict[str, Any], item: dict[str, Any]) -> float:
    return 1.0 if sample["output_json"].get("explanation") else 0.0


def test_decorator_names_and_calls_through() -> None:
    assert isinstance(has_explanation, FunctionGrader)
    assert has_explanation.name == "has_explanation"
    assert has_explanation({"output_json": {"explanation": "x"}}, {}) == 1.0
    assert run(has_explanation, '{"explanation": "policy"}').reward == 1.0
    assert run(has_explanation, '{"explanation": ""}').reward == 0.0


def test_arguments_by_name_and_custom_name() -> None:
    @grader(name="len_reward")
    def only_sample(sample: dict[str, Any]) -> float:
        return len(sample["output_text"]) / 10

    assert only_sample.name == "len_reward"
    assert run(only_sample, "abcde").reward == 0.5

    @grader
    def reversed_names(item: dict[str, Any], sample: dict[str, Any]) -> float:
        return 1.0 if item["a"] == sample["output_text"] else 0.0

    assert run(reversed_names, "x", {"a": "x"}).reward == 1.0


def test_bad_signature_fails_at_decoration() -> None:
    with pytest.raises(TypeError, match="must take \\(sample, item\\)"):

        @grader
        def three(a: Any, b: Any, c: Any) -> float:
            return 0.0


def test_async_functions_run_concurrently() -> None:
    active = 0
    peak = 0

    @grader
    async def slow(sample: dict[str, Any], item: dict[str, Any]) -> float:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return 1.0

    res = run_batch(slow, ["a"] * 20)
    assert res.rewards == [1.0] * 20
    assert peak == 20


def test_sub_scores() -> None:
    @grader
    def scored(sample: dict[str, Any], item: dict[str, Any]) -> Score:
        return Score(0.75, {"format": 1.0, "accuracy": 0.5})

    @grader
    def as_mapping(sample: dict[str, Any], item: dict[str, Any]) -> dict[str, float]:
        return {"reward": 0.25, "length": 3}

    r = run(scored, "x")
    assert r.reward == 0.75
    assert r.metadata.scores == {"format": 1.0, "accuracy": 0.5}
    r = run(as_mapping, "x")
    assert (r.reward, r.metadata.scores) == (0.25, {"length": 3})


@pytest.mark.parametrize(
    ("returns", "flag"),
    [
        (float("nan"), "python_grader_runtime_error"),
        (float("inf"), "python_grader_runtime_error"),
        ("1.0", "python_grader_runtime_error"),
        (True, "python_grader_runtime_error"),
        ({"score": 1}, "python_grader_runtime_error"),
    ],
)
def test_bad_return_values_are_flagged(returns: Any, flag: str) -> None:
    g = FunctionGrader.from_function(lambda sample, item: returns, name="bad")
    r = run(g, "x")
    assert r.reward == 0.0
    assert r.errors.flags() == [flag]


def test_none_is_no_reward_not_an_error() -> None:
    # None says the grader does not apply (docs/no-reward.md): reward 0 on the wire, no flag, no_reward set.
    g = FunctionGrader.from_function(lambda sample, item: None, name="n_a")
    r = run(g, "x")
    assert (r.reward, r.errors.flags(), r.rewarded) == (0.0, [], False)
    assert r.metadata.no_reward is not None
    assert r.metadata.no_reward.model_dump() == {"reason": "not_applicable", "graders": {"n_a": "not_applicable"}}


def test_exception_is_runtime_error_with_traceback() -> None:
    @grader
    def boom(sample: dict[str, Any], item: dict[str, Any]) -> float:
        raise KeyError("answer")

    res = run_batch(boom, ["a", "b"])
    assert res.rewards == [0.0, 0.0]
    r = res[0]
    assert r.errors.python_grader_runtime_error
    assert "KeyError" in (r.errors.python_grader_runtime_error_details or "")
    assert "boom" in (r.errors.python_grader_runtime_error_details or "")


def test_function_grader_json_round_trip() -> None:
    g = load_grader("tests.sample_graders:exact_answer")
    data = g.to_json()
    assert data == {
        "type": "function",
        "name": "exact_answer",
        "function": "tests.sample_graders:exact_answer",
    }
    again = load_grader(data)
    assert run(again, "a", {"answer": "a"}).reward == 1.0
    plain = load_grader("tests.sample_graders:plain_length_reward")
    assert run(plain, "abc").reward == 0.25


PY_SOURCE = """
import json

def grade(sample, item):
    data = sample["output_json"]
    return 1.0 if data.get("answer") == item["answer"] else 0.0
"""


def test_python_json_grader_in_process() -> None:
    g = PythonGrader(name="py", source=PY_SOURCE)
    assert run(g, '{"answer": 4}', {"answer": 4}).reward == 1.0
    assert run(g, '{"answer": 5}', {"answer": 4}).reward == 0.0
    r = run(g, '{"answer": 4}', {})
    assert r.errors.flags() == ["python_grader_runtime_error"]
    assert "KeyError" in (r.errors.python_grader_runtime_error_details or "")
    r = run(PythonGrader(name="p", source="def grade(s, i):\n    return 'x'"), "x")
    assert r.errors.flags() == ["python_grader_runtime_error"]
