"""Helpers that keep hostile values from crashing grading: bounded JSON, never-failing text, JSON-ready results.

`json_safe` is the one place where anything gradekit.graders hands out (results, error messages, grader
JSON) is made encodable as UTF-8 JSON: lone surrogates become U+FFFD, non-finite floats `null`, integers
too long to print a description, nesting past `MAX_JSON_DEPTH` a marker string.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from .limits import MAX_JSON_DEPTH, MAX_MESSAGE_CHARS

__all__ = [
    "NestingError",
    "clean_text",
    "clean_texts",
    "cut",
    "describe",
    "dumps_json",
    "exception_text",
    "finite_float",
    "json_nesting_exceeds",
    "json_safe",
    "loads_json",
    "nesting_exceeds",
    "text_size",
]

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# A JSON string (terminated or not: the text may be cut off) or one bracket; strings are skipped whole.
_JSON_SCAN: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
# Python refuses to print ints of more than 4300 digits (`sys.set_int_max_str_digits`); stay well below.
_MAX_PRINTABLE_INT_BITS: Final[int] = 4096
#: Values `json_safe` copies at most; past it, the rest is a marker (guards shared sub-lists that
#: would expand exponentially).
_MAX_JSON_SAFE_NODES: Final[int] = 1_000_000
_TOO_DEEP: Final[str] = f"<nested deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels>"
_CONTAINERS: Final = (dict, list, tuple)


class NestingError(ValueError):
    """JSON text or a value nests deeper than the bound it was checked against."""


def clean_text(text: str) -> str:
    """`text` encodable as UTF-8: each lone surrogate becomes U+FFFD (`errors="replace"` semantics)."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def clean_texts(texts: list[str]) -> list[str]:
    """`clean_text` of each; `texts` itself when none holds a lone surrogate (checked in C, in chunks)."""
    for start in range(0, len(texts), 4096):
        chunk = "".join(texts[start : start + 4096])
        if not chunk.isascii() and _SURROGATE.search(chunk):  # isascii is a flag lookup
            return [clean_text(t) for t in texts]
    return texts


def cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, or its first `limit - 3` characters and "..."."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def json_nesting_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`: one linear scan, brackets in strings skipped."""
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than it has openers: the common case costs two C-level counts
    depth = 0
    for match in _JSON_SCAN.finditer(text):
        char = text[match.start()]
        if char == "[" or char == "{":
            depth += 1
            if depth > limit:
                return True
        elif char == "]" or char == "}":
            depth -= 1
    return False


def loads_json(text: str, *, limit: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """`json.loads` that raises `NestingError` (a ValueError) instead of recursing past `limit` levels."""
    if json_nesting_exceeds(text, limit):
        raise NestingError(f"JSON nests deeper than MAX_JSON_DEPTH ({limit}) levels")
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # only if the caller's stack was already deep
        raise NestingError(f"JSON nests too deeply to parse (MAX_JSON_DEPTH is {limit})") from None


def nesting_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether dicts/lists/tuples in `value` nest deeper than `limit` (iterative: any depth, cycles too)."""
    if not isinstance(value, _CONTAINERS):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))
    return False


def dumps_json(value: Any) -> str:
    """Compact JSON text of `value` (non-ASCII kept); `NestingError` past `MAX_JSON_DEPTH`.

    Other failures are json.dumps's own: `TypeError` for a non-JSON type, `ValueError` for an integer of
    more digits than Python prints.
    """
    if nesting_exceeds(value):
        raise NestingError(f"value nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels")
    try:
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:
        raise NestingError(f"value nests too deeply to write as JSON (MAX_JSON_DEPTH is {MAX_JSON_DEPTH})") from None


_SEQUENCE_LIKE: Final = (list, tuple, set, frozenset, type({}.keys()), type({}.values()), type({}.items()))


def text_size(value: Any, limit: int, expand: Callable[[Any], Iterable[Any] | None] | None = None) -> int:
    """About how long `str()` or the JSON of `value` is (an upper estimate); stops counting past `limit`.

    A list of a thousand references to one long string is small in memory but not in print: this is
    what a value is checked against before it is printed. `expand` may give the printed parts of other
    objects (None: the object prints short).
    """
    if isinstance(value, str):
        return len(value)
    total = 0
    stack = [value]
    while stack and total <= limit:
        v = stack.pop()
        if isinstance(v, str | bytes | bytearray):
            total += len(v) + 2
        elif v is None or isinstance(v, bool | float):
            total += 24
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 2
        elif isinstance(v, dict):
            total += 2 + 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, _SEQUENCE_LIKE):
            total += 16 + 2 * len(v)
            stack.extend(v)
        else:
            total += 32
            parts = expand(v) if expand is not None else None
            if parts is not None:
                stack.extend(parts)
    return total


class _ShortRepr(reprlib.Repr):
    """`reprlib.Repr` (bounded depth and width) that also survives ints too long to print."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 80
        self.maxother = 80
        self.maxlong = 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > _MAX_PRINTABLE_INT_BITS:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr1(self, x: Any, level: int) -> str:
        # reprlib picks `repr_<type name>` by name alone: a foreign type named "list" is not a list.
        if type(x).__module__ != "builtins":
            return self.repr_instance(x, level)
        return super().repr1(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        if isinstance(x, int):  # bool and int subclasses (IntEnum) are printed as ints
            return self.repr_int(int(x), level) if not isinstance(x, bool) else repr(bool(x))
        try:
            return super().repr_instance(x, level)
        except Exception:
            return f"<{type(x).__name__} object>"


_REPR: Final = _ShortRepr()


def describe(value: Any, limit: int = 200) -> str:
    """A short `repr` of any value that never raises (deep, huge, unprintable or hostile values too)."""
    try:
        text = _REPR.repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return clean_text(cut(text, limit))


def exception_text(exc: BaseException, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`"TypeName: message"` of an exception, even when its `str()` fails or is huge."""
    try:
        message = str(exc)
    except Exception:
        message = "<the exception's message could not be printed>"
    return clean_text(cut(f"{type(exc).__name__}: {message}", limit))


def finite_float(value: Any) -> float | None:
    """`value` as a finite float, or None for a non-number, a bool, NaN, infinity or an int too large."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except Exception:  # OverflowError for huge ints; anything from a hostile __float__
        return None
    return number if math.isfinite(number) else None


def _json_key(key: Any) -> str:
    """A dict key as JSON writes it (`json.dumps` turns None, bools and numbers into strings)."""
    if isinstance(key, str):
        return clean_text(str.__str__(key))
    if key is None or isinstance(key, bool):
        return "null" if key is None else "true" if key else "false"
    if isinstance(key, int) and key.bit_length() <= _MAX_PRINTABLE_INT_BITS:
        return str(int(key))
    if isinstance(key, float):
        return repr(float(key))
    return describe(key)


class _Copier:
    """One `json_safe` call: counts copied values so that shared sub-structures cannot blow it up."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def copy(self, value: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_JSON_SAFE_NODES:
            return "<truncated>"
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return clean_text(str.__str__(value))
        if isinstance(value, int):
            if value.bit_length() > _MAX_PRINTABLE_INT_BITS:
                return describe(value)
            return int(value)
        if isinstance(value, float):
            number = float(value)
            return number if math.isfinite(number) else None
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            if depth <= 0:
                return _TOO_DEEP
            try:
                if isinstance(value, Mapping):
                    return {_json_key(k): self.copy(v, depth - 1) for k, v in value.items()}
                return [self.copy(v, depth - 1) for v in value]
            except Exception:  # a hostile Mapping or iterator
                return describe(value)
        if isinstance(value, bytes | bytearray):
            return clean_text(bytes(value[:MAX_MESSAGE_CHARS]).decode("utf-8", "replace"))
        if hasattr(value, "__index__") or hasattr(value, "__float__"):  # numpy scalars and the like
            try:
                number = value.__index__() if hasattr(value, "__index__") else float(value)
            except Exception:
                return describe(value)
            return self.copy(number, depth)
        return describe(value)


def json_safe(value: Any, depth: int = MAX_JSON_DEPTH) -> Any:
    """A copy of `value` that `json.dumps(..., allow_nan=False)` accepts and that encodes as UTF-8.

    Strings lose lone surrogates (U+FFFD instead), keys become strings, NaN and infinities become None,
    ints too long to print and objects that are not JSON become short descriptions, tuples and sets
    become lists, and containers nested deeper than `depth` become a marker string.
    """
    return _Copier().copy(value, depth)
