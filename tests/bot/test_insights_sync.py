"""Costs by kind of usage, synced from the xAI stand-in over real sockets, on both stores.

The split by ``unit_type`` is undocumented: where xAI answers it, the last
days are stored with their coverage; where it answers 400 the sync still
succeeds, nothing is stored, and insights say so instead of guessing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from bot.insights import build_insights
from bot.render import insights_text
from bot.sync import UNIT_COST_DAYS, SyncEngine
from providers.http import RetryPolicy
from providers.manager import ProviderRegistry
from providers.xai.provider import XaiProvider, model_id
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS, UNIT_TYPES, Sandbox
from storage.models import DailyCost, InvoiceLineUnits, UnitCost, UnitCostSpan
from tests.conftest import IMPATIENT, impatient
from tests.fakes.connections import connect_demo

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}


PER_KEY = ["description", "api_key_id"]
BY_KIND = ["description", "unit_type"]


def unit_requests(sandbox) -> list:
    return [
        r
        for r in sandbox.requests
        if r.path.endswith("/usage") and "unit_type" in r.body["analyticsRequest"]["groupBy"]
    ]


def kinds_stored(db) -> tuple[dict, list]:
    with db.session() as session:
        rows = {(r.day, r.model, r.unit_type): r.cost for r in session.scalars(select(UnitCost))}
        spans = [(s.first_day, s.last_day) for s in session.scalars(select(UnitCostSpan))]
    return rows, spans


def costs_stored(db) -> dict:
    with db.session() as session:
        return {(r.day, r.model, r.api_key_id): r.cost for r in session.scalars(select(DailyCost))}


def test_a_sync_stores_the_last_days_by_unit_type_exactly(engine, sandbox, workspace_id, clock):
    connected = connect_demo(engine, workspace_id, days=30)
    assert connected.backfill.ok
    today = clock.now.date()
    first, yesterday = today - timedelta(days=UNIT_COST_DAYS), today - timedelta(days=1)
    (request,) = unit_requests(sandbox)  # one request for the last 15 days, not per window
    asyncio.run(engine.sync_all(workspace_id, days=1))  # today alone: no request for kinds
    assert len(unit_requests(sandbox)) == 1
    assert request.status == 200
    assert request.body["analyticsRequest"]["groupBy"] == ["description", "unit_type"]
    served = {}
    day = first
    while day <= yesterday:  # finished days only: insights never read today
        for label in MODELS:
            for unit in UNIT_TYPES:
                if usd := sandbox.unit_cost(DEMO_TEAM_ID, label, day, unit):
                    served[(day, model_id(label), unit)] = usd
        day += timedelta(days=1)
    with engine.db.session() as session:
        stored = {(r.day, r.model, r.unit_type): r.cost for r in session.scalars(select(UnitCost))}
        spans = [(s.first_day, s.last_day) for s in session.scalars(select(UnitCostSpan))]
        lines = list(session.scalars(select(InvoiceLineUnits)))
        costs: dict = {}
        for r in session.scalars(
            select(DailyCost).where(DailyCost.day >= first, DailyCost.day <= yesterday)
        ):
            costs[(r.day, r.model)] = costs.get((r.day, r.model), Decimal(0)) + r.cost
    assert len(served) > 200 and stored == served
    assert spans == [(first, yesterday)]
    # The kinds add up to the model's cost (both API keys), to the last nano-dollar.
    by_kind: dict = {}
    for (day, model, _), usd in stored.items():
        by_kind[(day, model)] = by_kind.get((day, model), Decimal(0)) + usd
    assert by_kind == costs
    assert {line.unit_type for line in lines} == set(UNIT_TYPES)
    assert all(line.num_units > 0 and line.invoice_month == today.replace(day=1) for line in lines)

    with engine.db.session() as session:
        found = build_insights(session, workspace_id, today, providers=engine.providers)
    assert found.kinds.source == "xAI usage series by unit type"
    assert found.kinds.total_usd == sum(
        (c for (d, _, _), c in stored.items() if today - timedelta(days=7) <= d < today),
        Decimal(0),
    )
    assert [h.model for h in found.hints] == ["grok-4-0709"]
    assert not any("unit type" in note for note in found.notes)
    text = insights_text(found)
    assert "\n  units this billing cycle · source: xAI invoice preview, November 2026" in text
    assert "\n    input tokens: $" in text


def test_a_400_for_unit_type_keeps_the_sync_and_says_the_kinds_are_missing(
    db, providers, workspace_id, clock
):
    engine = SyncEngine(db, providers, concurrency=8, clock=clock)
    with Sandbox(clock=clock, unit_types=False) as refusing:
        providers.get("xai").base_url = refusing.url
        connected = connect_demo(engine, workspace_id, days=20)
        (request,) = unit_requests(refusing)
    assert connected.backfill.ok
    assert request.status == 400
    with db.session() as session:
        assert session.scalars(select(UnitCost)).first() is None
        assert session.scalars(select(UnitCostSpan)).first() is None
        found = build_insights(session, workspace_id, clock.now.date(), providers=providers)
    # The invoice's lines still tell the kinds (for the cycle so far), and the note says why.
    assert found.kinds.source.startswith("xAI invoice preview, November 2026")
    assert any(
        "did not split the costs of “Production — xAI” by unit type" in note for note in found.notes
    )


def test_the_provider_reads_a_cut_off_unit_type_answer_as_unknown(providers, clock):
    with Sandbox(clock=clock, max_groups=3) as tight:
        provider = providers.get("xai")
        provider.base_url = tight.url
        today = clock.now.date()

        async def fetch():
            async with httpx.AsyncClient() as http:
                return await provider.fetch_unit_costs(http, DEMO, today - timedelta(days=7), today)

        assert asyncio.run(fetch()) is None


def test_disconnect_deletes_the_unit_costs_and_invoice_lines(engine, sandbox, workspace_id):
    connected = connect_demo(engine, workspace_id, days=5)
    with engine.db.session() as session:
        assert session.scalars(select(UnitCost)).first() is not None
    engine.disconnect(connected.connection_id)
    with engine.db.session() as session:
        for table in (UnitCost, UnitCostSpan, InvoiceLineUnits):
            assert session.scalars(select(table)).first() is None, table.__name__


def test_the_split_by_unit_type_is_asked_beside_the_costs_not_after_them(
    engine, sandbox, workspace_id
):
    """After them, a backfill would wait one round trip more."""
    connect_demo(engine, workspace_id, days=5)
    before = len(sandbox.requests)
    sandbox.latency = 0.2  # long enough that requests sent at once are seen overlapping

    assert asyncio.run(engine.sync_all(workspace_id))[0].ok

    usage = [r for r in sandbox.requests[before:] if r.path.endswith("/usage")]
    (by_key,) = [r for r in usage if r.body["analyticsRequest"]["groupBy"] == PER_KEY]
    (by_kind,) = [r for r in usage if r.body["analyticsRequest"]["groupBy"] == BY_KIND]
    assert by_kind.arrived < by_key.answered and by_key.arrived < by_kind.answered


def test_a_failed_sync_stores_none_of_the_kinds_it_was_answered(
    engine, sandbox, providers, workspace_id, clock
):
    connect_demo(engine, workspace_id, days=5)
    costs, kinds = costs_stored(engine.db), kinds_stored(engine.db)
    clock.now += timedelta(days=1)  # yesterday is finished now: its kinds are new
    impatient(providers)
    sandbox.add_fault("usage", group_by=PER_KEY, status=503, times=0)

    failed = asyncio.run(engine.sync_all(workspace_id))[0]

    (by_kind,) = unit_requests(sandbox)[1:]  # the failed sync's, after the connect's
    assert by_kind.status == 200  # the kinds were there to store
    assert not failed.ok and failed.reason == "server_error"
    assert costs_stored(engine.db) == costs and kinds_stored(engine.db) == kinds


def test_a_failing_split_by_unit_type_keeps_the_sync_and_the_kinds_stored_before(
    engine, sandbox, providers, workspace_id, clock
):
    connect_demo(engine, workspace_id, days=5)
    kinds = kinds_stored(engine.db)
    clock.now += timedelta(days=1)
    impatient(providers)
    sandbox.add_fault("usage", group_by=BY_KIND, status=503, times=0)

    synced = asyncio.run(engine.sync_all(workspace_id))[0]

    assert unit_requests(sandbox)[-1].status == 503
    assert synced.ok and synced.by_key
    assert kinds_stored(engine.db) == kinds  # nothing for the days it could not read
    today = clock.now.date()
    assert {day for day, _, _ in costs_stored(engine.db)} >= {today - timedelta(1), today}


def test_a_failed_sync_returns_once_every_request_it_sent_has_ended(engine, sandbox, workspace_id):
    """Nothing of a failed sync runs on past it (past its slot and its HTTP client), so
    whoever counts the requests after it, a test or the bench, sees all of them."""
    connect_demo(engine, workspace_id, days=5)
    sandbox.revoke_key(DEMO_KEY)  # the costs fail at once
    sandbox.add_fault("usage", group_by=BY_KIND, status=429, retry_after=0.3)  # asked again

    failed = asyncio.run(engine.sync_all(workspace_id))[0]
    answered = len(sandbox.requests)
    time.sleep(0.5)  # longer than the split's wait before it is asked again

    assert failed.reason == "invalid_key"
    assert [r.status for r in unit_requests(sandbox)[1:]] == [429, 401]
    assert len(sandbox.requests) == answered


class BrokenSplitProvider(XaiProvider):
    """xAI with a bug in the split by unit type: it raises what no provider should."""

    async def fetch_unit_costs(self, http, credentials, start, end):
        raise RuntimeError("bug in the split by unit type")


@pytest.mark.parametrize("costs_fail", [True, False], ids=["costs-fail", "costs-ok"])
def test_a_bug_in_the_split_by_unit_type_is_logged_never_lost(
    db, sandbox, engine, workspace_id, clock, caplog, costs_fail
):
    connect_demo(engine, workspace_id, days=5)
    costs = costs_stored(db)
    broken = BrokenSplitProvider(base_url=sandbox.url, retry=RetryPolicy(**IMPATIENT))
    buggy = SyncEngine(db, ProviderRegistry([broken]), concurrency=8, clock=clock)
    if costs_fail:
        sandbox.add_fault("usage", group_by=PER_KEY, status=503, times=0)

    with caplog.at_level(logging.INFO):
        result = asyncio.run(buggy.sync_all(workspace_id))[0]
        gc.collect()  # an exception nobody retrieved is reported when its task is collected

    # The costs decide the outcome; a bug is a bug, as in any other part of a sync.
    assert result.reason == ("server_error" if costs_fail else "internal")
    assert costs_stored(db) == costs
    assert "never retrieved" not in caplog.text
    bugs = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(bugs) == 1 and bugs[0].name == "bot.sync"
