"""A batch of (sample, item) pairs with column access to template paths, computed once per path."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from .errors import GradingError
from .frozen import freeze
from .safety import NestingError, dumps_json, exception_text
from .samples import SampleInput, UnparsedJSON, freeze_sample, frozen_sample, make_sample, parse_json_output

Step = str | int
KeyPath = tuple[Step, ...]  # a template path: `item.a[0]` is ("item", "a", 0)

_MISSING: Any = object()

# For string samples these sample fields are computed straight from the string, without a sample dict.
_FROM_STRING = {
    "output_text": lambda s: s,
    "output_json": parse_json_output,
    "output_tools": lambda s: [],
    "choices": lambda s: [],
}


@dataclass(slots=True, repr=False)
class Column:
    """One value per sample; `failures` maps sample index to why its value is missing."""

    values: list[Any]
    failures: dict[int, GradingError]

    def __repr__(self) -> str:
        return f"Column(n={len(self.values)}, failures={len(self.failures)})"


def path_text(path: KeyPath) -> str:
    """`sample.output_tools[0].function.name` for a path."""
    out = str(path[0])
    for step in path[1:]:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


def _lookup(value: Any, step: Step) -> Any:
    if isinstance(value, Mapping):
        return value[step]
    if isinstance(value, list | tuple | str) and isinstance(step, int):
        return value[step]
    raise KeyError(step)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Building many small dicts triggers the cyclic GC over and over (4x the cost of the work itself);
    # nothing built here forms cycles, so pause it for the loop.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def all_text(values: list[Any]) -> bool:
    """True when every value is a `str` (checked in C by `str.join`, a chunk at a time to bound memory)."""
    join = "".join
    try:
        for start in range(0, len(values), 4096):
            join(values[start : start + 4096])
    except TypeError:
        return False
    return True


class UnrenderableError(ValueError):
    """A value a template cannot print: nested past `MAX_JSON_DEPTH`, an int too long, or a failing `str()`."""


def to_text(value: Any) -> str:
    """How a template renders a value: strings as they are, anything else as JSON (`str()` if not JSON).

    Raises `UnrenderableError` for a value that cannot be printed.
    """
    if type(value) is str:
        return value
    try:
        return dumps_json(value)
    except NestingError as e:
        raise UnrenderableError(str(e)) from None
    except ValueError as e:  # an int of more digits than Python prints
        raise UnrenderableError(exception_text(e)) from None
    except TypeError:  # not a JSON type: its str(), as jinja2 prints it
        pass
    try:
        return str(value)
    except Exception as e:
        raise UnrenderableError(exception_text(e)) from None


class Batch:
    """Samples and items of one grading call; templates read it column by column."""

    __slots__ = ("_all_str", "_cols", "_dicts", "_frozen", "items", "n", "samples")

    def __init__(self, samples: Sequence[SampleInput], items: Sequence[Mapping[str, Any] | None]) -> None:
        if len(samples) != len(items):
            raise ValueError(f"{len(samples)} samples but {len(items)} items: they must pair up one to one")
        self.samples = samples if isinstance(samples, list) else list(samples)
        # Items stay as given (no copy of a million rows); `None` reads as `{}` through `item()`.
        self.items: list[Any] = items if isinstance(items, list) else list(items)
        self.n = len(self.samples)
        self._dicts: list[dict[str, Any] | GradingError] | None = None
        self._cols: dict[KeyPath, Column] = {}
        self._all_str: bool | None = None
        self._frozen: tuple[list[Any], list[Any]] | None = None

    def item(self, i: int) -> Any:
        """The item of sample `i` (`{}` when none was given)."""
        it = self.items[i]
        return {} if it is None else it

    def all_strings(self) -> bool:
        """True when every sample is a plain model output string."""
        if self._all_str is None:
            self._all_str = all_text(self.samples)
        return self._all_str

    def sample_dicts(self) -> list[dict[str, Any] | GradingError]:
        """Each sample as its `sample` dict, or the error that kept it from being built.

        Only gradekit's own code and sandboxed templates read these (nested values may be the caller's);
        user code gets `frozen_inputs`.
        """
        if self._dicts is None:
            out: list[dict[str, Any] | GradingError] = []
            with _gc_paused():
                for s in self.samples:
                    try:
                        out.append(make_sample(s))
                    except GradingError as e:
                        out.append(e)
                    except Exception as e:  # a hostile Mapping or sequence given as the sample
                        reason = f"the sample cannot be read: {exception_text(e)}"
                        out.append(GradingError("sample_parse_error", reason))
            self._dicts = out
        return self._dicts

    def frozen_inputs(self) -> tuple[list[dict[str, Any] | GradingError], list[Any]]:
        """Read-only deep copies (`frozen.freeze`) of every sample dict (or its error) and item, for user code.

        Made once per batch and shared by the batch's graders: user code cannot change what the caller
        passed in, nor (short of `dict.__setitem__` on the copy) what the next grader sees.
        """
        if self._frozen is None:
            with _gc_paused():
                samples: list[dict[str, Any] | GradingError]
                if self._dicts is None and self.all_strings():
                    samples = [frozen_sample(s) for s in self.samples]  # without building plain dicts first
                else:
                    samples = [d if isinstance(d, GradingError) else freeze_sample(d) for d in self.sample_dicts()]
                items = [freeze({} if it is None else it) for it in self.items]
            self._frozen = (samples, items)
        return self._frozen

    def json_notes(self) -> dict[int, str]:
        """Samples whose output was JSON nested too deeply to parse (`output_json` is `{}`), and why.

        Only samples whose `output_json` was needed by a grader are looked at (nothing is parsed here).
        """
        notes: dict[int, str] = {}
        col = self._cols.get(("sample", "output_json"))
        if col is not None:  # every sample's output_json, in one C-level pass
            if UnparsedJSON in set(map(type, col.values)):
                notes.update((i, v.reason) for i, v in enumerate(col.values) if type(v) is UnparsedJSON)
            return notes
        for dicts in (self._dicts, self._frozen[0] if self._frozen is not None else None):
            for i, d in enumerate(dicts or ()):
                if isinstance(d, dict) and type(d.get("output_json")) is UnparsedJSON:
                    notes[i] = UnparsedJSON.reason
        return notes

    def sample_errors(self) -> dict[int, GradingError]:
        """Samples that could not be turned into a `sample` dict."""
        if self._dicts is None and self.all_strings():
            return {}
        return {i: d for i, d in enumerate(self.sample_dicts()) if isinstance(d, GradingError)}

    def column(self, path: KeyPath) -> Column:
        """Values of a template path (`("item", "answer")`) for every sample."""
        col = self._cols.get(path)
        if col is None:
            col = self._cols[path] = self._compute(path)
        return col

    def _compute(self, path: KeyPath) -> Column:
        if len(path) == 1:
            return self._root(path[0])
        step = path[-1]
        if len(path) == 2 and path[0] == "sample" and step in _FROM_STRING and self.all_strings():
            if step == "output_text":
                return Column(self.samples, {})
            return Column(list(map(_FROM_STRING[step], self.samples)), {})
        # Children read the raw items: a `None` item fails the fast lookup and is handled per sample below.
        parent = self.column(path[:-1]) if path[:-1] != ("item",) else Column(self.items, {})
        failures = dict(parent.failures)
        if not failures:
            try:
                return Column(list(map(itemgetter(step), parent.values)), failures)
            except Exception:  # a missing key, or a value that is no container: sorted out per sample below
                pass
        values = []
        for i, v in enumerate(parent.values):
            if i in failures:
                values.append(_MISSING)
                continue
            try:
                values.append(_lookup(v, step))
            except Exception:
                if type(v) is UnparsedJSON:
                    failures[i] = GradingError(
                        "sample_parse_error", f"template variable `{path_text(path)}`: {v.reason}"
                    )
                else:
                    failures[i] = GradingError(
                        "invalid_variable_error",
                        f"template variable `{path_text(path)}` is undefined for this sample",
                    )
                values.append(_MISSING)
        return Column(values, failures)

    def _root(self, name: Step) -> Column:
        if name == "item":
            if None in self.items:
                return Column([{} if it is None else it for it in self.items], {})
            return Column(self.items, {})
        if name == "sample":
            dicts = self.sample_dicts()
            errors = {i: d for i, d in enumerate(dicts) if isinstance(d, GradingError)}
            return Column([_MISSING if isinstance(d, GradingError) else d for d in dicts], errors)
        raise GradingError("invalid_variable_error", f"unknown template namespace `{name}`")
