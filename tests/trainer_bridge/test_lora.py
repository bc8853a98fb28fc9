"""LoRA (peft) as a loop option: only the adapters train, checkpoints hold the adapter, loading gives the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradekit.trainer_bridge.loop.job import RFTJob
from gradekit.trainer_bridge.models.catalogue import LORA_BASE, TINY_MODEL
from gradekit.trainer_bridge.models.policy import Policy

from .rft_task import GRADER


@pytest.fixture(scope="module")
def lora_job(tmp_path_factory: pytest.TempPathFactory, task: tuple[Path, Path, Path]) -> RFTJob:
    root = tmp_path_factory.mktemp("lora")
    train, valid, base = task  # the warm-started tiny model: it names teams, so rewards differ within a group
    job = RFTJob(
        base,
        GRADER,
        train,
        valid,
        {"n_epochs": 1, "batch_size": 4, "eval_interval": 2},
        seed=3,
        output_dir=root / "run",
        options={"max_completion_tokens": 3, "group_size": 4, "learning_rate": 5e-2, "lora_rank": 4},
        progress=False,
    )
    assert job.run()["status"] == "succeeded"
    return job


def test_a_tiny_local_adapter_rebuilds_its_base_from_the_seed(tmp_path: Path) -> None:
    policy = Policy.load(TINY_MODEL, texts=["my payment was declined"], seed=7)
    policy.add_lora(2, 4.0)
    for name, p in policy.model.named_parameters():
        if ".lora_B." in name:
            p.data.fill_(0.01)
    policy.save(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / LORA_BASE).read_text()) == {"model": TINY_MODEL, "seed": 7}
    ids = _ids(policy)
    assert torch.equal(_logits(Policy.load(tmp_path / "adapter"), ids), _logits(policy, ids))


def _ids(policy: Policy) -> torch.Tensor:
    return torch.tensor([policy.tokenizer("Urgent : my payment was declined", add_special_tokens=False)["input_ids"]])


def _logits(policy: Policy, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return policy.model(input_ids=ids).logits


def test_only_the_adapters_train(lora_job: RFTJob) -> None:
    policy = lora_job.policy
    assert policy.is_lora
    trained = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    # lora_B starts at zero: the adapters moved away from the base model.
    assert any(p.abs().sum() > 0 for n, p in policy.model.named_parameters() if ".lora_B." in n)
    # With the adapters off, the model is exactly the base model the job started from.
    base = Policy.load(lora_job.model)
    ids = _ids(base)
    with torch.no_grad(), policy.model.disable_adapter():
        assert torch.equal(policy.model(input_ids=ids).logits, _logits(base, ids))
    assert not torch.allclose(_logits(policy, ids), _logits(base, ids))


def test_checkpoints_hold_the_adapter_and_load_back_to_the_same_model(lora_job: RFTJob) -> None:
    final = lora_job.dir / "final"
    assert (final / "adapter_model.safetensors").is_file() and not (final / "model.safetensors").exists()
    assert json.loads((final / LORA_BASE).read_text()) == {"model": str(Path(lora_job.model).resolve()), "seed": 3}
    loaded = Policy.load(final)
    assert loaded.is_lora and loaded.name == "final"
    ids = _ids(loaded)
    assert torch.equal(_logits(loaded, ids), _logits(lora_job.policy, ids))
    newest = lora_job.checkpoints[0]
    assert newest.step_number == lora_job.res.total_steps and Path(newest.path, "adapter_model.safetensors").is_file()
    assert torch.equal(_logits(Policy.load(newest.path), ids), _logits(lora_job.policy, ids))


def test_a_merged_adapter_is_a_plain_model_with_the_same_outputs(lora_job: RFTJob, tmp_path: Path) -> None:
    policy = Policy.load(lora_job.dir / "final")
    ids = _ids(policy)
    before = _logits(policy, ids)
    policy.merge()
    assert not policy.is_lora
    policy.save(tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file() and not (tmp_path / "merged" / LORA_BASE).exists()
    merged = Policy.load(tmp_path / "merged")
    torch.testing.assert_close(_logits(merged, ids), before, atol=1e-5, rtol=1e-5)
