"""Loading, validating and dumping grader definitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradekit.graders import (
    Grader,
    GraderValidationError,
    LabelModel,
    Multi,
    PythonGrader,
    ScoreModel,
    StringCheck,
    TextSimilarity,
    load_grader,
    validate,
)

SC = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def problems_of(obj: object) -> list[str]:
    with pytest.raises(GraderValidationError) as info:
        validate(obj)  # type: ignore[arg-type]
    return info.value.problems


def test_model_validate_dispatches_on_type() -> None:
    g = Grader.model_validate(SC)
    assert isinstance(g, StringCheck)
    assert g.to_json() == SC
    assert isinstance(Grader.model_validate_json(json.dumps(SC)), StringCheck)


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ({**SC, "type": "regex"}, "unknown grader type 'regex'"),
        ({k: v for k, v in SC.items() if k != "type"}, "no `type`"),
        ({**SC, "operation": "contains"}, "operation"),
        ({**SC, "opertion": "eq"}, "opertion: unknown field"),
        ({**SC, "input": "{{ foo.bar }}"}, "only the `item` and `sample` namespaces"),
        ({**SC, "input": "{{ sample.output_text "}, "input"),
        (
            {"type": "python", "name": "p", "source": "def score(sample, item):\n    return 1.0"},
            "grade(sample, item)",
        ),
        ({"type": "python", "name": "p", "source": "def grade(sample):\n    return 1.0"}, "exactly two"),
        ({"type": "python", "name": "p", "source": "def grade(a, b):\n  return (\n"}, "does not parse"),
        (
            {"type": "python", "name": "p", "source": "def grade(a, b):\n    return 1\n" + "#" * 270_000},
            "256 kB",
        ),
        (
            {
                "type": "label_model",
                "name": "l",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "labels": ["a", "b"],
                "passing_labels": ["a"],
            },
            "only allowed inside a multi",
        ),
        (
            {
                "type": "score_model",
                "name": "s",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "range": [1, 0],
            },
            "low < high",
        ),
        (
            {"type": "multi", "name": "m", "graders": {"a": SC}, "calculate_output": "a + b"},
            "unknown grader 'b'",
        ),
        (
            {"type": "multi", "name": "m", "graders": {"a": SC}, "calculate_output": "a +"},
            "formula_parse_error",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "a",
                "graders": {"a": {"type": "multi", "name": "in", "graders": {"x": SC}, "calculate_output": "x"}},
            },
            "cannot contain another multi",
        ),
    ],
)
def test_validation_messages_name_the_problem(obj: dict, needle: str) -> None:
    assert any(needle in p for p in problems_of(obj)), problems_of(obj)


def test_passing_labels_subset() -> None:
    bad = {
        "type": "label_model",
        "name": "l",
        "model": "m",
        "input": [{"role": "user", "content": "x"}],
        "labels": ["a", "b"],
        "passing_labels": ["c"],
    }
    multi = {"type": "multi", "name": "m", "graders": {"l": bad}, "calculate_output": "l"}
    assert any("passing_labels ['c'] are not in labels" in p for p in problems_of(multi))


def test_every_problem_is_listed() -> None:
    obj = {
        "type": "multi",
        "name": "m",
        "calculate_output": "a + b",
        "graders": {"a": {**SC, "operation": "nope"}, "b": {**SC, "input": "{{ x }}"}},
    }
    problems = problems_of(obj)
    assert len(problems) >= 2
    assert any(p.startswith("multi.graders.a") and "operation" in p for p in problems)
    assert any(p.startswith("multi.graders.b") and "namespaces" in p for p in problems)


def test_multi_graders_forms() -> None:
    as_dict = Multi.model_validate(
        {"type": "multi", "name": "m", "graders": {"exact": SC}, "calculate_output": "exact"}
    )
    as_one = Multi.model_validate({"type": "multi", "name": "m", "graders": SC, "calculate_output": "exact"})
    as_list = Multi.model_validate({"type": "multi", "name": "m", "graders": [SC], "calculate_output": "exact"})
    assert as_dict == as_one == as_list
    assert list(as_dict.graders) == ["exact"]


def test_load_from_files_and_json_text(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text(json.dumps(SC))
    (tmp_path / "g.yaml").write_text(
        "type: string_check\nname: exact\ninput: '{{sample.output_text}}'\n"
        "reference: '{{item.answer}}'\noperation: eq\n"
    )
    assert load_grader(tmp_path / "g.json") == load_grader(str(tmp_path / "g.yaml")) == load_grader(json.dumps(SC))
    with pytest.raises(GraderValidationError, match=r"grader file .*missing\.json does not exist"):
        load_grader(str(tmp_path / "missing.json"))
    with pytest.raises(GraderValidationError, match="neither a grader file"):
        load_grader("missing")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(GraderValidationError, match="cannot read grader"):
        load_grader(tmp_path / "bad.json")


def test_load_module_function_reference() -> None:
    g = load_grader("tests.sample_graders:exact_answer")
    assert g.type == "function"
    assert g.name == "exact_answer"


def test_defaults_and_types() -> None:
    s = ScoreModel(name="s", model="m", input=[{"role": "user", "content": "{{ sample.output_text }}"}])
    assert s.range == [0.0, 1.0]
    assert TextSimilarity(name="t", input="a", reference="b", evaluation_metric="bleu").type == "text_similarity"
    assert PythonGrader(name="p", source="def grade(s, i):\n    return 1.0").image_tag is None
    assert LabelModel.openai_native and not load_grader("tests.sample_graders:exact_answer").openai_native


def test_function_reference_with_a_bad_signature_is_a_validation_error() -> None:
    problems = problems_of({"type": "function", "name": "f", "function": "os.path:join"})
    assert any("must take (sample, item)" in p for p in problems), problems
    with pytest.raises(GraderValidationError, match="must take"):
        load_grader("os:getcwd")
