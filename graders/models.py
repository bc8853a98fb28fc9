"""OpenAI-compatible grader models (and gradekit's `tool_call`), each with its batch grading method."""

from __future__ import annotations

import ast
import asyncio
import functools
import math
import operator
import re
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, field_validator, model_validator

from .base import Grader, coerce_reward
from .batch import Batch, Column
from .errors import GradingError
from .executors import Env
from .formula import Formula, FormulaError, FormulaMathError
from .functions import FunctionGrader
from .limits import MAX_JSON_DEPTH, MAX_PYTHON_SOURCE_BYTES
from .results import Outcome
from .safety import clean_texts, describe, exception_text, finite_float, nesting_exceeds
from .similarity import Metric
from .templates import Template

_TOO_DEEP = f"nests deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH}) levels"
_FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

#: Templates up to this many characters share the big cache; longer ones (up to `MAX_TEMPLATE_CHARS`)
#: a small one, so that definitions arriving over an API cannot pin gigabytes of compiled templates.
_SMALL_TEMPLATE_CHARS = 4096


@functools.lru_cache(maxsize=4096)
def _compile_small(source: str) -> Template:
    return Template(source)


@functools.lru_cache(maxsize=64)
def _compile_large(source: str) -> Template:
    return Template(source)


def compile_template(source: str) -> Template:
    """A compiled template, shared by every grader that uses the same text."""
    return _compile_small(source) if len(source) <= _SMALL_TEMPLATE_CHARS else _compile_large(source)


def _template_field(value: str) -> str:
    compile_template(value)  # raises ValueError naming the problem; pydantic adds the field name
    return value


def _fail_column(out: Outcome, grader: str, col: Column) -> None:
    for i, e in col.failures.items():
        out.fail(i, grader, e.flag, e.message, e.detail)


def _like(a: str, b: str) -> bool:
    return b in a


def _ilike(a: str, b: str) -> bool:
    return b.lower() in a.lower()


_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "like": _like,
    "ilike": _ilike,
}


class StringCheck(Grader):
    """Compares rendered `input` with rendered `reference`: `eq`, `ne`, `like` (contains), `ilike`; reward 0 or 1."""

    type: Literal["string_check"] = "string_check"
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]

    _check_templates = field_validator("input", "reference")(_template_field)

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`."""
        a = compile_template(self.input).render(batch)
        b = compile_template(self.reference).render(batch)
        rewards = [1.0 if hit else 0.0 for hit in map(_STRING_OPS[self.operation], a.values, b.values)]
        out = Outcome(rewards, [None] * batch.n)
        _fail_column(out, self.name, a)
        _fail_column(out, self.name, b)
        return out


class TextSimilarity(Grader):
    """Similarity of rendered `input` and `reference` by `evaluation_metric`, from 0 to 1."""

    type: Literal["text_similarity"] = "text_similarity"
    input: str
    reference: str
    evaluation_metric: Metric
    pass_threshold: _FiniteFloat | None = None

    _check_templates = field_validator("input", "reference")(_template_field)

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`."""
        from .similarity import similarity_scores

        a = compile_template(self.input).render(batch)
        b = compile_template(self.reference).render(batch)
        out = Outcome.empty(batch.n)
        bad = a.failures.keys() | b.failures.keys()
        good = [i for i in range(batch.n) if i not in bad] if bad else range(batch.n)
        # Lone surrogates become U+FFFD: they are not UTF-8, which an embedding endpoint needs.
        inputs = clean_texts([a.values[i] for i in good] if bad else a.values)
        references = clean_texts([b.values[i] for i in good] if bad else b.values)
        try:
            # Inline, not in a thread: the metrics are pure Python (the GIL gives threads no parallelism) and a
            # thread hop per batch cost more than the metric on small batches; judges' I/O runs on the model
            # client's own loop meanwhile.
            scores = similarity_scores(self.evaluation_metric, inputs, references, embedder=env.embedder)
        except ImportError as e:  # a missing library fails the batch's samples, not the caller
            for i in good:
                out.fail(i, self.name, "other_error", f"{self.evaluation_metric}: {exception_text(e)}")
        except Exception as e:
            if self.evaluation_metric == "cosine":  # an embedding endpoint that failed: every sample, no reward
                for i in good:
                    message = f"{self.evaluation_metric}: {exception_text(e)}"
                    out.fail(i, self.name, "other_error", message, no_reward=True)
            else:  # a text metric that choked on one pair: score each pair alone
                self._score_one_by_one(out, list(good), inputs, references)
        else:
            self._settle(out, good, scores)
        _fail_column(out, self.name, a)
        _fail_column(out, self.name, b)
        return out

    def _score_one_by_one(self, out: Outcome, good: list[int], inputs: list[str], references: list[str]) -> None:
        from .similarity import similarity_scores

        for i, x, y in zip(good, inputs, references, strict=True):
            try:
                (score,) = similarity_scores(self.evaluation_metric, [x], [y])
            except Exception as e:
                out.fail(i, self.name, "other_error", f"{self.evaluation_metric}: {exception_text(e)}")
            else:
                self._settle(out, [i], [score])

    def _settle(self, out: Outcome, good: Sequence[int], scores: list[float]) -> None:
        if len(scores) != len(good):
            message = f"{self.evaluation_metric}: {len(scores)} scores for {len(good)} pairs"
            for i in good:
                out.fail(i, self.name, "other_error", message)
            return
        # The common case, checked in C; NaN fails no comparison, so min/max alone would let it through.
        if (
            scores
            and set(map(type, scores)) == {float}
            and min(scores) >= 0.0
            and max(scores) <= 1.0
            and not math.isnan(sum(scores))
        ):
            if len(good) == len(out.rewards):  # every sample: `good` is range(n)
                out.rewards[:] = scores
            else:
                for i, score in zip(good, scores, strict=True):
                    out.rewards[i] = score
            return
        for i, score in zip(good, scores, strict=True):
            value = finite_float(score)
            if value is None or not 0.0 <= value <= 1.0:
                out.fail(i, self.name, "other_error", f"{self.evaluation_metric} gave {describe(score)}, not in [0, 1]")
            else:
                out.rewards[i] = value


def _check_python_source(source: str) -> str:
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_PYTHON_SOURCE_BYTES:
        raise ValueError(f"source is {size} bytes; OpenAI's limit is {MAX_PYTHON_SOURCE_BYTES} (256 kB)")
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"source does not parse: {e.msg} (line {e.lineno})") from None
    except (RecursionError, MemoryError):  # CPython's parser on deeply nested expressions
        raise ValueError("source nests too deeply to parse") from None
    except ValueError as e:  # e.g. a lone surrogate, which is not UTF-8
        raise ValueError(f"source does not parse: {exception_text(e)}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "grade":
            args = node.args
            positional = len(args.posonlyargs) + len(args.args)
            if positional != 2 or args.vararg or any(d is None for d in args.kw_defaults):
                raise ValueError("`grade` must take exactly two positional arguments: grade(sample, item)")
            return source
    raise ValueError("source defines no top-level function `grade(sample, item)`")


def _user_inputs(grader: str, batch: Batch, out: Outcome) -> tuple[list[int], list[Any], list[Any]]:
    """The samples and items user code (a `python` grader, an endpoint) may get, read-only, with their indices."""
    samples, items = batch.frozen_inputs()  # an in-process executor must not change the caller's data
    idx = []
    for i, sample in enumerate(samples):
        if isinstance(sample, GradingError):
            continue
        # They may be sent as JSON (recursively): past the bound they are this sample's error.
        if nesting_exceeds(sample):
            out.fail(i, grader, "sample_parse_error", f"the sample {_TOO_DEEP}")
        elif nesting_exceeds(items[i]):
            out.fail(i, grader, "invalid_variable_error", f"the item {_TOO_DEEP}")
        else:
            idx.append(i)
    return idx, [samples[i] for i in idx], [items[i] for i in idx]


class PythonGrader(Grader):
    """Runs `source`'s `grade(sample, item) -> float` (in the environment's Python executor); None: no reward."""

    type: Literal["python"] = "python"
    source: str
    image_tag: str | None = None

    _check_source = field_validator("source")(_check_python_source)

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`."""
        out = Outcome.empty(batch.n)
        idx, samples, items = _user_inputs(self.name, batch, out)
        calls = await env.python.run(self, samples, items)  # type: ignore[misc]
        for i, call in zip(idx, calls, strict=True):
            try:
                if call.error is not None:
                    raise call.error
                if call.value is None:  # grade() says it does not apply to this sample: no reward
                    out.skip(i, self.name)
                    continue
                out.rewards[i] = coerce_reward(call.value)
            except GradingError as e:
                out.fail(i, self.name, e.flag, e.message, e.detail, no_reward=e.no_reward)
        return out


class Message(BaseModel):
    """An input message of a model grader; string content (and text parts) may hold templates."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system", "developer"]
    content: str | dict[str, Any] | list[str | dict[str, Any]]
    type: Literal["message"] | None = None

    @field_validator("content")
    @classmethod
    def _check_templates(cls, value: Any) -> Any:
        for text in _template_strings(value):
            compile_template(text)
        return value


_TEMPLATED_KEYS = ("text", "image_url")


def _template_strings(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, dict):
        return [content[k] for k in _TEMPLATED_KEYS if isinstance(content.get(k), str)]
    if isinstance(content, list):
        return [s for part in content for s in _template_strings(part)]
    return []


def _fill(content: Any, rendered: dict[str, str]) -> Any:
    if isinstance(content, str):
        return rendered[content]
    if isinstance(content, dict):
        return {k: rendered[v] if k in _TEMPLATED_KEYS and isinstance(v, str) else v for k, v in content.items()}
    if isinstance(content, list):
        return [_fill(part, rendered) for part in content]
    return content


class SamplingParams(BaseModel):
    """Sampling parameters of a `score_model` judge."""

    model_config = ConfigDict(extra="forbid")

    # Bounded as the API's own integer and float types are: a definition from an HTTP API may hold a
    # number of thousands of digits, which no client can send on.
    max_completions_tokens: Annotated[int, Field(ge=1, lt=2**31)] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**63)] | None = None
    temperature: _FiniteFloat | None = None
    top_p: _FiniteFloat | None = None


class _ModelGrader(Grader):
    model: str
    input: list[Message]

    def _render_messages(self, batch: Batch, out: Outcome) -> tuple[list[int], list[list[dict[str, Any]]]]:
        texts = sorted({t for m in self.input for t in _template_strings(m.content)})
        cols = {t: compile_template(t).render(batch) for t in texts}
        for col in cols.values():
            _fail_column(out, self.name, col)
        idx = [i for i in range(batch.n) if out.notes[i] is None or not out.notes[i].failed]  # type: ignore[union-attr]
        messages = []
        for i in idx:
            rendered = {t: c.values[i] for t, c in cols.items()}
            messages.append([{"role": m.role, "content": _fill(m.content, rendered)} for m in self.input])
        return idx, messages

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch` with the environment's model client."""
        out = Outcome.empty(batch.n)
        idx, messages = self._render_messages(batch, out)
        if not idx:
            return out
        if env.model is None:
            for i in idx:
                out.fail(
                    i,
                    self.name,
                    "model_grader_server_error",
                    "no model client configured",
                    "no model client configured: use gradekit.runtime, or pass an Env with a ModelClient",
                )
            return out
        grades = await env.model.grade(self, messages)  # type: ignore[arg-type]
        for i, g in zip(idx, grades, strict=True):
            note = out.note(i)
            usage = {str(k): v for k, v in g.usage.items() if type(v) is int} if g.usage else {}
            if g.model:
                note.sampled_model_name = str(g.model)
                if usage:
                    note.usage_per_model[str(g.model)] = usage
            if usage:
                note.token_usage = usage.get("total_tokens")
            if g.error is not None:
                out.fail(i, self.name, g.error.flag, g.error.message, g.error.detail, no_reward=g.error.no_reward)
                continue
            out.rewards[i] = self._reward(g.result, g.label, note.scores)
            if g.steps:
                note.scores["steps"] = g.steps
        return out

    def _reward(self, result: float | None, label: str | None, scores: dict[str, Any]) -> float:
        raise NotImplementedError


class ScoreModel(_ModelGrader):
    """Asks a judge model for a score, clipped to `range`."""

    type: Literal["score_model"] = "score_model"
    range: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    sampling_params: SamplingParams | None = None
    pass_threshold: _FiniteFloat | None = None

    @field_validator("range")
    @classmethod
    def _check_range(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not all(math.isfinite(v) for v in value) or value[0] >= value[1]:
            raise ValueError(f"range must be two finite numbers [low, high] with low < high, got {value}")
        return value

    def _reward(self, result: float | None, label: str | None, scores: dict[str, Any]) -> float:
        lo, hi = self.range
        number = finite_float(result)  # a judge's reply may hold anything: a huge int, a string, NaN
        value = lo if number is None else number
        scores["result"] = value
        return min(max(value, lo), hi)


class LabelModel(_ModelGrader):
    """Asks a judge model for one of `labels`; reward 1 when it is one of `passing_labels`."""

    type: Literal["label_model"] = "label_model"
    labels: list[str]
    passing_labels: list[str]

    @model_validator(mode="after")
    def _check_labels(self) -> LabelModel:
        if not self.labels:
            raise ValueError("labels must not be empty")
        extra = [p for p in self.passing_labels if p not in self.labels]
        if extra:
            raise ValueError(f"passing_labels {extra} are not in labels {self.labels}")
        return self

    def _reward(self, result: float | None, label: str | None, scores: dict[str, Any]) -> float:
        scores["label"] = label
        return 1.0 if label in self.passing_labels else 0.0


class ToolCall(Grader):
    """gradekit extension: compares the sample's tool calls with the expected calls from the item."""

    openai_native: ClassVar[bool] = False

    type: Literal["tool_call"] = "tool_call"
    expected: str = "{{ item.expected_tool_calls }}"
    tools: str | None = None
    arguments: Literal["exact", "subset", "schema"] = "exact"
    ordered: bool = False

    _check_templates = field_validator("expected", "tools")(
        lambda v: v if v is None else _template_field(v)  # type: ignore[arg-type]
    )

    @model_validator(mode="after")
    def _check_schema_mode(self) -> ToolCall:
        if self.arguments == "schema" and self.tools is None:
            raise ValueError("arguments='schema' needs `tools`, a template for the item's tool list")
        return self

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`."""
        from .tool_calls import score_tool_calls

        out = Outcome.empty(batch.n)
        actual = batch.column(("sample", "output_tools"))
        expected = compile_template(self.expected).values(batch)
        tools = compile_template(self.tools).values(batch) if self.tools is not None else None
        for col in (actual, expected, tools):
            if col is not None:
                _fail_column(out, self.name, col)
        for i in range(batch.n):
            if out.notes[i] is not None:
                continue
            try:
                score = score_tool_calls(
                    actual.values[i],
                    expected.values[i],
                    arguments=self.arguments,
                    ordered=self.ordered,
                    tools=tools.values[i] if tools is not None else None,
                )
            except GradingError as e:
                out.fail(i, self.name, e.flag, e.message, e.detail)
                continue
            out.rewards[i] = score.reward
            out.note(i).scores.update(matched=score.matched, expected=score.expected, actual=score.actual)
        return out


#: Where the `endpoint` grader's contract is published (Microsoft Foundry RFT, section "Endpoint Graders").
ENDPOINT_CONTRACT = (
    "https://github.com/microsoft-foundry/fine-tuning/blob/main/Demos/Agentic_RFT_PrivatePreview/README.md"
)

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def _check_url(value: str) -> str:
    try:
        parts = urllib.parse.urlsplit(value)
        port_ok = parts.port is None or parts.port > 0  # `.port` raises ValueError when out of range
    except ValueError as e:
        raise ValueError(f"is not a URL ({exception_text(e)}): {describe(value, 120)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or re.search(r"\s", value):
        raise ValueError(f"must be an http:// or https:// URL with a host, got {describe(value, 120)}")
    return value


def _check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    for name, text in (value or {}).items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{describe(name, 80)} is not an HTTP header name")
        if not _HEADER_VALUE.fullmatch(text):
            raise ValueError(f"the value of header {name!r} holds a control character (a line break?)")
    return value


def endpoint_score(reply: Any) -> float:
    """The score of an endpoint's reply `{"score": number}`; else a `model_grader_parse_error` saying what came."""
    if not isinstance(reply, Mapping) or "score" not in reply:
        raise GradingError(
            "model_grader_parse_error", f'endpoint replied {describe(reply, 200)}, not {{"score": number}}'
        )
    score = reply["score"]
    number = None if isinstance(score, bool) else finite_float(score)
    if number is None:
        raise GradingError(
            "model_grader_parse_error",
            f"endpoint's score is {type(score).__name__} {describe(score, 120)}, not a finite number",
        )
    return number


def trace_id() -> str:
    """A new `trace_id`: "trace_" and a UUID's 32 hex digits (the contract says "a UUID prefixed by trace_")."""
    return f"trace_{uuid.uuid4().hex}"


class Endpoint(Grader):
    """Microsoft Foundry's `endpoint` grader: POSTs `{"sample", "item", "trace_id"}` to `url`, reads `{"score"}`.

    The request goes through the environment's `EndpointCaller` (`gradekit.runtime`'s honours `rate_limit`,
    retries and turns transport failures into `unresponsive_reward_error`); a reply that is not a finite
    `score` is a `model_grader_parse_error`. The score is the reward as it is: the contract sets no range.
    """

    openai_native: ClassVar[bool] = False  # Foundry's API takes it; OpenAI's does not

    type: Literal["endpoint"] = "endpoint"
    url: str
    #: Sent with every request (e.g. `Authorization` or `X-Functions-Key`): the contract's key-based auth.
    headers: dict[str, str] | None = None
    #: Most requests per second sent to `url`.
    rate_limit: Annotated[int, Field(ge=1, lt=2**31)] | None = None
    pass_threshold: _FiniteFloat | None = None

    _check_url = field_validator("url")(_check_url)
    _check_headers = field_validator("headers")(_check_headers)

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch` with one request each."""
        out = Outcome.empty(batch.n)
        idx, samples, items = _user_inputs(self.name, batch, out)
        if not idx:
            return out
        if env.endpoint is None:
            for i in idx:
                message = "no endpoint client configured: use gradekit.runtime, or pass an Env with an EndpointCaller"
                out.fail(i, self.name, "unresponsive_reward_error", message)
            return out
        bodies = [{"sample": s, "item": it, "trace_id": trace_id()} for s, it in zip(samples, items, strict=True)]
        calls = await env.endpoint.post(self, bodies)
        for i, body, call in zip(idx, bodies, calls, strict=True):
            try:
                if call.error is not None:
                    raise call.error
                out.rewards[i] = endpoint_score(call.value)
            except GradingError as e:
                out.fail(i, self.name, e.flag, f"{e.message} (trace_id {body['trace_id']})", e.detail)
        return out


SubGrader = Annotated[
    StringCheck | TextSimilarity | PythonGrader | ScoreModel | LabelModel | ToolCall | Endpoint | FunctionGrader,
    Field(discriminator="type"),
]


def _named_by_key(key: Any, g: Any) -> Any:
    """A nameless sub-grader of a `multi` dict, named by its key (a named one as it is)."""
    if isinstance(g, Mapping) and "name" not in g and isinstance(key, str):
        return {**g, "name": key}
    if isinstance(g, Grader) and not g.named and isinstance(key, str):
        return g.model_copy(update={"name": key})
    return g


class Multi(Grader):
    """Combines named sub-graders with the `calculate_output` formula over their rewards.

    A sub-grader that gave no reward (returned None, or could not grade) leaves the formula without a value:
    the multi gives no reward either, unless another sub-grader failed the sample (reward 0).
    """

    type: Literal["multi"] = "multi"
    graders: dict[str, SubGrader]
    calculate_output: str

    _formula: Formula = PrivateAttr()

    @field_validator("graders", mode="before")
    @classmethod
    def _graders_as_dict(cls, value: Any) -> Any:
        # OpenAI's SDK types `graders` as one grader; the guide uses a dict. Accept both, and a list.
        # A sub-grader without a `name` is named by its key in the dict form, else by its `type`.
        if isinstance(value, Mapping) and isinstance(value.get("type"), str):
            return {value.get("name", value["type"]): value}
        if isinstance(value, Grader):
            return {value.name: value}
        if isinstance(value, list | tuple):
            out = {}
            for g in value:
                key = (
                    g.name
                    if isinstance(g, Grader)
                    else g.get("name", g.get("type"))
                    if isinstance(g, Mapping)
                    else None
                )
                if not isinstance(key, str):
                    raise ValueError("each grader in a list needs a `name` or `type` (it becomes its formula variable)")
                if key in out:
                    raise ValueError(f"two graders in the list are named {key!r}: give them distinct `name`s")
                out[key] = g
            return out
        if isinstance(value, Mapping):
            return {k: _named_by_key(k, g) for k, g in value.items()}
        return value

    @field_validator("calculate_output")
    @classmethod
    def _check_formula(cls, value: str, info: Any) -> str:
        names = info.data.get("graders")
        try:
            Formula(value, names=list(names) if names is not None else None)
        except FormulaError as e:
            raise ValueError(f"formula_parse_error: {e}") from None
        return value

    @model_validator(mode="after")
    def _compile(self) -> Multi:
        if not self.graders:
            raise ValueError("graders must not be empty")
        self._formula = Formula(self.calculate_output, names=list(self.graders))
        return self

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample with each sub-grader (concurrently), then apply the formula."""
        keys = list(self.graders)
        subs = await asyncio.gather(*(self.graders[k].grade_batch(batch, env) for k in keys))
        columns = {k: o.rewards for k, o in zip(keys, subs, strict=True)}
        rewards, math_errors = self._evaluate(columns, batch.n)
        out = Outcome(rewards, [None] * batch.n, sub_rewards=columns)
        for k, o in zip(keys, subs, strict=True):
            for i, n in enumerate(o.notes):
                if n is not None:
                    out.note(i).merge(n, key=k)
        for i, message in math_errors.items():
            if out.no_reward(i) is None:  # a formula over a missing value has no result to fail
                out.fail(i, self.name, "other_error", f"calculate_output: {message}")
        for i, n in enumerate(out.notes):
            # A sub-grader that failed the sample makes it 0; one that gave no reward leaves it without one.
            if n is not None and (n.failed or n.no_reward is not None):
                out.rewards[i] = 0.0
        return out

    def _evaluate(self, columns: dict[str, list[float]], n: int) -> tuple[list[float], dict[int, str]]:
        """The formula over the sub-rewards; a sample whose values make it raise fails alone."""
        try:
            return self._formula.evaluate_columns(columns, n)
        except Exception:  # a sub-grader left a non-number: find it sample by sample
            pass
        rewards, errors = [0.0] * n, {}
        for i in range(n):
            try:
                rewards[i] = self._formula.evaluate({k: c[i] for k, c in columns.items()})
            except Exception as e:
                errors[i] = str(e) if isinstance(e, FormulaMathError) else exception_text(e)
        return rewards, errors


AnyGrader = Annotated[
    StringCheck
    | TextSimilarity
    | PythonGrader
    | ScoreModel
    | LabelModel
    | Multi
    | ToolCall
    | Endpoint
    | FunctionGrader,
    Field(discriminator="type"),
]

GRADER_TYPES: dict[str, type[Grader]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        StringCheck,
        TextSimilarity,
        PythonGrader,
        ScoreModel,
        LabelModel,
        Multi,
        ToolCall,
        Endpoint,
        FunctionGrader,
    )
}


@functools.cache
def grader_adapter() -> TypeAdapter[Any]:
    """The pydantic adapter for any grader (the discriminated union is the registry)."""
    return TypeAdapter(AnyGrader)
