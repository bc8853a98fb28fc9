"""Property tests: arbitrary JSON, deep, huge, with lone surrogates, NaN and big ints, as samples and items.

For several grader types: `run_batch` never raises, returns one result per sample, every result encodes as
strict UTF-8 JSON, a flagged sample has reward 0, and each sample gets the same reward and flags graded
in the batch as graded alone (a hostile sample cannot change its neighbours' results).
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradekit.graders import (
    BatchResult,
    Grader,
    Multi,
    StringCheck,
    TextSimilarity,
    ToolCall,
    grader,
    run,
    run_batch,
)


def _deep(levels: int, kind: str) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value] if kind == "list" else {"a": value}
    return value


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except ValueError:  # an int too long to print
        return "[]"


# Lone surrogates are frequent on purpose: `st.characters()` alone almost never draws them.
TEXT = st.lists(
    st.sampled_from(["a", "answer", "\ud800", "\udfff", "\ud83d", "é", "\x00", "{", "[", '"']) | st.characters(),
    max_size=12,
).map("".join)
DEEP_TEXT = st.integers(150, 4000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n, '{"answer": ' + "[" * n + "]" * n + "}"])
)
HOSTILE = st.sampled_from(
    [math.nan, math.inf, -math.inf, -(10**400), 2**64, 1e308, "\ud800", "\udfff\ud800", "x" * 5000]
) | st.integers(4000, 6000).map(lambda digits: 10**digits)  # more digits than Python prints
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | HOSTILE,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(TEXT | st.sampled_from(["answer", "a"]), inner, max_size=3)
    ),
    max_leaves=8,
)
DEEP_VALUE = st.builds(_deep, st.integers(150, 3000), st.sampled_from(["list", "dict"]))
VALUE = JSON | DEEP_VALUE
CALLS = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": st.sampled_from(["f", "g"]), "arguments": VALUE | DEEP_TEXT}),
        }
    ),
    max_size=2,
)
SAMPLES = st.one_of(
    TEXT,
    DEEP_TEXT,
    JSON.map(_dumps),
    st.fixed_dictionaries({"output_text": TEXT | DEEP_TEXT}, optional={"output_json": VALUE, "output_tools": CALLS}),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": VALUE}), max_size=2),
    VALUE,
)
ITEMS = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["answer", "x", "expected_tool_calls"]), VALUE | CALLS, max_size=3),
    VALUE,
)
BATCHES = st.lists(st.tuples(SAMPLES, ITEMS), min_size=1, max_size=4)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@grader
def reads_everything(sample: dict[str, Any], item: Any) -> float:
    """Touches every part of its inputs, and tries to change them (it may not)."""
    text = json.dumps([sample.get("output_text"), sample.get("output_json"), item], default=str)[:1000]
    with contextlib.suppress(TypeError):
        item["answer"] = "changed"  # type: ignore[index]
    return min(1.0, len(text) / 1000)


GRADERS: dict[str, Grader] = {
    "string_check": StringCheck(
        name="sc", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq"
    ),
    "string_check_json": StringCheck(
        name="scj", input="{{ sample.output_json.answer }}", reference="{{ item.answer }}", operation="like"
    ),
    "text_similarity": TextSimilarity(
        name="sim", input="{{ sample.output_text }}", reference="{{ item.answer }}", evaluation_metric="fuzzy_match"
    ),
    "templated": StringCheck(
        name="tpl",
        input="{{ sample.output_text | lower | trim }}{{ sample.output_json | tojson }}",
        reference="{{ item.answer | string }} {{ item.x }}",
        operation="ilike",
    ),
    "tool_call": ToolCall(name="tools", arguments="subset"),
    "multi": Multi(
        name="multi",
        graders={
            "a": StringCheck(
                name="a", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="like"
            ),
            "b": TextSimilarity(
                name="b", input="{{ sample.output_json }}", reference="{{ item }}", evaluation_metric="fuzzy_match"
            ),
            "f": reads_everything,
        },
        calculate_output="0.5 * a + 0.25 * b ^ 2 + 0.25 * max(0, min(1, f / (f + 1) * 2))",
    ),
}


def _check(g: Grader, batch: list[tuple[Any, Any]]) -> None:
    samples, items = [s for s, _ in batch], [i for _, i in batch]
    result = run_batch(g, samples, items)
    assert isinstance(result, BatchResult) and len(result) == len(batch)
    for index, r in enumerate(result):
        r.model_dump_json().encode("utf-8")
        json.dumps(r.model_dump(mode="json"), allow_nan=False, ensure_ascii=False).encode("utf-8")
        assert math.isfinite(r.reward) and 0.0 <= r.reward <= 1.0
        if r.errors.any:
            assert r.reward == 0.0
        alone = run(g, samples[index], items[index])
        assert (alone.reward, alone.errors.flags()) == (r.reward, r.errors.flags())


@SETTINGS
@given(BATCHES)
def test_string_check_on_hostile_batches(batch: list[tuple[Any, Any]]) -> None:
    _check(GRADERS["string_check"], batch)


@SETTINGS
@given(BATCHES)
def test_string_check_on_output_json_of_hostile_batches(batch: list[tuple[Any, Any]]) -> None:
    _check(GRADERS["string_check_json"], batch)


@SETTINGS
@given(BATCHES)
def test_text_similarity_on_hostile_batches(batch: list[tuple[Any, Any]]) -> None:
    _check(GRADERS["text_similarity"], batch)


@SETTINGS
@given(BATCHES)
def test_templated_grader_on_hostile_batches(batch: list[tuple[Any, Any]]) -> None:
    _check(GRADERS["templated"], batch)


@SETTINGS
@given(BATCHES)
def test_tool_call_on_hostile_batches(batch: list[tuple[Any, Any]]) -> None:
    _check(GRADERS["tool_call"], batch)


@SETTINGS
@given(BATCHES)
def test_multi_with_a_formula_on_hostile_batches(batch: list[tuple[Any, Any]]) -> None:
    _check(GRADERS["multi"], batch)
