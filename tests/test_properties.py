"""Property tests: whatever the templates, formulas and samples, nothing escapes `run` as an exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradekit.graders import GraderValidationError, Multi, StringCheck, ToolCall, run, run_batch, validate

PATHS = st.sampled_from(
    [
        "sample.output_text",
        "sample.output_json",
        "sample.output_json.a",
        "sample.output_json.a[0]",
        "sample.output_json['a']",
        "sample.output_tools[0].function.name",
        "sample.choices",
        "item.answer",
        "item.answer.deep[3]",
        "item",
    ]
)
TEMPLATES = st.one_of(
    st.text(max_size=40),
    PATHS.map(lambda p: "{{ " + p + " }}"),
    st.tuples(st.text(max_size=10), PATHS, st.sampled_from(["", " | upper", " | length", " ~ 'x'", "[1:]"])).map(
        lambda t: f"{t[0]}{{{{ {t[1]}{t[2]} }}}}"
    ),
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
SAMPLES = st.one_of(
    st.text(max_size=60),
    JSONISH.map(lambda v: json.dumps(v)),
    st.dictionaries(st.sampled_from(["a", "b"]), JSONISH, max_size=2).map(json.dumps),
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": JSONISH}),
        max_size=3,
    ),
    st.fixed_dictionaries({"choices": JSONISH}),
)
ITEMS = st.one_of(st.none(), st.dictionaries(st.sampled_from(["answer", "x"]), JSONISH, max_size=2))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_result(r: Any) -> None:
    assert 0.0 <= r.reward <= 1.0
    if r.errors.any:
        assert r.reward == 0.0


@SETTINGS
@given(TEMPLATES, TEMPLATES, st.sampled_from(["eq", "ne", "like", "ilike"]), SAMPLES, ITEMS)
def test_string_check_never_raises(inp: str, ref: str, op: str, sample: Any, item: Any) -> None:
    try:
        g = StringCheck(name="g", input=inp, reference=ref, operation=op)  # type: ignore[arg-type]
    except ValueError:
        return  # an invalid template is a validation error, found before any sample is graded
    _check_result(run(g, sample, item))


@SETTINGS
@given(st.text(max_size=30), SAMPLES, ITEMS)
def test_formulas_never_raise(formula: str, sample: Any, item: Any) -> None:
    graders = {
        "a": {
            "type": "string_check",
            "name": "a",
            "input": "{{ sample.output_text }}",
            "reference": "x",
            "operation": "like",
        },
        "b": {
            "type": "string_check",
            "name": "b",
            "input": "{{ item.answer }}",
            "reference": "y",
            "operation": "ne",
        },
    }
    try:
        g = validate({"type": "multi", "name": "m", "graders": graders, "calculate_output": formula})
    except GraderValidationError:
        return
    assert isinstance(g, Multi)
    r = run(g, sample, item)
    assert r.reward == r.reward
    assert set(r.sub_rewards) == {"a", "b"}


@SETTINGS
@given(SAMPLES, JSONISH, st.sampled_from(["exact", "subset"]), st.booleans())
def test_tool_call_never_raises(sample: Any, expected: Any, mode: str, ordered: bool) -> None:
    g = ToolCall(name="t", expected="{{ item.calls }}", arguments=mode, ordered=ordered)  # type: ignore[arg-type]
    _check_result(run(g, sample, {"calls": expected}))


@SETTINGS
@given(st.lists(st.tuples(SAMPLES, ITEMS), min_size=1, max_size=8))
def test_batch_equals_single_runs(pairs: list[tuple[Any, Any]]) -> None:
    g = StringCheck(name="g", input="{{ sample.output_json.a }}", reference="{{ item.answer }}", operation="eq")
    samples = [s for s, _ in pairs]
    items = [i for _, i in pairs]
    batch = run_batch(g, samples, items)
    singles = [run(g, s, i) for s, i in pairs]
    assert batch.rewards == [r.reward for r in singles]
    assert [batch.error_flags(i) for i in range(len(pairs))] == [r.errors.flags() for r in singles]
