"""`OpenAIModelClient` throughput against bare async HTTP requests to the same fake OpenAI endpoint.

The fake LLM (`gradekit.testing.fake_llm`) runs in its own process so server and client do not share a GIL.
Both sides send the same request bodies with the same concurrency and decode the JSON responses; the
client also goes through the `openai` SDK, parses the verdicts and runs its retry and concurrency
machinery. Runs alternate between the two sides (best of `REPEAT` each) so load from other processes hits
both alike. With no server delay the client process is CPU-bound, so the ratio is the client's per-request
CPU cost next to bare httpx2's; with a judge-like latency the endpoint is the limit. The CPU column is this
process's CPU time per request (all threads; the server is another process), which other load on the
machine disturbs less than wall-clock throughput.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import httpx2
from common import table

from gradekit.graders import Env, ScoreModel, run_batch
from gradekit.runtime.model_client import OpenAIModelClient, chat_messages, score_instruction, score_response_format

N = 2000
CONCURRENCY = 64
REPEAT = 5
DELAYS = (0.0, 0.1)

GRADER = ScoreModel(
    name="judge",
    model="fake-judge",
    range=[0, 1],
    input=[
        {"role": "system", "content": "You grade answers to arithmetic questions."},
        {"role": "user", "content": "Question: {{ item.question }}\nAnswer: {{ sample.output_text }}"},
    ],
    sampling_params={"temperature": 0, "seed": 7},
)


def start_server(delay: float) -> tuple[subprocess.Popen[str], str]:
    """The fake LLM in a subprocess (bounded in requests and lifetime), and its base URL."""
    args = ["--delay", str(delay), "--max-requests", "100000", "--max-lifetime", "600"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradekit.testing.fake_llm", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"fake LLM did not start: {line!r}")
    return proc, line


def workload() -> tuple[list[str], list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Samples, items, and the grader messages rendered for them."""
    samples = [str(i % 97) for i in range(N)]
    items = [{"question": f"what is {i % 89} + {i % 8}?"} for i in range(N)]
    messages = [
        [
            {"role": "system", "content": "You grade answers to arithmetic questions."},
            {"role": "user", "content": f"Question: {item['question']}\nAnswer: {sample}"},
        ]
        for sample, item in zip(samples, items, strict=True)
    ]
    return samples, items, messages


class Bare:
    """httpx2.AsyncClient posting prepared bodies under a semaphore, decoding each JSON response."""

    def __init__(self, base_url: str, bodies: list[dict[str, Any]]) -> None:
        limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        headers = {"Authorization": "Bearer bench"}
        self.http = httpx2.AsyncClient(base_url=base_url, limits=limits, headers=headers, timeout=60)
        self.bodies = bodies
        self.semaphore = asyncio.Semaphore(CONCURRENCY)

    async def _one(self, body: dict[str, Any]) -> Any:
        async with self.semaphore:
            response = await self.http.post("/chat/completions", json=body)
            response.raise_for_status()
            return response.json()

    async def run(self, n: int = N) -> None:
        """Send the first `n` bodies."""
        out = await asyncio.gather(*(self._one(b) for b in self.bodies[:n]))
        assert len(out) == n


def measure(delay: float) -> list[list[str]]:
    """Rows of the table for one server delay."""
    proc, base_url = start_server(delay)
    samples, items, messages = workload()
    template = {"model": GRADER.model, "response_format": score_response_format(), "seed": 7, "temperature": 0.0}
    bodies = [{**template, "messages": chat_messages(m, score_instruction(0, 1))} for m in messages]
    loop = asyncio.new_event_loop()
    client = OpenAIModelClient(base_url=base_url, api_key="bench", concurrency=CONCURRENCY)
    times: dict[str, float] = {"bare": float("inf"), "grade": float("inf"), "run_batch": float("inf")}
    cpu: dict[str, float] = dict(times)
    try:
        bare = Bare(base_url, bodies)
        loop.run_until_complete(bare.run(CONCURRENCY * 2))  # warm-up: open the connections
        loop.run_until_complete(client.grade(GRADER, messages[: CONCURRENCY * 2]))

        async def grade() -> None:
            grades = await client.grade(GRADER, messages)
            assert all(g.error is None and g.result == 1.0 for g in grades)

        def whole() -> None:
            assert run_batch(GRADER, samples, items, env=Env(model=client)).rewards == [1.0] * N

        runs = {"bare": lambda: loop.run_until_complete(bare.run()), "grade": lambda: loop.run_until_complete(grade())}
        if delay == 0.0:
            runs["run_batch"] = whole
        for _ in range(REPEAT if delay == 0.0 else 3):
            for name, fn in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                times[name] = min(times[name], time.perf_counter() - start)
                cpu[name] = min(cpu[name], time.process_time() - start_cpu)
        loop.run_until_complete(bare.http.aclose())
    finally:
        client.close()
        loop.close()
        proc.terminate()
        proc.wait(timeout=10)

    label = f"{delay * 1000:.0f} ms"
    names = {
        "bare": "bare httpx2.AsyncClient + semaphore",
        "grade": "OpenAIModelClient.grade",
        "run_batch": "run_batch(score_model) on OpenAIModelClient",
    }
    return [
        [label, names[k], f"{t:.2f}", f"{N / t:,.0f}", f"{times['bare'] / t:.2f}x", f"{cpu[k] / N * 1e6:,.0f}"]
        for k, t in times.items()
        if t != float("inf")
    ]


def main() -> None:
    """Print the throughput table."""
    rows = [row for delay in DELAYS for row in measure(delay)]
    print(f"### model client: {N:,} samples, concurrency {CONCURRENCY}, fake LLM in its own process (best runs)\n")
    headers = ["server delay", "client", "seconds", "requests/s", "throughput vs bare", "client CPU µs/request"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
