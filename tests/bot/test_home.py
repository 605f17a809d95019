"""The Home dashboard's figures, in-process: the same numbers status and digests give."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, select

from bot import formatting
from bot.home import build_dashboard, fingerprint
from bot.insights import build_insights
from bot.reports import status_rows
from bot.setup import Setup
from bot.slack.home import command_label, home_view
from bot.slack.setup_words import SLACK
from bot.sync import record_fetched
from storage.models import AlertEmail, AlertRoute, Budget, Connection, FetchedSpan, Workspace
from storage.repo import rebuild_totals
from tests.fakes.connections import add_connection, spend
from tests.fakes.providers import built_in

D = Decimal
NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)  # a Sunday; the week is 15–21 Nov


def store(db) -> int:
    with db.transaction() as session:
        workspace = Workspace(name="acme")
        session.add(workspace)
        session.flush()
        production = add_connection(session, workspace.id, "Production")
        research = add_connection(session, workspace.id, 'R&D "lab"')
        day = date(2026, 10, 1)
        while day <= NOW.date():
            spend(session, production, day, "grok-4", "10")
            if day >= date(2026, 11, 15):  # a new model this week only
                spend(session, research, day, "grok-4-fast", "2")
            day += timedelta(days=1)
        for connection in (production, research):  # every day fetched, as a sync leaves it
            record_fetched(session, connection.id, workspace.id, date(2026, 10, 1), NOW.date())
        session.add(Budget(workspace_id=workspace.id, amount_usd=D(250)))
        session.flush()
        rebuild_totals(session, workspace.id)
        return workspace.id


def test_the_dashboard_reuses_status_and_the_weekly_digest(db) -> None:
    workspace_id = store(db)
    with db.session() as session:
        dashboard = build_dashboard(session, workspace_id, NOW, providers=built_in())
        rows = status_rows(session, workspace_id, NOW)
    assert dashboard.connections == tuple(rows)
    assert dashboard.month_to_date_usd == D(220) + D(16)  # 22 days x $10, 8 days x $2
    assert dashboard.forecast.total == rows[0].workspace_forecast.total
    assert (dashboard.last_month.start, dashboard.last_month.amount) == (date(2026, 10, 1), D(310))
    assert dashboard.month_to_date == rows[0].workspace_month_to_date  # status's figure
    assert len(dashboard.trend) == 30 and dashboard.trend[-1] == (NOW.date(), D(12))
    assert dashboard.week.budget_usd == D(250)
    # The same insights as `insights`: grok-4 spent the same both weeks, so it did not move.
    with db.session() as session:
        assert dashboard.insights == build_insights(
            session, workspace_id, NOW.date(), providers=built_in()
        )
    [mover] = dashboard.insights.movers.models
    assert (mover.label, mover.last_week_usd, mover.this_week_usd) == ("grok-4-fast", 0, 14)
    assert [step.done for step in dashboard.checklist] == [True, False, False]


def test_the_view_says_the_forecast_against_the_budget(db) -> None:
    workspace_id = store(db)
    with db.session() as session:
        dashboard = build_dashboard(session, workspace_id, NOW, providers=built_in())
    text = str(home_view(dashboard, admin=False))
    assert "94% of the $250.00 budget" in text  # $236 of $250, rounded down
    assert "over the budget" in text  # ~$10.86 a day to the 30th


def test_admin_lists_come_from_the_setup_with_remove_commands(db) -> None:
    workspace_id = store(db)
    setup = Setup(db, workspace_id, "UADMIN", SLACK)
    with db.session() as session:
        dashboard = build_dashboard(session, workspace_id, NOW, providers=built_in(), setup=setup)
    [budget] = dashboard.budgets.items
    assert budget.remove == f"budget remove {budget.ident}"
    assert "$250.00 a month" in budget.text and budget.removes == budget.text
    assert dashboard.digests.items == () and dashboard.digests.more == 0


def test_a_label_in_a_button_reads_back_as_one_argument() -> None:
    from bot.grammar import tokenize

    for label in ("Production — xAI", 'R&D "lab"', "back\\slash", "it's"):
        assert tokenize(f"update-key {command_label(label)}") == ["update-key", label]


def test_the_fingerprint_changes_with_the_setup(db) -> None:
    workspace_id = store(db)
    with db.session() as session:
        before = fingerprint(session, workspace_id)
    with db.transaction() as session:
        session.add(Budget(workspace_id=workspace_id, amount_usd=D(1)))
    with db.session() as session:
        assert fingerprint(session, workspace_id) != before
        before = fingerprint(session, workspace_id)
    with db.transaction() as session:  # an address on a route: the tab says "by email to 1"
        route = AlertRoute(workspace_id=workspace_id, connection_key=0)
        session.add(route)
        session.flush()
        before = fingerprint(session, workspace_id)
        session.add(AlertEmail(route_id=route.id, address_sealed="x", address_key_id="k"))
    with db.session() as session:
        assert fingerprint(session, workspace_id) != before


def test_days_nobody_fetched_are_gaps_in_the_trend_not_zeros(db) -> None:
    workspace_id = store(db)
    with db.transaction() as session:  # forget that 1–5 Nov were ever fetched
        session.execute(delete(FetchedSpan))
        for connection_id in session.scalars(select(Connection.id)):
            october = date(2026, 10, 1), date(2026, 10, 31)
            record_fetched(session, connection_id, workspace_id, *october)
            record_fetched(session, connection_id, workspace_id, date(2026, 11, 6), NOW.date())
    with db.session() as session:
        dashboard = build_dashboard(session, workspace_id, NOW, providers=built_in())
    trend = dict(dashboard.trend)
    assert [trend[date(2026, 11, d)] for d in range(1, 7)] == [None] * 5 + [D(10)]
    text = str(home_view(dashboard, admin=False))
    assert "5 days not fetched (1 Nov–5 Nov 2026)" in text
    # Monday–Sunday weeks, cut to the 30 days: 2–8 Nov has three fetched days of $10
    assert [label for label, _ in dashboard.weeks] == [
        "24 Oct–25 Oct (part)",
        "26 Oct–1 Nov",
        "2 Nov–8 Nov",
        "9 Nov–15 Nov",
        "16 Nov–22 Nov",
    ]
    # The store still holds 1–5 Nov's costs; the weeks count what is stored, and say so.
    assert "2 Nov–8 Nov             $70.00 (fetched days only)" in text
    spark = formatting.sparkline([cost for _, cost in dashboard.trend])
    assert spark[8:13] == "     " and " " not in spark[:8] + spark[13:]  # from 24 Oct


def test_the_top_models_add_up_to_the_week_they_head(db) -> None:
    """Three models spent $1.004 each in the week: $3.01. Each rounded on its own reads
    $1.00 and the list misses its heading by a cent; the Home tab shows the weekly
    digest's own lines, which add up (bot.digests.digest_view)."""
    with db.transaction() as session:
        workspace = Workspace(name="acme")
        session.add(workspace)
        session.flush()
        production = add_connection(session, workspace.id, "Production")
        for model in ("grok-a", "grok-b", "grok-c"):
            spend(session, production, date(2026, 11, 10), model, "1.004")  # week of 9 Nov
        record_fetched(session, production.id, workspace.id, date(2026, 10, 1), NOW.date())
        session.flush()
        rebuild_totals(session, workspace.id)
        workspace_id = workspace.id
    with db.session() as session:
        dashboard = build_dashboard(session, workspace_id, NOW, providers=built_in())
    text = str(home_view(dashboard, admin=False))
    section = text.split("*Top models, ")[1].split('"')[0]
    assert ":* $3.01" in section, section
    shown = [line.split("` ")[1].split(" (")[0] for line in section.split("\\n") if "`" in line]
    assert shown == ["$1.01", "$1.00", "$1.00"], section
    assert section.count("(33%)") == 2 and section.count("(34%)") == 1, section
