"""Numbers under a `response_format` (`models/structured.py`): only those a double holds can be written.

JSON's own grammar lets digits and exponents run on; `tiny-local`'s random weights, unconstrained there, write
`5e3917815` or `-81E+55554402` in about half of its verdicts, infinite for `json.loads`. The constraint holds every
number to `NUMBER`: checked on the pattern itself, on llguidance's matcher fed whole replies (tokens of several
characters included), and on seeded samples of `tiny-local`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
import torch

from gradekit.trainer_bridge.loop.data import Row
from gradekit.trainer_bridge.models.policy import Policy
from gradekit.trainer_bridge.models.structured import NUMBER, structured_output, vocabulary_text
from gradekit.trainer_bridge.models.tiny import build_tokenizer

from .random_decoding import byte_level_tokenizer, random_replies

pytest.importorskip("llguidance")

SCORE = {
    "type": "object",
    "properties": {"result": {"type": "number"}},
    "required": ["result"],
    "additionalProperties": False,
}
COUNT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}
SCORES = {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3}
ANY_OBJECT = {"type": "object"}  # what `json_object` asks for

WITHIN = ["0", "-0", "0.73", "-1", "1e5", "1E+5", "2.5e-3", "1e300", "-1e300", "9.99e307", "0.5e308", "1e-999",
          "1234567890123456", "-9007199254740993", "1234567890123456.5e292", "0.000001"]  # fmt: skip
BEYOND = ["1e400", "1e308", "12e307", "9.1256256499e11060990", "-81E+55554402", "12345678901234567",
          "1234567890123456e293", "1e-1000", "1e05", "01", "1.", ".5", "+1", "1e", "-", "NaN", "Infinity"]  # fmt: skip


@pytest.mark.parametrize("text", WITHIN)
def test_a_number_a_double_holds_is_allowed_and_loads_finite(text: str) -> None:
    assert re.fullmatch(NUMBER, text)
    assert math.isfinite(float(json.loads(text)))


@pytest.mark.parametrize("text", BEYOND)
def test_a_number_beyond_a_double_or_not_json_is_not_allowed(text: str) -> None:
    assert not re.fullmatch(NUMBER, text)


@pytest.mark.parametrize("digits", range(1, 17))
def test_the_exponent_allowed_shrinks_as_the_integer_part_grows(digits: int) -> None:
    largest = f"{'9' * digits}.9e{308 - digits}"
    assert re.fullmatch(NUMBER, largest) and math.isfinite(json.loads(largest))
    assert not re.fullmatch(NUMBER, f"{'9' * digits}e{309 - digits}")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """`tiny-local`'s tokenizer sized for the schemas, with whole numbers as tokens of their own ("1e400" is one)."""
    numbers = " ".join(WITHIN + BEYOND)
    return build_tokenizer([numbers, *(vocabulary_text(s) for s in (SCORE, COUNT, SCORES, ANY_OBJECT))])


@pytest.mark.parametrize(
    ("schema", "reply", "allowed"),
    [
        (SCORE, '{"result":0.73}', True),
        (SCORE, '{"result":-1}', True),
        (SCORE, '{"result":1e5}', True),
        (SCORE, '{"result":1e300}', True),
        (SCORE, '{"result":1e400}', False),
        (SCORE, '{"result":9.1256256499e11060990}', False),
        (SCORE, '{"result":12345678901234567}', False),
        (COUNT, '{"n":1234567890123456}', True),
        (COUNT, '{"n":12345678901234567}', False),
        (COUNT, '{"n":1e5}', False),  # still the schema's: an integer has no exponent
        (SCORES, "[0.73,1e300,-1]", True),
        (SCORES, "[0.73,1e400]", False),
        (ANY_OBJECT, '{"a":[1e300,{"b":-2.5e-3}],"c":true,"d":null}', True),
        (ANY_OBJECT, '{"a":[1,{"b":1e400}]}', False),
        (ANY_OBJECT, '{"a":"1e400 is text"}', True),  # a string's digits are not a number
    ],
)
def test_the_constraint_allows_a_reply_by_its_numbers(tokenizer: Any, schema: Any, reply: str, allowed: bool) -> None:
    assert structured_output(tokenizer, schema).accepts(reply) is allowed


def test_a_multi_character_token_beyond_a_double_is_masked_out(tokenizer: Any) -> None:
    constraint = structured_output(tokenizer, SCORE)
    vocab = tokenizer.get_vocab()
    mask = constraint.processor(1, prompt_len=1, max_new_tokens=64)
    prefix = [vocab[t] for t in ("{", '"', "result", '"', ":")]
    ids = torch.tensor([[tokenizer.eos_token_id, *prefix]])
    for step in range(1, len(prefix) + 1):  # the processor reads the reply one token at a time
        scores = mask(ids[:, : 1 + step], torch.zeros((1, len(tokenizer))))
    allowed = {t for t, i in vocab.items() if scores[0, i] > float("-inf")}
    assert {"1e300", "0", "1e5", "-", "1234567890123456"} <= allowed
    assert not {"1e400", "1e308", "12345678901234567"} & allowed


@pytest.mark.parametrize(
    ("schema", "reply"),
    [
        ({"const": 1e20}, "100000000000000000000"),  # llguidance writes a named number in plain decimals
        ({"enum": [12345678901234567, "x"]}, "12345678901234568"),  # as a double
        ({"type": "array", "prefixItems": [{"const": 1e20}, {"type": "number"}]}, "[100000000000000000000,1e400]"),
        ({"type": "integer", "minimum": 10**17}, "100000000000000000"),  # a bound beyond NUMBER
        ({"type": "number", "exclusiveMaximum": -1e17}, "-100000000000000001"),
    ],
)
def test_a_number_the_schema_names_beyond_number_stays_writable(schema: Any, reply: str) -> None:
    assert structured_output(build_tokenizer([vocabulary_text(schema), reply]), schema).accepts(reply)


def test_a_number_the_schema_names_within_number_keeps_the_hold() -> None:
    schema = {"type": "array", "prefixItems": [{"const": 0.5}, {"type": "number"}], "items": False}
    constraint = structured_output(build_tokenizer([vocabulary_text(schema), "1e300 1e400"]), schema)
    assert constraint.accepts("[0.5,1e300]") and not constraint.accepts("[0.5,1e400]")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


@pytest.mark.parametrize("schema", [SCORE, COUNT, SCORES], ids=["number", "integer", "array"])
def test_seeded_samples_of_tiny_local_are_finite_numbers(schema: Any) -> None:
    question = "Rate the answer from 0 to 1."
    policy = Policy.load("tiny-local", texts=[question, vocabulary_text(schema)])
    constraint = structured_output(policy.tokenizer, schema)
    prompt = policy.prompt_ids(Row([{"role": "user", "content": question}], {}, None))
    numbers = []
    for seed in range(4):
        torch.manual_seed(seed)
        rollout = policy.sample([prompt], 16, max_new_tokens=32, temperature=1.0, structured=constraint)
        for text in rollout.texts:
            numbers += _numbers(json.loads(text))
    assert len(numbers) >= 64
    assert all(math.isfinite(float(n)) for n in numbers), [n for n in numbers if not math.isfinite(float(n))]
    assert all(abs(n) < 10**16 for n in numbers if isinstance(n, int))  # integers of a sane size


@pytest.fixture(scope="module")
def byte_level() -> Any:
    """A byte-level BPE tokenizer (as pretrained models have) trained here on numbers: many-digit tokens abound."""
    return byte_level_tokenizer([*WITHIN, *BEYOND, '{"result":', "123456789012345678901234567890"] * 20, vocab_size=600)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_logits_over_a_byte_level_vocabulary_write_finite_numbers(byte_level: Any, seed: int) -> None:
    constraint = structured_output(byte_level, SCORE)
    replies = random_replies(byte_level, constraint, rows=16, budget=40, seed=seed)
    results = [json.loads(reply)["result"] for reply in replies]
    assert all(math.isfinite(float(r)) for r in results), results
    assert all(abs(r) < 10**16 for r in results if isinstance(r, int)), results
