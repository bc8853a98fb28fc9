"""Schemathesis against the app's OpenAPI schema: generated requests (valid and invalid) to every fine-tuning,
file, model and inference route never get a 5xx, and every error is an OpenAI `{"error": {...}}` body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from gradekit.runtime.server import create_app

from .helpers import make_config, serving

schemathesis = pytest.importorskip("schemathesis")  # in the dev extra

OURS = r"^/v1/(files|fine_tuning/jobs|models|chat/completions|completions|responses)"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(make_config(tmp_path_factory.mktemp("schema-service"), start_worker=False)) as (url, _):
        yield url


# The schema the app serves at /openapi.json (schemathesis' lazy `from_fixture` does not run on pytest 9).
schema = schemathesis.openapi.from_dict(create_app().openapi()).include(path_regex=OURS)


def openai_error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx answer is `{"error": {"message", "type", "param", "code"}}` with a message."""
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return None


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_openai_error_bodies(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=[schemathesis.checks.not_a_server_error, openai_error_body])
