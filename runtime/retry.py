"""Retrying remote graders (judge models, endpoint graders, Lambdas): what is retried and how long to wait.

Retry k (0-based) waits the server's `retry-after-ms` / `Retry-After` when it sent one (seconds or an HTTP
date), else full jitter `uniform(0, base_delay * 2**k)`; either is capped at `max_delay`.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

__all__ = ["Retryable", "backoff_delay", "retry_after_seconds", "retryable_status"]


def retryable_status(status: int) -> bool:
    """True for the HTTP statuses worth another attempt: 408, 429 and every 5xx."""
    return status in (408, 429) or status >= 500


class Retryable(Exception):
    """One failed attempt that may be retried: a short `summary`, a longer `detail`, the server's wait if any."""

    def __init__(self, summary: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail or summary
        self.retry_after = retry_after


def backoff_delay(
    attempt: int,
    *,
    base_delay: float,
    max_delay: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry `attempt` (0-based)."""
    if retry_after is not None:
        return min(max_delay, retry_after)
    return (rng or random).uniform(0.0, min(max_delay, base_delay * 2.0**attempt))


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), or None."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
