"""gradekit.testing: assert_reward messages and the pytest plugin for `*.grader-tests.*` files."""

from __future__ import annotations

import json

import pytest

from gradekit.graders import Multi, StringCheck
from gradekit.testing import GraderAssertionError, assert_reward

from .sample_graders import exact_answer

CHECK = StringCheck(
    name="compliant",
    input="{{ sample.output_json.compliant }}",
    reference="{{ item.compliant }}",
    operation="eq",
)


def test_assert_reward_passes_and_returns_result() -> None:
    r = assert_reward(CHECK, '{"compliant": "yes"}', {"compliant": "yes"}, 1.0)
    assert r.reward == 1.0


def test_failure_message_shows_rendered_templates_and_flags() -> None:
    with pytest.raises(GraderAssertionError) as info:
        assert_reward(CHECK, '{"compliant": "no"}', {"compliant": "yes"}, 1.0)
    text = str(info.value)
    assert "expected reward 1.0" in text and "got 0.0" in text
    assert "input: '{{ sample.output_json.compliant }}' -> 'no'" in text
    assert "reference: '{{ item.compliant }}' -> 'yes'" in text
    with pytest.raises(GraderAssertionError) as info:
        assert_reward(CHECK, "not json", {"compliant": "yes"}, 1.0)
    assert "invalid_variable_error" in str(info.value)
    assert "sample.output_json.compliant` is undefined" in str(info.value)


def test_sub_rewards_and_errors_expectations() -> None:
    m = Multi(name="m", graders={"c": CHECK, "e": exact_answer}, calculate_output="0.5 * c + 0.5 * e")
    assert_reward(m, '{"compliant": "yes"}', {"compliant": "yes", "answer": "x"}, 0.5, sub_rewards={"c": 1.0, "e": 0.0})
    with pytest.raises(GraderAssertionError, match=r"expected sub-reward e=1\.0, got 0\.0"):
        assert_reward(m, '{"compliant": "yes"}', {"compliant": "yes"}, sub_rewards={"e": 1.0})
    assert_reward(CHECK, "x", {}, 0.0, errors=["invalid_variable_error"])
    with pytest.raises(GraderAssertionError, match="expected error flags"):
        assert_reward(CHECK, "x", {}, 0.0, errors=[])


GRADER = {
    "type": "string_check",
    "name": "answer",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "ilike",
}


def test_plugin_collects_yaml_and_jsonl(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", answer=json.dumps(GRADER))
    pytester.path.joinpath("answer.grader-tests.yaml").write_text(
        "cases:\n"
        "  - name: contains\n    sample: 'The answer is YES'\n    item: {answer: 'yes'}\n    reward: 1.0\n"
        "  - name: missing\n    sample: 'no'\n    item: {}\n    reward: 0\n    errors: [invalid_variable_error]\n"
    )
    pytester.path.joinpath("answer.grader-tests.jsonl").write_text(
        json.dumps({"sample": "yes", "item": {"answer": "yes"}, "reward": 1.0})
        + "\n"
        + json.dumps({"name": "wrong", "sample": "no", "item": {"answer": "yes"}, "reward": 1.0})
        + "\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*answer.grader-tests.jsonl::wrong*", "*expected reward 1.0*got 0.0*"])


def test_plugin_inline_grader_and_bad_file(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("inline.grader-tests.yaml").write_text(
        "grader:\n  type: string_check\n  name: g\n  input: '{{ sample.output_text }}'\n  reference: ok\n"
        "  operation: eq\ncases:\n  - {sample: ok, reward: 1}\n"
    )
    pytester.makefile(".json", broken=json.dumps(GRADER))
    pytester.path.joinpath("broken.grader-tests.yaml").write_text("cases:\n  - {sample: x, rewrad: 1}\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*case 1 has unknown keys*rewrad*"])
