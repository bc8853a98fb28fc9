"""Streamed inference of the fine-tuning service: first-token latency and tokens/s against plain generation.

The model is SmolLM2-135M-Instruct when it is installed, else tiny-local. The reference is `Policy.sample` in
this process generating the same greedy tokens with no server (what the service runs for each request). Then
the service on loopback (uvicorn in this process, read by the openai SDK): a non-streamed chat completion,
whose first token arrives with the last, and the streamed chat completion, completion and response. Every row
generates the same `TOKENS` tokens (the prompt is chosen so that greedy decoding does not stop early; the
token column shows it). Runs alternate between the rows, best of `REPEAT` each, so load from other processes
hits them alike. "first token" is the time from sending the request to the first text delta. The CPU column is
this process's CPU time for the run (every thread: generation, server and client), which other load on the
machine disturbs less than wall-clock throughput.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from common import table
from openai import OpenAI

from gradekit.runtime.server import create_app, running
from gradekit.trainer_bridge.loop.data import Row
from gradekit.trainer_bridge.models.catalogue import SMOLLM2, TINY_MODEL, available
from gradekit.trainer_bridge.models.policy import Policy
from gradekit.trainer_bridge.service import ServiceConfig

os.environ.setdefault("TQDM_DISABLE", "1")  # no GGUF conversion bar in the table

TOKENS = 64
REPEAT = 3
MESSAGES = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea."}]


def chat_text(chunk: Any) -> str | None:
    """The text of a `chat.completion.chunk`."""
    return chunk.choices[0].delta.content if chunk.choices else None


def timed(start: float, chunks: Iterable[Any], text_of: Callable[[Any], str | None]) -> tuple[float, float, Any]:
    """Seconds from `start` to a stream's first text and to its end, and its last chunk."""
    first, last = None, None
    for last in chunks:
        if first is None and text_of(last):
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return (total if first is None else first), total, last


def main() -> None:
    """Print the latency and throughput table."""
    model = SMOLLM2 if SMOLLM2 in available() else TINY_MODEL
    prompt_text = MESSAGES[0]["content"]
    with tempfile.TemporaryDirectory() as tmp:
        config = ServiceConfig.model_validate(
            {"data_dir": Path(tmp), "start_worker": False, "base_models": {}, "max_inference_tokens": TOKENS}
        )
        app = create_app()
        app.state.fine_tuning_config = config
        policy = Policy.load(model, texts=[prompt_text])
        prompt = policy.prompt_ids(Row(MESSAGES, {}))
        completion_prompt = policy.tokenizer.decode(prompt)  # the chat prompt as plain text
        with running(app, timeout=60) as url:
            sdk = OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
            greedy: Any = {"model": model, "temperature": 0}
            chat: Any = {**greedy, "messages": MESSAGES, "max_tokens": TOKENS}
            sdk.chat.completions.create(**chat)  # loads the model into the service's cache

            def generate() -> tuple[float, float, int]:
                start = time.perf_counter()
                rollout = policy.sample([prompt], 1, max_new_tokens=TOKENS, temperature=0)
                seconds = time.perf_counter() - start
                return seconds, seconds, int(rollout.completion_mask.sum())

            def whole() -> tuple[float, float, int]:
                start = time.perf_counter()
                answer = sdk.chat.completions.create(**chat)
                seconds = time.perf_counter() - start
                assert answer.usage is not None
                return seconds, seconds, answer.usage.completion_tokens

            def stream_chat() -> tuple[float, float, int]:
                start, options = time.perf_counter(), {"include_usage": True}
                stream = sdk.chat.completions.create(**chat, stream=True, stream_options=options)
                first, total, last = timed(start, stream, chat_text)
                return first, total, last.usage.completion_tokens

            def stream_completion() -> tuple[float, float, int]:
                start, options = time.perf_counter(), {"include_usage": True}
                stream = sdk.completions.create(
                    **greedy, prompt=completion_prompt, max_tokens=TOKENS, stream=True, stream_options=options
                )
                first, total, last = timed(start, stream, lambda c: c.choices[0].text if c.choices else None)
                return first, total, last.usage.completion_tokens

            def stream_response() -> tuple[float, float, int]:
                start = time.perf_counter()
                stream = sdk.responses.create(**greedy, input=prompt_text, max_output_tokens=TOKENS, stream=True)
                first, total, last = timed(
                    start, stream, lambda e: e.delta if e.type == "response.output_text.delta" else None
                )
                return first, total, last.response.usage.output_tokens

            runs = {
                "Policy.sample in process (reference)": generate,
                "chat.completions, not streamed": whole,
                "chat.completions, stream=True": stream_chat,
                "completions, stream=True": stream_completion,
                "responses, stream=True": stream_response,
            }
            inf = float("inf")
            best = {name: [inf, inf, inf, 0] for name in runs}  # first token, total, CPU seconds, tokens
            for _ in range(REPEAT):
                for name, run in runs.items():
                    cpu = time.process_time()
                    first, total, tokens = run()
                    cpu = time.process_time() - cpu
                    old = best[name]
                    best[name] = [min(first, old[0]), min(total, old[1]), min(cpu, old[2]), tokens]
    _, ref_total, ref_cpu, _ = best["Policy.sample in process (reference)"]
    rows = []
    for name, (first, total, cpu, tokens) in best.items():
        rows.append(
            [
                name,
                f"{first * 1000:,.0f}",
                f"{first / ref_total:.2f}x",
                f"{total:.2f}",
                tokens,
                f"{tokens / total:,.1f}",
                f"{ref_total / total:.2f}x",
                f"{cpu / ref_cpu:.2f}x",
            ]
        )
    print(
        f"### streamed inference: {model}, {len(prompt)}-token prompt, {TOKENS} greedy new tokens (best of {REPEAT})\n"
    )
    headers = [
        "run",
        "first token ms",
        "first token / reference's whole generation",
        "total s",
        "tokens",
        "tokens/s",
        "tokens/s vs reference",
        "CPU time vs reference",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
