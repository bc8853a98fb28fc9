"""The `gradekit` command line, called in-process through `main` and once as the installed executable."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from gradekit.graders import Score, grader, load_grader, run_batch
from gradekit.graders.aggregate import Aggregate
from gradekit.runtime import cli
from gradekit.runtime.jsonl import JsonlError, JsonlWriter, count_lines, iter_lines
from gradekit.runtime.report import format_summary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "security_review"
GRADER = EXAMPLE / "grader.json"
DATA = EXAMPLE / "valid.jsonl"
SAMPLES = EXAMPLE / "samples.jsonl"

CALLS: list[str] = []


@grader
def counting(sample: dict[str, Any], item: dict[str, Any]) -> Score:
    """The example's `compliant` check, recording which rows it graded."""
    CALLS.append(item["question_id"])
    ok = isinstance(sample["output_json"], dict) and sample["output_json"].get("compliant") == item["compliant"]
    return Score(reward=1.0 if ok else 0.0, scores={"qid": item["question_id"]})


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(path)]


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A result line without its timing."""
    out = json.loads(json.dumps(row))
    del out["metadata"]["execution_time"]
    return out


def expected() -> tuple[Any, Aggregate]:
    """`run_batch` on the example: the reference the CLI must agree with."""
    items = [json.loads(x) for x in lines(DATA)]
    samples = [json.loads(x) for x in lines(SAMPLES)]
    batch = run_batch(load_grader(GRADER), samples, items)
    agg = Aggregate(name="security_review")
    agg.add_batch(batch)
    return batch, agg


def grade(out: Path, *extra: str, grader: str = str(GRADER), samples: Path = SAMPLES, data: Path = DATA) -> int:
    return cli.main(
        ["grade", "--grader", grader, "--data", str(data), "--samples", str(samples), "--out", str(out), *extra]
    )


@pytest.mark.parametrize("tuning", [[], ["--chunk-size", "5", "--concurrency", "3"]])
def test_grade_security_review(tmp_path: Path, capsys: pytest.CaptureFixture[str], tuning: list[str]) -> None:
    out = tmp_path / "results.jsonl"
    assert grade(out, "-q", *tuning) == 0
    batch, agg = expected()
    got = rows(out)
    assert len(got) == 24
    assert [r["row"] for r in got] == list(range(24))
    assert [r["reward"] for r in got] == batch.rewards
    assert [r["sub_rewards"] for r in got] == [batch[i].sub_rewards for i in range(24)]
    for i, r in enumerate(got):
        assert r["metadata"]["errors"] == batch[i].metadata.errors.model_dump()
    stdout = capsys.readouterr().out
    title = f"grader: security_review (multi) on {DATA}"
    assert stdout == format_summary(agg.summary(), title=title)
    assert "samples graded      24" in stdout and "per-grader reward means" in stdout
    assert "invalid_variable_error" in stdout


def test_installed_executable(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "gradekit"
    if not exe.exists():
        pytest.skip("the gradekit console script is not installed in this environment")
    out = tmp_path / "results.jsonl"
    args = ["grade", "--grader", str(GRADER), "--data", str(DATA), "--samples", str(SAMPLES), "--out", str(out)]
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(lines(out)) == 24
    assert "samples graded      24" in done.stdout
    assert "24/24" in done.stderr  # the progress bar
    done = subprocess.run([str(exe), "validate", "{}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "grader has no `type` field" in done.stderr


def test_broken_sample_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "samples.jsonl"
    text = lines(SAMPLES)
    text[4] = '{"compliant": "no", '
    broken.write_text("\n".join(text) + "\n")
    out = tmp_path / "results.jsonl"
    assert grade(out, "-q", samples=broken) == 0
    err = capsys.readouterr().err
    assert f"{broken}:5: invalid JSON" in err
    got = rows(out)
    assert len(got) == 24
    row = got[4]
    assert row["reward"] == 0.0 and row["metadata"]["errors"]["sample_parse_error"] is True
    assert f"{broken}:5:" in row["metadata"]["scores"]["error_details"]["security_review"]["message"]
    batch, _ = expected()
    assert [r["reward"] for i, r in enumerate(got) if i != 4] == [x for i, x in enumerate(batch.rewards) if i != 4]


def test_broken_data_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    text = lines(DATA)
    text[2] = "not json"
    text[3] = "[1, 2]"
    data.write_text("\n".join(text) + "\n")
    out = tmp_path / "results.jsonl"
    assert grade(out, "-q", data=data) == 0
    err = capsys.readouterr().err
    assert f"{data}:3: invalid JSON" in err and f"{data}:4: data row is a list" in err
    got = rows(out)
    assert len(got) == 24
    assert [got[i]["metadata"]["errors"]["sample_parse_error"] for i in (2, 3)] == [True, True]
    assert got[0]["reward"] == 1.0


@pytest.mark.parametrize("keep", [23, 25])
@pytest.mark.parametrize("lazy", [False, True])
def test_sample_count_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, keep: int, lazy: bool
) -> None:
    if lazy:  # as if the files were pipes: the mismatch shows only once one of them runs out
        monkeypatch.setattr(cli, "count_lines", lambda path: None)
    samples = tmp_path / "samples.jsonl"
    text = lines(SAMPLES)
    samples.write_text("\n".join((text + text)[:keep]) + "\n")
    out = tmp_path / "results.jsonl"
    assert grade(out, "-q", samples=samples) == 1
    err = capsys.readouterr().err
    assert f"gradekit: error: {samples} has {keep} sample line(s) but {DATA} has 24 row(s)" in err
    if not lazy:
        assert not out.exists()


def test_resume_after_a_killed_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"{__name__}:counting"
    full = tmp_path / "full.jsonl"
    CALLS.clear()
    assert grade(full, "-q", "--chunk-size", "4", grader=ref) == 0
    full_summary = capsys.readouterr().out
    qids = [json.loads(x)["question_id"] for x in lines(DATA)]
    assert qids == CALLS

    part = tmp_path / "part.jsonl"
    kept = lines(full)
    part.write_text("\n".join(kept[:10]) + "\n" + kept[10][: len(kept[10]) // 2])
    CALLS.clear()
    assert grade(part, "-q", "--resume", "--chunk-size", "4", grader=ref) == 0
    captured = capsys.readouterr()
    assert sorted(CALLS) == sorted(qids[10:])  # the finished rows were not graded again
    assert "dropped an unfinished last line" in captured.err and "10 row(s) already graded" in captured.err
    assert [comparable(r) for r in rows(part)] == [comparable(r) for r in rows(full)]
    assert captured.out == full_summary

    CALLS.clear()  # nothing left to do: the summary comes from the file alone
    assert grade(part, "-q", "--resume", grader=ref) == 0
    assert CALLS == [] and capsys.readouterr().out == full_summary
    assert len(lines(part)) == 24

    assert grade(part, "-q", "--resume") == 1  # another grader wrote it
    assert "written by grader 'counting', not 'security_review'" in capsys.readouterr().err


def test_resume_refuses_a_damaged_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.jsonl"
    assert grade(out, "-q") == 0
    kept = lines(out)
    kept[3] = "garbage"
    out.write_text("\n".join(kept) + "\n")
    capsys.readouterr()
    assert grade(out, "-q", "--resume") == 1
    assert f"{out}:4: invalid JSON" in capsys.readouterr().err
    assert lines(out)[3] == "garbage"  # left as it was


def test_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(GRADER)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(GRADER.read_text())
    bad = {
        "type": "multi",
        "name": "m",
        "graders": {
            "a": {"type": "string_check", "name": "a", "input": "x", "reference": "y", "operation": "same"},
            "b": {"type": "text_similarity", "name": "b", "input": "x", "reference": "y", "evaluation_metric": "nope"},
        },
        "calculate_output": "a",
    }
    assert cli.main(["validate", json.dumps(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradekit: error: invalid grader (2 problems): ") and err.count("\n") == 1
    assert (
        "multi.graders.a.string_check.operation" in err and "multi.graders.b.text_similarity.evaluation_metric" in err
    )
    yaml_file = tmp_path / "g.yaml"
    yaml_file.write_text(
        "type: string_check\nname: y\ninput: '{{ sample.output_text }}'\nreference: a\noperation: eq\n"
    )
    assert cli.main(["validate", str(yaml_file)]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "y"
    assert cli.main(["validate", f"{__name__}:counting"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "name": "counting",
        "type": "function",
        "function": f"{__name__}:counting",
    }
    assert cli.main(["validate", str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().err == f"gradekit: error: grader file {tmp_path / 'missing.json'} does not exist\n"
    assert cli.main(["validate", "missing"]) == 1
    assert capsys.readouterr().err == (
        "gradekit: error: invalid grader: 'missing' is neither a grader file, JSON, nor a `module:function`\n"
    )


def test_run(capsys: pytest.CaptureFixture[str]) -> None:
    check = json.dumps(
        {
            "type": "string_check",
            "name": "c",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        }
    )
    assert cli.main(["run", check, "--sample", "yes", "--item", '{"answer": "yes"}']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reward"] == 1.0 and result["metadata"]["name"] == "c"
    assert set(result) == {"reward", "sub_rewards", "model_grader_token_usage_per_model", "metadata"}
    assert cli.main(["run", check, "--sample", "yes"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reward"] == 0.0 and result["metadata"]["errors"]["invalid_variable_error"] is True
    assert cli.main(["run", check, "--sample", "yes", "--item", "[1]"]) == 1
    assert "--item must be a JSON object, got list" in capsys.readouterr().err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["grade", "--grader", str(GRADER)]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.main(["grade", "--grader", str(GRADER), "--data", str(DATA), "--out", str(tmp_path / "o")]) == 1
    assert "give exactly one of --samples and --sample-from" in capsys.readouterr().err
    assert cli.main(["grade", "--grader", str(GRADER), "--data", str(DATA), "--out", "o", "--sample-from", "x"]) == 1
    assert "--sample-from needs --model" in capsys.readouterr().err
    assert grade(tmp_path / "o", "--chunk-size", "0") == 2
    assert grade(tmp_path / "o", data=tmp_path / "nope.jsonl") == 1
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0


def register_hello(subparsers: Any) -> None:
    """A command plugin (loaded through a faked `gradekit.commands` entry point)."""
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")

    def handler(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 7

    p.set_defaults(func=handler)


def test_command_plugins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    eps = [
        EntryPoint("broken", "tests.runtime.no_such_module:register", cli.COMMANDS_GROUP),
        EntryPoint("clash", f"{__name__}:register_hello", cli.COMMANDS_GROUP),  # same name twice: the 2nd fails
        EntryPoint("hello", f"{__name__}:register_hello", cli.COMMANDS_GROUP),
    ]
    monkeypatch.setattr(cli, "entry_points", lambda group: eps if group == cli.COMMANDS_GROUP else [])
    with caplog.at_level(logging.WARNING, logger="gradekit.runtime.cli"):
        assert cli.main(["hello", "--name", "gradekit"]) == 7
    assert capsys.readouterr().out == "hello gradekit\n"
    failed = {r.getMessage().split("'")[1] for r in caplog.records}
    assert failed == {"broken", "hello"}
    assert cli.main(["validate", str(GRADER)]) == 0


def test_serve_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradekit.runtime import server

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(server, "serve", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("GRADEKIT_API_KEY", "from-env")
    assert cli.main(["serve", "--port", "9999"]) == 0
    assert cli.main(["serve", "--api-key", "given", "--host", "127.0.0.2"]) == 0
    assert calls[0][0] == ("127.0.0.1", 9999, "from-env")
    assert calls[1][0] == ("127.0.0.2", 8000, "given")
    assert calls[0][1]["max_body_bytes"] == 8 * 1024 * 1024


def test_sample_from_an_openai_compatible_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradekit.testing import fake_llm

    data_rows = [json.loads(x) for x in lines(DATA)]
    data_rows[0]["response_format"] = {"type": "json_object"}
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in data_rows))
    answers = {r["messages"][-1]["content"]: json.loads(s) for r, s in zip(data_rows, lines(SAMPLES), strict=True)}
    refused = data_rows[6]["messages"][-1]["content"]

    def script(body: dict[str, Any], n: int) -> Any:
        question = body["messages"][-1]["content"]
        if question == refused:
            return fake_llm.Status(400, "this prompt is not allowed")
        return fake_llm.Text(answers[question])

    monkeypatch.setenv("OPENAI_API_KEY", "sampling-key")
    out = tmp_path / "results.jsonl"
    with fake_llm.FakeLLM(script=script) as llm:
        argv = ["grade", "--grader", str(GRADER), "--data", str(data), "--out", str(out), "-q"]
        argv += ["--sample-from", llm.base_url, "--model", "policy-model", "--sample-concurrency", "3"]
        assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert f"{data}:7: sampling failed" in err and "this prompt is not allowed" in err
    requests = llm.chat_requests
    assert len(requests) == 24
    assert {r.body["model"] for r in requests} == {"policy-model"}
    assert all(r.headers["authorization"] == "Bearer sampling-key" for r in requests)
    first = next(r.body for r in requests if r.body["messages"] == data_rows[0]["messages"])
    assert first["response_format"] == {"type": "json_object"}
    assert all("response_format" not in r.body for r in requests if r.body is not first)
    batch, _ = expected()
    got = rows(out)
    assert [r["row"] for r in got] == list(range(24))
    assert got[6]["reward"] == 0.0 and got[6]["metadata"]["errors"]["sample_parse_error"] is True
    assert "sampling failed" in got[6]["metadata"]["scores"]["error_details"]["security_review"]["message"]
    assert [r["reward"] for i, r in enumerate(got) if i != 6] == [x for i, x in enumerate(batch.rewards) if i != 6]

    # Resuming samples only the rows that are missing.
    out.write_text("".join(line + "\n" for line in lines(out)[:20]))
    with fake_llm.FakeLLM(script=script) as llm:
        argv[argv.index("--sample-from") + 1] = llm.base_url
        assert cli.main([*argv, "--resume"]) == 0
    assert llm.count == 4
    assert sorted(r.body["messages"][-1]["content"] for r in llm.chat_requests) == sorted(
        r["messages"][-1]["content"] for r in data_rows[20:]
    )
    assert [comparable(r) for r in rows(out)] == [comparable(r) for r in got]


@grader
def interrupting(item: dict[str, Any]) -> float:
    """Rewards 1, but stops the run (as Ctrl-C would) at row 20."""
    if item["question_id"] == "q020":
        raise KeyboardInterrupt
    return 1.0


def test_interrupted_run_keeps_finished_rows(tmp_path: Path) -> None:
    # In a child process: an interrupt that escapes an event loop leaves CPython 3.11 unfit to go on.
    out = tmp_path / "results.jsonl"
    argv = ["grade", "--grader", f"{__name__}:interrupting", "--data", str(DATA), "--samples", str(SAMPLES)]
    argv += ["--out", str(out), "-q", "--chunk-size", "2", "--concurrency", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "gradekit.runtime.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 130, done.stderr
    assert "interrupted; 20 new row(s) written" in done.stderr and "--resume" in done.stderr
    kept = rows(out)
    assert [r["row"] for r in kept] == list(range(20))
    assert all(r["reward"] == 1.0 for r in kept)


def test_jsonl_writer_flushes_while_writing(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    with JsonlWriter(path, flush_interval=0.0) as w:
        w.write({"a": 1})
        assert path.read_text() == '{"a":1}\n'
    with JsonlWriter(path, append=True, flush_interval=3600.0) as w:
        w.write_line('{"b":2}')
        assert path.read_text() == '{"a":1}\n'  # buffered until the interval passes or the writer closes
    assert path.read_text() == '{"a":1}\n{"b":2}\n' and w.count == 1


def test_jsonl_lines_blank_crlf_bom_and_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n   \n"two"\n\xff\xfe\n[3]')
    got = list(iter_lines(path))
    assert [line.number for line in got] == [1, 4, 5, 6]
    assert got[0].parse() == {"a": 1} and got[1].parse() == "two" and got[3].parse() == [3]
    with pytest.raises(JsonlError, match=r"x\.jsonl:5: not UTF-8"):
        got[2].parse()
    assert count_lines(path) == 4
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert count_lines(fifo) is None
    assert count_lines(tmp_path / "missing") is None
