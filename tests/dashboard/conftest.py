"""Real Chromium (Debian's package, never a browser Playwright downloads) driving the dashboard.

Chromium missing is a failure, not a skip: `make test` installs it (as root) and these tests must run there.
Each test leaves a screenshot of its page in build/dashboard-screenshots/ (the test artefacts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI
from playwright.sync_api import Browser, Page, sync_playwright

from ..trainer_bridge.service.helpers import serving, wait_for
from .helpers import API_KEY, create_job, make_config, sdk_for, upload, write_data

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "dashboard-screenshots"


@dataclass(frozen=True)
class Service:
    """The running test server: its URL, an SDK client with the key, the uploaded files, its data folder."""

    url: str
    sdk: OpenAI
    train_id: str
    valid_id: str
    data_dir: Path


# Package scope, not session: Playwright's sync API keeps its asyncio loop running in this thread while it is
# open, and every later test calling asyncio.run() would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; make test does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (own session storage); after the test: a screenshot, and no script error may have happened."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    # A 4xx answer is logged by Chromium as "Failed to load resource": the pages show those themselves.
    tab.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    requested: list[str] = []
    tab.on("request", lambda r: requested.append(r.url))
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    context.close()
    assert not errors, errors
    # Offline: every script, style and API call went to the loopback server.
    outside = [u for u in requested if not u.startswith(("http://127.0.0.1:", "blob:", "data:"))]
    assert not outside, outside


@pytest.fixture(scope="package")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`gradekit serve`'s app with the fine-tuning service (and its worker) and an API key, on 127.0.0.1."""
    root = tmp_path_factory.mktemp("dashboard")
    train, valid = write_data(root / "task")
    config = make_config(root / "data", base_models={"tiny-local": "tiny-local"})
    with serving(config, api_key=API_KEY) as (url, _), sdk_for(url) as sdk:
        yield Service(url, sdk, upload(sdk, train), upload(sdk, valid), root / "data")


@pytest.fixture(scope="package")
def finished_job(service: Service) -> str:
    """A 4-step job (validation at steps 0, 2 and 4), run to the end; its id."""
    job_id = create_job(service.sdk, service.train_id, service.valid_id, n_epochs=1, batch_size=2, eval_interval=2)
    assert wait_for(service.sdk, job_id, timeout=120).status == "succeeded"
    return job_id
