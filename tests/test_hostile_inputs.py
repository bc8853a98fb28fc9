"""Hostile samples and grader definitions: each is one flagged sample (or a validation error), never an exception.

A policy under optimisation writes the samples and grader JSON arrives over an HTTP API, so every test here
checks the exact reward and flag of the hostile sample *and* the exact rewards of the ordinary samples
graded in the same batch.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

import gradekit.graders.formula as formula_module
import gradekit.graders.similarity as similarity_module
from gradekit.graders import (
    BatchResult,
    Env,
    Grader,
    GraderValidationError,
    LabelModel,
    ModelGrade,
    Multi,
    RunResult,
    Score,
    ScoreModel,
    StringCheck,
    TextSimilarity,
    ToolCall,
    grader,
    load_grader,
    run,
    run_batch,
    validate,
)
from gradekit.graders.aggregate import Aggregate
from gradekit.graders.batch import Batch
from gradekit.graders.export import to_openai
from gradekit.graders.frozen import FrozenDict, FrozenList, freeze
from gradekit.graders.limits import (
    MAX_FORMULA_CHARS,
    MAX_JSON_DEPTH,
    MAX_RENDERED_CHARS,
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_STEPS,
)
from gradekit.graders.results import Outcome
from gradekit.graders.safety import describe, exception_text, json_nesting_exceeds, json_safe, loads_json
from gradekit.graders.samples import TOO_DEEP_MESSAGE, UnparsedJSON, parse_json_output
from gradekit.graders.template_env import bounded_environment

T = TypeVar("T")

DEEP_BRACKETS = "[" * 3000 + "]" * 3000
DEEP_OBJECT = '{"a":' * 100_000
SURROGATE = "\ud800"
RUNTIME = "python_grader_runtime_error"


def deep_dict(levels: int, leaf: Any = 1) -> dict[str, Any]:
    """{"a": {"a": ... leaf}} nested `levels` deep (built without recursion)."""
    value: Any = leaf
    for _ in range(levels):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


def flags(result: BatchResult) -> list[list[str]]:
    return [result.error_flags(i) for i in range(len(result))]


def message(result: RunResult, name: str) -> str:
    return str(result.metadata.scores["error_details"][name]["message"])


def assert_encodable(result: RunResult | BatchResult) -> None:
    """Every result serialises as strict JSON that encodes as UTF-8."""
    for r in result if isinstance(result, BatchResult) else [result]:
        r.model_dump_json().encode("utf-8")
        json.dumps(r.model_dump(mode="json"), allow_nan=False, ensure_ascii=False).encode("utf-8")


def check(input: str = "{{ sample.output_text }}", reference: str = "{{ item.answer }}", op: str = "eq") -> StringCheck:
    return StringCheck(name="check", input=input, reference=reference, operation=op)  # type: ignore[arg-type]


def peak_bytes(fn: Callable[[], T]) -> tuple[T, int]:
    """`fn()` and the peak memory it allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        value = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return value, peak


def validation_peak(spec: dict[str, Any]) -> int:
    """Peak memory of a validation that must fail."""

    def attempt() -> None:
        with pytest.raises(GraderValidationError):
            validate(spec)

    return peak_bytes(attempt)[1]


class FakeJudge:
    """A model client answering each rendered message list with the next canned grade."""

    def __init__(self, grades: Sequence[ModelGrade]) -> None:
        self.grades = list(grades)
        self.seen: list[list[dict[str, Any]]] = []

    async def grade(
        self, grader: ScoreModel | LabelModel, messages: Sequence[list[dict[str, Any]]]
    ) -> list[ModelGrade]:
        self.seen.extend(messages)
        out, self.grades = self.grades[: len(messages)], self.grades[len(messages) :]
        return out


# --- 1. deep nesting ----------------------------------------------------------------------------------


def test_deep_json_answers_leave_output_json_empty_and_flag_only_their_sample() -> None:
    g = check(input="{{ sample.output_json.answer }}")
    samples = ['{"answer": "4"}', DEEP_BRACKETS, DEEP_OBJECT, '{"answer": "5"}', '{"answer": "4"}']
    r = run_batch(g, samples, [{"answer": "4"}] * 5)
    assert r.rewards == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert flags(r) == [[], ["sample_parse_error"], ["sample_parse_error"], [], []]
    assert f"MAX_JSON_DEPTH ({MAX_JSON_DEPTH})" in message(r[1], "check")
    assert r[1].metadata.scores["output_json_error"] == TOO_DEEP_MESSAGE
    assert "output_json_error" not in r[0].metadata.scores
    assert_encodable(r)


def test_deep_json_answers_are_still_graded_as_text() -> None:
    r = run_batch(check(), [DEEP_BRACKETS, "x", DEEP_OBJECT], [{"answer": DEEP_BRACKETS}, {"answer": "x"}, {}])
    assert r.rewards == [1.0, 1.0, 0.0]
    assert flags(r) == [[], [], ["invalid_variable_error"]]  # the third item has no answer
    # a template reading output_json sees {}, as for any output that is not JSON
    r = run_batch(check(input="{{ sample.output_json }}", reference="{}"), [DEEP_BRACKETS, "not json", "[1]"])
    assert r.rewards == [1.0, 1.0, 0.0]
    assert flags(r) == [[], [], []]


def test_deep_json_in_jinja_templates_and_sample_dicts() -> None:
    g = check(input="{{ sample.output_json.answer | upper }}", reference="A")
    r = run_batch(g, [DEEP_BRACKETS, '{"answer": "a"}', {"output_text": DEEP_OBJECT}], [None] * 3)
    assert r.rewards == [0.0, 1.0, 0.0]
    assert flags(r) == [["sample_parse_error"], [], ["sample_parse_error"]]
    defaulted = check(input="{{ sample.output_json.answer | default('none') }}", reference="none")
    assert run_batch(defaulted, [DEEP_BRACKETS, "{}"]).rewards == [1.0, 1.0]


def test_bounded_json_parsing() -> None:
    assert parse_json_output(DEEP_BRACKETS) == {}
    assert type(parse_json_output(DEEP_BRACKETS)) is UnparsedJSON
    assert type(parse_json_output(DEEP_OBJECT)) is UnparsedJSON
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert not json_nesting_exceeds(ok)
    assert json_nesting_exceeds("[" + ok + "]")
    # brackets inside strings (escaped quotes too) do not count
    in_string = '["' + "[{" * 5000 + '\\"' + '"]'
    assert not json_nesting_exceeds(in_string)
    assert parse_json_output(in_string) == ["[{" * 5000 + '"']
    with pytest.raises(ValueError, match="MAX_JSON_DEPTH"):
        loads_json(DEEP_BRACKETS)
    assert parse_json_output('{"n": ' + "9" * 5000 + "}") == {}  # more digits than Python reads


DEEP = deep_dict(5000)


async def _no_model(*_: Any) -> None:  # pragma: no cover - never called
    raise AssertionError


@grader
def knows_item_a(sample: dict[str, Any], item: dict[str, Any]) -> float:
    return 1.0 if "a" in item and sample["output_text"] == "x" else 0.0


def test_deep_python_items_and_samples_through_every_grader_type() -> None:
    samples: list[Any] = ["x", "x", {"output_text": "x", "output_json": DEEP}, "x"]
    items: list[Any] = [{"a": "x"}, {"a": DEEP}, {"a": "x"}, {"a": "y"}]
    env = Env(model=FakeJudge([ModelGrade(result=1.0, model="m")] * 4))

    r = run_batch(check(reference="{{ item.a }}"), samples, items, env=env)
    assert r.rewards == [1.0, 0.0, 1.0, 0.0]
    assert flags(r) == [[], ["invalid_variable_error"], [], []]
    assert "MAX_JSON_DEPTH" in message(r[1], "check")

    r = run_batch(check(reference="{{ item.a }}{{ '' }}"), samples, items, env=env)  # the jinja2 path
    assert r.rewards == [1.0, 0.0, 1.0, 0.0]
    assert flags(r) == [[], ["invalid_variable_error"], [], []]

    sim = TextSimilarity(
        name="sim", input="{{ sample.output_text }}", reference="{{ item.a }}", evaluation_metric="fuzzy_match"
    )
    r = run_batch(sim, samples, items, env=env)
    assert r.rewards == [1.0, 0.0, 1.0, 0.0]
    assert flags(r) == [[], ["invalid_variable_error"], [], []]

    py = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0 if 'a' in item else 0.5"}
    r = run_batch(py, samples, items, env=env)
    assert r.rewards == [1.0, 0.0, 0.0, 1.0]
    assert flags(r) == [[], ["invalid_variable_error"], ["sample_parse_error"], []]

    r = run_batch(knows_item_a, samples, items, env=env)  # in-process: the deep copy is fine
    assert r.rewards == [1.0, 1.0, 1.0, 1.0]
    assert flags(r) == [[], [], [], []]

    judge = ScoreModel(name="judge", model="m", input=[{"role": "user", "content": "{{ item.a }}"}])  # type: ignore[list-item]
    r = run_batch(judge, samples, items, env=env)
    assert r.rewards == [1.0, 0.0, 1.0, 1.0]
    assert flags(r) == [[], ["invalid_variable_error"], [], []]

    multi = Multi(
        name="m", graders={"c": check(reference="{{ item.a }}"), "f": knows_item_a}, calculate_output="(c + f) / 2"
    )
    r = run_batch(multi, samples, items, env=env)
    assert r.rewards == [1.0, 0.0, 1.0, 0.5]
    assert flags(r) == [[], ["invalid_variable_error"], [], []]
    assert_encodable(r)


@pytest.mark.parametrize(
    "template",
    [
        "{{ item.a | string }}",
        "{{ item.a ~ '' }}",
        "{{ '%s' % (item.a,) }}",
        "{{ '{}'.format(item.a) }}",
        "{{ [item.a] | join }}",
        "{{ item.a | lower }}",
        "{{ [item.a] | sort | first }}{{ '' }}",
    ],
)
def test_deep_values_printed_by_jinja2_are_invalid_variables(template: str) -> None:
    r = run_batch(check(input=template, reference="x"), ["x", "x", "x"], [{"a": DEEP}, {"a": "x"}, {"a": "y"}])
    assert r.rewards == [0.0, 1.0, 0.0]
    assert flags(r) == [["invalid_variable_error"], [], []]
    assert f"MAX_JSON_DEPTH ({MAX_JSON_DEPTH})" in message(r[0], "check")


def test_deep_tool_call_arguments() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    deep_call = {"type": "function", "function": {"name": "f", "arguments": DEEP}}
    text_call = {"type": "function", "function": {"name": "f", "arguments": '{"x":' * 50_000}}
    samples = [{"output_text": "", "output_tools": [c]} for c in (call, deep_call, text_call, call)]
    expected = [{"name": "f", "arguments": {"x": 1}}]
    items = [{"expected_tool_calls": expected}] * 3 + [{"expected_tool_calls": [{"name": "f", "arguments": DEEP}]}]
    r = run_batch(ToolCall(name="tools"), samples, items)
    assert r.rewards == [1.0, 0.0, 0.0, 0.0]
    assert flags(r) == [[], ["sample_parse_error"], ["sample_parse_error"], ["invalid_variable_error"]]
    assert_encodable(r)


def test_deep_grader_definitions_are_validation_errors() -> None:
    spec = {
        "type": "score_model",
        "name": "j",
        "model": "m",
        "input": [{"role": "user", "content": {"text": "x", "x": DEEP}}],
    }
    with pytest.raises(GraderValidationError, match="MAX_JSON_DEPTH"):
        validate(spec)
    with pytest.raises(GraderValidationError, match="MAX_JSON_DEPTH"):
        load_grader('{"type": "string_check", "name": ' + "[" * 100_000)
    nested_template = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
    with pytest.raises(GraderValidationError, match="nests too deeply"):
        validate({"type": "string_check", "name": "s", "input": nested_template, "reference": "", "operation": "eq"})
    with pytest.raises(GraderValidationError, match="nested too deeply"):
        validate(
            {"type": "multi", "name": "m", "graders": {"a": check().to_json()}, "calculate_output": "(" * 5000 + "a"}
        )


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {"type": "python", "name": "p", "source": "def grade(s, i):\n    return " + "-" * 100_000 + "1"},
            "nests too deeply",
        ),
        (
            {"type": "python", "name": "p", "source": "def grade(s, i):\n    return x" + "[0]" * 60_000},
            "nests too deeply",
        ),
        (
            {"type": "python", "name": "p", "source": "def grade(s, i):\n    return '" + SURROGATE + "'"},
            "does not parse",
        ),
        ({"sampling_params": {"seed": 10**5000}}, "sampling_params.seed"),
        (
            {"sampling_params": {"temperature": math.nan}},
            "sampling_params.temperature: Input should be a finite number",
        ),
        ({"sampling_params": {"max_completions_tokens": 2**40}}, "sampling_params.max_completions_tokens"),
        ({"pass_threshold": math.inf}, "pass_threshold: Input should be a finite number"),
        ({"range": [0, 10**400]}, "range.1"),
    ],
)
def test_hostile_definitions_are_validation_errors(spec: dict[str, Any], problem: str) -> None:
    judge = {"type": "score_model", "name": "j", "model": "m", "input": [{"role": "user", "content": "x"}]}
    with pytest.raises(GraderValidationError) as excinfo:
        validate(spec if spec.get("type") == "python" else judge | spec)
    assert problem in "\n".join(excinfo.value.problems)


def test_deep_scores_are_cut_in_results() -> None:
    @grader
    def deep_scores(sample: dict[str, Any], item: dict[str, Any]) -> Score:
        return Score(0.5, {"deep": DEEP, "nan": math.nan, "big": 10**5000})

    r = run(deep_scores, "x")
    assert r.reward == 0.5
    assert_encodable(r)
    scores = r.metadata.scores
    assert scores["nan"] is None and scores["big"] == "<int of 16610 bits>"
    level, depth = scores["deep"], 1
    while isinstance(level, dict):
        level, depth = level["a"], depth + 1
    assert level == f"<nested deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels>"
    assert depth == MAX_JSON_DEPTH


# --- 2. numbers that do not convert ----------------------------------------------------------------------

PY_NUMBERS = """
def grade(sample, item):
    t = sample["output_text"]
    if t == "big":
        return 10 ** 4000
    if t == "digits":
        return int("9" * 5000)
    if t == "nan":
        return float("nan")
    return 0.25
"""


def test_python_grader_numbers_that_do_not_convert() -> None:
    r = run_batch(
        {"type": "python", "name": "py", "source": PY_NUMBERS}, ["ok", "big", "digits", "nan", "ok"], env=Env()
    )
    assert r.rewards == [0.25, 0.0, 0.0, 0.0, 0.25]
    assert flags(r) == [[], [RUNTIME], [RUNTIME], [RUNTIME], []]
    assert "OverflowError" in message(r[1], "py") and "13,288 bits" in message(r[1], "py")
    assert "4300 digits" in message(r[2], "py")
    assert_encodable(r)


class _BadFloat(float):
    def __float__(self) -> float:
        raise RuntimeError("no float for you")


def test_function_grader_values_and_errors_that_do_not_convert() -> None:
    @grader
    def hostile(sample: dict[str, Any], item: dict[str, Any]) -> Any:
        kind = sample["output_text"]
        if kind == "big":
            return 10**4000
        if kind == "mapping":
            return {"reward": 10**400, 10**5000: 1}
        if kind == "bad-float":
            return _BadFloat(1.0)
        if kind == "unprintable-error":
            raise ValueError(10**5000)
        if kind == "exit":
            raise SystemExit(3)
        return 0.75

    kinds = ["ok", "big", "mapping", "bad-float", "unprintable-error", "exit", "ok"]
    r = run_batch(hostile, kinds)
    assert r.rewards == [0.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.75]
    assert flags(r) == [[], *[[RUNTIME]] * 5, []]
    assert message(r[4], "hostile") == "ValueError: <the exception's message could not be printed>"
    assert message(r[5], "hostile") == "SystemExit: 3"
    assert_encodable(r)


def test_multi_with_a_sub_reward_that_does_not_convert() -> None:
    @grader
    def sometimes_huge(sample: dict[str, Any], item: dict[str, Any]) -> float:
        return 10**4000 if sample["output_text"] == "huge" else 1.0

    m = Multi(name="m", graders={"a": sometimes_huge, "b": check()}, calculate_output="0.5 * a + 0.5 * b")
    r = run_batch(m, ["x", "huge", "y"], [{"answer": "x"}, {"answer": "huge"}, {"answer": "x"}])
    assert r.rewards == [1.0, 0.0, 0.5]
    assert flags(r) == [[], [RUNTIME], []]
    assert r.sub_rewards == {"a": [1.0, 0.0, 1.0], "b": [1.0, 1.0, 0.0]}


def test_score_model_replies_that_are_not_finite_numbers() -> None:
    replies: list[Any] = [0.7, 10**400, "high", math.nan, math.inf, None, 0.2]
    judge = FakeJudge([ModelGrade(result=v, model="m") for v in replies])
    g = ScoreModel(name="judge", model="m", input=[{"role": "user", "content": "{{ sample.output_text }}"}])  # type: ignore[list-item]
    r = run_batch(g, ["s"] * len(replies), env=Env(model=judge))
    assert r.rewards == [0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2]
    assert [x.metadata.scores["result"] for x in r] == [0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2]
    assert flags(r) == [[]] * len(replies)
    assert_encodable(r)


def test_a_similarity_metric_failing_on_one_pair_fails_only_that_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(inputs: Sequence[str], references: Sequence[str]) -> list[float]:
        if "boom" in inputs:
            raise ValueError("the metric choked")
        return [math.nan if x == "nan" else 2.0 if x == "two" else 0.5 for x in inputs]

    monkeypatch.setitem(similarity_module._scorers, "fuzzy_match", flaky)
    g = TextSimilarity(name="sim", input="{{ sample.output_text }}", reference="r", evaluation_metric="fuzzy_match")
    r = run_batch(g, ["a", "boom", "nan", "two", "b"])
    assert r.rewards == [0.5, 0.0, 0.0, 0.0, 0.5]
    assert flags(r) == [[], ["other_error"], ["other_error"], ["other_error"], []]
    assert message(r[1], "sim") == "fuzzy_match: ValueError: the metric choked"
    assert message(r[2], "sim") == "fuzzy_match gave nan, not in [0, 1]"
    assert message(r[3], "sim") == "fuzzy_match gave 2.0, not in [0, 1]"


def test_printing_helpers_survive_hostile_values() -> None:
    assert describe(10**5000) == "<int of 16610 bits>"
    assert describe(DEEP).startswith("{'a': {'a': {'a':")
    assert len(describe("x" * 10**6)) <= 200
    assert exception_text(ValueError(10**5000)) == "ValueError: <the exception's message could not be printed>"
    assert json_safe({1: math.inf, "s": SURROGATE, (1, 2): {3}}) == {"1": None, "s": "\ufffd", "(1, 2)": [3]}


# --- 3. lone surrogates ------------------------------------------------------------------------------------


def test_surrogates_in_answers_items_names_and_messages_stay_utf8() -> None:
    name = "check" + SURROGATE
    g = StringCheck(name=name, input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="like")
    r = run_batch(g, ["a" + SURROGATE, "b", "c"], [{"answer": "a"}, {"answer": SURROGATE}, {"missing": SURROGATE}])
    assert r.rewards == [1.0, 0.0, 0.0]
    assert flags(r) == [[], [], ["invalid_variable_error"]]
    assert r[0].metadata.name == "check\ufffd"
    assert list(r[2].metadata.scores["error_details"]) == ["check\ufffd"]
    assert_encodable(r)
    json.dumps(g.to_json(), ensure_ascii=False).encode("utf-8")
    assert g.to_json()["name"] == "check\ufffd"


def test_surrogates_in_user_code_errors_and_jinja2() -> None:
    @grader
    def raises(sample: dict[str, Any], item: dict[str, Any]) -> float:
        if sample["output_text"] == "boom":
            raise ValueError("bad " + SURROGATE)
        return 1.0

    r = run_batch(raises, ["ok", "boom"])
    assert r.rewards == [1.0, 0.0]
    assert message(r[1], "raises") == "ValueError: bad \ufffd"
    assert r[1].errors.python_grader_runtime_error_details is not None
    assert SURROGATE not in r[1].errors.python_grader_runtime_error_details
    assert_encodable(r)

    py = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return sample['output_text']"}
    r = run_batch(py, [SURROGATE, "x"], env=Env())
    assert r.rewards == [0.0, 0.0] and flags(r) == [[RUNTIME], [RUNTIME]]
    assert_encodable(r)

    j = check(input="{{ sample.output_text | upper }}{{ item.x }}", reference="A" + SURROGATE + "1")
    r = run_batch(j, ["a" + SURROGATE, "a", "a" + SURROGATE], [{"x": 1}, {"x": 1}, {}])
    assert r.rewards == [1.0, 0.0, 0.0]
    assert flags(r) == [[], [], ["invalid_variable_error"]]
    assert_encodable(r)


def test_surrogates_in_similarity_tool_calls_multi_keys_and_summaries() -> None:
    sim = TextSimilarity(
        name="sim", input="{{ sample.output_text }}", reference="{{ item.answer }}", evaluation_metric="fuzzy_match"
    )
    r = run_batch(sim, [SURROGATE * 4, "abcd"], [{"answer": SURROGATE * 4}, {"answer": "abcd"}])
    assert r.rewards == [1.0, 1.0] and flags(r) == [[], []]

    tools = ToolCall(name="tools")
    call = {"type": "function", "function": {"name": "f" + SURROGATE, "arguments": '{"x": "\\ud800"}'}}
    r = run_batch(
        tools,
        [{"output_text": "", "output_tools": [call]}] * 2,
        [{"expected_tool_calls": [{"name": "g", "arguments": {}}]}] * 2,
    )
    assert r.rewards == [0.0, 0.0]
    assert_encodable(r)

    key = "k" + SURROGATE
    m = Multi(name="m" + SURROGATE, graders={"a": check(), key: check(op="ne")}, calculate_output="a")
    r = run_batch(m, ["x", "y"], [{"answer": "x"}, {"answer": "x"}])
    assert r.rewards == [1.0, 0.0]
    assert r[0].sub_rewards == {"a": 1.0, "k\ufffd": 0.0}
    assert_encodable(r)
    json.dumps(to_openai(m), ensure_ascii=False).encode("utf-8")
    aggregate = Aggregate()
    aggregate.add_batch(r)
    json.dumps(aggregate.summary(), ensure_ascii=False, allow_nan=False).encode("utf-8")

    with pytest.raises(GraderValidationError) as excinfo:
        validate(
            {
                "type": "string_check",
                "name": "x",
                "input": "{{ foo" + SURROGATE + " }}",
                "reference": "",
                "operation": "eq",
            }
        )
    "\n".join(excinfo.value.problems).encode("utf-8")
    str(excinfo.value).encode("utf-8")


# --- 4. graders cannot change the caller's data --------------------------------------------------------------


def test_templates_cannot_rewrite_items() -> None:
    tpl = "{% set _ = item.update({'answer': sample.output_text}) %}{{ sample.output_text }}"
    items = [{"answer": "right"}, {"answer": "right"}, {"answer": "x"}]
    before = copy.deepcopy(items)
    r = run_batch(check(input=tpl), ["wrong", "also wrong", "x"], items)
    assert r.rewards == [0.0, 0.0, 0.0]
    assert flags(r) == [["other_error"]] * 3  # the sandbox refuses the call, for every sample
    assert "unsafe" in message(r[0], "check")
    assert items == before
    samples: list[Any] = [{"output_text": "x", "output_json": {"answer": "x", "list": [1]}}]
    for tpl in ("{{ sample.output_json.update(answer='y') }}", "{{ sample.output_json.list.append(2) }}"):
        r = run_batch(check(input=tpl, reference=""), samples, [{}])
        assert r.rewards == [0.0] and flags(r) == [["other_error"]]
    assert samples == [{"output_text": "x", "output_json": {"answer": "x", "list": [1]}}]
    # a template that only reads is unaffected
    assert run_batch(check(input="{{ sample.output_text | trim }}"), ["right ", "x"], items[1:]).rewards == [1.0, 1.0]


def test_function_and_python_graders_cannot_change_the_callers_data() -> None:
    @grader
    def vandal(sample: dict[str, Any], item: dict[str, Any]) -> float:
        what = item["what"]
        if what == "set":
            item["answer"] = sample["output_text"]
        elif what == "nested":
            item["tags"].append("x")
        elif what == "sample":
            sample["output_json"]["answer"] = "x"
        elif what == "bypass":  # around the guard: changes only the grader's own copy
            dict.__setitem__(item, "answer", sample["output_text"])
            list.append(item["tags"], "x")
            return 1.0
        return 0.5

    items = [
        {"what": "set", "answer": "a", "tags": []},
        {"what": "nested", "answer": "a", "tags": ["t"]},
        {"what": "sample", "answer": "a", "tags": []},
        {"what": "bypass", "answer": "a", "tags": []},
        {"what": "read", "answer": "a", "tags": []},
    ]
    samples: list[Any] = ["x", "x", {"output_text": "x", "output_json": {"answer": "a"}}, "x", "a"]
    before_items, before_samples = copy.deepcopy(items), copy.deepcopy(samples)
    m = Multi(name="m", graders={"v": vandal, "c": check(input="{{ sample.output_text }}")}, calculate_output="v")
    r = run_batch(m, samples, items)
    assert r.rewards == [0.0, 0.0, 0.0, 1.0, 0.5]
    assert flags(r) == [[RUNTIME], [RUNTIME], [RUNTIME], [], []]
    assert "read-only" in message(r[0], "vandal")
    assert r.sub_rewards["c"] == [0.0, 0.0, 0.0, 0.0, 1.0]  # the string_check saw the original answers
    assert items == before_items and samples == before_samples

    source = "def grade(sample, item):\n    item['answer'] = sample['output_text']\n    return 1.0"
    r = run_batch({"type": "python", "name": "py", "source": source}, ["x", "y"], items[:2], env=Env())
    assert r.rewards == [0.0, 0.0] and flags(r) == [[RUNTIME], [RUNTIME]]
    assert items == before_items


def test_frozen_views_behave_like_plain_data() -> None:
    original = {"a": [1, {"b": (1, [2])}], "s": "x"}
    view = freeze(original)
    assert view == original and isinstance(view, dict) and isinstance(view["a"], list)
    assert type(view) is FrozenDict and type(view["a"]) is FrozenList and type(view["a"][1]["b"][1]) is FrozenList
    assert json.loads(json.dumps(view)) == json.loads(json.dumps(original))
    assert type(pickle.loads(pickle.dumps(view))) is dict
    thawed = copy.deepcopy(view)
    thawed["a"].append(2)
    assert type(thawed["a"]) is list and original["a"] == [1, {"b": (1, [2])}]
    for mutate in (
        lambda: view.update(x=1),
        lambda: view.pop("a"),
        lambda: view["a"].sort(),
        lambda: view["a"].__iadd__([1]),
    ):
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    frozen_cycle = freeze(cyclic)
    assert frozen_cycle["self"] is frozen_cycle and type(frozen_cycle) is FrozenDict
    shared: list[Any] = [1]
    for _ in range(60):  # 2**60 paths, 61 lists: copied once each
        shared = [shared, shared]
    frozen = freeze(shared)
    assert frozen[0] is frozen[1]
    assert type(freeze(DEEP)) is FrozenDict


# --- 5. bounded validation and rendering ---------------------------------------------------------------------


def _warm_up() -> None:
    bounded_environment()
    validate(check(input="{{ sample.output_text | upper }}"))
    validate({"type": "multi", "name": "m", "graders": {"a": check().to_json()}, "calculate_output": "a"})


def test_a_600_kb_formula_is_refused_promptly_in_bounded_memory() -> None:
    _warm_up()
    formula = ("a + " * 150_000)[:-3]
    spec = {"type": "multi", "name": "m", "graders": {"a": check().to_json()}, "calculate_output": formula}
    with pytest.raises(GraderValidationError) as excinfo:
        validate(spec)
    problem = excinfo.value.problems[0]
    assert problem.startswith("multi.calculate_output: ")
    assert f"599,997 characters long; the limit is MAX_FORMULA_CHARS ({MAX_FORMULA_CHARS:,})" in problem
    assert validation_peak(spec) < 2_000_000


def test_formula_compilation_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formula_module, "MAX_FORMULA_CHARS", 10**7)
    small, large = ("a + " * 4_000)[:-3], ("a + " * 16_000)[:-3]
    compiled, peak_small = peak_bytes(lambda: formula_module.Formula(small, names=["a"]))
    assert compiled.evaluate({"a": 1.0}) == 4000.0
    compiled, peak_large = peak_bytes(lambda: formula_module.Formula(large, names=["a"]))
    assert compiled.evaluate({"a": 1.0}) == 16000.0
    # 4x the text: about 4x the memory when linear (it was 16x, and 24 GB for 600 kB, when quadratic)
    assert peak_large < 6 * peak_small
    assert peak_large < 40_000_000


def test_maths_errors_in_long_formulas_quote_both_ends() -> None:
    formula = "(" + " + ".join(["a"] * 100) + ") / b"
    m = Multi(name="m", graders={"a": check(), "b": check(op="ne")}, calculate_output=formula)
    r = run_batch(m, ["x", "y"], [{"answer": "x"}, {"answer": "x"}])
    assert r.rewards == [0.0, 0.0]  # x: b is 0, a maths error; y: a is 0
    assert flags(r) == [["other_error"], []]
    assert message(r[0], "m") == f"calculate_output: division by zero in '{formula[:57]} ... {formula[-57:]}'"


@pytest.mark.parametrize(
    ("template", "bound"),
    [
        ("{{ 'a' * 300000000 }}", "MAX_RENDERED_CHARS (4,000,000)"),
        ("{{ 7 ** 3000000 }}", "MAX_TEMPLATE_INT_BITS (4,096)"),
        ("{{ 'x' | center(1000000000) }}", "MAX_RENDERED_CHARS"),
        ("{{ 'x'.ljust(1000000000) }}", "MAX_RENDERED_CHARS"),
        ("{{ '%0*d' | format(1000000000, 1) }}", "MAX_RENDERED_CHARS"),
        ("{{ '{:>1000000000}'.format(1) }}", "MAX_RENDERED_CHARS"),
        ("{{ range(1000000000) | list }}", f"MAX_TEMPLATE_STEPS ({MAX_TEMPLATE_STEPS:,})"),
        ("{{ [1] | batch(1000000000, 0) | list }}", "MAX_RENDERED_CHARS"),
        ("{{ x" + " " * MAX_TEMPLATE_CHARS + "}}", f"MAX_TEMPLATE_CHARS ({MAX_TEMPLATE_CHARS:,})"),
    ],
)
def test_constant_template_blowups_are_validation_errors(template: str, bound: str) -> None:
    _warm_up()
    spec = {"type": "string_check", "name": "s", "input": template, "reference": "x", "operation": "eq"}
    with pytest.raises(GraderValidationError) as excinfo:
        validate(spec)
    assert excinfo.value.problems[0].startswith("string_check.input: ")
    assert bound in excinfo.value.problems[0]
    assert validation_peak(spec) < 5_000_000


DOUBLING = (
    "{% set ns = namespace(x=sample.output_text) %}{% for i in range([item.n, 40] | min) %}"
    "{% set ns.x = ns.x OP ns.x %}{% endfor %}{{ ns.x }}"
)


@pytest.mark.parametrize(
    ("template", "bound"),
    [
        ("{{ sample.output_text * item.n }}", "MAX_RENDERED_CHARS"),
        ("{{ 7 ** item.n }}", "MAX_TEMPLATE_INT_BITS"),
        (DOUBLING.replace("OP", "~"), "MAX_RENDERED_CHARS"),
        (DOUBLING.replace("OP", "+"), "MAX_RENDERED_CHARS"),
        ("{% for i in range(item.n) %}{% for j in range(item.n) %}{% endfor %}{% endfor %}", "MAX_TEMPLATE_STEPS"),
        ("{{ ([sample.output_text * 100000] * item.n) | join }}", "MAX_RENDERED_CHARS"),
        ("{{ [sample.output_text * 100000] * item.n }}", "MAX_RENDERED_CHARS"),
        ("{{ (sample.output_text * 100000) | replace('x', 'x' * item.n) }}", "MAX_RENDERED_CHARS"),
        ("{{ sample.output_text | center(item.n * 1000) }}", "MAX_RENDERED_CHARS"),
        ("{{ ('x\\n' * 100000) | indent(item.n) }}", "MAX_RENDERED_CHARS"),
        ("{{ '%0*d' | format(item.n * 1000, 1) }}", "MAX_RENDERED_CHARS"),
        (
            "{{ ([sample.output_text * 1000000] * ([item.n, 1000] | min)) | map('upper') | list | length }}",
            "MAX_TEMPLATE_ALLOCATED_CHARS",
        ),
        (
            "{% macro d(n) %}{% if n %}{{ d(n - 1) }}{{ d(n - 1) }}{% else %}xxxx{% endif %}{% endmacro %}"
            "{{ d([item.n, 30] | min) }}",
            "MAX_TEMPLATE_STEPS",
        ),
    ],
)
def test_render_time_blowups_fail_only_their_sample(template: str, bound: str) -> None:
    g = check(input=template, reference="{{ item.want }}")
    samples = ["x", "x", "x"]
    items = [{"n": 1, "want": "ok"}, {"n": 10**7, "want": "ok"}, {"n": 1, "want": "ok"}]
    r, peak = peak_bytes(lambda: run_batch(g, samples, items))
    assert r.rewards == [0.0, 0.0, 0.0]  # the small ones render, and do not equal "ok"
    assert flags(r) == [[], ["other_error"], []]
    assert bound in message(r[1], "check")
    assert peak < 150_000_000
    # the same small samples render to their exact texts
    rendered = run_batch(check(input=template, reference="{{ item.want }}", op="ne"), samples[:1], items[:1])
    assert rendered.rewards == [1.0] and flags(rendered) == [[]]


def test_sizes_too_large_to_print_are_still_named() -> None:
    g = check(input="{{ sample.output_text * item.n }}", reference="xx")
    r = run_batch(g, ["x", "x"], [{"n": 2}, {"n": 10**5000}])
    assert r.rewards == [1.0, 0.0]
    assert flags(r) == [[], ["other_error"]]
    assert "str * more than 10^1,228 would be more than 10^1,228 long" in message(r[1], "check")


def test_plain_templates_bound_what_they_build() -> None:
    long_answer = "y" * (MAX_RENDERED_CHARS // 2 + 1)
    g = check(input="{{ sample.output_text }}{{ sample.output_text }}", reference="{{ item.answer }}")
    r = run_batch(g, ["ab", long_answer, "c"], [{"answer": "abab"}, {"answer": ""}, {"answer": "cc"}])
    assert r.rewards == [1.0, 0.0, 1.0]
    assert flags(r) == [[], ["other_error"], []]
    assert "MAX_RENDERED_CHARS" in message(r[1], "check")
    # one placeholder passes its string through: nothing is built, so nothing is refused
    assert run_batch(check(), [long_answer * 3], [{"answer": long_answer * 3}]).rewards == [1.0]
    # values printed as JSON: a list of references to one long string is long in print
    r = run_batch(check(input="{{ item.v }}", reference="x"), ["a", "b"], [{"v": [long_answer] * 3}, {"v": 10**5000}])
    assert r.rewards == [0.0, 0.0]
    assert flags(r) == [["other_error"], ["invalid_variable_error"]]


# --- the net under every grader ---------------------------------------------------------------------------


class Boom(Grader):
    """A grader with a bug: grading a batch that holds "boom" raises."""

    type: str = "boom"

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        if "boom" in batch.samples:
            raise KeyError("boom")
        return Outcome([0.5] * batch.n, [None] * batch.n)


def test_a_grader_that_raises_fails_only_the_sample_that_made_it_raise() -> None:
    g = Boom(name="b")
    r = run_batch(g, ["a", "boom", "c"])
    assert r.rewards == [0.5, 0.0, 0.5]
    assert flags(r) == [[], ["other_error"], []]
    assert message(r[1], "b") == "grading failed: KeyError: 'boom'"
    one = run(g, "boom")
    assert one.reward == 0.0 and one.errors.other_error
