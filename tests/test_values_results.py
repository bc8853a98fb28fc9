"""Values, not shapes: the columnar outcome, its notes, the OpenAI-shaped result, and multi's zeroing of failures."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gradekit.graders import Multi, StringCheck, run, run_batch
from gradekit.graders.errors import MAX_DETAIL_CHARS
from gradekit.graders.limits import MAX_MESSAGE_CHARS
from gradekit.graders.results import BatchResult, Outcome, SampleNotes, make_result


def test_outcome_fail_zeroes_only_that_sample() -> None:
    out = Outcome([0.75, 0.5, 1.0], [None, None, None])
    out.fail(1, "g", "other_error", "boom")
    assert out.rewards == [0.75, 0.0, 1.0]
    assert out.notes[0] is None and out.notes[2] is None
    notes = out.notes[1]
    assert notes is not None
    assert notes.errors == {"other_error": True}
    assert notes.failures == {"g": ("other_error", "boom")}
    assert notes.failed


def test_outcome_empty_and_note() -> None:
    out = Outcome.empty(3)
    assert out.rewards == [0.0, 0.0, 0.0]
    assert out.notes == [None, None, None]
    first = out.note(2)
    assert out.note(2) is first and out.notes == [None, None, first]
    assert not first.failed
    assert repr(out) == "Outcome(n=3)"


def test_fail_keeps_the_first_message_and_detail_per_grader() -> None:
    notes = SampleNotes()
    notes.fail("g", "python_grader_runtime_error", "first", "tb1")
    notes.fail("g", "python_grader_runtime_error", "second", "tb2")
    notes.fail("h", "other_error", "third", "ignored: other_error has no detail field")
    assert notes.errors == {
        "python_grader_runtime_error": True,
        "python_grader_runtime_error_details": "tb1",
        "other_error": True,
    }
    assert notes.failures == {"g": ("python_grader_runtime_error", "first"), "h": ("other_error", "third")}


def test_fail_cuts_messages_and_details() -> None:
    notes = SampleNotes()
    notes.fail("g", "python_grader_server_error", "m" * (MAX_MESSAGE_CHARS * 2), "d" * (MAX_DETAIL_CHARS * 2))
    detail = notes.errors["python_grader_server_error_type"]
    assert len(detail) == MAX_DETAIL_CHARS and detail.startswith("...")
    assert len(notes.failures["g"][1]) <= MAX_MESSAGE_CHARS


def test_merge_folds_errors_scores_and_usage() -> None:
    parent, child = SampleNotes(), SampleNotes()
    parent.errors = {"other_error": False, "model_grader_server_error_details": "mine"}
    parent.token_usage = 5
    parent.usage_per_model = {"m": {"prompt_tokens": 1}}
    child.errors = {"other_error": True, "model_grader_server_error_details": "theirs", "sample_parse_error": False}
    child.failures = {"c": ("other_error", "x")}
    child.scores = {"s": 1}
    child.token_usage = 7
    child.sampled_model_name = "gpt"
    child.usage_per_model = {"m": {"prompt_tokens": 2, "completion_tokens": 3}, "n": {"prompt_tokens": 4}}
    parent.merge(child, key="c")
    assert parent.errors == {
        "other_error": True,
        "model_grader_server_error_details": "mine",
        "sample_parse_error": False,
    }
    assert parent.failures == {"c": ("other_error", "x")}
    assert parent.scores == {"c": {"s": 1}}
    assert parent.token_usage == 12
    assert parent.sampled_model_name == "gpt"
    assert parent.usage_per_model == {"m": {"prompt_tokens": 3, "completion_tokens": 3}, "n": {"prompt_tokens": 4}}
    later = SampleNotes(scores={"t": 2}, sampled_model_name="other")
    parent.merge(later)
    assert parent.scores == {"c": {"s": 1}, "t": 2}
    assert parent.sampled_model_name == "gpt"
    assert parent.token_usage == 12


def test_merge_into_empty_keeps_none_token_usage() -> None:
    parent = SampleNotes()
    parent.merge(SampleNotes(errors={"other_error": False}))
    assert parent.token_usage is None and parent.scores == {} and not parent.failed


def test_make_result_values() -> None:
    notes = SampleNotes(scores={"s": 0.5}, token_usage=9, sampled_model_name="gpt", usage_per_model={"gpt": {"t": 1}})
    notes.fail("g", "model_grader_server_error", "down", "503")
    r = make_result("n", "score_model", 0.25, {"a": 1.0}, notes, 0.125)
    assert r.reward == 0.25
    assert r.sub_rewards == {"a": 1.0}
    assert r.model_grader_token_usage_per_model == {"gpt": {"t": 1}}
    assert r.metadata.execution_time == 0.125
    assert r.metadata.scores == {
        "s": 0.5,
        "error_details": {"g": {"flag": "model_grader_server_error", "message": "down"}},
    }
    assert r.metadata.token_usage == 9
    assert r.metadata.sampled_model_name == "gpt"
    assert r.errors.flags() == ["model_grader_server_error"]
    assert r.errors.model_grader_server_error_details == "503"
    assert r.errors.any
    assert notes.scores == {"s": 0.5}  # the result copies, never edits, the notes
    bare = make_result("n", "t", 1.0, {}, None, 0.0)
    assert (bare.sub_rewards, bare.metadata.scores, bare.metadata.token_usage) == ({}, {}, None)
    assert bare.metadata.sampled_model_name is None and not bare.errors.any and bare.errors.flags() == []
    odd = make_result("n", "t", 1.0, {}, SampleNotes(token_usage=True, sampled_model_name=3), 0.0)  # type: ignore[arg-type]
    assert odd.metadata.token_usage is None and odd.metadata.sampled_model_name is None


def test_batch_result_indexing() -> None:
    notes = SampleNotes()
    notes.fail("g", "other_error", "x")
    b = BatchResult("n", "t", [0.5, 0.0], [None, notes], {"a": [1.0, 0.0]}, 1.0)
    assert len(b) == 2
    assert b[-1].reward == 0.0 and b[-1].sub_rewards == {"a": 0.0} and b[-2].reward == 0.5
    assert b[0].metadata.execution_time == 0.5
    assert [r.reward for r in b] == [0.5, 0.0]
    assert b.error_flags(0) == [] and b.error_flags(1) == ["other_error"]
    for bad in (2, -3):
        with pytest.raises(IndexError):
            b[bad]
    assert repr(b) == "BatchResult(name='n', type='t', n=2)"


def test_multi_zeroes_a_sample_whose_sub_grader_failed() -> None:
    m = Multi(
        name="m",
        graders={
            "a": StringCheck(name="a", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq"),
        },
        calculate_output="1 - a",  # a failed `a` (reward 0) would score 1 if the failure were not zeroed
    )
    res = run_batch(m, ["x", "x", "y"], [{"answer": "x"}, {}, {"answer": "x"}])
    assert res.rewards == [0.0, 0.0, 1.0]
    assert res.sub_rewards == {"a": [1.0, 0.0, 0.0]}
    assert [res.error_flags(i) for i in range(3)] == [[], ["invalid_variable_error"], []]
    single = run(m, "x", {})
    assert single.reward == 0.0 and single.errors.invalid_variable_error


def test_multi_zeroes_a_formula_math_error() -> None:
    m = Multi(
        name="m",
        graders={"a": StringCheck(name="a", input="{{ sample.output_text }}", reference="x", operation="eq")},
        calculate_output="1 / a",
    )
    res = run_batch(m, ["x", "y"])
    assert res.rewards == [1.0, 0.0]
    assert res.error_flags(1) == ["other_error"]
    assert res[1].metadata.scores["error_details"]["m"]["flag"] == "other_error"


def test_results_are_immutable() -> None:
    r = make_result("n", "t", 0.5, {}, None, 0.0)
    with pytest.raises(ValidationError):
        r.reward = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        r.metadata.errors.other_error = True  # type: ignore[misc]
    assert r.reward == 0.5 and not r.errors.other_error
