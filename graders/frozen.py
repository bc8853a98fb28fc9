"""Read-only deep copies of `sample` and `item` for user code that runs in this process.

A function grader or an in-process `python` grader gets `freeze(sample)` and `freeze(item)`: dicts are
`FrozenDict`, lists `FrozenList` (still `dict` and `list`, so `isinstance`, `json.dumps` and pickling work
as before), and every method that would change them raises `TypeError`. They are copies, so even code that
goes around the guard (`dict.__setitem__(item, ...)`) changes nothing the caller or another sample sees.
`dict(view)`, `list(view)`, `copy.copy` and `copy.deepcopy` give ordinary mutable containers.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn

__all__ = ["FrozenDict", "FrozenList", "freeze"]


def _read_only(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(
        f"this {type(self).__mro__[1].__name__} is read-only: graders must not change the sample or item "
        "(copy it first, e.g. dict(item))"
    )


class FrozenDict(dict[Any, Any]):
    """A dict whose mutating methods raise `TypeError`."""

    __slots__ = ()

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type[dict[Any, Any]], tuple[dict[Any, Any]]]:
        return (dict, (dict(self),))

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return copy.deepcopy(dict(self), memo)


class FrozenList(list[Any]):
    """A list whose mutating methods raise `TypeError`."""

    __slots__ = ()

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return (list, (list(self),))

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return copy.deepcopy(list(self), memo)


_CONTAINERS = (dict, list, tuple)
_PENDING: Any = object()


class _Fallback(Exception):
    """The value is too deep or too large for the quick recursive copy."""


#: Nesting and size the quick recursive copy handles; anything else (deep, cyclic, shared) is copied by
#: the iterative one, which keeps a memo.
_QUICK_DEPTH = 32
_QUICK_NODES = 10_000


def freeze(value: Any) -> Any:
    """A read-only deep copy of `value` (dicts, lists and tuples are copied; anything else is shared).

    Any nesting depth works; shared sub-structures stay shared and cycles stay cycles (a cycle running
    through a tuple, which cannot exist before its items, is cut with None).
    """
    if not isinstance(value, _CONTAINERS):
        return value
    try:
        return _freeze_quick(value, _QUICK_DEPTH, [_QUICK_NODES])
    except _Fallback:
        return _freeze_iterative(value)


def _freeze_quick(value: Any, depth: int, budget: list[int]) -> Any:
    # Plain recursion: about twice as fast as the iterative copy on the small samples and items that are
    # the common case. Empty containers (a sample's `output_tools`, `choices`) cost no call.
    budget[0] -= 1
    if depth <= 0 or budget[0] <= 0:
        raise _Fallback
    if isinstance(value, dict):
        out: Any = FrozenDict(value)
        for key, child in value.items():
            if isinstance(child, _CONTAINERS):
                dict.__setitem__(out, key, _freeze_quick(child, depth - 1, budget) if child else _empty(child))
        return out
    if isinstance(value, list):
        out = FrozenList(value)
        for index, child in enumerate(value):
            if isinstance(child, _CONTAINERS):
                list.__setitem__(out, index, _freeze_quick(child, depth - 1, budget) if child else _empty(child))
        return out
    return tuple(_freeze_quick(c, depth - 1, budget) if isinstance(c, _CONTAINERS) else c for c in value)


def _empty(value: Any) -> Any:
    return FrozenDict() if isinstance(value, dict) else FrozenList() if isinstance(value, list) else value


def _freeze_iterative(value: Any) -> Any:
    memo: dict[int, Any] = {}
    # Depth-first: a dict or list gets its (empty) copy when first seen, so cycles can point at it, and
    # is filled once its children are done; a tuple is built once its children are done.
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    memo[id(value)] = _shell(value)
    pending = [iter(_children(value))]
    while stack:
        node, done = stack[-1]
        child = next(pending[-1], _PENDING)
        if child is not _PENDING:
            if not isinstance(child, _CONTAINERS):
                done.append(child)
            elif id(child) in memo:
                made = memo[id(child)]
                done.append(None if made is _PENDING else made)
            else:
                memo[id(child)] = _shell(child)
                stack.append((child, []))
                pending.append(iter(_children(child)))
            continue
        stack.pop()
        pending.pop()
        made = _fill(node, memo[id(node)], done)
        memo[id(node)] = made
        if stack:
            stack[-1][1].append(made)
    return memo[id(value)]


def _children(node: Any) -> Any:
    return node.values() if isinstance(node, dict) else node


def _shell(node: Any) -> Any:
    if isinstance(node, dict):
        return FrozenDict()
    if isinstance(node, list):
        return FrozenList()
    return _PENDING  # a tuple: made by _fill


def _fill(node: Any, shell: Any, done: list[Any]) -> Any:
    if isinstance(node, dict):
        dict.update(shell, zip(node.keys(), done, strict=True))
        return shell
    if isinstance(node, list):
        list.extend(shell, done)
        return shell
    return tuple(done)
