"""The Bedrock reward Lambda: cold start, a 64-sample batch against in-process `run_batch`, bundle size."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import best_of, table

from gradekit.graders import load_grader, run_batch
from gradekit.lambda_handlers import bedrock_reward_handler, parse_event

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "examples" / "security_review"
JSON_GRADER = {
    "type": "string_check",
    "name": "compliant",
    "input": "{{ sample.output_json.compliant }}",
    "reference": "{{ item.compliant }}",
    "operation": "eq",
}
RUNS = 7


def event(n: int) -> list[dict]:
    """`n` samples in Bedrock's form, from the shipped security-review data."""
    items = [json.loads(line) for line in (SECURITY / "valid.jsonl").read_text().splitlines()]
    answers = [json.loads(line) for line in (SECURITY / "samples.jsonl").read_text().splitlines()]
    out = []
    for i in range(n):
        item, answer = items[i % len(items)], answers[i % len(answers)]
        meta = {k: v for k, v in item.items() if k != "messages"}
        messages = [*item["messages"], {"role": "assistant", "content": answer}]
        out.append({"id": str(i), "messages": messages, "metadata": {"reference_answer": item["compliant"], **meta}})
    return out


def cold(code: str, env: dict[str, str]) -> float:
    """Median wall time of a fresh interpreter running `code` (minus the bare interpreter's start)."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print the three measurements."""
    with tempfile.TemporaryDirectory() as tmp:
        grader_file = Path(tmp) / "grader.json"
        grader_file.write_text(json.dumps(JSON_GRADER))
        event_file = Path(tmp) / "event.json"
        event_file.write_text(json.dumps(event(8)))
        env = {**os.environ, "GRADEKIT_GRADER": str(grader_file), "POWERTOOLS_METRICS_NAMESPACE": "bench"}
        bare = cold("pass", env)
        powertools = cold("from aws_lambda_powertools import Logger, Metrics", env) - bare
        ours = (
            cold(
                "import json; from gradekit.lambda_handlers.entry import handler; "
                f"handler(json.load(open({str(event_file)!r})), None)",
                env,
            )
            - bare
        )
    print(f"### cold start (median of {RUNS} fresh interpreters, interpreter start subtracted)\n")
    print(
        table(
            ["what", "ms", "ratio"],
            [
                ["import Powertools Logger and Metrics", f"{powertools * 1000:.0f}", "1.00"],
                [
                    "import handler module + first invocation (JSON grader)",
                    f"{ours * 1000:.0f}",
                    f"{ours / powertools:.2f}",
                ],
            ],
        )
    )
    grader = load_grader(SECURITY / "grader.json")
    batch = event(64)
    rows = parse_event(batch)
    samples, items = [r.sample for r in rows], [r.item for r in rows]
    devnull = open(os.devnull, "w")  # noqa: SIM115 - Powertools prints EMF and logs to stdout
    real_stdout, sys.stdout = sys.stdout, devnull
    try:
        handler = bedrock_reward_handler(grader, namespace="bench", service="bench")
        handler(batch, None)  # warm: scorers built, libraries imported
        t_handler = best_of(lambda: handler(batch, None), repeat=20)
        t_batch = best_of(lambda: run_batch(grader, samples, items), repeat=20)
    finally:
        sys.stdout = real_stdout
        devnull.close()
    print("\n### a batch of 64 samples, security-review multi grader (best of 20)\n")
    print(
        table(
            ["way", "ms per batch", "ratio"],
            [
                ["run_batch in-process", f"{t_batch * 1000:.2f}", "1.00"],
                [
                    "Lambda handler (parse, grade, response, logs, EMF)",
                    f"{t_handler * 1000:.2f}",
                    f"{t_handler / t_batch:.2f}",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
