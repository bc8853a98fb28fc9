"""`bedrock_reward_handler(grader)`: any grader as the AWS Lambda reward function Bedrock RFT calls."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from gradekit.graders import Env, GradingError, validate
from gradekit.graders.api import GraderLike
from gradekit.graders.results import SampleNotes
from gradekit.runtime.engine import Engine, Graded

from .events import DEFAULT_MAX_CHARS, EventError, Row, parse_event, response_item

LambdaHandler = Callable[[Any, Any], list[dict[str, Any]]]

#: Seconds kept back from the Lambda deadline to build and return the response.
DEFAULT_SAFETY_MARGIN = 1.0


async def _grade(engine: Engine, rows: list[Row], budget: float | None) -> list[Graded | None]:
    graded: list[Graded | None] = [None] * len(rows)

    async def consume() -> None:
        async for g in engine.astream((row.sample, row.item) for row in rows):
            graded[g.index] = g

    try:
        async with asyncio.timeout(budget):
            await consume()
    except TimeoutError:
        pass  # what finished is kept; the rest is marked unresponsive by the caller
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

    Samples are graded in chunks of `chunk_size`, `concurrency` chunks at once; the deadline keeps the
    chunks that finished, so a smaller `chunk_size` loses less to one slow sample and costs more per batch.
    """
    from aws_lambda_powertools import Logger, Metrics

    g = validate(grader)
    service = service or os.environ.get("POWERTOOLS_SERVICE_NAME") or f"gradekit-{g.name}"
    logger = Logger(service=service)
    metrics = Metrics(
        namespace=namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "gradekit", service=service
    )

    def handler(event: Any, context: Any) -> list[dict[str, Any]]:
        start = time.monotonic()
        try:
            rows = parse_event(event, max_chars=max_chars)
        except EventError as e:
            logger.error(str(e))
            raise
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        budget = max(0.0, remaining() / 1000 - safety_margin) if callable(remaining) else None
        engine = Engine(g, env=env, chunk_size=chunk_size, concurrency=concurrency, ordered=False)
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
            if flags:
                failed.append({"sample_id": row.id, "errors": flags, "details": _details(row, notes)})
            out.append(response_item(row.id, g.name, reward, sub, flags))
        if failed:
            # One structured record per batch (not per sample): logging dominated the cost of small batches.
            logger.warning("samples failed", extra={"failed": failed})
        _emit_metrics(metrics, engine.aggregate.summary())
        logger.info("batch graded", extra={"samples": len(rows), "seconds": round(time.monotonic() - start, 4)})
        return out

    return handler


def _details(row: Row, notes: SampleNotes | None) -> Any:
    if isinstance(row.sample, GradingError):
        return row.sample.message
    return {grader: message for grader, (_, message) in notes.failures.items()} if notes else None


def _emit_metrics(metrics: Any, summary: dict[str, Any]) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    metrics.add_metric(name="samples", unit=MetricUnit.Count, value=summary["count"])
    metrics.add_metric(name="reward_mean", unit=MetricUnit.NoUnit, value=summary["reward_mean"])
    for name, g in summary["graders"].items():
        metrics.add_metric(name=f"reward_mean.{name}", unit=MetricUnit.NoUnit, value=g["reward_mean"])
    for grader, flags in summary["errors"].items():
        for flag, c in flags.items():
            metrics.add_metric(name=f"errors.{grader}.{flag}", unit=MetricUnit.Count, value=c["count"])
    metrics.flush_metrics()
