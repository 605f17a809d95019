"""What the provider client tests share: a sleep that never waits, a way to call a
provider's async methods from a plain test, and the sums a test checks its rows by.

A provider retries with real waits; a test injects :class:`RecordingSleep`
instead, so it runs at once and can still say how long the provider would have
waited (``Retry-After`` obeyed, backoff bounded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.http import RetryPolicy
from providers.types import CostRow, ProviderError

QUICK_RETRY = RetryPolicy(deadline=20, base_delay=0.01, max_delay=0.05, timeout=2)
"""Retries that give up late but wait little: with :class:`RecordingSleep`, no test waits."""


class RecordingSleep:
    """Stands in for asyncio.sleep: records the waits, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def call(provider: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``provider.method(http, *args, **kwargs)`` with a fresh HTTP client, run to its end."""

    async def run() -> Any:
        async with httpx.AsyncClient() as http:
            return await getattr(provider, method)(http, *args, **kwargs)

    return asyncio.run(run())


def refusal(provider: Any, method: str, *args: Any, **kwargs: Any) -> ProviderError:
    """The :class:`ProviderError` that :func:`call` raises (the test fails if none is)."""
    with pytest.raises(ProviderError) as caught:
        call(provider, method, *args, **kwargs)
    return caught.value


def windows(start: date, end: date, size: int = 31) -> Iterator[tuple[date, date]]:
    """[start, end) cut into windows of at most ``size`` days, as the host asks for them."""
    while start < end:
        yield start, min(end, start + timedelta(days=size))
        start += timedelta(days=size)


def cost_by_model(rows: Iterable[CostRow]) -> dict[str, Decimal]:
    """The rows' costs summed per model, as a report by model shows them."""
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row.model] = totals.get(row.model, Decimal(0)) + row.cost_usd
    return totals


def cost_on(rows: Iterable[CostRow], day: date, model: str) -> Decimal:
    """What the rows say ``model`` cost on ``day`` (every key's share added up)."""
    return sum((r.cost_usd for r in rows if (r.day, r.model) == (day, model)), Decimal(0))
