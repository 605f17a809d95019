"""Retrying HTTP calls, and what else any provider that reads an HTTP API needs.

One logical call gets an overall ``deadline``; inside it, rate limits (429),
server trouble (500/502/503/504/529) and transport failures (timeouts, refused or
dropped connections, a body cut off half-way) are retried with exponential
backoff and full jitter. Anything else is returned for the caller to map.

:class:`HttpProvider` is what a provider author builds on: where the API is and
how the host configures it, the one place a request goes out, and the words for
the failures every HTTP API can have (unreachable, rate limited, failing, an
answer that cannot be read), the same for every provider. What a service's
refusals mean stays with the provider: services word them differently.

Nothing here logs or raises with request headers: they carry the secret.
"""

from __future__ import annotations

import asyncio
import json as json_module
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self
from urllib.parse import urlencode

import httpx

from providers.types import ProviderError, Reason

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


def json_body(response: httpx.Response) -> Any:
    """The body as JSON with every number a ``Decimal`` (never a float), or None."""
    try:
        return json_module.loads(
            response.content, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal
        )
    except ValueError:  # HTML from a proxy, an empty body...
        return None


def scrubbed(text: object, key: str, key_like: re.Pattern[str]) -> str:
    """A service's words, safe to show: the key and anything shaped like one removed,
    on one line, at most 300 characters."""
    words = str(text or "")
    if key:
        words = words.replace(key, "[redacted]")
    words = key_like.sub("[redacted]", words)
    return " ".join(words.split())[:300]


DEADLINE_SETTING = "XAI_USAGE_HTTP_DEADLINE"
"""The host's setting for :attr:`RetryPolicy.deadline`, in seconds (unset: the default)."""


class HttpProvider:
    """The part of a provider that reads one HTTP API, for provider authors to build on.

    A subclass names its service and API (:attr:`service`, :attr:`api_name`),
    the address of the real API and the setting that points elsewhere, such as
    at a stand-in (:attr:`default_base_url`, :attr:`base_url_setting`). It then
    has ``base_url``, ``retry`` (how hard one logical call tries) and the way it
    waits between tries (``sleep``: tests pass one that only records), is
    configured from the host's settings by :meth:`from_config`, sends every
    request through :meth:`send`, and words failures with the methods below.
    """

    service: ClassVar[str]
    """Who answers, as people name it: "OpenAI" ("OpenAI is rate limiting requests…")."""
    api_name: ClassVar[str]
    """The API, as messages name it: "OpenAI's API", "xAI's Management API"."""
    default_base_url: ClassVar[str]
    """The real API's address, without a version path: "https://api.openai.com"."""
    base_url_setting: ClassVar[str]
    """The host setting that overrides :attr:`default_base_url`: "OPENAI_API_URL"."""

    def __init__(
        self,
        base_url: str | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.base_url = (self.default_base_url if base_url is None else base_url).rstrip("/")
        self.retry = retry
        self._sleep = sleep

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> Self:
        """The provider as the host's settings configure it: the base URL from
        :attr:`base_url_setting`, the deadline of a call from :data:`DEADLINE_SETTING`."""
        deadline = config.get(DEADLINE_SETTING)
        retry = RetryPolicy(deadline=float(deadline)) if deadline else RetryPolicy()
        return cls(base_url=config.get(cls.base_url_setting) or cls.default_base_url, retry=retry)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def send(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]] = (),
        json: Any = None,
    ) -> httpx.Response:
        """The one place a request goes out: ``base_url + path`` with ``query``, retried
        as :attr:`retry` allows (:func:`send_with_retries`); a transport failure that
        outlasts the retries is :meth:`unreachable`."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        try:
            return await send_with_retries(
                http, method, url, policy=self.retry, headers=headers, json=json, sleep=self._sleep
            )
        except httpx.RequestError as exc:
            # ``from None``: the exception holds the request, and so the key.
            raise self.unreachable(exc) from None

    def json_object(self, response: httpx.Response) -> dict[str, Any]:
        """A successful answer's body as a JSON object, every number a ``Decimal``; anything
        else is :meth:`unreadable`."""
        payload = json_body(response)
        if not isinstance(payload, dict):
            raise self.unreadable(f"not a JSON object (HTTP {response.status_code})")
        return payload

    # -- the failures every HTTP API can have, worded alike -----------------------------

    def said(self, words: str) -> str:
        """`` (OpenAI said: …)`` to follow a message, or "" when the service said nothing."""
        return f" ({self.service} said: {words})" if words else ""

    def status_error(self, response: httpx.Response, said: str, path: str) -> ProviderError:
        """The error for a status that is no refusal (the provider reads its own 401 and
        403 first), after retries; ``said`` is the service's words, safe to show."""
        status = response.status_code
        if status == 429:
            return self.rate_limited(response)
        if status >= 500:
            return self.server_failed(status, said)
        if status == 400:
            return self.bad_request(said)
        if status == 404:
            return self.not_found(path)
        return self.unreadable(f"unexpected HTTP {status}{self.said(said)}")

    def rate_limited(self, response: httpx.Response) -> ProviderError:
        """A 429 that outlasted the retries, with the wait ``Retry-After`` asked for."""
        wait = retry_after_seconds(response)
        when = f"in {wait:.0f} seconds" if wait is not None else "in a few minutes"
        return ProviderError(
            Reason.RATE_LIMITED,
            f"{self.service} is rate limiting requests right now. Try again {when}.",
            retry_after=wait,
        )

    def server_failed(self, status: int, said: str) -> ProviderError:
        busy = " (overloaded)" if status == 529 else ""
        return ProviderError(
            Reason.SERVER_ERROR,
            f"{self.api_name} kept failing (HTTP {status}{busy}) after retries. This is usually "
            f"temporary: try again in a few minutes.{self.said(said)}",
        )

    def bad_request(self, said: str) -> ProviderError:
        return ProviderError(
            Reason.BAD_REQUEST,
            f"{self.service} rejected the request (HTTP 400): {said or 'no reason given'}",
        )

    def unreachable(self, error: Exception) -> ProviderError:
        return ProviderError(
            Reason.UNREACHABLE,
            f"Could not reach {self.api_name} at {self.base_url} ({type(error).__name__}). "
            f"Check the network connection, and {self.base_url_setting} if it is set.",
        )

    def unreadable(self, what: str) -> ProviderError:
        return ProviderError(
            Reason.BAD_RESPONSE,
            f"{self.api_name} at {self.base_url} sent an answer this app cannot read: {what}. "
            f"If {self.base_url_setting} points to a proxy, check it; otherwise try again later.",
        )

    def not_found(self, path: str) -> ProviderError:
        """A 404 on a documented endpoint: the base URL is not the API's (given with its
        version path, say)."""
        return ProviderError(
            Reason.BAD_RESPONSE,
            f"{self.api_name} at {self.base_url} has no {path} (HTTP 404). Check "
            f"{self.base_url_setting}: it is the address without /v1, such as "
            f"{self.default_base_url}.",
        )
