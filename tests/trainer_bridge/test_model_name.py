"""The fine-tuned model's name: one builder, used by `RFTJob` (the run folder) and the service (the API)."""

from __future__ import annotations

from pathlib import Path

from gradekit.trainer_bridge import RFTJob
from gradekit.trainer_bridge.loop.job import fine_tuned_model_name
from gradekit.trainer_bridge.models.policy import TINY_MODEL
from gradekit.trainer_bridge.service.store import Store
from gradekit.trainer_bridge.service.worker import Worker, _Active

from .rft_task import GRADER, write_task
from .service.helpers import client, make_config, rft_method, serving, upload


def test_the_fine_tuned_model_name_has_one_builder(tmp_path: Path) -> None:
    assert fine_tuned_model_name("openai.gpt-oss-20b", None, "ftjob-abc123") == "ft:openai.gpt-oss-20b:gradekit:abc123"
    assert fine_tuned_model_name("tiny-local", "tickets", "ftjob-abc123") == "ft:tiny-local:tickets:abc123"

    def job(model: str | Path, **kwargs: str) -> RFTJob:
        return RFTJob(model, GRADER, "train.jsonl", "valid.jsonl", job_id="ftjob-abc123", suffix="s", **kwargs)

    assert job(TINY_MODEL).fine_tuned_model == "ft:tiny-local:s:abc123"
    assert job(tmp_path / "my-base").fine_tuned_model == "ft:my-base:s:abc123"
    named = job(TINY_MODEL, model_name="openai.gpt-oss-20b")
    assert named.fine_tuned_model == "ft:openai.gpt-oss-20b:s:abc123"
    assert named._new_record()["gradekit"]["model_name"] == "openai.gpt-oss-20b"  # what resume reads back


def test_the_worker_trains_under_the_name_the_api_announces(tmp_path: Path) -> None:
    train, _ = write_task(tmp_path / "task", n_train=4, n_valid=2)
    config = make_config(tmp_path / "data", start_worker=False)
    with serving(config) as (url, _), client(url) as sdk:
        job = sdk.fine_tuning.jobs.create(
            model="openai.gpt-oss-20b",
            training_file=upload(sdk, train),
            suffix="tickets",
            extra_body={"method": rft_method(n_epochs=1)},
        )
    row = Store(config.db_path).get_job(job.id)
    assert row is not None
    expected = fine_tuned_model_name("openai.gpt-oss-20b", "tickets", job.id)
    assert row.model_name == expected  # what the API reports once the job succeeds
    built = Worker(config)._build(_Active(row))  # the RFTJob the worker would run (it writes the run folder)
    assert built is not None and built.fine_tuned_model == expected
