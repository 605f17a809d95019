"""build_report and resolve_period on a real store: what a report says, bounded by its days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.grammar import Command, UsageError
from bot.render import report_table
from bot.reports import Period, build_report, resolve_period
from storage.models import ApiKeyName, Connection, DailyCost, FetchedSpan, Workspace
from storage.repo import rebuild_totals
from tests.fakes.connections import add_connection

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db):
    """Four connections synced at different times (one never), and a neighbour's older one."""
    with db.transaction() as session:
        workspace, elsewhere = Workspace(name="acme"), Workspace(name="elsewhere")
        session.add_all([workspace, elsewhere])
        session.flush()
        add_connection(
            session,
            workspace.id,
            "Production",
            last_success_at=datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=UTC),
        )
        research = add_connection(
            session,
            workspace.id,
            "Research",
            last_success_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        )
        add_connection(session, workspace.id, "New")  # never synced
        add_connection(
            session,
            workspace.id,
            "Staging",
            status="error",
            status_reason="invalid_key",
            last_success_at=datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC),
        )
        add_connection(
            session, elsewhere.id, "Theirs", last_success_at=datetime(2025, 1, 1, tzinfo=UTC)
        )
        for day, usd in ((date(2026, 1, 30), "1.50"), (date(2026, 3, 2), "0.000000001")):
            session.add(
                DailyCost(
                    connection_id=research.id,
                    workspace_id=workspace.id,
                    day=day,
                    model="grok-4",
                    cost=Decimal(usd),
                )
            )
        # Every day these tests ask about was fetched: they are about sums and buckets,
        # not coverage (tests/bot/test_reports_coverage.py is).
        for connection in session.scalars(select(Connection)):
            session.add(
                FetchedSpan(
                    connection_id=connection.id,
                    workspace_id=connection.workspace_id,
                    first_day=date(2023, 1, 1),
                    last_day=NOW.date(),
                )
            )
        session.flush()
        rebuild_totals(session, workspace.id)
        return workspace.id, research.id


def test_as_of_is_the_oldest_sync_in_utc_and_problems_name_the_failing(db, store) -> None:
    workspace_id, _ = store
    with db.session() as session:
        report = build_report(
            session, workspace_id, resolve_period(Command("today"), NOW.date()), now=NOW
        )
    assert report.as_of == datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC)
    assert report.as_of.utcoffset().total_seconds() == 0
    assert sorted(report.connection_labels) == ["New", "Production", "Research", "Staging"]
    assert report.problems == (
        "“Staging” is not syncing (invalid_key): its figures may be out of date.",
    )


def test_one_connection_has_its_own_sync_and_no_one_elses_problems(db, store) -> None:
    workspace_id, research_id = store
    with db.session() as session:
        research = session.get(Connection, research_id)
        report = build_report(
            session,
            workspace_id,
            resolve_period(Command("week"), NOW.date()),
            connection=research,
            now=NOW,
        )
    assert report.as_of == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert report.connection_labels == ("Research",) and report.problems == ()


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "month",
            [
                ("2026-01", "January 2026", "1.5"),
                ("2026-02", "February 2026", "0"),
                ("2026-03", "March 2026", "1E-9"),
            ],
        ),
        ("week", [("2026-01-26", None, "1.5"), ("2026-03-02", None, "1E-9")]),
    ],
)
def test_weeks_and_months_are_every_bucket_in_order_with_exact_sums(
    db, store, group_by, expected
) -> None:
    workspace_id, _ = store
    period = Period("range", date(2026, 1, 30), date(2026, 3, 2), "")
    with db.session() as session:
        report = build_report(session, workspace_id, period, group_by, now=NOW)
    rows = {row.key: row for row in report.rows}
    if group_by == "week":
        assert len(report.rows) == 6  # Mondays 26 Jan .. 2 Mar, zero weeks included
        assert [r.key for r in report.rows] == sorted(rows)
    else:
        assert [(r.key, r.label) for r in report.rows] == [(k, lbl) for k, lbl, _ in expected]
    for key, _, usd in expected:
        assert rows[key].cost_usd == Decimal(usd)
    assert report.total_usd == Decimal("1.500000001")


def test_by_day_has_every_day_of_the_period(db, store) -> None:
    workspace_id, _ = store
    period = Period("range", date(2026, 1, 30), date(2026, 3, 2), "")
    with db.session() as session:
        report = build_report(session, workspace_id, period, "day", now=NOW)
    assert len(report.rows) == 32 and report.rows[0].key == "2026-01-30"
    assert report.rows[-1].cost_usd == Decimal("0.000000001")


def test_a_range_is_cut_to_the_days_that_can_have_costs() -> None:
    today = date(2026, 12, 1)

    def covered(start: str, end: str) -> tuple[date, date]:
        period = resolve_period(Command("range", (start, end)), today)
        return period.start, period.end

    assert covered("2023-01-01", "2026-12-02") == (date(2023, 1, 1), date(2026, 12, 2))
    assert covered("0001-01-01", "9999-12-30") == (date(2023, 1, 1), date(2026, 12, 2))
    assert covered("2026-11-01", "2026-12-31") == (date(2026, 11, 1), date(2026, 12, 2))
    for args in (("2026-12-03", "9999-12-31"), ("0001-01-01", "2022-12-31")):
        with pytest.raises(UsageError, match=r"reports cover 2023-01-01 to 2026-12-02 \(tomorrow"):
            resolve_period(Command("range", args), today)


@pytest.mark.parametrize("odd", ["Re\x1fsearch", "Re\x1esearch"])
def test_a_label_saved_before_labels_refused_control_characters_is_still_shown(
    db, store, odd
) -> None:
    workspace_id, research_id = store
    with db.transaction() as session:
        research = session.get(Connection, research_id)
        research.label, research.status, research.status_reason = odd, "failing", "timeout"
    with db.session() as session:
        report = build_report(
            session, workspace_id, resolve_period(Command("today"), NOW.date()), now=NOW
        )
    assert sorted(report.connection_labels) == sorted(["New", odd, "Production", "Staging"])
    assert f"“{odd}” is not syncing (timeout)" in " ".join(report.problems)


@pytest.mark.parametrize(
    ("group_by", "options"),
    [
        ("model", {}),  # the whole workspace: coverage and costs in one statement
        ("connection", {}),
        ("model", {"model_pattern": "grok*"}),  # filtered: coverage, then the costs
        ("day", {"model_pattern": "GROK"}),
    ],
)
def test_filtered_or_not_a_report_sums_the_same_and_covers_the_same(
    db, store, group_by, options
) -> None:
    workspace_id, _ = store
    period = Period("range", date(2026, 1, 1), date(2026, 3, 31), "")
    with db.session() as session:
        report = build_report(session, workspace_id, period, group_by, now=NOW, **options)
    assert report.total_usd == Decimal("1.500000001")
    assert len(report.connection_labels) == 4 and len(report.problems) == 1
    assert report.as_of == datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC)
    if group_by == "connection":
        assert [row.label for row in report.rows] == ["Research"]


def test_an_api_key_is_named_first_and_its_connection_after_it(db, store) -> None:
    """With several connections, a key row says which connection it belongs to after the
    key's own name: cut to a table's width, what tells two keys apart is what is kept."""
    workspace_id, research_id = store
    with db.transaction() as session:
        for key_id, name in (("k-prod", "Production key"), ("k-test", "Test key")):
            session.add(ApiKeyName(connection_id=research_id, api_key_id=key_id, name=name))
            session.add(
                DailyCost(
                    connection_id=research_id,
                    workspace_id=workspace_id,
                    day=date(2026, 11, 20),
                    model="grok-4",
                    api_key_id=key_id,
                    cost=Decimal("2.50"),
                )
            )
        session.flush()
        rebuild_totals(session, workspace_id)
    with db.session() as session:
        report = build_report(
            session, workspace_id, resolve_period(Command("month"), NOW.date()), "key", now=NOW
        )
    assert {row.label for row in report.rows} == {
        "Production key (Research)",
        "Test key (Research)",
    }
    table = report_table(report)
    assert "  Production key (Research)  " in table and "  Test key (Research)  " in table
