"""A streamed chat completion with a `response_format` sends the same text as the non-streamed one (real uvicorn on
127.0.0.1, the real openai SDK): `tiny-local`'s word-level tokens are joined as the constraint read them, without
the spaces its tokenizer's own decoder puts between words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gradekit.runtime.model_client import score_response_format

from .helpers import client, make_config, serving

pytest.importorskip("llguidance")

MESSAGES = [{"role": "user", "content": "Rate the answer: we encrypt data with AES-256."}]
FORMATS = {
    "score": score_response_format(),
    "object": {"type": "json_object"},
    "words": {
        "type": "json_schema",
        "json_schema": {
            "name": "words",
            "schema": {
                "type": "object",
                "properties": {"verdict": {"enum": ["compliant", "non_compliant"]}, "note": {"type": "string"}},
                "required": ["verdict", "note"],
                "additionalProperties": False,
            },
        },
    },
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on real uvicorn (inference only)."""
    with serving(make_config(tmp_path_factory.mktemp("structured-stream") / "data")) as (base, _app):
        yield base


@pytest.mark.parametrize("kind", list(FORMATS))
def test_a_streamed_structured_reply_is_the_non_streamed_reply(url: str, kind: str) -> None:
    request = {
        "model": "tiny-local",
        "messages": MESSAGES,
        "response_format": FORMATS[kind],
        "temperature": 1.0,
        "max_tokens": 64,
    }
    with client(url) as sdk:
        for seed in range(3):
            whole = sdk.chat.completions.create(**request, seed=seed).choices[0]
            chunks = list(sdk.chat.completions.create(**request, seed=seed, stream=True))
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert streamed == whole.message.content, f"seed {seed}"
            assert chunks[-1].choices[0].finish_reason == whole.finish_reason
            if whole.finish_reason == "stop":
                assert json.loads(streamed) == json.loads(whole.message.content)
