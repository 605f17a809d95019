"""Costs by kind of usage, synced from the xAI stand-in over real sockets, on both stores.

The split by ``unit_type`` is undocumented: where xAI answers it, the last
days are stored with their coverage; where it answers 400 the sync still
succeeds, nothing is stored, and insights say so instead of guessing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import httpx
from sqlalchemy import select

from bot.insights import build_insights
from bot.render import insights_text
from bot.sync import UNIT_COST_DAYS, SyncEngine
from providers.xai.provider import model_id
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS, UNIT_TYPES, Sandbox
from storage.models import DailyCost, InvoiceLineUnits, UnitCost, UnitCostSpan
from tests.fakes.connections import connect_demo

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}


def unit_requests(sandbox) -> list:
    return [
        r
        for r in sandbox.requests
        if r.path.endswith("/usage") and "unit_type" in r.body["analyticsRequest"]["groupBy"]
    ]


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
