"""gradekit graders as TRL `GRPOTrainer` reward functions: `to_trl(grader)`.

TRL calls a reward function as `f(prompts=..., completions=..., completion_ids=..., **kwargs)`, where every
dataset column but `prompt` arrives in `kwargs` as a list aligned with the completions, next to TRL's own
`trainer_state`, `log_extra`, `log_metric` (and `environments`). Row i is graded with:

- item: `{column: kwargs[column][i]}` for every dataset column, plus `"prompt": prompts[i]`, so the item is
  the dataset row, as in OpenAI RFT;
- sample: the completion string (standard format), or for a conversational completion (a message list) the
  last assistant message's content with the `tool_calls` of every assistant message in it (TRL's tool loop
  puts several assistant turns in one completion), so `tool_call` graders see every call the model made. A
  message without a `role` (TRL's reward docs write completions as `[{"content": ...}]`) is the assistant's.
- `sample.completion_ids`: the completion's token ids, from TRL's `completion_ids`, so that length rewards
  (TRL's token-count and soft overlong punishment rewards) can be gradekit graders.

The function returns one value per completion: the reward; 0.0 for a sample that failed through its own fault
(invalid output, a missing item field), as everywhere in gradekit; `None` for a sample that got no reward (a judge
that could not be reached, a sandbox that failed, a grader that returned None: docs/no-reward.md), which TRL reads
as "unscorable": NaN, left out of the group's mean and std (`nanmean`), advantage 0. Through TRL's `log_metric`
(values averaged per logging step, names used as given, `eval_` prefixed in evaluation) it logs:

- `rewards/<name>/<sub>/mean`: mean reward of each sub-grader of a `multi` grader, over the samples it graded;
- `rewards/<name>/errors/rate`: fraction of the batch's samples with any error flag;
- `rewards/<name>/no_reward/rate`: fraction of the batch's samples that got no reward;
- `rewards/<name>/errors/<grader>/<flag>`: fraction of the batch's samples where `<grader>` failed with
  `<flag>`; logged from the first batch where that flag fires on, as 0.0 when it does not, so only the
  logging step where it first appears averages over fewer batches.

TRL itself logs `rewards/<name>/mean` and `rewards/<name>/std`, `<name>` being the function's `__name__`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradekit.graders import BatchResult, Env, Grader, GradingError, arun_batch, make_sample, run_batch, validate
from gradekit.graders.api import GraderLike
from gradekit.graders.samples import is_assistant
from gradekit.trainer_bridge.adapters.common import error_rates, failed, plain

__all__ = ["TRL_KWARGS", "TRLReward", "to_trl", "trl_inputs"]

#: Keyword arguments TRL passes that are not dataset columns.
TRL_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)


def _is_reply(message: Any) -> bool:
    """An assistant message, or a message without a `role` (as TRL's reward docs write completions)."""
    return is_assistant(message) or (isinstance(message, Mapping) and "role" not in message)


def _sample(completion: Any) -> Any:
    if isinstance(completion, Mapping) and ("role" in completion or "content" in completion):
        completion = [completion]
    if not isinstance(completion, list):
        return completion  # standard format: the text (anything else is flagged by gradekit, per sample)
    assistants = [m for m in completion if _is_reply(m)]
    if not assistants:
        return completion  # gradekit flags it: sample_parse_error
    calls: list[Any] = []
    for message in assistants:
        tool_calls = message.get("tool_calls")
        if tool_calls is None:
            continue
        if not isinstance(tool_calls, list):
            return GradingError("sample_parse_error", f"assistant `tool_calls` is not a list: {tool_calls!r:.200}")
        calls.extend(tool_calls)
    return [{"role": "assistant", "content": assistants[-1].get("content"), "tool_calls": calls}]


def trl_inputs(
    prompts: Sequence[Any] | None, completions: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """The (samples, items) gradekit grades for one TRL reward call."""
    n = len(completions)
    columns = {k: v for k, v in kwargs.items() if k not in TRL_KWARGS and isinstance(v, list | tuple) and len(v) == n}
    items: list[dict[str, Any]] = [{k: col[i] for k, col in columns.items()} for i in range(n)]
    if prompts is not None:
        for item, prompt in zip(items, prompts, strict=True):
            item["prompt"] = prompt
    samples = [_sample(c) for c in completions]
    ids = kwargs.get("completion_ids")
    if isinstance(ids, list | tuple) and len(ids) == n:
        samples = [_with_ids(s, i) for s, i in zip(samples, ids, strict=True)]
    return samples, items


def _with_ids(sample: Any, ids: Any) -> Any:
    """The sample as a dict with `completion_ids` added (a sample that cannot be built stays its error)."""
    if isinstance(sample, GradingError):
        return sample
    try:
        built = make_sample(sample)
    except GradingError as e:
        return e
    built["completion_ids"] = plain(ids.tolist() if hasattr(ids, "tolist") else ids)  # a tensor, or a list
    return built


def _unrewarded(result: BatchResult, i: int, sub: str) -> bool:
    notes = result.notes[i]
    return notes is not None and sub in notes.unrewarded


class _Metrics:
    """Sends a batch's sub-grader means and error rates to TRL's `log_metric`."""

    def __init__(self, name: str) -> None:
        self.prefix = f"rewards/{name}"
        self.seen: set[tuple[str, str]] = set()

    def log(self, result: BatchResult, log_metric: Any) -> None:
        n = len(result.rewards)
        if not callable(log_metric) or n == 0:
            return
        for sub, column in result.sub_rewards.items():
            graded = [v for i, v in enumerate(column) if not _unrewarded(result, i, sub)]
            if graded:
                log_metric(f"{self.prefix}/{sub}/mean", sum(graded) / len(graded))
        log_metric(f"{self.prefix}/errors/rate", sum(failed(result, i) for i in range(n)) / n)
        log_metric(f"{self.prefix}/no_reward/rate", sum(result.no_reward(i) is not None for i in range(n)) / n)
        rates = error_rates(result)
        self.seen.update(rates)
        for grader, flag in sorted(self.seen):
            log_metric(f"{self.prefix}/errors/{grader}/{flag}", rates.get((grader, flag), 0.0))


class TRLReward:
    """A grader as a synchronous TRL reward function (a class, not a closure: TRL's async GRPO pickles it)."""

    def __init__(self, grader: Grader, *, env: Env | None = None, name: str | None = None) -> None:
        self.grader = grader
        self.env = env
        self.__name__ = name or grader.name
        self._metrics = _Metrics(self.__name__)

    def __repr__(self) -> str:
        return f"TRLReward({self.__name__!r})"

    def __call__(
        self, completions: Sequence[Any], prompts: Sequence[Any] | None = None, **kwargs: Any
    ) -> list[float | None]:
        """One reward per completion (0.0 for a sample that failed, None for one that got no reward)."""
        samples, items = trl_inputs(prompts, completions, kwargs)
        result = run_batch(self.grader, samples, items, env=self.env)
        self._metrics.log(result, kwargs.get("log_metric"))
        return result.rewards_or_none()


def to_trl(
    grader: GraderLike, *, env: Env | None = None, asynchronous: bool = False, name: str | None = None
) -> Callable[..., Any]:
    """A `GRPOTrainer(reward_funcs=...)` function named `name` or the grader's name; `async def` if `asynchronous`."""
    g = validate(grader)
    if not asynchronous:
        return TRLReward(g, env=env, name=name)
    metrics = _Metrics(name or g.name)

    async def reward(
        completions: Sequence[Any], prompts: Sequence[Any] | None = None, **kwargs: Any
    ) -> list[float | None]:
        samples, items = trl_inputs(prompts, completions, kwargs)
        result = await arun_batch(g, samples, items, env=env)
        metrics.log(result, kwargs.get("log_metric"))
        return result.rewards_or_none()

    reward.__name__ = reward.__qualname__ = name or g.name
    reward.__doc__ = f"The `{g.name}` grader as an async TRL reward function (0.0: failed; None: no reward)."
    return reward
