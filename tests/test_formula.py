"""Tests for the calculate_output formula language (gradekit.graders.formula)."""

from __future__ import annotations

import math
import operator
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradekit.graders.formula import FUNCTIONS, MAX_DEPTH, Formula, FormulaError, FormulaMathError

# ---------------------------------------------------------------------------------------------------
# Valid formulas and their values

VALID: list[tuple[str, dict[str, Any], float]] = [
    # precedence and associativity
    ("1 + 2 * 3", {}, 7.0),
    ("(1 + 2) * 3", {}, 9.0),
    ("10 - 4 - 3", {}, 3.0),
    ("10 - (4 - 3)", {}, 9.0),
    ("100 / 10 / 5", {}, 2.0),
    ("2 * 3 / 4", {}, 1.5),
    ("8 / 4 * 2", {}, 4.0),
    ("1 + 2 ^ 3 * 2", {}, 17.0),
    ("2 ^ 3 ^ 2", {}, 512.0),
    ("(2 ^ 3) ^ 2", {}, 64.0),
    ("2 * 3 ^ 2", {}, 18.0),
    # unary minus and plus
    ("-2 ^ 2", {}, -4.0),
    ("(-2) ^ 2", {}, 4.0),
    ("2 ^ -1", {}, 0.5),
    ("2 ^ -1 * 4", {}, 2.0),
    ("-2 ^ -2", {}, -0.25),
    ("2 ^ - 2 ^ 2", {}, 2.0**-4),
    ("--3", {}, 3.0),
    ("- - 3", {}, 3.0),
    ("+-+3", {}, -3.0),
    ("+3", {}, 3.0),
    ("-a * b", {"a": 2, "b": 3}, -6.0),
    ("a - -b", {"a": 1, "b": 2}, 3.0),
    ("2 * -3", {}, -6.0),
    ("-(1 + 2)", {}, -3.0),
    ("(-2) ^ 3", {}, -8.0),
    ("0 ^ 0", {}, 1.0),
    ("0 ^ 2", {}, 0.0),
    # functions
    ("min(3)", {}, 3.0),
    ("max(1, 5, 3)", {}, 5.0),
    ("min(4, -1, 2)", {}, -1.0),
    ("max(-1, -2)", {}, -1.0),
    ("abs(-2.5)", {}, 2.5),
    ("floor(2.7)", {}, 2.0),
    ("floor(-2.5)", {}, -3.0),
    ("ceil(2.1)", {}, 3.0),
    ("ceil(-0.5)", {}, 0.0),
    ("exp(0)", {}, 1.0),
    ("exp(1)", {}, math.e),
    ("sqrt(16)", {}, 4.0),
    ("sqrt(a)", {"a": -0.0}, -0.0),
    ("log(1)", {}, 0.0),
    ("log(exp(2))", {}, 2.0),
    ("min(a, b) ^ 2 / (1 + abs(c))", {"a": 3, "b": 2, "c": -1}, 2.0),
    ("max(0, min(1, a))", {"a": 1.5}, 1.0),
    # numbers
    (".5", {}, 0.5),
    ("5.", {}, 5.0),
    ("007", {}, 7.0),
    ("1e-3", {}, 0.001),
    ("2.5E+2", {}, 250.0),
    ("1.e1", {}, 10.0),
    ("1e-400", {}, 0.0),
    ("1e-300 * 1e-300", {}, 0.0),
    # whitespace and names
    (" \t1\n+\r2 ", {}, 3.0),
    ("min(a,b)+max( a , b )", {"a": 1, "b": 2}, 3.0),
    ("_x1 + X_2", {"_x1": 1, "X_2": 2}, 3.0),
    ("min + max", {"min": 1, "max": 2}, 3.0),
    ("0.7 * compliant + 0.3 * explained", {"compliant": 1.0, "explained": 0.5}, 0.7 + 0.3 * 0.5),
    # input types
    ("a", {"a": True}, 1.0),
    ("a / b", {"a": 1, "b": 4}, 0.25),
    ("a ^ b", {"a": 2, "b": 3}, 8.0),
]


@pytest.mark.parametrize(("source", "values", "expected"), VALID)
def test_valid_formulas(source: str, values: dict[str, Any], expected: float) -> None:
    result = Formula(source).evaluate(values)
    assert type(result) is float
    assert result == pytest.approx(expected, rel=1e-12, abs=0.0)
    assert math.copysign(1.0, result) == math.copysign(1.0, expected)


@pytest.mark.parametrize(("source", "values", "expected"), VALID)
def test_valid_formulas_in_columns(source: str, values: dict[str, Any], expected: float) -> None:
    formula = Formula(source)
    columns = {name: [value] * 3 for name, value in values.items()}
    results, errors = formula.evaluate_columns(columns, 3)
    assert errors == {}
    assert results == [formula.evaluate(values)] * 3


@pytest.mark.parametrize(
    ("source", "variables"),
    [
        ("a + b * a", {"a", "b"}),
        ("1 + 2", set()),
        ("min(x, 1) + abs", {"x", "abs"}),
        ("exp(-(a))", {"a"}),
    ],
)
def test_variables(source: str, variables: set[str]) -> None:
    formula = Formula(source)
    assert formula.variables == frozenset(variables)
    assert formula.source == source


def test_long_flat_chains_are_not_deep() -> None:
    # 600 + 600 terms: about 7,200 characters, inside MAX_FORMULA_CHARS
    formula = Formula(" + ".join(["a * b"] * 600) + " - " + " / ".join(["a"] * 600))
    assert formula.evaluate({"a": 1.0, "b": 2.0}) == 1199.0
    assert formula.evaluate_columns({"a": [1.0, 2.0], "b": [2.0, 0.5]}, 2)[0] == [1199.0, 600.0]


def test_nesting_up_to_the_limit_evaluates() -> None:
    deepest = MAX_DEPTH - 1  # the outermost operand is itself one level
    for source in (
        "(" * deepest + "a" + ")" * deepest,
        "abs(" * deepest + "a" + ")" * deepest,
        "a ^ " * deepest + "a",
        "-" * deepest + "a",
        "min(1, " * deepest + "a" + ")" * deepest,
    ):
        formula = Formula(source)
        value = formula.evaluate({"a": 1.0})
        assert formula.evaluate_columns({"a": [1.0]}, 1) == ([value], {})


# ---------------------------------------------------------------------------------------------------
# Syntax errors

SYNTAX_ERRORS: list[tuple[str, int, str]] = [
    ("", 0, "empty formula, expected an expression at position 0"),
    ("   ", 3, "empty formula, expected an expression at position 3"),
    ("a +", 3, "expected an operand at position 3, found end of input"),
    ("a + * b", 4, "expected an operand at position 4, found '*'"),
    ("a ^", 3, "expected an operand at position 3, found end of input"),
    ("a ^^ b", 3, "expected an operand at position 3, found '^'"),
    ("()", 1, "expected an operand at position 1, found ')'"),
    ("a b", 2, "expected an operator or end of input at position 2, found name 'b'"),
    ("2 3", 2, "expected an operator or end of input at position 2, found number '3'"),
    ("a,b", 1, "expected an operator or end of input at position 1, found ','"),
    ("(a)(b)", 3, "expected an operator or end of input at position 3, found '('"),
    ("(a + b", 6, "expected ')' at position 6, found end of input (unclosed '(' at position 0)"),
    ("((a) + b", 8, "expected ')' at position 8, found end of input (unclosed '(' at position 0)"),
    ("a + b)", 5, "unmatched ')' at position 5"),
    ("min(a,", 6, "expected an operand at position 6, found end of input"),
    ("min(a, )", 7, "expected an operand at position 7, found ')'"),
    ("min(a b)", 6, "expected ',' or ')' at position 6, found name 'b' (unclosed '(' at position 3)"),
    ("abs(a", 5, "expected ',' or ')' at position 5, found end of input"),
    ("a ** 2", 2, "'**' is not an operator at position 2; use '^' for powers"),
    ("2e", 0, "malformed number '2e' at position 0"),
    ("1 + 2e+", 4, "malformed number '2e' at position 4"),
    ("1.2.3", 0, "malformed number '1.2.3' at position 0"),
    ("3x", 0, "malformed number '3x' at position 0"),
    ("1e999", 0, "number '1e999' at position 0 is too large"),
    ("a $ b", 2, "unexpected character '$' at position 2"),
    ("a = b", 2, "unexpected character '=' at position 2"),
    ("a % b", 2, "unexpected character '%' at position 2"),
    (".", 0, "unexpected character '.' at position 0"),
    ("α + 1", 0, "unexpected character 'α' at position 0"),
    ("1 + ٣", 4, "unexpected character '٣' at position 4"),
    ("1 + + $", 6, "unexpected character '$' at position 6"),
    ("1 * * $", 4, "expected an operand at position 4, found '*'"),
    ("a\n+ b +", 7, "expected an operand at position 7, found end of input"),
    ("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH, MAX_DEPTH, "formula nested too deeply"),
    ("-" * MAX_DEPTH + "a", MAX_DEPTH, "formula nested too deeply"),
    ("a^" * MAX_DEPTH + "a", 2 * MAX_DEPTH, "formula nested too deeply"),
]


@pytest.mark.parametrize(("source", "position", "message"), SYNTAX_ERRORS)
def test_syntax_errors(source: str, position: int, message: str) -> None:
    with pytest.raises(FormulaError) as info:
        Formula(source)
    assert info.value.position == position
    assert str(info.value).startswith("calculate_output: ")
    assert message in str(info.value)
    assert f"at position {position}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_formula_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        Formula(1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# Unknown names and functions, arity


def test_unknown_grader_message() -> None:
    with pytest.raises(FormulaError) as info:
        Formula("0.5 * a + foo", names=["b", "a"])
    assert str(info.value) == "calculate_output: unknown grader 'foo' at position 10 (known: a, b)"
    assert info.value.position == 10


@pytest.mark.parametrize(
    ("source", "names", "position", "name"),
    [
        ("x", [], 0, "x"),
        ("a + b + c", ["a", "b"], 8, "c"),
        ("min(a, B)", ["a", "b"], 7, "B"),
        ("min", ["a"], 0, "min"),
    ],
)
def test_unknown_graders(source: str, names: list[str], position: int, name: str) -> None:
    with pytest.raises(FormulaError) as info:
        Formula(source, names=names)
    assert info.value.position == position
    assert f"unknown grader '{name}' at position {position}" in str(info.value)
    if not names:
        assert "(known: none)" in str(info.value)


def test_known_names_accept_any_iterable() -> None:
    assert Formula("a + min(b)", names={"a": 1, "b": 2}).variables == {"a", "b"}
    assert Formula("min + 1", names=iter(["min"])).evaluate({"min": 1}) == 2.0


@pytest.mark.parametrize("names", [None, ["a"]])
def test_unknown_function(names: list[str] | None) -> None:
    with pytest.raises(FormulaError) as info:
        Formula("1 + round(a)", names=names)
    assert info.value.position == 4
    assert "unknown function 'round' at position 4" in str(info.value)
    assert "(known: abs, ceil, exp, floor, log, max, min, sqrt)" in str(info.value)


ARITY_ERRORS: list[tuple[str, int, str]] = [
    ("abs()", 0, "function 'abs' at position 0 takes exactly 1 argument, got 0"),
    ("abs(1, 2)", 0, "function 'abs' at position 0 takes exactly 1 argument, got 2"),
    ("1 + log(a, 2)", 4, "function 'log' at position 4 takes exactly 1 argument, got 2"),
    ("exp()", 0, "takes exactly 1 argument, got 0"),
    ("sqrt(a, b, c)", 0, "takes exactly 1 argument, got 3"),
    (" floor(1, 2)", 1, "function 'floor' at position 1"),
    ("ceil()", 0, "function 'ceil' at position 0"),
    ("min()", 0, "function 'min' at position 0 takes at least 1 argument, got 0"),
    ("2 * max()", 4, "function 'max' at position 4 takes at least 1 argument, got 0"),
]


@pytest.mark.parametrize(("source", "position", "message"), ARITY_ERRORS)
def test_arity_errors(source: str, position: int, message: str) -> None:
    with pytest.raises(FormulaError) as info:
        Formula(source)
    assert info.value.position == position
    assert message in str(info.value)


@pytest.mark.parametrize("func", sorted(FUNCTIONS))
def test_every_function_accepts_one_argument(func: str) -> None:
    assert math.isfinite(Formula(f"{func}(2)").evaluate({}))


# ---------------------------------------------------------------------------------------------------
# Maths errors

MATH_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("a / b", {"a": 1, "b": 0}, "division by zero in 'a / b'"),
    ("a / b", {"a": 0, "b": 0}, "division by zero in 'a / b'"),
    ("a / b", {"a": 1, "b": -0.0}, "division by zero in 'a / b'"),
    ("2 * a / b + 1", {"a": 1, "b": 0}, "division by zero in '2 * a / b'"),
    ("1 / (a - a)", {"a": 3}, "division by zero in '1 / (a - a)'"),
    ("1 / 0", {}, "division by zero in '1 / 0'"),
    ("a + 1 / 0", {"a": 1}, "division by zero in '1 / 0'"),
    ("log(a)", {"a": 0}, "logarithm of a non-positive number (0.0) in 'log(a)'"),
    ("log(a)", {"a": -1}, "logarithm of a non-positive number (-1.0) in 'log(a)'"),
    ("sqrt(a)", {"a": -1e-300}, "square root of a negative number (-1e-300) in 'sqrt(a)'"),
    ("0 ^ a", {"a": -1}, "zero raised to a negative power in '0 ^ a'"),
    ("a ^ -2", {"a": -0.0}, "zero raised to a negative power in 'a ^ -2'"),
    ("a ^ 0.5", {"a": -4}, "negative base raised to a non-integer power in 'a ^ 0.5'"),
    ("(-8) ^ (1 / 3)", {}, "negative base raised to a non-integer power in '(-8) ^ (1 / 3)'"),
    ("a ^ b", {"a": 10, "b": 400}, "overflow in 'a ^ b'"),
    ("a ^ b", {"a": -10, "b": 401}, "overflow in 'a ^ b'"),
    ("exp(a)", {"a": 710}, "overflow in 'exp(a)'"),
    ("a * b", {"a": 1e200, "b": -1e200}, "overflow in 'a * b'"),
    ("a + b", {"a": 1.7e308, "b": 1.7e308}, "overflow in 'a + b'"),
    ("a - b", {"a": 1.7e308, "b": -1.7e308}, "overflow in 'a - b'"),
    ("a / b", {"a": 1e300, "b": 1e-300}, "overflow in 'a / b'"),
    ("min(exp(a), 1)", {"a": 1000}, "overflow in 'exp(a)'"),
    ("0 * (a * a)", {"a": 1e200}, "overflow in 'a * a'"),
    ("1 / (1 + a * a)", {"a": 1e300}, "overflow in 'a * a'"),
    ("a", {"a": math.nan}, "value of grader 'a' is not finite (nan)"),
    ("a + b", {"a": 1, "b": math.inf}, "value of grader 'b' is not finite (inf)"),
    ("min(a, 1)", {"a": -math.inf}, "value of grader 'a' is not finite (-inf)"),
    ("a + 1", {"a": 10**400}, "value of grader 'a' is too large for a float"),
]


@pytest.mark.parametrize(("source", "values", "message"), MATH_ERRORS)
def test_math_errors(source: str, values: dict[str, Any], message: str) -> None:
    formula = Formula(source)
    with pytest.raises(FormulaMathError) as info:
        formula.evaluate(values)
    assert str(info.value) == message
    assert isinstance(info.value, ArithmeticError)
    columns = {name: [1.0, value, 2.0] for name, value in values.items()}
    results, errors = formula.evaluate_columns(columns, 3)
    assert errors[1] == message
    assert results[1] == 0.0
    assert all(math.isfinite(result) for result in results)


def test_bad_inputs() -> None:
    formula = Formula("a + b")
    with pytest.raises(KeyError, match="no value for grader 'b'"):
        formula.evaluate({"a": 1.0})
    for junk in ("1.5", b"1", None, object()):
        with pytest.raises(TypeError, match="value of grader 'b' is not a number"):
            formula.evaluate({"a": 1.0, "b": junk})
    with pytest.raises(KeyError, match="no column for grader 'b'"):
        formula.evaluate_columns({"a": [1.0]}, 1)
    with pytest.raises(ValueError, match="column of grader 'b' has 2 values, expected 1"):
        formula.evaluate_columns({"a": [1.0], "b": [1.0, 2.0]}, 1)
    with pytest.raises(TypeError, match="value of grader 'b' is not a number"):
        formula.evaluate_columns({"a": [1.0, 2.0], "b": [1.0, "2"]}, 2)
    with pytest.raises(ValueError, match="n must be >= 0"):
        formula.evaluate_columns({"a": [], "b": []}, -1)


# ---------------------------------------------------------------------------------------------------
# evaluate_columns


def test_evaluate_columns_basics() -> None:
    formula = Formula("0.7 * a + 0.3 * b / c")
    columns = {"a": [1, 2.0, math.inf, 4.0], "b": (1.0, 1.0, 1.0, 2.0), "c": [1.0, 0.0, 1.0, 4.0], "z": [9]}
    results, errors = formula.evaluate_columns(columns, 4)
    assert results == [0.7 + 0.3, 0.0, 0.0, 0.7 * 4.0 + 0.3 * 2.0 / 4.0]
    assert errors == {1: "division by zero in '0.3 * b / c'", 2: "value of grader 'a' is not finite (inf)"}
    assert columns["a"] == [1, 2.0, math.inf, 4.0]
    assert all(type(result) is float for result in results)


def test_evaluate_columns_edge_cases() -> None:
    assert Formula("a").evaluate_columns({"a": []}, 0) == ([], {})
    assert Formula("2 * 3").evaluate_columns({}, 3) == ([6.0, 6.0, 6.0], {})
    results, errors = Formula("1 / 0").evaluate_columns({}, 2)
    assert results == [0.0, 0.0]
    assert errors == {0: "division by zero in '1 / 0'", 1: "division by zero in '1 / 0'"}
    column = [1, 2, 3]
    results, _ = Formula("a").evaluate_columns({"a": column}, 3)
    assert results == [1.0, 2.0, 3.0]
    assert all(type(result) is float for result in results)
    results[0] = 5.0
    assert column == [1, 2, 3]
    assert Formula("a * 2").evaluate_columns({"a": range(3)}, 3) == ([0.0, 2.0, 4.0], {})
    assert Formula("a").evaluate_columns({"a": [10**400, 1]}, 2) == (
        [0.0, 1.0],
        {0: "value of grader 'a' is too large for a float"},
    )


COLUMN_FORMULAS = [
    "0.7 * a + 0.3 * b",
    "a + b - c",
    "1 - a * 2 + b * -3 - 4 * c",
    "a * b / c",
    "1 / a + 2 / (b - c)",
    "c / 0.5 - a / 0",
    "a ^ 2 + b ^ 0.5 + 2 ^ c",
    "a ^ b ^ c",
    "(-a) ^ -1",
    "-a ^ 2",
    "min(a, b) ^ 2 / (1 + abs(c))",
    "max(0, min(1, 0.5 * a + 0.3 * b ^ 2 - 0.2 * abs(c - 0.5))) / (1 + exp(-a))",
    "min(a, b, c, 0.5) + max(c, 1, b)",
    "floor(a * 10) / 10 + ceil(b) - abs(c)",
    "exp(a) * exp(b * 100) - exp(c)",
    "sqrt(a) + log(b) + sqrt(abs(c)) * log(abs(c) + 1)",
    "log(a * b * c)",
    "a * 1e300 * b",
    "min(a * 1e308 * 10, 1)",
    "-(a - b) * +(c)",
    "2 - (a + b) * c",
    "2 / (a - b) - 1 / c",
    "1 + 2 * 3",
    "a",
]

SPECIAL_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 2.0, 3.0, 1e-320, 1e308, -1e308, 700.0, 1e5]


def _random_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(SPECIAL_VALUES)
    if roll < 0.35:
        return rng.choice([math.nan, math.inf, -math.inf, 10**400])
    if roll < 0.45:
        return rng.randint(-3, 3)
    if roll < 0.5:
        return rng.choice([True, False])
    return rng.uniform(-5.0, 5.0) * 10 ** rng.randint(-3, 3)


def _same(x: float, y: float) -> bool:
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


@pytest.mark.parametrize("source", COLUMN_FORMULAS)
def test_evaluate_columns_agrees_with_evaluate(source: str) -> None:
    rng = random.Random(source)
    formula = Formula(source)
    n = 400
    columns = {name: [_random_value(rng) for _ in range(n)] for name in "abc"}
    results, errors = formula.evaluate_columns(columns, n)
    assert len(results) == n
    for index in range(n):
        sample = {name: column[index] for name, column in columns.items()}
        try:
            expected = formula.evaluate(sample)
        except FormulaMathError as error:
            assert errors[index] == str(error)
            assert results[index] == 0.0
        else:
            assert index not in errors
            assert _same(results[index], expected), (index, sample, results[index], expected)


# ---------------------------------------------------------------------------------------------------
# Misc


def test_pickle_and_repr() -> None:
    formula = Formula("0.7 * a + 0.3 * b", names=["a", "b"])
    copy = pickle.loads(pickle.dumps(formula))
    assert copy == formula
    assert hash(copy) == hash(formula)
    assert copy.evaluate({"a": 1, "b": 1}) == formula.evaluate({"a": 1, "b": 1})
    assert repr(formula) == "Formula('0.7 * a + 0.3 * b')"
    error = pickle.loads(pickle.dumps(FormulaError("calculate_output: boom at position 3", 3)))
    assert (str(error), error.position) == ("calculate_output: boom at position 3", 3)


# ---------------------------------------------------------------------------------------------------
# Property tests

FORMULA_ALPHABET = "abc_xyz0123456789.eE+-*/^(), \t\nminaxbsflorceiltpqg$%="


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=FORMULA_ALPHABET, max_size=40)))
def test_any_text_parses_or_raises_formula_error(text: str) -> None:
    try:
        formula = Formula(text)
    except FormulaError as error:
        assert 0 <= error.position <= len(text)
        assert str(error).startswith("calculate_output: ")
    else:
        assert formula.source == text
    try:
        Formula(text, names=["a", "b"])
    except FormulaError as error:
        assert 0 <= error.position <= len(text)


# A generated formula tree:
#   ("num", text) | ("var", name) | ("neg", t) | ("pos", t) | ("paren", t)
#   | ("bin", op, left, right, spaced) | ("call", func, args)
Tree = tuple[Any, ...]

NUMBER_TEXTS = st.one_of(
    st.integers(min_value=0, max_value=12).map(str),
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from([".5", "1.", "1e-3", "2.5E+2", "1e300", "1e-300", "0.1", "3"]),
)
LEAVES = st.one_of(
    st.tuples(st.just("var"), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("num"), NUMBER_TEXTS),
)


def _extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
    return st.one_of(
        st.tuples(st.sampled_from(["neg", "pos", "paren"]), children),
        st.tuples(st.just("bin"), st.sampled_from("+-*/^"), children, children, st.booleans()),
        st.tuples(
            st.just("call"),
            st.sampled_from(["abs", "floor", "ceil", "exp", "sqrt", "log"]),
            st.tuples(children),
        ),
        st.tuples(
            st.just("call"),
            st.sampled_from(["min", "max"]),
            st.lists(children, min_size=1, max_size=3).map(tuple),
        ),
    )


TREES = st.recursive(LEAVES, _extend, max_leaves=12)
VALUES = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.floats(min_value=-10.0, max_value=10.0),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-5, max_value=5),
)
SAMPLE = st.fixed_dictionaries({"a": VALUES, "b": VALUES, "c": VALUES})

# binding strength of what a node renders to without parentheses
ATOM, POWER, UNARY, PRODUCT, SUM = 5, 4, 3, 2, 1


def _strength(tree: Tree) -> int:
    if tree[0] in ("neg", "pos"):
        return UNARY
    if tree[0] == "bin":
        return {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "^": POWER}[tree[1]]
    return ATOM


def _wrap(tree: Tree, minimum: int) -> str:
    text = _render(tree)
    return text if _strength(tree) >= minimum else f"({text})"


def _render(tree: Tree) -> str:
    kind = tree[0]
    if kind in ("num", "var"):
        return tree[1]
    if kind == "neg":
        return "-" + _wrap(tree[1], UNARY)
    if kind == "pos":
        return "+" + _wrap(tree[1], UNARY)
    if kind == "paren":
        return f"({_render(tree[1])})"
    if kind == "call":
        return f"{tree[1]}({', '.join(_render(arg) for arg in tree[2])})"
    _, op, left, right, spaced = tree
    if op == "^":
        left_text, right_text = _wrap(left, ATOM), _wrap(right, UNARY)
    else:
        level = SUM if op in "+-" else PRODUCT
        left_text, right_text = _wrap(left, level), _wrap(right, level + 1)
    return f"{left_text} {op} {right_text}" if spaced else f"{left_text}{op}{right_text}"


def _depth(tree: Tree) -> int:
    children = tree[2:4] if tree[0] == "bin" else tree[2] if tree[0] == "call" else tree[1:2]
    return 1 + max((_depth(child) for child in children if isinstance(child, tuple)), default=0)


def _tree_variables(tree: Tree) -> set[str]:
    if tree[0] == "var":
        return {tree[1]}
    children = tree[2:4] if tree[0] == "bin" else tree[2] if tree[0] == "call" else tree[1:2]
    return set().union(*(_tree_variables(child) for child in children if isinstance(child, tuple)))


class RefMathError(Exception):
    """The reference evaluation hit a maths error."""


REF_BINARY: dict[str, Callable[[float, float], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "^": operator.pow,
}
REF_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": operator.abs,
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
    "min": lambda *args: min(args),
    "max": lambda *args: max(args),
}


def _checked(value: Any) -> float:
    if isinstance(value, complex) or not math.isfinite(value):
        raise RefMathError
    return float(value)


def _reference(tree: Tree, env: dict[str, float]) -> float:
    """An independent evaluation of the generated tree (not of its rendering)."""
    kind = tree[0]
    if kind == "num":
        return _checked(float(tree[1]))
    if kind == "var":
        return _checked(float(env[tree[1]]))
    if kind == "neg":
        return operator.neg(_reference(tree[1], env))
    if kind in ("pos", "paren"):
        return _reference(tree[1], env)
    if kind == "bin":
        left, right = _reference(tree[2], env), _reference(tree[3], env)
        try:
            return _checked(REF_BINARY[tree[1]](left, right))
        except (ZeroDivisionError, OverflowError):
            raise RefMathError from None
    args = [_reference(arg, env) for arg in tree[2]]
    try:
        return _checked(REF_FUNCTIONS[tree[1]](*args))
    except (ValueError, OverflowError):
        raise RefMathError from None


@settings(max_examples=400, deadline=None)
@given(TREES, st.lists(SAMPLE, min_size=1, max_size=6))
def test_generated_formulas(tree: Tree, samples: list[dict[str, Any]]) -> None:
    assume(_depth(tree) < MAX_DEPTH // 2)
    source = _render(tree)
    formula = Formula(source, names=["a", "b", "c"])
    assert formula.variables == _tree_variables(tree)

    outcomes: list[float | str] = []
    for sample in samples:
        try:
            value = formula.evaluate(sample)
        except FormulaMathError as error:
            outcomes.append(str(error))
            with pytest.raises(RefMathError):
                _reference(tree, sample)
        else:
            assert type(value) is float
            assert math.isfinite(value)
            outcomes.append(value)
            expected = _reference(tree, sample)
            assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=0.0), (source, sample, value, expected)

    columns = {name: [sample[name] for sample in samples] for name in "abc"}
    results, errors = formula.evaluate_columns(columns, len(samples))
    assert len(results) == len(samples)
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, str):
            assert (results[index], errors[index]) == (0.0, outcome)
        else:
            assert index not in errors
            assert _same(results[index], outcome)


# ---------------------------------------------------------------------------------------------------
# Values the mutation run (docs/mutation.md) found untested


def _sign(x: float) -> float:
    return math.copysign(1.0, x)


@pytest.mark.parametrize(
    ("source", "a", "b", "sign"),
    [
        ("min(a, b)", -0.0, 0.0, -1.0),  # min/max return the first of equal arguments
        ("min(a, b)", 0.0, -0.0, 1.0),
        ("max(a, b)", -0.0, 0.0, -1.0),
        ("max(a, b)", 0.0, -0.0, 1.0),
        ("min(0, a)", -0.0, 0.0, 1.0),  # a constant first
        ("max(0, a)", -0.0, 0.0, 1.0),
        ("min(a, 0)", -0.0, 0.0, -1.0),  # a constant after
        ("max(a, 0)", -0.0, 0.0, -1.0),
        ("min(a, b, 0)", -0.0, 0.0, -1.0),
        ("max(b, a, 0)", -0.0, 0.0, 1.0),
    ],
)
def test_min_max_keep_the_first_of_equal_zeros(source: str, a: float, b: float, sign: float) -> None:
    f = Formula(source, names=["a", "b"])
    assert _sign(f.evaluate({"a": a, "b": b})) == sign
    values, errors = f.evaluate_columns({"a": [a, 1.0], "b": [b, 1.0]}, 2)
    assert errors == {} and [_sign(v) for v in values] == [sign, 1.0]


def test_min_max_scalar_values() -> None:
    assert Formula("min(a, b)").evaluate({"a": 1.0, "b": 0.25}) == 0.25
    assert Formula("max(a, b)").evaluate({"a": 1.0, "b": 0.25}) == 1.0
    assert Formula("min(a)").evaluate({"a": 0.5}) == 0.5


def test_formula_of_exactly_the_limit_is_accepted() -> None:
    from gradekit.graders.limits import MAX_FORMULA_CHARS

    source = "a" + " " * (MAX_FORMULA_CHARS - 1)
    assert Formula(source).evaluate({"a": 0.5}) == 0.5
    with pytest.raises(FormulaError):
        Formula(source + " ")


def test_formula_equality() -> None:
    assert Formula("a", names=["a"]) == Formula("a", names=["a"])
    assert Formula("a", names=["a"]) != Formula("a", names=["a", "b"])
    assert Formula("a") != Formula("a ")
    assert Formula("a") != "a"


@pytest.mark.parametrize(
    ("source", "quoted"),
    [
        ("a / b", "a / b"),
        ("0.5 / b", "0.5 / b"),
        ("b / a / b", "b / a / b"),
        ("2 * (a / b) + 1", "a / b"),
        ("ab / b", "ab / b"),
    ],
)
def test_maths_errors_quote_the_whole_sub_expression(source: str, quoted: str) -> None:
    names = {"a": 1.0, "b": 0.0, "ab": 1.0}
    with pytest.raises(FormulaMathError) as e:
        Formula(source).evaluate({k: v for k, v in names.items() if k in source})
    assert str(e.value) == f"division by zero in '{quoted}'"
    _, errors = Formula(source).evaluate_columns({k: [v] for k, v in names.items() if k in source}, 1)
    assert errors == {0: f"division by zero in '{quoted}'"}


def test_a_long_sub_expression_is_quoted_by_its_ends() -> None:
    long = " + ".join(["a"] * 60)  # 237 characters
    source = f"({long}) / b"
    with pytest.raises(FormulaMathError) as e:
        Formula(source).evaluate({"a": 1.0, "b": 0.0})
    assert str(e.value) == f"division by zero in '{source[:57]} ... {source[-57:]}'"
    for tail, whole in (("aa", True), ("aaa", False)):  # 120 characters are quoted whole, 121 by their ends
        edge = "(" + " + ".join(["a"] * 28 + [tail]) + ") / b"
        assert len(edge) == (120 if whole else 121)
        for before in ("", "1 + "):  # at the start, and further in
            with pytest.raises(FormulaMathError) as e:
                Formula(before + edge).evaluate({"a": 1.0, tail: 1.0, "b": 0.0})
            assert str(e.value) == f"division by zero in '{edge if whole else edge[:57] + ' ... ' + edge[-57:]}'"


@pytest.mark.parametrize("source", ["1 / (a * 1e308 * 10)", "b - 1 / (a * 1e308 * 10)", "b * 2 / (a * 1e308 * 10)"])
def test_an_overflowing_divisor_is_an_error_in_columns_too(source: str) -> None:
    f = Formula(source)
    with pytest.raises(FormulaMathError) as e:  # x / inf would be 0: the divisor itself must be checked
        f.evaluate({"a": 1.0, "b": 1.0})
    values, errors = f.evaluate_columns({"a": [1.0, 1e-300], "b": [1.0, 1.0]}, 2)
    assert errors == {0: str(e.value)}
    assert values[0] == 0.0 and values[1] == f.evaluate({"a": 1e-300, "b": 1.0})
