"""Grader models (`graders/models.py`) by value: the checks of their definitions and the rewards they compute."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gradekit.graders import (
    GraderValidationError,
    GradingError,
    LabelModel,
    PythonGrader,
    ScoreModel,
    StringCheck,
    run_batch,
    validate,
)
from gradekit.graders.limits import MAX_PYTHON_SOURCE_BYTES
from gradekit.graders.models import endpoint_score, trace_id

JUDGE = [{"role": "user", "content": "{{ sample.output_text }}"}]


@pytest.mark.parametrize(
    ("operation", "pairs", "rewards"),
    [
        ("eq", [("a", "a"), ("a", "A"), ("ab", "a")], [1.0, 0.0, 0.0]),
        ("ne", [("a", "a"), ("a", "A"), ("ab", "a")], [0.0, 1.0, 1.0]),
        ("like", [("xAbx", "Ab"), ("xabx", "AB"), ("a", "ab"), ("a", "")], [1.0, 0.0, 0.0, 1.0]),
        ("ilike", [("xAbx", "aB"), ("XABX", "ab"), ("a", "AB"), ("a", "")], [1.0, 1.0, 0.0, 1.0]),
    ],
)
def test_string_check_operations(operation: str, pairs: list[tuple[str, str]], rewards: list[float]) -> None:
    grader = StringCheck(name="s", input="{{ sample.output_text }}", reference="{{ item.ref }}", operation=operation)
    result = run_batch(grader, [a for a, _ in pairs], [{"ref": b} for _, b in pairs])
    assert result.rewards == rewards


@pytest.mark.parametrize(
    ("reply", "score"),
    [({"score": 0.25}, 0.25), ({"score": 3}, 3.0), ({"score": -2.5, "why": "x"}, -2.5)],
)
def test_endpoint_score(reply: Any, score: float) -> None:
    assert endpoint_score(reply) == score


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ([0.5], 'endpoint replied [0.5], not {"score": number}'),
        ({"value": 1}, "endpoint replied {'value': 1}, not {\"score\": number}"),
        ({"score": True}, "endpoint's score is bool True, not a finite number"),
        ({"score": "0.5"}, "endpoint's score is str '0.5', not a finite number"),
        ({"score": math.inf}, "endpoint's score is float inf, not a finite number"),
        ({"score": None}, "endpoint's score is NoneType None, not a finite number"),
    ],
)
def test_endpoint_score_refuses(reply: Any, message: str) -> None:
    with pytest.raises(GradingError) as caught:
        endpoint_score(reply)
    assert (caught.value.flag, caught.value.message) == ("model_grader_parse_error", message)


def test_trace_id() -> None:
    first, second = trace_id(), trace_id()
    assert first.startswith("trace_") and len(first) == 6 + 32 and first != second
    int(first[6:], 16)


@pytest.mark.parametrize(
    ("result", "reward", "recorded"),
    [(0.5, 0.5, 0.5), (7.0, 2.0, 7.0), (-3.0, -1.0, -3.0), (None, -1.0, -1.0), (math.nan, -1.0, -1.0), (2.0, 2.0, 2.0)],
)
def test_score_model_reward_is_clipped_to_its_range(result: Any, reward: float, recorded: float) -> None:
    grader = ScoreModel(name="j", model="m", input=JUDGE, range=[-1.0, 2.0])
    scores: dict[str, Any] = {}
    assert grader._reward(result, None, scores) == reward
    assert scores == {"result": recorded}


@pytest.mark.parametrize("bad", [[1.0], [0.0, 1.0, 2.0], [1.0, 1.0], [2.0, 1.0], [0.0, math.inf], [math.nan, 1.0]])
def test_score_model_range_must_be_low_below_high(bad: list[float]) -> None:
    with pytest.raises(GraderValidationError, match="range must be two finite numbers"):
        validate({"type": "score_model", "name": "j", "model": "m", "input": JUDGE, "range": bad})


def test_label_model_reward_and_labels() -> None:
    grader = LabelModel(name="l", model="m", input=JUDGE, labels=["a", "b", "c"], passing_labels=["a", "c"])
    scores: dict[str, Any] = {}
    assert [grader._reward(None, label, scores) for label in ("a", "b", "c", None)] == [1.0, 0.0, 1.0, 0.0]
    assert scores == {"label": None}
    with pytest.raises(GraderValidationError, match="labels must not be empty"):
        validate({"type": "label_model", "name": "l", "model": "m", "input": JUDGE, "labels": [], "passing_labels": []})
    with pytest.raises(GraderValidationError, match=r"passing_labels \['d'\] are not in labels \['a'\]"):
        validate(
            {"type": "label_model", "name": "l", "model": "m", "input": JUDGE, "labels": ["a"], "passing_labels": ["d"]}
        )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def grade(sample):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def grade(a, b, c):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def grade(a, b, *rest):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def grade(a, b, *, k):\n    return 1\n", "`grade` must take exactly two positional arguments"),
        ("def other(a, b):\n    return 1\n", "source defines no top-level function `grade(sample, item)`"),
        ("def grade(a, b:\n", "source does not parse: "),
        ("x = " + "(" * 300 + ")" * 300, "source does not parse: too many nested parentheses (line 1)"),
        ("x = " + "-" * 100_000 + "1", "source nests too deeply to parse"),
        ("x = 1" + "+1" * 100_000, "source nests too deeply to parse"),
        ("x = '\ud800'", "source does not parse: "),
    ],
)
def test_python_source_checks(source: str, message: str) -> None:
    with pytest.raises(GraderValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate({"type": "python", "name": "p", "source": source})


@pytest.mark.parametrize(
    "source",
    [
        "def grade(a, b):\n    return 1\n",
        "async def grade(a, /, b, *, k=1):\n    return 1\n",
        "x = 1\ndef grade(a, b=None):\n    return x\n",
    ],
)
def test_python_source_accepted(source: str) -> None:
    assert validate({"type": "python", "name": "p", "source": source}).source == source


def test_python_source_size_limit_is_inclusive() -> None:
    body = "def grade(a, b):\n    return 1\n"
    exact = body + "#" * (MAX_PYTHON_SOURCE_BYTES - len(body))
    assert isinstance(validate({"type": "python", "name": "p", "source": exact}), PythonGrader)
    with pytest.raises(GraderValidationError, match=f"source is {MAX_PYTHON_SOURCE_BYTES + 1} bytes"):
        validate({"type": "python", "name": "p", "source": exact + "#"})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/grade", True),
        ("http://127.0.0.1:8080/x", True),
        ("http://host:1", True),
        ("ftp://example.com", False),
        ("https://", False),
        ("http://host:0/x", False),
        ("http://host:70000/x", False),
        ("http://host/a b", False),
    ],
)
def test_endpoint_url_check(url: str, ok: bool) -> None:
    definition = {"type": "endpoint", "name": "e", "url": url}
    if ok:
        assert validate(definition).url == url
    else:
        with pytest.raises(GraderValidationError):
            validate(definition)


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Authorization": "Bearer x", "X-Functions-Key": "k"}, None),
        ({"Bad Name": "x"}, "'Bad Name' is not an HTTP header name"),
        ({"X-Key": "a\r\nInjected: 1"}, "the value of header 'X-Key' holds a control character"),
        ({"X-Key": "tab\tis fine"}, None),
    ],
)
def test_endpoint_header_check(headers: dict[str, str], problem: str | None) -> None:
    definition = {"type": "endpoint", "name": "e", "url": "https://example.com", "headers": headers}
    if problem is None:
        assert validate(definition).headers == headers
    else:
        with pytest.raises(GraderValidationError, match=problem):
            validate(definition)
