"""`gradekit serve` with no configuration: the fine-tuning API on ./gradekit-data, one line saying so; an open
bind address needs a key or --allow-open; a bad config file is one line; running jobs' progress in the log.

Every server here is `gradekit serve` in its own process, on 127.0.0.1, in a temporary working directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gradekit.runtime import cli
from gradekit.trainer_bridge.service.config import ServiceConfig
from gradekit.trainer_bridge.service.progress import ProgressLog, progress_line
from gradekit.trainer_bridge.service.store import JobRow, Store

from ...http import GRADEKIT, free_port, gradekit_serve
from ..rft_task import FAST, write_task
from .helpers import ARN, GRADER_FILE, client, rft_method, upload, wait_for

DEFAULT_SOURCE = "the default config; $GRADEKIT_FINETUNE_CONFIG may name a config file"


def _env(**extra: str) -> dict[str, str]:
    """This environment without a fine-tuning config or an API key, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRADEKIT_FINETUNE_CONFIG", "GRADEKIT_API_KEY")}
    return {**env, **extra}


@contextlib.contextmanager
def serve_in(cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`gradekit serve` in `cwd`: (base URL, its log)."""
    log = cwd / "serve.log"
    with gradekit_serve(log=log, cwd=cwd, env=env) as (url, _):
        yield url, log


def _lines(log: Path, prefix: str) -> list[str]:
    """The log's lines that start with `prefix`, without it."""
    return [line.removeprefix(prefix) for line in log.read_text().splitlines() if line.startswith(prefix)]


# --- no configuration ----------------------------------------------------------------------------------------


def test_serve_without_a_config_serves_the_fine_tuning_api_on_a_local_data_dir(tmp_path: Path) -> None:
    train, _ = write_task(tmp_path / "task", n_train=4, n_valid=1)
    cwd = tmp_path / "here"
    cwd.mkdir()
    with serve_in(cwd, _env()) as (url, log), client(url) as sdk:
        assert sdk.fine_tuning.jobs.list().data == []
        assert "tiny-local" in {m.id for m in sdk.models.list().data}
        file_id = upload(sdk, train)
        assert sdk.files.retrieve(file_id).status == "processed"
    data = cwd / "gradekit-data"
    assert (data / "service.db").is_file() and (data / "files" / f"{file_id}.jsonl").is_file()
    assert not (data / "worker.log").exists()  # no job was queued: the training worker never started
    assert _lines(log, "INFO:     fine-tuning API: ") == [f"data in {data} ({DEFAULT_SOURCE})"]


def test_an_unusable_data_dir_is_one_error_line_and_the_rest_is_served(tmp_path: Path) -> None:
    (tmp_path / "gradekit-data").write_text("a file where the data folder would go")
    with serve_in(tmp_path, _env()) as (url, log), client(url) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.fine_tuning.jobs.list()
        check = {"type": "string_check", "name": "c", "input": "{{ sample.output_text }}", "reference": "a"}
        assert sdk.fine_tuning.alpha.graders.run(grader=check | {"operation": "eq"}, model_sample="a").reward == 1.0
    data = tmp_path / "gradekit-data"
    problem = f"its data folder {data} cannot be used (File exists: {data})"
    assert caught.value.body == {
        "message": f"The fine-tuning service is off on this server: {problem}.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_enabled",
    }
    assert _lines(log, "ERROR:    fine-tuning API off: ") == [f"{problem} ({DEFAULT_SOURCE})"]
    assert "Traceback" not in log.read_text()


# --- the bind address ----------------------------------------------------------------------------------------


def test_an_open_address_without_a_key_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(GRADEKIT), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "gradekit: error: refusing to serve on 0.0.0.0 without an API key: anyone who can reach it could grade, "
        "upload files and train; give --api-key KEY (or $GRADEKIT_API_KEY), or --allow-open to serve it open\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing was created: the server never started


@pytest.mark.parametrize(
    ("args", "serves"),
    [
        (["--host", "0.0.0.0"], False),
        (["--host", "192.0.2.7"], False),
        (["--host", "example.internal"], False),
        (["--host", "0.0.0.0", "--allow-open"], True),
        (["--host", "0.0.0.0", "--api-key", "k"], True),
        (["--host", "127.0.0.5"], True),
        (["--host", "::1"], True),
        (["--host", "localhost"], True),
    ],
)
def test_which_addresses_need_a_key(
    args: list[str], serves: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradekit.runtime import server

    served: list[tuple[Any, ...]] = []
    monkeypatch.setattr(server, "serve", lambda *a, **k: served.append(a))
    monkeypatch.delenv("GRADEKIT_API_KEY", raising=False)
    assert cli.main(["serve", *args]) == (0 if serves else 1)
    assert [a[0] for a in served] == ([args[1]] if serves else [])
    err = capsys.readouterr().err
    if not serves:
        assert (
            err.startswith(f"gradekit: error: refusing to serve on {args[1]} without an API key")
            and err.count("\n") == 1
        )
    elif "--allow-open" in args:
        warning = "serving on 0.0.0.0 without an API key (--allow-open): anyone who reaches it can use it"
        assert err == f"gradekit: warning: {warning}\n"
    else:
        assert err == ""


# --- config mistakes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("missing.yaml", None, "no such file"),
        ("finetune.json", "data_dir = 'x'\n", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("finetune.yml", "data_dir: [x\n", "not valid YAML at line 2, column 1: expected ',' or ']'"),
        (
            "finetune.json",
            '{"data_dir": "d", "base_model": {"m": "tiny-local"}}',
            "unknown key 'base_model' (did you mean 'base_models'?",
        ),
    ],
)
def test_a_bad_config_file_stops_serve_with_one_line(tmp_path: Path, name: str, text: str | None, says: str) -> None:
    config = tmp_path / name
    if text is not None:
        config.write_text(text)
    done = subprocess.run(
        [str(GRADEKIT), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=_env(GRADEKIT_FINETUNE_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"gradekit: error: GRADEKIT_FINETUNE_CONFIG: {config}: {says}")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "gradekit-data").exists()


# --- progress lines ------------------------------------------------------------------------------------------

METRICS = {
    "step": 3,
    "total_steps": 12,
    "train_reward_mean": 0.45,
    "valid_reward_mean": 0.5,
    "errors": {
        "routing": {"sample_parse_error": {"count": 2, "rate": 0.25}, "other_error": {"count": 0, "rate": 0.0}},
        "team": {"sample_parse_error": {"count": 8, "rate": 1.0}},
    },
    "valid_errors": {"routing": {"sample_parse_error": {"count": 0, "rate": 0.0}}},
    "valid_no_reward": {"routing": {"count": 1, "rate": 0.125}, "team": {"count": 0, "rate": 0.0}},
}


def test_a_progress_line_holds_the_step_the_rewards_and_the_error_rates() -> None:
    assert progress_line("ftjob-1", METRICS) == (
        "ftjob-1: step 3/12 train_reward_mean=0.4500 valid_reward_mean=0.5000 "
        "errors: train sample_parse_error=0.250, valid no_reward=0.125"
    )
    quiet = {"step": 1, "total_steps": 2, "train_reward_mean": 1.0, "errors": {"g": {"other_error": {"rate": 0.0}}}}
    assert progress_line("ftjob-2", quiet) == "ftjob-2: step 1/2 train_reward_mean=1.0000 errors: none"


def _event(data: dict[str, Any]) -> str:
    return json.dumps({"object": "fine_tuning.job.event", "type": "metrics", "message": "m", "data": data}) + "\n"


def test_the_progress_log_gives_the_newest_step_of_each_interval_then_the_outcome(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=tmp_path)
    store = Store(config.db_path)
    job = {"status": "running", "fine_tuned_model": None, "error": None, "finished_at": None}
    store.add_job(JobRow("ftjob-a", job, {"fine_tuned_model": "ft:tiny-local:gradekit:a"}))
    events = config.jobs_dir / "ftjob-a" / "events.jsonl"
    events.parent.mkdir(parents=True)
    progress = ProgressLog(config, store)
    assert progress.tick() == []  # running, nothing written yet
    steps = [{**METRICS, "step": n, "train_reward_mean": n / 10, "errors": {}} for n in (1, 2, 3)]
    events.write_text("".join(_event(d) for d in steps) + '{"type": "mess')
    assert progress.tick() == [progress_line("ftjob-a", steps[2])]  # three steps in one interval: the newest
    assert progress.tick() == []
    with open(events, "a") as f:
        f.write('age"}\n' + _event(steps[0] | {"step": 4}))
    done = {**job, "status": "succeeded", "fine_tuned_model": "ft:tiny-local:gradekit:a", "finished_at": 1}
    store.modify_job("ftjob-a", lambda row: row.with_object(**done))
    assert progress.tick() == [
        progress_line("ftjob-a", steps[0] | {"step": 4}),
        "ftjob-a: succeeded (ft:tiny-local:gradekit:a)",
    ]
    assert progress.tick() == []


def test_serve_logs_a_running_jobs_progress(tmp_path: Path) -> None:
    train, valid = write_task(tmp_path / "task", n_train=4, n_valid=2)
    settings = {
        "data_dir": "data",
        "lambda_graders": {ARN: str(GRADER_FILE)},
        "options": FAST,
        "poll_interval": 0.05,
        "progress_interval": 0.1,
    }
    (tmp_path / "finetune.json").write_text(json.dumps(settings))
    env = _env(GRADEKIT_FINETUNE_CONFIG=str(tmp_path / "finetune.json"))
    with serve_in(tmp_path, env) as (url, log), client(url) as sdk:
        job = sdk.fine_tuning.jobs.create(
            model="tiny-local",
            training_file=upload(sdk, train),
            validation_file=upload(sdk, valid),
            extra_body={"method": rft_method(n_epochs=1, batch_size=2, eval_interval=1)},
        )
        done = wait_for(sdk, job.id, timeout=180.0)
        assert done.status == "succeeded", done.error
        events = sdk.fine_tuning.jobs.list_events(job.id, limit=100).data[::-1]
        # The outcome line follows the last step's within an interval or two.
        deadline = time.monotonic() + 30
        while not any("succeeded" in line for line in _lines(log, "INFO:     fine-tuning ")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    metrics = {e.data["step"]: e.data for e in events if e.type == "metrics" and e.data}
    assert sorted(metrics) == [0, 1, 2]
    lines = [line for line in _lines(log, "INFO:     fine-tuning ") if line.startswith(job.id)]
    assert lines[-1] == f"{job.id}: succeeded ({done.fine_tuned_model})"
    logged = lines[:-1]
    assert logged and logged[-1] == progress_line(job.id, metrics[2])  # the last step, always
    for line in logged:  # every line is one step's metrics event, in order
        step = int(line.split(" step ")[1].split("/")[0])
        assert line == progress_line(job.id, metrics[step])
    assert [int(line.split(" step ")[1].split("/")[0]) for line in logged] == sorted(
        {int(line.split(" step ")[1].split("/")[0]) for line in logged}
    )
    assert f"{job.id}: step 2/2 train_reward_mean=" in logged[-1] and "valid_reward_mean=" in logged[-1]
    assert _lines(log, "INFO:     fine-tuning API: ") == [
        f"data in {tmp_path / 'data'} (config file {tmp_path}/finetune.json)"
    ]
