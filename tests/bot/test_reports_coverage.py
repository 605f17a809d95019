"""Every figure says what it covers: a day no sync fetched is never $0.00.

End to end against the xAI stand-in over real sockets, on SQLite and
PostgreSQL: a 90-day backfill, then reports reaching before it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.grammar import Command
from bot.render import report_csv, report_json, report_table
from bot.reports import build_report, resolve_period
from bot.sync import SyncEngine
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS
from storage.models import FetchedSpan
from tests.conftest import impatient

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}
LABEL = "Production — xAI"


@pytest.fixture
def clock(clock):
    clock.now = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # a 90-day backfill starts 3 Sep
    return clock


def connect(engine: SyncEngine, workspace_id: int, days: int = 90) -> int:
    connected = asyncio.run(
        engine.connect(workspace_id, "xai", DEMO, label=LABEL, backfill_days=days)
    )
    assert connected.backfill.ok
    return connected.connection_id


def report(engine, workspace_id, start: str, end: str, by: str):
    period = resolve_period(Command("range", (start, end)), engine.today())
    with engine.db.session() as session:
        return build_report(session, workspace_id, period, by, now=engine.clock())


def served(sandbox, day: date) -> Decimal:
    return sum((sandbox.cost(DEMO_TEAM_ID, label, day) for label in MODELS), Decimal(0))


def test_days_before_the_backfill_are_not_fetched_never_zero(engine, sandbox, workspace_id):
    connect(engine, workspace_id)
    result = report(engine, workspace_id, "2026-09-01", "2026-11-30", "day")
    rows = {r.key: r for r in result.rows}
    assert served(sandbox, date(2026, 9, 1)) > 0  # the truth was not zero
    for key in ("2026-09-01", "2026-09-02"):
        assert rows[key].cost_usd is None and rows[key].share is None
    assert rows["2026-09-03"].cost_usd == served(sandbox, date(2026, 9, 3))
    assert rows["2026-09-03"].complete and not rows["2026-09-01"].complete
    assert [(u.connection, u.start, u.end) for u in result.uncovered] == [
        (LABEL, date(2026, 9, 1), date(2026, 9, 2))
    ]
    table = report_table(result)
    first_day = next(line for line in table.splitlines() if "Tue 1 Sep 2026" in line)
    assert "not fetched" in first_day and "$0.00" not in first_day
    assert "Total" in table and "(fetched days only" in table
    note = "Not fetched: 1 Sep–2 Sep 2026 for “Production — xAI” (data from Thu 3 Sep 2026)"
    assert note in table
    assert "older than the 90 days a sync can reach" in table


def test_a_month_reaching_before_the_backfill_is_marked_incomplete(engine, sandbox, workspace_id):
    connect(engine, workspace_id)
    result = report(engine, workspace_id, "2026-09-01", "2026-11-30", "month")
    september = next(r for r in result.rows if r.key == "2026-09")
    truth = sum((served(sandbox, date(2026, 9, d)) for d in range(3, 31)), Decimal(0))
    assert september.cost_usd == truth and not september.complete
    assert all(r.complete for r in result.rows if r.key != "2026-09")
    assert f"{september.label}" in report_table(result)
    line = next(x for x in report_table(result).splitlines() if "September 2026" in x)
    assert "*" in line
    assert "* some of its days were not fetched" in report_table(result)


def test_a_range_with_nothing_fetched_says_so_instead_of_no_spend(engine, workspace_id):
    connect(engine, workspace_id)
    result = report(engine, workspace_id, "2025-01-01", "2025-03-31", "model")
    assert result.nothing_fetched and result.rows == ()
    table = report_table(result)
    assert "No spend in this period" not in table and "$0.00" not in table
    assert "Nothing was fetched for this period: data exists from Thu 3 Sep 2026." in table
    as_json = json.loads(report_json(result))
    assert as_json["uncovered"] == [{"connection": LABEL, "from": "2025-01-01", "to": "2025-03-31"}]
    days = json.loads(report_json(report(engine, workspace_id, "2025-01-01", "2025-01-03", "day")))
    assert [r["cost_usd"] for r in days["rows"]] == [None, None, None]


def test_json_and_csv_mark_unfetched_days(engine, sandbox, workspace_id):
    connect(engine, workspace_id)
    result = report(engine, workspace_id, "2026-09-01", "2026-09-05", "day")
    as_json = json.loads(report_json(result))
    assert as_json["uncovered"] == [{"connection": LABEL, "from": "2026-09-01", "to": "2026-09-02"}]
    costs = {r["key"]: r["cost_usd"] for r in as_json["rows"]}
    assert costs["2026-09-01"] is None and costs["2026-09-02"] is None
    assert Decimal(costs["2026-09-03"]) == served(sandbox, date(2026, 9, 3))
    assert Decimal(as_json["total_usd"]) == sum(
        (served(sandbox, date(2026, 9, d)) for d in (3, 4, 5)), Decimal(0)
    )
    rows = list(csv.DictReader(io.StringIO(report_csv(result))))
    assert [r["cost_usd"] for r in rows[:2]] == ["", ""]
    assert Decimal(rows[2]["cost_usd"]) == served(sandbox, date(2026, 9, 3))
    fetched = json.loads(
        report_json(report(engine, workspace_id, "2026-10-01", "2026-10-31", "day"))
    )
    assert fetched["uncovered"] == [] and all(r["complete"] for r in fetched["rows"])


def test_a_reachable_gap_names_the_sync_that_fetches_it(engine, sandbox, workspace_id):
    connect(engine, workspace_id, days=10)
    start, end = date(2026, 11, 2), date(2026, 12, 1)
    result = report(engine, workspace_id, start.isoformat(), end.isoformat(), "day")
    assert [(u.start, u.end) for u in result.uncovered] == [(start, date(2026, 11, 21))]
    assert '`xai-usage sync --connection "Production — xAI" --days 30`' in report_table(result)
    asyncio.run(engine.sync_connection(1, days=30))  # what the report said to run
    again = report(engine, workspace_id, start.isoformat(), end.isoformat(), "day")
    assert again.uncovered == () and all(r.cost_usd is not None for r in again.rows)
    assert again.rows[0].cost_usd == served(sandbox, start)


def test_today_counts_as_fetched_only_once_synced(engine, sandbox, workspace_id, clock):
    connect(engine, workspace_id, days=5)
    clock.now += timedelta(days=1)  # 2 Dec: no sync yet today
    result = report(engine, workspace_id, "2026-11-30", "2026-12-02", "day")
    assert [r.cost_usd is None for r in result.rows] == [False, False, True]
    assert [(u.start, u.end) for u in result.uncovered] == [(date(2026, 12, 2),) * 2]
    asyncio.run(engine.sync_all(workspace_id))
    synced = report(engine, workspace_id, "2026-11-30", "2026-12-02", "day")
    assert synced.uncovered == () and synced.rows[-1].cost_usd == served(sandbox, date(2026, 12, 2))


def test_several_connections_a_day_one_lacks_is_starred_not_null(engine, sandbox, workspace_id):
    connect(engine, workspace_id, days=90)
    sandbox.add_key("xai-mgmt-second-team-key-00000000000", "22222222-3333-4444-5555-666666666666")
    asyncio.run(
        engine.connect(
            workspace_id,
            "xai",
            {
                "team_id": "22222222-3333-4444-5555-666666666666",
                "management_key": "xai-mgmt-second-team-key-00000000000",
            },
            label="Research",
            backfill_days=3,
        )
    )
    result = report(engine, workspace_id, "2026-11-28", "2026-12-01", "day")
    assert [r.complete for r in result.rows] == [False, True, True, True]
    assert result.rows[0].cost_usd == served(sandbox, date(2026, 11, 28))  # the first team's
    by_connection = report(engine, workspace_id, "2026-11-01", "2026-11-05", "connection")
    research = next(r for r in by_connection.rows if r.label == "Research")
    assert research.cost_usd is None and "not fetched" in report_table(by_connection)


def test_syncs_keep_one_merged_span_per_connection(engine, workspace_id, clock):
    connection_id = connect(engine, workspace_id, days=10)
    for _ in range(3):
        clock.now += timedelta(days=1)
        asyncio.run(engine.sync_all(workspace_id))
    with engine.db.session() as session:
        spans = session.execute(
            select(FetchedSpan.connection_id, FetchedSpan.first_day, FetchedSpan.last_day)
        ).all()
    assert spans == [(connection_id, date(2026, 11, 22), date(2026, 12, 4))]


def test_a_failed_sync_records_no_fetched_days(engine, providers, sandbox, workspace_id, clock):
    connect(engine, workspace_id, days=5)
    clock.now += timedelta(days=2)
    impatient(providers)  # it stays down: no need to keep asking for 3 s
    sandbox.add_fault("usage", status=503, times=0)
    assert not asyncio.run(engine.sync_all(workspace_id))[0].ok
    result = report(engine, workspace_id, "2026-12-01", "2026-12-03", "day")
    assert [(u.start, u.end) for u in result.uncovered] == [(date(2026, 12, 2), date(2026, 12, 3))]
