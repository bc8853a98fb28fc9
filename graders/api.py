"""`run`, `run_batch`, `validate` and `load_grader`: the entry points every other part of gradekit uses."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from .base import Grader
from .batch import Batch
from .errors import GraderValidationError, Problem
from .executors import Env, format_exception
from .functions import FunctionGrader, import_reference
from .limits import MAX_JSON_DEPTH
from .models import GRADER_TYPES, LabelModel, grader_adapter
from .results import BatchResult, Outcome, RunResult
from .safety import exception_text, loads_json
from .samples import SampleInput

GraderLike = Grader | Mapping[str, Any] | str | os.PathLike[str]
T = TypeVar("T")

#: Suffixes of grader files (JSON or YAML).
GRADER_FILE_SUFFIXES = (".json", ".yaml", ".yml")

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _field(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """A validation location as the field the user wrote: without the grader-type tags the union puts in it."""
    parts = list(loc)
    if parts and parts[0] in GRADER_TYPES:
        parts = parts[1:]
    out: list[str | int] = []
    i = 0
    while i < len(parts):
        out.append(parts[i])
        i += 1
        if out[-1] == "graders" and i < len(parts):
            out.append(parts[i])  # the sub-grader's key; its type tag follows
            i += 1
            if i < len(parts) and parts[i] in GRADER_TYPES:
                i += 1
    return tuple(out)


def _problems(error: ValidationError) -> list[Problem]:
    problems = []
    for e in error.errors(include_url=False):
        loc = tuple(e["loc"])
        field = _field(loc)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            tag = e.get("ctx", {}).get("tag")
            if tag == "multi" and "graders" in loc:
                msg = "a multi grader cannot contain another multi grader"
            else:
                msg = f"unknown grader type {tag!r} (known: {', '.join(GRADER_TYPES)})"
            field += ("type",)
        elif e["type"] == "union_tag_not_found":
            msg = "grader has no `type` field"
            field += ("type",)
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(Problem(field, msg, loc))
    return problems


def _read_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:  # its mark says where: line and column, counted from 0
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ValueError(f"not valid YAML{where}: {problem}") from None
        except RecursionError:
            raise ValueError(f"YAML nests deeper than Python can parse (MAX_JSON_DEPTH is {MAX_JSON_DEPTH})") from None
    return loads_json(text)


def load_grader(source: GraderLike) -> Grader:
    """A grader from a model, its JSON dict, JSON text, a `.json`/`.yaml` file path, or `module:function`."""
    if isinstance(source, Grader):
        return source
    obj: Any = source
    if isinstance(source, os.PathLike | str):
        text = os.fspath(source)
        if text.lstrip().startswith("{"):
            try:
                obj = loads_json(text)
            except ValueError as e:  # also NestingError, past MAX_JSON_DEPTH
                raise GraderValidationError([f"grader JSON does not parse: {e}"]) from None
        elif Path(text).is_file():
            try:
                obj = _read_file(Path(text))
            except (OSError, ValueError) as e:
                raise GraderValidationError([f"{text}: cannot read grader: {e}"]) from None
        elif _REFERENCE.match(text):
            try:
                obj = import_reference(text)
            except (ImportError, AttributeError) as e:
                raise GraderValidationError([f"{text}: cannot import: {e}"]) from None
            if isinstance(obj, Grader):
                return obj
            if callable(obj):
                try:
                    return FunctionGrader.from_function(obj)
                except TypeError as e:
                    raise GraderValidationError([str(e)]) from None
        elif Path(text).suffix.lower() in GRADER_FILE_SUFFIXES and not Path(text).exists():
            raise GraderValidationError([f"grader file {text} does not exist"])
        else:
            raise GraderValidationError([f"{text!r} is neither a grader file, JSON, nor a `module:function`"])
    if isinstance(obj, Grader):
        return obj
    if not isinstance(obj, Mapping):
        raise GraderValidationError([f"a grader must be a JSON object, got {type(obj).__name__}"])
    try:
        return grader_adapter().validate_python(obj)
    except ValidationError as e:
        raise GraderValidationError(_problems(e)) from None


def validate(grader: GraderLike) -> Grader:
    """The normalised grader, or a `GraderValidationError` listing every problem (as OpenAI's validate does)."""
    g = load_grader(grader)
    if isinstance(g, LabelModel):
        raise GraderValidationError(
            [Problem(("type",), "label_model is only allowed inside a multi grader, not at the top level")]
        )
    return g


_FUNCTION_REFUSED = (
    "`function` graders run server-side Python and are not accepted over HTTP; send a `python` grader instead"
)


def _inert(node: Mapping[str, Any]) -> dict[str, Any]:
    """A grader that stands in for a refused `function` sub-grader, so the rest of the multi is still checked."""
    return {"type": "string_check", "name": str(node.get("name", "")), "input": "", "reference": "", "operation": "eq"}


def validate_untrusted(obj: Any) -> Grader:
    """`validate` for a definition a remote sender wrote: `function` graders, which import code here, are refused.

    Every refused sub-grader is one more problem next to what else is wrong, so one answer lists them all.
    """
    if not isinstance(obj, Mapping):  # never a file path or `module:function`: those name things here
        raise GraderValidationError([f"a grader must be a JSON object, got {type(obj).__name__}"])
    if obj.get("type") == "function":
        raise GraderValidationError([Problem(("type",), _FUNCTION_REFUSED)])
    graders = obj.get("graders") if obj.get("type") == "multi" else None
    refused: list[Problem] = []
    if isinstance(graders, Mapping | list):
        if isinstance(graders, Mapping) and "type" in graders:  # the SDK's single-grader form
            items: list[tuple[tuple[str | int, ...], Any]] = [((), graders)]
        else:
            keyed = graders.items() if isinstance(graders, Mapping) else enumerate(graders)
            items = [((k,), v) for k, v in keyed]
        swapped = []
        for key, node in items:
            if isinstance(node, Mapping) and node.get("type") == "function":
                refused.append(Problem(("graders", *key, "type"), _FUNCTION_REFUSED))
                node = _inert(node)
            swapped.append((key, node))
        if refused:
            if not items[0][0]:
                new: Any = swapped[0][1]
            elif isinstance(graders, list):
                new = [node for _, node in swapped]
            else:
                new = {key[0]: node for key, node in swapped}
            obj = {**obj, "graders": new}
    try:
        grader = validate(obj)
    except GraderValidationError as e:
        raise GraderValidationError([*refused, *e.details]) from None
    if refused:
        raise GraderValidationError(refused)
    return grader


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (a notebook, a server): run on a private loop in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def arun_batch(
    grader: GraderLike,
    samples: Sequence[SampleInput],
    items: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    env: Env | None = None,
) -> BatchResult:
    """Grade many samples at once (async); see `run_batch`."""
    g = validate(grader)
    batch = Batch(samples, items if items is not None else [None] * len(samples))
    start = time.perf_counter()
    outcome = await _grade(g, batch, env or shared_env())
    for i, reason in batch.json_notes().items():
        outcome.note(i).scores.setdefault("output_json_error", reason)
    for i, e in batch.sample_errors().items():
        # A sample that could not be built fails with that reason alone, whatever its graders made of it.
        outcome.notes[i] = None
        outcome.fail(i, g.name, e.flag, e.message, e.detail)
    return BatchResult(
        name=g.name,
        type=g.type,
        rewards=outcome.rewards,
        notes=outcome.notes,
        sub_rewards=outcome.sub_rewards,
        execution_time=time.perf_counter() - start,
    )


async def _grade(g: Grader, batch: Batch, env: Env) -> Outcome:
    """`g.grade_batch`, except that a sample that makes grading raise fails alone with `other_error`.

    Graders turn every failure they expect into a flag; this is the net under them. On an exception the
    batch is graded again one sample at a time, so the other samples still get their rewards.
    """
    try:
        return await g.grade_batch(batch, env)
    except Exception as e:
        error = e
    outcome = Outcome.empty(batch.n)
    for i in range(batch.n):
        try:
            if batch.n == 1:
                raise error
            single = await g.grade_batch(Batch([batch.samples[i]], [batch.items[i]]), env)
        except Exception as e:
            outcome.fail(i, g.name, "other_error", f"grading failed: {exception_text(e)}", format_exception(e))
            continue
        outcome.rewards[i] = single.rewards[0]
        outcome.notes[i] = single.notes[0]
        for key, column in single.sub_rewards.items():
            outcome.sub_rewards.setdefault(key, [0.0] * batch.n)[i] = column[0]
    return outcome


def run_batch(
    grader: GraderLike,
    samples: Sequence[SampleInput],
    items: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    env: Env | None = None,
) -> BatchResult:
    """Grade many (sample, item) pairs at once: the fast path. Rewards come back as a column."""
    return _run_sync(arun_batch(grader, samples, items, env=env))


async def arun(
    grader: GraderLike,
    model_sample: SampleInput,
    item: Mapping[str, Any] | None = None,
    *,
    env: Env | None = None,
) -> RunResult:
    """Grade one sample (async); see `run`."""
    result = await arun_batch(grader, [model_sample], [item], env=env)
    return result[0]


def run(
    grader: GraderLike,
    model_sample: SampleInput,
    item: Mapping[str, Any] | None = None,
    *,
    env: Env | None = None,
) -> RunResult:
    """Grade one sample, like OpenAI's `fine_tuning.alpha.graders.run`; failures are flags, never exceptions."""
    return _run_sync(arun(grader, model_sample, item, env=env))


_ENV: Env | None = None


def shared_env() -> Env:
    """The environment used when none is passed (shared by the process): a `gradekit.env` entry point's if
    installed, else in-process.

    gradekit.runtime registers one (sandboxed Python graders, OpenAI-compatible model clients); graders
    never import it.
    """
    global _ENV
    if _ENV is None:
        from importlib.metadata import entry_points

        found = sorted(entry_points(group="gradekit.env"), key=lambda e: e.name)
        _ENV = found[0].load()() if found else Env()
    return _ENV
