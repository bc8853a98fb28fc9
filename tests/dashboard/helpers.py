"""The dashboard tests' server: the gradekit app with the fine-tuning service (tiny-local, a fast loop), a key."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from openai import OpenAI
from playwright.sync_api import Page

from gradekit.runtime.dashboard import CSP

from ..trainer_bridge.rft_task import write_task
from ..trainer_bridge.service.helpers import client, make_config, rft_method, upload

API_KEY = "dashboard-test-key"
#: Text the pages must show as text: run as markup, it would set window.__xss.
XSS = '<script>window.__xss = 1</script><img src="data:," onerror="window.__xss = 2">'
#: The routing grader plus a sub-grader reading `item.hint`, which only even rows have: odd rows get
#: `invalid_variable_error` from it (an error flag on known samples at every step); and a python sub-grader that
#: does not apply (returns None) to validation rows marked `skip` (row 2): those get no reward.
GRADER: dict[str, Any] = {
    "type": "multi",
    "name": "routing",
    "graders": {
        "team": {
            "type": "string_check",
            "name": "team",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.team }}",
            "operation": "eq",
        },
        "hinted": {
            "type": "string_check",
            "name": "hinted",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.hint }}",
            "operation": "ilike",
        },
        "applies": {
            "type": "python",
            "name": "applies",
            "source": "def grade(sample, item):\n    return None if item.get('skip') else 1.0\n",
        },
    },
    "calculate_output": "team",
}


def write_data(root: Path) -> tuple[Path, Path]:
    """8 training rows and 4 validation rows of the ticket-routing example; even rows get a `hint` and a `note`
    holding XSS, validation row 2 a `skip`, and the first validation prompt holds XSS too."""
    train, valid = write_task(root, n_train=8, n_valid=4)
    for path in (train, valid):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for i, row in enumerate(rows):
            if i % 2 == 0:
                row["hint"] = row["team"][:3]
                row["note"] = XSS
            if i % 4 == 2 and path == valid:  # (a training step whose samples all get none would pause the job)
                row["skip"] = True
        if path == valid:
            rows[0]["messages"][-1]["content"] = f"My order {XSS} never arrived."
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return train, valid


def get(url: str, path: str) -> Any:
    """The API's JSON answer to GET `path` (with the key): for gradekit's extensions, which the SDK lacks."""
    request = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def sdk_for(url: str) -> OpenAI:
    """The openai SDK on the test server, with its key."""
    return client(url, api_key=API_KEY)


def create_job(sdk: OpenAI, train_id: str, valid_id: str, **hyperparameters: Any) -> str:
    """A reinforcement job with `GRADER` on tiny-local; its id."""
    job = sdk.fine_tuning.jobs.create(
        model="tiny-local",
        training_file=train_id,
        validation_file=valid_id,
        seed=3,
        extra_body={"method": rft_method(GRADER, **hyperparameters)},
    )
    return job.id


def log_in(page: Page, url: str, hash_: str = "") -> None:
    """Open the dashboard, answer its API-key form."""
    response = page.goto(f"{url}/#{hash_}")
    assert response is not None and response.headers["content-security-policy"] == CSP
    page.fill("#api-key", API_KEY)
    page.click("#key-form button[type=submit]")


__all__ = [
    "API_KEY",
    "GRADER",
    "XSS",
    "create_job",
    "get",
    "log_in",
    "make_config",
    "sdk_for",
    "upload",
    "write_data",
]
