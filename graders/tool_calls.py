"""Score a model's tool calls against the expected calls of a dataset row (the `tool_call` grader)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from .errors import GradingError
from .limits import MAX_JSON_DEPTH
from .safety import loads_json, nesting_exceeds

__all__ = ["ArgumentMode", "ToolCallScore", "score_tool_calls"]

ArgumentMode = Literal["exact", "subset", "schema"]

_MODES: Final[frozenset[str]] = frozenset({"exact", "subset", "schema"})
_InputFlag = Literal["sample_parse_error", "invalid_variable_error"]
_SHOW_CHARS: Final[int] = 80


@dataclass(frozen=True, slots=True)
class ToolCallScore:
    """How well the actual tool calls matched the expected ones."""

    reward: float  # fraction matched, 0..1
    matched: int
    expected: int
    actual: int
    details: list[str]  # one human line per expected call: matched / why not


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    # None only for an expected call without `arguments` in schema mode (nothing to compare).
    arguments: dict[Any, Any] | None


def score_tool_calls(
    actual: Any,
    expected: Any,
    *,
    arguments: ArgumentMode = "exact",
    ordered: bool = False,
    tools: Any = None,
) -> ToolCallScore:
    """Score `actual` tool calls (the sample's `output_tools`) against the `expected` calls.

    Calls may be in OpenAI chat-completions form (`{"type": "function", "function": {"name", "arguments"}}`)
    or flattened (`{"name", "arguments"}`); `arguments` may be a JSON object string or an already parsed
    dict (a blank string means `{}`). `expected` may also be a JSON string of the whole list.

    Names must be equal. `arguments` decides how the arguments compare:

    - `exact`: JSON equality (`1 == 1.0`, but `true != 1` and the key sets must be equal);
    - `subset`: every expected key is present with an equal value, recursively (nested objects are
      subsets, arrays must have the same length and match item by item); extra actual keys are allowed;
    - `schema`: the actual arguments validate against the tool's `parameters` JSON Schema in `tools`
      (Draft 2020-12), and the expected `arguments`, if given, match as a subset.

    With `ordered=True`, `expected[i]` is compared with `actual[i]` only; otherwise calls are paired by
    a maximum one-to-one matching, so two identical expected calls need two actual calls.

    reward = matched / max(len(expected), len(actual)), so missing calls and extra unexpected calls both
    cost credit; no calls expected and none made scores 1.0, no calls expected but some made scores 0.0.

    Raises GradingError: `sample_parse_error` for malformed actual calls (not a list, no name, arguments not
    a JSON object), `invalid_variable_error` for malformed `expected` or `tools` (or `tools` missing in
    schema mode), `other_error` for an invalid JSON Schema.
    """
    if arguments not in _MODES:
        raise ValueError(f"arguments must be one of 'exact', 'subset', 'schema', not {arguments!r}")
    expected_calls = _load_calls(expected, "invalid_variable_error", "expected", schema_mode=arguments == "schema")
    validators = _load_tools(tools) if arguments == "schema" else {}
    actual_calls = _load_calls(actual, "sample_parse_error", "actual", schema_mode=False)

    # Arguments nest at most MAX_JSON_DEPTH levels (checked on loading), so the recursive comparison is bounded.
    judge = _Judge(arguments, actual_calls, validators)
    if ordered:
        matched, details = _score_ordered(expected_calls, actual_calls, judge)
    else:
        matched, details = _score_unordered(expected_calls, actual_calls, judge)

    denominator = max(len(expected_calls), len(actual_calls))
    reward = 1.0 if denominator == 0 else matched / denominator
    return ToolCallScore(reward, matched, len(expected_calls), len(actual_calls), details)


# --- loading ------------------------------------------------------------------------------------------


def _load_calls(value: Any, flag: _InputFlag, side: str, *, schema_mode: bool) -> list[_Call]:
    if side == "expected" and isinstance(value, str):
        value = _loads(value, flag, f"{side} tool calls")
    if not isinstance(value, list | tuple):
        raise GradingError(flag, f"{side} tool calls must be a list, got {_type_name(value)}")
    calls = []
    for index, entry in enumerate(value):
        where = f"{side} tool call {index}"
        if not isinstance(entry, Mapping):
            raise GradingError(flag, f"{where} is not an object but {_type_name(entry)}")
        body = entry.get("function")
        if not isinstance(body, Mapping):
            body = entry  # flattened form
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise GradingError(flag, f"{where} has no function name")
        where = f"{where} ({_label(name)})"
        raw = body.get("arguments")
        if raw is None:
            if side == "actual":
                args: dict[Any, Any] | None = {}
            elif schema_mode:
                args = None
            else:
                raise GradingError(flag, f"{where} has no arguments (only allowed with arguments='schema')")
        else:
            args = _parse_arguments(raw, flag, where)
        calls.append(_Call(name, args))
    return calls


def _parse_arguments(raw: Any, flag: _InputFlag, where: str) -> dict[Any, Any]:
    if isinstance(raw, Mapping):
        if nesting_exceeds(dict(raw), MAX_JSON_DEPTH):
            raise GradingError(flag, f"{where}: arguments nest deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels")
        return dict(raw)
    if not isinstance(raw, str):
        raise GradingError(flag, f"{where}: arguments must be a JSON object string, got {_type_name(raw)}")
    if not raw.strip():
        return {}  # some models send "" for a function without parameters
    value = _loads(raw, flag, f"{where}: arguments")
    if not isinstance(value, dict):
        raise GradingError(flag, f"{where}: arguments must be a JSON object, got {_type_name(value)}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str, flag: _InputFlag, what: str) -> Any:
    try:
        return loads_json(text, parse_constant=_reject_constant)
    except ValueError as exc:  # also JSON nested past MAX_JSON_DEPTH
        raise GradingError(flag, f"{what} are not valid JSON ({exc}): {_show(text)}") from None


def _load_tools(tools: Any) -> dict[str, Draft202012Validator | None]:
    flag: _InputFlag = "invalid_variable_error"
    if tools is None:
        raise GradingError(flag, "arguments='schema' needs `tools` (tool definitions with JSON Schema parameters)")
    if isinstance(tools, str):
        tools = _loads(tools, flag, "tools")
    if not isinstance(tools, list | tuple):
        raise GradingError(flag, f"tools must be a list of tool definitions, got {_type_name(tools)}")
    validators: dict[str, Draft202012Validator | None] = {}
    for index, entry in enumerate(tools):
        if not isinstance(entry, Mapping):
            raise GradingError(flag, f"tool {index} is not an object but {_type_name(entry)}")
        body = entry.get("function")
        if not isinstance(body, Mapping):
            body = entry
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise GradingError(flag, f"tool {index} has no name")
        if name in validators:
            raise GradingError(flag, f"tool {_label(name)} is defined more than once")
        schema = body.get("parameters")
        validators[name] = None if schema is None else _validator(schema, name)
    return validators


def _validator(schema: Any, tool: str) -> Draft202012Validator:
    where = f"tool {_label(tool)}: parameters"
    if not isinstance(schema, Mapping | bool):
        raise GradingError("other_error", f"{where} is not a JSON Schema but {_type_name(schema)}")
    if nesting_exceeds(dict(schema) if isinstance(schema, Mapping) else schema, MAX_JSON_DEPTH):
        raise GradingError("other_error", f"{where} nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels")
    try:
        key = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise GradingError("other_error", f"{where} is not JSON: {exc}") from None
    try:
        return _compile(key)
    except SchemaError as exc:
        raise GradingError("other_error", f"{where} is not a valid JSON Schema: {_one_line(exc.message)}") from None
    except Exception as exc:  # jsonschema/referencing raise many types for malformed $id, $ref, ...
        raise GradingError("other_error", f"{where} is not a usable JSON Schema: {_one_line(str(exc))}") from None


@lru_cache(maxsize=256)
def _compile(schema_json: str) -> Draft202012Validator:
    """The checked validator for a schema, keyed by its canonical JSON text."""
    schema = json.loads(schema_json)
    _reject_remote_refs(schema)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _reject_remote_refs(schema: Any) -> None:
    # jsonschema's default registry fetches unknown $ref URIs over the network (with a deprecation
    # warning); a grader must never do that, so only document-local references are allowed.
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
                    raise ValueError(f"only local references ('#...') are supported, not {key} {value!r}")
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


# --- matching -----------------------------------------------------------------------------------------


class _Judge:
    """Decides whether an actual call satisfies an expected call; validates each actual call once."""

    __slots__ = ("_actual", "_mode", "_schema_verdicts", "_validators")

    def __init__(self, mode: str, actual: list[_Call], validators: dict[str, Draft202012Validator | None]) -> None:
        self._mode = mode
        self._actual = actual
        self._validators = validators
        self._schema_verdicts: dict[int, str | None] = {}

    def fits(self, want: _Call, index: int) -> bool:
        """Whether `actual[index]` satisfies `want`."""
        call = self._actual[index]
        if call.name != want.name:
            return False
        if self._mode == "schema" and self._schema_verdict(index) is not None:
            return False
        if want.arguments is None:
            return True
        return _json_match(want.arguments, call.arguments, subset=self._mode != "exact")

    def explain(self, want: _Call, index: int) -> str:
        """Why `actual[index]` does not satisfy `want` (only called when it does not)."""
        call = self._actual[index]
        if call.name != want.name:
            return f"calls {_label(call.name)}"
        problem = self._schema_verdict(index) if self._mode == "schema" else None
        if problem is None and want.arguments is not None:
            problem = _diff(want.arguments, call.arguments, subset=self._mode != "exact", path="arguments")
        return problem or "does not fit"

    def _schema_verdict(self, index: int) -> str | None:
        if index not in self._schema_verdicts:
            self._schema_verdicts[index] = self._schema_problem(self._actual[index])
        return self._schema_verdicts[index]

    def _schema_problem(self, call: _Call) -> str | None:
        validator = self._validators.get(call.name)
        if validator is None:
            return f"tools has no parameters schema for {_label(call.name)}"
        try:
            error = best_match(validator.iter_errors(call.arguments))
        except Exception as exc:  # e.g. an unresolvable local $ref only surfaces while validating
            raise GradingError(
                "other_error", f"tool {_label(call.name)}: parameters schema failed: {_one_line(str(exc))}"
            ) from None
        if error is None:
            return None
        return f"arguments do not match the schema: {error.json_path}: {_one_line(error.message)}"


def _score_ordered(expected: list[_Call], actual: list[_Call], judge: _Judge) -> tuple[int, list[str]]:
    matched = 0
    details = []
    for i, want in enumerate(expected):
        head = f"expected[{i}] {_label(want.name)}"
        if i >= len(actual):
            details.append(f"{head}: not matched: no actual call at position {i}")
            continue
        if judge.fits(want, i):
            matched += 1
            details.append(f"{head}: matched actual[{i}]")
        else:
            details.append(f"{head}: not matched: actual[{i}]: {judge.explain(want, i)}")
    return matched, details


def _score_unordered(expected: list[_Call], actual: list[_Call], judge: _Judge) -> tuple[int, list[str]]:
    by_name: dict[str, list[int]] = {}
    for j, call in enumerate(actual):
        by_name.setdefault(call.name, []).append(j)

    fits = [[j for j in by_name.get(want.name, ()) if judge.fits(want, j)] for want in expected]

    pairing = _max_matching(fits, len(actual))
    details = []
    for i, want in enumerate(expected):
        head = f"expected[{i}] {_label(want.name)}"
        j = pairing[i]
        same_name = len(by_name.get(want.name, ()))
        if j is not None:
            details.append(f"{head}: matched actual[{j}]")
        elif not same_name:
            details.append(f"{head}: not matched: no call to {_label(want.name)}")
        elif fits[i]:
            details.append(f"{head}: not matched: each fitting call is matched to another expected call")
        else:
            j = by_name[want.name][0]
            details.append(
                f"{head}: not matched: none of {same_name} call(s) to it fits; actual[{j}]: {judge.explain(want, j)}"
            )
    return sum(j is not None for j in pairing), details


def _max_matching(fits: list[list[int]], n_right: int) -> list[int | None]:
    """Maximum bipartite matching by BFS augmenting paths: the right vertex of each left one, or None."""
    left_match: list[int | None] = [None] * len(fits)
    right_match: list[int | None] = [None] * n_right
    for start, edges in enumerate(fits):
        if not edges:
            continue
        came_from: dict[int, tuple[int, int]] = {}
        seen: set[int] = set()
        queue = deque([start])
        end: tuple[int, int] | None = None
        while queue and end is None:
            left = queue.popleft()
            for right in fits[left]:
                if right in seen:
                    continue
                seen.add(right)
                owner = right_match[right]
                if owner is None:
                    end = (left, right)
                    break
                came_from[owner] = (left, right)
                queue.append(owner)
        # Flip the path: each left vertex on it takes the right vertex it was reached through.
        while end is not None:
            left, right = end
            left_match[left] = right
            right_match[right] = left
            end = came_from.get(left)
    return left_match


# --- JSON comparison ----------------------------------------------------------------------------------


def _diff(expected: Any, actual: Any, *, subset: bool, path: str) -> str | None:
    """None if `actual` equals (with `subset`: contains) `expected` as JSON, else the first difference."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{path}: expected an object, got {_show(actual)}"
        for key, want in expected.items():
            child = _child(path, key)
            if key not in actual:
                return f"{child}: missing"
            problem = _diff(want, actual[key], subset=subset, path=child)
            if problem is not None:
                return problem
        if not subset:
            extra = [_child(path, key) for key in actual if key not in expected]
            if extra:
                more = f" (+{len(extra) - 3} more)" if len(extra) > 3 else ""
                return f"unexpected {', '.join(extra[:3])}{more}"
        return None
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple):
            return f"{path}: expected an array, got {_show(actual)}"
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} item(s), got {len(actual)}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            problem = _diff(want, got, subset=subset, path=f"{path}[{index}]")
            if problem is not None:
                return problem
        return None
    if _scalar_equal(expected, actual):
        return None
    return f"{path}: expected {_show(expected)}, got {_show(actual)}"


def _json_match(expected: Any, actual: Any, *, subset: bool) -> bool:
    """Whether `_diff` finds no difference; kept separate because it is the hot path."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or (not subset and len(actual) != len(expected)):
            return False
        for key, want in expected.items():
            if key not in actual or not _json_match(want, actual[key], subset=subset):
                return False
        return True
    if isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(expected) == len(actual)
            and all(_json_match(w, g, subset=subset) for w, g in zip(expected, actual, strict=True))
        )
    return _scalar_equal(expected, actual)


def _scalar_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # bool is an int subclass, but JSON true != 1
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return type(a) is type(b) and a == b


# --- messages -----------------------------------------------------------------------------------------


def _child(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{_show(key)}]"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
        if not text.isprintable():  # e.g. U+2028, which would break a detail line
            text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = _type_name(value)
    return _cut(text)


def _cut(text: str, limit: int = _SHOW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    return _cut(" ".join(text.split()))


def _label(name: str) -> str:
    return _cut(name if name.isprintable() else repr(name))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
