"""Extensions export to OpenAI-accepted `python` graders that give the same rewards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.graders import PythonGrader as OAPythonGrader

from gradekit.graders import FunctionGrader, Multi, StringCheck, ToolCall, grader, run_batch
from gradekit.graders.export import ExportError, to_openai

from .sample_graders import exact_answer


@grader
async def async_len(sample: dict[str, Any]) -> float:
    return min(1.0, len(sample["output_text"]) / 10)


@grader
def uses_json(sample: dict[str, Any], item: dict[str, Any]) -> dict[str, float]:
    return {"reward": 1.0 if json.dumps(sample["output_json"]) == item["dumped"] else 0.0}


SAMPLES = ['{"a": 1}', "hello world!", "x"]
ITEMS = [
    {"answer": '{"a": 1}', "dumped": '{"a": 1}'},
    {"answer": "no", "dumped": "{}"},
    {"answer": "x", "dumped": "{}"},
]


@pytest.mark.parametrize("g", [exact_answer, async_len, uses_json], ids=lambda g: g.name)
def test_function_graders_export_and_agree(g: FunctionGrader) -> None:
    exported = to_openai(g)
    assert exported["type"] == "python"
    OAPythonGrader.model_validate(exported)
    assert run_batch(exported, SAMPLES, ITEMS).rewards == run_batch(g, SAMPLES, ITEMS).rewards


def test_tool_call_exports_and_agrees() -> None:
    g = ToolCall(name="tools", expected="{{ item.calls }}", arguments="subset")
    exported = to_openai(g)
    OAPythonGrader.model_validate(exported)
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1, "y": 2}'}}
    samples = [{"output_text": "", "output_tools": [call]}, {"output_text": "", "output_tools": []}]
    items = [{"calls": [{"name": "f", "arguments": {"x": 1}}]}] * 2
    assert run_batch(exported, samples, items).rewards == run_batch(g, samples, items).rewards == [1.0, 0.0]


def test_multi_exports_sub_graders() -> None:
    m = Multi(
        name="m",
        graders={
            "exact": exact_answer,
            "check": StringCheck(name="check", input="{{ sample.output_text }}", reference="x", operation="eq"),
        },
        calculate_output="exact + check",
    )
    exported = to_openai(m)
    assert exported["graders"]["exact"]["type"] == "python"
    assert exported["graders"]["check"]["type"] == "string_check"
    assert run_batch(exported, SAMPLES, ITEMS).rewards == run_batch(m, SAMPLES, ITEMS).rewards


CONSTANT = 3


def test_unexportable_functions_say_why() -> None:
    @grader
    def closure(sample: dict[str, Any]) -> float:
        return float(CONSTANT > 0 and bool(SAMPLES))

    with pytest.raises(ExportError, match="global 'CONSTANT'"):
        to_openai(closure)
    lam = FunctionGrader.from_function(lambda sample, item: 1.0, name="lam")
    with pytest.raises(ExportError, match="lambdas"):
        to_openai(lam)
    factor = 2.0

    @grader
    def enclosed(sample: dict[str, Any]) -> float:
        return factor

    with pytest.raises(ExportError, match="enclosing function"):
        to_openai(enclosed)
    with pytest.raises(ExportError, match="single"):
        to_openai(ToolCall(name="t", expected="calls: {{ item.calls }}"))
