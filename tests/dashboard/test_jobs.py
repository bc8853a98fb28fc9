"""The jobs list and a job's page in Chromium, against a real job; every value shown is checked against the API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import Page, expect

from ..trainer_bridge.service.helpers import wait_for, wait_until
from .conftest import Service
from .helpers import create_job, get, log_in


def shown_time(seconds: int | None) -> str:
    return "—" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def metrics(service: Service, job_id: str) -> list[dict[str, Any]]:
    events = service.sdk.fine_tuning.jobs.list_events(job_id, limit=1000).data[::-1]
    return [e.data for e in events if e.type == "metrics"]  # type: ignore[misc]


def value(page: Page, selector: str) -> float | None:
    raw = page.locator(f"{selector} [data-value]").get_attribute("data-value")
    return None if raw is None else float(raw)


def test_the_jobs_list_and_the_job_page_show_the_api_values(page: Page, service: Service, finished_job: str) -> None:
    log_in(page, service.url)
    row = page.locator(f'tr[data-job="{finished_job}"]')
    expect(row.locator(".status")).to_have_text("succeeded")
    job = service.sdk.fine_tuning.jobs.retrieve(finished_job)
    data = metrics(service, finished_job)
    expect(row.locator(".model")).to_have_text(job.model)
    expect(row.locator(".created")).to_have_text(shown_time(job.created_at))
    expect(row.locator(".finished")).to_have_text(shown_time(job.finished_at))
    expect(row.locator(".step")).to_have_text(f"{data[-1]['step']} / {data[-1]['total_steps']}")
    assert value(page, f'tr[data-job="{finished_job}"] .valid') == data[-1]["valid_reward_mean"]

    # The job page.
    page.click(f'tr[data-job="{finished_job}"] a.job-id')
    expect(page.locator("#job-id")).to_have_text(finished_job)
    assert [d["step"] for d in data] == [0, 1, 2, 3, 4]
    expect(page.locator('dd[data-field="status"]')).to_have_text("succeeded")
    expect(page.locator('dd[data-field="fine_tuned_model"]')).to_have_text(str(job.fine_tuned_model))
    expect(page.locator('dd[data-field="step"]')).to_have_text("4 / 4")
    expect(page.locator('dd[data-field="trained_tokens"]')).to_have_text(str(job.trained_tokens))

    chart = page.locator("#reward-chart")
    expect(chart).to_have_attribute("data-points", "5")
    assert json.loads(chart.get_attribute("data-steps") or "") == [0, 1, 2, 3, 4]
    assert json.loads(chart.get_attribute("data-train") or "") == [d.get("train_reward_mean") for d in data]
    assert json.loads(chart.get_attribute("data-valid") or "") == [d.get("valid_reward_mean") for d in data]
    assert json.loads(chart.get_attribute("data-valid") or "")[1] is None  # no validation at step 1
    assert chart.locator("canvas").count() >= 1

    # Per-grader means: the latest train and validation means of the multi grader and each sub-grader.
    last_valid = data[-1]["graders"]
    for name in ("routing", "team", "hinted", "applies"):
        assert value(page, f'#means-table tr[data-grader="{name}"] .valid') == last_valid[name]["valid_reward_mean"]
        assert value(page, f'#means-table tr[data-grader="{name}"] .train') == last_valid[name]["train_reward_mean"]

    # Errors: every non-zero (step, split, grader, flag) of the metrics, with its count and rate.
    expected = {
        (str(d["step"]), split, grader, flag): (str(c["count"]), c["rate"])
        for d in data
        for split, table in (("train", d.get("errors")), ("valid", d.get("valid_errors")))
        for grader, flags in (table or {}).items()
        for flag, c in flags.items()
        if c["count"]
    }
    assert ("4", "valid", "hinted", "invalid_variable_error") in expected  # odd rows have no hint
    shown = {}
    for r in page.locator("#errors-table tbody tr").all():
        cells = r.locator("td").all_inner_texts()
        rate = r.locator("td:nth-child(6) [data-value]").get_attribute("data-value")
        shown[tuple(cells[:4])] = (cells[4], float(rate or "nan"))
    assert shown == expected

    # Samples without a reward (a grading fault or a grader that does not apply): every non-zero count.
    unrewarded = {
        (str(d["step"]), split, grader): c["count"]
        for d in data
        for split, table in (("train", d.get("no_reward")), ("valid", d.get("valid_no_reward")))
        for grader, c in (table or {}).items()
        if c["count"]
    }
    assert unrewarded[("4", "valid", "applies")] == 1  # validation row 2 is marked skip
    rows_shown = [r.locator("td").all_inner_texts() for r in page.locator("#no-reward-table tbody tr").all()]
    shown_unrewarded = {tuple(cells[:3]): int(cells[3]) for cells in rows_shown}
    assert shown_unrewarded == unrewarded

    # Kept checkpoints, as the checkpoints API lists them.
    checkpoints = service.sdk.fine_tuning.jobs.checkpoints.list(finished_job, limit=10).data
    assert len(checkpoints) == 2  # validation at steps 2 and 4 (step 0 makes none)
    rows = page.locator("#checkpoints-table tbody tr")
    assert [rows.nth(i).get_attribute("data-checkpoint") for i in range(rows.count())] == [c.id for c in checkpoints]
    for c in checkpoints:
        sel = f'#checkpoints-table tr[data-checkpoint="{c.id}"]'
        expect(page.locator(f"{sel} td").nth(2)).to_have_text(c.fine_tuned_model_checkpoint)
        assert value(page, f"{sel} .valid") == c.metrics.valid_reward_mean  # type: ignore[attr-defined]

    # The event log: every event, newest first.
    events = service.sdk.fine_tuning.jobs.list_events(finished_job, limit=1000).data
    assert page.locator("#events .message").all_inner_texts() == [e.message for e in events]


def test_the_list_follows_a_running_job_and_its_page_pauses_resumes_and_cancels_it(
    page: Page, service: Service, finished_job: str
) -> None:
    log_in(page, service.url)
    expect(page.locator(f'tr[data-job="{finished_job}"]')).to_be_visible()
    # Created after the page opened: the list shows it and follows its progress without a reload.
    # Long enough (512 steps) to still run when the page pauses it on a fast machine; the test cancels it.
    job_id = create_job(service.sdk, service.train_id, service.valid_id, n_epochs=64, batch_size=1, eval_interval=8)
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row.locator(".status")).to_have_text("running", timeout=90_000)
    expect(row.locator(".step")).to_have_text(re.compile(r"^\d+ / 512$"), timeout=60_000)
    assert page.locator("#jobs-table tbody tr").first.get_attribute("data-job") == job_id  # newest first

    # Its eval runs: a validation step that runs while the page is open shows up by itself.
    page.evaluate(f"location.hash = '#/jobs/{job_id}/evals'")
    runs = page.locator("#eval-runs-table tbody tr")
    expect(runs.first).to_be_visible()
    opened = runs.count()
    # One new step or several, as fast as the machine trains: the table grows without a reload.
    wait_until(lambda: runs.count() > opened, timeout=60)
    shown = [int(s) for s in runs.evaluate_all("rows => rows.map(r => r.dataset.step)")]
    assert shown == list(range(0, 8 * len(shown), 8))  # step 0, then every eval_interval steps
    api_steps = [r["step"] for r in get(service.url, f"/v1/gradekit/fine_tuning/jobs/{job_id}/eval_runs")["data"]]
    assert api_steps[: len(shown)] == shown
    page.click(f'h1 a[href="#/jobs/{job_id}"]')
    status = page.locator('dd[data-field="status"]')
    expect(status).to_have_text("running", timeout=90_000)
    expect(page.locator("#resume")).to_be_disabled()
    page.click("#pause")
    expect(status).to_have_text("paused", timeout=60_000)
    assert service.sdk.fine_tuning.jobs.retrieve(job_id).status == "paused"
    paused = [e.message for e in service.sdk.fine_tuning.jobs.list_events(job_id, limit=1000).data]
    assert paused[0].startswith("Fine-tuning job paused at step ")
    expect(page.locator("#events .message").first).to_have_text(paused[0])
    expect(page.locator("#pause")).to_be_disabled()

    page.click("#resume")
    expect(status).not_to_have_text("paused")
    wait_until(lambda: service.sdk.fine_tuning.jobs.retrieve(job_id).status == "running", timeout=60)
    expect(status).to_have_text("running")
    page.click("#cancel")
    expect(status).to_have_text("cancelled", timeout=60_000)
    assert wait_for(service.sdk, job_id, timeout=60).status == "cancelled"
    expect(page.locator("#cancel")).to_be_disabled()
