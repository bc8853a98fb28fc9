"""OpenAIModelClient with the real openai SDK against the fake OpenAI-compatible server."""

from __future__ import annotations

import base64
import contextlib
import math
import re
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from gradekit.graders import Env, GradingError, LabelModel, Multi, ScoreModel, run_batch
from gradekit.runtime import model_client
from gradekit.runtime.model_client import (
    PLACEHOLDER_API_KEY,
    OpenAIModelClient,
    label_instruction,
    parse_label,
    parse_score,
    score_instruction,
)
from gradekit.runtime.retry import retry_after_seconds
from gradekit.testing.fake_llm import (
    ContentFilter,
    Delay,
    FakeLLM,
    Flaky,
    Judge,
    Malformed,
    RateLimited,
    Refusal,
    ServerError,
    Status,
    Text,
    embed_text,
)

SERVED = "judge-model-2026-01-01"
USAGE = {"prompt_tokens": 20, "completion_tokens": 10, "reasoning_tokens": 4, "cached_tokens": 8}
USAGE_OUT = {
    "prompt_tokens": 20,
    "completion_tokens": 10,
    "total_tokens": 30,
    "reasoning_tokens": 4,
    "cached_tokens": 8,
}


def score_grader(**kwargs: Any) -> ScoreModel:
    spec: dict[str, Any] = {
        "name": "judge",
        "model": "judge-model",
        "input": [
            {"role": "system", "content": "You grade {{ item.topic }} answers."},
            {"role": "user", "content": "Answer: {{ sample.output_text }}\nReference: {{ item.answer }}"},
        ],
    }
    return ScoreModel(**{**spec, **kwargs})


def answer_of(request: dict[str, Any]) -> str:
    """The sample's answer, from the rendered user message the server received."""
    match = re.search(r"Answer: (\S+)", request["messages"][-1]["content"])
    assert match is not None
    return match.group(1)


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GRADEKIT_MODEL_BASE_URL",
        "GRADEKIT_MODEL_API_KEY",
        "GRADEKIT_MODEL_CACHE_DIR",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays the client asked for (it does not actually wait)."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(model_client, "_sleep", record)
    return delays


@contextlib.contextmanager
def judge(script: Any, **kwargs: Any) -> Iterator[tuple[FakeLLM, OpenAIModelClient]]:
    """A fake LLM and a client pointed at it (fast backoff), both stopped afterwards."""
    options: dict[str, Any] = {"api_key": "test-key", "base_delay": 0.001, "max_delay": 0.05, "timeout": 10.0}
    options.update(kwargs)
    with (
        FakeLLM(script, response_model=SERVED, max_lifetime=30.0) as llm,
        OpenAIModelClient(base_url=llm.base_url, **options) as client,
    ):
        yield llm, client


ITEMS = [{"topic": "math", "answer": "4"}] * 3


def test_score_model_reward_is_clipped_and_metadata_filled() -> None:
    def script(request: dict[str, Any], n: int) -> Judge:
        value = float(answer_of(request))
        return Judge(value, steps=[{"description": f"read {value}", "conclusion": "scored"}], usage=USAGE)

    g = score_grader(range=[0, 5])
    with judge(script) as (llm, client):
        batch = run_batch(g, ["0.25", "7", "-2"], ITEMS, env=Env(model=client))
    assert batch.rewards == [0.25, 5.0, 0.0]
    assert [r.metadata.scores["result"] for r in batch] == [0.25, 7.0, -2.0]
    assert batch[1].metadata.scores["steps"] == [{"description": "read 7.0", "conclusion": "scored"}]
    first = batch[0]
    assert first.metadata.token_usage == 30
    assert first.metadata.sampled_model_name == SERVED
    assert first.model_grader_token_usage_per_model == {SERVED: USAGE_OUT}
    assert not first.errors.any
    assert llm.count == 3


def test_label_model_inside_multi_with_passing_labels() -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        answer = answer_of(request)
        if request["response_format"]["json_schema"]["name"] == "label_model_result":
            return Judge("correct", usage=USAGE) if answer == "8" else Text(" Wrong. ", usage=USAGE)
        return Judge(float(answer), usage=USAGE)

    verdict = LabelModel(
        name="verdict",
        model="judge-model",
        input=[{"role": "user", "content": "Answer: {{ sample.output_text }} (expected {{ item.answer }})"}],
        labels=["correct", "partly", "wrong"],
        passing_labels=["correct", "partly"],
    )
    g = Multi(
        name="both",
        graders={"score": score_grader(range=[0, 10]), "verdict": verdict},
        calculate_output="0.1 * score + verdict",
    )
    with judge(script) as (llm, client):
        batch = run_batch(g, ["8", "3"], [{"topic": "math", "answer": "8"}] * 2, env=Env(model=client))
    assert batch.rewards == pytest.approx([1.8, 0.3])
    assert batch[0].sub_rewards == {"score": 8.0, "verdict": 1.0}
    assert batch[1].sub_rewards == {"score": 3.0, "verdict": 0.0}
    assert batch[0].metadata.scores["verdict"]["label"] == "correct"
    assert batch[1].metadata.scores["verdict"] == {"label": "wrong"}  # plain-text answer: no steps
    assert batch[0].metadata.token_usage == 60
    assert batch[0].model_grader_token_usage_per_model == {SERVED: {k: 2 * v for k, v in USAGE_OUT.items()}}
    labels_request = next(r.body for r in llm.chat_requests if "enum" in str(r.body["response_format"]))
    schema = labels_request["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["result"] == {"type": "string", "enum": ["correct", "partly", "wrong"]}
    assert labels_request["messages"][0] == {"role": "system", "content": label_instruction(verdict.labels)}
    assert not any(r.errors.any for r in batch)


def test_rendered_messages_sampling_params_and_headers_reach_the_server() -> None:
    g = score_grader(
        range=[0, 5],
        sampling_params={
            "temperature": 0,
            "top_p": 0.5,
            "seed": 42,
            "max_completions_tokens": 256,
            "reasoning_effort": "low",
        },
        input=[
            {"role": "system", "content": "You grade {{ item.topic }} answers."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Answer: {{ sample.output_text }}"},
                    {"type": "input_image", "image_url": "{{ item.image }}", "detail": "low"},
                ],
            },
        ],
    )
    item = {"topic": "geometry", "image": "https://example.com/triangle.png"}
    with judge([Judge(3)]) as (llm, client):
        batch = run_batch(g, ["a right angle"], [item], env=Env(model=client))
    assert batch.rewards == [3.0]
    (request,) = llm.chat_requests
    body = request.body
    assert body["model"] == "judge-model"
    assert body["messages"] == [
        {"role": "system", "content": "You grade geometry answers.\n\n" + score_instruction(0, 5)},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Answer: a right angle"},
                {"type": "image_url", "image_url": {"url": "https://example.com/triangle.png", "detail": "low"}},
            ],
        },
    ]
    assert "from 0 to 5 inclusive" in body["messages"][0]["content"]
    assert {k: body[k] for k in ("temperature", "top_p", "seed", "max_completion_tokens", "reasoning_effort")} == {
        "temperature": 0,
        "top_p": 0.5,
        "seed": 42,
        "max_completion_tokens": 256,
        "reasoning_effort": "low",
    }
    assert "max_completions_tokens" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["steps", "result"]
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["content-type"] == "application/json"


def test_instruction_is_prepended_without_a_leading_system_message() -> None:
    g = score_grader(input=[{"role": "user", "content": "Answer: {{ sample.output_text }}"}])
    with judge([Judge(1)]) as (llm, client):
        run_batch(g, ["x"], env=Env(model=client))
    assert llm.chat_requests[0].body["messages"] == [
        {"role": "system", "content": score_instruction(0, 1)},
        {"role": "user", "content": "Answer: x"},
    ]


def test_retry_on_429_honours_retry_after(sleeps: list[float]) -> None:
    with judge([RateLimited(retry_after=0.05), RateLimited(retry_after=3600), Judge(0.5)]) as (llm, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert batch.rewards == [0.5]
    assert sleeps == [0.05, 0.05]  # the server's wait, then one capped at max_delay
    assert [r.status for r in llm.chat_requests] == [429, 429, 200]


def test_retry_after_as_an_http_date_in_the_past_means_now(sleeps: list[float]) -> None:
    with judge([RateLimited(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), Judge(0.5)]) as (_, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert batch.rewards == [0.5]
    assert sleeps == [0.0]


def test_retry_after_parsing() -> None:
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert retry_after_seconds({"retry-after": date}, now=now) == 10.0
    assert retry_after_seconds({"retry-after": format_datetime(parsedate_to_datetime(date))}, now=now + 20) == 0.0
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_retry_on_500_then_success(sleeps: list[float]) -> None:
    with judge([ServerError(), ServerError(code=503), Judge(0.9)], base_delay=0.01) as (llm, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert batch.rewards == [0.9]
    assert not batch[0].errors.any
    assert llm.count == 3
    assert len(sleeps) == 2
    assert 0.0 <= sleeps[0] <= 0.01 and 0.0 <= sleeps[1] <= 0.02  # full jitter under base * 2**attempt


def test_server_error_after_retries_are_exhausted(sleeps: list[float]) -> None:
    with judge([ServerError("upstream exploded")], max_retries=2) as (llm, client):
        batch = run_batch(score_grader(), ["x", "y"], ITEMS[:2], env=Env(model=client))
    assert batch.rewards == [0.0, 0.0]
    assert llm.count == 6
    assert len(sleeps) == 4
    errors = batch[0].errors
    assert errors.flags() == ["model_grader_server_error"]
    assert errors.model_grader_server_error_details is not None
    assert "HTTP 500" in errors.model_grader_server_error_details
    assert "upstream exploded" in errors.model_grader_server_error_details
    assert "3 attempt(s)" in errors.model_grader_server_error_details
    assert "HTTP 500" in batch[0].metadata.scores["error_details"]["judge"]["message"]


def test_other_4xx_is_not_retried(sleeps: list[float]) -> None:
    with judge([Status(400, "unknown parameter: seed")]) as (llm, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert llm.count == 1
    assert sleeps == []
    details = batch[0].errors.model_grader_server_error_details
    assert details is not None and "HTTP 400" in details and "unknown parameter: seed" in details


def test_connection_error_is_retried_then_a_server_error(sleeps: list[float]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OpenAIModelClient(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, base_delay=0.001) as client:
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert len(sleeps) == 1
    details = batch[0].errors.model_grader_server_error_details
    assert details is not None and "cannot reach" in details


@pytest.mark.parametrize(
    ("reply", "message"),
    [(Refusal("I can't grade this."), "refused: I can't grade this."), (ContentFilter(), "content filter")],
)
def test_refusal(reply: Any, message: str) -> None:
    with judge([reply]) as (_, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    r = batch[0]
    assert r.reward == 0.0
    assert r.errors.flags() == ["model_grader_refusal_error"]
    assert message in r.metadata.scores["error_details"]["judge"]["message"]
    assert r.metadata.sampled_model_name == SERVED  # the call still happened and cost tokens
    assert r.metadata.token_usage is not None and r.metadata.token_usage > 0


def test_malformed_answer_is_a_parse_error() -> None:
    with judge([Malformed(), Text('{"result": 0.', finish_reason="length")]) as (_, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        cut = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert batch.rewards == [0.0]
    assert batch[0].errors.flags() == ["model_grader_parse_error"]
    assert "neither the JSON verdict" in batch[0].metadata.scores["error_details"]["judge"]["message"]
    assert "finish_reason=length" in cut[0].metadata.scores["error_details"]["judge"]["message"]


def test_plain_text_fallback_end_to_end() -> None:
    replies = {"a": "Score: 0.7", "b": '```json\n{"result": 0.4, "steps": []}\n```', "c": "8/10"}
    with judge(lambda request, n: replies[answer_of(request)]) as (_, client):
        batch = run_batch(score_grader(), ["a", "b", "c"], ITEMS, env=Env(model=client))
    assert batch.rewards[:2] == [0.7, 0.4]
    assert batch[2].errors.flags() == ["model_grader_parse_error"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"result": 0.8, "steps": [{"description": "d", "conclusion": "c"}]}', 0.8),
        ('{"steps": [], "result": 3}', 3.0),
        ('{"result": "0.25"}', 0.25),
        ('Here is my verdict: {"result": 0.6, "steps": []} -- done', 0.6),
        ("0.8", 0.8),
        ("Score: -1.5", -1.5),
        ("  7  ", 7.0),
        ("1e-1", 0.1),
    ],
)
def test_parse_score_accepts(content: str, expected: float) -> None:
    assert parse_score(content)[0] == expected


@pytest.mark.parametrize(
    "content",
    [
        "8/10",
        "good",
        '{"result": "high"}',
        '{"result": 0.5, "steps": [{"descr',
        '{"score": 1}',
        '{"result": NaN}',
        "The answer 4 is right: " + "x " * 100,
        "[" * 100_000,  # a judge echoing a sample's deep JSON: a parse error, not RecursionError
        '{"result": 1, "steps": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_parse_score_rejects(content: str) -> None:
    with pytest.raises(GradingError) as e:
        parse_score(content)
    assert e.value.flag == "model_grader_parse_error"


def test_parse_label_of_deep_json_is_a_parse_error() -> None:
    with pytest.raises(GradingError) as e:
        parse_label('{"result": "yes", "steps": ' + "[" * 100_000 + "]" * 100_000 + "}", ["yes", "no"])
    assert e.value.flag == "model_grader_parse_error"


def test_parse_label() -> None:
    labels = ["Correct", "wrong"]
    assert parse_label('{"result": "Correct", "steps": [{"description": "a", "conclusion": "b"}]}', labels) == (
        "Correct",
        [{"description": "a", "conclusion": "b"}],
    )
    assert parse_label(' "correct". ', labels) == ("Correct", [])
    assert parse_label("WRONG", labels) == ("wrong", [])
    for bad in ('{"result": "maybe"}', "it is correct", "maybe"):
        with pytest.raises(GradingError):
            parse_label(bad, labels)


def test_timeout_is_retried_then_a_server_error() -> None:
    with judge([Delay(5.0, Judge(1.0))], timeout=0.2, max_retries=1) as (llm, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        assert llm.count == 2
    details = batch[0].errors.model_grader_server_error_details
    assert details is not None and "timed out after 0.2 s" in details and "2 attempt(s)" in details


def test_half_failing_endpoint_loses_nothing(sleeps: list[float]) -> None:
    n = 40
    with judge([Flaky(0.5, Judge(1.0), seed=3)], max_retries=2, concurrency=8) as (llm, client):
        batch = run_batch(score_grader(), [str(i) for i in range(n)], [ITEMS[0]] * n, env=Env(model=client))
    assert len(batch) == n
    ok = [r for r in batch if r.reward == 1.0 and not r.errors.any]
    flagged = [r for r in batch if r.reward == 0.0 and r.errors.flags() == ["model_grader_server_error"]]
    assert len(ok) + len(flagged) == n
    assert ok, "the first attempts alone succeed about half the time"
    statuses = [r.status for r in llm.chat_requests]
    assert statuses.count(200) == len(ok)
    assert statuses.count(500) == len(statuses) - len(ok) >= 3 * len(flagged)
    assert len(sleeps) == statuses.count(500) - len(flagged)  # every failure but the last of each sample waits


def test_cache_makes_an_identical_run_issue_no_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = score_grader(range=[0, 5])
    samples = ["1", "2", "3"]

    def script(request: dict[str, Any], n: int) -> Judge:
        return Judge(float(answer_of(request)), usage=USAGE)

    with FakeLLM(script, response_model=SERVED) as llm:
        with OpenAIModelClient(base_url=llm.base_url, cache_dir=tmp_path) as client:
            first = run_batch(g, samples, ITEMS, env=Env(model=client))
        assert llm.count == 3
        monkeypatch.setenv("GRADEKIT_MODEL_CACHE_DIR", str(tmp_path))
        with OpenAIModelClient(base_url=llm.base_url) as client:
            assert client.cache_dir == tmp_path
            second = run_batch(g, samples, ITEMS, env=Env(model=client))
            assert llm.count == 3
            other = run_batch(
                score_grader(range=[0, 5], sampling_params={"seed": 1}), samples, ITEMS, env=Env(model=client)
            )
            assert llm.count == 6  # a different request is a different key
    assert second.rewards == first.rewards == other.rewards == [1.0, 2.0, 3.0]
    for a, b in zip(first, second, strict=True):
        assert a.model_dump(exclude={"metadata": {"execution_time"}}) == b.model_dump(
            exclude={"metadata": {"execution_time"}}
        )
    assert second[0].model_grader_token_usage_per_model == {SERVED: USAGE_OUT}


def test_failures_are_not_cached(tmp_path: Path) -> None:
    with judge([ServerError(), Judge(0.5)], max_retries=0, cache_dir=tmp_path) as (llm, client):
        failed = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        passed = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        again = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        assert llm.count == 2
    assert (failed.rewards, passed.rewards, again.rewards) == ([0.0], [0.5], [0.5])


def test_concurrency_bound_is_respected_across_runs() -> None:
    with judge([Delay(0.1, Judge(0.5))], concurrency=3) as (llm, client):
        first = run_batch(score_grader(), [str(i) for i in range(12)], [ITEMS[0]] * 12, env=Env(model=client))
        second = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))  # a new event loop, same client
        assert llm.max_in_flight == 3
        assert llm.count == 13
    assert first.rewards == [0.5] * 12 and second.rewards == [0.5]


def test_closed_client_fails_samples_without_raising() -> None:
    client = OpenAIModelClient(base_url="http://127.0.0.1:9/v1")
    client.close()
    batch = run_batch(score_grader(), ["x", "y"], ITEMS[:2], env=Env(model=client))
    assert batch.rewards == [0.0, 0.0]
    assert batch[1].errors.flags() == ["model_grader_server_error"]
    assert "closed" in batch[1].metadata.scores["error_details"]["judge"]["message"]


def test_closing_while_grading_fails_the_samples_instead_of_hanging() -> None:
    with judge([Delay(10.0, Judge(1.0))]) as (llm, client), ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_batch, score_grader(), ["x", "y"], ITEMS[:2], env=Env(model=client))
        for _ in range(1000):  # until both requests reached the server (bounded)
            if llm.in_flight == 2:
                break
            time.sleep(0.005)
        client.close()
        batch = running.result(timeout=10.0)
    assert batch.rewards == [0.0, 0.0]
    assert "closed while grading" in batch[0].metadata.scores["error_details"]["judge"]["message"]


def test_without_structured_output_the_plain_answer_is_parsed() -> None:
    with judge(["0.3"], structured_output=False) as (llm, client):
        batch = run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    assert batch.rewards == [0.3]
    assert "response_format" not in llm.chat_requests[0].body


def test_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeLLM([Judge(1.0)]) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        monkeypatch.setenv("GRADEKIT_MODEL_BASE_URL", llm.base_url + "/")
        monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
        with OpenAIModelClient() as client:
            assert client.base_url == llm.base_url
            run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        monkeypatch.setenv("GRADEKIT_MODEL_API_KEY", "gradekit-key")
        with OpenAIModelClient() as client:
            run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
        monkeypatch.delenv("GRADEKIT_MODEL_API_KEY")
        monkeypatch.delenv("OPENAI_API_KEY")
        monkeypatch.delenv("GRADEKIT_MODEL_BASE_URL")
        with OpenAIModelClient() as client:
            assert client.base_url == "http://127.0.0.1:9/v1"
        with OpenAIModelClient(base_url=llm.base_url) as client:
            run_batch(score_grader(), ["x"], ITEMS[:1], env=Env(model=client))
    keys = [r.headers["authorization"] for r in llm.chat_requests]
    assert keys == ["Bearer openai-key", "Bearer gradekit-key", f"Bearer {PLACEHOLDER_API_KEY}"]


def test_fake_llm_embeddings_are_deterministic() -> None:
    with FakeLLM() as llm, openai.OpenAI(base_url=llm.base_url, api_key="k", max_retries=0) as sdk:
        out = sdk.embeddings.create(model="emb", input=["the cat sat", "the cat sat", ""], encoding_format="float")
        packed = sdk.embeddings.create(model="emb", input="the cat sat", encoding_format="base64", dimensions=8)
        default = sdk.embeddings.create(model="emb", input="the cat sat")  # the SDK asks for base64 and decodes it
    vectors = [d.embedding for d in out.data]
    assert vectors[0] == vectors[1] == embed_text("the cat sat")
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0)
    assert vectors[2] == [1.0] + [0.0] * 31
    raw = base64.b64decode(packed.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack("<8f", raw)) == pytest.approx(embed_text("the cat sat", 8), abs=1e-6)
    assert default.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    assert out.usage.prompt_tokens == 6


def test_fake_llm_is_bounded_in_requests_and_lifetime() -> None:
    with FakeLLM([Judge(1.0)], max_requests=1) as llm, openai.OpenAI(base_url=llm.base_url, api_key="k") as sdk:
        sdk.with_options(max_retries=0).chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        with pytest.raises(openai.APIStatusError) as e:
            sdk.with_options(max_retries=0).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "a"}]
            )
        assert e.value.status_code == 503
        assert llm.wait(timeout=5.0)
    with FakeLLM(max_lifetime=0.1) as llm:
        assert llm.wait(timeout=5.0)


def test_grade_of_nothing_is_nothing() -> None:
    import asyncio

    with OpenAIModelClient(base_url="http://127.0.0.1:9/v1") as client:
        assert asyncio.run(client.grade(score_grader(), [])) == []
