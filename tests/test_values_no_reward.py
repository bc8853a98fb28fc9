"""No reward in the result types (`graders/results.py`) by value: which notes give none and why, how a `multi`
folds its sub-graders' notes, and how a batch reports it."""

from __future__ import annotations

from gradekit.graders import BatchResult
from gradekit.graders.results import Outcome, SampleNotes, make_result


def notes(*steps: tuple[str, ...]) -> SampleNotes:
    """Notes after `("fail", grader, flag)`, `("fail_no_reward", grader, flag)` or `("skip", grader)` steps."""
    n = SampleNotes()
    for step in steps:
        if step[0] == "skip":
            n.skip(step[1])
        else:
            n.fail(step[1], step[2], "why", no_reward=step[0] == "fail_no_reward")  # type: ignore[arg-type]
    return n


def test_fresh_notes_have_a_reward() -> None:
    assert SampleNotes().no_reward is None and SampleNotes().sample_fault is False


def test_why_a_sample_got_no_reward() -> None:
    assert notes(("skip", "a")).no_reward == "not_applicable"
    assert notes(("fail_no_reward", "a", "other_error")).no_reward == "grading_error"
    assert notes(("skip", "a"), ("fail_no_reward", "b", "other_error")).no_reward == "grading_error"
    assert notes(("fail_no_reward", "b", "other_error"), ("skip", "a")).no_reward == "grading_error"
    # a failure that is the sample's fault decides: reward 0, whatever else gave none
    assert notes(("fail", "a", "sample_parse_error")).no_reward is None
    assert notes(("skip", "a"), ("fail", "b", "sample_parse_error")).no_reward is None
    assert notes(("fail", "b", "sample_parse_error"), ("skip", "a")).sample_fault is True
    # the flag decides whose fault it is unless the grading code says
    n = SampleNotes()
    n.fail("a", "unresponsive_reward_error", "slow")
    assert (n.no_reward, n.unrewarded) == ("grading_error", {"a": "grading_error"})
    n = SampleNotes()
    n.fail("a", "sample_parse_error", "bad")
    assert (n.no_reward, n.unrewarded, n.sample_fault) == (None, {}, True)


def test_skip_keeps_a_grading_error_of_the_same_grader() -> None:
    n = notes(("fail_no_reward", "a", "other_error"), ("skip", "a"))
    assert n.unrewarded == {"a": "grading_error"}


def test_merge_keeps_a_sub_graders_sample_fault() -> None:
    into = notes(("skip", "x"))
    into.merge(notes(("fail", "b", "sample_parse_error")), key="b")
    assert into.sample_fault is True and into.no_reward is None
    clean = SampleNotes()
    clean.merge(SampleNotes(), key="c")
    assert clean.sample_fault is False and clean.unrewarded == {}


def test_merge_records_no_reward_by_name_and_by_key_never_lowering_a_grading_error() -> None:
    into = SampleNotes()
    into.merge(notes(("skip", "judge")), key="j")
    assert into.unrewarded == {"judge": "not_applicable", "j": "not_applicable"}
    into.merge(notes(("fail_no_reward", "judge", "other_error")), key="j")
    assert into.unrewarded == {"judge": "grading_error", "j": "grading_error"}
    into.merge(notes(("skip", "judge")), key="j")  # a later "not applicable" does not hide the error
    assert into.unrewarded == {"judge": "grading_error", "j": "grading_error"}
    assert into.no_reward == "grading_error"
    # without a key, or from notes that gave a reward, nothing is recorded under the key
    plain = SampleNotes()
    plain.merge(notes(("skip", "judge")))
    assert plain.unrewarded == {"judge": "not_applicable"}
    plain.merge(SampleNotes(), key="k")
    assert plain.unrewarded == {"judge": "not_applicable"}


def test_outcome_skip_and_no_reward() -> None:
    out = Outcome([1.0, 1.0, 1.0], [None, None, None])
    out.skip(1, "g")
    out.fail(2, "g", "other_error", "boom", no_reward=True)
    assert out.rewards == [1.0, 0.0, 0.0]
    assert [out.no_reward(i) for i in range(3)] == [None, "not_applicable", "grading_error"]


def _batch() -> BatchResult:
    return BatchResult(
        "g",
        "multi",
        [0.5, 0.0, 0.0, 0.0],
        [None, notes(("skip", "a")), notes(("fail", "a", "sample_parse_error")), SampleNotes()],
        {"a": [0.5, 0.0, 0.0, 0.0]},
        2.0,
    )


def test_batch_no_reward_and_rewards_or_none() -> None:
    batch = _batch()
    assert [batch.no_reward(i) for i in range(4)] == [None, "not_applicable", None, None]
    assert batch.rewards_or_none() == [0.5, None, 0.0, 0.0]
    assert [batch[i].rewarded for i in range(4)] == [True, False, True, True]
    info = batch[1].metadata.no_reward
    assert info is not None and (info.reason, info.graders) == ("not_applicable", {"a": "not_applicable"})
    assert batch[0].metadata.no_reward is None and batch[2].metadata.no_reward is None


def test_with_rows_replaces_samples_and_adds_the_time() -> None:
    again = BatchResult("g", "multi", [1.0, 0.25], [None, notes(("skip", "a"))], {"a": [1.0, 0.0]}, 0.5)
    merged = _batch().with_rows([1, 3], again)
    assert merged.rewards == [0.5, 1.0, 0.0, 0.25]
    assert merged.sub_rewards == {"a": [0.5, 1.0, 0.0, 0.0]}
    assert merged.rewards_or_none() == [0.5, 1.0, 0.0, None]
    assert merged.execution_time == 2.5 and (merged.name, merged.type) == ("g", "multi")
    # a sub-grader the new rows lack is 0 there
    lacking = _batch().with_rows([0], BatchResult("g", "multi", [0.75], [None], {}, 0.0))
    assert lacking.sub_rewards == {"a": [0.0, 0.0, 0.0, 0.0]} and lacking.rewards[0] == 0.75


def test_make_result_reports_no_reward_only_when_there_is_none() -> None:
    skipped = make_result("g", "python", 0.0, {}, notes(("skip", "g")), 0.1)
    assert skipped.rewarded is False
    assert skipped.metadata.no_reward is not None and skipped.metadata.no_reward.reason == "not_applicable"
    assert "no_reward" in skipped.model_dump()["metadata"]
    given = make_result("g", "python", 0.0, {}, None, 0.1)
    assert given.rewarded is True and "no_reward" not in given.model_dump()["metadata"]
