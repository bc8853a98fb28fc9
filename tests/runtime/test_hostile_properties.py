"""Property tests: arbitrary JSON through the HTTP API and `gradekit grade` never fails and answers strict JSON.

Arbitrary means deep nesting, huge strings, lone surrogates, NaN and infinities (as Python's lenient parser
reads `NaN`/`Infinity`), integers too long to print, wrong types and bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradekit.graders import Env
from gradekit.runtime import cli
from gradekit.runtime.server import BATCH_PATH, RUN_PATH, VALIDATE_PATH, create_app

from .asgi import post_json, strict_json

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

# --- JSON text with what json.dumps cannot write: integers over 4300 digits, nesting deeper than its stack ----


class Raw(str):
    """JSON text spliced into a document as it is."""


HUGE_INT = Raw("1" + "0" * 5000)
TEXT = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "\udc80\ud800", "yes", "é😀"])
LONG_TEXT = st.integers(min_value=1_000, max_value=100_000).map(lambda n: "x" * n)
FLOAT = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf])
SCALAR = st.none() | st.booleans() | st.integers() | FLOAT | TEXT
#: What Python's parser reads (a well-formed request): no integer over 4300 digits.
PARSEABLE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
JSONISH = st.recursive(
    SCALAR | st.just(HUGE_INT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)


def deep_text(depth: int, kind: str = "list") -> Raw:
    """JSON text nesting `depth` levels (lists, or objects with key "a")."""
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


DEEP = st.builds(deep_text, st.integers(min_value=1_000, max_value=100_000), st.sampled_from(["list", "object"]))
SHALLOW_DEEP = st.builds(deep_text, st.integers(min_value=10, max_value=200), st.sampled_from(["list", "object"]))


def to_json(value: Any) -> str:
    """JSON text of `value`, `Raw` parts spliced in (NaN and infinities written as Python writes them)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


# --- the HTTP API ------------------------------------------------------------------------------------------

APP = create_app(env=Env())  # python graders in-process: the properties are about the HTTP layer
NAME = TEXT.map(lambda t: "g" + t)
PY_SOURCE = (
    "import json\n"
    "def grade(sample, item):\n"
    "    text = sample['output_text']\n"
    "    if 'raise' in text:\n"
    "        raise ValueError('bad ' + text[:20])\n"
    "    return float('nan') if 'nan' in text else 1.0\n"
)


def graders(name: str) -> list[dict[str, Any]]:
    check = {"type": "string_check", "name": name, "input": "{{ sample.output_text }}", "operation": "eq"}
    check["reference"] = "{{ item.answer }}"
    similarity = {**check, "type": "text_similarity", "evaluation_metric": "fuzzy_match"}
    del similarity["operation"]
    python = {"type": "python", "name": name, "source": PY_SOURCE}
    multi = {
        "type": "multi",
        "name": name,
        "graders": {"a": {**check, "name": "a"}, "b": {**python, "name": "b\ud800"}},
        "calculate_output": "0.5 * a + 0.5 * b",
    }
    return [check, similarity, python, multi]


GRADER = st.builds(lambda name, i: graders(name)[i], NAME, st.integers(min_value=0, max_value=3))
SAMPLE_TEXT = TEXT | LONG_TEXT | st.sampled_from(["raise \ud800", "nan", '{"a": 1}']) | DEEP.map(str)
ITEM = st.dictionaries(TEXT, PARSEABLE | SHALLOW_DEEP, max_size=4) | st.just({"answer": "yes"})


def check_result(result: dict[str, Any], name: str | None = None) -> None:
    assert set(result) == {"reward", "sub_rewards", "model_grader_token_usage_per_model", "metadata"}
    assert 0.0 <= result["reward"] <= 1.0
    assert len(result["metadata"]["errors"]) == 14


@SETTINGS
@given(GRADER, SAMPLE_TEXT, ITEM)
def test_run_answers_every_well_formed_request(grader: dict[str, Any], sample: str, item: dict[str, Any]) -> None:
    body = to_json({"grader": grader, "model_sample": sample, "item": item}).encode()
    status, out = post_json(APP, RUN_PATH, body)
    assert status == 200, out
    check_result(out)
    assert out["metadata"]["type"] == grader["type"]


@SETTINGS
@given(GRADER, st.lists(SAMPLE_TEXT | PARSEABLE | SHALLOW_DEEP, max_size=5), st.data())
def test_run_batch_answers_one_result_per_sample(grader: dict[str, Any], samples: list[Any], data: Any) -> None:
    items = data.draw(st.lists(ITEM | st.none(), min_size=len(samples), max_size=len(samples)))
    body = to_json({"grader": grader, "model_samples": samples, "items": items}).encode()
    status, out = post_json(APP, BATCH_PATH, body)
    assert status == 200, out
    assert len(out["results"]) == len(samples) and out["summary"]["count"] == len(samples)
    for result in out["results"]:
        check_result(result)


BODY = (
    JSONISH.map(to_json)
    | DEEP.map(str)
    | st.builds(lambda g, s: to_json({"grader": g, "model_sample": s}), JSONISH | GRADER, JSONISH | DEEP)
    | st.builds(lambda g, s: to_json({"grader": g, "model_samples": s}), JSONISH | GRADER, JSONISH | DEEP)
)


@SETTINGS
@given(st.sampled_from([RUN_PATH, BATCH_PATH, VALIDATE_PATH]), BODY.map(str.encode) | st.binary(max_size=64))
def test_any_body_is_answered_never_500(path: str, body: bytes) -> None:
    status, out = post_json(APP, path, body)  # post_json checks the answer is strict UTF-8 JSON
    assert status in (200, 400), out
    if status == 400:
        assert set(out["error"]) == {"message", "type", "param", "code"} and out["error"]["message"]
    elif path == BATCH_PATH:
        assert len(out["results"]) == len(json.loads(body)["model_samples"])
    elif path == RUN_PATH:
        check_result(out)


# --- gradekit grade ----------------------------------------------------------------------------------------

CLI_GRADER = json.dumps(
    {
        "type": "multi",
        "name": "cli\ud800",
        "graders": {
            "exact": {
                "type": "string_check",
                "name": "exact",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.answer }}",
                "operation": "eq",
            },
            "near": {
                "type": "text_similarity",
                "name": "near\udfff",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.answer }}",
                "evaluation_metric": "fuzzy_match",
            },
        },
        "calculate_output": "0.5 * exact + 0.5 * near",
    }
)
# One JSONL line: any JSON text (on one line), or bytes that are not UTF-8; never blank.
LINE = (JSONISH | DEEP | ITEM | SAMPLE_TEXT).map(lambda v: to_json(v).encode()) | st.binary(
    min_size=1, max_size=30
).filter(lambda b: b"\n" not in b and b"\r" not in b and not b.isspace())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(LINE, LINE), min_size=1, max_size=6))
def test_grade_writes_one_strict_result_per_row(pairs: list[tuple[bytes, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data, samples, out = Path(tmp, "data.jsonl"), Path(tmp, "samples.jsonl"), Path(tmp, "out.jsonl")
        data.write_bytes(b"".join(d + b"\n" for d, _ in pairs))
        samples.write_bytes(b"".join(s + b"\n" for _, s in pairs))
        argv = ["grade", "--grader", CLI_GRADER, "--data", str(data), "--samples", str(samples), "--out", str(out)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cli, "_say", lambda message: None)  # one note per bad row: keep the test output quiet
            assert cli.main([*argv, "-q", "--chunk-size", "2", "--max-error-rate", "1"]) == 0  # hostile rows fail
        lines = out.read_bytes().splitlines()
        results = [strict_json(line) for line in lines]
        assert [r["row"] for r in results] == list(range(len(pairs)))
        for r in results:
            del r["row"]
            check_result(r)
            assert r["metadata"]["name"] == "cli\ufffd"
