"""Inference on base models, fine-tuned models and checkpoints: chat completions, completions and responses.

Models are loaded with `Policy.load` (a local Hugging Face folder; `tiny-local` is built for the request, its
vocabulary from the request's own text, so a tiny base model answers at random) and kept in a small LRU cache.
Generation runs one request at a time (the CPU is shared with training): greedy at `temperature` 0, else
sampled with `temperature` and `top_p`; `seed` makes a sample repeatable. With `stream` true each endpoint
answers Server-Sent Events while it generates (`streaming`): `chat.completion.chunk` and `text_completion`
chunks then `data: [DONE]`, or the Responses events from `response.created` to `response.completed`.
A request with function `tools` offers them to the model (`tool_calls`) and returns the `<tool_call>` blocks
the model writes as `tool_calls` (chat) or `function_call` output items (responses); streamed, a call's arguments
arrive as they are generated.

A chat `response_format` or a Responses `text.format` (JSON schema or JSON object) and a `tool_choice` that asks
for a call are enforced by constrained decoding (`models.structured`): the reply follows the schema, or is call
blocks of the chosen functions with arguments following their `parameters`.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gradekit.runtime.server import APIError

from ..loop.completions import tools_message
from ..loop.data import Row
from ..models.policy import TINY_MODEL, Policy
from ..models.structured import (
    StructuredOutput,
    UnsupportedFormat,
    grammar_output,
    response_schema,
    structured_output,
    vocabulary_text,
)
from .config import ServiceConfig
from .models import ModelRef, Models
from .streaming import CallDelta, Delta, Reply, cut_at_stop, sse
from .tool_calls import call_block, call_grammar, chosen_functions, split_calls

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
    tool_choice: str | dict[str, Any] | None = None  # "required" or a function: enforced by constrained decoding
    parallel_tool_calls: bool | None = None
    response_format: Any = None  # text, json_object or json_schema: enforced by constrained decoding


class CompletionRequest(_Sampling):
    """Body of `POST /v1/completions`."""

    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = None
    echo: bool | None = None


class ResponseRequest(_Sampling):
    """Body of `POST /v1/responses` (text and function calls)."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None  # "required" or a function: enforced by constrained decoding
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None  # its `format` (text, json_object, json_schema) is enforced as chat's is


@dataclass(frozen=True)
class _Generated:
    text: str
    tokens: int
    finish_reason: Literal["stop", "length"]


@dataclass
class _Live:
    """A streamed generation: its reply so far and, once over, what was generated (None if generation failed)."""

    reply: Reply
    generated: _Generated | None = None
    error: BaseException | None = None

    @property
    def finish_reason(self) -> str:
        """The chat/completions finish reason of the whole reply."""
        return _finish(self.reply.calls, self.reply.stopped, self.generated)


def _finish(calls: list[Any], stopped: bool, generated: _Generated | None) -> str:
    if calls:
        return "tool_calls"
    return "stop" if stopped or generated is None else generated.finish_reason


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


def _call_text(call: Any, where: str) -> str:
    """A call of a chat message's `tool_calls` (or a Responses `function_call` item) as the model writes it."""
    function = call.get("function", call) if isinstance(call, Mapping) else None
    if not (isinstance(function, Mapping) and isinstance(function.get("name"), str)):
        raise APIError(400, f"Invalid value for '{where}': expected a function call with a name.", param=where)
    return call_block(function["name"], function.get("arguments", {}))


def _messages(raw: Sequence[Mapping[str, Any]], param: str) -> list[dict[str, Any]]:
    """Chat messages (or Responses input items) as the model reads them: role and text; calls as call blocks."""
    out = []
    for i, m in enumerate(raw):
        where = f"{param}[{i}]"
        if m.get("type") == "function_call":  # Responses: a call the model made earlier
            out.append({"role": "assistant", "content": _call_text(m, where)})
            continue
        if m.get("type") == "function_call_output":  # Responses: what that call returned
            out.append({"role": "tool", "content": _text(m.get("output"), f"{where}.output")})
            continue
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise APIError(400, f"Invalid value for '{where}.role': {role!r}.", param=f"{where}.role")
        content = _text(m.get("content"), f"{where}.content")
        calls = m.get("tool_calls") if role == "assistant" else None
        if calls:
            if not isinstance(calls, list):
                raise APIError(400, f"Invalid value for '{where}.tool_calls': expected a list.", param=where)
            content += "".join(_call_text(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls))
        out.append({"role": role, "content": content})
    return out


class _Pieces:
    """A streamer for `generate`: the reply's text as it grows, decoded as the whole reply is (`decode`).

    Each new token re-decodes the reply, and only an extension of what was sent is sent (an incomplete character
    waits for its next byte), so the pieces join to the decoded whole.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._sent = ""
        self._prompt = True
        self._queue: queue.Queue[str | None] = queue.Queue()

    def put(self, value: Any) -> None:
        """Take the prompt (skipped), then each new token."""
        if self._prompt:
            self._prompt = False
            return
        self._ids.extend(int(t) for t in value.reshape(-1).tolist())
        self._send(self._decode(self._ids), final=False)

    def end(self) -> None:
        """Generation is over: send the rest."""
        self._send(self._decode(self._ids), final=True)
        self._queue.put(None)

    def _send(self, text: str, *, final: bool) -> None:
        if (final or not text.endswith("\ufffd")) and text.startswith(self._sent) and len(text) > len(self._sent):
            self._queue.put(text[len(self._sent) :])
            self._sent = text

    def __iter__(self) -> Iterator[str]:
        return iter(self._queue.get, None)


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
        structured: StructuredOutput | None = None,
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
                [prompt],
                n,
                max_new_tokens=budget,
                temperature=temperature,
                top_p=body.top_p or 1.0,
                streamer=streamer,
                structured=structured,
            )
        results = []
        for text, row, mask in zip(
            rollout.texts, rollout.input_ids[:, rollout.prompt_len :], rollout.completion_mask, strict=True
        ):
            tokens = int(mask.sum())  # up to and including end-of-text
            stopped = tokens > 0 and int(row[tokens - 1]) == tok.eos_token_id
            results.append(_Generated(text, tokens, "stop" if stopped else "length"))
        return results

    def _streamed(
        self,
        policy: Policy,
        prompt: list[int],
        body: _Sampling,
        live: _Live,
        *,
        max_tokens: int | None,
        default: int,
        structured: StructuredOutput | None = None,
    ) -> Iterator[Delta]:
        """The reply's deltas while one generation runs in a thread; then `live.generated` holds its result.

        The same generation as `_generate` (same seed, same tokens): a streamer only watches its tokens, and
        decodes them as the whole reply is decoded (a structured reply as its constraint read them).
        """
        with self._lock:
            tok = policy.tokenizer
            streamer = _Pieces(
                structured.decode if structured else lambda ids: tok.decode(ids, skip_special_tokens=True).strip()
            )
            outcome: dict[str, Any] = {}

            def generate() -> None:
                try:
                    (outcome["generated"],) = self._generate(
                        policy,
                        prompt,
                        body,
                        n=1,
                        max_tokens=max_tokens,
                        default=default,
                        structured=structured,
                        streamer=streamer,
                    )
                except BaseException as e:  # the stream ends early: its HTTP status is already sent
                    outcome["error"] = e
                    streamer.end()

            worker = threading.Thread(target=generate, name="gradekit-stream", daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    delta = live.reply.add(piece)
                    if delta:
                        yield delta
                worker.join()
                live.generated, live.error = outcome.get("generated"), outcome.get("error")
                delta = live.reply.finish()
                if delta:
                    yield delta
            finally:
                worker.join()  # after a client went away, the next request still waits for this generation

    def _prompt(
        self, ref: ModelRef, messages: list[dict[str, Any]], functions: list[dict[str, Any]], vocabulary: str = ""
    ) -> tuple[Policy, list[int]]:
        """The model and the prompt's tokens; `functions` go through the chat template or a system message.

        `vocabulary` is more text for `tiny-local`'s vocabulary (what a `response_format` needs)."""
        offer = tools_message(functions) if functions else ""
        policy = self._policy(ref, [m["content"] for m in messages] + [offer, vocabulary])
        return policy, policy.prompt_ids(Row(messages, {}, functions or None))

    def _prepare(
        self, ref: ModelRef, messages: list[dict[str, Any]], body: ChatRequest | ResponseRequest
    ) -> tuple[Policy, list[int], list[dict[str, Any]], StructuredOutput | None]:
        """The model, the prompt, the functions offered and the constraint on the reply, for chat and Responses.

        A `tool_choice` asking for a call constrains the reply to call blocks (whatever the format); else a JSON
        format constrains it to its schema. Either fails here (400) if the decoder cannot enforce it.
        """
        responses = isinstance(body, ResponseRequest)
        functions, callable_ = chosen_functions(body.tools, body.tool_choice, responses=responses)
        schema, param = _format(body)
        if callable_:
            vocabulary = vocabulary_text({"functions": callable_})
        else:
            vocabulary = vocabulary_text(schema) if schema else ""
        policy, prompt = self._prompt(ref, messages, functions, vocabulary)
        try:
            if callable_:
                param = "tools"
                grammar = call_grammar(callable_, parallel=body.parallel_tool_calls is not False)
                schemas = [f.get("parameters") or {} for f in callable_]
                return policy, prompt, functions, grammar_output(policy.tokenizer, grammar, schemas=schemas)
            return policy, prompt, functions, structured_output(policy.tokenizer, schema) if schema else None
        except UnsupportedFormat as e:
            raise APIError(400, f"Invalid value for '{param}': {e}.", param=param) from None

    # --- chat completions ---------------------------------------------------------------------------------

    def chat(self, body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        """A `chat.completion` object, or with `stream` its chunks as Server-Sent Events."""
        ref = self._ref(body.model)
        messages = _messages(body.messages, "messages")
        n = body.n or 1
        if body.stream and n > 1:
            raise APIError(400, "Invalid value for 'n': streaming answers one choice; send n=1.", param="n")
        max_tokens = body.max_completion_tokens or body.max_tokens
        with self._lock:
            policy, prompt, functions, structured = self._prepare(ref, messages, body)
            if body.stream:
                self._budget(policy, prompt, max_tokens, 256)  # a bad request fails before the stream starts
                chunks = self._chat_chunks(
                    policy, prompt, body, max_tokens, tools=bool(functions), structured=structured
                )
                return sse(chunks)
            generated = self._generate(
                policy, prompt, body, n=n, max_tokens=max_tokens, default=256, structured=structured
            )
        choices = []
        for i, g in enumerate(generated):
            text, stopped = cut_at_stop(g.text, body.stop)
            content, calls = split_calls(text) if functions else (text, [])
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
            if calls:
                message.update(content=content or None, tool_calls=calls)
            choices.append(
                {"index": i, "message": message, "finish_reason": _finish(calls, stopped, g), "logprobs": None}
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
        self,
        policy: Policy,
        prompt: list[int],
        body: ChatRequest,
        max_tokens: int | None,
        *,
        tools: bool,
        structured: StructuredOutput | None,
    ) -> Iterator[dict[str, Any]]:
        """`chat.completion.chunk` objects: the role, text and tool calls as generated, the finish reason, usage.

        A tool call's first delta carries its id, type and name (arguments ""), the next ones pieces of its arguments.
        """
        base = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        live = _Live(Reply(body.stop, tools=tools))
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        deltas = self._streamed(policy, prompt, body, live, max_tokens=max_tokens, default=256, structured=structured)
        for delta in deltas:
            if delta.text:
                yield chunk({"content": delta.text})
            starts = [_call_start(c) for c in delta.calls if c.new]
            if starts:
                yield chunk({"tool_calls": starts})
            pieces = [{"index": c.index, "function": {"arguments": c.arguments}} for c in delta.calls if c.arguments]
            if pieces:
                yield chunk({"tool_calls": pieces})
        yield chunk({}, live.finish_reason)
        if (body.stream_options or {}).get("include_usage") and live.generated is not None:
            yield {**base, "choices": [], "usage": _usage(len(prompt), live.generated.tokens)}

    # --- completions --------------------------------------------------------------------------------------

    def complete(self, body: CompletionRequest) -> dict[str, Any] | StreamingResponse:
        """A `text_completion` object (one choice per prompt and `n`), or with `stream` its chunks as events."""
        ref = self._ref(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise APIError(400, "Invalid value for 'prompt': it is empty.", param="prompt")
        n = body.n or 1
        if body.stream and (n > 1 or len(prompts) > 1):
            param = "n" if n > 1 else "prompt"
            raise APIError(400, f"Invalid value for '{param}': streaming answers one choice.", param=param)
        choices, prompt_tokens, completion_tokens = [], 0, 0
        with self._lock:
            policy = self._policy(ref, prompts)
            for text in prompts:
                ids = list(policy.tokenizer(text, add_special_tokens=False)["input_ids"])
                if body.stream:
                    self._budget(policy, ids, body.max_tokens, 16)  # a bad request fails before the stream starts
                    return sse(self._completion_chunks(policy, text, ids, body))
                prompt_tokens += len(ids)
                for g in self._generate(policy, ids, body, n=n, max_tokens=body.max_tokens, default=16):
                    out, stopped = cut_at_stop(g.text, body.stop)
                    completion_tokens += g.tokens
                    choices.append(
                        {
                            "index": len(choices),
                            "text": f"{text}{out}" if body.echo else out,
                            "finish_reason": _finish([], stopped, g),
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

    def _completion_chunks(
        self, policy: Policy, text: str, prompt: list[int], body: CompletionRequest
    ) -> Iterator[dict[str, Any]]:
        """`text_completion` chunks: (the echoed prompt,) the text as generated, the finish reason, usage."""
        base = {
            "id": f"cmpl-{secrets.token_hex(12)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": None,
        }

        def chunk(piece: str, finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "text": piece, "finish_reason": finish, "logprobs": None}]}

        if body.echo:
            yield chunk(text)
        live = _Live(Reply(body.stop))
        for delta in self._streamed(policy, prompt, body, live, max_tokens=body.max_tokens, default=16):
            yield chunk(delta.text)
        yield chunk("", live.finish_reason)
        if (body.stream_options or {}).get("include_usage") and live.generated is not None:
            yield {**base, "choices": [], "usage": _usage(len(prompt), live.generated.tokens)}

    # --- responses ----------------------------------------------------------------------------------------

    def respond(self, body: ResponseRequest) -> dict[str, Any] | StreamingResponse:
        """A `response` object (an assistant message and/or function calls), or with `stream` its events."""
        ref = self._ref(body.model)
        if isinstance(body.input, str):
            messages = [{"role": "user", "content": body.input}]
        else:
            messages = _messages(body.input, "input")
        if body.instructions:
            messages = [{"role": "developer", "content": body.instructions}, *messages]
        with self._lock:
            policy, prompt, functions, structured = self._prepare(ref, messages, body)
            if body.stream:
                self._budget(policy, prompt, body.max_output_tokens, 256)  # fails before the stream starts
                events = self._response_events(policy, prompt, body, tools=bool(functions), structured=structured)
                return sse(events, named=True)
            (g,) = self._generate(
                policy, prompt, body, n=1, max_tokens=body.max_output_tokens, default=256, structured=structured
            )
        content, calls = split_calls(g.text) if functions else (g.text, [])
        complete = bool(calls) or g.finish_reason == "stop"
        status = "completed" if complete else "incomplete"
        output = [_message_item(f"msg_{secrets.token_hex(16)}", content, status)] if content or not calls else []
        output += [_function_item(c, "completed") for c in calls]
        return _response(body, f"resp_{secrets.token_hex(16)}", time.time(), status, output, (len(prompt), g.tokens))

    def _response_events(
        self,
        policy: Policy,
        prompt: list[int],
        body: ResponseRequest,
        *,
        tools: bool,
        structured: StructuredOutput | None,
    ) -> Iterator[dict[str, Any]]:
        """Responses streaming events, each with its `sequence_number`, from `response.created` to the end.

        Without tools the message item is opened at once; with tools when its first text arrives (a reply that is
        only calls has no message). Each call is a `function_call` item: added once its name is written, then
        `response.function_call_arguments.delta` events as its arguments are, `.done` and the item done.
        """
        numbers = itertools.count()

        def event(kind: str, **fields: Any) -> dict[str, Any]:
            return {"type": kind, "sequence_number": next(numbers), **fields}

        rid, created = f"resp_{secrets.token_hex(16)}", time.time()
        started = _response(body, rid, created, "in_progress", [], None)
        yield event("response.created", response=started)
        yield event("response.in_progress", response=started)
        output: list[dict[str, Any]] = []
        message: dict[str, Any] = {}  # where the message item is: "index", "id"

        def open_message() -> Iterator[dict[str, Any]]:
            message.update(index=len(output), id=f"msg_{secrets.token_hex(16)}")
            output.append(_message_item(message["id"], "", "in_progress"))
            yield event("response.output_item.added", output_index=message["index"], item=_message_item(message["id"]))
            yield event(
                "response.content_part.added", part=_text_part(""), content_index=0, **_at(message["index"], message)
            )

        live = _Live(Reply(tools=tools))
        if not tools:
            yield from open_message()
        items: dict[int, tuple[int, dict[str, Any]]] = {}  # per call: its output index and item
        deltas = self._streamed(
            policy, prompt, body, live, max_tokens=body.max_output_tokens, default=256, structured=structured
        )
        for delta in deltas:
            if delta.text:
                if not message:
                    yield from open_message()
                yield event(
                    "response.output_text.delta",
                    delta=delta.text,
                    logprobs=[],
                    content_index=0,
                    **_at(message["index"], message),
                )
            for call in delta.calls:
                if call.new:
                    items[call.index] = (len(output), _function_item(call.call, "in_progress"))
                    output.append(items[call.index][1])
                    yield event("response.output_item.added", output_index=len(output) - 1, item=items[call.index][1])
                index, item = items[call.index]
                item["arguments"] = call.call["function"]["arguments"]
                if call.arguments:
                    yield event("response.function_call_arguments.delta", delta=call.arguments, **_at(index, item))
                if call.done:
                    item["status"] = "completed"
                    yield event(
                        "response.function_call_arguments.done", arguments=item["arguments"], **_at(index, item)
                    )
                    yield event("response.output_item.done", output_index=index, item=dict(item))
        if live.generated is None:
            error = {"code": "server_error", "message": f"Generation failed: {live.error}"}
            failed = _response(body, rid, created, "failed", output, None)
            yield event("response.failed", response={**failed, "error": error})
            return
        complete = bool(live.reply.calls) or live.generated.finish_reason == "stop"
        status = "completed" if complete else "incomplete"
        if not message and not live.reply.calls:
            yield from open_message()
        if message:
            text = live.reply.text
            output[message["index"]] = item = _message_item(message["id"], text, status)
            where = _at(message["index"], message)
            yield event("response.output_text.done", text=text, logprobs=[], content_index=0, **where)
            yield event("response.content_part.done", part=_text_part(text), content_index=0, **where)
            yield event("response.output_item.done", output_index=message["index"], item=item)
        final = _response(body, rid, created, status, output, (len(prompt), live.generated.tokens))
        yield event(f"response.{status}", response=final)


def _at(index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    return {"output_index": index, "item_id": item["id"]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str | None = None, status: str = "in_progress") -> dict[str, Any]:
    """A Responses `message` output item (no content part yet when `text` is None)."""
    content = [] if text is None else [_text_part(text)]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call_start(delta: CallDelta) -> dict[str, Any]:
    """A chat chunk's `tool_calls` entry starting a call: its id, type and name (its arguments follow)."""
    function = {"name": delta.call["function"]["name"], "arguments": ""}
    return {"index": delta.index, "id": delta.call["id"], "type": "function", "function": function}


def _function_item(call: Mapping[str, Any], status: str) -> dict[str, Any]:
    """A Responses `function_call` output item for a chat-style tool call."""
    return {
        "type": "function_call",
        "id": f"fc_{secrets.token_hex(16)}",
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": call["function"]["arguments"],
        "status": status,
    }


def _response(
    body: ResponseRequest,
    rid: str,
    created: float,
    status: str,
    output: list[dict[str, Any]],
    tokens: tuple[int, int] | None,
) -> dict[str, Any]:
    """A `response` object; `tokens` (prompt, output) give its usage once it is over."""
    usage = None
    if tokens is not None:
        usage = {
            "input_tokens": tokens[0],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": tokens[1],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": sum(tokens),
        }
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": body.model,
        "output": [dict(item) for item in output],
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "text": {"format": (body.text or {}).get("format") or {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": list(body.tools or []),
        "metadata": {},
        "usage": usage,
    }


def _format(body: ChatRequest | ResponseRequest) -> tuple[dict[str, Any] | None, str]:
    """The JSON schema a request's format asks for (None: plain text) and the parameter naming it; 400 if malformed.

    Chat's `response_format` (`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`) and
    Responses' `text.format` (the same fields beside `type`) are read alike.
    """
    if isinstance(body, ChatRequest):
        response_format, param = body.response_format, "response_format"
    else:
        text, param = body.text or {}, "text.format"
        response_format = text.get("format")
        if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
            spec = {k: v for k, v in response_format.items() if k != "type"}
            response_format = {"type": "json_schema", "json_schema": spec}
    try:
        return response_schema(response_format), param
    except UnsupportedFormat as e:
        raise APIError(400, f"Invalid value for '{param}': {e}.", param=param) from None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
