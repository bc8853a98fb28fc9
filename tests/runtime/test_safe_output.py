"""The runtime's shared JSON helpers: outputs that always encode, inputs whose depth fails cleanly."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import run
from gradekit.graders.limits import MAX_JSON_DEPTH
from gradekit.graders.safety import describe
from gradekit.runtime.jsonl import (
    TOO_DEEP,
    JsonDepthError,
    JsonlError,
    JsonlWriter,
    Line,
    clean_text,
    dumps,
    loads,
    model_json,
    utf8,
    write_text,
)
from gradekit.runtime.report import format_summary, print_summary

from ..values import deep_list
from .asgi import strict_json


def test_clean_text_and_utf8_replace_every_surrogate() -> None:
    assert clean_text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean_text("plain é 😀") == "plain é 😀"
    assert utf8("x\udc80") == "x\ufffd".encode()
    assert utf8("é") == "é".encode()


def test_dumps_is_strict_json_whatever_the_value_holds() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    value = {
        "text": "a\ud800",
        "\udfffkey": 1,
        "nan": float("nan"),
        "inf": float("-inf"),
        "huge": 10**5000,
        "tuple": (1, 2.5),
        "object": object,
        3: "int key",
        None: "null key",
        "cycle": cycle,
    }
    out = json.loads(dumps(value), parse_constant=lambda c: pytest.fail(c))
    assert out == {
        "text": "a\ufffd",
        "\ufffdkey": 1,
        "nan": None,
        "inf": None,
        "huge": describe(10**5000),
        "tuple": [1, 2.5],
        "object": describe(object),
        "3": "int key",
        "null": "null key",
        "cycle": out["cycle"],  # bounded below
    }
    node, depth = out["cycle"], 0
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert (depth, node) == (MAX_JSON_DEPTH - 1, f"<nested deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels>")
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert dumps([1], indent=2) == "[\n  1\n]"


def test_dumps_bounds_depth_without_recursion() -> None:
    out = json.loads(dumps({"deep": deep_list(100_000)}))
    depth, node = 0, out["deep"]
    while isinstance(node, list):
        depth += 1
        node = node[0]
    assert depth == MAX_JSON_DEPTH - 1  # the `deep` key's object is the first level
    assert node == f"<nested deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels>"


def test_model_json_carries_no_surrogates() -> None:
    grader = {"type": "string_check", "name": "n\ud800", "input": "{{ sample.output_text }}", "reference": "x"}
    result = run({**grader, "operation": "eq"}, "x", None)
    out = strict_json(utf8(model_json(result)))
    assert out["metadata"]["name"] == "n\ufffd" and out["reward"] == 1.0


def test_loads_and_line_parse_turn_deep_input_into_a_clear_value_error(tmp_path: Path) -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(JsonDepthError, match="JSON nested too deeply to parse"):
        loads(text)
    assert loads("[[1]]") == [[1]]
    with pytest.raises(JsonlError) as caught:
        Line("data.jsonl", 7, text).parse()
    assert str(caught.value) == f"data.jsonl:7: invalid JSON: {TOO_DEEP}"


def test_jsonl_writer_writes_surrogates_as_replacement_characters(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        w.write({"a": "x\ud800", "n": float("nan")})
        w.write_line('{"b":"y\udc80"}')
    assert path.read_bytes() == '{"a":"x\ufffd","n":null}\n{"b":"y\ufffd"}\n'.encode()


def test_write_text_never_raises_on_a_narrow_stream() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    write_text(stream, "é\ud800!")
    stream.flush()
    assert raw.getvalue() == b"??!"


def test_summary_table_with_surrogate_grader_names_prints() -> None:
    summary = {
        "count": 1,
        "reward_mean": 0.0,
        "reward_std": 0.0,
        "graders": {"sub\ud800": {"reward_mean": 0.0, "reward_std": 0.0}},
        "errors": {"sub\ud800": {"other_error": {"count": 1, "rate": 1.0}}},
        "failed_samples": 1,
        "failed_rate": 1.0,
    }
    text = format_summary(summary, title="grader: g\udfff")
    assert "\ud800" not in text and "\udfff" not in text
    assert text.startswith("grader: g\ufffd\n") and "  sub\ufffd" in text
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    print_summary(summary, file=stream)
    stream.flush()
    assert "sub\ufffd".encode() in raw.getvalue()
