"""Values the tests build that are awkward to write literally."""

from __future__ import annotations

from typing import Any


def deep_list(depth: int) -> list[Any]:
    """A list nesting `depth` levels, built without recursion."""
    root: list[Any] = []
    node = root
    for _ in range(depth - 1):
        child: list[Any] = []
        node.append(child)
        node = child
    return root
