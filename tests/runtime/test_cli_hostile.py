"""`gradekit grade` against hostile files: surrogates, deep lines, and an --out that is one of the inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import grader
from gradekit.runtime import cli
from gradekit.runtime.jsonl import TOO_DEEP

from .asgi import strict_json

CHECK = {
    "type": "string_check",
    "name": "exact\ud800",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


@grader
def shouting(sample: dict[str, Any]) -> float:
    """Raises with a lone surrogate in its message when the answer says so; else rewards 1."""
    if sample["output_text"] == "raise":
        raise ValueError("bad \udc80 value")
    return 1.0


def write_jsonl(path: Path, lines: list[str]) -> Path:
    # ASCII escapes (`\ud800`) are how a lone surrogate reaches a JSON file.
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def results(path: Path) -> list[dict[str, Any]]:
    return [strict_json(line) for line in path.read_bytes().splitlines()]


def grade(grader_arg: str, data: Path, samples: Path, out: Path, *extra: str) -> int:
    argv = ["grade", "--grader", grader_arg, "--data", str(data), "--samples", str(samples), "--out", str(out)]
    return cli.main([*argv, "-q", *extra])


def test_surrogates_in_answers_names_and_exception_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [json.dumps({"answer": "a\ud800"})] * 2 + ['{"answer": "a"}'])
    samples = write_jsonl(tmp_path / "samples.jsonl", [json.dumps("a\ud800"), '"raise"', '"a"'])
    multi = {"type": "multi", "name": "both\udfff", "graders": {"exact": CHECK}, "calculate_output": "exact"}
    grader_file = tmp_path / "grader.json"
    grader_file.write_text(json.dumps(multi))
    out = tmp_path / "results.jsonl"
    assert grade(str(grader_file), data, samples, out) == 0
    got = results(out)
    assert [r["row"] for r in got] == [0, 1, 2]
    assert [r["reward"] for r in got] == [1.0, 0.0, 1.0]
    assert {r["metadata"]["name"] for r in got} == {"both\ufffd"}
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"grader: both\ufffd (multi) on {data}\n")
    assert "\ud800" not in stdout and "\udfff" not in stdout


def test_a_function_graders_surrogate_message_reaches_the_results_file(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", ["{}", "{}"])
    samples = write_jsonl(tmp_path / "samples.jsonl", ['"raise"', '"fine"'])
    out = tmp_path / "results.jsonl"
    assert grade(f"{__name__}:shouting", data, samples, out) == 0
    got = results(out)
    assert [r["reward"] for r in got] == [0.0, 1.0]
    errors = got[0]["metadata"]["errors"]
    assert errors["python_grader_runtime_error"] is True
    assert "ValueError: bad \ufffd value" in errors["python_grader_runtime_error_details"]


def test_lines_nested_100000_deep_are_flagged_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    data = write_jsonl(tmp_path / "data.jsonl", ['{"answer": "a"}', deep, '{"answer": "a"}'])
    samples = write_jsonl(tmp_path / "samples.jsonl", ['"a"', '"a"', '{"output_text": ' + deep + "}"])
    out = tmp_path / "results.jsonl"
    assert grade(json.dumps(CHECK), data, samples, out) == 1  # 2 of 3 rows failed: more than --max-error-rate
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"gradekit: error: 2 of 3 rows failed (67%), more than --max-error-rate 0.5; their errors are in {out}"
    )
    assert grade(json.dumps(CHECK), data, samples, out, "--max-error-rate", "1") == 0
    got = results(out)
    assert [r["reward"] for r in got] == [1.0, 0.0, 0.0]
    assert [r["metadata"]["errors"]["sample_parse_error"] for r in got] == [False, True, True]
    messages = [r["metadata"]["scores"]["error_details"]["exact\ufffd"]["message"] for r in got[1:]]
    assert messages == [f"data row {data}:2: invalid JSON: {TOO_DEEP}", f"{samples}:3: invalid JSON: {TOO_DEEP}"]
    err = capsys.readouterr().err
    assert f"{data}:2: invalid JSON: {TOO_DEEP}" in err and "Traceback" not in err


@pytest.mark.parametrize("which", ["--data", "--samples", "--grader", "hard link", "symlink", "relative"])
def test_out_that_is_an_input_is_refused_and_the_input_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", ['{"answer": "a"}'])
    samples = write_jsonl(tmp_path / "samples.jsonl", ['"a"'])
    grader_file = tmp_path / "grader.json"
    grader_file.write_text(json.dumps(CHECK))
    inputs = {p: p.read_bytes() for p in (data, samples, grader_file)}
    victim, option = {"--samples": (samples, "--samples"), "--grader": (grader_file, "--grader")}.get(
        which, (data, "--data")
    )
    out: Path = victim
    if which == "hard link":
        out = tmp_path / "linked.jsonl"
        os.link(data, out)
    elif which == "symlink":
        out = tmp_path / "symlinked.jsonl"
        out.symlink_to(data)
    elif which == "relative":
        monkeypatch.chdir(tmp_path)
        out = Path("sub/../data.jsonl")
        (tmp_path / "sub").mkdir()
    assert grade(str(grader_file), data, samples, out) == 1
    err = capsys.readouterr().err
    assert err == (
        f"gradekit: error: --out {out} is the same file as {option} {victim}: writing results there would "
        "destroy it; choose another --out\n"
    )
    assert {p: p.read_bytes() for p in inputs} == inputs


def test_out_that_is_an_input_is_refused_with_resume_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(b'{"answer": "a"}')  # no final newline: --resume would have cut it off as unfinished
    samples = write_jsonl(tmp_path / "samples.jsonl", ['"a"'])
    assert grade(json.dumps(CHECK), data, samples, data, "--resume") == 1
    assert "is the same file as --data" in capsys.readouterr().err
    assert data.read_bytes() == b'{"answer": "a"}'


def test_validate_and_run_print_surrogates_safely(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", json.dumps(CHECK)]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "exact\ufffd"
    assert cli.main(["run", json.dumps(CHECK), "--sample", "a\ud800", "--item", '{"answer": "a\\ud800"}']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reward"] == 1.0 and out["metadata"]["name"] == "exact\ufffd"


def test_a_deep_item_or_grader_argument_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert cli.main(["run", json.dumps(CHECK), "--sample", "a", "--item", deep]) == 1
    assert capsys.readouterr().err == f"gradekit: error: --item is not valid JSON: {TOO_DEEP}\n"
    assert cli.main(["validate", deep]) == 1
    err = capsys.readouterr().err
    # (how the grader loader words it is its own business: short, and no traceback)
    assert err.startswith("gradekit: ") and len(err) < 1200 and "Traceback" not in err
