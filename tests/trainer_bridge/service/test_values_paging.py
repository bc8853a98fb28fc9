"""`page`, the cursor paging of every list endpoint of the fine-tuning service, by value (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from gradekit.runtime.server import APIError
from gradekit.trainer_bridge.service.jobs import page

ITEMS = [{"id": f"x{i}", "n": i} for i in range(5)]


def ids(body: dict[str, Any]) -> list[str]:
    """The ids of a page's data."""
    return [item["id"] for item in body["data"]]


@pytest.mark.parametrize(
    ("limit", "after", "expected", "has_more"),
    [
        (2, None, ["x0", "x1"], True),
        (4, None, ["x0", "x1", "x2", "x3"], True),
        (5, None, ["x0", "x1", "x2", "x3", "x4"], False),  # exactly the last item: no more
        (6, None, ["x0", "x1", "x2", "x3", "x4"], False),
        (2, "x0", ["x1", "x2"], True),
        (3, "x1", ["x2", "x3", "x4"], False),  # ends exactly at the last item
        (2, "x1", ["x2", "x3"], True),  # one item short of the end
        (1, "x3", ["x4"], False),
        (3, "x4", [], False),
        (0, None, [], True),
    ],
)
def test_page(limit: int, after: str | None, expected: list[str], has_more: bool) -> None:
    body = page(ITEMS, limit, after)
    assert (body["object"], ids(body), body["has_more"]) == ("list", expected, has_more)
    assert set(body) == {"object", "data", "has_more"}


def test_page_keeps_the_items_themselves() -> None:
    assert page(ITEMS, 1, "x2")["data"] == [{"id": "x3", "n": 3}]
    assert page([], 3, None) == {"object": "list", "data": [], "has_more": False}


@pytest.mark.parametrize("param", ["after", "cursor"])
def test_an_unknown_cursor_is_a_400_naming_the_parameter(param: str) -> None:
    with pytest.raises(APIError) as caught:
        page(ITEMS, 2, "x9", param=param)
    error = caught.value
    assert (error.status, error.param) == (400, param)
    assert error.message == f"Invalid value for '{param}': no object 'x9' in this list."
    with pytest.raises(APIError) as caught:
        page(ITEMS, 2, "x9")
    assert caught.value.param == "after"
