"""Property tests: whatever the templates, formulas and samples, nothing escapes `run`, and values match oracles."""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
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


class _Checked(float):
    """A float whose every operation must stay finite: the formula language's rules, written the obvious way."""

    def _ok(self, value: Any) -> _Checked:
        if isinstance(value, complex) or not math.isfinite(value):
            raise ArithmeticError(f"not a finite real: {value!r}")
        return _Checked(value)

    def __add__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(self) + float(o))

    def __radd__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(o) + float(self))

    def __sub__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(self) - float(o))

    def __rsub__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(o) - float(self))

    def __mul__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(self) * float(o))

    def __rmul__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(o) * float(self))

    def __truediv__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(self) / float(o))  # ZeroDivisionError for x / 0 and x / -0.0

    def __rtruediv__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(o) / float(self))

    def __pow__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(self) ** float(o))  # complex for a negative base and a fractional exponent

    def __rpow__(self, o: float) -> _Checked:  # type: ignore[override]
        return self._ok(float(o) ** float(self))

    def __neg__(self) -> _Checked:
        return _Checked(-float(self))

    def __pos__(self) -> _Checked:
        return self

    def __abs__(self) -> _Checked:
        return _Checked(abs(float(self)))


def _real(f: Any) -> Any:
    """A math function whose domain error (ValueError) is an ArithmeticError, as in the formula language."""

    def call(x: float) -> _Checked:
        try:
            return _Checked(float(f(float(x))))
        except ValueError as e:
            raise ArithmeticError(str(e)) from None

    return call


_ORACLE_FUNCTIONS: dict[str, Any] = {
    "min": lambda *xs: min(xs),
    "max": lambda *xs: max(xs),
    "abs": abs,
    "floor": _real(math.floor),
    "ceil": _real(math.ceil),
    "exp": _real(math.exp),
    "sqrt": _real(math.sqrt),
    "log": _real(lambda x: math.log(x) if x > 0 else math.log(-1.0)),
}


class _WrapNumbers(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.Call(ast.Name("_Checked", ast.Load()), [node], [])


def _oracle(formula: str, a: float, b: float) -> float | None:
    """The formula's value by Python's own parser (`^` is `**`, same precedence); None for a maths error."""
    text = re.sub(r"[\t\r\n\f\v]", " ", formula).replace("^", "**")
    text = re.sub(r"(?<![\w.])0+(?=\d)", "", text)  # "01" is a number to the formula, a syntax error to Python
    tree = ast.fix_missing_locations(_WrapNumbers().visit(ast.parse(text.strip(), mode="eval")))
    names = {"_Checked": _Checked, "a": _Checked(a), "b": _Checked(b), **_ORACLE_FUNCTIONS, "__builtins__": {}}
    try:
        return float(eval(compile(tree, "<formula>", "eval"), names))
    except (ArithmeticError, OverflowError):
        return None


_LEAVES = st.sampled_from(["a", "b", "0", "1", "2", "3.", ".5", "0.25", "1e-3", "2.5E+1", "10", "007"])
_FORMULAS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^"]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^"]), inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        inner.map(lambda x: f"-{x}"),
        st.tuples(st.sampled_from(["abs", "floor", "ceil", "exp", "sqrt", "log"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(inner, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    ),
    max_leaves=8,
)
_MULTI_GRADERS = {
    "a": {
        "type": "string_check",
        "name": "a",
        "input": "{{ sample.output_text }}",
        "reference": "x",
        "operation": "like",
    },
    "b": {"type": "string_check", "name": "b", "input": "{{ item.answer }}", "reference": "y", "operation": "ne"},
}


@SETTINGS
@given(st.one_of(st.text(max_size=30), _FORMULAS), SAMPLES, ITEMS)
def test_formulas_never_raise(formula: str, sample: Any, item: Any) -> None:
    try:
        g = validate({"type": "multi", "name": "m", "graders": _MULTI_GRADERS, "calculate_output": formula})
    except GraderValidationError:
        return
    assert isinstance(g, Multi)
    r = run(g, sample, item)
    assert set(r.sub_rewards) == {"a", "b"}
    a, b = r.sub_rewards["a"], r.sub_rewards["b"]
    assert a in (0.0, 1.0) and b in (0.0, 1.0)
    expected = _oracle(formula, a, b)
    failures = r.metadata.scores.get("error_details", {})
    if failures.get("m", {}).get("flag") == "sample_parse_error":  # a sample that is not one: the formula is moot
        assert r.reward == 0.0
        return
    assert ("m" in failures) == (expected is None)  # a maths error is the multi grader's own failure
    if failures:
        assert r.reward == 0.0  # any failure, of a sub-grader or of the formula, zeroes the sample
    else:
        assert r.reward == expected
        assert not r.errors.any


@SETTINGS
@given(SAMPLES, JSONISH, st.sampled_from(["exact", "subset"]), st.booleans())
def test_tool_call_never_raises(sample: Any, expected: Any, mode: str, ordered: bool) -> None:
    g = ToolCall(name="t", expected="{{ item.calls }}", arguments=mode, ordered=ordered)  # type: ignore[arg-type]
    _check_result(run(g, sample, {"calls": expected}))


_VALUES = st.one_of(  # near misses collide often: case, spaces, a leading zero, an int against its text
    st.sampled_from(["x", "X", "x ", " x", "1", "01", "-1", ""]),
    st.integers(-3, 3),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
)
_CHECKED_SAMPLES = st.one_of(
    _VALUES.map(lambda v: ("a", v)),
    _VALUES.map(lambda v: ("b", v)),  # valid JSON, no `a`
    st.text(max_size=8).map(lambda t: ("text", "~" + t)),  # never JSON
)
_CHECKED_ITEMS = st.one_of(st.none(), st.just({}), _VALUES.map(lambda v: {"answer": v}))


def _as_sample(kind: str, value: Any) -> str:
    return "~" + value[1:] if kind == "text" else json.dumps({kind: value})


@SETTINGS
@given(st.lists(st.tuples(_CHECKED_SAMPLES, _CHECKED_ITEMS), min_size=1, max_size=8))
@example([(("a", "x "), {"answer": "x"}), (("a", "X"), {"answer": "x"}), (("a", 1), {"answer": "01"})])
@example([(("a", 1), {"answer": "1"}), (("a", ""), {"answer": ""}), (("b", "x"), {"answer": "x"}), (("a", "x"), None)])
def test_batch_equals_single_runs(pairs: list[tuple[tuple[str, Any], Any]]) -> None:
    g = StringCheck(name="g", input="{{ sample.output_json.a }}", reference="{{ item.answer }}", operation="eq")
    samples = [_as_sample(*s) for s, _ in pairs]
    items = [i for _, i in pairs]
    expected_rewards, expected_flags = [], []
    for (kind, value), item in pairs:  # eq of the two values as text; a missing one is an invalid variable
        if kind != "a" or not item or "answer" not in item:
            expected_rewards.append(0.0)
            expected_flags.append(["invalid_variable_error"])
        else:
            expected_rewards.append(1.0 if str(value) == str(item["answer"]) else 0.0)
            expected_flags.append([])
    batch = run_batch(g, samples, items)
    singles = [run(g, s, i) for s, i in zip(samples, items, strict=True)]
    assert batch.rewards == expected_rewards
    assert [r.reward for r in singles] == expected_rewards
    assert [batch.error_flags(i) for i in range(len(pairs))] == expected_flags
    assert [r.errors.flags() for r in singles] == expected_flags
