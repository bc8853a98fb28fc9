"""Inference on base models, fine-tuned models and checkpoints: chat completions, completions and responses.

Models are loaded with `Policy.load` (a local Hugging Face folder; `tiny-local` is built for the request, its
vocabulary from the request's own text, so a tiny base model answers at random) and kept in a small LRU cache.
Generation runs one request at a time (the CPU is shared with training): greedy at `temperature` 0, else
sampled with `temperature` and `top_p`; `seed` makes a sample repeatable. A chat completion with `stream` true
is answered as Server-Sent Events (`chat.completion.chunk` objects, then `data: [DONE]`) while it is generated.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gradekit.runtime.server import APIError

from ..loop.data import Row
from ..models.policy import TINY_MODEL, Policy
from .config import ServiceConfig
from .models import ModelRef, Models

__all__ = ["ChatRequest", "CompletionRequest", "Inference", "ResponseRequest"]

_TEXT_PARTS = ("text", "input_text", "output_text")


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None


class ChatRequest(_Sampling):
    """Body of `POST /v1/chat/completions` (the fields used here; others are ignored)."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None


class CompletionRequest(_Sampling):
    """Body of `POST /v1/completions`."""

    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = None
    echo: bool | None = None


class ResponseRequest(_Sampling):
    """Body of `POST /v1/responses` (text in, text out)."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class _Generated:
    text: str
    tokens: int
    finish_reason: Literal["stop", "length"]


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                isinstance(part, Mapping)
                and part.get("type", "text") in _TEXT_PARTS
                and isinstance(part.get("text"), str)
            ):
                parts.append(part["text"])
            else:
                raise APIError(400, f"Invalid content in '{where}': only text parts are supported here.", param=where)
        return "".join(parts)
    raise APIError(400, f"Invalid content in '{where}': expected a string or a list of text parts.", param=where)


def _messages(raw: Sequence[Mapping[str, Any]], param: str) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(raw):
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise APIError(400, f"Invalid value for '{param}[{i}].role': {role!r}.", param=f"{param}[{i}].role")
        out.append({"role": role, "content": _text(m.get("content"), f"{param}[{i}].content")})
    return out


def _cut(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [text.index(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class Inference:
    """Answers inference requests with the models `models` resolves."""

    def __init__(self, config: ServiceConfig, models: Models) -> None:
        self.config = config
        self.models = models
        self._cache: OrderedDict[tuple[str, int], Policy] = OrderedDict()
        self._lock = threading.Lock()

    # --- models -------------------------------------------------------------------------------------------

    def _ref(self, name: str) -> ModelRef:
        ref = self.models.resolve(name)
        if ref is None:
            raise APIError(
                404,
                f"The model `{name}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return ref

    def _policy(self, ref: ModelRef, texts: list[str]) -> Policy:
        if ref.path == TINY_MODEL:
            return Policy.load(TINY_MODEL, texts=texts, seed=0)
        config = Path(ref.path) / "config.json"
        key = (ref.path, config.stat().st_mtime_ns if config.exists() else 0)
        policy = self._cache.get(key)
        if policy is None:
            from transformers.utils import logging

            logging.disable_progress_bar()  # no "Loading weights" bar on the server's console
            try:
                policy = Policy.load(ref.path)
            except (OSError, ValueError) as e:  # e.g. a checkpoint pruned by its running job meanwhile
                raise APIError(
                    404, f"The model `{ref.name}` cannot be loaded: {e}", param="model", code="model_not_found"
                ) from None
            self._cache[key] = policy
            while len(self._cache) > self.config.inference_cache:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return policy

    # --- generation ---------------------------------------------------------------------------------------

    def _budget(self, policy: Policy, prompt: list[int], max_tokens: int | None, default: int) -> int:
        """The tokens a reply may have; `context_length_exceeded` when the prompt leaves none."""
        context = int(getattr(policy.model.config, "max_position_embeddings", 2048))
        wanted = min(max_tokens or default, self.config.max_inference_tokens)
        budget = min(wanted, context - max(1, len(prompt)))
        if budget < 1:
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens; the prompt has {len(prompt)}.",
                param="messages",
                code="context_length_exceeded",
            )
        return budget

    def _generate(
        self,
        policy: Policy,
        prompt: list[int],
        body: _Sampling,
        *,
        n: int,
        max_tokens: int | None,
        default: int,
        streamer: Any = None,
    ) -> list[_Generated]:
        import torch

        tok = policy.tokenizer
        budget = self._budget(policy, prompt, max_tokens, default)
        if not prompt:
            prompt = [tok.eos_token_id]
        temperature = 1.0 if body.temperature is None else body.temperature
        with torch.random.fork_rng(devices=[]):
            if body.seed is not None:
                torch.manual_seed(body.seed)
            rollout = policy.sample(
                [prompt], n, max_new_tokens=budget, temperature=temperature, top_p=body.top_p or 1.0, streamer=streamer
            )
        results = []
        for text, row, mask in zip(
            rollout.texts, rollout.input_ids[:, rollout.prompt_len :], rollout.completion_mask, strict=True
        ):
            tokens = int(mask.sum())  # up to and including end-of-text
            stopped = tokens > 0 and int(row[tokens - 1]) == tok.eos_token_id
            results.append(_Generated(text, tokens, "stop" if stopped else "length"))
        return results

    def _chat_prompt(self, policy: Policy, messages: list[dict[str, Any]], tools: list[Any] | None) -> list[int]:
        if policy.tokenizer.chat_template:
            return policy.prompt_ids(Row(messages, {}, tools))
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return list(policy.tokenizer(text, add_special_tokens=False)["input_ids"])

    # --- the endpoints ------------------------------------------------------------------------------------

    @staticmethod
    def _no_stream(body: _Sampling) -> None:
        if body.stream:
            raise APIError(
                400, "Streaming is supported by /v1/chat/completions only; send stream=false.", param="stream"
            )

    def chat(self, body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        """A `chat.completion` object, or with `stream` its chunks as Server-Sent Events."""
        ref = self._ref(body.model)
        messages = _messages(body.messages, "messages")
        n = body.n or 1
        if body.stream and n > 1:
            raise APIError(400, "Invalid value for 'n': streaming answers one choice; send n=1.", param="n")
        max_tokens = body.max_completion_tokens or body.max_tokens
        with self._lock:
            policy = self._policy(ref, [m["content"] for m in messages])
            prompt = self._chat_prompt(policy, messages, body.tools)
            if body.stream:
                self._budget(policy, prompt, max_tokens, 256)  # a bad request fails before the stream starts
                return _sse(self._chat_chunks(policy, prompt, body, max_tokens))
            generated = self._generate(policy, prompt, body, n=n, max_tokens=max_tokens, default=256)
        choices = []
        for i, g in enumerate(generated):
            text, stopped = _cut(g.text, body.stop)
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                    "finish_reason": "stop" if stopped else g.finish_reason,
                    "logprobs": None,
                }
            )
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": choices,
            "usage": _usage(len(prompt), sum(g.tokens for g in generated)),
            "system_fingerprint": None,
        }

    def _chat_chunks(
        self, policy: Policy, prompt: list[int], body: ChatRequest, max_tokens: int | None
    ) -> Iterator[dict[str, Any]]:
        """`chat.completion.chunk` objects: the role, the text as it is generated, the finish reason (and usage)."""
        from transformers import TextIteratorStreamer

        base = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        with self._lock:
            streamer = TextIteratorStreamer(policy.tokenizer, skip_prompt=True, skip_special_tokens=True)
            outcome: dict[str, Any] = {}

            def generate() -> None:
                try:
                    (outcome["generated"],) = self._generate(
                        policy, prompt, body, n=1, max_tokens=max_tokens, default=256, streamer=streamer
                    )
                except BaseException as e:  # the stream just ends: its HTTP status is already sent
                    outcome["error"] = e
                    streamer.end()

            worker = threading.Thread(target=generate, name="gradekit-stream", daemon=True)
            worker.start()
            try:
                yield chunk({"role": "assistant", "content": "", "refusal": None})
                text = _StreamedText(body.stop)
                for piece in streamer:
                    delta = text.add(piece)
                    if delta:
                        yield chunk({"content": delta})
                worker.join()
                rest = text.finish()
                if rest:
                    yield chunk({"content": rest})
                generated: _Generated | None = outcome.get("generated")
                finish = "stop" if text.stopped or generated is None else generated.finish_reason
                yield chunk({}, finish)
                options = body.stream_options or {}
                if options.get("include_usage") and generated is not None:
                    yield {**base, "choices": [], "usage": _usage(len(prompt), generated.tokens)}
            finally:
                worker.join()  # after a client went away, the next request still waits for this generation

    def complete(self, body: CompletionRequest) -> dict[str, Any]:
        """A `text_completion` object (one choice per prompt and `n`)."""
        self._no_stream(body)
        ref = self._ref(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise APIError(400, "Invalid value for 'prompt': it is empty.", param="prompt")
        n = body.n or 1
        choices, prompt_tokens, completion_tokens = [], 0, 0
        with self._lock:
            policy = self._policy(ref, prompts)
            for text in prompts:
                ids = list(policy.tokenizer(text, add_special_tokens=False)["input_ids"])
                prompt_tokens += len(ids)
                for g in self._generate(policy, ids, body, n=n, max_tokens=body.max_tokens, default=16):
                    out, stopped = _cut(g.text, body.stop)
                    completion_tokens += g.tokens
                    choices.append(
                        {
                            "index": len(choices),
                            "text": f"{text}{out}" if body.echo else out,
                            "finish_reason": "stop" if stopped else g.finish_reason,
                            "logprobs": None,
                        }
                    )
        return {
            "id": f"cmpl-{secrets.token_hex(12)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens),
            "system_fingerprint": None,
        }

    def respond(self, body: ResponseRequest) -> dict[str, Any]:
        """A `response` object with one assistant message."""
        self._no_stream(body)
        ref = self._ref(body.model)
        if isinstance(body.input, str):
            messages = [{"role": "user", "content": body.input}]
        else:
            messages = _messages(body.input, "input")
        if body.instructions:
            messages = [{"role": "developer", "content": body.instructions}, *messages]
        with self._lock:
            policy = self._policy(ref, [m["content"] for m in messages])
            prompt = self._chat_prompt(policy, messages, None)
            (g,) = self._generate(policy, prompt, body, n=1, max_tokens=body.max_output_tokens, default=256)
        complete = g.finish_reason == "stop"
        usage = _usage(len(prompt), g.tokens)
        return {
            "id": f"resp_{secrets.token_hex(16)}",
            "object": "response",
            "created_at": time.time(),
            "status": "completed" if complete else "incomplete",
            "error": None,
            "incomplete_details": None if complete else {"reason": "max_output_tokens"},
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "model": body.model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{secrets.token_hex(16)}",
                    "status": "completed" if complete else "incomplete",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": g.text, "annotations": [], "logprobs": []}],
                }
            ],
            "parallel_tool_calls": True,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tool_choice": "auto",
            "tools": [],
            "metadata": {},
            "usage": {
                "input_tokens": usage["prompt_tokens"],
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": usage["completion_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage["total_tokens"],
            },
        }


class _StreamedText:
    """A reply arriving in pieces: what can be sent so far, so that the pieces join to the non-streamed text.

    That text is stripped and cut at the first stop sequence, so trailing whitespace and a possible start of a
    stop sequence are held back until more text shows what they are.
    """

    def __init__(self, stop: str | list[str] | None) -> None:
        self.stop = stop
        self.hold = max((len(s) for s in ([stop] if isinstance(stop, str) else stop or [])), default=1) - 1
        self.text = ""
        self.sent = 0
        self.stopped = False

    def add(self, piece: str) -> str:
        """The text that can be sent now that `piece` arrived."""
        if self.stopped:
            return ""
        self.text = (self.text + piece).lstrip()
        cut, self.stopped = _cut(self.text, self.stop)
        ready = len(cut) if self.stopped else max(self.sent, len(cut.rstrip()) - self.hold)
        return self._send(cut[:ready])

    def finish(self) -> str:
        """The rest of the text once generation is over."""
        return self._send(_cut(self.text.strip(), self.stop)[0])

    def _send(self, upto: str) -> str:
        delta, self.sent = upto[self.sent :], max(self.sent, len(upto))
        return delta


def _sse(chunks: Iterator[dict[str, Any]]) -> StreamingResponse:
    """Chunks as Server-Sent Events in OpenAI's form: `data: <json>` each, then `data: [DONE]`."""

    def events() -> Iterator[str]:
        for c in chunks:
            yield f"data: {json.dumps(c, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
