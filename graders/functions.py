"""Plain Python functions as graders: `@grader def f(sample, item) -> float` (or None: "does not apply")."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, overload

from pydantic import PrivateAttr, model_validator

from .base import Grader, coerce_reward
from .batch import Batch
from .errors import GradingError
from .executors import USER_CODE_ERRORS, Env, format_exception
from .results import Outcome
from .safety import describe, exception_text

_ARG_NAMES = frozenset({"sample", "item"})


@dataclass(frozen=True, slots=True)
class Score:
    """A reward with named sub-scores, as a function grader may return it."""

    reward: float | None
    scores: dict[str, Any] = field(default_factory=dict)


def _calling_convention(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The argument names to pass by keyword, or None to pass (sample, item) by position."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot read the signature of {fn!r}: {e}") from None
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if named and all(p.name in _ARG_NAMES for p in named):
        return tuple(p.name for p in named)
    positional = [p for p in named if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in named if p.default is p.empty]
    if len(positional) >= 2 and len(required) <= 2 and all(p in positional[:2] for p in required):
        return None
    raise TypeError(
        f"grader function {getattr(fn, '__qualname__', fn)!r} must take (sample, item), or any of them by name; "
        f"it takes ({', '.join(p.name for p in params)})"
    )


def function_reference(fn: Callable[..., Any]) -> str:
    """`module:qualname` of a function, as written in a grader's JSON form."""
    return f"{fn.__module__}:{fn.__qualname__}"


def import_reference(ref: str) -> Any:
    """The object a `module:qualname` reference names."""
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"{ref!r} is not a `module:function` reference")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _reward_of(value: Any, scores: dict[str, Any]) -> float | None:
    """The reward a grader function returned; None when it says it does not apply to the sample."""
    if value is None:
        return None
    if isinstance(value, Score):
        scores.update(value.scores)
        return None if value.reward is None else coerce_reward(value.reward)
    if isinstance(value, Mapping):
        if "reward" not in value:
            raise GradingError(
                "python_grader_runtime_error",
                "grader returned a mapping without a `reward` key",
                f"returned keys: {describe(list(value))}",
            )
        scores.update({k: v for k, v in value.items() if k != "reward"})
        return None if value["reward"] is None else coerce_reward(value["reward"])
    return coerce_reward(value)


async def _guarded(awaitable: Any) -> Any:
    # asyncio re-raises SystemExit from a task out of the event loop; an `async` grader calling
    # sys.exit() fails only its sample.
    try:
        return await awaitable
    except SystemExit as e:
        return e


class FunctionGrader(Grader):
    """A Python function as a grader (gradekit extension); JSON form `{"type": "function", "function": "m:f"}`."""

    openai_native: ClassVar[bool] = False

    type: Literal["function"] = "function"
    function: str

    _fn: Callable[..., Any] = PrivateAttr()
    _names: tuple[str, ...] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve(self) -> FunctionGrader:
        if (self.__pydantic_private__ or {}).get("_fn") is None:
            try:
                obj = import_reference(self.function)
            except (ImportError, AttributeError, ValueError) as e:
                raise ValueError(f"function {self.function!r} cannot be imported: {e}") from None
            try:
                self._bind(obj)
            except TypeError as e:
                raise ValueError(str(e)) from None
        return self

    def _bind(self, fn: Callable[..., Any]) -> None:
        if isinstance(fn, FunctionGrader):
            fn = fn._fn
        if not callable(fn):
            raise ValueError(f"{self.function!r} is not callable")
        self._names = _calling_convention(fn)
        self._fn = fn

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None) -> FunctionGrader:
        """Wrap `fn` (sync or async) as a grader; its signature is checked here, once."""
        if isinstance(fn, FunctionGrader):
            return fn if name in (None, fn.name) else fn.model_copy(update={"name": name})
        names = _calling_convention(fn)
        g = cls.model_construct(name=name or fn.__name__, type="function", function=function_reference(fn))
        g._fn, g._names = fn, names
        return g

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly."""
        return self._fn(*args, **kwargs)

    @property
    def fn(self) -> Callable[..., Any]:
        """The wrapped function."""
        return self._fn

    def _call(self, sample: Any, item: Any) -> Any:
        if self._names is None:
            return self._fn(sample, item)
        args = {"sample": sample, "item": item}
        return self._fn(**{k: args[k] for k in self._names})

    async def grade_batch(self, batch: Batch, env: Env) -> Outcome:
        """Grade every sample of `batch`; coroutine results are awaited concurrently.

        The function gets read-only copies of the sample and item (`gradekit.graders.frozen`): it cannot
        change the caller's data, nor what other graders of the batch see.
        """
        out = Outcome.empty(batch.n)
        samples, items = batch.frozen_inputs()
        pending: list[tuple[int, Any]] = []
        for i, sample in enumerate(samples):
            if isinstance(sample, GradingError):
                out.fail(i, self.name, sample.flag, sample.message, sample.detail)
                continue
            try:
                value = self._call(sample, items[i])
                awaitable = inspect.isawaitable(value)
            except USER_CODE_ERRORS as e:
                self._fail(out, i, e)
                continue
            if awaitable:
                pending.append((i, value))
            else:
                self._settle(out, i, value)
        if pending:
            values = await asyncio.gather(*(_guarded(v) for _, v in pending), return_exceptions=True)
            for (i, _), value in zip(pending, values, strict=True):
                if isinstance(value, BaseException):
                    self._fail(out, i, value)
                else:
                    self._settle(out, i, value)
        return out

    def _settle(self, out: Outcome, i: int, value: Any) -> None:
        scores: dict[str, Any] = {}
        try:
            reward = _reward_of(value, scores)
            if reward is None:
                out.skip(i, self.name)
            else:
                out.rewards[i] = reward
        except GradingError as e:
            out.fail(i, self.name, e.flag, e.message, e.detail, no_reward=e.no_reward)
        except Exception as e:  # a returned mapping or Score whose access raises
            self._fail(out, i, e)
        if scores:
            out.note(i).scores.update(scores)

    def _fail(self, out: Outcome, i: int, exc: BaseException) -> None:
        if isinstance(exc, GradingError):
            out.fail(i, self.name, exc.flag, exc.message, exc.detail, no_reward=exc.no_reward)
        else:
            out.fail(i, self.name, "python_grader_runtime_error", exception_text(exc), format_exception(exc))


@overload
def grader(fn: Callable[..., Any], /) -> FunctionGrader: ...
@overload
def grader(*, name: str | None = None) -> Callable[[Callable[..., Any]], FunctionGrader]: ...
def grader(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Decorator: turn `def f(sample, item) -> float` (or async, or returning `Score`) into a grader.

    Returning None says the grader does not apply to the sample: it gets no reward (docs/no-reward.md).
    """
    if fn is None:
        return lambda f: FunctionGrader.from_function(f, name=name)
    return FunctionGrader.from_function(fn, name=name)
