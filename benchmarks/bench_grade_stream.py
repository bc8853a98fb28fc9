"""Streaming 1,000,000 `string_check` rows through `gradekit grade`: peak RSS must stay under 300 MB."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import table

N = int(os.environ.get("GRADEKIT_BENCH_ROWS", 1_000_000))
GRADER = {
    "type": "string_check",
    "name": "answer",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def main() -> None:
    """Write the files, grade them in a child process, report its peak RSS and throughput."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "grader.json").write_text(json.dumps(GRADER))
        with open(d / "data.jsonl", "w") as data, open(d / "samples.jsonl", "w") as samples:
            for i in range(N):
                data.write(
                    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}], "answer": str(i % 7)}) + "\n"
                )
                samples.write(json.dumps(str(i % 5)) + "\n")
        gradekit = Path(sys.executable).with_name("gradekit")
        cmd = [str(gradekit), "grade", "--grader", str(d / "grader.json"), "--data", str(d / "data.jsonl")]
        cmd += ["--samples", str(d / "samples.jsonl"), "--out", str(d / "results.jsonl"), "-q"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with open(d / "results.jsonl") as f:
            rows = sum(1 for _ in f)
    assert rows == N, rows
    print(f"### `gradekit grade`, {N:,} string_check rows\n")
    print(
        table(
            ["rows", "seconds", "rows/s", "peak RSS (MB)", "target"],
            [[f"{N:,}", f"{seconds:.1f}", f"{N / seconds:,.0f}", f"{peak_mb:.0f}", "< 300 MB"]],
        )
    )


if __name__ == "__main__":
    main()
