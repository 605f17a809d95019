"""Retrying HTTP calls, for any provider that speaks HTTP.

One logical call gets an overall ``deadline``; inside it, rate limits (429),
server trouble (500/502/503/504/529) and transport failures (timeouts, refused or
dropped connections, a body cut off half-way) are retried with exponential
backoff and full jitter. Anything else is returned for the caller to map.

Nothing here logs or raises with request headers: they carry the secret.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)

# 529 is Anthropic's "overloaded": a busy service, like 503.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,  # connect, read, write and close errors
    httpx.RemoteProtocolError,  # e.g. the peer closed before the body was complete
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries. All values in seconds."""

    deadline: float = 60.0
    """Overall budget for one logical call, retries and waits included."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 20.0
    """Per request (connect, read, write, pool), clipped to what is left of the deadline."""

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to the exponential cap for this attempt."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def send_with_retries(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> httpx.Response:
    """Send a request, retrying transient failures until ``policy.deadline``.

    Returns the first response with a status that is not retryable (the
    caller maps error statuses), or the last retryable one when the next
    wait would cross the deadline. Re-raises the last transport exception in
    that case. The body is read before returning, so a truncated body counts
    as a transport failure and is retried.
    """
    started = time.monotonic()
    slept = 0.0
    attempt = 0

    def elapsed() -> float:
        # An injected sleep (tests) may not pass real time; count what we asked for.
        return max(time.monotonic() - started, slept)

    while True:
        timeout = min(policy.timeout, max(policy.deadline - elapsed(), 1.0))
        response: httpx.Response | None = None
        try:
            # Not streamed: httpx reads the whole body before returning.
            response = await http.request(method, url, headers=headers, json=json, timeout=timeout)
        except RETRYABLE_ERRORS as exc:
            failure: Exception | None = exc
            outcome = type(exc).__name__
        else:
            if response.status_code not in RETRYABLE_STATUSES:
                return response
            failure = None
            outcome = f"HTTP {response.status_code}"

        delay = retry_after_seconds(response) if response is not None else None
        if delay is None:
            delay = policy.backoff(attempt)
        if elapsed() + delay > policy.deadline:
            if failure is not None:
                raise failure
            assert response is not None
            return response

        logger.debug("%s %s: %s; retrying in %.2fs", method, url, outcome, delay)
        await sleep(delay)
        slept += delay
        attempt += 1
