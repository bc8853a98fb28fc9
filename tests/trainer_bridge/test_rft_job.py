"""The integrated RFT loop: metrics, events, checkpoints, eval runs, pause/resume, cancel, kill -9 and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from gradekit.graders.errors import ERROR_FLAGS
from gradekit.trainer_bridge import Hyperparameters, RFTJob
from gradekit.trainer_bridge.loop.evals import diff_eval_runs, read_eval_run
from gradekit.trainer_bridge.loop.job import JobError
from gradekit.trainer_bridge.models.policy import Policy

from .rft_task import FAST, GRADER, metrics

HYPER = {"n_epochs": 2, "batch_size": 4, "eval_interval": 2}  # 16 rows: 4 steps per epoch, 8 steps
Task = tuple[Path, Path, Path]


def make_job(task: Task, out: Path, **kwargs: Any) -> RFTJob:
    train, valid, base = task
    kwargs.setdefault("seed", 5)
    return RFTJob(base, GRADER, train, valid, HYPER, output_dir=out, options=FAST, progress=False, **kwargs)


@pytest.fixture(scope="module")
def finished(task: Task, tmp_path_factory: pytest.TempPathFactory) -> RFTJob:
    """One uninterrupted run, the reference for the other tests."""
    job = make_job(task, tmp_path_factory.mktemp("run") / "job")
    job.run()
    return job


def test_hyperparameters_resolve_auto_and_reject_bad_values() -> None:
    res = Hyperparameters().resolve(100)
    assert (res.n_epochs, res.batch_size, res.eval_samples, res.group_size) == (3, 8, 1, 8)
    assert res.steps_per_epoch == 13 and res.total_steps == 39 and res.eval_interval == 3
    res = Hyperparameters(compute_multiplier=0.5, reasoning_effort="high", batch_size=50).resolve(20)
    assert res.group_size == 4 and res.max_completion_tokens == 64 and res.batch_size == 20
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Hyperparameters(batch_size=0).resolve(10)
    with pytest.raises(ValueError, match="extra"):
        Hyperparameters.model_validate({"epochs": 3})


def test_a_run_reports_what_the_hosted_services_report(finished: RFTJob) -> None:
    record = json.loads((finished.dir / "job.json").read_text())
    # The openai SDK types multi.graders as one grader (not a dict): check the envelope with a single grader.
    envelope = json.loads(json.dumps(record))
    envelope["method"]["reinforcement"]["grader"] = GRADER["graders"]["team"]
    job = FineTuningJob.model_validate(envelope)
    assert job.status == "succeeded" and job.trained_tokens and job.trained_tokens > 0
    assert job.fine_tuned_model == f"ft:base:gradekit:{finished.id.removeprefix('ftjob-')}"
    assert job.method is not None and job.method.type == "reinforcement"
    assert record["gradekit"]["resolved"]["total_steps"] == 8

    events = finished.events
    for event in events:
        FineTuningJobEvent.model_validate(event)
    assert events[0]["message"] == f"Created fine-tuning job: {finished.id}"
    assert events[-1]["message"] == "The job has successfully completed"
    data = metrics(events)
    assert [d["step"] for d in data] == list(range(9))
    assert [d["step"] for d in data if "valid_reward_mean" in d] == [0, 2, 4, 6, 8]
    for d in data[1:]:
        assert 0.0 <= d["train_reward_mean"] <= 1.0
        assert set(d["graders"]) == {"ticket_routing", "team", "mentions_team"}
        # every grader, every flag, counted and rated (zeros included) under data.errors
        assert set(d["errors"]) == {"ticket_routing", "team", "mentions_team"}
        assert all(set(flags) == set(ERROR_FLAGS) for flags in d["errors"].values())
    first = next(e["data"] for e in events if e["type"] == "metrics" and e["data"]["step"] == 1)
    assert set(first["timing"]["step"]) == {"sampling", "training", "full_iteration"}  # OpenAI's shape
    own = {"generation_s", "grading_s", "grading_wait_s", "update_s", "step_s", "estimated_finish"}
    own |= {"sampled_tokens", "sampled_tokens_per_s", "trained_tokens", "trained_tokens_per_s"}
    assert set(first["gradekit"]) == own

    # the rewards in the events are the grader's verdicts on the samples written to the eval runs
    last = read_eval_run(finished.dir / "evals" / "step-000008.jsonl")
    assert len(last) == 8 and {r["index"] for r in last} == set(range(8))
    for line in last:
        assert line["reward"] == float(line["sample"] == line["item"]["team"])
    assert data[-1]["valid_reward_mean"] == pytest.approx(sum(r["reward"] for r in last) / 8)
    assert (finished.dir / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Policy.load(finished.dir / "final").name == "final"


def test_the_three_best_checkpoints_are_kept(finished: RFTJob) -> None:
    valid = {
        d["step"]: d["valid_reward_mean"] for d in metrics(finished.events) if d["step"] and "valid_reward_mean" in d
    }
    best = sorted(valid, key=lambda s: (valid[s], s), reverse=True)[:3]
    kept = finished.checkpoints
    assert [c.step_number for c in kept] == sorted(best, reverse=True)
    for ckpt in kept:
        assert ckpt.metrics["valid_reward_mean"] == valid[ckpt.step_number]
        assert ckpt.id.startswith("ftckpt_") and (ckpt.path / "model.safetensors").is_file()
    assert sorted(p.name for p in (finished.dir / "checkpoints").iterdir()) == [f"step-{s:06d}" for s in sorted(best)]


def test_same_seed_same_metrics_and_diffable_eval_runs(task: Task, finished: RFTJob, tmp_path: Path) -> None:
    again = make_job(task, tmp_path / "again")
    again.run()
    assert metrics(again.events) == metrics(finished.events)
    changes = list(
        diff_eval_runs(finished.dir / "evals" / "step-000000.jsonl", finished.dir / "evals" / "step-000008.jsonl")
    )
    for change in changes:
        assert change.before["sample"] != change.after["sample"] or change.reward_delta != 0


def test_pause_then_resume_reaches_the_same_metrics(task: Task, finished: RFTJob, tmp_path: Path) -> None:
    holder: dict[str, RFTJob] = {}

    def pause_after_step_3(event: dict[str, Any]) -> None:
        if event["type"] == "metrics" and event["data"]["step"] == 3:
            holder["job"].pause()

    job = make_job(task, tmp_path / "job", listener=pause_after_step_3)
    holder["job"] = job
    record = job.run()
    assert record["status"] == "paused" and record["fine_tuned_model"] is None
    assert job.events[-1]["message"] == "Fine-tuning job paused at step 3"
    assert Policy.load(next((job.dir / "snapshots").glob("snapshot-000003-*")))  # the pause snapshot is a model

    resumed = RFTJob.resume(job.dir, progress=False)
    assert resumed.run()["status"] == "succeeded"
    assert metrics(resumed.events) == metrics(finished.events)
    assert [c.step_number for c in resumed.checkpoints] == [c.step_number for c in finished.checkpoints]
    messages = [e["message"] for e in resumed.events]
    paused = messages.index("Fine-tuning job paused at step 3")
    assert messages[paused + 1] == "Fine-tuning job resumed from step 3"  # the pause event is kept


def test_cancel_stops_without_a_final_model(task: Task, tmp_path: Path) -> None:
    holder: dict[str, RFTJob] = {}

    def cancel_after_step_2(event: dict[str, Any]) -> None:
        if event["type"] == "metrics" and event["data"]["step"] == 2:
            holder["job"].cancel()

    job = make_job(task, tmp_path / "job", listener=cancel_after_step_2)
    holder["job"] = job
    record = job.run()
    assert record["status"] == "cancelled" and record["finished_at"] and record["fine_tuned_model"] is None
    assert not (job.dir / "final").exists()
    assert max(d["step"] for d in metrics(job.events)) == 2
    with pytest.raises(JobError, match="cancelled"):
        RFTJob.resume(job.dir)


def test_a_resume_from_an_earlier_snapshot_drops_what_was_written_after_it(task: Task, tmp_path: Path) -> None:
    saved = tmp_path / "snapshots-at-step-2"
    holder: dict[str, RFTJob] = {}

    def copy_snapshot_then_die(event: dict[str, Any]) -> None:
        if event["type"] != "metrics":
            return
        if event["data"]["step"] == 3:  # validation step 2's snapshot is the one in force
            shutil.copytree(holder["job"].dir / "snapshots", saved)
        if event["data"]["step"] == 7:  # after the checkpoints of steps 4 and 6
            raise RuntimeError("worker lost")

    job = make_job(task, tmp_path / "job", listener=copy_snapshot_then_die)
    holder["job"] = job
    with pytest.raises(JobError, match="worker lost"):
        job.run()
    assert {4, 6} <= {c.step_number for c in job.checkpoints}
    step_2 = next(d for d in metrics(job.events) if d["step"] == 2)
    # What a run killed after those checkpoints, before the snapshot after them was in force, leaves behind.
    shutil.rmtree(job.dir / "snapshots")
    shutil.copytree(saved, job.dir / "snapshots")

    def pause_at_once(event: dict[str, Any]) -> None:
        if event["type"] == "metrics":
            holder["job"].pause()

    # Paused after one replayed step, so the replay rewrites none of the later checkpoints or eval runs.
    resumed = RFTJob.resume(job.dir, progress=False, listener=pause_at_once)
    holder["job"] = resumed
    assert resumed.run()["status"] == "paused"
    assert [c.step_number for c in resumed.checkpoints] == [2]
    assert resumed.checkpoints[0].metrics["valid_reward_mean"] == step_2["valid_reward_mean"]
    assert sorted(p.name for p in (job.dir / "evals").iterdir()) == ["step-000000.jsonl", "step-000002.jsonl"]
    assert [d["step"] for d in metrics(resumed.events)] == [0, 1, 2, 3]


CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.trainer_bridge.rft_task import FAST, GRADER
from gradekit.trainer_bridge import RFTJob

def stop_at_step_5(event):
    if event["type"] == "metrics" and event["data"]["step"] >= 5:
        time.sleep(3600)  # waits here until the parent kills it mid-run, however loaded the machine

RFTJob({base!r}, GRADER, {train!r}, {valid!r}, {hyper!r}, seed=5, output_dir={out!r}, options=FAST,
       progress=False, listener=stop_at_step_5).run()
"""


def test_a_killed_run_resumes_from_its_last_snapshot(task: Task, finished: RFTJob, tmp_path: Path) -> None:
    train, valid, base = task
    out = tmp_path / "job"
    root = str(Path(__file__).resolve().parents[2])
    code = CHILD.format(root=root, base=str(base), train=str(train), valid=str(valid), hyper=HYPER, out=str(out))
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            events = out / "events.jsonl"
            if events.exists() and any(d["step"] >= 5 for d in metrics(_read(events))):
                break
            time.sleep(0.02)
        assert child.poll() is None, "the run ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert json.loads((out / "job.json").read_text())["status"] == "running"

    resumed = RFTJob.resume(out, progress=False)
    assert resumed.run()["status"] == "succeeded"
    assert metrics(resumed.events) == metrics(finished.events)  # nothing lost, nothing written twice
    ids = [e["id"] for e in resumed.events]
    assert len(ids) == len(set(ids))
    leftovers = [p for p in out.rglob(".*") if p.name.endswith((".tmp", ".old"))]
    assert leftovers == []
    assert [c.step_number for c in resumed.checkpoints] == [c.step_number for c in finished.checkpoints]


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def test_bad_training_data_fails_the_job_naming_file_line_and_field(task: Task, tmp_path: Path) -> None:
    train, valid, base = task
    bad = tmp_path / "bad.jsonl"
    lines = train.read_text().splitlines()
    lines[2] = json.dumps({"messages": [{"role": "assistant", "content": "hi"}], "team": "billing"})
    bad.write_text("\n".join(lines) + "\n")
    job = RFTJob(base, GRADER, bad, valid, HYPER, output_dir=tmp_path / "job", options=FAST, progress=False)
    with pytest.raises(JobError) as excinfo:
        job.run()
    assert excinfo.value.code == "invalid_training_file"
    assert f"{bad}:3: training file: the last message must have role 'user'" in excinfo.value.message
    record = json.loads((job.dir / "job.json").read_text())
    assert record["status"] == "failed" and record["error"]["code"] == "invalid_training_file"
    assert job.events[-1]["level"] == "error"


def test_grading_errors_are_counted_per_grader_and_flag(task: Task, tmp_path: Path) -> None:
    train, valid, base = task
    grader = {
        "type": "multi",
        "name": "routing",
        "graders": {
            "team": GRADER["graders"]["team"],
            "code": {**GRADER["graders"]["team"], "name": "code", "reference": "{{ item.team_code }}"},
        },
        "calculate_output": "team",
    }
    job = RFTJob(
        base, grader, train, valid, {"n_epochs": 1, "batch_size": 4, "eval_interval": 4},
        output_dir=tmp_path / "job", options=FAST, progress=False, seed=2,
    )  # fmt: skip
    assert job.run()["status"] == "succeeded"
    for d in metrics(job.events)[1:]:
        failed = d["errors"]["code"]["invalid_variable_error"]
        assert failed == {"count": 16, "rate": 1.0}  # every sample: no row has team_code
        assert d["errors"]["team"]["invalid_variable_error"]["count"] == 0
        assert d["graders"]["code"]["train_reward_mean"] == 0.0


def test_a_run_that_died_before_its_first_snapshot_starts_over_without_repeating_events(
    task: Task, finished: RFTJob, tmp_path: Path
) -> None:
    def die_while_validating(event: dict[str, Any]) -> None:
        if event["message"].startswith("Validating"):
            raise RuntimeError("worker lost")

    job = make_job(task, tmp_path / "job", listener=die_while_validating)
    with pytest.raises(JobError, match="worker lost"):
        job.run()
    assert not list((job.dir / "snapshots").glob("snapshot-*"))

    resumed = RFTJob.resume(job.dir, progress=False)
    assert resumed.run()["status"] == "succeeded"
    messages = [e["message"] for e in resumed.events]
    assert messages[:2] == [f"Created fine-tuning job: {job.id}", "Validating training file and validation file"]
    assert messages.count("Validating training file and validation file") == 1
    assert not any("failed" in m for m in messages)
    assert metrics(resumed.events) == metrics(finished.events)
    assert "training base for 8 steps" in messages[2]


def test_a_new_job_refuses_an_output_dir_holding_another_job(task: Task, finished: RFTJob) -> None:
    before = (finished.dir / "job.json").read_bytes(), (finished.dir / "events.jsonl").read_bytes()
    with pytest.raises(JobError) as caught:
        make_job(task, finished.dir).run()
    assert caught.value.code == "output_dir_in_use" and caught.value.param == "output_dir"
    assert str(finished.dir) in caught.value.message and finished.id in caught.value.message
    assert "(succeeded)" in caught.value.message and "--resume" in caught.value.message
    assert ((finished.dir / "job.json").read_bytes(), (finished.dir / "events.jsonl").read_bytes()) == before
