"""A newcomer's mistakes at the `gradekit` command line: each is ONE line, `gradekit: error: ...`, exit non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from gradekit.runtime import cli
from gradekit.runtime.cli import FAIL_FAST_ROWS, main


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single error line the command printed (asserting it is one line with the shared prefix)."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert err.startswith("gradekit: error: "), err
    return err.removeprefix("gradekit: error: ").removesuffix("\n")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gradekit {version('gradekit')}\n"


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(
    port: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradekit.runtime import server

    monkeypatch.setattr(server, "serve", lambda *a, **k: pytest.fail("served on a bad port"))
    assert main(["serve", "--port", port]) == 2
    reason = f"{port!r} is not a port number" if port == "http" else f"{port} is not between 0 and 65535"
    assert one_line(capsys) == f"argument --port: {reason}; see 'gradekit serve --help'"


def test_usage_errors_of_plugin_commands_share_the_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lambda", "invoke", "--event", "e.json"]) == 2
    assert one_line(capsys) == ("one of the arguments --local --arn is required; see 'gradekit lambda invoke --help'")
    assert main(["evals", "diff", "a.jsonl"]) == 2
    assert one_line(capsys) == "the following arguments are required: after; see 'gradekit evals diff --help'"


def test_train_needs_no_validation_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gradekit.trainer_bridge.loop import job as job_module

    made: dict[str, object] = {}

    class FakeJob:
        def __init__(self, model: str, grader: object, train: str, valid: str, *args: object, **kwargs: object):
            made.update(train=train, valid=valid)
            raise job_module.JobError("stop", "stopped here")

    monkeypatch.setattr(job_module, "RFTJob", FakeJob)
    grader = tmp_path / "g.json"
    grader.write_text(
        '{"type": "string_check", "name": "g", "input": "{{ sample.output_text }}", "reference": "a", '
        '"operation": "eq"}'
    )
    assert main(["train", "--grader", str(grader), "--train", "t.jsonl"]) == 2
    assert made == {"train": "t.jsonl", "valid": "t.jsonl"}  # validation runs on the training file


def test_plugin_errors_use_the_shared_helper() -> None:
    assert cli.error_line("two\nlines") == "gradekit: error: two lines\n"


# --- grader files -------------------------------------------------------------------------------------------

GRADER = (
    '{"type": "string_check", "name": "g", "input": "{{ sample.output_text }}", "reference": "a", "operation": "eq"}'
)


def test_malformed_yaml_names_the_file_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: string_check\nname: g\ninput: [unclosed\nreference: a\n")
    assert main(["validate", str(bad)]) == 1
    assert one_line(capsys) == (
        f"invalid grader: {bad}: cannot read grader: not valid YAML at line 4, column 10: "
        "expected ',' or ']', but got ':'"
    )
    bad.write_text("type: string_check\n  name: g\n")
    assert main(["validate", str(bad)]) == 1
    assert one_line(capsys) == (
        f"invalid grader: {bad}: cannot read grader: not valid YAML at line 2, column 7: "
        "mapping values are not allowed here"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "{missing}"],
        ["run", "{missing}", "--sample", "a"],
        ["serve", "--grader", "{missing}"],
        ["grade", "--grader", "{missing}", "--data", "d.jsonl", "--samples", "s.jsonl", "--out", "{out}"],
        ["train", "--grader", "{missing}", "--train", "t.jsonl"],
    ],
)
def test_a_missing_grader_file_is_named(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradekit.runtime import server

    monkeypatch.setattr(server, "serve", lambda *a, **k: pytest.fail("served without its grader"))
    missing = tmp_path / "nope.json"
    code = main([a.format(missing=missing, out=tmp_path / "out.jsonl") for a in argv])
    assert (code, one_line(capsys)) == (1, f"grader file {missing} does not exist")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_grader_given_as_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "g.json").mkdir()
    assert main(["validate", str(tmp_path / "g.json")]) == 1
    assert one_line(capsys) == f"grader file {tmp_path / 'g.json'} is a directory"


# --- evals diff ---------------------------------------------------------------------------------------------


def eval_run(path: Path, samples: list[str], reward: float = 0.0) -> Path:
    """An eval run as `RFTJob` writes it: one line per validation sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"step": 0, "index": i, "sample_index": 0, "sample": s, "reward": reward, "item": {}, "messages": []}
        for i, s in enumerate(samples)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_evals_diff_on_files_that_are_not_eval_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = eval_run(tmp_path / "evals" / "step-000000.jsonl", ["a"])
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}], "answer": "a"}\n')
    assert main(["evals", "diff", str(good), str(data)]) == 1
    assert one_line(capsys) == (
        f"{data}:1: not an eval-run line (no 'index', 'sample_index', 'sample', 'reward'); "
        "an eval run is <run>/evals/step-N.jsonl"
    )
    text = tmp_path / "notes.txt"
    text.write_text('{"index": 0, "sample_index": 0, "sample": "a", "reward": 1}\nhello\n')
    assert main(["evals", "diff", str(text), str(good)]) == 1
    assert one_line(capsys) == (
        f"{text}:2: not JSON (Expecting value: line 1 column 1 (char 0)); an eval run is <run>/evals/step-N.jsonl"
    )


def test_evals_diff_on_a_step_that_does_not_exist_lists_the_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evals = tmp_path / "run" / "evals"
    for step in (0, 10, 20):
        eval_run(evals / f"step-{step:06d}.jsonl", ["a"])
    assert main(["evals", "diff", str(evals / "step-000000.jsonl"), str(evals / "step-000030.jsonl")]) == 1
    assert one_line(capsys) == f"{evals / 'step-000030.jsonl'}: no such eval run; {evals} has steps 0, 10, 20"
    nowhere = tmp_path / "nowhere" / "step-000001.jsonl"
    assert main(["evals", "diff", str(nowhere), str(evals / "step-000000.jsonl")]) == 1
    assert one_line(capsys) == f"{nowhere}: no such file (and no eval runs, step-N.jsonl, in {nowhere.parent})"


def test_evals_diff_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    n = 4000
    before = eval_run(tmp_path / "evals" / "step-000000.jsonl", [f"before {i} " + "x" * 200 for i in range(n)])
    after = eval_run(tmp_path / "evals" / "step-000010.jsonl", [f"after {i} " + "y" * 200 for i in range(n)], 1.0)
    argv = [sys.executable, "-m", "gradekit.runtime.cli", "evals", "diff", str(before), str(after), "--jsonl"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # `... | head -1`
        assert proc.stdout is not None and proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert (first["index"], first["reward_delta"]) == (0, 1.0)
    assert (code, err) == (141, "")


# --- the fine-tuning service's config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("missing.json", None, "no such file"),
        ("finetune.json", "data_dir: d\n", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (
            "finetune.yaml",
            "data_dir: [d\n",
            "not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'",
        ),
        (
            "finetune.json",
            '{"data_dir": "d", "base_model": {"m": "tiny-local"}}',
            "unknown key 'base_model' (did you mean 'base_models'? known keys: data_dir, base_models, lambda_graders, "
            "lambda_backend, max_concurrent_jobs, start_worker, options, poll_interval, shutdown_grace, "
            "max_worker_deaths, progress_interval, inference_cache, max_inference_tokens)",
        ),
        (
            "finetune.json",
            '{"data_dir": "d", "max_concurrent_jobs": 0}',
            "key 'max_concurrent_jobs': Input should be greater than or equal to 1",
        ),
        ("finetune.json", '{"base_models": {}}', "key 'data_dir' is required"),
        ("finetune.json", "[]", "the config must be an object, not list"),
    ],
)
def test_a_bad_finetune_config_is_one_line(
    name: str,
    text: str | None,
    reason: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gradekit.runtime import server

    config = tmp_path / name
    if text is not None:
        config.write_text(text)
    monkeypatch.setenv("GRADEKIT_FINETUNE_CONFIG", str(config))
    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **k: pytest.fail("served with a bad config"))
    assert main(["serve"]) == 1
    assert one_line(capsys) == f"GRADEKIT_FINETUNE_CONFIG: {config}: {reason}"


# --- gradekit grade when the grading or sampling service fails ---------------------------------------------

ROWS = 30


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A grader, ROWS data rows with chat messages, and one sample per row (all correct)."""
    grader = tmp_path / "grader.json"
    grader.write_text(GRADER)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) + "\n" for i in range(ROWS))
    )
    samples = tmp_path / "samples.jsonl"
    samples.write_text('"a"\n' * ROWS)
    return grader, data, samples


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sampling_from_a_closed_port_stops_at_once(
    dataset: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grader, data, _ = dataset
    url = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "out.jsonl"
    argv = ["grade", "--grader", str(grader), "--data", str(data), "--sample-from", url, "--model", "m"]
    assert main([*argv, "--out", str(out), "-q"]) == 1
    assert one_line(capsys) == f"--sample-from {url}: cannot connect: All connection attempts failed"
    assert out.read_text() == ""  # no row was graded as failed, so --resume later grades them all


def test_sampling_refused_with_401_stops_at_once(
    dataset: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client stopped at the first 401 and closed the other requests
                pass

        def log_message(self, *args: object) -> None:
            pass

    grader, data, _ = dataset

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a request the stopped client abandoned

    with Server(("127.0.0.1", 0), Refuse) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        argv = ["grade", "--grader", str(grader), "--data", str(data), "--sample-from", url, "--model", "m"]
        code = main([*argv, "--out", str(tmp_path / "out.jsonl"), "-q"])
        httpd.shutdown()
    assert code == 1
    assert one_line(capsys) == (
        f"--sample-from {url}: 401 Incorrect API key provided (the key comes from OPENAI_API_KEY)"
    )


def test_max_error_rate(dataset: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grader, data, samples = dataset
    samples.write_text('"a"\n' * 10 + '"b"\n' * 10 + "not json\n" * 10)  # "b" scores 0; 10 lines fail
    out = tmp_path / "out.jsonl"
    argv = ["grade", "--grader", str(grader), "--data", str(data), "--samples", str(samples), "--out", str(out), "-q"]
    assert main([*argv, "--max-error-rate", "0.2"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"gradekit: error: 10 of 30 rows failed (33%), more than --max-error-rate 0.2; their errors are in {out}"
    )
    assert len(out.read_text().splitlines()) == ROWS  # every row is written all the same
    assert main(argv) == 0  # the default, 0.5
    capsys.readouterr()
    assert main([*argv, "--max-error-rate", "2"]) == 2
    assert one_line(capsys) == "argument --max-error-rate: 2 is not between 0 and 1; see 'gradekit grade --help'"


@pytest.fixture
def no_aws_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS credentials anywhere boto3 looks (nor the instance metadata service); a region."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # An earlier test's default boto3 session caches the credentials it found (moto's): start without one.
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.mark.parametrize("rows", [ROWS, 3])
def test_the_lambda_backend_without_credentials_stops_the_run(
    rows: int,
    dataset: tuple[Path, Path, Path],
    tmp_path: Path,
    no_aws_credentials: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grader, data, samples = dataset
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:rows]))
    samples.write_text('"a"\n' * rows)
    arn = "arn:aws:lambda:us-east-1:123456789012:function:reward"
    out = tmp_path / "out.jsonl"
    argv = ["grade", "--grader", str(grader), "--data", str(data), "--samples", str(samples), "--out", str(out)]
    assert main([*argv, "--backend", f"lambda:{arn}", "--chunk-size", "4", "-q"]) == 1
    first = f"the first {FAIL_FAST_ROWS} rows" if rows > FAIL_FAST_ROWS else f"all {rows} row(s)"
    assert one_line(capsys) == (
        f"--backend lambda:{arn}: {first} failed alike, so the run stopped: "
        f"other_error: invoking Lambda {arn} failed: NoCredentialsError: Unable to locate credentials"
    )
    assert out.read_text() == ""


def test_lambda_invoke_with_a_missing_event_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = tmp_path / "event.json"
    assert main(["lambda", "invoke", "--local", str(tmp_path / "bundle.zip"), "--event", str(event)]) == 1
    assert one_line(capsys) == f"{event}: no such file"
