"""gradekit graders as OpenRLHF rewards: `to_openrlhf`, a ready `reward_func`, and the remote reward route.

OpenRLHF's `--reward.remote_url` is either a `.py` file whose top-level `reward_func(queries, prompts, labels)`
it calls (once per rollout sample, lists of length 1), or an HTTP endpoint it POSTs
`{"query": [...], "prompts": [...], "labels": [...]}` to. Either way the answer is
`{"rewards": ..., "scores": ..., "extra_logs": {name: ...}}`: tensors from the function, JSON lists over HTTP.

Each sample is graded with:

- sample: the response, i.e. `query[len(prompt):]` when the query (OpenRLHF decodes prompt + response with
  special tokens) starts with the prompt, else the whole query; end-of-text markers (`strip`) and surrounding
  whitespace removed;
- item: `{label_key: label}`, updated with the label's keys when it is a JSON object string.

`rewards` are gradekit's rewards (0.0 for a failed sample, never an exception), `scores` the same clamped to
[0, 1] (OpenRLHF's dynamic filtering reads them), `extra_logs` holds each sub-grader's reward, `error` (1.0 when
any error flag fired) and `no_reward` (1.0 when the sample got no reward, docs/no-reward.md: OpenRLHF needs a
number, so its reward is 0.0, and `no_reward` says it was not graded; its logged mean is the no-reward rate).

A reward file for OpenRLHF can be one line, with the grader in `$GRADEKIT_GRADER` (and the item key of the label
in `$GRADEKIT_LABEL_KEY`, default: the one `item` field the grader reads, else `label`; `default_label_key`):

    from gradekit.trainer_bridge.adapters.openrlhf_rewards import reward_func

Over HTTP, `gradekit serve --grader grader.json` serves `POST /openrlhf/get_reward` (this module's `register`,
an entry point of the `gradekit.routes` group; the label key is `$GRADEKIT_LABEL_KEY` there too). OpenRLHF
sends no API key: do not start that server with one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from gradekit.graders import BatchResult, Env, Grader, arun_batch, run_batch, validate
from gradekit.graders.api import GraderLike
from gradekit.graders.safety import loads_json
from gradekit.trainer_bridge.adapters.common import cached_grader, sample_columns

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DEFAULT_STRIP",
    "GRADER_ENV",
    "LABEL_KEY_ENV",
    "ROUTE",
    "GetRewardRequest",
    "default_label_key",
    "openrlhf_item",
    "register",
    "response_text",
    "reward_func",
    "to_openrlhf",
]

#: End-of-text and padding markers of common chat templates, removed from the end of a response.
DEFAULT_STRIP: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<｜end▁of▁sentence｜>",
    "</s>",
    "<eos>",
    "<pad>",
    "<|pad|>",
)
GRADER_ENV = "GRADEKIT_GRADER"
LABEL_KEY_ENV = "GRADEKIT_LABEL_KEY"
#: The remote reward route `register` adds (give OpenRLHF `--reward.remote_url http://HOST:PORT/openrlhf/get_reward`).
ROUTE = "/openrlhf/get_reward"

_MISSING = (
    f"gradekit's OpenRLHF reward_func needs a grader: set the {GRADER_ENV} environment variable to a grader "
    ".json/.yaml path, JSON text, or module:function (or build your own with to_openrlhf(grader))"
)


def response_text(query: str, prompt: str | None, strip: Sequence[str] = DEFAULT_STRIP) -> str:
    """The response part of an OpenRLHF query, without trailing end markers and surrounding whitespace."""
    text = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    text = text.strip()
    trimmed = True
    while trimmed:  # padding repeats markers: `<|im_end|><|endoftext|><|endoftext|>`
        trimmed = False
        for marker in strip:
            if marker and text.endswith(marker):
                text = text[: -len(marker)].rstrip()
                trimmed = True
    return text


#: `item.name`, `item['name']`, `item["name"]` or `item.get("name"` in a template or a Python grader's source.
_ITEM_FIELD = re.compile(r"""\bitem\s*(?:\.\s*get\s*\(\s*|\[\s*)?(?:\.\s*([A-Za-z_]\w*)|['"]([^'"]+)['"])""")
_LABEL_KEYS: dict[int, tuple[Grader, str]] = {}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def default_label_key(grader: Grader) -> str:
    """`$GRADEKIT_LABEL_KEY`, else the one `item` field the grader reads (OpenRLHF's `--data.label_key` column,
    e.g. `compliant` for `{{ item.compliant }}`), else `label` (a grader reading several fields needs the
    variable, or labels that are JSON objects)."""
    explicit = os.environ.get(LABEL_KEY_ENV)
    if explicit:
        return explicit
    cached = _LABEL_KEYS.get(id(grader))
    if cached is None or cached[0] is not grader:
        fields = {a or b for text in _strings(grader.to_json()) for a, b in _ITEM_FIELD.findall(text)}
        cached = _LABEL_KEYS[id(grader)] = (grader, fields.pop() if len(fields) == 1 else "label")
    return cached[1]


def openrlhf_item(label: Any, label_key: str = "label") -> dict[str, Any]:
    """The `item` for one OpenRLHF label: `{label_key: label}`, updated with its keys if it is a JSON object."""
    item: dict[str, Any] = {label_key: label}
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            parsed = loads_json(label)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            item.update(parsed)
    return item


def _inputs(
    queries: Sequence[str],
    prompts: Sequence[str | None] | None,
    labels: Sequence[Any] | None,
    label_key: str,
    strip: Sequence[str],
) -> tuple[list[Any], list[dict[str, Any]]]:
    n = len(queries)
    prompts = prompts if prompts is not None else [None] * n
    labels = labels if labels is not None else [None] * n
    if len(prompts) != n or len(labels) != n:
        raise ValueError(f"{n} queries but {len(prompts)} prompts and {len(labels)} labels")
    samples: list[Any] = [
        response_text(q, p, strip) if isinstance(q, str) else q for q, p in zip(queries, prompts, strict=True)
    ]
    return samples, [openrlhf_item(label, label_key) for label in labels]


def _answer(result: BatchResult) -> dict[str, Any]:
    """The answer as plain lists (the HTTP body; `_tensors` makes the function's)."""
    rewards = list(result.rewards)
    return {
        "rewards": rewards,
        "scores": [min(1.0, max(0.0, r)) for r in rewards],
        "extra_logs": sample_columns(result),
    }


def _tensors(answer: dict[str, Any]) -> dict[str, Any]:
    import torch

    def tensor(values: list[float]) -> Any:
        return torch.tensor(values, dtype=torch.float32)

    return {
        "rewards": tensor(answer["rewards"]),
        "scores": tensor(answer["scores"]),
        "extra_logs": {k: tensor(v) for k, v in answer["extra_logs"].items()},
    }


def to_openrlhf(
    grader: GraderLike,
    *,
    env: Env | None = None,
    label_key: str = "label",
    strip: Sequence[str] = DEFAULT_STRIP,
) -> Callable[..., dict[str, Any]]:
    """An OpenRLHF `reward_func(queries, prompts, labels, **kwargs)` answering tensors (torch loads on call)."""
    g = validate(grader)
    markers = tuple(strip)

    def reward_func(
        queries: Sequence[str],
        prompts: Sequence[str | None] | None = None,
        labels: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        samples, items = _inputs(queries, prompts, labels, label_key, markers)
        return _tensors(_answer(run_batch(g, samples, items, env=env)))

    reward_func.__doc__ = f"The `{g.name}` grader as an OpenRLHF reward_func: rewards, scores, extra_logs."
    return reward_func


def reward_func(
    queries: Sequence[str],
    prompts: Sequence[str | None] | None = None,
    labels: Sequence[Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """OpenRLHF's `reward_func` with the grader of `$GRADEKIT_GRADER` and the label key of `default_label_key`."""
    g = cached_grader(os.environ.get(GRADER_ENV), _MISSING)
    samples, items = _inputs(queries, prompts, labels, default_label_key(g), DEFAULT_STRIP)
    return _tensors(_answer(run_batch(g, samples, items)))


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward request; `prompts` and `labels`, when given, align with `query`."""

    model_config = ConfigDict(extra="ignore")

    query: list[str]
    prompts: list[str | None] | None = None
    labels: list[Any] | None = None


def register(app: FastAPI) -> None:
    """Add `POST /openrlhf/get_reward`, grading with `app.state.grader` (`gradekit serve --grader`)."""
    from gradekit.runtime.server import APIError

    @app.post(ROUTE)
    async def openrlhf_get_reward(body: GetRewardRequest) -> dict[str, Any]:
        """Grade OpenRLHF queries; answers `{"rewards", "scores", "extra_logs"}` as JSON lists."""
        grader = getattr(app.state, "grader", None)
        if grader is None:
            raise APIError(
                400,
                "No grader is configured for the OpenRLHF reward route: start the server with "
                "`gradekit serve --grader PATH` (or create_app(grader=...)).",
                code="grader_not_configured",
            )
        n = len(body.query)
        for field, values in (("prompts", body.prompts), ("labels", body.labels)):
            if values is not None and len(values) != n:
                raise APIError(400, f"'{field}' has {len(values)} entries but 'query' has {n}.", param=field)
        samples, items = _inputs(body.query, body.prompts, body.labels, default_label_key(grader), DEFAULT_STRIP)
        result = await arun_batch(grader, samples, items, env=getattr(app.state, "env", None))
        return _answer(result)
