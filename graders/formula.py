"""The `calculate_output` formula language of the `multi` grader: parser, checker and evaluator.

A formula combines the rewards of a multi grader's sub-graders, named by the keys of its `graders`
dict, into one reward, e.g. ``"0.7 * compliant + 0.3 * explained"``.  Formulas are parsed by a small
tokenizer and recursive-descent parser in this module (never by `eval`) and compiled once into Python
closures.

Grammar, loosest binding first::

    sum      := product (("+" | "-") product)*             left-associative
    product  := unary (("*" | "/") unary)*                 left-associative
    unary    := ("-" | "+") unary | power
    power    := primary ("^" unary)?                       right-associative: a^b^c = a^(b^c)
    primary  := number | name | name "(" sum ("," sum)* ")" | "(" sum ")"
    number   := 12 | 1.5 | .5 | 1. | 1e-3 | 2.5E+4          (ASCII digits; no sign, no "_", no "inf"/"nan")
    name     := [A-Za-z_][A-Za-z0-9_]*

So ``-2^2 == -4`` (``^`` binds tighter than a unary minus on its left), ``2^-1 == 0.5`` (the exponent
may carry its own sign), ``a - b - c == (a - b) - c`` and ``a / b * c == (a / b) * c``.  ``**`` is
rejected with a hint to use ``^``; a number run into a letter, digit, ``_`` or ``.`` (``2e``, ``3x``,
``1.2.3``) is malformed.  Whitespace (space, tab, CR, LF, FF, VT) may appear between tokens.
A name followed by ``(`` calls a function, any other name is a variable (so a grader may be called
``min``).  Functions: ``min(x, ...)`` and ``max(x, ...)`` take one or more arguments; ``abs``,
``floor``, ``ceil``, ``exp``, ``sqrt`` and ``log`` (natural logarithm) take exactly one.  Nesting
deeper than `MAX_DEPTH` levels (parentheses, signs, exponents, calls), and a formula longer than
`MAX_FORMULA_CHARS` characters, are rejected (both bounds live in `gradekit.graders.limits`).
Compiling takes time and memory linear in the formula's length.

`Formula(source, names)` raises `FormulaError` (a `ValueError` with the 0-based offset `position`) for
a syntax error, an unknown function, a wrong number of arguments, a literal too large for a float, or,
when `names` is given, a variable that is not in `names`.  Its message starts with
``calculate_output:`` and names the position, e.g.
``calculate_output: unknown grader 'foo' at position 12 (known: a, b)``.  A constant sub-expression
that fails, such as ``1 / 0``, is not a syntax error: it is a maths error for every sample.

Evaluation semantics.  All values are IEEE-754 doubles and operations are evaluated left to right as
parsed.  Every intermediate result must be finite; the following are maths errors, raised as
`FormulaMathError` (an `ArithmeticError`) naming the sub-expression, e.g. ``division by zero in 'a / b'``
(a sub-expression longer than 120 characters is quoted by its two ends):

* ``x / 0`` (also ``x / -0.0``, and ``0 / 0``);
* ``log(x)`` for ``x <= 0``; ``sqrt(x)`` for ``x < 0`` (``sqrt(-0.0)`` is ``-0.0``, not an error);
* ``0 ^ y`` for ``y < 0`` (``0 ^ 0`` is 1);
* ``x ^ y`` for ``x < 0`` and a non-integer ``y`` (the result would be complex; ``(-2) ^ 3`` is -8);
* overflow: any ``+ - * / ^`` or ``exp`` whose result is not finite.  This holds for intermediate
  results too: ``min(exp(1000), 1)`` is an error although its final value would be finite.
  Underflow is not an error: ``1e-300 * 1e-300`` is 0.0.

An input value must be a number (an `int`, `float`, `bool` or any object with ``__float__`` except
`str`/`bytes`); it is converted with `float`.  A NaN or infinite input, or an integer too large for a
float, is a `FormulaMathError`; a non-number is a `TypeError`; a missing variable is a `KeyError`.
A result is therefore always a finite float, never NaN or infinite.

``floor`` and ``ceil`` return floats, and like `math.floor` they drop the sign of a zero result
(``ceil(-0.5) == 0.0``).  ``min``/``max`` return the first of equal arguments (this only matters for
``0.0`` against ``-0.0``).

`Formula.evaluate_columns` evaluates whole columns at once (one list per variable, each exactly `n`
values long; other columns are ignored) and returns exactly, bit for bit, what `Formula.evaluate`
returns for each sample, with 0.0 in the list and the `FormulaMathError` message in the error dict for
samples that hit a maths error; like `evaluate` it raises for non-numbers and missing columns.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from math import isfinite
from typing import Final, Literal, NamedTuple

from .limits import MAX_FORMULA_CHARS, MAX_FORMULA_DEPTH

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_FORMULA_CHARS", "Formula", "FormulaError", "FormulaMathError"]

#: Function names and their (minimum, maximum) argument counts; None means no maximum.
FUNCTIONS: Final[dict[str, tuple[int, int | None]]] = {
    "abs": (1, 1),
    "ceil": (1, 1),
    "exp": (1, 1),
    "floor": (1, 1),
    "log": (1, 1),
    "max": (1, None),
    "min": (1, None),
    "sqrt": (1, 1),
}

#: Deepest nesting of parentheses, signs, exponents and calls a formula may have (`limits.MAX_FORMULA_DEPTH`).
MAX_DEPTH: Final[int] = MAX_FORMULA_DEPTH

_PREFIX: Final[str] = "calculate_output: "
# Substituted for a sample's value once that sample is known to fail; the sample is re-evaluated alone.
_PLACEHOLDER: Final[float] = 1.0


class FormulaError(ValueError):
    """A formula that does not parse; message names the position and what was expected."""

    position: int

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position

    def __reduce__(self) -> tuple[type[FormulaError], tuple[str, int]]:
        return (type(self), (self.args[0], self.position))


class FormulaMathError(ArithmeticError):
    """A maths error while evaluating a formula for one sample."""


# ---------------------------------------------------------------------------------------------------
# Syntax tree.  Every node records its source span [start, end) so that errors can quote the text.


@dataclass(frozen=True, slots=True)
class _Num:
    value: float
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Neg:
    operand: _Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Chain:
    """`first op1 x1 op2 x2 ...` of one precedence level, evaluated left to right.

    Kept flat rather than as nested binary nodes so that long sums do not make the tree deep.
    Each step is (operator, operand, end offset of the operand).
    """

    first: _Node
    steps: tuple[tuple[str, _Node, int], ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Pow:
    base: _Node
    exponent: _Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Call:
    func: str
    args: tuple[_Node, ...]
    start: int
    end: int


_Node = _Num | _Var | _Neg | _Chain | _Pow | _Call

# ---------------------------------------------------------------------------------------------------
# Tokenizer and parser.

_TokenKind = Literal["num", "name", "op", "(", ")", ",", "end"]
_NUMBER: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_TAIL: Final = re.compile(r"[A-Za-z0-9_.]*")
_NUMBER_START: Final = frozenset("0123456789.")
_WHITESPACE: Final = frozenset(" \t\r\n\f\v")
_PUNCTUATION: Final[dict[str, _TokenKind]] = {
    "+": "op",
    "-": "op",
    "*": "op",
    "/": "op",
    "^": "op",
    "(": "(",
    ")": ")",
    ",": ",",
}


def _syntax_error(message: str, position: int) -> FormulaError:
    return FormulaError(f"{_PREFIX}{message}", position)


class _Parsed(NamedTuple):
    """A parsed operand and its span including any parentheses and sign around it."""

    node: _Node
    start: int
    end: int


@dataclass(slots=True)
class _Parser:
    source: str
    names: frozenset[str] | None
    variables: set[str] = field(default_factory=set)
    depth: int = 0
    # the current token
    kind: _TokenKind = "end"
    text: str = ""
    start: int = 0
    end: int = 0

    def parse(self) -> _Node:
        self._advance()
        if self.kind == "end":
            raise _syntax_error(f"empty formula, expected an expression at position {self.start}", self.start)
        node = self._sum().node
        if self.kind != "end":
            if self.kind == ")":
                raise _syntax_error(f"unmatched ')' at position {self.start}", self.start)
            raise _syntax_error(
                f"expected an operator or end of input at position {self.start}, found {self._found()}",
                self.start,
            )
        return node

    def _advance(self) -> None:
        src, pos = self.source, self.end
        while pos < len(src) and src[pos] in _WHITESPACE:
            pos += 1
        self.start = pos
        if pos == len(src):
            self.kind, self.text, self.end = "end", "", pos
            return
        char = src[pos]
        number = _NUMBER.match(src, pos) if char in _NUMBER_START else None
        if number is not None:
            tail = _NUMBER_TAIL.match(src, number.end())
            if tail is not None and tail.end() > number.end():
                raise _syntax_error(f"malformed number '{src[pos : tail.end()]}' at position {pos}", pos)
            self.kind, self.text, self.end = "num", number.group(), number.end()
            return
        name = _NAME.match(src, pos)
        if name is not None:
            self.kind, self.text, self.end = "name", name.group(), name.end()
        elif char in _PUNCTUATION:
            if char == "*" and src[pos + 1 : pos + 2] == "*":
                raise _syntax_error(f"'**' is not an operator at position {pos}; use '^' for powers", pos)
            self.kind, self.text, self.end = _PUNCTUATION[char], char, pos + 1
        else:
            raise _syntax_error(f"unexpected character {char!r} at position {pos}", pos)

    def _found(self) -> str:
        if self.kind == "end":
            return "end of input"
        if self.kind == "num":
            return f"number '{self.text}'"
        if self.kind == "name":
            return f"name '{self.text}'"
        return f"'{self.text}'"

    def _chain(self, operators: str, operand: Callable[[], _Parsed]) -> _Parsed:
        first = operand()
        steps: list[tuple[str, _Node, int]] = []
        while self.kind == "op" and self.text in operators:
            op = self.text
            self._advance()
            parsed = operand()
            steps.append((op, parsed.node, parsed.end))
        if not steps:
            return first
        return _Parsed(_Chain(first.node, tuple(steps), first.start, steps[-1][2]), first.start, steps[-1][2])

    def _sum(self) -> _Parsed:
        return self._chain("+-", self._product)

    def _product(self) -> _Parsed:
        return self._chain("*/", self._unary)

    def _unary(self) -> _Parsed:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _syntax_error(
                f"formula nested too deeply at position {self.start} (at most {MAX_DEPTH} levels)", self.start
            )
        if self.kind == "op" and self.text in "+-":
            sign, start = self.text, self.start
            self._advance()
            operand = self._unary()
            node = _Neg(operand.node, start, operand.end) if sign == "-" else operand.node
            parsed = _Parsed(node, start, operand.end)
        else:
            parsed = self._power()
        self.depth -= 1
        return parsed

    def _power(self) -> _Parsed:
        base = self._primary()
        if self.kind == "op" and self.text == "^":
            self._advance()
            exponent = self._unary()
            return _Parsed(_Pow(base.node, exponent.node, base.start, exponent.end), base.start, exponent.end)
        return base

    def _primary(self) -> _Parsed:
        start, text = self.start, self.text
        if self.kind == "num":
            value = float(text)
            if not isfinite(value):
                raise _syntax_error(f"number '{text}' at position {start} is too large", start)
            self._advance()
            return _Parsed(_Num(value, start, start + len(text)), start, start + len(text))
        if self.kind == "name":
            self._advance()
            if self.kind == "(":
                return self._call(text, start)
            if self.names is not None and text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise _syntax_error(f"unknown grader '{text}' at position {start} (known: {known})", start)
            self.variables.add(text)
            return _Parsed(_Var(text, start, start + len(text)), start, start + len(text))
        if self.kind == "(":
            self._advance()
            inner = self._sum()
            if self.kind != ")":
                raise _syntax_error(
                    f"expected ')' at position {self.start}, found {self._found()} (unclosed '(' at position {start})",
                    self.start,
                )
            end = self.end
            self._advance()
            return _Parsed(inner.node, start, end)
        raise _syntax_error(f"expected an operand at position {start}, found {self._found()}", start)

    def _call(self, func: str, start: int) -> _Parsed:
        if func not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise _syntax_error(f"unknown function '{func}' at position {start} (known: {known})", start)
        open_position = self.start
        self._advance()
        args: list[_Node] = []
        if self.kind != ")":
            args.append(self._sum().node)
            while self.kind == ",":
                self._advance()
                args.append(self._sum().node)
            if self.kind != ")":
                raise _syntax_error(
                    f"expected ',' or ')' at position {self.start}, found {self._found()} "
                    f"(unclosed '(' at position {open_position})",
                    self.start,
                )
        end = self.end
        low, high = FUNCTIONS[func]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"exactly {low}" if low == high else f"at least {low}"
            plural = "" if low == 1 else "s"
            raise _syntax_error(
                f"function '{func}' at position {start} takes {wanted} argument{plural}, got {len(args)}",
                start,
            )
        self._advance()
        return _Parsed(_Call(func, tuple(args), start, end), start, end)


# ---------------------------------------------------------------------------------------------------
# Scalar semantics: one function per operation, raising FormulaMathError; shared by both evaluators.

_Binary = Callable[[float, float], float]
_Unary = Callable[[float], float]


# The source text an error message quotes, made only when a message needs it: slicing it eagerly for every
# chain step made compiling quadratic in the formula's length.
_Text = Callable[[], str]
#: Longest sub-expression quoted whole in a maths error; longer ones keep both ends.
_QUOTE_CHARS: Final[int] = 120


def _quote(source: str, start: int, end: int) -> str:
    if end - start <= _QUOTE_CHARS:
        return source[start:end]
    half = (_QUOTE_CHARS - 5) // 2
    return f"{source[start : start + half]} ... {source[end - half : end]}"


def _span(source: str, start: int, end: int) -> _Text:
    """The text of `source[start:end]` for a message, sliced when asked for."""
    return functools.partial(_quote, source, start, end)


def _overflow(text: _Text) -> FormulaMathError:
    return FormulaMathError(f"overflow in '{text()}'")


def _binary_op(op: str, text: _Text) -> _Binary:
    """The checked scalar operation for a chain step whose text (from the chain start) is `text()`."""
    if op == "+":

        def add(x: float, y: float) -> float:
            result = x + y
            if isfinite(result):
                return result
            raise _overflow(text)

        return add
    if op == "-":

        def sub(x: float, y: float) -> float:
            result = x - y
            if isfinite(result):
                return result
            raise _overflow(text)

        return sub
    if op == "*":

        def mul(x: float, y: float) -> float:
            result = x * y
            if isfinite(result):
                return result
            raise _overflow(text)

        return mul

    def div(x: float, y: float) -> float:
        if y == 0.0:
            raise FormulaMathError(f"division by zero in '{text()}'")
        result = x / y
        if isfinite(result):
            return result
        raise _overflow(text)

    return div


def _pow_op(text: _Text) -> _Binary:
    def power(x: float, y: float) -> float:
        if x == 0.0 and y < 0.0:
            raise FormulaMathError(f"zero raised to a negative power in '{text()}'")
        if x < 0.0 and not y.is_integer():
            raise FormulaMathError(f"negative base raised to a non-integer power in '{text()}'")
        try:
            result = x**y
        except OverflowError:
            raise _overflow(text) from None
        if isfinite(result):
            return result
        raise _overflow(text)

    return power


def _function_op(func: str, text: _Text) -> _Unary:
    """The checked scalar version of a one-argument function."""
    if func == "abs":
        return abs
    if func == "floor":
        return lambda x: float(math.floor(x))
    if func == "ceil":
        return lambda x: float(math.ceil(x))
    if func == "exp":

        def exp(x: float) -> float:
            try:
                return math.exp(x)
            except OverflowError:
                raise _overflow(text) from None

        return exp
    if func == "sqrt":

        def sqrt(x: float) -> float:
            if x < 0.0:
                raise FormulaMathError(f"square root of a negative number ({x!r}) in '{text()}'")
            return math.sqrt(x)

        return sqrt

    def log(x: float) -> float:
        if x <= 0.0:
            raise FormulaMathError(f"logarithm of a non-positive number ({x!r}) in '{text()}'")
        return math.log(x)

    return log


def _to_float(name: str, value: object) -> float:
    """One input value as a finite float."""
    if type(value) is not float:
        if isinstance(value, str | bytes | bytearray):
            raise TypeError(f"{_PREFIX}value of grader '{name}' is not a number: {value!r}")
        try:
            value = float(value)
        except OverflowError:
            raise FormulaMathError(f"value of grader '{name}' is too large for a float") from None
        except (TypeError, ValueError):
            raise TypeError(f"{_PREFIX}value of grader '{name}' is not a number: {value!r}") from None
    if isfinite(value):
        return value
    raise FormulaMathError(f"value of grader '{name}' is not finite ({value!r})")


# ---------------------------------------------------------------------------------------------------
# Compilation to per-sample closures.

_Scalar = Callable[[Mapping[str, float]], float]


def _compile_scalar(node: _Node, source: str) -> _Scalar:
    if isinstance(node, _Num):
        value = node.value
        return lambda env: value
    if isinstance(node, _Var):
        name = node.name
        return lambda env: env[name]
    if isinstance(node, _Neg):
        operand = _compile_scalar(node.operand, source)
        return lambda env: -operand(env)
    if isinstance(node, _Chain):
        first = _compile_scalar(node.first, source)
        steps = tuple(
            (_binary_op(op, _span(source, node.start, end)), _compile_scalar(operand, source))
            for op, operand, end in node.steps
        )

        def chain(env: Mapping[str, float]) -> float:
            acc = first(env)
            for op, operand in steps:
                acc = op(acc, operand(env))
            return acc

        return chain
    if isinstance(node, _Pow):
        power = _pow_op(_span(source, node.start, node.end))
        base, exponent = _compile_scalar(node.base, source), _compile_scalar(node.exponent, source)
        return lambda env: power(base(env), exponent(env))
    args = tuple(_compile_scalar(arg, source) for arg in node.args)
    if node.func in ("min", "max"):
        pick = min if node.func == "min" else max
        if len(args) == 1:
            return args[0]
        return lambda env: pick([arg(env) for arg in args])
    func, (arg,) = _function_op(node.func, _span(source, node.start, node.end)), args
    return lambda env: func(arg(env))


def _fold(node: _Node, source: str) -> _Node:
    """`node` with every subtree free of variables replaced by its value (unless it fails)."""
    if isinstance(node, _Num | _Var):
        return node
    if isinstance(node, _Neg):
        children: tuple[_Node, ...] = (_fold(node.operand, source),)
        node = replace(node, operand=children[0])
    elif isinstance(node, _Chain):
        first = _fold(node.first, source)
        steps = tuple((op, _fold(operand, source), end) for op, operand, end in node.steps)
        children = (first, *(operand for _, operand, _ in steps))
        node = replace(node, first=first, steps=steps)
    elif isinstance(node, _Pow):
        children = (_fold(node.base, source), _fold(node.exponent, source))
        node = replace(node, base=children[0], exponent=children[1])
    else:
        children = tuple(_fold(arg, source) for arg in node.args)
        node = replace(node, args=children)
    if all(isinstance(child, _Num) for child in children):
        try:
            return _Num(_compile_scalar(node, source)({}), node.start, node.end)
        except FormulaMathError:
            pass  # left in place: every evaluation reports the error where it happens
    return node


# ---------------------------------------------------------------------------------------------------
# Compilation to column-at-a-time closures.
#
# Each compiled node maps a _Context to a list of n floats, one per sample, using list comprehensions
# and C-level maps over whole columns.  Invariant: every list a node returns holds only finite floats,
# except that a chain compiled with checked=False may return non-finite values: it is only used where
# its consumer is another chain that keeps them non-finite and checks its own result.
# A sample whose computation fails (exception or non-finite value) is added to `bad` and gets a
# placeholder; the caller re-evaluates each bad sample alone with the scalar closures, which also gives
# the exact error message.  On every other sample the column code performs exactly the same float
# operations in the same order as the scalar code, so the results are identical.


@dataclass(slots=True)
class _Context:
    n: int
    columns: dict[str, list[float]]
    bad: set[int]


_Columns = Callable[[_Context], list[float]]
_Step = Callable[[_Context, list[float]], list[float]]


def _elementwise(ctx: _Context, op: Callable[..., float], *columns: list[float]) -> list[float]:
    """`op` applied sample by sample (the slow path), marking the samples where it fails."""
    out: list[float] = []
    append = out.append
    for index, args in enumerate(zip(*columns, strict=True)):
        try:
            append(op(*args))
        except FormulaMathError:
            ctx.bad.add(index)
            append(_PLACEHOLDER)
    return out


def _scrub(ctx: _Context, values: list[float]) -> list[float]:
    """`values` with non-finite entries marked bad and replaced (in place)."""
    # a sum of floats is finite only if every term is, so one C-level pass checks the common case
    if isfinite(sum(values)):
        return values
    for index, value in enumerate(values):
        if not isfinite(value):
            ctx.bad.add(index)
            values[index] = _PLACEHOLDER
    return values


def _constant(value: float) -> _Columns:
    return lambda ctx: [value] * ctx.n


def _scaled(node: _Node) -> tuple[float, _Node, bool] | None:
    """(k, x, k_first) if `node` is `k * x` or `x * k` with a literal k, else None."""
    if isinstance(node, _Chain) and len(node.steps) == 1 and node.steps[0][0] == "*":
        (_, right, _), left = node.steps[0], node.first
        if isinstance(left, _Num) and not isinstance(right, _Num):
            return left.value, right, True
        if isinstance(right, _Num) and not isinstance(left, _Num):
            return right.value, left, False
    return None


def _make_step(op: str, operand: _Node, text: _Text, source: str) -> _Step:
    """The column version of `acc <op> operand`; `text()` is the step's source text for messages."""
    checked = _binary_op(op, text)
    if isinstance(operand, _Num):
        k = operand.value
        if op == "+":
            return lambda ctx, acc: [a + k for a in acc]
        if op == "-":
            return lambda ctx, acc: [a - k for a in acc]
        if op == "*":
            return lambda ctx, acc: [a * k for a in acc]
        if k == 0.0:
            return lambda ctx, acc: _elementwise(ctx, checked, acc, [k] * ctx.n)
        return lambda ctx, acc: [a / k for a in acc]
    scaled = _scaled(operand) if op in "+-" else None
    if scaled is not None:
        # fused `acc ± k * x`: saves a list; an overflowing product is non-finite after the addition too
        k, inner, k_first = scaled
        x_columns = _compile_columns(inner, source, checked=False)
        if op == "+":
            if k_first:
                return lambda ctx, acc: [a + k * x for a, x in zip(acc, x_columns(ctx), strict=True)]
            return lambda ctx, acc: [a + x * k for a, x in zip(acc, x_columns(ctx), strict=True)]
        if k_first:
            return lambda ctx, acc: [a - k * x for a, x in zip(acc, x_columns(ctx), strict=True)]
        return lambda ctx, acc: [a - x * k for a, x in zip(acc, x_columns(ctx), strict=True)]
    # x / inf is 0, so only a divisor must be checked; x + inf, x - inf and x * inf stay non-finite
    y_columns = _compile_columns(operand, source, checked=op == "/")
    if op == "+":
        return lambda ctx, acc: [a + y for a, y in zip(acc, y_columns(ctx), strict=True)]
    if op == "-":
        return lambda ctx, acc: [a - y for a, y in zip(acc, y_columns(ctx), strict=True)]
    if op == "*":
        return lambda ctx, acc: [a * y for a, y in zip(acc, y_columns(ctx), strict=True)]

    def divide(ctx: _Context, acc: list[float]) -> list[float]:
        ys = y_columns(ctx)
        if 0.0 in ys:
            return _elementwise(ctx, checked, acc, ys)
        return [a / y for a, y in zip(acc, ys, strict=True)]

    return divide


def _make_head(k: float, op: str, operand: _Node, text: _Text, source: str) -> _Columns | None:
    """The column version of `k <op> operand` for a literal k, or None if there is no fast form."""
    scaled = _scaled(operand) if op in "+-" else None
    if isinstance(operand, _Num) or scaled is not None:
        return None
    # x / inf is 0, so only a divisor must be checked; x + inf, x - inf and x * inf stay non-finite
    y_columns = _compile_columns(operand, source, checked=op == "/")
    if op == "+":
        return lambda ctx: [k + y for y in y_columns(ctx)]
    if op == "-":
        return lambda ctx: [k - y for y in y_columns(ctx)]
    if op == "*":
        return lambda ctx: [k * y for y in y_columns(ctx)]
    checked = _binary_op(op, text)

    def divide(ctx: _Context) -> list[float]:
        ys = y_columns(ctx)
        if 0.0 in ys:
            return _elementwise(ctx, checked, [k] * ctx.n, ys)
        return [k / y for y in ys]

    return divide


def _compile_chain_columns(node: _Chain, source: str, checked: bool) -> _Columns:
    steps = list(node.steps)
    head: _Columns | None = None
    if isinstance(node.first, _Num):
        op, operand, end = steps[0]
        head = _make_head(node.first.value, op, operand, _span(source, node.start, end), source)
        if head is not None:
            del steps[0]
    if head is None:
        head = _compile_columns(node.first, source, checked=False)
    compiled = tuple(_make_step(op, operand, _span(source, node.start, end), source) for op, operand, end in steps)

    def chain(ctx: _Context) -> list[float]:
        acc = head(ctx)
        for step in compiled:
            acc = step(ctx, acc)
        # Under IEEE rules a non-finite accumulator stays non-finite through + - * / by a finite nonzero
        # divisor (divisors are checked, and x / 0 takes the slow path), and so does the result of
        # + - * with a non-finite operand: one check at the end catches an overflow in any step.
        return _scrub(ctx, acc)

    def unchecked_chain(ctx: _Context) -> list[float]:
        acc = head(ctx)
        for step in compiled:
            acc = step(ctx, acc)
        return acc

    return chain if checked else unchecked_chain


def _compile_pow_columns(node: _Pow, source: str) -> _Columns:
    checked = _pow_op(_span(source, node.start, node.end))
    base_columns, exponent_columns = (
        _compile_columns(node.base, source),
        _compile_columns(node.exponent, source),
    )
    base = node.base.value if isinstance(node.base, _Num) else None
    exponent = node.exponent.value if isinstance(node.exponent, _Num) else None

    def power(ctx: _Context) -> list[float]:
        # each operand is computed once: recomputing on the slow path would be exponential in nesting
        xs = [base] * ctx.n if base is not None else base_columns(ctx)
        ys = None if exponent is not None else exponent_columns(ctx)
        try:
            if ys is None:
                out = [x**exponent for x in xs]
            elif base is not None:
                out = [base**y for y in ys]
            else:
                out = [x**y for x, y in zip(xs, ys, strict=True)]
            # a negative base with a fractional exponent gives a complex number, so check the type too
            total = sum(out)
            if type(total) is float and isfinite(total):
                return out
        except (OverflowError, ZeroDivisionError):
            pass
        return _elementwise(ctx, checked, xs, [exponent] * ctx.n if ys is None else ys)

    return power


def _compile_extremum_columns(node: _Call, source: str) -> _Columns:
    # min(a, b, ...) keeps the running minimum and replaces it only by a strictly smaller value, which is
    # what the builtin does, so folding pairwise gives the same result (including for 0.0 and -0.0).
    is_min = node.func == "min"

    def fold(arg: _Node) -> _Step:
        if isinstance(arg, _Num):
            k = arg.value
            if is_min:
                return lambda ctx, acc: [k if k < a else a for a in acc]
            return lambda ctx, acc: [k if k > a else a for a in acc]
        ys = _compile_columns(arg, source)
        if is_min:
            return lambda ctx, acc: [y if y < a else a for a, y in zip(acc, ys(ctx), strict=True)]
        return lambda ctx, acc: [y if y > a else a for a, y in zip(acc, ys(ctx), strict=True)]

    first, rest = node.args[0], node.args[1:]
    if isinstance(first, _Num) and rest and not isinstance(rest[0], _Num):
        # the clipping idiom max(0, min(1, x)): start from the literal without a list of copies of it
        k, ys = first.value, _compile_columns(rest[0], source)
        rest = rest[1:]

        def head(ctx: _Context) -> list[float]:
            if is_min:
                return [y if y < k else k for y in ys(ctx)]
            return [y if y > k else k for y in ys(ctx)]

    else:
        head = _compile_columns(first, source)
    steps = tuple(fold(arg) for arg in rest)
    if not steps:
        return head

    def extremum(ctx: _Context) -> list[float]:
        acc = head(ctx)
        for step in steps:
            acc = step(ctx, acc)
        return acc

    return extremum


def _compile_function_columns(node: _Call, source: str) -> _Columns:
    (arg,) = (_compile_columns(arg, source) for arg in node.args)
    func = node.func
    if func == "abs":
        return lambda ctx: list(map(abs, arg(ctx)))
    if func in ("floor", "ceil"):
        rounding = math.floor if func == "floor" else math.ceil
        return lambda ctx: list(map(float, map(rounding, arg(ctx))))
    checked = _function_op(func, _span(source, node.start, node.end))
    fast = {"exp": math.exp, "sqrt": math.sqrt, "log": math.log}[func]

    def function(ctx: _Context) -> list[float]:
        xs = arg(ctx)
        try:
            # math.exp raises on overflow, math.sqrt/log on a domain error: never a non-finite result
            return list(map(fast, xs))
        except (OverflowError, ValueError):
            return _elementwise(ctx, checked, xs)

    return function


def _compile_columns(node: _Node, source: str, checked: bool = True) -> _Columns:
    if isinstance(node, _Num):
        return _constant(node.value)
    if isinstance(node, _Var):
        name = node.name
        return lambda ctx: ctx.columns[name]
    if isinstance(node, _Neg):
        operand = _compile_columns(node.operand, source)
        return lambda ctx: [-x for x in operand(ctx)]
    if isinstance(node, _Chain):
        return _compile_chain_columns(node, source, checked)
    if isinstance(node, _Pow):
        return _compile_pow_columns(node, source)
    if node.func in ("min", "max"):
        return _compile_extremum_columns(node, source)
    return _compile_function_columns(node, source)


def _load_column(name: str, raw: Sequence[float], n: int, ctx: _Context) -> list[float]:
    """One input column as finite floats, marking bad samples (non-finite or too large)."""
    if len(raw) != n:
        raise ValueError(f"{_PREFIX}column of grader '{name}' has {len(raw)} values, expected {n}")
    try:
        total = sum(raw)  # cheap C-level rejection of str, None, ...: float() alone would accept "1.5"
        column = list(map(float, raw))
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        # a finite float sum means finite floats and ints (converted above without overflow)
        return column if type(total) is float and isfinite(total) else _scrub(ctx, column)
    column = []
    for index, value in enumerate(raw):
        try:
            column.append(_to_float(name, value))
        except FormulaMathError:
            ctx.bad.add(index)
            column.append(_PLACEHOLDER)
    return column


# ---------------------------------------------------------------------------------------------------


class Formula:
    """A compiled calculate_output formula."""

    source: str
    variables: frozenset[str]

    def __init__(self, source: str, names: Iterable[str] | None = None) -> None:
        if not isinstance(source, str):
            raise TypeError(f"{_PREFIX}formula must be a str, not {type(source).__name__}")
        if len(source) > MAX_FORMULA_CHARS:
            raise _syntax_error(
                f"formula is {len(source):,} characters long; the limit is MAX_FORMULA_CHARS ({MAX_FORMULA_CHARS:,})",
                MAX_FORMULA_CHARS,
            )
        self._names = None if names is None else frozenset(names)
        parser = _Parser(source, self._names)
        tree = _fold(parser.parse(), source)
        self.source = source
        self.variables = frozenset(parser.variables)
        self._order = tuple(sorted(self.variables))
        self._scalar = _compile_scalar(tree, source)
        self._columns = _compile_columns(tree, source)

    def __repr__(self) -> str:
        return f"Formula({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Formula) and other.source == self.source and other._names == self._names

    def __hash__(self) -> int:
        return hash((Formula, self.source))

    def __reduce__(self) -> tuple[type[Formula], tuple[str, frozenset[str] | None]]:
        # the compiled closures cannot be pickled; recompile from the source instead
        return (Formula, (self.source, self._names))

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The formula's value for one sample; raises FormulaMathError on a maths error."""
        env: dict[str, float] = {}
        for name in self._order:
            try:
                value = values[name]
            except KeyError:
                raise KeyError(f"{_PREFIX}no value for grader '{name}'") from None
            env[name] = _to_float(name, value)
        return self._scalar(env)

    def evaluate_columns(self, columns: Mapping[str, Sequence[float]], n: int) -> tuple[list[float], dict[int, str]]:
        """The formula's values for n samples given one column per variable, and index -> maths error."""
        if n < 0:
            raise ValueError(f"{_PREFIX}n must be >= 0, got {n}")
        ctx = _Context(n, {}, set())
        for name in self._order:
            try:
                raw = columns[name]
            except KeyError:
                raise KeyError(f"{_PREFIX}no column for grader '{name}'") from None
            ctx.columns[name] = _load_column(name, raw, n, ctx)
        results = self._columns(ctx)  # a fresh list, even when it is a loaded column
        errors: dict[int, str] = {}
        for index in sorted(ctx.bad):
            try:
                results[index] = self.evaluate({name: columns[name][index] for name in self._order})
            except FormulaMathError as error:
                results[index] = 0.0
                errors[index] = str(error)
        return results, errors
