"""The `endpoint` grader, both ways: gradekit calling an endpoint, and `gradekit serve --grader G` being one.

The contract is Microsoft Foundry's, published in the "Endpoint Graders" section of
https://github.com/microsoft-foundry/fine-tuning/blob/main/Demos/Agentic_RFT_PrivatePreview/README.md:
the service POSTs `{"sample", "item", "trace_id"}` ("a UUID prefixed by trace_") to the grader's `url` with its
`headers`, reads `{"score": float}`, sends at most `rate_limit` requests per second and retries a failed call at
most 3 times. `ContractServer` below is our own server following it; its key header (`X-Functions-Key`) and its
path (`/api/grader`) are those of the demo's Azure Function (Demos/Agentic_RFT_PrivatePreview/RFT_EndpointGrader,
function_app.py and test.json in the same repository). Every server binds 127.0.0.1 and stops with its test;
time is a fake clock wherever it matters, never the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gradekit.graders import (
    Endpoint,
    Env,
    GraderValidationError,
    InProcessPythonExecutor,
    load_grader,
    run,
    run_batch,
    validate,
)
from gradekit.graders.export import ExportError, to_openai
from gradekit.graders.limits import MAX_JSON_DEPTH
from gradekit.runtime import cli
from gradekit.runtime.endpoint_client import DEFAULT_TIMEOUT, TIMEOUT_ENV, EndpointClient, RateLimiter
from gradekit.runtime.server import RUN_PATH, create_app, running

from ..http import gradekit_serve
from .asgi import post_json

CONTRACT = "https://github.com/microsoft-foundry/fine-tuning/blob/main/Demos/Agentic_RFT_PrivatePreview/README.md"
KEY = "functions-key-1"
TRACE_ID = re.compile(r"^trace_[0-9a-f]{32}$")


class FakeClock:
    """Time that moves only when a fake sleep asks it to."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class ContractServer:
    """A grader endpoint as the contract describes it, scripted by the sample's text.

    The reply to a sample whose `output_text` is a key of `replies` is that list's next entry, `(status, body,
    headers)` (the last one repeats); any other sample scores 5 when `output_json.result` equals `item.target`,
    else 0 (the demo's countdown scores, 0 to 5). Requests without the key are 401, as an Azure Function's.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self.clock = clock
        self.hang = threading.Event()  # set once a sample "hang" was left unanswered
        self.lock = threading.Lock()

    async def grade(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        with self.lock:
            self.requests.append(
                {"headers": dict(request.headers), "body": body, "at": self.clock() if self.clock else None}
            )
        if request.headers.get("x-functions-key") != KEY:
            return JSONResponse({"error": {"message": "unauthorized"}}, status_code=401)
        text = body["sample"].get("output_text")
        if text == "hang" and not self.hang.is_set():  # the first request only: the next attempt is answered
            self.hang.set()
            for _ in range(100):  # until the client gives up (its timeout is shorter), 5 s at most
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
        if text in self.replies:
            script = self.replies[text]
            status, reply, headers = script.pop(0) if len(script) > 1 else script[0]
            content = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            return Response(content, status_code=status, headers=headers, media_type="application/json")
        output = body["sample"].get("output_json") or {}
        return JSONResponse({"score": 5 if output.get("result") == body["item"].get("target") else 0})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/grader", self.grade, methods=["POST"])])

    def bodies(self, text: str | None = None) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if text is None or r["body"]["sample"].get("output_text") == text]


@pytest.fixture
def contract() -> Iterator[tuple[ContractServer, str]]:
    server = ContractServer()
    with running(server.app()) as url:
        yield server, f"{url}/api/grader"


@contextlib.contextmanager
def refused() -> Iterator[str]:
    """The URL of a port bound but not listening (held for the block): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def endpoint(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "endpoint", "name": "remote", "url": url, "headers": {"X-Functions-Key": KEY}, **extra}


def client_env(clock: FakeClock | None = None, **options: Any) -> Env:
    clock = clock or FakeClock()
    return Env(endpoint=EndpointClient(clock=clock, sleep=clock.sleep, **options))


def flags(result: Any, i: int = 0) -> list[str]:
    return result.error_flags(i)


def message(result: Any, i: int = 0) -> str:
    return next(iter(result[i].metadata.scores["error_details"].values()))["message"]


# --- the grader definition ----------------------------------------------------------------------------------


def test_published_definition_validates_and_round_trips() -> None:
    # The README's example definition (its "${KEY}" is a placeholder for the user's key, sent as written).
    published = {
        "type": "endpoint",
        "name": "some_name",
        "url": "https://example.com/grade",
        "headers": {"Authorization": "Bearer ${KEY}"},
        "rate_limit": 50,
        "pass_threshold": 8,
    }
    g = validate(published)
    assert isinstance(g, Endpoint)
    assert g.to_json() == {**published, "pass_threshold": 8.0}
    assert validate(g.to_json()) == g
    # name, headers, rate_limit and pass_threshold are optional; a nameless one is named by its type
    bare = validate({"type": "endpoint", "url": "http://127.0.0.1:9/score"})
    assert bare.to_json() == {"name": "endpoint", "type": "endpoint", "url": "http://127.0.0.1:9/score"}
    # inside a multi, as the demo notebook combines it with a python grader
    multi = validate({"type": "multi", "graders": {"endpoint": bare.to_json()}, "calculate_output": "endpoint"})
    assert multi.graders["endpoint"].name == "endpoint"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "endpoint.url: Field required"),
        ({"url": "ftp://example.com/x"}, "endpoint.url: must be an http:// or https:// URL with a host, got 'ftp"),
        ({"url": "https:///nohost"}, "endpoint.url: must be an http:// or https:// URL with a host"),
        ({"url": "http://h/a b"}, "endpoint.url: must be an http:// or https:// URL with a host"),
        ({"url": "http://h:70000/x"}, "endpoint.url: is not a URL (ValueError: Port out of range"),
        ({"url": "http://h/x", "rate_limit": 0}, "endpoint.rate_limit: Input should be greater than or equal to 1"),
        ({"url": "http://h/x", "rate_limit": 2.5}, "endpoint.rate_limit: Input should be a valid integer"),
        ({"url": "http://h/x", "rate_limit": "fast"}, "endpoint.rate_limit: Input should be a valid integer"),
        ({"url": "http://h/x", "headers": {"X-Key": 1}}, "endpoint.headers.X-Key: Input should be a valid string"),
        ({"url": "http://h/x", "headers": {"X Key": "v"}}, "endpoint.headers: 'X Key' is not an HTTP header name"),
        ({"url": "http://h/x", "headers": {"K": "a\r\nb"}}, "endpoint.headers: the value of header 'K' holds a"),
        ({"url": "http://h/x", "pass_threshold": "high"}, "endpoint.pass_threshold: Input should be a valid number"),
        ({"url": "http://h/x", "timeout": 5}, "endpoint.timeout: unknown field"),
    ],
)
def test_validation_errors_name_the_field(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(GraderValidationError) as e:
        validate({"type": "endpoint", **fields})
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith(problem)


def test_without_an_endpoint_client_every_sample_is_unresponsive() -> None:
    result = run_batch(endpoint("http://127.0.0.1:9/x"), ["a", "b"], env=Env())
    assert result.rewards == [0.0, 0.0]
    assert flags(result, 0) == flags(result, 1) == ["unresponsive_reward_error"]
    assert message(result).startswith("no endpoint client configured")


def test_openai_export_refuses_it() -> None:
    # OpenAI's API has no `endpoint` type; Foundry's takes `to_json()` as it is.
    with pytest.raises(ExportError, match="grader 'remote' of type 'endpoint' has no OpenAI form"):
        to_openai(endpoint("https://example.com/grade"))


def test_client_options_and_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert EndpointClient().timeout == DEFAULT_TIMEOUT == 600.0
    assert EndpointClient().max_retries == 3
    monkeypatch.setenv(TIMEOUT_ENV, "12.5")
    assert EndpointClient().timeout == 12.5
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    assert EndpointClient().timeout == DEFAULT_TIMEOUT  # a warning, not a broken environment for every grader
    with pytest.raises(ValueError, match="max_retries must be at least 0"):
        EndpointClient(max_retries=-1)


# --- gradekit calling an endpoint that follows the contract -------------------------------------------------


def test_requests_follow_the_contract(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    samples = ['{"expression": "(72 + 22) / (88 - 86)", "result": 47}', '{"result": 46}']
    items = [{"target": 47, "nums": [86, 22, 88, 72]}, {"target": 47, "nums": [1]}]
    result = run_batch(endpoint(url), samples, items, env=client_env())
    assert result.rewards == [5.0, 0.0]  # the score as sent: the contract sets no range
    assert [flags(result, i) for i in range(2)] == [[], []]
    assert len(server.requests) == 2
    by_text = {r["body"]["sample"]["output_text"]: r for r in server.requests}
    for sample, item in zip(samples, items, strict=True):
        request = by_text[sample]
        body = request["body"]
        assert set(body) == {"sample", "item", "trace_id"}
        # the sample is what a python grader gets: the output's text, its JSON, tool calls and choices
        assert body["sample"] == {
            "output_text": sample,
            "output_json": json.loads(sample),
            "output_tools": [],
            "choices": [],
        }
        assert body["item"] == item
        assert TRACE_ID.match(body["trace_id"])
        assert request["headers"]["x-functions-key"] == KEY
        assert request["headers"]["content-type"] == "application/json"
        assert request["headers"]["user-agent"].startswith("gradekit")
    assert len({r["body"]["trace_id"] for r in server.requests}) == 2


def test_an_endpoint_inside_a_multi(contract: tuple[ContractServer, str]) -> None:
    # As the demo notebook's RFT job: a python grader and the endpoint grader averaged by a multi.
    _, url = contract
    python = {"type": "python", "source": "def grade(sample, item):\n    return 1.0\n"}
    multi = {
        "type": "multi",
        "graders": {"python": python, "endpoint": endpoint(url)},
        "calculate_output": "(python + endpoint) / 2",
    }
    env = client_env()
    env.python = InProcessPythonExecutor()
    result = run_batch(multi, ['{"result": 47}', '{"result": 1}'], [{"target": 47}, {"target": 47}], env=env)
    assert result.rewards == [3.0, 0.5]
    assert result.sub_rewards == {"python": [1.0, 1.0], "endpoint": [5.0, 0.0]}


def test_retries_429_and_500_then_succeeds(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    server.replies["flaky"] = [
        (429, {"error": "slow down"}, {"Retry-After": "2"}),
        (500, {"error": "oops"}, {}),
        (200, {"score": 0.75}, {}),
    ]
    clock = FakeClock()
    result = run_batch(endpoint(url), ["flaky"], env=client_env(clock, rng=random.Random(7), base_delay=0.5))
    assert result.rewards == [0.75] and flags(result) == []
    assert len(server.bodies("flaky")) == 3
    # one trace_id for every attempt of one request
    assert len({b["trace_id"] for b in server.bodies("flaky")}) == 1
    # retry 0 waits Retry-After; retry 1 full jitter: uniform(0, 0.5 * 2**1)
    assert clock.sleeps == [2.0, random.Random(7).uniform(0.0, 1.0)]


def test_retry_after_is_capped_and_retry_after_ms_read(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    server.replies["late"] = [
        (503, {}, {"Retry-After": "3600"}),
        (429, {}, {"retry-after-ms": "250"}),
        (200, {"score": 1}, {}),
    ]
    clock = FakeClock()
    result = run_batch(endpoint(url), ["late"], env=client_env(clock, max_delay=30.0))
    assert result.rewards == [1.0]
    assert clock.sleeps == [30.0, 0.25]


def test_exhausted_retries_are_unresponsive_and_the_batch_goes_on(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    server.replies["down"] = [(503, {"error": "maintenance"}, {})]
    result = run_batch(endpoint(url), ["down", '{"result": 3}'], [{}, {"target": 3}], env=client_env())
    assert result.rewards == [0.0, 5.0]
    assert flags(result, 0) == ["unresponsive_reward_error"] and flags(result, 1) == []
    assert len(server.bodies("down")) == 4  # the first try and the contract's "at most 3" retries
    text = message(result)
    assert f"endpoint {url} failed after 4 attempt(s): HTTP 503" in text
    assert re.search(r"\(trace_id trace_[0-9a-f]{32}\)$", text)
    assert result[0].rewarded is False  # unresponsive is the grading's fault: no reward, not a 0


def test_a_timeout_is_retried(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    server.replies["hang"] = [(200, {"score": 0.5}, {})]
    result = run_batch(endpoint(url), ["hang"], env=client_env(timeout=0.3))
    assert result.rewards == [0.5] and flags(result) == []
    assert len(server.bodies("hang")) == 2


def test_an_unreachable_endpoint_is_unresponsive() -> None:
    clock = FakeClock()
    with refused() as url:
        result = run_batch(endpoint(f"{url}/api/grader"), ["x"], env=client_env(clock))
    assert flags(result) == ["unresponsive_reward_error"]
    assert "failed after 4 attempt(s): connection error" in message(result)
    assert len(clock.sleeps) == 3


def test_other_4xx_are_not_retried(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    grader = {**endpoint(url), "headers": {"X-Functions-Key": "wrong"}}
    clock = FakeClock()
    result = run_batch(grader, ["x"], env=client_env(clock))
    assert flags(result) == ["unresponsive_reward_error"]
    assert f"endpoint {url} answered HTTP 401 (not retried)" in message(result)
    assert len(server.requests) == 1 and clock.sleeps == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"score": "0.9"}, "endpoint's score is str '0.9', not a finite number"),
        ({"score": True}, "endpoint's score is bool True, not a finite number"),
        ({"score": None}, "endpoint's score is NoneType None, not a finite number"),
        ({"score": [1]}, "endpoint's score is list [1], not a finite number"),
        (b'{"score": NaN}', "endpoint's score is float nan, not a finite number"),
        (b'{"score": 1e999}', "endpoint's score is float inf, not a finite number"),
        ({"reward": 1.0}, """endpoint replied {'reward': 1.0}, not {"score": number}"""),
        ([0.5], """endpoint replied [0.5], not {"score": number}"""),
        (0.5, """endpoint replied 0.5, not {"score": number}"""),
        (b"great answer", "replied with something that is not JSON: 'great answer'"),
        (b"\xff\xfe", "replied with something that is not JSON"),
        (b'{"score": ' + b"[" * 5000 + b"]" * 5000 + b"}", "replied with something that is not JSON"),
        (b'{"score": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}', "replied with over 1048576 bytes"),
    ],
)
def test_a_bad_score_is_a_parse_error(contract: tuple[ContractServer, str], reply: Any, expected: str) -> None:
    server, url = contract
    server.replies["bad"] = [(200, reply, {})]
    result = run_batch(endpoint(url), ["bad", '{"result": 2}'], [{}, {"target": 2}], env=client_env())
    assert result.rewards == [0.0, 5.0]
    assert flags(result, 0) == ["model_grader_parse_error"] and flags(result, 1) == []
    assert expected in message(result)
    assert len(server.bodies("bad")) == 1  # the same request would get the same reply: not retried


def test_what_cannot_be_sent_is_failed_without_a_request(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH + 5):
        deep = [deep]
    result = run_batch(endpoint(url), ['{"result": 1}'] * 2, [{"deep": deep}, {"target": 1}], env=client_env())
    assert result.rewards == [0.0, 5.0]
    assert flags(result, 0) == ["invalid_variable_error"] and "the item nests deeper than" in message(result)
    assert [b["item"] for b in server.bodies()] == [{"target": 1}]


# --- the rate limit -------------------------------------------------------------------------------------------


def _max_per_window(times: list[float]) -> int:
    """The most requests in any one-second window (t - 1, t]."""
    return max(sum(1 for u in times if t - 1.0 < u <= t) for t in times)


def test_rate_limiter_books_slots_a_second_apart() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, clock)
    assert [limiter.reserve() for _ in range(10)] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0]
    clock.now = 10.5  # idle: the next three go at once
    assert [limiter.reserve() for _ in range(4)] == [10.5, 10.5, 10.5, 11.5]


def test_rate_limiter_is_shared_by_threads() -> None:
    clock = FakeClock()
    limiter = RateLimiter(50, clock)
    slots: list[float] = []
    lock = threading.Lock()

    def book() -> None:
        mine = [limiter.reserve() for _ in range(25)]
        with lock:
            slots.extend(mine)

    threads = [threading.Thread(target=book) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(slots) == [float(s) for s in range(4) for _ in range(50)]


def test_rate_limit_is_honoured_end_to_end() -> None:
    clock = FakeClock()
    server = ContractServer(clock)
    with running(server.app()) as url:
        env = client_env(clock, concurrency=1)
        grader = endpoint(f"{url}/api/grader", rate_limit=3)
        result = run_batch(grader, ['{"result": 1}'] * 10, [{"target": 1}] * 10, env=env)
    assert result.rewards == [5.0] * 10
    times = [r["at"] for r in server.requests]
    assert times == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0]
    assert _max_per_window(times) == 3


def test_graders_naming_one_url_share_its_limit_at_the_lower_rate() -> None:
    clock = FakeClock()
    server = ContractServer(clock)
    with running(server.app()) as url:
        a = endpoint(f"{url}/api/grader", name="a", rate_limit=4)
        b = endpoint(f"{url}/api/grader", name="b", rate_limit=2)
        multi = {"type": "multi", "graders": {"a": a, "b": b}, "calculate_output": "a + b"}
        result = run_batch(multi, ['{"result": 1}'] * 3, [{"target": 1}] * 3, env=client_env(clock, concurrency=1))
    assert result.rewards == [10.0] * 3
    times = sorted(r["at"] for r in server.requests)
    assert len(times) == 6 and _max_per_window(times) == 2


# --- gradekit serve --grader G as the endpoint ------------------------------------------------------------

G = {
    "type": "multi",
    "name": "g",
    "graders": {
        "exact": {
            "type": "string_check",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
        "close": {
            "type": "text_similarity",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * exact + 0.5 * close",
}
SAMPLES = ["Paris", "paris", "Lyon", "The capital is Paris", '{"city": "Paris"}']
ITEMS = [{"answer": "Paris"}] * 4 + [{"answer": '{"city":"Paris"}'}]


#: The app `gradekit serve --grader` builds for G, called in process (the hostile-body test sends hundreds).
SCORE_APP = create_app(grader=validate({**G, "graders": {"exact": G["graders"]["exact"]}, "calculate_output": "exact"}))


def test_gradekit_serve_is_an_endpoint_for_gradekit() -> None:
    expected = run_batch(G, SAMPLES, ITEMS).rewards
    assert len(set(expected)) == len(expected)  # distinct rewards: a mix-up would show
    with running(create_app(grader=validate(G))) as url:
        remote = endpoint(f"{url}/score")
        assert run_batch(remote, SAMPLES, ITEMS, env=client_env()).rewards == expected
        # inside a multi on the calling side, beside a local grader
        local = G["graders"]["exact"]
        multi = {"type": "multi", "graders": {"remote": remote, "local": local}, "calculate_output": "remote + local"}
        both = run_batch(multi, SAMPLES, ITEMS, env=client_env())
        exact = run_batch(local, SAMPLES, ITEMS).rewards
        assert both.rewards == [r + e for r, e in zip(expected, exact, strict=True)]


def test_the_gradekit_serve_command_is_an_endpoint(tmp_path: Path) -> None:
    grader_file = tmp_path / "g.json"
    grader_file.write_text(json.dumps(G))
    # in tmp_path: serve keeps the fine-tuning service's data in ./gradekit-data
    with gradekit_serve(["--grader", str(grader_file)], log=tmp_path / "serve.log", cwd=tmp_path) as (url, _):
        remote = endpoint(f"{url}/score")
        assert run_batch(remote, SAMPLES, ITEMS, env=client_env()).rewards == run_batch(G, SAMPLES, ITEMS).rewards


def test_gradekit_serve_behind_an_api_key() -> None:
    with running(create_app(grader=validate(G), api_key="sk-test")) as url:
        keyed = {"type": "endpoint", "url": f"{url}/score", "headers": {"Authorization": "Bearer sk-test"}}
        assert run(keyed, "Paris", {"answer": "Paris"}, env=client_env()).reward == 1.0
        unkeyed = run_batch(
            {"type": "endpoint", "url": f"{url}/score"}, ["Paris"], [{"answer": "Paris"}], env=client_env()
        )
        assert flags(unkeyed) == ["unresponsive_reward_error"] and "HTTP 401 (not retried)" in message(unkeyed)


def test_the_score_route_reads_what_the_contract_sends() -> None:
    grader = validate(
        {
            "type": "string_check",
            "input": "{{ sample.output_json.result }}",
            "reference": "{{ item.target }}",
            "operation": "eq",
        }
    )
    with running(create_app(grader=grader)) as url:
        # the demo's test.json (a sample with only output_json, no trace_id) and a sample as the service captures
        # it (test-bad.json: choices, output_text, output_json null, output_tools, output_reasoning_summary)
        demo = {
            "sample": {"output_json": {"expression": "(72 + 22) / (88 - 86)", "result": 47}},
            "item": {"target": 47},
        }
        r = httpx.post(f"{url}/score", json=demo)
        assert (r.status_code, r.json()) == (200, {"score": 1.0})
        captured = {
            "sample": {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "", "tool_calls": []},
                        "finish_reason": "stop",
                    }
                ],
                "output_text": "",
                "output_json": None,
                "output_tools": [],
                "output_reasoning_summary": None,
            },
            "item": {"messages": [{"role": "user", "content": "target: 28"}], "target": 28},
            "trace_id": "trace_1a2b3c",
        }
        r = httpx.post(f"{url}/score", json=captured)
        assert (r.status_code, r.json()) == (200, {"score": 0.0})  # the sample's fault: 0, as OpenAI's graders


@pytest.mark.parametrize(
    ("body", "param", "text"),
    [
        ({"item": {}}, "sample", "Missing required parameter: 'sample'."),
        ({"sample": "Paris"}, "sample", "Invalid type for 'sample': expected an object, but got a string instead."),
        ({"sample": {"output_text": "x"}, "item": [1]}, "item", "Invalid type for 'item': expected an object"),
        ({"sample": {"output_text": "x"}, "trace_id": 7}, "trace_id", "Invalid type for 'trace_id': expected a string"),
        (
            {"sample": {"text": "x"}},
            "sample",
            "Invalid 'sample': sample object has neither `output_text` nor `choices`",
        ),
        ({"sample": {"output_text": 3}}, "sample", "Invalid 'sample': sample field `output_text` is not a string."),
        ([1], None, "The request body must be a JSON object."),
    ],
)
def test_the_score_route_refuses_bad_bodies(body: Any, param: str | None, text: str) -> None:
    with running(create_app(grader=validate(G))) as url:
        r = httpx.post(f"{url}/score", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and error["message"].startswith(text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
SAMPLE_KEYS = st.sampled_from(["output_text", "output_json", "choices", "role", "content", "output_tools"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"sample": st.dictionaries(SAMPLE_KEYS, JSON, max_size=4)},
            optional={"item": JSON, "trace_id": JSON, "extra": JSON},
        ),
    )
)
def test_no_body_makes_the_score_route_fail(body: Any) -> None:
    # Whatever arrives, the answer is a score or a 4xx naming the problem: never a 500.
    status, answer = post_json(SCORE_APP, "/score", body)
    if status == 200:
        assert set(answer) == {"score"} and answer["score"] in (0.0, 1.0)
    else:
        assert status == 400 and answer["error"]["message"], answer


def test_the_score_route_without_a_grader() -> None:
    with running(create_app()) as url:
        r = httpx.post(f"{url}/score", json={"sample": {"output_text": "x"}, "item": {}, "trace_id": "trace_0"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "grader_not_configured"


def test_a_grading_failure_is_a_503_so_the_caller_gets_no_reward() -> None:
    # G itself calls an endpoint that is down: G's grading failed, not the sample. The route answers 503, and
    # an endpoint grader calling the route retries (4 attempts), then gives no reward.
    with refused() as dead:
        down = {"type": "endpoint", "name": "down", "url": f"{dead}/x"}
        server_env = client_env(max_retries=0)
        with running(create_app(grader=validate(down), env=server_env)) as url:
            r = httpx.post(f"{url}/score", json={"sample": {"output_text": "x"}, "item": {}, "trace_id": "trace_1"})
            assert r.status_code == 503
            why = "down: unresponsive_reward_error: endpoint"
            assert r.json()["error"]["message"].startswith(f"The sample could not be graded (retry later): {why}")
            assert f"{dead}/x failed after 1 attempt(s): connection error" in r.json()["error"]["message"]
            clock = FakeClock()
            result = run_batch(endpoint(f"{url}/score"), ["x"], env=client_env(clock))
    assert flags(result) == ["unresponsive_reward_error"]
    assert "failed after 4 attempt(s): HTTP 503" in message(result)
    assert len(clock.sleeps) == 3 and result[0].rewarded is False


def test_a_grader_that_does_not_apply_is_a_422_and_no_reward() -> None:
    # A python grader returning None does not apply to the sample: there is no score to answer.
    source = "def grade(sample, item):\n    return None if item.get('skip') else 0.25\n"
    grader = validate({"type": "python", "name": "maybe", "source": source})
    with running(create_app(grader=grader, env=Env(python=InProcessPythonExecutor()))) as url:
        r = httpx.post(f"{url}/score", json={"sample": {"output_text": "x"}, "item": {"skip": True}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_applicable"
        assert "Grader 'maybe' does not apply to this sample" in r.json()["error"]["message"]
        result = run_batch(endpoint(f"{url}/score"), ["x", "y"], [{"skip": True}, {}], env=client_env())
    assert result.rewards == [0.0, 0.25] and result[0].rewarded is False and result[1].rewarded is True
    assert "answered HTTP 422 (not retried)" in message(result)


# --- everywhere a grader runs: the HTTP run API, the CLI, a Lambda handler -------------------------------------


def test_the_run_api_grades_an_endpoint_grader(contract: tuple[ContractServer, str]) -> None:
    server, url = contract
    with running(create_app(env=client_env())) as api:
        body = {"grader": endpoint(url), "model_sample": '{"result": 9}', "item": {"target": 9}}
        r = httpx.post(f"{api}{RUN_PATH}", json=body)
    assert r.status_code == 200 and r.json()["reward"] == 5.0
    assert r.json()["metadata"]["type"] == "endpoint"
    assert server.bodies()[0]["item"] == {"target": 9}


def test_the_cli_runs_an_endpoint_grader(
    contract: tuple[ContractServer, str], capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    server, url = contract
    grader_file = tmp_path / "endpoint.json"
    grader_file.write_text(json.dumps(endpoint(url)))
    assert cli.main(["run", str(grader_file), "--sample", '{"result": 4}', "--item", '{"target": 4}']) == 0
    assert json.loads(capsys.readouterr().out)["reward"] == 5.0
    data, samples, out = tmp_path / "data.jsonl", tmp_path / "samples.jsonl", tmp_path / "out.jsonl"
    data.write_text("".join(json.dumps({"target": t}) + "\n" for t in (1, 2, 3)))
    samples.write_text("".join(json.dumps(json.dumps({"result": r})) + "\n" for r in (1, 0, 3)))
    code = cli.main(
        ["grade", "--grader", str(grader_file), "--data", str(data), "--samples", str(samples), "--out", str(out), "-q"]
    )
    assert code == 0
    assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == [5.0, 0.0, 5.0]
    assert len(server.requests) == 4


def test_a_lambda_handler_grades_with_an_endpoint_grader(contract: tuple[ContractServer, str]) -> None:
    pytest.importorskip("aws_lambda_powertools")
    from gradekit.lambda_handlers import bedrock_reward_handler

    from ..lambda_handlers.test_handler import Context

    server, url = contract
    event = [
        {"id": "a", "messages": [{"role": "assistant", "content": '{"result": 7}'}], "target": 7},
        {"id": "b", "messages": [{"role": "assistant", "content": '{"result": 6}'}], "target": 7},
    ]
    out = bedrock_reward_handler(load_grader(endpoint(url)))(event, Context())
    assert [(o["id"], o["aggregate_reward_score"]) for o in out] == [("a", 5.0), ("b", 0.0)]
    assert {b["item"]["target"] for b in server.bodies()} == {7}


@pytest.mark.slow
def test_a_fine_tuning_job_trains_on_an_endpoint_grader(tmp_path: Path) -> None:
    # The demo's RFT job form (`method.reinforcement.grader` an endpoint grader), on gradekit's own fine-tuning
    # service through the openai SDK: every rollout is scored by a POST to the endpoint.
    from ..trainer_bridge.rft_task import write_task
    from ..trainer_bridge.service.helpers import client, make_config, rft_method, serving, upload, wait_for

    seen: list[dict[str, Any]] = []

    async def routing(request: Request) -> Response:
        body = await request.json()
        seen.append(body)
        hit = body["item"]["team"] in body["sample"]["output_text"].lower()
        return JSONResponse({"score": 1.0 if hit else 0.0})

    train, valid = write_task(tmp_path / "task", n_train=4, n_valid=2)
    rows = [json.loads(line) for line in train.read_text().splitlines() + valid.read_text().splitlines()]
    ids = {r["ticket_id"] for r in rows}
    config = make_config(tmp_path / "data")
    with running(Starlette(routes=[Route("/grade", routing, methods=["POST"])])) as grader_url:
        grader = {"type": "endpoint", "name": "routing", "url": f"{grader_url}/grade", "rate_limit": 50}
        with serving(config) as (url, _), client(url) as sdk:
            method = rft_method(grader, n_epochs=1, batch_size=2, eval_interval=1)
            job = sdk.fine_tuning.jobs.create(
                model="openai.gpt-oss-20b",
                training_file=upload(sdk, train),
                validation_file=upload(sdk, valid),
                extra_body={"method": method},
            )
            done = wait_for(sdk, job.id, timeout=180.0)
    assert done.status == "succeeded", done.error
    assert len(seen) >= 2 * 4  # at least one step's batch of 2 prompts, 4 samples each (FAST's group_size)
    assert {b["item"]["ticket_id"] for b in seen} <= ids
    assert all(set(b) == {"sample", "item", "trace_id"} and TRACE_ID.match(b["trace_id"]) for b in seen)
    assert len({b["trace_id"] for b in seen}) == len(seen)
