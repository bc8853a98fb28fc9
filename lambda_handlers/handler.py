"""`bedrock_reward_handler(grader)`: any grader as the AWS Lambda reward function Bedrock RFT calls.

Nothing one sample holds fails a batch: a malformed sample is a `sample_parse_error` row, the response is
always strict JSON (see `events.sample_id` for ids it cannot echo), log records and CloudWatch metrics go
through the runtime's safe JSON layer, and at the Lambda deadline every sample graded so far keeps its
result while the grading still running is cancelled (so a warm container's next batch starts afresh).

Bedrock's response has no way to say "no reward": a sample that got none (docs/no-reward.md) answers
`aggregate_reward_score` 0.0, its flags, and a `no_reward` metric of 1.0; the batch's EMF metrics count it
(`no_reward_samples`, `no_reward.<grader>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from gradekit.graders import Env, Grader, GradingError, Multi, validate
from gradekit.graders.api import GraderLike
from gradekit.graders.results import SampleNotes
from gradekit.runtime.engine import Engine, Graded
from gradekit.runtime.jsonl import dumps

from .events import (
    DEFAULT_MAX_CHARS,
    MISSING_ID,
    EventError,
    Row,
    metric_name,
    parse_event,
    response_item,
    unwrap_event,
    wrap_response,
)

#: A Lambda handler: the event and context in, the results out (a list, or a status-code envelope; see events).
LambdaHandler = Callable[[Any, Any], Any]

#: The `Metric` entry of a response item whose sample got no reward (its score is 0.0: Bedrock needs a number).
NO_REWARD_METRIC = "no_reward"

#: Seconds kept back from the Lambda deadline to build and return the response.
DEFAULT_SAFETY_MARGIN = 1.0


#: Graders that compute in this process, with nothing to wait for (text_similarity too, but for `cosine`).
_IN_PROCESS = frozenset({"string_check", "tool_call"})


def grades_in_process(grader: Grader) -> bool:
    """True when every node of `grader` computes here: no sandbox, judge model, embeddings or user function."""
    if isinstance(grader, Multi):
        return all(grades_in_process(g) for g in grader.graders.values())
    if grader.type == "text_similarity":
        return getattr(grader, "evaluation_metric", None) != "cosine"
    return grader.type in _IN_PROCESS


async def _grade(engine: Engine, rows: list[Row], budget: float | None) -> list[Graded | None]:
    graded: list[Graded | None] = [None] * len(rows)

    async def consume() -> None:
        async for g in engine.astream((row.sample, row.item) for row in rows):
            graded[g.index] = g

    # A task of its own, so that at the deadline the grading is cancelled (the engine cancels every chunk in
    # flight, and the sandbox frees the workers of a cancelled run) before the event loop closes.
    task = asyncio.ensure_future(consume())
    with contextlib.suppress(TimeoutError):  # what finished is kept; the caller marks the rest unresponsive
        await asyncio.wait_for(task, budget)
    return graded


def bedrock_reward_handler(
    grader: GraderLike,
    *,
    env: Env | None = None,
    namespace: str | None = None,
    service: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
    chunk_size: int = 64,
    concurrency: int = 16,
) -> LambdaHandler:
    """A Lambda handler grading Bedrock RFT batches with `grader` (validated now, at cold start).

    Graders that compute in this process (`grades_in_process`) grade in chunks of `chunk_size`, `concurrency`
    chunks at once (column-wise is fastest, and they never wait on anything a deadline could cut short).
    Graders that wait (sandboxed Python, judge models, embeddings, user functions) grade one sample per
    task, `chunk_size * concurrency` at once, so that at the deadline every sample that finished keeps its
    result; only the unfinished ones get `unresponsive_reward_error`, and their grading is cancelled.
    """
    from aws_lambda_powertools import Logger, Metrics

    g = validate(grader)
    per_sample = not grades_in_process(g)
    engine_options = {
        "chunk_size": 1 if per_sample else chunk_size,
        "concurrency": chunk_size * concurrency if per_sample else concurrency,
    }
    service = metric_name(service or os.environ.get("POWERTOOLS_SERVICE_NAME") or f"gradekit-{g.name}")
    # Records are serialised by the runtime's JSON layer: surrogates or NaN in a record never drop it.
    logger = Logger(service=service, json_serializer=dumps)
    metrics = Metrics(
        namespace=namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "gradekit", service=service
    )

    def handler(event: Any, context: Any) -> Any:
        start = time.monotonic()
        try:
            samples, form = unwrap_event(event)
            rows = parse_event(samples, max_chars=max_chars)
        except EventError as e:
            logger.error(str(e))
            raise
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        budget = max(0.0, remaining() / 1000 - safety_margin) if callable(remaining) else None
        engine = Engine(g, env=env, ordered=False, **engine_options)
        graded = asyncio.run(_grade(engine, rows, budget))
        out, failed = [], []
        for row, done in zip(rows, graded, strict=True):
            if done is None:
                notes = SampleNotes()
                notes.fail(g.name, "unresponsive_reward_error", "not graded before the Lambda deadline")
                engine.aggregate.add(0.0, {}, notes)
                reward, sub, flags = 0.0, {}, ["unresponsive_reward_error"]
            else:
                b, i = done.batch, done.position
                notes = b.notes[i]
                reward, sub, flags = b.rewards[i], {k: v[i] for k, v in b.sub_rewards.items()}, b.error_flags(i)
            metric_flags = [*flags, NO_REWARD_METRIC] if notes is not None and notes.no_reward else flags
            if flags:
                sample_id = None if row.id is MISSING_ID else row.id
                failed.append({"sample_id": sample_id, "errors": flags, "details": _details(row, notes)})
            out.append(response_item(row.id, g.name, reward, sub, metric_flags))
        if failed:
            # One structured record per batch (not per sample): logging dominated the cost of small batches.
            logger.warning("samples failed", extra={"failed": failed})
        try:
            _emit_metrics(metrics, engine.aggregate.summary())
        except Exception:  # metrics are a report on the batch, never a reason to fail it
            logger.exception("metrics not emitted")
            metrics.clear_metrics()
        logger.info("batch graded", extra={"samples": len(rows), "seconds": round(time.monotonic() - start, 4)})
        return wrap_response(out, form)

    return handler


def _details(row: Row, notes: SampleNotes | None) -> Any:
    if isinstance(row.sample, GradingError):
        return row.sample.message
    return {grader: message for grader, (_, message) in notes.failures.items()} if notes else None


def _emit_metrics(metrics: Any, summary: dict[str, Any]) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    def add(name: str, unit: Any, value: float) -> None:
        metrics.add_metric(name=metric_name(name), unit=unit, value=value if value - value == 0.0 else 0.0)

    add("samples", MetricUnit.Count, summary["count"])
    add("reward_mean", MetricUnit.NoUnit, summary["reward_mean"])
    for name, g in summary["graders"].items():
        add(f"reward_mean.{name}", MetricUnit.NoUnit, g["reward_mean"])
    for grader, flags in summary["errors"].items():
        for flag, c in flags.items():
            add(f"errors.{grader}.{flag}", MetricUnit.Count, c["count"])
    add("no_reward_samples", MetricUnit.Count, summary["no_reward_samples"])
    for grader, c in summary["no_reward"].items():
        add(f"no_reward.{grader}", MetricUnit.Count, c["count"])
    metrics.flush_metrics()
