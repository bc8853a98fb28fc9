"""`EndpointClient`: sends `endpoint` graders' requests over HTTP, with their rate limit, retries and timeouts.

The contract is Microsoft Foundry's, published at `gradekit.graders.models.ENDPOINT_CONTRACT`
(https://github.com/microsoft-foundry/fine-tuning/blob/main/Demos/Agentic_RFT_PrivatePreview/README.md,
"Endpoint Graders"): a POST of `{"sample", "item", "trace_id"}` to the grader's `url`, with its `headers`
(key-based auth is the only kind the contract has), answered by `{"score": float}`. What it publishes and what
this client does:

- `rate_limit` is the "max requests per second sent to the endpoint": here at most that many requests (retries
  included) in any one-second window, per URL, shared by every call on this client, whatever event loop or
  thread makes it. Two graders naming one URL with different limits share it at the lower one.
- "If a call to a grader endpoint fails for any reason, we will retry for at most 3 times": `max_retries`
  defaults to 3. Retried are 408, 429, 5xx, timeouts and connection errors; the wait before retry k (0-based)
  is the reply's `Retry-After` / `retry-after-ms` when present, else full jitter `uniform(0, base_delay * 2**k)`,
  either capped at `max_delay`. Other answers (another 4xx, a redirect) are not retried: the same request would
  get the same answer (not published; our choice).
- "The maximum amount of time we will wait for a grader is 10 minutes": `timeout` (per attempt) defaults to
  600 s, or `$GRADEKIT_ENDPOINT_TIMEOUT` seconds.
- Not published, our choices: replies over 1 MiB (the contract's request cap) are refused; redirects are not
  followed; at most `concurrency` requests are in flight per event loop.

Failures are per-sample `GradingError`s, never exceptions: a request that failed (after its retries, or at
once when not retryable) is `unresponsive_reward_error` (the grading's fault: no reward), a 2xx reply that is
not JSON (or over 1 MiB) is `model_grader_parse_error`; the grader reads `score` from a JSON reply (`endpoint_score`).

Nothing is imported or opened until a grader sends a request (HTTP client per call: connections cannot
outlive the event loop that opened them, and `run_batch` starts one loop per call).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import random
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from gradekit.graders.errors import GradingError
from gradekit.graders.executors import Call
from gradekit.graders.safety import describe, exception_text, loads_json

from .jsonl import dumps, utf8
from .retry import Retryable, backoff_delay, retry_after_seconds, retryable_status

if TYPE_CHECKING:
    from gradekit.graders.models import Endpoint

__all__ = ["DEFAULT_TIMEOUT", "MAX_REPLY_BYTES", "TIMEOUT_ENV", "EndpointClient", "RateLimiter"]

logger = logging.getLogger(__name__)

#: The contract's longest wait for a grader's reply, in seconds (10 minutes).
DEFAULT_TIMEOUT: Final = 600.0
#: Replies longer than this are refused (the contract caps requests at 1 MB; a score needs a few bytes).
MAX_REPLY_BYTES: Final = 1024 * 1024
TIMEOUT_ENV: Final = "GRADEKIT_ENDPOINT_TIMEOUT"

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """At most `rate` requests in any one-second window: each `reserve` books the earliest slot that keeps it so.

    Thread-safe and loop-free (booking takes a lock, waiting is the caller's), so callers on any event loop share
    one limiter. Slots never go backwards: request k waits for request k - `rate` plus one second.
    """

    def __init__(self, rate: int, clock: Clock = time.monotonic) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        self.rate = rate
        self._clock = clock
        self._slots: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def lower(self, rate: int) -> None:
        """Keep the lower of the current rate and `rate`."""
        with self._lock:
            self.rate = min(self.rate, rate)

    def reserve(self) -> float:
        """Book the next slot; the clock time at which the request may be sent."""
        with self._lock:
            slot = self._clock()
            if len(self._slots) >= self.rate:
                slot = max(slot, self._slots[-self.rate] + 1.0)
            self._slots.append(slot)
            while len(self._slots) > self.rate:
                self._slots.popleft()
            return slot

    async def wait(self, sleep: Sleep) -> None:
        """Book a slot and sleep until it."""
        delay = self.reserve() - self._clock()
        if delay > 0:
            await sleep(delay)


class _TooLarge(Exception):
    pass


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Built once: a context per request (what a bare client does) costs more than a small request.
    return ssl.create_default_context()


@functools.cache
def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"gradekit/{version('gradekit')}"
    except PackageNotFoundError:
        return "gradekit"


def _timeout_from_env() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):  # a warning, not an error: every grader shares the environment
        logger.warning("$%s must be a positive number of seconds, got %r: using %g", TIMEOUT_ENV, text, DEFAULT_TIMEOUT)
        return DEFAULT_TIMEOUT
    return value


async def _read_capped(response: Any, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class EndpointClient:
    """The runtime's `EndpointCaller`: see the module docstring for the contract and what is retried."""

    def __init__(
        self,
        *,
        timeout: float | None = None,
        max_retries: int = 3,
        concurrency: int = 32,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        timeout = _timeout_from_env() if timeout is None else timeout
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._random = rng or random.Random()
        self._lock = threading.Lock()
        self._limiters: dict[str, RateLimiter] = {}
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"EndpointClient(timeout={self.timeout:g}, max_retries={self.max_retries})"

    def limiter(self, url: str, rate: int) -> RateLimiter:
        """The limiter of `url` (shared by every grader naming it), at no more than `rate` requests per second."""
        with self._lock:
            limiter = self._limiters.get(url)
            if limiter is None:
                limiter = self._limiters[url] = RateLimiter(rate, self._clock)
            else:
                limiter.lower(rate)
            return limiter

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            semaphore = self._semaphores.get(loop)
            if semaphore is None:
                semaphore = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
            return semaphore

    async def post(self, grader: Endpoint, bodies: Sequence[dict[str, Any]]) -> list[Call]:
        """One `Call` per body, in order: the decoded JSON reply, or the request's `GradingError`; never raises."""
        if not bodies:
            return []
        try:
            try:  # openai >= 3.x is built on httpx2; older releases on httpx (same API for what is used here)
                import httpx2 as httpx
            except ImportError:  # pragma: no cover - depends on the installed openai
                import httpx  # type: ignore[no-redef]

            limiter = self.limiter(grader.url, grader.rate_limit) if grader.rate_limit is not None else None
            custom = grader.headers or {}
            given = {k.lower() for k in custom}
            base = {"Content-Type": "application/json", "User-Agent": _user_agent()}
            headers = {**{k: v for k, v in base.items() if k.lower() not in given}, **custom}
            semaphore = self._semaphore()
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=self.concurrency)
            async with httpx.AsyncClient(
                timeout=self.timeout, verify=_ssl_context(), follow_redirects=False, limits=limits
            ) as client:

                async def send(body: dict[str, Any]) -> Call:
                    return await self._send(httpx, client, grader.url, headers, utf8(dumps(body)), limiter, semaphore)

                return list(await asyncio.gather(*(send(b) for b in bodies)))
        except Exception as e:  # a bug or a broken install: every sample carries it, the batch goes on
            error = GradingError("unresponsive_reward_error", f"endpoint client failed: {exception_text(e)}")
            return [Call(error=error) for _ in bodies]

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return backoff_delay(
            attempt, base_delay=self.base_delay, max_delay=self.max_delay, retry_after=retry_after, rng=self._random
        )

    async def _send(
        self,
        httpx: Any,
        client: Any,
        url: str,
        headers: dict[str, str],
        data: bytes,
        limiter: RateLimiter | None,
        semaphore: asyncio.Semaphore,
    ) -> Call:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                async with semaphore:  # held while waiting for a slot, released while backing off
                    if limiter is not None:
                        await limiter.wait(self._sleep)
                    return Call(value=await self._attempt(httpx, client, url, headers, data))
            except GradingError as e:
                return Call(error=e)
            except Retryable as e:
                if attempt + 1 == attempts:
                    message = f"endpoint {url} failed after {attempts} attempt(s): {e.summary}"
                    return Call(error=GradingError("unresponsive_reward_error", message))
                await self._sleep(self._backoff(attempt, e.retry_after))
        raise AssertionError("unreachable")

    async def _attempt(self, httpx: Any, client: Any, url: str, headers: dict[str, str], data: bytes) -> Any:
        """One POST; the decoded JSON reply, or `Retryable`, or a final `GradingError`."""
        try:
            async with asyncio.timeout(self.timeout):
                async with client.stream("POST", url, content=data, headers=headers) as response:
                    status, reply_headers = response.status_code, response.headers
                    text = await _read_capped(response, MAX_REPLY_BYTES)
        except (TimeoutError, httpx.TimeoutException):
            raise Retryable(f"timed out after {self.timeout:g} s") from None
        except httpx.TransportError as e:
            raise Retryable(f"connection error: {exception_text(e)}") from None
        except _TooLarge:
            message = f"endpoint {url} replied with over {MAX_REPLY_BYTES} bytes"
            raise GradingError("model_grader_parse_error", message) from None
        snippet = describe(text[:300].decode("utf-8", "replace"), 300)
        if retryable_status(status):
            raise Retryable(f"HTTP {status}: {snippet}", retry_after=retry_after_seconds(reply_headers))
        if not 200 <= status < 300:
            message = f"endpoint {url} answered HTTP {status} (not retried): {snippet}"
            raise GradingError("unresponsive_reward_error", message)
        try:
            return loads_json(text.decode("utf-8"))
        except ValueError:  # not UTF-8, not JSON, or nested too deeply
            message = f"endpoint {url} replied with something that is not JSON: {snippet}"
            raise GradingError("model_grader_parse_error", message) from None
