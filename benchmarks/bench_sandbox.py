"""Benchmark: per-call cost of `SandboxPool` against a bare warm worker and a fresh process per call.

Run with ``python benchmarks/bench_sandbox.py [--calls N] [--fresh-calls M] [--repeat R]``; prints a
markdown table. The bare worker is a hand-written child process that reads the same length-prefixed JSON
requests from a pipe and calls the same `grade()`, with no limits, isolation or state checks: the ratio to
it is what the sandbox costs per call (target: at most 2x). The fresh process is `python -c` per call, as
a runner without a warm pool would do (target: the pool at least 20x faster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from common import best_of, table

from gradekit.graders import PythonGrader
from gradekit.runtime.sandbox import SandboxPool

SOURCE = """
def grade(sample, item):
    return 1.0 if sample["output_json"]["answer"] == item["answer"] else 0.0
"""
SAMPLE: dict[str, Any] = {"output_text": '{"answer": "42"}', "output_json": {"answer": "42"}, "output_tools": []}
ITEM: dict[str, Any] = {"answer": "42"}

# The bare worker: frames in, grade(), frames out; nothing else.
BARE_WORKER = """
import json, os, struct, sys
namespace = {}
exec(sys.argv[1], namespace)
grade = namespace["grade"]
header = struct.Struct(">I")
buffer = b""
while True:
    while len(buffer) < 4 or len(buffer) < 4 + header.unpack_from(buffer)[0]:
        chunk = os.read(0, 65536)
        if not chunk:
            sys.exit(0)
        buffer += chunk
    size = header.unpack_from(buffer)[0]
    request = json.loads(buffer[4 : 4 + size])
    buffer = buffer[4 + size :]
    reply = json.dumps({"v": grade(request["s"], request["i"])}).encode()
    os.write(1, header.pack(len(reply)) + reply)
"""

# A fresh interpreter per call: the sample and item arrive on stdin, the reward leaves on stdout.
FRESH_PROCESS = """
import json, sys
namespace = {}
exec(sys.argv[1], namespace)
request = json.load(sys.stdin)
print(json.dumps(namespace["grade"](request["s"], request["i"])))
"""


class BareWorker:
    """A warm child process answering framed JSON requests, for comparison."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BARE_WORKER, SOURCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdin and self.proc.stdout
        self.to_child, self.from_child = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.header = struct.Struct(">I")

    def call(self, sample: dict[str, Any], item: Any) -> Any:
        """One round trip."""
        data = json.dumps({"s": sample, "i": item}).encode()
        os.write(self.to_child, self.header.pack(len(data)) + data)
        buffer = b""
        while len(buffer) < 4 or len(buffer) < 4 + self.header.unpack_from(buffer)[0]:
            buffer += os.read(self.from_child, 65536)
        return json.loads(buffer[4:])["v"]

    def close(self) -> None:
        """End the child."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


def fresh_call(sample: dict[str, Any], item: Any) -> Any:
    """One call in a fresh `python -c` process."""
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, SOURCE],
        input=json.dumps({"s": sample, "i": item}).encode(),
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


def first_call_on_a_new_pool(grader: PythonGrader) -> None:
    """Start a worker (namespaces, mounts, seccomp), load the source, grade once, close."""
    pool = SandboxPool(workers=1)
    assert [c.value for c in asyncio.run(pool.run(grader, [SAMPLE], [ITEM]))] == [1.0]
    pool.close()


def first_call_on_a_bare_worker() -> None:
    """Start the bare worker, grade once, close."""
    worker = BareWorker()
    assert worker.call(SAMPLE, ITEM) == 1.0
    worker.close()


def main() -> None:
    """Time the three ways and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per warm measurement")
    parser.add_argument("--fresh-calls", type=int, default=30, help="calls per fresh-process measurement")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (the best of each way is kept)")
    args = parser.parse_args()
    n, grader = args.calls, PythonGrader(name="bench", source=SOURCE)
    samples, items = [SAMPLE] * n, [ITEM] * n

    bare, pools = BareWorker(), {workers: SandboxPool(workers=workers) for workers in (1, 2)}
    assert bare.call(SAMPLE, ITEM) == 1.0
    for pool in pools.values():
        calls = asyncio.run(pool.run(grader, samples[:10], items[:10]))  # warm up: start, load the source
        assert [c.value for c in calls] == [1.0] * 10, calls
    # Rounds interleave the ways, so that a busy machine slows them alike; the best round of each is kept.
    ways: dict[str, Callable[[], object]] = {
        "bare": lambda: [bare.call(s, i) for s, i in zip(samples, items, strict=True)],
        **{str(w): (lambda p=p: asyncio.run(p.run(grader, samples, items))) for w, p in pools.items()},
    }
    best = {name: math.inf for name in ways}
    for _ in range(args.repeat):
        for name, way in ways.items():
            best[name] = min(best[name], best_of(way, 1) / n)
    bare.close()
    for pool in pools.values():
        pool.close()
    bare_s, timings = best["bare"], {1: best["1"], 2: best["2"]}

    assert fresh_call(SAMPLE, ITEM) == 1.0
    m = args.fresh_calls
    fresh_s = best_of(lambda: [fresh_call(SAMPLE, ITEM) for _ in range(m)], args.repeat) / m

    def us(seconds: float) -> str:
        return f"{seconds * 1e6:,.1f}"

    start_s = best_of(lambda: first_call_on_a_new_pool(grader), args.repeat)
    bare_start_s = best_of(first_call_on_a_bare_worker, args.repeat)
    isolation = SandboxPool(workers=1)
    asyncio.run(isolation.run(grader, [SAMPLE], [ITEM]))
    active = sorted(k for k, on in isolation.isolation.items() if on)
    isolation.close()

    pool_s = timings[1]
    rows = [
        ["bare warm worker (pipe echo, no limits)", us(bare_s), "1.00x", "-"],
        ["`SandboxPool`, 1 worker", us(pool_s), f"{pool_s / bare_s:.2f}x (target <= 2x)", "-"],
        ["`SandboxPool`, 2 workers (per call, batch)", us(timings[2]), f"{timings[2] / bare_s:.2f}x", "-"],
        [
            "fresh `python -c` per call",
            us(fresh_s),
            f"{fresh_s / bare_s:.0f}x",
            f"{fresh_s / pool_s:.0f}x (target >= 20x)",
        ],
    ]
    print(f"trivial grader, {n:,} warm calls per run, {m} fresh processes, best of {args.repeat} interleaved rounds\n")
    print(table(["way", "us per call", "vs bare worker", "pool (1 worker) faster by"], rows))
    print(f"\nworker start to first reward, best of {args.repeat} (protections: {', '.join(active)})\n")
    starts = [
        ["bare worker: start, one call, close", f"{bare_start_s * 1e3:.1f}", "1.00x"],
        ["`SandboxPool`: start, isolate, load, one call", f"{start_s * 1e3:.1f}", f"{start_s / bare_start_s:.2f}x"],
    ]
    print(table(["way", "ms", "vs bare"], starts))


if __name__ == "__main__":
    main()
