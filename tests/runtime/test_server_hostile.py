"""The HTTP API against hostile requests: surrogates, deep bodies, graders that raise, slow validations."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest

from gradekit.graders import Env
from gradekit.runtime import engine, server
from gradekit.runtime.jsonl import TOO_DEEP
from gradekit.runtime.server import BATCH_PATH, RUN_PATH, VALIDATE_PATH, create_app, running

from ..http import post
from .asgi import call, post_json, strict_json

CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}
RAISES = {
    "type": "python",
    "name": "raises",
    "source": "def grade(sample, item):\n    raise ValueError('bad ' + chr(0xD800))\n",
}


@pytest.fixture(scope="module")
def app() -> Any:
    # In-process Python graders: these tests are about the HTTP layer, not the sandbox.
    return create_app(env=Env())


def test_surrogate_in_the_answer_and_in_the_grader_name(app: Any) -> None:
    grader = {**CHECK, "name": "exact\ud800", "input": "{{ sample.output_text }}\udfff"}
    status, out = post_json(app, RUN_PATH, {"grader": grader, "model_sample": "a\ud800", "item": {"answer": "a"}})
    assert status == 200
    assert out["metadata"]["name"] == "exact\ufffd" and out["reward"] == 0.0
    status, out = post_json(app, VALIDATE_PATH, {"grader": grader})
    assert status == 200 and out["grader"]["name"] == "exact\ufffd"
    assert out["grader"]["input"] == "{{ sample.output_text }}\ufffd"


def test_surrogate_in_a_python_graders_exception_message(app: Any) -> None:
    status, out = post_json(app, RUN_PATH, {"grader": RAISES, "model_sample": "x"})
    assert status == 200
    errors = out["metadata"]["errors"]
    assert out["reward"] == 0.0 and errors["python_grader_runtime_error"] is True
    assert "ValueError: bad \ufffd" in errors["python_grader_runtime_error_details"]


def test_one_bad_sample_does_not_fail_the_batch(app: Any) -> None:
    multi = {
        "type": "multi",
        "name": "both\ud800",
        "graders": {"exact": CHECK, "raises": RAISES},
        "calculate_output": "exact",
    }
    body = {"grader": multi, "model_samples": ["a", "b\ud800", "a"], "items": [{"answer": "a"}] * 3}
    status, out = post_json(app, BATCH_PATH, body)
    assert status == 200
    assert [r["metadata"]["name"] for r in out["results"]] == ["both\ufffd"] * 3
    assert [r["sub_rewards"]["exact"] for r in out["results"]] == [1.0, 0.0, 1.0]
    assert out["summary"]["count"] == 3


def test_a_body_nested_100000_deep_is_a_clear_400(app: Any) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    body = f'{{"grader": {json.dumps(CHECK)}, "model_sample": "x", "item": {{"a": {deep}}}}}'.encode()
    for path in (RUN_PATH, VALIDATE_PATH, BATCH_PATH):
        status, out = post_json(app, path, body)
        assert status == 400
        assert out["error"] == {
            "message": f"We could not parse the JSON body of your request: {TOO_DEEP}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "json_too_deep",
        }


def test_a_body_that_is_not_utf8_or_holds_a_huge_integer_is_a_clear_400(app: Any) -> None:
    status, out = post_json(app, RUN_PATH, b'{"model_sample": "\xff"}')
    assert status == 400
    assert out["error"]["message"] == "We could not parse the JSON body of your request: it is not valid UTF-8."
    status, out = post_json(app, RUN_PATH, b'{"model_sample": "x", "item": {"n": 1' + b"0" * 5000 + b"}}")
    assert status == 400
    assert out["error"]["message"] == (
        "We could not parse the JSON body of your request: it holds an integer longer than 4300 digits."
    )


def test_error_messages_quoting_surrogates_still_encode(app: Any) -> None:
    status, out = post_json(app, RUN_PATH, {"grader": CHECK, "model_sample": "x", "extra\ud800": 1})
    assert status == 400
    assert out["error"]["message"] == "Invalid string 'extra\\ud800': it holds a lone surrogate, which is not Unicode."
    status, out = post_json(app, VALIDATE_PATH, {"grader": {**CHECK, "k\udc00": 1}})
    assert status == 400 and out["error"]["param"] == "grader"
    assert out["error"]["message"].startswith("Invalid grader (1 problem(s)):")
    # the problem quotes the surrogate back; post_json checks that none reaches the answer
    status, out = post_json(app, RUN_PATH, {"grader": {"type": "nope\ud800", "name": "x"}, "model_sample": "x"})
    assert status == 400 and out["error"]["param"] == "grader.type"
    assert "unknown grader type 'nope\ufffd" in out["error"]["message"]


def test_grading_that_raises_fails_only_that_sample(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine.arun_batch

    async def flaky(grader: Any, samples: Any, items: Any, *, env: Any = None) -> Any:
        if "boom" in samples:
            raise RecursionError("maximum recursion depth exceeded")
        return await real(grader, samples, items, env=env)

    monkeypatch.setattr(engine, "arun_batch", flaky)
    body = {"grader": CHECK, "model_samples": ["a", "boom", "a"], "items": [{"answer": "a"}] * 3}
    status, out = post_json(app, BATCH_PATH, body)
    assert status == 200
    assert [r["reward"] for r in out["results"]] == [1.0, 0.0, 1.0]
    failed = out["results"][1]["metadata"]
    assert failed["errors"]["other_error"] is True
    assert failed["scores"]["error_details"] == {
        "exact": {"flag": "other_error", "message": "grading raised RecursionError: maximum recursion depth exceeded"}
    }
    status, out = post_json(app, RUN_PATH, {"grader": CHECK, "model_sample": "boom"})
    assert status == 200 and out["metadata"]["errors"]["other_error"] is True


@pytest.mark.parametrize("path", [VALIDATE_PATH, RUN_PATH, BATCH_PATH])
def test_health_answers_while_a_validation_is_running(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # The validation blocks until the test releases it: /health can answer only if it runs off the event loop.
    entered, release = threading.Event(), threading.Event()
    real = server.validate_untrusted

    def slow_validate(grader: Any) -> Any:
        entered.set()
        release.wait(60)
        return real(grader)

    monkeypatch.setattr(server, "validate_untrusted", slow_validate)
    body = {
        VALIDATE_PATH: {"grader": CHECK},
        RUN_PATH: {"grader": CHECK, "model_sample": "a", "item": {"answer": "a"}},
        BATCH_PATH: {"grader": CHECK, "model_samples": ["a"], "items": [{"answer": "a"}]},
    }[path]
    answers: list[tuple[int, Any]] = []
    with running(create_app(env=Env())) as url:
        request = threading.Thread(target=lambda: answers.append(post(url + path, body)))
        request.start()
        try:
            assert entered.wait(30), "the validation never started"
            with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
                health = (r.status, json.loads(r.read()))
            still_validating = not release.is_set() and not answers
        finally:
            release.set()
            request.join(30)
    assert health == (200, {"status": "ok"}) and still_validating
    status, out = answers[0]
    assert status == 200
    if path == VALIDATE_PATH:
        assert out["grader"]["name"] == "exact"
    elif path == RUN_PATH:
        assert out["reward"] == 1.0
    else:
        assert [r["reward"] for r in out["results"]] == [1.0]


def test_strict_json_helper_refuses_what_it_must() -> None:
    with pytest.raises(ValueError):
        strict_json(b'{"a": NaN}')
    with pytest.raises(AssertionError):
        strict_json(b'{"a": "\\ud800"}')
    assert call(create_app(), "GET", "/health") == (200, b'{"status":"ok"}')
