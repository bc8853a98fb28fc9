"""Validation problems stay structured from `validate` to the HTTP error: the field as written, and its message."""

from __future__ import annotations

from typing import Any

import pytest

from gradekit.graders import GraderValidationError, Problem, validate, validate_untrusted

CHECK = {"type": "string_check", "name": "c", "input": "{{ sample.output_text }}", "reference": "a", "operation": "eq"}


def problems(grader: Any, check: Any = validate) -> list[Problem]:
    with pytest.raises(GraderValidationError) as caught:
        check(grader)
    return caught.value.details


def test_a_sub_graders_problem_names_the_field_as_written_and_keeps_the_validators_location() -> None:
    bad = {"type": "multi", "graders": {"a": {**CHECK, "operation": "nope"}}, "calculate_output": "a"}
    [problem] = problems(bad)
    assert problem.field == ("graders", "a", "operation")
    assert problem.loc == ("multi", "graders", "a", "string_check", "operation")
    assert str(problem).startswith("multi.graders.a.string_check.operation: Input should be")


@pytest.mark.parametrize(
    ("grader", "field", "msg"),
    [
        ({"name": "x"}, ("type",), "grader has no `type` field"),
        ({"type": "rubric"}, ("type",), "unknown grader type 'rubric'"),
        (
            {"type": "multi", "graders": {"m": {"type": "multi", "graders": {}}}, "calculate_output": "1"},
            ("graders", "m", "type"),
            "a multi grader cannot contain another multi grader",
        ),
        ({**CHECK, "extra": 1}, ("extra",), "unknown field"),
        (
            {"type": "label_model", "name": "l", "model": "m", "input": [], "labels": ["a"], "passing_labels": ["a"]},
            ("type",),
            "label_model is only allowed inside a multi grader, not at the top level",
        ),
    ],
)
def test_the_field_of_each_kind_of_problem(grader: dict[str, Any], field: tuple[str, ...], msg: str) -> None:
    [problem] = problems(grader)
    assert problem.field == field
    assert problem.msg.startswith(msg)


def test_a_problem_without_a_field_is_its_message() -> None:
    [problem] = problems('{"type": ')
    assert problem.field == () and str(problem) == problem.msg
    assert problem.msg.startswith("grader JSON does not parse")


def test_untrusted_definitions_refuse_function_graders_and_list_every_other_problem() -> None:
    function = {"type": "function", "name": "f", "function": "os:getcwd"}
    found = problems(
        {"type": "multi", "graders": {"f": function, "b": {**CHECK, "operation": "nope"}}, "calculate_output": "f + b"},
        validate_untrusted,
    )
    assert [p.field for p in found] == [("graders", "f", "type"), ("graders", "b", "operation")]
    assert "not accepted over HTTP" in found[0].msg
    assert [p.field for p in problems(function, validate_untrusted)] == [("type",)]
    listed = {"type": "multi", "graders": [CHECK, function], "calculate_output": "c"}
    assert [p.field for p in problems(listed, validate_untrusted)] == [("graders", 1, "type")]
    single = {"type": "multi", "graders": function, "calculate_output": "f"}
    assert [p.field for p in problems(single, validate_untrusted)] == [("graders", "type")]


@pytest.mark.parametrize("text", ["/etc/passwd", "os:getcwd", "grader.json"])
def test_untrusted_definitions_are_never_read_from_a_file_or_imported(text: str) -> None:
    [problem] = problems(text, validate_untrusted)
    assert problem.msg == "a grader must be a JSON object, got str"


def test_untrusted_definitions_validate_like_validate() -> None:
    assert validate_untrusted(CHECK) == validate(CHECK)
