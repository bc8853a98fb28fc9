"""Structured outputs: a `response_format` JSON schema compiled by llguidance into a mask on the model's logits.

At every step of generation the mask leaves only the tokens that keep the reply a prefix of a JSON document the
schema accepts (compact JSON: no whitespace between tokens), and end-of-text only once the document is complete,
so a finished reply always parses and validates. In the last `FINISH_RESERVE` share of the token budget it
steers to the end: only the allowed tokens that leave the fewest strings, brackets and commas open stay allowed
(the model still chooses among them), and once few spare tokens are left, only those of the model's likeliest
after which the shortest way to a complete document still fits. A schema that needs more tokens than the budget
ends with `finish_reason` "length", as OpenAI's replies do.

Numbers are held to what a double holds: JSON's grammar lets a number's digits and exponent run on (a random-weight
model once wrote `9.1256256499e11060990`, infinite for `json.loads`), and llguidance's JSON schema compiler writes
that number lexeme itself, with no option to change it (bounds take no exponent and stop near 1e15). So beside the
schema's matcher runs a second one, over a Lark grammar of JSON's lexemes whose number is `NUMBER`, and a token is
allowed only when both allow it.

llguidance reads byte-level BPE and SentencePiece tokenizers (every pretrained model here); a word-level
tokenizer (`tiny-local`) is read as the text of each token, its reply the tokens joined without spaces.
"""

from __future__ import annotations

import functools
import json
import string
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    from llguidance import LLMatcher, LLTokenizer
    from torch import Tensor
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "FINISH_RESERVE",
    "NUMBER",
    "StructuredOutput",
    "UnsupportedFormat",
    "grammar_output",
    "response_schema",
    "structured_output",
    "vocabulary_text",
]

#: The share of the token budget (at least `_MIN_RESERVE` tokens) in which generation steers to the end.
FINISH_RESERVE: Final = 0.25
_MIN_RESERVE: Final = 16
#: What a comma costs when steering to the end: it opens another item or key, at least a value and its closers.
_COMMA: Final = 4
#: With fewer spare tokens than this, each of the model's `_CHECKED` likeliest next tokens is checked to still
#: leave room for the end.
_SLACK: Final = 8
_CHECKED: Final = 8
#: Compact JSON: a sampler cannot spend the budget on whitespace.
_JSON_OPTIONS: Final = {"whitespace_flexible": False}
#: The most digits before a number's point (2**53, the last integer a double counts exactly, has 16).
_INTEGER_DIGITS: Final = 16
#: A number stays below 10**_DECIMAL_EXPONENT (a double's largest is 1.8e308): its integer digits plus its exponent.
_DECIMAL_EXPONENT: Final = 308


def _up_to(largest: int) -> str:
    """A regex of the decimal integers from 0 to `largest`, written without leading zeros."""
    top = str(largest)
    parts = ["[0-9]"] + [f"[1-9][0-9]{{{k - 1}}}" for k in range(2, len(top))]
    if len(top) > 1:
        for i, digit in enumerate(top):
            low, rest = (1 if i == 0 else 0), len(top) - i - 1
            if int(digit) > low:
                below = str(low) if int(digit) - 1 == low else f"[{low}-{int(digit) - 1}]"
                parts.append(top[:i] + below + (f"[0-9]{{{rest}}}" if rest else ""))
        parts.append(top)
    else:
        parts = [f"[0-{top}]"]
    return "(" + "|".join(parts) + ")"


def _number_pattern() -> str:
    fraction, negative = r"(\.[0-9]+)?", r"[eE]-(0|[1-9][0-9]{0,2})"
    forms = [rf"0{fraction}([eE]\+?{_up_to(_DECIMAL_EXPONENT)}|{negative})?"]
    for digits in range(1, _INTEGER_DIGITS + 1):
        integer = "[1-9]" + (f"[0-9]{{{digits - 1}}}" if digits > 1 else "")
        forms.append(rf"{integer}{fraction}([eE]\+?{_up_to(_DECIMAL_EXPONENT - digits)}|{negative})?")
    return "-?(" + "|".join(forms) + ")"


#: The JSON numbers a reply may write (a regex): at most 16 digits before the point and an exponent that keeps the
#: value below 1e308, so `json.loads` gives a finite float (0.73, -1, 1e5, 1e300; not 1e400 or a 17-digit integer).
#: A negative exponent may only round to 0; exponents have no leading zeros.
NUMBER: Final = _number_pattern()

# JSON's lexemes, numbers held to NUMBER: two values always have a bracket, comma or colon between them, so a number
# cannot run on as a second one. Strings are taken whole (their digits are text).
_LEXEMES: Final = f"""start: GAP? (atom GAP)* atom?
atom: NUMBER | STRING | WORD
NUMBER: /{NUMBER}/
STRING: /"(\\\\(?s:.)|[^"\\\\])*"/
WORD: /[a-zA-Z]+/
GAP: /[^"\\-+.0-9a-zA-Z]+/
"""


class UnsupportedFormat(ValueError):
    """A `response_format` that cannot be enforced: one line saying why (the service answers 400)."""


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a chat request's `response_format` asks for; None for plain text (or no format)."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise UnsupportedFormat("expected an object with a 'type'")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise UnsupportedFormat(f"unsupported type {kind!r} (supported: 'text', 'json_object', 'json_schema')")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise UnsupportedFormat("'json_schema' must be an object with a 'schema'")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, Mapping):
        raise UnsupportedFormat("'json_schema.schema' must be a JSON schema object")
    return dict(schema)


def vocabulary_text(schema: Mapping[str, Any]) -> str:
    """Text giving a vocabulary built from a request's text (`tiny-local`) what `schema`'s JSON needs.

    That is every printable ASCII character as a token of its own, and the schema's words (keys, enum values).
    """
    return " ".join([*string.printable.strip(), json.dumps(schema, ensure_ascii=False)])


class _WordTokens:
    """A word-level tokenizer as llguidance reads one: the text of each token, and a tokenizer of text into them.

    Text is split into words as the tokenizer does, and a word outside the vocabulary into its characters, so
    forced text (a schema's keys, say) becomes real tokens rather than the unknown-word token.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        from .tiny import words

        tokens = [b""] * len(tokenizer)
        for text, i in tokenizer.get_vocab().items():
            tokens[i] = text.encode("utf-8")
        self.tokens = tokens
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = None
        self.special_token_ids = list(tokenizer.all_special_ids)
        self._ids = {text: i for text, i in tokenizer.get_vocab().items() if i not in self.special_token_ids}
        self._words = words

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        ids: list[int] = []
        for word in self._words(text):
            if word in self._ids:
                ids.append(self._ids[word])
            else:
                ids.extend(self._ids[c] for c in word if c in self._ids)
        return ids


# Where a JSON text stands between two tokens: outside any string, inside one, or inside one after a backslash.
_OUTSIDE, _INSIDE, _ESCAPED = 0, 1, 2


def _scan(token: bytes, state: int) -> tuple[int, int, int]:
    """The state after `token` read from `state`, the change of nesting depth and the commas (outside strings)."""
    depth = commas = 0
    for byte in token:
        if state == _ESCAPED:
            state = _INSIDE
        elif state == _INSIDE:
            state = _ESCAPED if byte == 0x5C else _OUTSIDE if byte == 0x22 else _INSIDE
        elif byte == 0x22:
            state = _INSIDE
        elif byte in b"[{":
            depth += 1
        elif byte in b"]}":
            depth -= 1
        elif byte == 0x2C:
            commas += 1
    return state, depth, commas


@dataclass(frozen=True)
class _Vocabulary:
    """A tokenizer read by llguidance, and how each token moves a JSON text (for steering to the end)."""

    tokenizer: LLTokenizer
    state: np.ndarray  # [3, vocab]: the state after the token, from each state
    depth: np.ndarray  # [3, vocab]: the change of nesting depth, from each state
    commas: np.ndarray  # [3, vocab]: the commas outside strings (each one more item or key to write)
    length: np.ndarray  # [vocab]: the token's bytes


_VOCABULARIES: weakref.WeakKeyDictionary[Any, _Vocabulary] = weakref.WeakKeyDictionary()


def _vocabulary(tokenizer: PreTrainedTokenizerBase) -> _Vocabulary:
    cached = _VOCABULARIES.get(tokenizer)
    if cached is not None:
        return cached
    import llguidance
    import llguidance.hf
    import numpy as np

    try:
        ll = llguidance.hf.from_tokenizer(tokenizer)
    except (ValueError, RuntimeError, TypeError) as e:
        model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
        if type(model).__name__ != "WordLevel":
            raise UnsupportedFormat(f"this model's tokenizer cannot be constrained ({e})") from None
        ll = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_WordTokens(tokenizer)))
    tokens = [ll.decode_bytes([i]) for i in range(ll.vocab_size)]
    moves = [[_scan(t, start) for t in tokens] for start in (_OUTSIDE, _INSIDE, _ESCAPED)]
    vocabulary = _Vocabulary(
        ll,
        np.array([[m[0] for m in row] for row in moves], dtype=np.int8),
        np.array([[m[1] for m in row] for row in moves], dtype=np.int32),
        np.array([[m[2] for m in row] for row in moves], dtype=np.int32),
        np.array([len(t) for t in tokens], dtype=np.int32),
    )
    _VOCABULARIES[tokenizer] = vocabulary
    return vocabulary


class StructuredOutput:
    """A JSON schema compiled for one tokenizer: logits processors for generations, and their replies' text.

    With `numbers` the reply's numbers are held to `NUMBER` (a grammar of JSON, not of free text, gets it).
    """

    def __init__(self, vocabulary: _Vocabulary, grammar: str, eos: int, *, numbers: bool = False) -> None:
        self._vocabulary = vocabulary
        self._grammar = grammar
        self._numbers = numbers
        self.eos = eos

    def processor(self, rows: int, prompt_len: int, max_new_tokens: int) -> _SchemaMask:
        """A logits processor for one `generate` call: `rows` sequences whose prompts end at `prompt_len`."""
        matchers = [self._matcher() for _ in range(rows)]
        reserve = min(max_new_tokens - 1, max(_MIN_RESERVE, int(max_new_tokens * FINISH_RESERVE)))
        return _SchemaMask(
            matchers,
            self._vocabulary,
            self.eos,
            prompt_len,
            finish_from=max_new_tokens - reserve,
            max_new_tokens=max_new_tokens,
        )

    def accepts(self, text: str) -> bool:
        """Whether `text`, split by the tokenizer, is a whole reply the constraint lets a model write."""
        matcher = self._matcher(log_level=0)
        return matcher.consume_tokens(self._vocabulary.tokenizer.tokenize_str(text)) and matcher.is_accepting()

    def decode(self, ids: list[int]) -> str:
        """The reply's text: its tokens as the schema's matcher read them (special tokens left out)."""
        ll = self._vocabulary.tokenizer
        return ll.decode_str([t for t in ids if not ll.is_special_token(t)]).strip()

    def _matcher(self, log_level: int = 1) -> _Matchers:
        import llguidance

        ll = self._vocabulary.tokenizer
        numbers = llguidance.LLMatcher(ll, _lexemes(), log_level=log_level) if self._numbers else None
        return _Matchers(llguidance.LLMatcher(ll, self._grammar, log_level=log_level), numbers)


class _Matchers:
    """The schema's matcher and, beside it, the one holding numbers to `NUMBER`: a token must pass both."""

    def __init__(self, schema: LLMatcher, numbers: LLMatcher | None) -> None:
        self.schema = schema
        self.numbers = numbers
        self._all = [schema] if numbers is None else [schema, numbers]

    def consume_token(self, token: int) -> bool:
        """Advance both by `token`; False if either rejects it."""
        return all([m.consume_token(token) for m in self._all])

    def consume_tokens(self, tokens: list[int]) -> bool:
        """Advance both by `tokens`; False if either rejects one."""
        return all([m.consume_tokens(tokens) for m in self._all])

    def compute_bitmask(self) -> bytes:
        """The tokens both allow next, one bit each (llguidance's layout)."""
        import numpy as np

        masks = [np.frombuffer(m.compute_bitmask(), dtype=np.uint8) for m in self._all]
        return masks[0].tobytes() if len(masks) == 1 else (masks[0] & masks[1]).tobytes()

    def is_error(self) -> bool:
        """Whether either has failed."""
        return any(m.is_error() for m in self._all)

    def is_accepting(self) -> bool:
        """Whether the text so far is complete for both."""
        return all(m.is_accepting() for m in self._all)

    def deep_copy(self) -> _Matchers:
        """An independent copy of both."""
        return _Matchers(self.schema.deep_copy(), None if self.numbers is None else self.numbers.deep_copy())


@functools.cache
def _lexemes() -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_lark(_LEXEMES)


def _numbers_fit(schema: Any) -> bool:
    """Whether the schema's numbers can all be written within `NUMBER`: those it names (in a `const` or `enum` value)
    are below 1e16, and no bound asks for more (a `minimum` of 1e17 would leave nothing to write).

    llguidance writes a named number as a double in plain decimals (1e20 as 21 digits).
    """
    if isinstance(schema, Mapping):
        limit = 10**_INTEGER_DIGITS
        literals = [schema.get("const"), *(schema.get("enum") or [])]
        if not all(abs(n) < limit and abs(float(n)) < limit for n in _numbers_in(literals)):
            return False
        lower = _numbers_in([schema.get("minimum"), schema.get("exclusiveMinimum")])
        upper = _numbers_in([schema.get("maximum"), schema.get("exclusiveMaximum")])
        if any(n >= limit for n in lower) or any(n <= -limit for n in upper):
            return False
        return all(_numbers_fit(v) for k, v in schema.items() if k not in ("const", "enum"))
    if isinstance(schema, list):
        return all(_numbers_fit(v) for v in schema)
    return True


def _numbers_in(value: Any) -> list[int | float]:
    """The numbers in a JSON value."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    return [n for v in value for n in _numbers_in(v)] if isinstance(value, list) else []


class _SchemaMask:
    """The logits processor: per row, the matcher consumes the last token, then masks what may come next."""

    def __init__(
        self,
        matchers: list[_Matchers],
        vocabulary: _Vocabulary,
        eos: int,
        prompt_len: int,
        *,
        finish_from: int,
        max_new_tokens: int,
    ) -> None:
        self.matchers = matchers
        self.vocabulary = vocabulary
        self.eos = eos
        self.prompt_len = prompt_len
        self.finish_from = finish_from
        self.max_new_tokens = max_new_tokens
        self.done = [False] * len(matchers)
        self.where = [(_OUTSIDE, 0)] * len(matchers)  # per row: the JSON state and depth of its reply so far

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        import numpy as np
        import torch

        step = input_ids.shape[1] - self.prompt_len
        n = min(self.vocabulary.tokenizer.vocab_size, scores.shape[1])
        for i, matcher in enumerate(self.matchers):
            if self.done[i]:
                continue
            if step > 0:
                token = int(input_ids[i, -1])
                if token == self.eos or not matcher.consume_token(token):
                    self.done[i] = True  # ended: generate pads the row from here on
                    continue
                self.where[i] = self._moved(self.where[i], token)
            allowed = self._allowed(matcher, n)
            if matcher.is_error() or not allowed.any():
                allowed = np.zeros(n, dtype=np.uint8)
                allowed[self.eos] = 1
            elif step >= self.finish_from:
                left = self.max_new_tokens - step
                allowed = self._finishing(matcher, allowed, *self.where[i], left=left, scores=scores[i, :n])
            keep = torch.zeros(scores.shape[1], dtype=torch.bool)
            keep[:n] = torch.from_numpy(allowed.astype(bool))
            scores[i] = scores[i].masked_fill(~keep, float("-inf"))
        return scores

    def _allowed(self, matcher: _Matchers, n: int) -> np.ndarray:
        import numpy as np

        return np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")[:n]

    def _moved(self, where: tuple[int, int], token: int) -> tuple[int, int]:
        state, depth = where
        if token >= len(self.vocabulary.length):
            return where
        return int(self.vocabulary.state[state, token]), depth + int(self.vocabulary.depth[state, token])

    def _open(self, allowed: np.ndarray, state: int, depth: int) -> np.ndarray:
        """Per token: what would be left to close after it (strings, brackets, commas); the largest if not allowed."""
        import numpy as np

        v = self.vocabulary
        n = len(allowed)
        left = (
            depth
            + v.depth[state, :n].astype(np.int64)
            + _COMMA * v.commas[state, :n]
            + (v.state[state, :n] != _OUTSIDE)
        )
        return np.where(allowed.astype(bool), left, np.iinfo(np.int64).max)

    def _shortest(self, matcher: _Matchers, state: int, depth: int, limit: int) -> tuple[int, int] | None:
        """A short way to a complete document (the least left open, then the longest token): its first token and
        its length with the end-of-text, if that fits in `limit` tokens."""
        import numpy as np

        copy = matcher.deep_copy()
        first = self.eos
        for used in range(limit):
            if copy.is_accepting():
                return first, used + 1
            allowed = self._allowed(copy, len(self.vocabulary.length))
            if not allowed.any():
                return None
            left = self._open(allowed, state, depth)
            token = int(np.argmax(np.where(left == left.min(), self.vocabulary.length[: len(allowed)], -1)))
            if used == 0:
                first = token
            copy.consume_token(token)
            state, depth = self._moved((state, depth), token)
        return None

    def _finishing(
        self, matcher: _Matchers, allowed: np.ndarray, state: int, depth: int, *, left: int, scores: Tensor
    ) -> np.ndarray:
        """The tokens that steer to the end, with `left` tokens left in the budget (this one included).

        End-of-text once the document is complete; else the allowed tokens that leave the least to close, among
        which the model still chooses; once little slack is left, only those of the model's likeliest
        `_CHECKED` after which the shortest way to the end still fits, else that way's next token.
        """
        import numpy as np

        only = np.zeros_like(allowed)
        if matcher.is_accepting() and allowed[self.eos]:
            only[self.eos] = 1
            return only
        still_open = self._open(allowed, state, depth)
        best = (still_open == still_open.min()).astype(allowed.dtype)
        shortest = self._shortest(matcher, state, depth, left)
        if shortest is not None and shortest[1] + _SLACK < left:
            return best
        candidates = np.flatnonzero(best)
        likeliest = candidates[np.argsort(-scores.numpy()[candidates], kind="stable")[:_CHECKED]]
        for token in likeliest:
            copy = matcher.deep_copy()
            copy.consume_token(int(token))
            after = self._shortest(copy, *self._moved((state, depth), int(token)), left - 1)
            only[token] = after is not None
        if not only.any() and shortest is not None:
            only[shortest[0]] = 1
        return only if only.any() else best


def structured_output(tokenizer: PreTrainedTokenizerBase, schema: Mapping[str, Any]) -> StructuredOutput:
    """`schema` compiled for `tokenizer`; `UnsupportedFormat` (one line) when llguidance cannot enforce it."""
    from llguidance import LLMatcher

    vocabulary = _vocabulary(tokenizer)
    try:
        grammar = LLMatcher.grammar_from_json_schema(dict(schema), overrides=_JSON_OPTIONS)  # type: ignore[arg-type]
    except ValueError as e:
        raise UnsupportedFormat(_one_line(str(e))) from None
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, vocabulary.tokenizer)
    if is_error:
        raise UnsupportedFormat(_one_line(messages[0] if messages else "the schema cannot be compiled"))
    # A number the schema names or bounds beyond NUMBER (a 20-digit `const`, a `minimum` of 1e17): no hold then.
    return StructuredOutput(vocabulary, grammar, int(tokenizer.eos_token_id), numbers=_numbers_fit(schema))


def grammar_output(
    tokenizer: PreTrainedTokenizerBase, lark: str, *, schemas: list[Mapping[str, Any]] | None = None
) -> StructuredOutput:
    """A Lark grammar in llguidance's dialect (`%json {...}` for a JSON schema's part) compiled for `tokenizer`.

    Given `schemas`, the JSON schemas of its `%json` parts (its other text writing no number outside a string),
    the reply's numbers are held to `NUMBER` as `structured_output` holds them. `UnsupportedFormat` (one line)
    when llguidance cannot enforce it.
    """
    from llguidance import LLMatcher

    vocabulary = _vocabulary(tokenizer)
    try:
        grammar = LLMatcher.grammar_from_lark(lark)
    except ValueError as e:
        raise UnsupportedFormat(_one_line(str(e))) from None
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, vocabulary.tokenizer)
    if is_error:
        raise UnsupportedFormat(_one_line(messages[0] if messages else "the grammar cannot be compiled"))
    numbers = schemas is not None and all(_numbers_fit(schema) for schema in schemas)
    return StructuredOutput(vocabulary, grammar, int(tokenizer.eos_token_id), numbers=numbers)


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip() and set(line.strip()) != {"^"}]
    return "; ".join(lines)[:300]
