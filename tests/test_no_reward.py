"""No reward is not a zero reward (docs/no-reward.md): which failures give none, None from graders, multi, the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse

from gradekit.graders import Env, FunctionGrader, GradingError, grader, run, run_batch, validate
from gradekit.graders.aggregate import Aggregate
from gradekit.graders.errors import ERROR_FLAGS, GRADING_FAULTS, is_grading_fault
from gradekit.runtime.model_client import OpenAIModelClient
from gradekit.runtime.sandbox import SandboxPool
from gradekit.runtime.server import RUN_PATH, create_app
from gradekit.testing.fake_llm import FakeLLM, Judge, Malformed, RateLimited, Refusal, ServerError, Status
from gradekit.trainer_bridge.adapters.openrlhf_rewards import to_openrlhf
from gradekit.trainer_bridge.adapters.trl_rewards import to_trl
from gradekit.trainer_bridge.adapters.verl_rewards import to_verl_batch
from tests.runtime.asgi import post_json

# --- the classification table --------------------------------------------------------------------------------


def test_the_grading_faults_are_exactly_these_three_flags() -> None:
    assert sorted(GRADING_FAULTS) == [
        "model_grader_server_error",
        "python_grader_server_error",
        "unresponsive_reward_error",
    ]
    assert [f for f in ERROR_FLAGS if is_grading_fault(f)] == [
        "unresponsive_reward_error",
        "python_grader_server_error",
        "model_grader_server_error",
    ]


@pytest.mark.parametrize("flag", ERROR_FLAGS)
def test_each_flag_is_either_reward_zero_or_no_reward(flag: str) -> None:
    @grader(name="g")
    def failing(sample: Any, item: Any) -> float:
        raise GradingError(flag, "failed")  # type: ignore[arg-type]

    r = run(failing, "x")
    assert (r.reward, r.errors.flags()) == (0.0, [flag])  # the wire: OpenAI's reward 0 and its flag, either way
    if flag in GRADING_FAULTS:
        assert not r.rewarded
        assert r.metadata.no_reward is not None
        assert r.metadata.no_reward.model_dump() == {"reason": "grading_error", "graders": {"g": "grading_error"}}
    else:
        assert r.rewarded and r.metadata.no_reward is None


def test_grading_code_may_say_whose_fault_a_failure_is() -> None:
    @grader(name="own_http")
    def own_http(sample: dict[str, Any], item: Any) -> float:
        if sample["output_text"] == "timeout":  # e.g. its own service timed out: not the sample's fault
            raise GradingError("other_error", "service timed out", no_reward=True)
        raise GradingError("model_grader_server_error", "the service refused this answer", no_reward=False)

    res = run_batch(own_http, ["timeout", "refused"])
    assert res.rewards_or_none() == [None, 0.0]
    assert [res.error_flags(i) for i in range(2)] == [["other_error"], ["model_grader_server_error"]]


def test_sample_faults_stay_zero_with_their_flag() -> None:
    # A template variable the answer lacks, and invalid JSON from the model read by a grader: the sample's fault.
    check = {"type": "string_check", "input": "{{ item.missing }}", "reference": "a", "operation": "eq"}
    r = run(check, "a", {})
    assert (r.reward, r.errors.flags(), r.rewarded) == (0.0, ["invalid_variable_error"], True)

    @grader
    def parses(sample: dict[str, Any], item: Any) -> float:
        return float(json.loads(sample["output_text"])["ok"])

    res = run_batch(parses, ['{"ok": 1}', "{not json"])
    assert res.rewards == [1.0, 0.0]
    assert [res.no_reward(i) for i in range(2)] == [None, None]
    assert res.error_flags(1) == ["python_grader_runtime_error"]
    assert res.rewards_or_none() == [1.0, 0.0]


def test_a_judge_that_cannot_be_reached_gives_no_reward_one_that_answers_badly_gives_zero() -> None:
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "m",
        "input": [{"role": "user", "content": "Grade: {{ sample.output_text }}"}],
    }
    too_long = Status(400, "This model's maximum context length is 128000 tokens.")
    replies = {
        "a": Judge(0.75),
        "b": RateLimited(),
        "c": ServerError(),
        "d": Refusal(),
        "e": Malformed(),
        "f": too_long,
        "g": Status(401, "Incorrect API key provided"),
    }

    def script(body: dict[str, Any], n: int) -> Any:
        return replies[body["messages"][-1]["content"].removeprefix("Grade: ")]

    with FakeLLM(script) as llm, OpenAIModelClient(base_url=llm.base_url, max_retries=0) as client:
        res = run_batch(judge, list(replies), env=Env(model=client))
    assert res.rewards == [0.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [res.error_flags(i) for i in range(7)] == [
        [],
        ["model_grader_server_error"],
        ["model_grader_server_error"],
        ["model_grader_refusal_error"],
        ["model_grader_parse_error"],
        ["model_grader_server_error"],
        ["model_grader_server_error"],
    ]
    # 429 and 500 are the judge's transport, 401 its configuration: no reward. A refusal, an unreadable verdict or
    # a request the judge refuses as too long (400) are about this sample: 0, so a policy cannot dodge the judge.
    assert [res.no_reward(i) for i in range(7)] == [
        None,
        "grading_error",
        "grading_error",
        None,
        None,
        None,
        "grading_error",
    ]
    assert res.rewards_or_none() == [0.75, None, None, 0.0, 0.0, 0.0, None]


def test_an_embedding_endpoint_that_failed_gives_no_reward() -> None:
    class Down:
        def embed(self, texts: Any) -> list[list[float]]:
            raise ConnectionError("embedding endpoint unreachable")

    cosine = {"type": "text_similarity", "input": "a", "reference": "{{ item.ref }}", "evaluation_metric": "cosine"}
    res = run_batch(cosine, ["a", "b"], [{"ref": "a"}, {}], env=Env(embedder=Down()))
    # the first: the endpoint's fault, no reward; the second: the item lacks `ref`, the sample's fault
    assert (res.rewards_or_none(), res.error_flags(0), res.error_flags(1)) == (
        [None, 0.0],
        ["other_error"],
        ["invalid_variable_error"],
    )


# --- None: "this grader does not apply" ----------------------------------------------------------------------


def test_a_grader_function_returning_none_gives_no_reward_and_no_flag() -> None:
    @grader
    def only_numbers(sample: dict[str, Any], item: Any) -> float | None:
        text = sample["output_text"]
        return float(text == "7") if text.isdigit() else None

    res = run_batch(only_numbers, ["7", "8", "hello"])
    assert res.rewards == [1.0, 0.0, 0.0]
    assert res.rewards_or_none() == [1.0, 0.0, None]
    assert [res.error_flags(i) for i in range(3)] == [[], [], []]
    assert res[2].metadata.no_reward is not None
    assert res[2].metadata.no_reward.model_dump() == {
        "reason": "not_applicable",
        "graders": {"only_numbers": "not_applicable"},
    }
    # A mapping or a Score with reward None says the same, and keeps its scores.
    mapped = FunctionGrader.from_function(lambda s, i: {"reward": None, "why": "no digits"}, name="m")
    r = run(mapped, "x")
    assert (r.rewarded, r.metadata.scores) == (False, {"why": "no digits"})


def test_a_sandboxed_python_grader_returning_none_gives_no_reward() -> None:
    source = "def grade(sample, item):\n    t = sample['output_text']\n"
    source += "    return None if t == 'skip' else float(t == 'ok')\n"
    hang = "def grade(sample, item):\n    while True:\n        pass\n"
    with SandboxPool(workers=1, timeout=1.0) as pool:
        res = run_batch({"type": "python", "name": "py", "source": source}, ["ok", "no", "skip"], env=Env(python=pool))
        hung = run_batch({"type": "python", "name": "hang", "source": hang}, ["x"], env=Env(python=pool))
    assert res.rewards_or_none() == [1.0, 0.0, None]
    assert [res.error_flags(i) for i in range(3)] == [[], [], []]
    assert res.no_reward(2) == "not_applicable"
    # a grade() that never ends is the sandbox's timeout: unresponsive_reward_error, no reward
    assert (hung.error_flags(0), hung.no_reward(0), hung.rewards_or_none()) == (
        ["unresponsive_reward_error"],
        "grading_error",
        [None],
    )


# --- multi -------------------------------------------------------------------------------------------------------


@grader(name="maybe")
def maybe(sample: dict[str, Any], item: Any) -> float | None:
    """1.0 for "yes", 0.0 for "no", None (does not apply) for anything else."""
    text = sample["output_text"]
    return {"yes": 1.0, "no": 0.0}.get(text)


@grader(name="flaky")
def flaky(sample: dict[str, Any], item: Any) -> float:
    """0.5, but its 'server' fails on "down" and the sample is unreadable on "bad"."""
    text = sample["output_text"]
    if text == "down":
        raise GradingError("python_grader_server_error", "worker crashed", "worker_crashed")
    if text == "bad":
        raise GradingError("sample_parse_error", "unreadable")
    return 0.5


def _multi(formula: str) -> Any:
    return validate(
        {
            "type": "multi",
            "name": "both",
            "graders": {
                "a": maybe,
                "b": flaky,
                "c": {"type": "string_check", "input": "x", "reference": "x", "operation": "eq"},
            },
            "calculate_output": formula,
        }
    )


def test_multi_gives_no_reward_when_a_sub_grader_gave_none() -> None:
    res = run_batch(_multi("a + b + c"), ["yes", "no", "maybe", "down"])
    # "down": maybe says None too ("down" is neither yes nor no), and flaky's server failed
    assert res.rewards_or_none() == [2.5, 1.5, None, None]
    assert res.sub_rewards == {"a": [1.0, 0.0, 0.0, 0.0], "b": [0.5, 0.5, 0.5, 0.0], "c": [1.0] * 4}
    assert res[2].metadata.no_reward is not None and res[3].metadata.no_reward is not None
    # each sub-grader that gave none, by its name and by its key (its formula variable)
    assert res[2].metadata.no_reward.model_dump() == {
        "reason": "not_applicable",
        "graders": {"maybe": "not_applicable", "a": "not_applicable"},
    }
    assert res[3].metadata.no_reward.model_dump() == {
        "reason": "grading_error",
        "graders": {"maybe": "not_applicable", "a": "not_applicable", "flaky": "grading_error", "b": "grading_error"},
    }
    assert res.error_flags(2) == [] and res.error_flags(3) == ["python_grader_server_error"]


def test_a_sample_fault_in_a_multi_makes_it_zero_whatever_else_gave_none() -> None:
    res = run_batch(_multi("a + b"), ["bad"])  # maybe: None; flaky: the sample is unreadable
    assert res.rewards_or_none() == [0.0]
    assert res.error_flags(0) == ["sample_parse_error"]


def test_a_formula_over_a_missing_value_is_no_reward_not_a_maths_error() -> None:
    res = run_batch(_multi("b / a"), ["maybe", "no"])
    # "maybe": a gave no value (0.0 stands in its column), so b / a is never a maths error, only no reward
    assert res.rewards_or_none() == [None, 0.0]
    assert res.error_flags(0) == []
    assert res.error_flags(1) == ["other_error"]  # a graded 0.0 and the formula divides by it: the sample's fault


# --- counting ----------------------------------------------------------------------------------------------------


def test_aggregate_means_are_over_rewarded_samples_and_no_reward_is_counted_per_grader() -> None:
    agg = Aggregate(name="both")
    agg.add_batch(run_batch(_multi("a + b + c"), ["yes", "no", "maybe", "down"]))
    s = agg.summary()
    assert (s["count"], s["reward_mean"]) == (4, 2.0)  # (2.5 + 1.5) / 2, not / 4
    assert s["graders"]["a"] == {"reward_mean": 0.5, "reward_std": 0.5}  # yes, no
    assert s["graders"]["b"]["reward_mean"] == 0.5  # yes, no, maybe: the crash is not a 0
    assert s["no_reward"] == {
        "both": {"count": 2, "rate": 0.5},
        "a": {"count": 2, "rate": 0.5},
        "maybe": {"count": 2, "rate": 0.5},
        "b": {"count": 1, "rate": 0.25},
        "flaky": {"count": 1, "rate": 0.25},
    }
    assert (s["no_reward_samples"], s["no_reward_rate"]) == (2, 0.5)
    # read back from OpenAI-shaped results (a results file), the same numbers
    again = Aggregate(name="both")
    for r in run_batch(_multi("a + b + c"), ["yes", "no", "maybe", "down"]):
        again.add_result(r)
    assert again.summary() == s


# --- the wire: /graders/run ----------------------------------------------------------------------------------


def test_graders_run_keeps_openais_keys_and_adds_no_reward_only_when_there_is_none() -> None:
    source = "def grade(sample, item):\n    return None if sample['output_text'] == 'skip' else 1.0\n"
    py = {"type": "python", "name": "py", "source": source}
    app = create_app(env=Env())  # in-process python executor: the sandbox is tested above
    status, graded = post_json(app, RUN_PATH, {"grader": py, "model_sample": "ok"})
    assert status == 200 and graded["reward"] == 1.0
    assert "no_reward" not in graded["metadata"]
    status, skipped = post_json(app, RUN_PATH, {"grader": py, "model_sample": "skip"})
    assert status == 200
    # the openai SDK reads it as OpenAI's response, the extension key as an extra field of `metadata`
    sdk = GraderRunResponse.model_validate(skipped)
    assert sdk.reward == 0.0 and sdk.metadata.model_extra == {"no_reward": skipped["metadata"]["no_reward"]}
    no_reward = skipped["metadata"].pop("no_reward")
    assert no_reward == {"reason": "not_applicable", "graders": {"py": "not_applicable"}}
    # every other key is OpenAI's, as for a graded sample: reward 0, no flag
    assert set(skipped) == set(graded) and set(skipped["metadata"]) == set(graded["metadata"])
    assert skipped["reward"] == 0.0 and not any(v for v in skipped["metadata"]["errors"].values())


# --- the trainer adapters ------------------------------------------------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def __call__(self, name: str, value: float) -> None:
        self.values[name] = value


def test_to_trl_answers_none_for_no_reward() -> None:
    log = _Log()
    out = to_trl(_multi("a + b"), name="t")(completions=["yes", "maybe", "down", "bad"], log_metric=log)
    assert out == [1.5, None, None, 0.0]
    assert log.values["rewards/t/no_reward/rate"] == 0.5
    assert log.values["rewards/t/errors/rate"] == 0.5  # down (server) and bad (sample)
    assert log.values["rewards/t/a/mean"] == 1.0  # only "yes" was graded by a
    # b graded yes 0.5, maybe 0.5 (the multi gave none there, b did give one), bad 0.0 (sample fault); not down
    assert log.values["rewards/t/b/mean"] == pytest.approx(1 / 3)


def test_verl_says_which_samples_got_no_reward() -> None:
    out = to_verl_batch(_multi("a + b"))(data_sources=["d"] * 3, solution_strs=["yes", "maybe", "down"])
    assert out == [
        {"score": 1.5, "a": 1.0, "b": 0.5, "c": 1.0, "error": 0.0, "no_reward": 0.0},
        {"score": 0.0, "a": 0.0, "b": 0.5, "c": 1.0, "error": 0.0, "no_reward": 1.0},
        {"score": 0.0, "a": 0.0, "b": 0.0, "c": 1.0, "error": 1.0, "no_reward": 1.0},
    ]


def test_openrlhf_says_which_samples_got_no_reward() -> None:
    out = to_openrlhf(_multi("a + b"))(queries=["yes", "maybe", "bad"], prompts=["", "", ""], labels=["", "", ""])
    assert out["rewards"].tolist() == [1.5, 0.0, 0.0]
    assert out["scores"].tolist() == [1.0, 0.0, 0.0]
    assert {k: v.tolist() for k, v in out["extra_logs"].items()} == {
        "a": [1.0, 0.0, 0.0],
        "b": [0.5, 0.5, 0.0],
        "c": [1.0, 1.0, 1.0],
        "error": [0.0, 0.0, 1.0],
        "no_reward": [0.0, 1.0, 0.0],
    }


# --- Bedrock's Lambda --------------------------------------------------------------------------------------------


def test_the_lambda_answers_zero_with_a_no_reward_metric(capsys: pytest.CaptureFixture[str]) -> None:
    from gradekit.lambda_handlers.handler import bedrock_reward_handler

    event = [{"id": t, "messages": [{"role": "assistant", "content": t}]} for t in ("yes", "maybe", "no")]
    out = bedrock_reward_handler(maybe, service="test-no-reward")(event, None)
    emf = next(r for r in map(json.loads, capsys.readouterr().out.splitlines()) if "_aws" in r)
    # EMF: the reward mean is over the graded two, the third is counted
    assert (emf["samples"], emf["reward_mean"], emf["no_reward_samples"], emf["no_reward.maybe"]) == (
        [3.0],
        [0.5],
        [1.0],
        [1.0],
    )
    assert out[2] == {
        "id": "no",
        "aggregate_reward_score": 0.0,
        "metrics_list": [{"name": "maybe", "value": 0.0, "type": "Reward"}],
    }
    out = out[:2]  # the graded "no" is a plain 0; below, the graded "yes" and the ungraded "maybe"
    assert out == [
        {
            "id": "yes",
            "aggregate_reward_score": 1.0,
            "metrics_list": [{"name": "maybe", "value": 1.0, "type": "Reward"}],
        },
        {
            "id": "maybe",
            "aggregate_reward_score": 0.0,
            "metrics_list": [
                {"name": "maybe", "value": 0.0, "type": "Reward"},
                {"name": "no_reward", "value": 1.0, "type": "Metric"},
            ],
        },
    ]


def test_the_cli_report_shows_the_no_reward_samples() -> None:
    from gradekit.runtime.report import format_summary

    agg = Aggregate(name="both")
    agg.add_batch(run_batch(_multi("a + b + c"), ["yes", "no", "maybe", "down"]))
    lines = format_summary(agg.summary()).splitlines()
    assert lines[:5] == [
        "samples graded      4",
        "reward mean         2.0000",
        "reward std          0.5000",
        "failed samples      1 (25.0%)",
        "no reward           2 (50.0%)",
    ]


def test_assert_reward_never_takes_no_reward_for_a_zero() -> None:
    from gradekit.graders.testing import GraderAssertionError, assert_reward

    assert_reward(maybe, "no", expected=0.0)
    with pytest.raises(GraderAssertionError) as caught:
        assert_reward(maybe, "maybe", expected=0.0)
    lines = str(caught.value).splitlines()
    assert lines[0] == "expected reward 0.0, got no reward (not_applicable)"
    assert "  no reward: not_applicable (maybe: not_applicable)" in lines
