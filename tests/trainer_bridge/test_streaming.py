"""Streamed chat completions of the fine-tuning service, read by the unmodified openai SDK on loopback.

The chunk format is OpenAI's `chat.completion.chunk` (https://platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from gradekit.trainer_bridge.loop.data import Row
from gradekit.trainer_bridge.loop.warm_start import warm_start
from gradekit.trainer_bridge.models.policy import TINY_MODEL, Policy

from .service.helpers import client, make_config, serving

REPLY = "the billing team will look at the refund today , thanks for waiting"
MESSAGES = [
    {"role": "developer", "content": "Route the support ticket to one team: billing, account, shipping or technical."},
    {"role": "user", "content": "The refund never reached my card. What should I do?"},
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    root: Path = tmp_path_factory.mktemp("streaming")
    # A tiny model taught one long reply, so that a greedy answer has many tokens to stream.
    rows = [Row(MESSAGES, {})]
    policy = Policy.load(TINY_MODEL, texts=[MESSAGES[0]["content"], MESSAGES[1]["content"], REPLY], seed=0)
    warm_start(policy, rows, [REPLY], steps=40, batch_size=1, learning_rate=1e-2)
    policy.save(root / "talker")
    config = make_config(root / "data", start_worker=False, base_models={"talker": str(root / "talker")})
    with serving(config) as (base_url, _):
        yield base_url


def _stream(url: str, **kwargs: object) -> list[ChatCompletionChunk]:
    sdk = client(url)
    return list(sdk.chat.completions.create(model="talker", messages=MESSAGES, stream=True, **kwargs))


def test_greedy_chunks_join_to_the_non_streamed_answer(url: str) -> None:
    sdk = client(url)
    whole = sdk.chat.completions.create(model="talker", messages=MESSAGES, temperature=0, max_tokens=12)
    answer = whole.choices[0].message.content
    assert answer and answer.startswith("the billing team")
    chunks = _stream(url, temperature=0, max_tokens=12, stream_options={"include_usage": True})
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1  # sent as generated, not in one piece at the end
    assert "".join(pieces) == answer
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and set(finishes[:-1]) == {None}
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and whole.usage is not None
    assert usage.model_dump() == whole.usage.model_dump()


def test_a_stop_sequence_cuts_the_stream_where_it_cuts_the_answer(url: str) -> None:
    sdk = client(url)
    free = sdk.chat.completions.create(model="talker", messages=MESSAGES, temperature=0, max_tokens=12)
    words = (free.choices[0].message.content or "").split()
    assert len(words) >= 4
    stop = " " + words[3]  # a stop sequence that starts with the held-back whitespace
    whole = sdk.chat.completions.create(model="talker", messages=MESSAGES, temperature=0, max_tokens=12, stop=stop)
    chunks = _stream(url, temperature=0, max_tokens=12, stop=stop)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content and stop not in streamed
    assert whole.choices[0].finish_reason == "stop" and chunks[-1].choices[0].finish_reason == "stop"


def test_stream_errors_are_answered_before_the_stream(url: str) -> None:
    sdk = client(url)
    with pytest.raises(openai.BadRequestError, match="streaming answers one choice") as e:
        sdk.chat.completions.create(model="talker", messages=MESSAGES, stream=True, n=2)
    assert e.value.body["param"] == "n"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        sdk.chat.completions.create(model="no-such-model", messages=MESSAGES, stream=True)
    with pytest.raises(openai.BadRequestError, match="streaming answers one choice") as e:
        sdk.completions.create(model="talker", prompt=["hello", "again"], stream=True)
    assert e.value.body["param"] == "prompt"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        sdk.responses.create(model="talker", input="refund " * 600, stream=True)
