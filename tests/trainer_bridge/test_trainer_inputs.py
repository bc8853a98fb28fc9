"""What TRL and verl pass a reward function reaches gradekit graders: role-less messages, token ids, reward_kwargs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import StringCheck, grader
from gradekit.trainer_bridge import to_trl, to_verl, to_verl_batch
from gradekit.trainer_bridge.adapters.trl_rewards import trl_inputs
from gradekit.trainer_bridge.adapters.verl_rewards import compute_score, reward_kwargs_of, verl_item

pytestmark = pytest.mark.filterwarnings("ignore:Ray state API is no longer experimental:DeprecationWarning")

EXACT = StringCheck(name="exact", input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq")


def test_role_less_messages_are_the_assistants_reply() -> None:
    # TRL's reward docs (https://huggingface.co/docs/trl/rewards, think_format_reward) write conversational
    # completions as one message holding only `content`. Ours, in that shape:
    completions = [[{"content": "Paris"}], [{"content": "Lyon"}], [{"role": "assistant", "content": "Paris"}]]
    reward = to_trl(EXACT)
    assert reward(prompts=["capital?"] * 3, completions=completions, answer=["Paris"] * 3) == [1.0, 0.0, 1.0]
    samples, _ = trl_inputs(None, [[{"content": "Paris"}], {"content": "Nice"}], {})
    assert samples == [
        [{"role": "assistant", "content": "Paris", "tool_calls": []}],
        [{"role": "assistant", "content": "Nice", "tool_calls": []}],
    ]
    # a user turn before the reply keeps its role; only the role-less message is the reply
    mixed = [[{"role": "user", "content": "Paris"}, {"content": "Lyon"}]]
    assert reward(completions=mixed, answer=["Paris"]) == [0.0]


@grader
def soft_overlong(sample: dict[str, Any]) -> float:
    """DAPO's soft overlong punishment (TRL's get_soft_overlong_punishment) with L_max 100, L_cache 20."""
    length, longest, cache = len(sample["completion_ids"]), 100, 20
    if length <= longest - cache:
        return 0.0
    if length <= longest:
        return (longest - cache - length) / cache
    return -1.0


TOKEN_COUNT = {
    # "Reward longer completions" as TRL's GRPO docs write it with `completion_ids`
    # (https://huggingface.co/docs/trl/grpo_trainer, "Using a custom reward function"), as an OpenAI python grader.
    "type": "python",
    "name": "tokens",
    "source": "def grade(sample, item):\n    return float(len(sample['completion_ids']))\n",
}
LENGTHS = [3, 80, 81, 90, 100, 101, 150]


def test_completion_ids_give_trls_soft_overlong_punishment() -> None:
    # TRL's rewards page (https://huggingface.co/docs/trl/rewards, get_soft_overlong_punishment) documents this
    # reward over `completion_ids`; compare with the function TRL ships.
    from trl.rewards import get_soft_overlong_punishment

    ids = [[7] * n for n in LENGTHS]
    texts = [f"answer of {n} tokens" for n in LENGTHS]
    expected = get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)(completion_ids=ids)
    assert expected == [0.0, 0.0, -0.05, -0.5, -1.0, -1.0, -1.0]
    got = to_trl(soft_overlong)(prompts=["q"] * len(ids), completions=texts, completion_ids=ids, trainer_state=None)
    assert got == pytest.approx(expected, abs=0.0)


def test_completion_ids_reach_python_graders_and_templates() -> None:
    ids = [[1, 2, 3], [4], []]
    completions = [[{"content": "a"}], [{"role": "assistant", "content": "b"}], "c"]
    assert to_trl(TOKEN_COUNT)(completions=completions, completion_ids=ids) == [3.0, 1.0, 0.0]
    first = StringCheck(
        name="first", input="{{ sample.completion_ids[0] }}", reference="{{ item.bos }}", operation="eq"
    )
    assert to_trl(first)(completions=["x", "y"], completion_ids=[[5, 6], [6]], bos=["5", "5"]) == [1.0, 0.0]
    samples, _ = trl_inputs(None, ["x"], {"completion_ids": [[5, 6]]})
    assert samples[0]["completion_ids"] == [5, 6] and samples[0]["output_text"] == "x"


def test_a_sample_that_cannot_be_built_keeps_its_flag_with_ids() -> None:
    reward = to_trl(EXACT)
    assert reward(completions=[[{"role": "user", "content": "x"}], 7], completion_ids=[[1], [2]], answer=["x"] * 2) == [
        0.0,
        0.0,
    ]


@grader
def gsm8k_style(sample: dict[str, Any], item: dict[str, Any]) -> float:
    """verl's own gsm8k scorer, its options from the config's reward_kwargs (`item.reward_kwargs`)."""
    from verl.utils.reward_score import gsm8k

    return float(gsm8k.compute_score(sample["output_text"], item["ground_truth"], **item.get("reward_kwargs", {})))


# (response, verl's gsm8k score with method="flexible", format_score=0.1, score=1.0)
GSM8K = [("so #### 72", "72"), ("I think 71", "72"), ("no number", "72"), ("#### 7", "72")]


def test_verl_reward_kwargs_reach_the_item() -> None:
    from verl.utils.reward_score import gsm8k

    options = {"method": "flexible", "format_score": 0.1}
    expected = [float(gsm8k.compute_score(r, t, **options)) for r, t in GSM8K]
    assert expected == [1.0, 0.1, 0.0, 0.1]
    per_sample = to_verl(gsm8k_style)
    assert [per_sample("gsm8k", r, t, {"index": i}, **options)["score"] for i, (r, t) in enumerate(GSM8K)] == expected
    batch = to_verl_batch(gsm8k_style)(
        data_sources=["gsm8k"] * 4, solution_strs=[r for r, _ in GSM8K], ground_truths=[t for _, t in GSM8K], **options
    )
    assert [s["score"] for s in batch] == expected
    strict = [per_sample("gsm8k", r, t)["score"] for r, t in GSM8K]  # without reward_kwargs: verl's defaults
    assert strict == [1.0, 0.0, 0.0, 0.0]


def test_reward_kwargs_through_verls_config_loader(tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from gradekit.trainer_bridge.adapters import verl_rewards

    ref = f"{__name__}:gsm8k_style"
    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": verl_rewards.__file__,
                    "name": "compute_score",
                    "reward_kwargs": {"grader": ref, "method": "flexible", "format_score": 0.1},
                }
            }
        }
    )
    fn = get_custom_reward_fn(config)
    assert fn is not None
    assert [fn(data_source="gsm8k", solution_str=r, ground_truth=t)["score"] for r, t in GSM8K] == [1.0, 0.1, 0.0, 0.1]


def test_only_json_reward_kwargs_and_not_verls_own_are_kept() -> None:
    kept = reward_kwargs_of(
        {"grader": "g.json", "method": "strict", "reward_router_address": "10.0.0.1", "tokenizer_like": object()}
    )
    assert kept == {"method": "strict"}
    assert verl_item("src", "4", {"index": 1}) == {"index": 1, "ground_truth": "4", "data_source": "src"}
    assert verl_item("src", "4", None, reward_kwargs=kept)["reward_kwargs"] == {"method": "strict"}
    # the module entry point keeps doing what it did for graders that ignore them
    spec = json.dumps(EXACT.to_json() | {"reference": "{{ item.ground_truth }}"})
    assert compute_score("src", "4", "4", None, grader=spec, method="strict")["score"] == 1.0
