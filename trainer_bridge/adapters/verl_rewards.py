"""gradekit graders as verl reward functions: `to_verl`, `to_verl_batch`, and `compute_score` for verl's config.

verl calls `compute_score(data_source=, solution_str=, ground_truth=, extra_info=)` per sample (the reward
managers of its reward loop, and the older `naive`) or `compute_score(data_sources=, solution_strs=,
ground_truths=, extra_infos=)` per batch (the `batch` manager of `verl.workers.reward_manager`). Each sample is
graded with:

- sample: `solution_str` (verl's decoded response) as `output_text`;
- item: the fields of `extra_info` (without the `num_turns` and `rollout_reward_scores` verl adds), then the
  keys of `ground_truth` if it is a dict, else `ground_truth` itself as `item.ground_truth`, then
  `item.data_source`, then `item.reward_kwargs`: the config's `custom_reward_function.reward_kwargs` that verl
  passes as keywords (e.g. a scorer's `method` or `format_score`), less `grader` and verl's own
  `reward_router_address` and `reward_model_tokenizer`; only JSON values, and only when there are some.

Each sample's answer is `{"score": reward, <sub-grader>: reward, ..., "error": 0.0 | 1.0, "no_reward": 0.0 | 1.0}`:
the same keys for every sample of a grader, as verl requires (it appends each key's values to one list per key,
in `reward_extra_info`, and reports them as `val-aux/<data_source>/<key>/mean@N`). A failed sample scores 0.0 with
`error` 1.0; nothing raises. verl's `score` must be a number, so a sample that got no reward (docs/no-reward.md)
scores 0.0 too, with `no_reward` 1.0: its mean is the batch's no-reward rate, and the key tells which samples were
not graded. A sub-grader named `score`, `reward`, `error` or `no_reward` is keyed `grader.<name>`.

Without writing any code, point verl at this module and name the grader in the config:

    reward.custom_reward_function.path=pkg://gradekit.trainer_bridge.adapters.verl_rewards   (or this file's path)
    reward.custom_reward_function.name=compute_score          (compute_score_batch for the batch manager)
    +reward.custom_reward_function.reward_kwargs.grader=/path/to/grader.json

`grader` is anything `load_grader` takes (a .json/.yaml path, JSON text, `module:function`); without it the
`GRADEKIT_GRADER` environment variable is read. The grader is loaded once per spec.

This module is also loaded by file path (verl's `load_extern_object`), outside its package: imports are absolute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradekit.graders import BatchResult, Env, Grader, run_batch, validate
from gradekit.graders.api import GraderLike
from gradekit.trainer_bridge.adapters.common import cached_grader, plain, sample_columns

__all__ = [
    "GRADER_ENV",
    "VERL_EXTRA_INFO",
    "VERL_KWARGS",
    "compute_score",
    "compute_score_batch",
    "reward_kwargs_of",
    "to_verl",
    "to_verl_batch",
    "verl_item",
]

#: Environment variable naming the grader when `reward_kwargs` does not.
GRADER_ENV = "GRADEKIT_GRADER"
#: Keys verl injects into `extra_info`; they are not dataset fields, so not part of the item.
VERL_EXTRA_INFO = frozenset({"num_turns", "rollout_reward_scores"})
#: Keywords verl's reward managers pass besides `reward_kwargs`; they are not the grader's to read.
VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})

_MISSING = (
    "gradekit's verl compute_score needs a grader: set reward.custom_reward_function.reward_kwargs.grader "
    f"(a grader .json/.yaml path, JSON text, or module:function) in the verl config, or the {GRADER_ENV} "
    "environment variable"
)


_SKIP = object()


def _json_value(value: Any) -> Any:
    """`value` as plain JSON, or `_SKIP` when it is not JSON (a tokenizer, a client)."""
    value = plain(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _SKIP
    return value


def reward_kwargs_of(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `reward_kwargs` a grader sees as `item.reward_kwargs`: JSON values, without verl's own keywords."""
    out = {}
    for key, value in kwargs.items():
        if key == "grader" or key in VERL_KWARGS:
            continue
        value = _json_value(value)
        if value is not _SKIP:
            out[str(key)] = value
    return out


def verl_item(
    data_source: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    reward_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The grader's `item` for one verl sample (`reward_kwargs`, when given, under `item.reward_kwargs`)."""
    item: dict[str, Any] = {}
    if isinstance(extra_info, Mapping):
        item.update((k, plain(v)) for k, v in extra_info.items() if k not in VERL_EXTRA_INFO)
    truth = plain(ground_truth)
    if isinstance(truth, dict):
        item.update(truth)
    else:
        item["ground_truth"] = truth
    item["data_source"] = plain(data_source)
    if reward_kwargs:
        item["reward_kwargs"] = dict(reward_kwargs)
    return item


def _scores(result: BatchResult) -> list[dict[str, float]]:
    columns = sample_columns(result)
    return [{"score": reward, **{k: c[i] for k, c in columns.items()}} for i, reward in enumerate(result.rewards)]


def _grade(
    grader: Grader,
    env: Env | None,
    data_sources: Sequence[Any],
    solution_strs: Sequence[Any],
    ground_truths: Sequence[Any] | None,
    extra_infos: Sequence[Any] | None,
    kwargs: Mapping[str, Any],
) -> list[dict[str, float]]:
    n = len(solution_strs)
    truths = list(ground_truths) if ground_truths is not None else [None] * n
    extras = list(extra_infos) if extra_infos is not None else [None] * n
    passed = reward_kwargs_of(kwargs)
    items = [verl_item(s, t, e, reward_kwargs=passed) for s, t, e in zip(data_sources, truths, extras, strict=True)]
    return _scores(run_batch(grader, list(solution_strs), items, env=env))


def to_verl(grader: GraderLike, *, env: Env | None = None) -> Callable[..., dict[str, float]]:
    """A per-sample verl `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`."""
    g = validate(grader)

    def compute_score(
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        return _grade(g, env, [data_source], [solution_str], [ground_truth], [extra_info], kwargs)[0]

    compute_score.__doc__ = f"The `{g.name}` grader as a verl compute_score: score, sub-grader rewards, error."
    return compute_score


def to_verl_batch(grader: GraderLike, *, env: Env | None = None) -> Callable[..., list[dict[str, float]]]:
    """A verl `BatchRewardManager` function `(data_sources, solution_strs, ground_truths, extra_infos, **kwargs)`."""
    g = validate(grader)

    def compute_score_batch(
        data_sources: Sequence[Any],
        solution_strs: Sequence[str],
        ground_truths: Sequence[Any] | None = None,
        extra_infos: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        return _grade(g, env, data_sources, solution_strs, ground_truths, extra_infos, kwargs)

    compute_score_batch.__doc__ = f"The `{g.name}` grader over a verl batch, graded in one run_batch call."
    return compute_score_batch


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    grader: GraderLike | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's `custom_reward_function` entry: the grader from `reward_kwargs.grader` or `$GRADEKIT_GRADER`."""
    g = cached_grader(grader if grader is not None else os.environ.get(GRADER_ENV), _MISSING)
    return _grade(g, None, [data_source], [solution_str], [ground_truth], [extra_info], kwargs)[0]


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any] | None = None,
    extra_infos: Sequence[Any] | None = None,
    grader: GraderLike | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """`compute_score` for verl's `batch` reward manager: the whole batch graded in one run_batch call."""
    g = cached_grader(grader if grader is not None else os.environ.get(GRADER_ENV), _MISSING)
    return _grade(g, None, data_sources, solution_strs, ground_truths, extra_infos, kwargs)
