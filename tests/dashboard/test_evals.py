"""A job's eval runs in Chromium: each validation step's samples and grader verdicts as the eval-run endpoints
answer them, filters, two steps side by side, a re-grade showing the error details, and dataset markup as text."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from gradekit.runtime.server import RUN_PATH
from gradekit.trainer_bridge.loop.evals import eval_run_path, read_eval_run

from ..http import post
from .conftest import Service
from .helpers import API_KEY, GRADER, XSS, log_in
from .helpers import get as get_json

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def get(service: Service, path: str) -> Any:
    """The API's JSON answer to GET `path`."""
    return get_json(service.url, path)


def shown_float(page: Page, selector: str) -> float:
    return float(page.locator(f"{selector} [data-value]").get_attribute("data-value") or "nan")


def test_eval_runs_show_each_steps_samples_and_grader_errors(page: Page, service: Service, finished_job: str) -> None:
    base = f"/v1/gradekit/fine_tuning/jobs/{finished_job}/eval_runs"
    runs = get(service, base)["data"]
    evals = service.data_dir / "jobs" / finished_job / "evals"
    # The endpoint answers the run folder's eval files.
    assert [r["step"] for r in runs] == [0, 2, 4]
    events = service.sdk.fine_tuning.jobs.list_events(finished_job, limit=1000).data
    data = [e.data for e in events if e.type == "metrics"]
    valid_means = {d["step"]: d["valid_reward_mean"] for d in data if "valid_reward_mean" in d}  # type: ignore[index,operator]
    for r in runs:
        lines = read_eval_run(eval_run_path(evals, r["step"]))
        assert r["samples"] == len(lines) == 4
        assert [line["no_reward"] for line in lines] == [None, None, "not_applicable", None]  # row 2 is skipped
        rewarded = [line["reward"] for line in lines if line["no_reward"] is None]
        assert r["reward_mean"] == sum(rewarded) / 3
        assert r["reward_mean"] == pytest.approx(valid_means[r["step"]], abs=1e-12)  # the step's valid_reward_mean
        assert r["samples_with_errors"] == 2 and r["errors"] == {"hinted": {"invalid_variable_error": 2}}
        assert r["samples_without_reward"] == 1
    rows = get(service, f"{base}/4")["data"]
    assert [(r["index"], r["sample"]) for r in rows] == [
        (line["index"], line["sample"]) for line in read_eval_run(eval_run_path(evals, 4))
    ]

    # From the job page: the error row of step 2 links to that step's samples with errors.
    log_in(page, service.url, f"/jobs/{finished_job}")
    page.click('#errors-table tr[data-step="2"][data-split="valid"][data-grader="hinted"] a')
    expect(page.locator("#eval-step")).to_have_value("2")
    expect(page.locator("#eval-filter")).to_have_value("errors")
    step2 = get(service, f"{base}/2")["data"]
    flagged = [r for r in step2 if any(r["errors"].values()) or r["no_reward"]]
    assert [r["index"] for r in flagged] == [1, 2, 3]  # odd rows have no hint, row 2 got no reward
    expect(page.locator("#eval-count")).to_have_text(f"{len(flagged)} of 4 samples")
    for r in flagged:
        sel = f'#eval-samples tr[data-index="{r["index"]}"]'
        expect(page.locator(f"{sel} .sample")).to_have_text(r["sample"])
        expected = "no reward: not_applicable" if r["index"] == 2 else "hinted: invalid_variable_error"
        expect(page.locator(f"{sel} .flags .flag")).to_have_text(expected)
    # The summary table shows the endpoint's numbers.
    for r in runs:
        sel = f'#eval-runs-table tr[data-step="{r["step"]}"]'
        expect(page.locator(f"{sel} .with-errors")).to_have_text(str(r["samples_with_errors"]))
        expect(page.locator(f"{sel} .without-reward")).to_have_text(str(r["samples_without_reward"]))
        assert shown_float(page, f"{sel} td:nth-child(3)") == r["reward_mean"]

    # Every sample of step 4, with its reward, sub-rewards and flags as the API answers them.
    page.select_option("#eval-step", "4")
    page.select_option("#eval-filter", "all")
    expect(page.locator("#eval-count")).to_have_text("4 of 4 samples")
    for r in rows:
        sel = f'#eval-samples tr[data-index="{r["index"]}"]'
        expect(page.locator(f"{sel} .sample")).to_have_text(r["sample"])
        assert shown_float(page, f"{sel} .reward") == r["reward"]
        for name, sub in r["sub_rewards"].items():
            assert shown_float(page, f'{sel} div[data-grader="{name}"]') == sub
        flags = [f"{g}: {f}" for g, f in r["errors"].items() if f]
        flags += [f"no reward: {r['no_reward']}"] if r["no_reward"] else []
        if flags:
            assert page.locator(f"{sel} .flags .flag").all_inner_texts() == flags
        else:
            expect(page.locator(f"{sel} .flags")).to_have_text("none")
    # Dataset text holding markup is shown as text and never runs.
    expect(page.locator('#eval-samples tr[data-index="0"] .prompt')).to_have_text(f"My order {XSS} never arrived.")
    expect(page.locator('#eval-samples tr[data-index="0"] .item')).to_contain_text('"note": "<script>window.__xss')
    assert page.locator("#eval-samples script, #eval-samples img").count() == 0
    assert page.evaluate("window.__xss") is None

    # Low reward: a reward below the threshold (0.5 unless changed).
    page.select_option("#eval-filter", "low")
    low = sum(1 for r in rows if r["reward"] < 0.5 and not r["no_reward"])  # a missing reward is not a low one
    expect(page.locator("#eval-count")).to_have_text(f"{low} of 4 samples")
    page.fill("#eval-threshold", "-1")
    page.press("#eval-threshold", "Tab")  # a change event
    expect(page.locator("#eval-count")).to_have_text("0 of 4 samples")
    page.select_option("#eval-filter", "all")
    expect(page.locator("#eval-count")).to_have_text("4 of 4 samples")

    # Compare with step 0: the same prompts side by side.
    page.select_option("#eval-compare", "0")
    step0 = {r["index"]: r for r in get(service, f"{base}/0")["data"]}
    for r in rows:
        sel = f'#eval-samples tr[data-index="{r["index"]}"]'
        expect(page.locator(f"{sel} .other-sample")).to_have_text(step0[r["index"]]["sample"])
        assert shown_float(page, f"{sel} .other-reward") == step0[r["index"]]["reward"]

    # Details: the sample graded again by /graders/run with the job's grader shows the error's message.
    odd = rows[1]
    page.click(f'#eval-samples tr[data-index="{odd["index"]}"] .regrade-button')
    status, result = post(
        f"{service.url}{RUN_PATH}", {"grader": GRADER, "model_sample": odd["sample"], "item": odd["item"]}, AUTH
    )
    assert status == 200
    detail = result["metadata"]["scores"]["error_details"]["hinted"]
    assert detail["flag"] == "invalid_variable_error"
    sel = f'#eval-samples tr[data-index="{odd["index"]}"] .regrade'
    expect(page.locator(f'{sel} .failure[data-grader="hinted"] .text')).to_have_text(detail["message"])
    expect(page.locator(f'{sel} .template[data-grader="hinted"][data-field="reference"] .error')).to_contain_text(
        "invalid_variable_error"
    )
    expect(page.locator(f'{sel} .template[data-grader="team"][data-field="input"] .value')).to_have_text(odd["sample"])
