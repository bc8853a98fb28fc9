"""The HTTP API, driven by the real `openai` SDK against real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import openai
import pytest
from fastapi import FastAPI

from gradekit.graders import Env
from gradekit.runtime import server
from gradekit.runtime.model_client import OpenAIModelClient
from gradekit.runtime.server import APIError, create_app, running
from gradekit.testing import fake_llm

from ..http import post

PY_SOURCE = "def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['answer'] else 0.0\n"


def _check(name: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": name,
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "operation": "eq",
    }


def _similarity(metric: str) -> dict[str, Any]:
    return {
        "type": "text_similarity",
        "name": metric,
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "evaluation_metric": metric,
    }


GRADERS: dict[str, dict[str, Any]] = {
    "string_check": _check("exact"),
    "fuzzy_match": _similarity("fuzzy_match"),
    "bleu": _similarity("bleu"),
    "python": {"type": "python", "name": "py", "source": PY_SOURCE},
    "multi": {
        "type": "multi",
        "name": "combo",
        "graders": {"a": _check("a"), "b": {"type": "python", "name": "b", "source": PY_SOURCE}},
        "calculate_output": "0.25 * a + 0.75 * max(a, b)",
    },
}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running(create_app()) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.mark.parametrize("kind", list(GRADERS))
def test_run_every_local_grader_type(client: openai.OpenAI, kind: str) -> None:
    grader = GRADERS[kind]
    r = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="yes", item={"answer": "yes"})  # type: ignore[arg-type]
    assert r.reward == 1.0
    assert r.metadata.name == grader["name"] and r.metadata.type == grader["type"]
    assert not any(getattr(r.metadata.errors, f) for f in ("sample_parse_error", "invalid_variable_error"))
    if kind == "multi":
        assert r.sub_rewards == {"a": 1.0, "b": 1.0}
    miss = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="no", item={"answer": "yes"})  # type: ignore[arg-type]
    assert miss.reward < 1.0


def test_run_reports_failures_as_flags(client: openai.OpenAI) -> None:
    r = client.fine_tuning.alpha.graders.run(grader=GRADERS["string_check"], model_sample="yes")  # type: ignore[arg-type]
    assert r.reward == 0.0
    assert r.metadata.errors.invalid_variable_error is True
    assert r.metadata.scores["error_details"]["exact"]["flag"] == "invalid_variable_error"
    boom = {"type": "python", "name": "boom", "source": "def grade(sample, item):\n    raise ValueError('nope')\n"}
    r = client.fine_tuning.alpha.graders.run(grader=boom, model_sample="x")  # type: ignore[arg-type]
    assert r.reward == 0.0 and r.metadata.errors.python_grader_runtime_error is True
    assert "ValueError: nope" in (r.metadata.errors.python_grader_runtime_error_details or "")


def test_run_score_model_against_scripted_judge() -> None:
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": "judge-model",
        "range": [0, 1],
        "input": [{"role": "user", "content": "Is {{ sample.output_text }} the same as {{ item.answer }}?"}],
    }
    with fake_llm.FakeLLM(script=[fake_llm.Judge(1.0)], response_model="judge-model-2025") as llm:
        judge = OpenAIModelClient(base_url=llm.base_url, max_retries=0)
        try:
            with (
                running(create_app(env=Env(model=judge))) as url,
                openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as c,
            ):
                r = c.fine_tuning.alpha.graders.run(grader=grader, model_sample="yes", item={"answer": "yes"})  # type: ignore[arg-type]
        finally:
            judge.close()
    assert r.reward == 1.0
    assert r.metadata.sampled_model_name == "judge-model-2025"
    assert r.metadata.token_usage and r.metadata.token_usage > 0
    assert "judge-model-2025" in r.model_grader_token_usage_per_model
    assert llm.count == 1
    sent = json.dumps(llm.chat_requests[0].body)
    assert "Is yes the same as yes?" in sent


def test_validate_returns_the_normalised_grader(client: openai.OpenAI) -> None:
    r = client.fine_tuning.alpha.graders.validate(grader=GRADERS["string_check"])  # type: ignore[arg-type]
    assert r.grader is not None and r.grader.type == "string_check" and r.grader.name == "exact"
    # The SDK types `multi.graders` as one grader, so its parsed model is lossy: read the raw JSON.
    raw = client.fine_tuning.alpha.graders.with_raw_response.validate(grader=GRADERS["multi"])  # type: ignore[arg-type]
    assert raw.status_code == 200 and raw.http_response.json() == {"grader": GRADERS["multi"]}
    # The SDK's single-grader form of `multi.graders` comes back in the dict form.
    single = {**GRADERS["multi"], "graders": _check("a"), "calculate_output": "a"}
    raw = client.fine_tuning.alpha.graders.with_raw_response.validate(grader=single)  # type: ignore[arg-type]
    assert raw.http_response.json()["grader"]["graders"] == {"a": _check("a")}


def test_invalid_grader_is_400_naming_the_field_and_every_problem(client: openai.OpenAI) -> None:
    bad = {
        "type": "multi",
        "name": "m",
        "graders": {
            "a": {**_check("a"), "operation": "contains"},
            "b": {**_check("b"), "input": "{{ x }}"},
        },
        "calculate_output": "a + b",
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.run(grader=bad, model_sample="yes")  # type: ignore[arg-type]
    e = info.value
    assert e.status_code == 400
    assert isinstance(e.body, dict)
    assert e.body["type"] == "invalid_request_error"
    assert e.body["param"] == "grader.graders.a.operation"
    message = e.body["message"]
    assert "grader.graders.a.operation" in message
    assert "grader.graders.b.input: template '{{ x }}' uses x" in message
    assert message.startswith("Invalid grader (2 problem(s))")
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.validate(grader=bad)  # type: ignore[arg-type]
    assert info.value.body["param"] == "grader.graders.a.operation"  # type: ignore[index]


@pytest.mark.parametrize(
    ("grader", "param", "words"),
    [
        ({"type": "rubric", "name": "x"}, "grader.type", "unknown grader type 'rubric'"),
        ({**_check("a"), "operation": "eq", "extra": 1}, "grader.extra", "unknown field"),
        (
            {"type": "label_model", "name": "l", "model": "m", "input": [], "labels": ["a"], "passing_labels": ["a"]},
            "grader.type",
            "only allowed inside a multi grader",
        ),
        ({"type": "function", "name": "f", "function": "os:getcwd"}, "grader.type", "not accepted over HTTP"),
        (
            {"type": "multi", "name": "m", "graders": {"f": {"type": "function", "function": "os:getcwd"}}},
            "grader.graders.f.type",
            "`function` graders",
        ),
    ],
)
def test_grader_problems(client: openai.OpenAI, grader: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.validate(grader=grader)  # type: ignore[arg-type]
    assert info.value.body["param"] == param  # type: ignore[index]
    assert words in info.value.body["message"]  # type: ignore[index]


def test_bad_request_bodies_are_openai_400s(client: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.alpha.graders.run(grader=GRADERS["string_check"], model_sample=3)  # type: ignore[arg-type]
    assert info.value.status_code == 400
    assert info.value.body["param"] == "model_sample"  # type: ignore[index]
    assert "expected a string, but got an integer" in info.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/fine_tuning/alpha/graders/run", body={"grader": GRADERS["string_check"]}, cast_to=object)
    assert info.value.body["param"] == "model_sample"  # type: ignore[index]
    assert "Missing required parameter: 'model_sample'" in info.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        client.post(
            "/fine_tuning/alpha/graders/run", body={"grader": "grader.json", "model_sample": "x"}, cast_to=object
        )
    assert info.value.body["param"] == "grader"  # type: ignore[index]
    status, body = post(f"{base_url}/v1/fine_tuning/alpha/graders/run", b'{"grader": {"type": ')
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in body["error"]["message"]
    status, body = post(f"{base_url}/v1/fine_tuning/alpha/graders/run", [1, 2])
    assert status == 400 and "must be a JSON object" in body["error"]["message"]
    status, body = post(
        f"{base_url}/v1/fine_tuning/alpha/graders/run",
        {"grader": GRADERS["string_check"], "model_sample": "x", "reference_answer": "x"},
    )
    assert status == 400 and body["error"]["param"] == "reference_answer"
    assert "Unrecognized request argument" in body["error"]["message"]


def test_unknown_route_is_404(client: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.post("/fine_tuning/alpha/graders/nope", body={}, cast_to=object)
    assert info.value.status_code == 404
    assert info.value.body == {
        "message": "Invalid URL (POST /v1/fine_tuning/alpha/graders/nope)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with urllib.request.urlopen(f"{base_url}/health", timeout=30) as r:
        assert json.loads(r.read()) == {"status": "ok"}


def test_batch_endpoint(base_url: str) -> None:
    samples = ["yes", "no", {"output_text": "yes"}, 7]
    items = [{"answer": "yes"}] * 4
    status, body = post(
        f"{base_url}/v1/gradekit/graders/run_batch",
        {"grader": GRADERS["multi"], "model_samples": samples, "items": items},
    )
    assert status == 200
    assert [r["reward"] for r in body["results"]] == [1.0, 0.0, 1.0, 0.0]
    assert body["results"][3]["metadata"]["errors"]["sample_parse_error"] is True
    summary = body["summary"]
    assert summary["count"] == 4 and summary["reward_mean"] == 0.5
    assert summary["graders"]["a"]["reward_mean"] == 0.5
    assert summary["errors"]["combo"]["sample_parse_error"] == {"count": 1, "rate": 0.25}
    status, body = post(
        f"{base_url}/v1/gradekit/graders/run_batch",
        {"grader": GRADERS["string_check"], "model_samples": ["a", "b"], "items": [{}]},
    )
    assert status == 400 and body["error"]["param"] == "items"
    status, body = post(
        f"{base_url}/v1/gradekit/graders/run_batch", {"grader": GRADERS["string_check"], "model_samples": []}
    )
    assert status == 200 and body["results"] == [] and body["summary"]["count"] == 0


def test_batch_summary_counts_passes_at_the_graders_pass_threshold(base_url: str) -> None:
    grader = {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.9,
    }
    samples = ["the billing team", "billing", "the billing team", "nothing alike"]
    status, body = post(
        f"{base_url}/v1/gradekit/graders/run_batch",
        {"grader": grader, "model_samples": samples, "items": [{"answer": "the billing team"}] * 4},
    )
    assert status == 200
    rewards = [r["reward"] for r in body["results"]]
    assert rewards[0] == rewards[2] == 1.0 and rewards[1] < 0.9 and rewards[3] < 0.9
    assert body["summary"]["pass_threshold"] == 0.9
    assert body["summary"]["passed"] == {"count": 2, "rate": 0.5}


def test_api_key_and_body_limit() -> None:
    with running(create_app(api_key="s3cret", max_body_bytes=4096)) as url:
        with (
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0) as c,
            pytest.raises(openai.AuthenticationError) as info,
        ):
            c.fine_tuning.alpha.graders.validate(grader=GRADERS["string_check"])  # type: ignore[arg-type]
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key" and info.value.type == "invalid_request_error"
        assert info.value.body["message"] == "Incorrect API key provided."  # type: ignore[index]
        status, body = post(f"{url}/v1/fine_tuning/alpha/graders/validate", {"grader": GRADERS["string_check"]})
        assert status == 401 and "didn't provide an API key" in body["error"]["message"]
        assert body["error"]["code"] == "invalid_api_key"
        status, _ = post(f"{url}/v1/fine_tuning/alpha/graders/validate", {}, {"Authorization": "Basic s3cret"})
        assert status == 401
        with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
            assert r.status == 200
        with openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0) as c:
            r = c.fine_tuning.alpha.graders.run(
                grader=GRADERS["string_check"], model_sample="yes", item={"answer": "yes"}
            )  # type: ignore[arg-type]
            assert r.reward == 1.0
            with pytest.raises(openai.APIStatusError) as big:
                c.fine_tuning.alpha.graders.run(grader=GRADERS["string_check"], model_sample="x" * 5000)  # type: ignore[arg-type]
            assert big.value.status_code == 413
            assert big.value.body["code"] == "request_too_large"  # type: ignore[index]
            assert "4096" in big.value.body["message"]  # type: ignore[index]


def register_extra(app: FastAPI) -> None:
    """A route plugin (loaded through a faked `gradekit.routes` entry point)."""

    @app.get("/v1/extra/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.post("/v1/extra/teapot")
    async def teapot() -> None:
        raise APIError(418, "I'm a teapot", param="kettle", code="teapot")

    @app.post("/v1/extra/boom")
    async def boom() -> None:
        raise RuntimeError("internal secret /etc/passwd")


def test_route_plugins_broken_plugins_and_internal_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eps = [
        EntryPoint("broken", "tests.runtime.no_such_module:register", server.ROUTES_GROUP),
        EntryPoint("extra", f"{__name__}:register_extra", server.ROUTES_GROUP),
    ]
    monkeypatch.setattr(server, "entry_points", lambda group: eps if group == server.ROUTES_GROUP else [])
    with caplog.at_level(logging.WARNING, logger="gradekit.runtime.server"):
        app = create_app(api_key="k")
    assert any("'broken'" in r.getMessage() for r in caplog.records)
    with running(app) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as c:
        assert c.get("/extra/hello", cast_to=object) == {"hello": "world"}
        with pytest.raises(openai.APIStatusError) as info:
            c.post("/extra/teapot", cast_to=object)
        assert info.value.status_code == 418
        assert info.value.body == {
            "message": "I'm a teapot",
            "type": "invalid_request_error",
            "param": "kettle",
            "code": "teapot",
        }
        with (
            caplog.at_level(logging.ERROR, logger="gradekit.runtime.server"),
            pytest.raises(openai.InternalServerError) as info,
        ):
            c.post("/extra/boom", cast_to=object)
        assert info.value.status_code == 500
        assert info.value.body["type"] == "server_error"  # type: ignore[index]
        assert "secret" not in json.dumps(info.value.body) and "Traceback" not in json.dumps(info.value.body)
        assert any(r.exc_info and "internal secret" in str(r.exc_info[1]) for r in caplog.records)
        # Plugin routes sit behind the API key too.
        status, _ = post(f"{url}/v1/extra/teapot", {})
        assert status == 401
        r = c.fine_tuning.alpha.graders.run(grader=GRADERS["string_check"], model_sample="yes", item={"answer": "yes"})  # type: ignore[arg-type]
        assert r.reward == 1.0


def test_running_stops_the_server() -> None:
    with running(create_app()) as url, urllib.request.urlopen(f"{url}/health", timeout=30) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health", timeout=5)
