"""The sync engine with OpenAI and Anthropic, against their stand-ins on both stores:
a backfill, then a daily sync that re-fetches the trailing days as they settle."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.sync import SyncEngine
from providers.anthropic.provider import AnthropicProvider
from providers.anthropic.sandbox import DEMO_KEY as ANTHROPIC_KEY
from providers.anthropic.sandbox import DEMO_ORG as ANTHROPIC_ORG
from providers.anthropic.sandbox import AnthropicStandIn
from providers.http import RetryPolicy
from providers.manager import ProviderRegistry
from providers.openai.provider import OpenAIProvider
from providers.openai.sandbox import DEMO_KEY as OPENAI_KEY
from providers.openai.sandbox import DEMO_ORG as OPENAI_ORG
from providers.openai.sandbox import OpenAIStandIn
from storage.models import DailyCost
from tests.conftest import FAST_RETRIES

SETUPS = {
    "openai": (OpenAIStandIn, OpenAIProvider, OPENAI_ORG, OPENAI_KEY),
    "anthropic": (AnthropicStandIn, AnthropicProvider, ANTHROPIC_ORG, ANTHROPIC_KEY),
}


@pytest.fixture(params=sorted(SETUPS))
def setup(request, db, clock):
    """(engine, stand-in, organization) for one provider, sharing the test's clock."""
    stand_in_class, provider_class, org, key = SETUPS[request.param]
    with stand_in_class(clock=clock) as stand_in:
        provider = provider_class(base_url=stand_in.url, retry=RetryPolicy(**FAST_RETRIES))
        engine = SyncEngine(db, ProviderRegistry([provider]), concurrency=8, clock=clock)
        yield engine, stand_in, org, {"admin_key": key}


def by_day_and_model(engine: SyncEngine) -> dict[tuple[date, str], Decimal]:
    totals: dict[tuple[date, str], Decimal] = {}
    with engine.db.session() as session:
        for row in session.scalars(select(DailyCost)):
            slot = (row.day, row.model)
            totals[slot] = totals.get(slot, Decimal(0)) + row.cost
    return totals


def served(stand_in, org: str, start: date, end: date) -> dict[tuple[date, str], Decimal]:
    """What the stand-in serves now, per day and model, from its own oracle."""
    models = stand_in.costs_by_model(org, start, end)
    days = (start + timedelta(days=i) for i in range((end - start).days + 1))
    return {
        (day, model): cost
        for day in days
        for model in models
        if (cost := stand_in.cost(org, model, day))
    }


def test_a_backfill_then_a_daily_sync_keep_every_day_as_served(setup, workspace_id, clock) -> None:
    engine, stand_in, org, credentials = setup
    provider = next(iter(engine.providers))
    today = clock.now.date()

    connected = asyncio.run(engine.connect(workspace_id, provider.name, credentials))

    assert connected.backfill.ok and connected.backfill.days == 90
    assert connected.check.account_id  # the provider said which organization it read
    start = today - timedelta(days=89)
    assert by_day_and_model(engine) == served(stand_in, org, start, today)
    partial = sum(v for (d, _), v in by_day_and_model(engine).items() if d == today)

    # The next morning: yesterday (today, then) finished growing; a daily sync re-fetches it.
    clock.now += timedelta(days=1)
    (result,) = asyncio.run(engine.sync_all(workspace_id, trigger="daily"))

    tomorrow = today + timedelta(days=1)
    assert result.ok and result.start == tomorrow - timedelta(days=engine.trailing_days - 1)
    stored = by_day_and_model(engine)
    assert stored == served(stand_in, org, start, tomorrow)
    assert sum(v for (d, _), v in stored.items() if d == today) > partial > 0
