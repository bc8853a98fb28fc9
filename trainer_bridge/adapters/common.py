"""What the trainer adapters share: per-sample reward columns, error rates, cached graders, plain values."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from gradekit.graders import BatchResult, Grader, validate
from gradekit.graders.aggregate import Aggregate

__all__ = [
    "ERROR_KEY",
    "NO_REWARD_KEY",
    "cached_grader",
    "error_rates",
    "failed",
    "plain",
    "sample_columns",
    "sub_key",
]

#: Per-sample indicator key: 1.0 when any error flag fired for the sample (its reward is then 0.0), else 0.0.
ERROR_KEY = "error"
#: Per-sample indicator key: 1.0 when the sample got no reward (docs/no-reward.md; its 0.0 is no grade), else 0.0.
NO_REWARD_KEY = "no_reward"
# Keys a sub-grader's name must not take in a per-sample dict: ours, and `reward`, which verl adds itself.
_RESERVED = frozenset({"score", "reward", ERROR_KEY, NO_REWARD_KEY})


def sub_key(sub: str) -> str:
    """The key of sub-grader `sub`'s reward in a per-sample dict: its name, or `grader.<name>` on a clash."""
    return f"grader.{sub}" if sub in _RESERVED else sub


def failed(result: BatchResult, i: int) -> bool:
    """True when any error flag fired for sample `i`."""
    notes = result.notes[i]
    return notes is not None and notes.failed


def sample_columns(result: BatchResult) -> dict[str, list[float]]:
    """One column per sub-grader reward (keyed by `sub_key`), then the `error` and `no_reward` indicator columns."""
    n = len(result.rewards)
    columns = {sub_key(sub): list(col) for sub, col in result.sub_rewards.items()}
    columns[ERROR_KEY] = [1.0 if failed(result, i) else 0.0 for i in range(n)]
    columns[NO_REWARD_KEY] = [0.0 if result.no_reward(i) is None else 1.0 for i in range(n)]
    return columns


def error_rates(result: BatchResult) -> dict[tuple[str, str], float]:
    """(grader, flag) -> the fraction of the batch's samples where that grader failed with that flag."""
    aggregate = Aggregate(name=result.name)
    aggregate.add_batch(result)
    return {
        (grader, flag): stats["rate"]
        for grader, flags in aggregate.summary()["errors"].items()
        for flag, stats in flags.items()
    }


def plain(value: Any) -> Any:
    """`value` as plain Python: numpy arrays and scalars (from parquet rows) and config containers made lists/dicts."""
    if value is None or isinstance(value, str | bytes | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    return value


_GRADERS: dict[str, Grader] = {}
_LOCK = threading.Lock()


def cached_grader(spec: Any, missing: str) -> Grader:
    """The grader `spec` names (anything `load_grader` takes), loaded once per spec; `missing` is the error if None."""
    if spec is None or spec == "":
        raise ValueError(missing)
    if isinstance(spec, Grader):
        return spec
    if isinstance(spec, Mapping):
        spec = plain(spec)
        key = json.dumps(spec, sort_keys=True, default=str)
    else:
        key = os.fspath(spec)
    with _LOCK:
        grader = _GRADERS.get(key)
    if grader is None:
        grader = validate(spec)
        with _LOCK:
            grader = _GRADERS.setdefault(key, grader)
    return grader
