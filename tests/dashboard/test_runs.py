"""`gradekit serve --runs DIR`: run folders written by RFTJob are served read-only through the jobs API (the
openai SDK reads them) and the same pages, with or without the fine-tuning service."""

from __future__ import annotations

import shutil
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect

from gradekit.runtime.cli import RUNS_ENV, main
from gradekit.runtime.server import create_app, running
from gradekit.trainer_bridge.service.runs import RunFolders

from ..trainer_bridge.service.helpers import client, serving
from .conftest import Service
from .helpers import make_config


def test_run_folders_through_the_sdk_and_the_pages(
    page: Page, service: Service, finished_job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = service.data_dir / "jobs"  # the worker's RFTJob run folders
    monkeypatch.setenv(RUNS_ENV, str(runs))  # what `gradekit serve --runs DIR` sets
    app = create_app()  # no service config: only the run folders
    assert app.state.runs_dir == runs
    with running(app) as url, client(url) as sdk:
        listed = [j.id for j in sdk.fine_tuning.jobs.list(limit=100).data]
        assert finished_job in listed
        assert set(listed) == {p.name for p in runs.iterdir() if (p / "job.json").is_file()}
        job = sdk.fine_tuning.jobs.retrieve(finished_job)
        original = service.sdk.fine_tuning.jobs.retrieve(finished_job)
        # (created_at differs: the worker's run records when it started the job, the service when it was created)
        for field in ("id", "status", "finished_at", "fine_tuned_model", "trained_tokens", "seed"):
            assert getattr(job, field) == getattr(original, field), field
        events = sdk.fine_tuning.jobs.list_events(finished_job, limit=1000).data
        assert events == service.sdk.fine_tuning.jobs.list_events(finished_job, limit=1000).data
        checkpoints = sdk.fine_tuning.jobs.checkpoints.list(finished_job, limit=10).data
        assert checkpoints == service.sdk.fine_tuning.jobs.checkpoints.list(finished_job, limit=10).data
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.fine_tuning.jobs.pause(finished_job)
        assert caught.value.code == "job_read_only"
        with pytest.raises(openai.NotFoundError):
            sdk.fine_tuning.jobs.retrieve("ftjob-none")

        # The same pages (this server has no key: no key form).
        page.goto(f"{url}/")
        row = page.locator(f'tr[data-job="{finished_job}"]')
        expect(row.locator(".status")).to_have_text("succeeded")
        row.locator("a.job-id").click()
        expect(page.locator("#reward-chart")).to_have_attribute("data-points", "5")
        expect(page.locator("#events .message")).to_have_count(len(events))
        expect(page.locator("#checkpoints-table tbody tr")).to_have_count(len(checkpoints))
        page.click("#evals-link")
        expect(page.locator("#eval-runs-table tbody tr")).to_have_count(3)


def test_run_folders_beside_the_service_and_a_missing_folder(
    service: Service, finished_job: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path / "data", start_worker=False)
    with serving(config) as (url, app), client(url) as sdk:
        app.state.runs_dir = service.data_dir / "jobs" / finished_job  # one run folder
        assert [j.id for j in sdk.fine_tuning.jobs.list().data] == [finished_job]
        assert sdk.fine_tuning.jobs.retrieve(finished_job).status == "succeeded"

    assert main(["serve", "--runs", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"gradekit: error: --runs {tmp_path / 'nope'}: no such folder\n"


def test_a_folder_of_runs_lists_only_readable_runs_and_filters_by_metadata(
    service: Service, finished_job: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(service.data_dir / "jobs" / finished_job, runs / "a")
    (runs / "notes").mkdir()  # no job.json: not a run
    (runs / "torn").mkdir()
    (runs / "torn" / "job.json").write_text('{"id": "ftjob-torn", ')  # being written: skipped, no error
    folders = RunFolders(runs)
    assert folders.folders() == {finished_job: runs / "a"}
    assert [j["id"] for j in folders.list(10, None, {})["data"]] == [finished_job]
    assert folders.list(10, None, {"team": "support"})["data"] == []
    assert "gradekit" not in folders.get(finished_job)  # gradekit's own section of job.json stays private
    assert RunFolders(runs / "a").folders() == {finished_job: runs / "a"}  # a run folder itself
    assert RunFolders(tmp_path / "missing").folders() == {}
