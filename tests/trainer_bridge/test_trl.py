"""`to_trl`: a real TRL `GRPOTrainer` run on a tiny offline Qwen2, and the reward function's contract."""

from __future__ import annotations

import asyncio
import inspect
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import BatchResult
from gradekit.trainer_bridge.adapters import trl_rewards
from gradekit.trainer_bridge.adapters.trl_rewards import TRLReward, to_trl, trl_inputs

MULTI: dict[str, Any] = {
    "type": "multi",
    "name": "arith",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "like",
        },
        "nonempty": {
            "type": "string_check",
            "name": "nonempty",
            "input": "{{ sample.output_text }}",
            "reference": "",
            "operation": "ne",
        },
    },
    "calculate_output": "0.75 * exact + 0.25 * nonempty",
}

TOOLS: dict[str, Any] = {
    "type": "multi",
    "name": "agent",
    "graders": {
        "tools": {"type": "tool_call", "name": "tools", "expected": "{{ item.expected_tool_calls }}"},
        "final": {
            "type": "string_check",
            "name": "final",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
    },
    "calculate_output": "0.5 * tools + 0.5 * final",
}


class Metrics:
    """Stands in for TRL's `log_metric`: every (name, value) logged."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, float]] = []

    def __call__(self, name: str, value: float) -> None:
        self.logged.append((name, value))

    @property
    def last(self) -> dict[str, float]:
        return dict(self.logged)


# --- the real trainer ---------------------------------------------------------------------------------------

ROWS = [{"prompt": f"what is {a} plus {b} ?", "answer": str(a + b)} for a, b in [(1, 2), (2, 3), (3, 4), (4, 5)]]


@pytest.mark.filterwarnings(r"ignore:`\w*gradient_checkpointing\w*` is deprecated:FutureWarning")
def test_grpo_trainer_logs_gradekit_rewards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from gradekit.trainer_bridge.models.tiny import build_tiny_model, build_tokenizer

    graded: list[tuple[list[Any], list[dict[str, Any]], BatchResult]] = []
    real_run_batch = trl_rewards.run_batch

    def recording_run_batch(grader: Any, samples: Any, items: Any, *, env: Any = None) -> BatchResult:
        result = real_run_batch(grader, samples, items, env=env)
        graded.append((list(samples), list(items), result))
        return result

    monkeypatch.setattr(trl_rewards, "run_batch", recording_run_batch)

    tokenizer = build_tokenizer(r["prompt"] + " " + r["answer"] for r in ROWS)
    reward = to_trl(MULTI, name="gk")
    config = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        max_steps=2,
        logging_steps=1,
        learning_rate=0.1,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=build_tiny_model(tokenizer),
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(ROWS),
        processing_class=tokenizer,
    )
    assert trainer.reward_func_names == ["gk"]
    trainer.train()

    steps = [entry for entry in trainer.state.log_history if "rewards/gk/mean" in entry]
    assert len(steps) == 2
    assert len(graded) == 2  # one reward call per step: each step generates its own batch
    answers = {r["prompt"]: r["answer"] for r in ROWS}
    for entry, (samples, items, result) in zip(steps, graded, strict=True):
        assert len(samples) == 4
        for sample, item, reward_value, exact, nonempty in zip(
            samples, items, result.rewards, result.sub_rewards["exact"], result.sub_rewards["nonempty"], strict=True
        ):
            # The item is the dataset row: its answer column and its prompt.
            assert set(item) == {"prompt", "answer"}
            assert item["answer"] == answers[item["prompt"]]
            # The sample is the completion text with the token ids TRL passed (`sample.completion_ids`).
            text, ids = sample["output_text"], sample["completion_ids"]
            assert isinstance(text, str) and 1 <= len(ids) <= 4 and all(isinstance(t, int) for t in ids)
            assert exact == float(item["answer"] in text)
            assert nonempty == float(text != "")
            assert reward_value == pytest.approx(0.75 * exact + 0.25 * nonempty)
        n = len(result.rewards)
        assert entry["rewards/gk/mean"] == pytest.approx(sum(result.rewards) / n, abs=1e-6)
        assert entry["reward"] == pytest.approx(sum(result.rewards) / n, abs=1e-6)
        assert entry["rewards/gk/exact/mean"] == pytest.approx(sum(result.sub_rewards["exact"]) / n)
        assert entry["rewards/gk/nonempty/mean"] == pytest.approx(sum(result.sub_rewards["nonempty"]) / n)
        assert entry["rewards/gk/errors/rate"] == 0.0


# --- the reward function's contract -------------------------------------------------------------------------


def test_item_is_the_dataset_row_without_trl_kwargs() -> None:
    samples, items = trl_inputs(
        ["p0", "p1"],
        ["c0", "c1"],
        {
            "answer": ["a0", "a1"],
            "meta": [{"k": 0}, {"k": 1}],
            "completion_ids": [[1], [2]],
            "trainer_state": object(),
            "log_extra": lambda column, values: None,
            "log_metric": lambda name, value: None,
            "environments": [object(), object()],
            "scale": 2.0,  # not a list: not a column
        },
    )
    # completion_ids is not a column: it is the sample's `completion_ids`
    assert [(s["output_text"], s["completion_ids"]) for s in samples] == [("c0", [1]), ("c1", [2])]
    assert items == [
        {"answer": "a0", "meta": {"k": 0}, "prompt": "p0"},
        {"answer": "a1", "meta": {"k": 1}, "prompt": "p1"},
    ]


def test_standard_completions_and_name() -> None:
    reward = to_trl(MULTI)
    assert reward.__name__ == "arith"
    assert to_trl(MULTI, name="custom").__name__ == "custom"
    metrics = Metrics()
    out = reward(
        prompts=["q", "q", "q"],
        completions=["it is 7", "8", ""],
        completion_ids=[[1], [2], []],
        answer=["7", "7", "7"],
        trainer_state=None,
        log_metric=metrics,
    )
    assert out == [1.0, 0.25, 0.0]
    assert metrics.last == {
        "rewards/arith/exact/mean": pytest.approx(1 / 3),
        "rewards/arith/nonempty/mean": pytest.approx(2 / 3),
        "rewards/arith/errors/rate": 0.0,
        "rewards/arith/no_reward/rate": 0.0,
    }


def test_conversational_completions_with_tool_calls() -> None:
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 3, "b": 4}}}
    completions = [
        # TRL's tool loop: assistant with tool_calls, the tool's answer, then the final assistant turn.
        [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "add", "content": "7"},
            {"role": "assistant", "content": "7"},
        ],
        [{"role": "assistant", "content": "7"}],  # right answer, no call
        [{"role": "assistant", "content": [{"type": "text", "text": "7"}], "tool_calls": [call]}],
    ]
    expected = [{"name": "add", "arguments": {"a": 3, "b": 4}}]
    out = to_trl(TOOLS)(
        prompts=[[{"role": "user", "content": "3 + 4?"}]] * 3,
        completions=completions,
        answer=["7"] * 3,
        expected_tool_calls=[expected] * 3,
    )
    assert out == [1.0, 0.5, 1.0]


def test_errors_score_zero_and_are_logged() -> None:
    reward = to_trl(MULTI)
    metrics = Metrics()
    out = reward(
        prompts=["q"] * 4,
        completions=["7", [{"role": "user", "content": "no assistant"}], "7", 42],
        answer=["7", "7", None, "7"],
        log_metric=metrics,
    )
    assert out == [1.0, 0.0, 0.25, 0.0]
    assert all(isinstance(r, float) for r in out)
    logged = metrics.last
    assert logged["rewards/arith/errors/rate"] == pytest.approx(2 / 4)
    assert logged["rewards/arith/errors/arith/sample_parse_error"] == pytest.approx(2 / 4)
    # A flag seen once keeps being logged, as 0.0 when it does not fire, so averages over steps stay right.
    metrics.logged.clear()
    assert reward(prompts=["q"], completions=["7"], answer=["7"], log_metric=metrics) == [1.0]
    assert metrics.last["rewards/arith/errors/arith/sample_parse_error"] == 0.0
    assert metrics.last["rewards/arith/errors/rate"] == 0.0


def test_missing_item_field_is_an_invalid_variable_error() -> None:
    metrics = Metrics()
    out = to_trl(MULTI)(prompts=["q", "q"], completions=["7", "7"], log_metric=metrics)
    assert out == [0.0, 0.0]
    assert metrics.last["rewards/arith/errors/exact/invalid_variable_error"] == 1.0


def test_no_log_metric_is_fine() -> None:
    assert to_trl(MULTI)(completions=["7"], answer=["7"]) == [1.0]


def test_async_variant() -> None:
    reward = to_trl(MULTI, asynchronous=True, name="gk_async")
    assert inspect.iscoroutinefunction(reward)
    assert reward.__name__ == "gk_async"
    metrics = Metrics()

    async def both() -> list[list[float | None]]:
        calls = [
            reward(prompts=["q", "q"], completions=["7", "x"], answer=["7", "7"], log_metric=metrics),
            reward(prompts=["q"], completions=[""], answer=["7"], log_metric=metrics),
        ]
        return await asyncio.gather(*calls)

    assert asyncio.run(both()) == [[1.0, 0.25], [0.0]]
    assert ("rewards/gk_async/exact/mean", 0.5) in metrics.logged
    assert ("rewards/gk_async/nonempty/mean", 0.0) in metrics.logged


def test_trl_detects_sync_and_async_and_names() -> None:
    from trl.trainer.utils import get_callable_name, is_async_callable

    sync, async_ = to_trl(MULTI, name="s"), to_trl(MULTI, asynchronous=True, name="a")
    assert (get_callable_name(sync), is_async_callable(sync)) == ("s", False)
    assert (get_callable_name(async_), is_async_callable(async_)) == ("a", True)


def test_sync_reward_pickles() -> None:
    reward = to_trl(MULTI, name="gk")
    assert isinstance(reward, TRLReward)
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "gk"
    assert clone(completions=["7"], answer=["7"]) == [1.0]


def test_invalid_grader_fails_at_construction() -> None:
    from gradekit.graders import GraderValidationError

    with pytest.raises(GraderValidationError):
        to_trl({"type": "string_check", "name": "x"})


def test_samples_that_failed_score_finite_zeros_not_none() -> None:
    # Unreadable completions are the sample's fault: reward 0.0 (None is for no reward: tests/test_no_reward.py).
    malformed_calls = [{"role": "assistant", "content": "7", "tool_calls": 5}]
    metrics = Metrics()
    out = to_trl(MULTI)(
        completions=[None, {"nope": 1}, malformed_calls, {"role": "assistant", "content": "7"}, "7"],
        answer=["7"] * 5,
        log_metric=metrics,
    )
    assert out == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert all(r is not None and math.isfinite(r) for r in out)
    assert metrics.last["rewards/arith/errors/arith/sample_parse_error"] == pytest.approx(3 / 5)
