"""verl adapters against verl's own code: `get_custom_reward_fn`, `NaiveRewardManager`, `BatchRewardManager`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradekit.trainer_bridge.adapters import verl_rewards
from gradekit.trainer_bridge.adapters.verl_rewards import (
    compute_score,
    compute_score_batch,
    to_verl,
    to_verl_batch,
    verl_item,
)

# Importing verl's reward loop pulls in ray's state API, which warns about its own module path.
pytestmark = pytest.mark.filterwarnings("ignore:Ray state API is no longer experimental:DeprecationWarning")

GRADER: dict[str, Any] = {
    "type": "multi",
    "name": "arith",
    "graders": {
        "correct": {
            "type": "string_check",
            "name": "correct",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.ground_truth }}",
            "operation": "like",
        },
        "unit": {
            "type": "string_check",
            "name": "unit",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.unit }}",
            "operation": "like",
        },
    },
    "calculate_output": "0.8 * correct + 0.2 * unit",
}

PROMPT = "what is 3 plus 4 ?"
# (response, extra_info) -> score, correct, unit, error. The last row has no `unit`: invalid_variable_error.
ROWS: list[tuple[str, dict[str, Any], float, float, float, float]] = [
    ("7 apples", {"index": 0, "unit": "apples"}, 1.0, 1.0, 1.0, 0.0),
    ("8 apples", {"index": 1, "unit": "apples"}, 0.2, 0.0, 1.0, 0.0),
    ("7", {"index": 2}, 0.0, 1.0, 0.0, 1.0),
]
PROMPT_LEN, RESPONSE_LEN = 6, 4


@pytest.fixture
def grader_file(tmp_path: Path) -> Path:
    path = tmp_path / "arith.json"
    path.write_text(json.dumps(GRADER), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from gradekit.trainer_bridge.models.tiny import build_tokenizer

    return build_tokenizer([PROMPT, *(r[0] for r in ROWS)])


def data_proto(tokenizer: Any, ground_truth: Any = "7") -> Any:
    """A verl batch as its rollout leaves it: left-padded prompts, right-padded responses, one mask."""
    import torch
    from verl import DataProto

    n, pad = len(ROWS), tokenizer.pad_token_id
    prompts = torch.full((n, PROMPT_LEN), pad)
    responses = torch.full((n, RESPONSE_LEN), pad)
    mask = torch.zeros((n, PROMPT_LEN + RESPONSE_LEN), dtype=torch.long)
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    for i, (response, *_) in enumerate(ROWS):
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        prompts[i, PROMPT_LEN - len(prompt_ids) :] = torch.tensor(prompt_ids)
        responses[i, : len(response_ids)] = torch.tensor(response_ids)
        mask[i, PROMPT_LEN - len(prompt_ids) : PROMPT_LEN + len(response_ids)] = 1
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array(["arith"] * n, dtype=object),
            "reward_model": np.array([{"ground_truth": ground_truth} for _ in ROWS], dtype=object),
            "extra_info": np.array([dict(r[1]) for r in ROWS], dtype=object),
        },
    )


def verl_config(path: str, name: str, reward_kwargs: dict[str, Any] | None = None) -> Any:
    from omegaconf import OmegaConf

    fn: dict[str, Any] = {"path": path, "name": name}
    if reward_kwargs is not None:
        fn["reward_kwargs"] = reward_kwargs
    return OmegaConf.create({"reward": {"custom_reward_function": fn}})


def assert_verl_rewards(out: dict[str, Any], tokenizer: Any) -> None:
    """Scores sit on each response's last valid token, zeros elsewhere; extra info has our keys per sample."""
    tensor = out["reward_tensor"]
    assert tuple(tensor.shape) == (len(ROWS), RESPONSE_LEN)
    for i, (response, _, score, *_) in enumerate(ROWS):
        last = len(tokenizer(response, add_special_tokens=False)["input_ids"]) - 1
        expected = [0.0] * RESPONSE_LEN
        expected[last] = score
        assert tensor[i].tolist() == pytest.approx(expected)
    assert dict(out["reward_extra_info"]) == {
        "score": pytest.approx([r[2] for r in ROWS]),
        "correct": [r[3] for r in ROWS],
        "unit": [r[4] for r in ROWS],
        "error": [r[5] for r in ROWS],
        "no_reward": [0.0] * len(ROWS),
    }


def test_naive_reward_manager_with_custom_reward_function_file(grader_file: Path, tokenizer: Any) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.naive import NaiveRewardManager

    # verl 0.9.1 reads config.reward.custom_reward_function and loads the file outside its package.
    fn = get_custom_reward_fn(verl_config(verl_rewards.__file__, "compute_score", {"grader": str(grader_file)}))
    assert fn is not None
    manager = NaiveRewardManager(tokenizer, num_examine=0, compute_score=fn)
    assert_verl_rewards(manager(data_proto(tokenizer), return_dict=True), tokenizer)


def test_batch_reward_manager_with_compute_score_batch(grader_file: Path, tokenizer: Any) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager

    path = "pkg://gradekit.trainer_bridge.adapters.verl_rewards"  # verl's package form: no file path needed
    fn = get_custom_reward_fn(verl_config(path, "compute_score_batch", {"grader": str(grader_file)}))
    data = data_proto(tokenizer)
    manager = BatchRewardManager(tokenizer, num_examine=0, compute_score=fn)
    assert_verl_rewards(manager(data, return_dict=True), tokenizer)
    assert data.batch["acc"].tolist() == pytest.approx([r[2] for r in ROWS])


def test_grader_inline_in_the_verl_config(tokenizer: Any) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.naive import NaiveRewardManager

    # A grader written into the YAML config reaches compute_score as an OmegaConf DictConfig.
    fn = get_custom_reward_fn(verl_config(verl_rewards.__file__, "compute_score", {"grader": GRADER}))
    manager = NaiveRewardManager(tokenizer, num_examine=0, compute_score=fn)
    assert_verl_rewards(manager(data_proto(tokenizer), return_dict=True), tokenizer)


def test_grader_from_environment_variable(grader_file: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.naive import NaiveRewardManager

    monkeypatch.setenv("GRADEKIT_GRADER", str(grader_file))
    fn = get_custom_reward_fn(verl_config(verl_rewards.__file__, "compute_score"))
    manager = NaiveRewardManager(tokenizer, num_examine=0, compute_score=fn)
    assert_verl_rewards(manager(data_proto(tokenizer), return_dict=True), tokenizer)


def test_dict_ground_truth_keys_join_the_item(tokenizer: Any) -> None:
    from verl.workers.reward_manager.naive import NaiveRewardManager

    grader = json.loads(json.dumps(GRADER).replace("item.ground_truth", "item.answer"))
    manager = NaiveRewardManager(tokenizer, num_examine=0, compute_score=to_verl(grader))
    out = manager(data_proto(tokenizer, ground_truth={"answer": "7", "unit": "apples"}), return_dict=True)
    # The ground truth's `unit` fills the last row's item (its extra_info has none): graded, not an error.
    assert out["reward_extra_info"]["score"] == pytest.approx([1.0, 0.2, 0.8])
    assert out["reward_extra_info"]["error"] == [0.0, 0.0, 0.0]
    assert out["reward_extra_info"]["no_reward"] == [0.0, 0.0, 0.0]


def test_missing_grader_names_both_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADEKIT_GRADER", raising=False)
    with pytest.raises(ValueError, match=r"reward_kwargs\.grader.*GRADEKIT_GRADER"):
        compute_score("arith", "7", "7")
    with pytest.raises(ValueError, match=r"reward_kwargs\.grader.*GRADEKIT_GRADER"):
        compute_score_batch(["arith"], ["7"], ["7"], [{}])


def test_grader_is_loaded_once_per_spec(grader_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradekit.trainer_bridge.adapters import common as _adapters

    loads: list[Any] = []
    real_validate = _adapters.validate

    def counting_validate(spec: Any) -> Any:
        loads.append(spec)
        return real_validate(spec)

    monkeypatch.setattr(_adapters, "validate", counting_validate)
    monkeypatch.setattr(_adapters, "_GRADERS", {})
    for _ in range(3):
        assert compute_score("arith", "7 apples", "7", {"unit": "apples"}, grader=str(grader_file))["score"] == 1.0
    assert compute_score("arith", "7", "7", {"unit": "apples"}, grader=GRADER)["score"] == 0.8
    assert compute_score("arith", "7", "7", {"unit": "apples"}, grader=dict(GRADER))["score"] == 0.8
    assert len(loads) == 2  # the file once, the dict once


def test_keys_are_the_same_for_every_sample() -> None:
    score = to_verl_batch(GRADER)
    out = score(
        data_sources=["a", "a", "a"],
        solution_strs=["7 apples", "7", None],  # no unit in the item; not a string
        ground_truths=["7", "7", "7"],
        extra_infos=[{"unit": "apples"}, {}, {"unit": "apples"}],
    )
    assert [set(o) for o in out] == [{"score", "correct", "unit", "error", "no_reward"}] * 3
    assert [o["score"] for o in out] == pytest.approx([1.0, 0.0, 0.0])
    assert [o["error"] for o in out] == [0.0, 1.0, 1.0]
    assert all(isinstance(v, float) for o in out for v in o.values())


def test_single_grader_answers_score_and_error() -> None:
    exact = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "7"}
    fn = to_verl({**exact, "operation": "eq"})
    assert fn(data_source="d", solution_str="7", ground_truth=None) == {"score": 1.0, "error": 0.0, "no_reward": 0.0}
    assert fn(data_source="d", solution_str="8", ground_truth=None, extra_info=None) == {
        "score": 0.0,
        "error": 0.0,
        "no_reward": 0.0,
    }


def test_verl_item_layout() -> None:
    extra = {"question": "q", "num_turns": 2, "rollout_reward_scores": {}, "tags": np.array(["x", "y"])}
    assert verl_item("src", np.array(["7", "seven"]), extra) == {
        "question": "q",
        "tags": ["x", "y"],
        "ground_truth": ["7", "seven"],
        "data_source": "src",
    }
    assert verl_item("src", {"answer": np.int64(7), "question": "from truth"}, extra) == {
        "question": "from truth",
        "tags": ["x", "y"],
        "answer": 7,
        "data_source": "src",
    }
    assert verl_item("src", None, None) == {"ground_truth": None, "data_source": "src"}


def test_sub_grader_names_that_clash_are_prefixed() -> None:
    clash = {
        "type": "multi",
        "name": "m",
        "graders": {
            "score": {"type": "string_check", "name": "score", "input": "a", "reference": "a", "operation": "eq"},
            "reward": {"type": "string_check", "name": "reward", "input": "a", "reference": "b", "operation": "eq"},
        },
        "calculate_output": "score",
    }
    assert to_verl(clash)("d", "x", None) == {
        "score": 1.0,
        "grader.score": 1.0,
        "grader.reward": 0.0,
        "error": 0.0,
        "no_reward": 0.0,
    }


def test_reward_loop_naive_manager_runs_each_sample(grader_file: Path, tokenizer: Any) -> None:
    """verl 0.9.1's trainer scores through the reward loop: `run_single` per sample, sync fns in an executor."""
    import asyncio

    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = verl_config(verl_rewards.__file__, "compute_score", {"grader": str(grader_file)})
    fn = get_custom_reward_fn(config)
    data = data_proto(tokenizer)

    async def score_all() -> list[dict[str, Any]]:
        manager = NaiveRewardManager(config, tokenizer, fn)
        return [await manager.run_single(data[i : i + 1]) for i in range(len(ROWS))]

    results = asyncio.run(score_all())
    assert [r["reward_score"] for r in results] == pytest.approx([r[2] for r in ROWS])
    for result, (_, _, score, correct, unit, error) in zip(results, ROWS, strict=True):
        assert result["reward_extra_info"] == {
            "score": pytest.approx(score),
            "correct": correct,
            "unit": unit,
            "error": error,
            "no_reward": 0.0,
        }
