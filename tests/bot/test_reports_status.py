"""`status` reconciles the usage series with xAI's invoice preview (the bill so far).

End to end against the xAI stand-in over real sockets, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from bot.render import render
from bot.reports import status_rows
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS, UNIT_TYPES
from storage.models import Workspace
from tests.conftest import impatient

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}


def connect(engine, workspace_id: int, days: int) -> None:
    connected = asyncio.run(engine.connect(workspace_id, "xai", DEMO, backfill_days=days))
    assert connected.backfill.ok


def status(engine, workspace_id: int):
    with engine.db.session() as session:
        rows = status_rows(session, workspace_id, engine.clock())
        text = render(
            "status.txt.j2", rows=rows, workspace=session.get(Workspace, workspace_id), alerts=()
        )
    return rows[0], text


def invoice_so_far(sandbox, today: date) -> Decimal:
    """The stand-in's invoice: each model's month to date, per kind of usage (one
    invoice line each), rounded to the cent."""
    total = Decimal(0)
    for label in MODELS:
        for unit in UNIT_TYPES:
            usd = sum(
                (
                    sandbox.unit_cost(DEMO_TEAM_ID, label, today.replace(day=d), unit)
                    for d in range(1, today.day + 1)
                ),
                Decimal(0),
            )
            total += usd.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return total


def series_so_far(sandbox, today: date) -> Decimal:
    return sum(
        (
            sandbox.cost(DEMO_TEAM_ID, label, today.replace(day=d))
            for label in MODELS
            for d in range(1, today.day + 1)
        ),
        Decimal(0),
    )


def test_a_full_month_agrees_with_the_invoice(engine, sandbox, workspace_id, clock):
    connect(engine, workspace_id, 90)
    row, text = status(engine, workspace_id)
    today = clock.now.date()
    r = row.reconciliation
    assert r is not None and r.month == date(2026, 11, 1)
    assert r.invoice_usd == invoice_so_far(sandbox, today)
    assert r.usage_usd == series_so_far(sandbox, today) == row.month_to_date_usd
    assert abs(r.difference_usd) < Decimal("0.05") and not r.flagged
    assert "they agree" in text and "invoice so far" in text
    as_json = row.as_json()["reconciliation"]
    assert as_json["flagged"] is False and as_json["explanations"] == []
    assert Decimal(as_json["invoice_usd"]) == r.invoice_usd and as_json["month"] == "2026-11"


def test_unfetched_days_are_flagged_with_the_sync_that_fetches_them(engine, sandbox, workspace_id):
    connect(engine, workspace_id, 3)  # 20–22 Nov only; the invoice has the whole month
    row, text = status(engine, workspace_id)
    r = row.reconciliation
    assert r.flagged and r.difference_usd < -1
    assert r.explanations[0] == (
        "days not fetched into the usage series: 1 Nov–19 Nov 2026 (sync --days 22 fetches them)"
    )
    assert "The difference is over 1% and $1" in text and "1 Nov–19 Nov 2026" in text
    assert row.as_json()["reconciliation"]["flagged"] is True
    asyncio.run(engine.sync_all(workspace_id, days=22))  # what it said to run
    again, _ = status(engine, workspace_id)
    assert not again.reconciliation.flagged


def test_an_invoice_read_before_the_latest_costs_is_explained(
    engine, providers, sandbox, workspace_id, clock
):
    clock.now = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # a Wednesday, just begun
    connect(engine, workspace_id, 90)
    clock.now += timedelta(hours=22)  # 23:00: today has grown past 1% of the month
    impatient(providers)  # it stays down: no need to keep asking for 3 s
    sandbox.add_fault("invoice", status=503, times=0)  # the bill cannot be read this time
    assert asyncio.run(engine.sync_all(workspace_id))[0].ok  # costs still sync
    row, text = status(engine, workspace_id)
    r = row.reconciliation
    assert r.invoice_as_of.hour == 1 and r.flagged and r.difference_usd > 1
    assert any(
        why.startswith(
            "read at different times: the invoice at 25 Nov 01:00 UTC, the costs at "
            "25 Nov 23:00 UTC"
        )
        for why in r.explanations
    )
    assert any("still settling" in why for why in r.explanations)
    assert "usage is $" in text and "above the invoice" in text


def served_on(sandbox, team: str, day: date) -> Decimal:
    return sum((sandbox.cost(team, label, day) for label in MODELS), Decimal(0))


def test_status_forecasts_the_month_end_per_connection_and_for_the_workspace(
    engine, sandbox, workspace_id, clock
):
    other_team, other_key = "0b7c1e2a-9d4f-4e8b-a1c3-5f6e7d8c9b0a", "xai-mgmt-other-team-key-4c2d"
    sandbox.add_key(other_key, other_team)
    connect(engine, workspace_id, 30)
    asyncio.run(
        engine.connect(
            workspace_id,
            "xai",
            {"team_id": other_team, "management_key": other_key},
            label="Research",
            backfill_days=30,
        )
    )
    with engine.db.session() as session:
        rows = status_rows(session, workspace_id, engine.clock())
        text = render(
            "status.txt.j2", rows=rows, workspace=session.get(Workspace, workspace_id), alerts=[]
        )
    through = clock.now.date() - timedelta(days=1)  # today's partial figures never count

    def expected(teams) -> Decimal:
        so_far = sum(
            (served_on(sandbox, t, through.replace(day=d)) for t in teams for d in range(1, 22)),
            Decimal(0),
        )
        week = sum(
            (served_on(sandbox, t, through - timedelta(days=n)) for t in teams for n in range(7)),
            Decimal(0),
        )
        return so_far + week / 7 * 9  # 21 Nov is counted; 22–30 Nov are to come

    by_label = {r.label: r for r in rows}
    research = by_label["Research"].forecast.total
    production = next(r for r in rows if r.label != "Research").forecast.total
    workspace = rows[0].workspace_forecast.total
    assert research == expected([other_team])
    assert production == expected([DEMO_TEAM_ID])
    assert workspace == expected([DEMO_TEAM_ID, other_team])
    assert research < workspace and production < workspace
    assert "Month-end forecast for November 2026, at the pace of the last 7 days, " in text
    assert "month-end forecast for November $" in text  # each connection's, its month named
    assert f"all connections: ${workspace.quantize(Decimal('0.01'), ROUND_HALF_UP):,}" in text
    as_json = by_label["Research"].as_json()["forecast"]
    nano = Decimal("0.000000001")  # JSON amounts: fixed point, to the nano-dollar
    assert as_json["month"] == "2026-11" and Decimal(as_json["usd"]) == research.quantize(nano)
    assert Decimal(as_json["workspace_usd"]) == workspace.quantize(nano)
