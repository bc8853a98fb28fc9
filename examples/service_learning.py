"""The local fine-tuning service as a newcomer meets it: no config file, the default base model, a shipped task.

    python examples/service_learning.py                  # ticket routing (the default)
    python examples/service_learning.py sentiment

It starts `gradekit serve` on a free loopback port with no configuration (its data in
`gradekit-runs/service-<task>/gradekit-data`), uploads the task's training and validation files with the
`openai` SDK, creates a reinforcement fine-tuning job on `smollm2-135m-instruct` with the task's grader, prints
`valid_reward_mean` as the job's metrics events arrive, and then asks the base model and the fine-tuned model
every validation prompt, greedily: it counts the answers that are an allowed answer and the right one, and
prints the first prompts the two answer differently. The server is stopped at the end. Needs the model
(docs/models.md); `GRADEKIT_DEMO_DIR` sets the output folder, `GRADEKIT_DEMO_MODEL` another base model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from openai import OpenAI

HERE = Path(__file__).parent
MODEL = os.environ.get("GRADEKIT_DEMO_MODEL", "smollm2-135m-instruct")  # the service's default base model
#: Each task: its folder, data files, grader, steps of `batch_size` prompts, and the reply length
#: (`max_completion_tokens`, a job hyperparameter: the answer's length; the rest are the service's "auto" settings).
#: Ticket routing uses its few-shot files: without worked examples the base model never answers with a team.
TASKS: dict[str, dict[str, Any]] = {
    "ticket_routing": {
        "folder": "ticket_routing",
        "train": "train_fewshot.jsonl",
        "valid": "valid_fewshot.jsonl",
        "grader": "grader.json",
        "answer": "team",
        "steps": 24,
        "max_tokens": 6,
    },
    "sentiment": {
        "folder": "sentiment",
        "train": "train.jsonl",
        "valid": "valid.jsonl",
        "grader": "grader.json",
        "answer": "label",
        "steps": 8,
        "max_tokens": 4,
    },
}
BATCH_SIZE = 4
EVAL_INTERVAL = 4
SHOWN = 6  # validation prompts answered differently by the two models, shown at the end
TIMEOUT_S = 3600  # the job must finish within this


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, port: int) -> subprocess.Popen[str]:
    """`gradekit serve` with no config file, its data in `folder`, ready to answer."""
    gradekit = Path(sys.executable).with_name("gradekit")
    server = subprocess.Popen(
        [str(gradekit), "serve", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    threading.Thread(target=forward_progress, args=(server,), daemon=True).start()
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="anything", max_retries=0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gradekit serve exited with {server.returncode}")
        try:
            client.models.list()
            return server
        except Exception:  # not listening yet
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("gradekit serve did not answer within 120 s")


def forward_progress(server: subprocess.Popen[str]) -> None:
    """Print the server's own lines (where its data is, each job's progress, errors), not its access log."""
    assert server.stdout is not None
    for line in server.stdout:
        if "HTTP/1.1" not in line:
            print(f"  server: {line.rstrip()}", flush=True)


def first_rows(path: Path, n: int) -> bytes:
    """The first `n` lines of a JSONL file."""
    return b"".join(path.read_bytes().splitlines(keepends=True)[:n])


def train(client: OpenAI, task: dict[str, Any]) -> Any:
    """Upload the data, create the job, print each validation step's reward as it arrives; the finished job."""
    folder = HERE / task["folder"]
    rows = BATCH_SIZE * task["steps"]
    upload = client.files.create
    train_file = upload(file=(task["train"], first_rows(folder / task["train"], rows)), purpose="fine-tune")
    valid_file = upload(file=(task["valid"], (folder / task["valid"]).read_bytes()), purpose="fine-tune")
    grader = json.loads((folder / task["grader"]).read_text())
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=train_file.id,
        validation_file=valid_file.id,
        suffix=task["folder"].replace("_", "-"),
        seed=1,
        method={
            "type": "reinforcement",
            "reinforcement": {
                "grader": grader,
                "hyperparameters": {
                    "n_epochs": 1,
                    "batch_size": BATCH_SIZE,
                    "eval_interval": EVAL_INTERVAL,
                    "max_completion_tokens": task["max_tokens"],
                },
            },
        },
    )
    print(f"job {job.id} on {MODEL}: {rows} training rows, {task['steps']} steps")
    seen: set[str] = set()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job.id)
        for event in reversed(client.fine_tuning.jobs.list_events(job.id, limit=100).data):
            data = event.data if isinstance(event.data, dict) else {}
            if event.id not in seen and event.type == "metrics" and "valid_reward_mean" in data:
                print(f"  step {data['step']:>3}: valid_reward_mean {data['valid_reward_mean']:.3f}", flush=True)
            seen.add(event.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(5)
    raise SystemExit(f"job {job.id} did not finish within {TIMEOUT_S} s")


def compare(client: OpenAI, task: dict[str, Any], fine_tuned: str) -> None:
    """Both models' greedy answers on every validation prompt: how many are an allowed answer and how many the
    right one, then the first prompts they answer differently."""
    rows = [json.loads(line) for line in (HERE / task["folder"] / task["valid"]).read_text().splitlines()]
    allowed = {row[task["answer"]] for row in rows}
    answers: dict[str, list[str]] = {}
    for model in (MODEL, fine_tuned):
        answers[model] = []
        for row in rows:
            reply = client.chat.completions.create(model=model, messages=row["messages"], max_tokens=16, temperature=0)
            answers[model].append(" ".join((reply.choices[0].message.content or "").split()))
        named = sum(a in allowed for a in answers[model])
        right = sum(a == row[task["answer"]] for a, row in zip(answers[model], rows, strict=True))
        print(f"{model}: {named} of {len(rows)} greedy answers name an allowed answer, {right} the right one")
    differ = [i for i, (a, b) in enumerate(zip(answers[MODEL], answers[fine_tuned], strict=True)) if a != b]
    for i in differ[:SHOWN]:
        print(f"\n{rows[i]['messages'][-1]['content']}\n  expected:   {rows[i][task['answer']]!r}")
        print(f"  base:       {answers[MODEL][i]!r}\n  fine-tuned: {answers[fine_tuned][i]!r}")


def main() -> int:
    """Run the whole flow for the task named on the command line."""
    name = sys.argv[1] if len(sys.argv) > 1 else "ticket_routing"
    if name not in TASKS:
        print(f"service_learning.py: unknown task {name!r} (tasks: {', '.join(TASKS)})", file=sys.stderr)
        return 2
    task = TASKS[name]
    work = Path(os.environ.get("GRADEKIT_DEMO_DIR", f"gradekit-runs/service-{name}")).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the server
    port = free_port()
    started = time.monotonic()
    server = start_server(work, port)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="anything")
        job = train(client, task)
        print(f"job {job.id}: {job.status} in {time.monotonic() - started:.0f} s; model {job.fine_tuned_model}")
        if job.status != "succeeded":
            print(f"error: {job.error}", file=sys.stderr)
            return 1
        compare(client, task, job.fine_tuned_model)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
