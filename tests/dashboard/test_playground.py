"""The grader playground in Chromium: it grades with the server's /graders/run, shows what the API answers,
puts validation errors next to their field, shows a `<script>` sample as text, and saves a test-case file that
gradekit's pytest plugin runs green."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Page, expect

from gradekit.runtime.server import RENDER_PATH, RUN_PATH, VALIDATE_PATH, create_app, running

from ..http import post as http_post
from .helpers import API_KEY, XSS, log_in

GRADER: dict[str, Any] = {
    "type": "multi",
    "name": "echo",
    "graders": {
        "same": {
            "type": "string_check",
            "name": "same",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
        "boom": {
            "type": "python",
            "name": "boom",
            "source": (
                "def grade(sample, item):\n"
                "    if '<script>' in sample['output_text']:\n"
                "        raise ValueError('no scripts')\n"
                "    return 1.0\n"
            ),
        },
    },
    "calculate_output": "same",
}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The gradekit app (no fine-tuning service) with an API key, on 127.0.0.1."""
    with running(create_app(api_key=API_KEY)) as base:
        yield base


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    """The API's JSON answer to `body`."""
    return http_post(f"{url}{path}", body, {"Authorization": f"Bearer {API_KEY}"})[1]


def fill(page: Page, grader: Any, sample: str, item: Any) -> None:
    page.fill("#pg-grader", grader if isinstance(grader, str) else json.dumps(grader))
    page.fill("#pg-sample", sample)
    page.fill("#pg-item", item if isinstance(item, str) else json.dumps(item))
    page.click("#pg-run")


def test_the_playground_shows_the_api_result_as_text_and_saves_a_test_case(
    page: Page, url: str, tmp_path: Path
) -> None:
    log_in(page, url, "/playground")
    item = {"answer": XSS}
    fill(page, GRADER, XSS, item)
    expect(page.locator("#pg-reward [data-value]")).to_be_visible()
    body = {"grader": GRADER, "model_sample": XSS, "item": item}
    api = post(url, RUN_PATH, body)
    assert float(page.locator("#pg-reward [data-value]").get_attribute("data-value") or "nan") == api["reward"]
    for name, value in api["sub_rewards"].items():
        shown = page.locator(f'#pg-sub-rewards tr[data-grader="{name}"] [data-value]').get_attribute("data-value")
        assert float(shown or "nan") == value
    flags = [k for k, v in api["metadata"]["errors"].items() if v is True]
    assert flags == ["python_grader_runtime_error"]
    assert page.locator("#pg-errors .flag").all_inner_texts() == flags
    message = api["metadata"]["scores"]["error_details"]["boom"]["message"]
    expect(page.locator('#pg-errors .failure[data-grader="boom"] .text')).to_have_text(message)
    # What each template rendered to, as the render endpoint says; the sample's markup is shown as text.
    templates = post(url, RENDER_PATH, body)["templates"]
    assert [(t["grader"], t["field"]) for t in templates] == [("same", "input"), ("same", "reference")]
    for t in templates:
        cell = page.locator(f'#pg-templates tr[data-grader="{t["grader"]}"][data-field="{t["field"]}"] .value')
        expect(cell).to_have_text(t["value"])
    assert templates[0]["value"] == XSS
    assert page.evaluate("window.__xss") is None
    assert page.locator("#pg-result script, #pg-result img").count() == 0

    # Save as a test case: the file is what gradekit's pytest plugin reads, and the case passes.
    page.fill("#pg-case-name", "script sample")
    with page.expect_download() as info:
        page.click("#pg-save")
    download = info.value
    assert download.suggested_filename == "echo.grader-tests.yaml"
    case_file = tmp_path / download.suggested_filename
    download.save_as(case_file)
    doc = yaml.safe_load(case_file.read_text())
    assert doc == {
        "grader": GRADER,
        "cases": [
            {
                "name": "script sample",
                "sample": XSS,
                "item": item,
                "reward": api["reward"],
                "errors": flags,
                "sub_rewards": api["sub_rewards"],
            }
        ],
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", case_file.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr


def test_the_page_is_public_and_the_api_behind_it_is_not(url: str) -> None:
    for path in ("/", "/dashboard/js/app.js", "/dashboard/vendor/uplot/LICENSE"):
        with urllib.request.urlopen(f"{url}{path}", timeout=30) as r:
            assert r.status == 200
    assert http_post(f"{url}{RENDER_PATH}", {"grader": GRADER, "model_sample": "x"})[0] == 401
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}/dashboard/../v1/models", timeout=30)
    caught.value.close()
    assert caught.value.code in (401, 404)  # never the API answered through the public prefix


def test_validation_errors_appear_next_to_their_field(page: Page, url: str, tmp_path: Path) -> None:
    log_in(page, url, "/playground")
    page.click("#pg-run")  # the example grader: a result, which a failing run afterwards must not leave on show
    expect(page.locator("#pg-reward [data-value]")).to_be_visible()
    # A grader loaded from a file fills the grader field.
    loaded = tmp_path / "echo.json"
    loaded.write_text(json.dumps(GRADER, indent=2))
    page.set_input_files("#pg-grader-file", str(loaded))
    expect(page.locator("#pg-grader")).to_have_value(loaded.read_text())
    bad = json.loads(json.dumps(GRADER))
    bad["graders"]["same"]["operation"] = "equals"
    fill(page, bad, "yes", {"answer": "yes"})
    api = post(url, VALIDATE_PATH, {"grader": bad})["error"]
    assert api["param"].startswith("grader.graders.same")
    expect(page.locator("#pg-grader-error")).to_have_text(api["message"])
    expect(page.locator("#pg-item-error")).to_have_text("")
    assert page.locator("#pg-save").is_disabled()
    expect(page.locator("#pg-reward")).to_have_count(0)

    fill(page, GRADER, "yes", '{"answer": ')
    expect(page.locator("#pg-item-error")).to_contain_text("Not JSON")
    expect(page.locator("#pg-grader-error")).to_have_text("")
    fill(page, "{not json", "yes", "")
    expect(page.locator("#pg-grader-error")).to_contain_text("Not JSON")
