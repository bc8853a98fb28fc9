"""The jinja2 environment of gradekit templates: an immutable sandbox whose work and output are bounded.

jinja2's `ImmutableSandboxedEnvironment` already refuses private attributes and methods that change a
list, dict or set. On top of it (the limits are in `gradekit.graders.limits`):

- `*`, `**`, `+` and `%` are intercepted (so jinja2 never folds them at compile time) and refused before
  they would build a string or list longer than `MAX_RENDERED_CHARS` or an int longer than
  `MAX_TEMPLATE_INT_BITS` bits;
- `~` concatenation, `str.format`, `%`-formatting and the filters and string methods that can multiply
  their input (`join`, `replace`, `center`, `indent`, `format`, `wordwrap`, `tojson`, `ljust`, `zfill`,
  `expandtabs`, `translate`, `int.to_bytes`, ...) are checked against the size of what they would
  build, and every value they create is at most `MAX_RENDERED_CHARS` long;
- all values one rendering creates count against `MAX_TEMPLATE_ALLOCATED_CHARS`, and its loop
  iterations, calls and filter applications against `MAX_TEMPLATE_STEPS`; `range` is at most that long
  and `lipsum` is gone;
- the output of a rendering, a macro, a `{% set %}` block or a `{% filter %}` block is at most
  `MAX_RENDERED_CHARS`.

Past a bound a `TemplateLimitError` names it. Constant expressions are checked when the template is
compiled (`check_constants`), so `{{ 'a' * 300000000 }}` is a validation error, not a rendering one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import operator
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import jinja2
from jinja2 import nodes
from jinja2.runtime import Context, Namespace
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .batch import UnrenderableError, to_text
from .limits import (
    MAX_JSON_DEPTH,
    MAX_RENDERED_CHARS,
    MAX_TEMPLATE_ALLOCATED_CHARS,
    MAX_TEMPLATE_INT_BITS,
    MAX_TEMPLATE_STEPS,
)
from .safety import NestingError, nesting_exceeds
from .safety import text_size as _text_size

__all__ = ["RenderBudget", "TemplateLimitError", "bounded_environment", "check_constants", "text_size"]


class TemplateLimitError(Exception):
    """A template went past one of gradekit's bounds; the message names the bound."""


class _Budget:
    __slots__ = ("allocated", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.allocated = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("gradekit_template_budget", default=None)


class RenderBudget:
    """A fresh budget of steps and allocated characters for one rendering (or one compilation)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _BUDGET.set(_Budget())

    def __exit__(self, *exc: object) -> None:
        _BUDGET.reset(self._token)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.steps += 1
        if budget.steps > MAX_TEMPLATE_STEPS:
            raise TemplateLimitError(
                f"the template took more than MAX_TEMPLATE_STEPS ({MAX_TEMPLATE_STEPS:,}) loop iterations, "
                "calls and filter applications"
            )


_SIZED: Final = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
# Names of the filters `_Bounder` routes loops and `~` through (not meant for templates, but harmless there).
_LOOP_FILTER: Final = "gradekit_loop"
_CONCAT_FILTER: Final = "gradekit_concat"
_SEQUENCES: Final = (str, bytes, bytearray, list, tuple)


def _amount(n: int) -> str:
    # Python refuses to print ints of more than 4300 digits; a hostile size can be one
    return f"{n:,}" if n.bit_length() <= MAX_TEMPLATE_INT_BITS else f"more than 10^{MAX_TEMPLATE_INT_BITS * 3 // 10:,}"


def _check_length(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARS:
        raise TemplateLimitError(
            f"{what} would be {_amount(size)} long; the limit is MAX_RENDERED_CHARS ({MAX_RENDERED_CHARS:,})"
        )


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_TEMPLATE_INT_BITS:
        raise TemplateLimitError(
            f"{what} would have about {_amount(bits)} bits; "
            f"the limit is MAX_TEMPLATE_INT_BITS ({MAX_TEMPLATE_INT_BITS:,})"
        )


def _checked(value: Any, what: str = "a value") -> Any:
    """`value`, unless it is longer than `MAX_RENDERED_CHARS` or an int longer than `MAX_TEMPLATE_INT_BITS`."""
    if isinstance(value, _SIZED):
        _check_length(len(value), what)
    elif isinstance(value, int) and not isinstance(value, bool):
        _check_bits(value.bit_length(), what)
    return value


def _allocated(value: Any, what: str = "a value") -> Any:
    """`_checked(value)`, also counted against the rendering's `MAX_TEMPLATE_ALLOCATED_CHARS`."""
    _checked(value, what)
    if isinstance(value, _SIZED):
        budget = _BUDGET.get()
        if budget is not None:
            budget.allocated += len(value)
            if budget.allocated > MAX_TEMPLATE_ALLOCATED_CHARS:
                raise TemplateLimitError(
                    "the template built more than MAX_TEMPLATE_ALLOCATED_CHARS "
                    f"({MAX_TEMPLATE_ALLOCATED_CHARS:,}) characters in all"
                )
    return value


def _namespace_values(value: Any) -> Iterable[Any] | None:
    # jinja2's Namespace prints its attributes, which live in a name-mangled dict
    if isinstance(value, Namespace):
        return object.__getattribute__(value, "_Namespace__attrs").values()  # type: ignore[no-any-return]
    return None


def text_size(value: Any, limit: int = MAX_RENDERED_CHARS) -> int:
    """`safety.text_size` that also looks into jinja2 namespaces."""
    return _text_size(value, limit, _namespace_values)


def _check_printable(value: Any, what: str) -> None:
    """Refuse to print `value` (`str()`, JSON) when it nests past `MAX_JSON_DEPTH` or prints too long."""
    if isinstance(value, str):
        return
    if nesting_exceeds(value):  # str() and json.dumps recurse once per level
        raise UnrenderableError(f"{what}: the value nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels")
    _check_length(text_size(value), what)


def _depth(value: Any) -> int:
    """Nesting depth of dicts and lists in `value`, counted up to `MAX_JSON_DEPTH + 1`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list | tuple):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                break
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


# --- operators ----------------------------------------------------------------------------------------

_BINOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "**": operator.pow,
    "%": operator.mod,
}


def check_binop(op: str, left: Any, right: Any) -> None:
    """Raise `TemplateLimitError` if `left op right` would build a value past a bound (before building it)."""
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int) and n > 0:
                _check_length(len(seq) * n, f"{type(seq).__name__} * {_amount(n)}")
        if isinstance(left, int) and isinstance(right, int):
            _check_bits(left.bit_length() + right.bit_length(), "the product")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            # at least (bits - 1) * exponent bits: refused before Python spends seconds computing it
            _check_bits((abs(left).bit_length() - 1) * right, f"the power with exponent {_amount(right)}")
    elif op == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _check_length(len(left) + len(right), "the concatenation")
    elif op == "%" and isinstance(left, str | bytes):
        _check_percent(left, right)


def binop(op: str, left: Any, right: Any) -> Any:
    """`left op right` within the bounds."""
    check_binop(op, left, right)
    return _allocated(_BINOPS[op](left, right), f"the result of {op!r}")


def concat_values(parts: tuple[Any, ...]) -> str:
    """`a ~ b ~ ...` within the bounds."""
    for p in parts:
        _check_printable(p, "the `~` concatenation")
    total = sum(len(p) if isinstance(p, str) else text_size(p) for p in parts)
    _check_length(total, "the `~` concatenation")
    return _allocated("".join(map(str, parts)), "the `~` concatenation")  # type: ignore[no-any-return]


def bounded_range(*args: int) -> range:
    """`range`, at most `MAX_TEMPLATE_STEPS` long."""
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:
        length = MAX_TEMPLATE_STEPS + 1
    if length > MAX_TEMPLATE_STEPS:
        raise TemplateLimitError(f"range() is longer than MAX_TEMPLATE_STEPS ({MAX_TEMPLATE_STEPS:,})")
    return numbers


def loop_items(iterable: Iterable[Any]) -> Iterator[Any]:
    """What a `{% for %}` loop iterates: `iterable`, each item counted as a step."""
    for item in iterable:
        _step()
        yield item


# --- formatting ---------------------------------------------------------------------------------------

_PERCENT_SPEC: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)
_DIGITS: Final = re.compile(r"\d+")


def _check_width(digits: str) -> None:
    if len(digits) > 9 or int(digits) > MAX_RENDERED_CHARS:
        raise TemplateLimitError(
            f"a width or precision of {digits[:20]} in a format string is more than "
            f"MAX_RENDERED_CHARS ({MAX_RENDERED_CHARS:,})"
        )


def _check_star_args(values: list[Any]) -> None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_RENDERED_CHARS:
            _check_width(str(min(v, 10**12)))


def _check_percent(fmt: str | bytes, args: Any) -> None:
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    specs, star = 0, False
    for m in _PERCENT_SPEC.finditer(text):
        if m.group(3) == "%":
            continue
        specs += 1
        for group in (m.group(1), m.group(2)):
            if group == "*":
                star = True
            elif group is not None:
                _check_width(group)
    values = list(args.values()) if isinstance(args, Mapping) else list(args) if isinstance(args, tuple) else [args]
    _check_filled(text, specs, values, star, "the %-formatted string")


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    fields, nested = 0, False
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        fields += 1
        if spec:
            nested = nested or "{" in spec
            for digits in _DIGITS.findall(spec):
                _check_width(digits)
    _check_filled(fmt, fields, [*args, *kwargs.values()], nested, "the formatted string")


def _check_filled(template: str, fields: int, values: list[Any], computed_widths: bool, what: str) -> None:
    """Bounds of `template` with `fields` placeholders filled by `values` (widths taken from them if computed)."""
    for v in values:
        _check_printable(v, what)
    if computed_widths:
        _check_star_args(values)
    biggest = max((text_size(v) for v in values), default=0)
    _check_length(len(template) + fields * biggest, what)


def _check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(s, str | bytes) and type(old) is type(s) and type(new) is type(s)):
        return
    growth = len(new) - len(old)
    if growth <= 0:
        return
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    _check_length(len(s) + n * growth, "the replacement")


def _joined_size(separator: Any, items: list[Any]) -> int:
    for x in items:
        _check_printable(x, "the joined string")
    return sum(text_size(x) for x in items) + len(separator) * max(len(items) - 1, 0)


# --- calls --------------------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Checks a call of a str/bytes/int method that can multiply its input; returns the arguments to use."""
    if isinstance(owner, int):
        if name == "to_bytes":
            length = _arg(args, kwargs, 0, "length", 1)
            if isinstance(length, int):
                _check_length(length, "int.to_bytes()")
        return args
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _arg(args, kwargs, 0, "width")
        if isinstance(width, int):
            _check_length(width, f"str.{name}()")
    elif name == "expandtabs":
        tabsize = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabsize, int):
            tab = "\t" if isinstance(owner, str) else b"\t"
            _check_length(len(owner) + owner.count(tab) * max(tabsize, 0), "str.expandtabs()")
    elif name == "replace":
        _check_replace(
            owner, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), _arg(args, kwargs, 2, "count", -1)
        )
    elif name == "join" and args:
        items = list(args[0])
        _check_length(_joined_size(owner, items), "the joined string")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str | bytes)), default=1)
        _check_length(len(owner) * max(longest, 1), "str.translate()")
    elif name in ("format", "format_map") and isinstance(owner, str):
        mapping = args[0] if name == "format_map" and args and isinstance(args[0], Mapping) else {}
        _check_format(owner, args, kwargs) if name == "format" else _check_format(owner, (), mapping)
    return args


def _method_target(obj: Any) -> tuple[Any, str] | None:
    """(owner, name) when `obj` is a bound method of a str/bytes/int (or jinja2's wrapper of `str.format`)."""
    try:
        wrapped = getattr(obj, "__wrapped__", None)
        target = wrapped if isinstance(wrapped, types.BuiltinMethodType) else obj
        if not isinstance(target, types.BuiltinMethodType):
            return None
        owner = target.__self__
    except Exception:
        return None
    if isinstance(owner, str | bytes | bytearray | int) and not isinstance(owner, bool):
        return owner, target.__name__
    return None


# --- filters ------------------------------------------------------------------------------------------

# Filters that do not print their value (its size is not checked before they run).
_NOT_PRINTING: Final = frozenset(
    {
        "abs", "attr", "batch", "count", "d", "default", "dictsort", "first", "float", "groupby", "int",
        "items", "join", "last", "length", "list", "map", "max", "min", "pprint", "random", "reject",
        "rejectattr", "reverse", "round", "select", "selectattr", "slice", "sort", "sum", "tojson",
        "unique", "filesizeformat",
    }
)  # fmt: skip
# Filters that return (a part of) what they were given rather than something new.
_SELECTING: Final = frozenset({"attr", "d", "default", "first", "last", "max", "min", "random"})

_FilterCheck = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]


def _center(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    width = _arg(args, kwargs, 0, "width", 80)
    if isinstance(width, int):
        _check_length(width, "center()")
    return value


def _indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    width = _arg(args, kwargs, 0, "width", 4)
    unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = value.count("\n") + 1 if isinstance(value, str) else text_size(value)
    _check_length(text_size(value) + lines * max(unit, 0), "indent()")
    return value


def _wordwrap(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    width = _arg(args, kwargs, 0, "width", 79)
    wrapstring = _arg(args, kwargs, 2, "wrapstring")
    if isinstance(wrapstring, str) and isinstance(width, int):
        n = text_size(value)
        lines = n // max(width, 1) + (value.count(" ") + value.count("\n") if isinstance(value, str) else n) + 1
        _check_length(n + lines * len(wrapstring), "wordwrap()")
    return value


def _format(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if isinstance(value, str):
        _check_percent(value, kwargs or args)
    return value


def _replace(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    count = _arg(args, kwargs, 2, "count")
    _check_replace(value, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"), -1 if count is None else count)
    return value


def _join(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    items = list(value)
    separator = _arg(args, kwargs, 0, "d", "")
    _check_length(_joined_size(separator if isinstance(separator, str) else "", items), "the joined string")
    return items


def _batch(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    linecount = _arg(args, kwargs, 0, "linecount")
    if _arg(args, kwargs, 1, "fill_with") is not None and isinstance(linecount, int):
        _check_length(linecount, "batch() with fill_with")
    return value


def _slice(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    slices = _arg(args, kwargs, 0, "slices")
    if isinstance(slices, int) and slices > MAX_TEMPLATE_STEPS:
        raise TemplateLimitError(f"slice() into more than MAX_TEMPLATE_STEPS ({MAX_TEMPLATE_STEPS:,}) parts")
    return value


def _sum(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    start = _arg(args, kwargs, 1, "start", 0)
    if not isinstance(start, _SEQUENCES):
        return value
    items = list(value)
    total = len(start) + sum(len(x) for x in items if isinstance(x, _SIZED))
    _check_length(total, "sum()")
    # each addition copies what came before: quadratic in the number of items
    if len(items) * total > MAX_TEMPLATE_ALLOCATED_CHARS:
        raise TemplateLimitError(
            f"sum() of {len(items):,} sequences would copy more than MAX_TEMPLATE_ALLOCATED_CHARS "
            f"({MAX_TEMPLATE_ALLOCATED_CHARS:,}) items"
        )
    return items


def _tojson(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _check_printable(value, "tojson()")
    indent = _arg(args, kwargs, 0, "indent")
    unit = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    _check_length(text_size(value) * (1 + 6 + _depth(value) * max(unit, 0)), "tojson()")
    return value


def _pprint(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _check_printable(value, "pprint()")
    _check_length(text_size(value) * 2, "pprint()")
    return value


_FILTER_CHECKS: Final[dict[str, _FilterCheck]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": _format,
    "replace": _replace,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
    "tojson": _tojson,
    "pprint": _pprint,
}


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    prints = name not in _NOT_PRINTING
    creates = name not in _SELECTING
    # jinja2 passes the context, eval context or environment first to filters marked with pass_*
    offset = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _step()
        if len(args) > offset:
            value, rest = args[offset], args[offset + 1 :]
            if prints:
                _check_printable(value, f"the text of the value given to `{name}`")
            if check is not None:
                new = check(value, rest, kwargs)
                if new is not value:
                    args = (*args[:offset], new, *rest)
        result = fn(*args, **kwargs)
        return _allocated(result, f"the result of `{name}`") if creates else _checked(result)

    return bounded


# --- the environment ----------------------------------------------------------------------------------


def _bounded_dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` for the `tojson` filter, refusing values nested past `MAX_JSON_DEPTH`."""
    if nesting_exceeds(value):
        raise NestingError(f"tojson: value nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels")
    return json.dumps(value, **kwargs)


def _finalize(value: Any) -> Any:
    # Non-string values print as JSON (as OpenAI's templates do), not as Python reprs.
    if isinstance(value, str):
        return _checked(value, "the printed value")
    if isinstance(value, jinja2.Undefined):
        return value
    _check_printable(value, "the printed value")
    return _allocated(to_text(value), "the printed value")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """`ImmutableSandboxedEnvironment` with gradekit's bounds on operators, calls, filters, loops and output."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_finalize)
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) builds a billion paragraphs
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}
        # What `_Bounder` routes loops and `~` through: filters are called directly, without `call`'s checks.
        self.filters[_LOOP_FILTER] = loop_items
        self.filters[_CONCAT_FILTER] = concat_values
        self.policies["json.dumps_function"] = _bounded_dumps

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """Joins the output of a rendering, macro or block, refusing it past `MAX_RENDERED_CHARS`."""
        # The chunks are counted before they are joined; holding them costs little, as each is a value
        # already counted when it was built (or a reference to a sample's string, or template text).
        chunks = list(parts)
        _check_length(sum(map(len, chunks)), "the rendered text")
        return _allocated("".join(chunks), "the rendered text")  # type: ignore[no-any-return]

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """An intercepted operator, within the bounds."""
        return binop(operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """A call from a template: counted as a step; size-checked before and after."""
        _step()
        method = _method_target(obj)
        if method is not None:
            args = _check_method(*method, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        if method is not None and not isinstance(method[0], int):
            return _allocated(result, f"the result of {method[1]}()")
        return _checked(result, "the result of a call")


class _Bounder(NodeTransformer):
    """Routes `{% for %}` iterables through `loop_items` and `~` through `concat_values` (as filters)."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self.environment = environment

    def _filter(self, name: str, value: nodes.Expr, lineno: int) -> nodes.Filter:
        node = nodes.Filter(value, name, [], [], None, None, lineno=lineno)
        return node.set_environment(self.environment)  # type: ignore[no-any-return]

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._filter(_LOOP_FILTER, node.iter, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.Tuple(list(node.nodes), "load", lineno=node.lineno)
        return self._filter(_CONCAT_FILTER, parts, node.lineno)


@functools.cache
def bounded_environment() -> BoundedEnvironment:
    """The shared environment (built on first use: plain-path templates never need jinja2)."""
    return BoundedEnvironment()


def bound_template(tree: nodes.Template) -> nodes.Template:
    """`tree` with loops and `~` routed through the bounded helpers (changes `tree`)."""
    result = _Bounder(bounded_environment()).visit(tree)
    assert isinstance(result, nodes.Template)
    return result


class _NotConstant(Exception):
    pass


def check_constants(tree: nodes.Template) -> None:
    """Raise `TemplateLimitError` for a constant expression that would go past a bound when rendered.

    Evaluates constant operators, `~`, filters, `range` and string-method calls with the bounded helpers
    (inside one rendering's budget), so that `{{ 'a' * 300000000 }}` is refused at validation.
    """
    env = bounded_environment()
    memo: dict[int, Any] = {}

    def const(node: nodes.Node) -> Any:
        key = id(node)
        if key not in memo:
            try:
                memo[key] = evaluate(node)
            except (_NotConstant, ArithmeticError, TypeError, ValueError, LookupError, jinja2.TemplateError):
                memo[key] = _NotConstant
        if memo[key] is _NotConstant:
            raise _NotConstant
        return memo[key]

    def evaluate(node: nodes.Node) -> Any:
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, nodes.List | nodes.Tuple):
            items = [const(item) for item in node.items]
            return items if isinstance(node, nodes.List) else tuple(items)
        if isinstance(node, nodes.BinExpr):
            return binop(node.operator, const(node.left), const(node.right))
        if isinstance(node, nodes.Concat):
            return concat_values(tuple(const(n) for n in node.nodes))
        if isinstance(node, nodes.Filter | nodes.Call) and (node.dyn_args is not None or node.dyn_kwargs is not None):
            raise _NotConstant
        if isinstance(node, nodes.Filter):
            fn = env.filters.get(node.name)
            if fn is None or node.node is None or getattr(fn, "jinja_pass_arg", None) is not None:
                raise _NotConstant
            args = [const(a) for a in node.args]
            return fn(const(node.node), *args, **{k.key: const(k.value) for k in node.kwargs})
        if isinstance(node, nodes.Call):
            args = tuple(const(a) for a in node.args)
            kwargs = {k.key: const(k.value) for k in node.kwargs}
            if isinstance(node.node, nodes.Name) and node.node.name == "range" and not kwargs:
                return bounded_range(*args)
            if isinstance(node.node, nodes.Getattr):
                owner = const(node.node.node)
                method = getattr(owner, node.node.attr, None)
                target = _method_target(method)
                if target is not None and env.is_safe_attribute(owner, node.node.attr, method):
                    _check_method(*target, args, kwargs)
        raise _NotConstant

    with RenderBudget():
        for node in tree.find_all(nodes.Expr):
            with contextlib.suppress(_NotConstant):
                const(node)
