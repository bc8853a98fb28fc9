"""The reward-Lambda event contract (`lambda_handlers/events.py`) value by value: envelopes, rows, ids, answers."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from gradekit.graders import GradingError
from gradekit.lambda_handlers.events import (
    MAX_METRIC_NAME,
    MAX_SAMPLE_DEPTH,
    MISSING_ID,
    EventError,
    metric_name,
    parse_event,
    response_item,
    sample_id,
    samples_of,
    unwrap_event,
    wrap_response,
)

ANSWER = {"role": "assistant", "content": "42"}
SAMPLE = {"id": "s1", "messages": [{"role": "user", "content": "q"}, ANSWER], "reference_answer": "42"}


@pytest.mark.parametrize(
    ("event", "form"),
    [
        ([SAMPLE], "list"),
        ({"trajectories": [SAMPLE]}, "wrapped"),
        ({"samples": [SAMPLE]}, "wrapped"),
        ({"batch": [SAMPLE]}, "status"),
        (SAMPLE, "single"),
        ({"body": json.dumps([SAMPLE])}, "status"),
        ({"body": json.dumps({"trajectories": [SAMPLE]}).encode()}, "status"),
        ({"body": [SAMPLE]}, "status"),
        ({"body": {"samples": [SAMPLE]}}, "status"),
        (json.dumps({"samples": [SAMPLE]}), "wrapped"),
        (json.dumps([SAMPLE]).encode(), "list"),
        (bytearray(json.dumps(SAMPLE).encode()), "single"),
    ],
)
def test_unwrap_event_finds_the_samples_and_the_form(event: Any, form: str) -> None:
    assert unwrap_event(event) == ([SAMPLE], form)
    assert samples_of(event) == [SAMPLE]


def test_a_wrapper_key_wins_over_a_single_samples_messages() -> None:
    event = {"trajectories": [SAMPLE], "batch": [], "messages": []}
    assert unwrap_event(event) == ([SAMPLE], "wrapped")
    assert unwrap_event({"samples": "no list", "batch": [SAMPLE]}) == ([SAMPLE], "status")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (7, "got int"),
        (None, "got NoneType"),
        ({"b": 1, "a": 2}, "got an object with keys ['a', 'b']"),
        ({"body": 3}, "got an object with keys ['body']"),
        ({"trajectories": "x"}, "got an object with keys ['trajectories']"),
        ("[1,", "the event is text but not JSON: "),
    ],
)
def test_anything_else_is_one_event_error(event: Any, message: str) -> None:
    with pytest.raises(EventError) as caught:
        unwrap_event(event)
    assert message in str(caught.value)


def test_an_object_lists_at_most_ten_of_its_keys() -> None:
    with pytest.raises(EventError) as caught:
        unwrap_event({f"k{i:02}": i for i in range(12)})
    assert f"got an object with keys {[f'k{i:02}' for i in range(10)]}" in str(caught.value)


def test_wrap_response_answers_in_kind() -> None:
    results = [{"id": "s1", "aggregate_reward_score": 1.0, "metrics_list": []}]
    assert wrap_response(results, "status") == {"statusCode": 200, "body": json.dumps(results, separators=(",", ":"))}
    for form in ("list", "wrapped", "single"):
        assert wrap_response(results, form) is results


def test_the_item_is_the_metadata_with_the_top_level_fields_over_it() -> None:
    raw = {
        "id": "s1",
        "messages": [ANSWER],
        "metadata": {"reference_answer": "old", "team": "a"},
        "reference_answer": "new",
        "extra": [1],
    }
    (row,) = parse_event([raw])
    assert (row.id, row.sample, row.item) == ("s1", [ANSWER], {"reference_answer": "new", "team": "a", "extra": [1]})
    (row,) = parse_event([{"id": 2, "messages": [ANSWER], "metadata": "not an object"}])
    assert row.item == {}


@pytest.mark.parametrize(
    ("raw", "flag", "message"),
    [
        ({"id": "a"}, "sample_parse_error", "sample has no `messages` list"),
        ({"id": "a", "messages": "hi"}, "sample_parse_error", "sample has no `messages` list"),
        (
            {"id": "a", "messages": [{"role": "user", "content": "q"}]},
            "sample_parse_error",
            "sample has no `assistant` (or `nova_assistant`) message (the model's answer)",
        ),
        (
            {"id": "a", "messages": [{"role": "assistant", "content": "x" * 11}]},
            "truncated_observation_error",
            "answer has 11 characters, over 10",
        ),
    ],
)
def test_a_sample_without_a_gradable_answer_is_a_row_of_its_error(raw: Any, flag: str, message: str) -> None:
    (row,) = parse_event([raw], max_chars=10)
    assert isinstance(row.sample, GradingError)
    assert (row.id, row.sample.flag, row.sample.message) == ("a", flag, message)


def test_the_answer_checked_is_the_last_assistant_message_and_the_limit_is_inclusive() -> None:
    messages = [{"role": "assistant", "content": "x" * 11}, {"role": "nova_assistant", "content": "y" * 10}]
    (row,) = parse_event([{"id": "a", "messages": messages}], max_chars=10)
    assert row.sample == messages
    not_text = [{"role": "assistant", "content": [{"type": "text", "text": "x" * 11}]}]
    (row,) = parse_event([{"id": "a", "messages": not_text}], max_chars=10)
    assert row.sample == not_text  # only a string answer is measured here


def test_a_sample_that_is_not_an_object_is_a_row_with_no_id() -> None:
    rows = parse_event([SAMPLE, "text", [1]])
    assert [r.id for r in rows] == ["s1", None, None]
    assert [(r.sample.message, r.item) for r in rows[1:]] == [
        ("sample 1 is not an object", {}),
        ("sample 2 is not an object", {}),
    ]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_a_sample_nested_past_the_bound_is_a_row_of_its_error() -> None:
    # the sample object is one level, `extra` another: MAX_SAMPLE_DEPTH - 2 lists inside it reach the bound
    at_bound = {"id": "a", "messages": [ANSWER], "extra": _nested(MAX_SAMPLE_DEPTH - 2)}
    over = {"id": "b", "messages": [ANSWER], "extra": _nested(MAX_SAMPLE_DEPTH)}
    ok, deep = parse_event([at_bound, over])
    assert ok.sample == [ANSWER] and ok.item["extra"] == at_bound["extra"]
    assert (deep.id, deep.item, deep.sample.message) == (
        "b",
        {},
        f"sample 1 nests deeper than {MAX_SAMPLE_DEPTH} levels",
    )


@pytest.mark.parametrize(
    ("value", "echoed", "error"),
    [
        (None, MISSING_ID, None),
        ("x\ud800y", "x\ufffdy", None),
        (1.5, 1.5, None),
        (-3, -3, None),
        (True, True, None),
        (2**9998, 2**9998, None),
        (math.nan, None, "sample 4 has a non-finite `id` (nan), which JSON cannot carry"),
        (-math.inf, None, "sample 4 has a non-finite `id` (-inf), which JSON cannot carry"),
        (2**9999, None, "sample 4 has an integer `id` too long to print"),
        ([1], None, "sample 4 has an `id` of type list; expected a string or a number"),
    ],
    ids=["none", "surrogate", "float", "int", "bool", "int_of_9999_bits", "nan", "-inf", "int_of_10000_bits", "list"],
)
def test_sample_id(value: Any, echoed: Any, error: str | None) -> None:
    got, problem = sample_id(value, 4)
    assert got is echoed if echoed is MISSING_ID else got == echoed
    assert (problem.message if problem else None) == error
    if problem:
        assert problem.flag == "sample_parse_error"


def test_a_row_whose_id_cannot_be_echoed_fails_before_its_answer_is_read() -> None:
    (row,) = parse_event([{"id": [1], "messages": "no list"}])
    assert row.id is None and row.sample.message == "sample 0 has an `id` of type list; expected a string or a number"
    assert row.item == {}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("reward_mean.a", "reward_mean.a"),
        ("  padded  ", "padded"),
        ("", "unnamed"),
        ("   ", "unnamed"),
        ("a\ud800", "a\ufffd"),
        ("x" * (MAX_METRIC_NAME + 5), "x" * MAX_METRIC_NAME),
        ("x" * (MAX_METRIC_NAME - 1) + " y", "x" * (MAX_METRIC_NAME - 1)),
    ],
)
def test_metric_name(name: str, expected: str) -> None:
    assert metric_name(name) == expected


def test_response_item_of_a_multi_sends_each_sub_reward_and_each_flag() -> None:
    item = response_item("s1", "review", 0.8, {"a": 1.0, "b\ud800": math.inf}, ["model_grader_parse_error"])
    assert item == {
        "id": "s1",
        "aggregate_reward_score": 0.8,
        "metrics_list": [
            {"name": "a", "value": 1.0, "type": "Reward"},
            {"name": "b\ufffd", "value": 0.0, "type": "Reward"},
            {"name": "model_grader_parse_error", "value": 1.0, "type": "Metric"},
        ],
    }


def test_response_item_of_one_grader_sends_its_reward_and_no_id_when_the_sample_had_none() -> None:
    assert response_item(0, "g", -math.nan, {}, []) == {
        "id": 0,
        "aggregate_reward_score": 0.0,
        "metrics_list": [{"name": "g", "value": 0.0, "type": "Reward"}],
    }
    assert response_item(MISSING_ID, "g", 1, {}, []) == {
        "aggregate_reward_score": 1.0,
        "metrics_list": [
            {"name": "g", "value": 1.0, "type": "Reward"},
            {"name": "missing_id", "value": 1.0, "type": "Metric"},
        ],
    }
    assert type(response_item("s", "g", 1, {}, [])["aggregate_reward_score"]) is float


def test_rows_are_frozen_and_a_missing_id_says_so() -> None:
    (row,) = parse_event([SAMPLE])
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.id = "other"  # type: ignore[misc]
    assert repr(MISSING_ID) == "MISSING_ID"
