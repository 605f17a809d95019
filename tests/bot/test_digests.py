"""Digests: every figure against hand-worked numbers, on SQLite and PostgreSQL.

The store holds a small, known history (amounts in dollars):

- “Production”: grok-4 $10 every day from 1 Feb to 19 Mar 2026, $40 on Fri 20 Mar;
  on 20 Mar also grok-code-fast-1 $8 (new that day), grok-2-image $3, grok-embed $1.
- “Research”: grok-3-mini $2 a day 13–18 Mar, $6 on 19 Mar, $5 on 20 Mar; on 20 Mar
  also grok-imagine $2 and grok-vision $0.50. Its key was revoked (status error).
- “Staging”: no spend, failing (a timeout, no message).
- Production also knew grok-vision since January, and saw grok-5 first on 21 Mar.
- Another workspace spends on the same days and must never show up.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from slack_sdk import WebClient
from sqlalchemy import event, select

from bot import formatting
from bot.digests import (
    Digest,
    DigestRequest,
    build_digest,
    build_digests,
    digest_period,
    quiet_skip,
    same_point_last_month,
)
from bot.figures import Comparison, Gap
from bot.insights import build_insights
from bot.render import digest_text
from bot.slack.messages import digest_message
from storage.models import (
    BillingState,
    Budget,
    Connection,
    DailyCost,
    FetchedSpan,
    ModelSeen,
    Workspace,
)
from storage.repo import rebuild_totals
from tests.bot.slack.conftest import fallback_table, native_table
from tests.fakes.connections import add_connection, spend
from tests.fakes.providers import built_in
from tests.fakes.slack_api import SlackStandIn

D = Decimal
DAY = date(2026, 3, 20)  # the Friday the daily digest summarises
SENT = date(2026, 3, 21)  # sent on Saturday morning (UTC date of the occurrence)


def days(start: date, end: date):
    while start <= end:
        yield start
        start += timedelta(days=1)


def fetched(session, connection: Connection, first: date, last: date) -> None:
    """Days a sync fetched (with or without spend); a day outside is "not fetched"."""
    session.add(
        FetchedSpan(
            connection_id=connection.id,
            workspace_id=connection.workspace_id,
            first_day=first,
            last_day=last,
        )
    )


def seen(session, connection: Connection, model: str, first_day: date) -> None:
    session.add(ModelSeen(connection_id=connection.id, model=model, first_day=first_day))


@pytest.fixture
def store(db):
    """The history above; returns the ids tests need."""
    with db.transaction() as session:
        workspace = Workspace(name="acme")
        elsewhere = Workspace(name="elsewhere")
        session.add_all([workspace, elsewhere])
        session.flush()
        production = add_connection(session, workspace.id, "Production")
        research = add_connection(
            session,
            workspace.id,
            "Research",
            status="error",
            status_reason="invalid_key",
            status_message="The management key was revoked.",
        )
        staging = add_connection(
            session, workspace.id, "Staging", status="failing", status_reason="timeout"
        )
        other = add_connection(session, elsewhere.id, "Theirs")

        for day in days(date(2026, 2, 1), date(2026, 3, 19)):
            spend(session, production, day, "grok-4", "10")
        for model, usd in [("grok-4", "40"), ("grok-code-fast-1", "8"), ("grok-2-image", "3")]:
            spend(session, production, DAY, model, usd)
        spend(session, production, DAY, "grok-embed", "1")
        for day in days(date(2026, 3, 13), date(2026, 3, 18)):
            spend(session, research, day, "grok-3-mini", "2")
        spend(session, research, date(2026, 3, 19), "grok-3-mini", "6")
        for model, usd in [("grok-3-mini", "5"), ("grok-imagine", "2"), ("grok-vision", "0.5")]:
            spend(session, research, DAY, model, usd)
        for day in days(date(2026, 2, 1), date(2026, 3, 31)):
            spend(session, other, day, "grok-4", "1000")

        seen(session, production, "grok-4", date(2026, 2, 1))
        seen(session, production, "grok-code-fast-1", DAY)
        seen(session, production, "grok-vision", date(2026, 1, 5))  # known before Research saw it
        seen(session, production, "grok-5", date(2026, 3, 21))  # after the period
        seen(session, research, "grok-3-mini", date(2026, 3, 13))
        seen(session, research, "grok-vision", DAY)
        seen(session, other, "grok-secret", DAY)

        session.add_all(
            [
                Budget(workspace_id=workspace.id, amount_usd=D(500)),
                Budget(workspace_id=workspace.id, connection_id=production.id, amount_usd=D(100)),
                Budget(workspace_id=elsewhere.id, amount_usd=D(7)),
            ]
        )
        now = datetime(2026, 3, 21, 6, tzinfo=UTC)
        session.add_all(
            [
                BillingState(
                    connection_id=production.id,
                    as_of=now,
                    prepaid_credit_usd=D(200),
                    spending_limit_usd=D(1000),
                ),
                BillingState(connection_id=research.id, as_of=now, prepaid_credit_usd=D(50)),
            ]
        )
        session.flush()
        for connection in (production, research, staging, other):  # synced daily, all along
            fetched(session, connection, date(2026, 1, 1), date(2026, 4, 30))
        rebuild_totals(session, workspace.id)
        rebuild_totals(session, elsewhere.id)
        return {
            "workspace": workspace.id,
            "production": production.id,
            "research": research.id,
        }


NOW = datetime(2026, 4, 2, 9, tzinfo=UTC)  # when the tests build digests: every day settled


def digest_of(db, store, every: str = "day", sent: date = SENT, **kwargs) -> Digest:
    with db.session() as session:
        return build_digest(
            session, store["workspace"], every, sent, providers=built_in(), now=NOW, **kwargs
        )


# -- periods


def test_periods_are_finished_utc_days() -> None:
    assert digest_period("day", SENT) == (DAY, DAY)
    assert digest_period("week", date(2026, 3, 23)) == (date(2026, 3, 16), date(2026, 3, 22))
    assert digest_period("month", date(2026, 4, 1)) == (date(2026, 3, 1), date(2026, 3, 31))
    # Sent later in a month, a monthly digest still covers the last full month.
    assert digest_period("month", date(2026, 4, 15)) == (date(2026, 3, 1), date(2026, 3, 31))
    assert digest_period("month", date(2027, 1, 1)) == (date(2026, 12, 1), date(2026, 12, 31))
    with pytest.raises(ValueError):
        digest_period("hour", SENT)


def test_the_same_point_last_month_is_clipped_to_its_length() -> None:
    assert same_point_last_month(date(2026, 3, 31)) == date(2026, 2, 28)
    assert same_point_last_month(date(2028, 3, 30)) == date(2028, 2, 29)
    assert same_point_last_month(date(2026, 1, 15)) == date(2025, 12, 15)


# -- the daily digest, figure by figure


def test_a_daily_digest_summarises_yesterday(db, store) -> None:
    d = digest_of(db, store)
    assert (d.every, d.period_start, d.period_end) == ("day", DAY, DAY)
    assert d.title == "Daily xAI spend · Fri 20 Mar 2026"
    # 40 + 8 + 3 + 1 (Production) + 5 + 2 + 0.50 (Research)
    assert d.total_usd == D("59.5")
    assert d.previous_usd == D(16)  # 19 Mar: grok-4 $10 + grok-3-mini $6
    # 13–18 Mar: $12 a day; 19 Mar: $16
    assert d.average_usd == D(88) / 7
    # 1–19 Mar: grok-4 190 + grok-3-mini 18; plus 20 Mar
    assert d.month_to_date_usd == D("267.5")
    assert d.month_to_date_last_month_usd == D(200)  # 1–20 Feb at $10
    # the last 7 finished days, 14–20 Mar: grok-4 100, grok-3-mini 21, the rest of 20 Mar 14.5
    assert d.forecast_usd == D("267.5") + D("135.5") / 7 * 11  # 11 days left in March
    assert d.connection_count == 3 and d.connection_label is None and not d.empty


def test_the_top_five_models_have_shares_and_sparklines_and_the_rest_is_other(db, store) -> None:
    d = digest_of(db, store)
    assert [(line.model, line.cost_usd) for line in d.top] == [
        ("grok-4", D(40)),
        ("grok-code-fast-1", D(8)),
        ("grok-3-mini", D(5)),
        ("grok-2-image", D(3)),
        ("grok-imagine", D(2)),
    ]
    assert d.other_usd == D("1.5")  # grok-embed $1 + grok-vision $0.50
    assert d.top[0].share == D(40) / D("59.5")
    assert sum(line.cost_usd for line in d.top) + d.other_usd == d.total_usd
    assert all(len(line.spark) == 7 for line in d.top)
    assert d.top[0].spark == "▃▃▃▃▃▃█"  # $10 for six days, then $40
    # grok-3-mini over 14–20 Mar: 2, 2, 2, 2, 2, 6, 5
    assert d.top[2].spark == formatting.sparkline([D(2)] * 5 + [D(6), D(5)])
    assert d.top[1].spark == "▁▁▁▁▁▁█"  # nothing until the day it appeared


def test_new_models_are_those_first_seen_by_any_included_connection_in_the_period(
    db, store
) -> None:
    # grok-vision is new to Research but Production knew it in January;
    # grok-5 appeared after the period; grok-secret belongs to another workspace.
    assert digest_of(db, store).new_models == ("grok-code-fast-1",)


def test_budget_prepaid_credit_and_spending_limit(db, store) -> None:
    d = digest_of(db, store)
    assert d.budget_usd == D(500)  # the workspace budget, not Production's own
    assert d.budget_share == D("267.5") / D(500)
    assert d.prepaid == (("Production", D(200)), ("Research", D(50)))  # each team's, not summed
    assert d.spending_limit_text == (  # only Production's is known
        "xAI spending limit: $1,000.00 a month on invoiced spend, $1,000.00 headroom"
    )


def test_failing_connections_each_get_a_line(db, store) -> None:
    assert digest_of(db, store).failing == (
        "“Research” failed to sync: The management key was revoked.",
        "“Staging” failed to sync: timeout",
    )


def test_at_a_month_end_last_month_is_clipped_and_the_forecast_is_the_total(db, store) -> None:
    d = digest_of(db, store, sent=date(2026, 4, 1))  # summarises Tue 31 Mar
    assert d.period_end == date(2026, 3, 31) and d.total_usd == 0
    assert d.previous_usd == 0 and d.average_usd == 0  # nothing spent 24–30 Mar
    assert d.month_to_date_usd == D("267.5")
    assert d.month_to_date_last_month_usd == D(280)  # the whole of February, through the 28th
    assert d.days_left == 0 and d.forecast_usd == d.month_to_date_usd
    assert d.top == () and d.other_usd == 0


# -- weekly and monthly


def test_a_weekly_digest_compares_with_the_week_before(db, store) -> None:
    d = digest_of(db, store, "week", date(2026, 3, 23))  # a Monday
    assert (d.period_start, d.period_end) == (date(2026, 3, 16), date(2026, 3, 22))
    assert d.title == "Weekly xAI spend · 16 Mar–22 Mar 2026"
    # 16–20 Mar: grok-4 40 + 40, grok-3-mini 6 + 6 + 5, the rest of 20 Mar 14.5
    assert d.total_usd == D("111.5")
    assert d.previous_usd == D(76)  # 9–15 Mar: grok-4 70, grok-3-mini 6
    assert d.average_usd is None
    assert d.month_to_date_usd == D("267.5")
    assert d.month_to_date_last_month_usd == D(220)  # 1–22 Feb
    assert d.forecast_usd == D("267.5") + D("111.5") / 7 * 9
    assert d.top[0].model == "grok-4" and d.top[0].cost_usd == D(80)
    assert d.top[0].spark == formatting.sparkline([D(10)] * 4 + [D(40), D(0), D(0)])
    assert d.new_models == ("grok-5", "grok-code-fast-1")  # grok-5 first seen on 21 Mar


def test_a_monthly_digest_covers_the_last_full_month(db, store) -> None:
    d = digest_of(db, store, "month", date(2026, 4, 1))
    assert (d.period_start, d.period_end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert d.title == "Monthly xAI spend · March 2026"
    assert d.total_usd == D("267.5")
    assert d.previous_usd == D(280)  # February
    assert d.average_usd is None
    assert d.month_to_date_usd == D("267.5")  # the month itself: no separate line
    assert d.month_to_date is None and d.month_vs_last is None
    assert d.forecast_usd == D("267.5")
    assert [line.model for line in d.top][:2] == ["grok-4", "grok-3-mini"]
    assert d.top[0].cost_usd == D(230)  # 19 x $10 + $40
    assert d.new_models == ("grok-3-mini", "grok-5", "grok-code-fast-1")


# -- one connection


def test_a_digest_for_one_connection_counts_only_it(db, store) -> None:
    d = digest_of(db, store, connection_id=store["research"])
    assert d.total_usd == D("7.5")  # grok-3-mini 5, grok-imagine 2, grok-vision 0.50
    assert d.previous_usd == D(6)
    assert d.average_usd == D(18) / 7  # 13–18 Mar at $2, 19 Mar $6
    assert d.month_to_date_usd == D(18) + D("7.5")
    assert d.month_to_date_last_month_usd == 0
    assert [line.model for line in d.top] == ["grok-3-mini", "grok-imagine", "grok-vision"]
    assert d.other_usd == 0
    assert d.new_models == ("grok-vision",)  # new to Research, whatever Production knew
    assert d.budget_usd is None and d.budget_share is None  # no budget for Research alone
    assert (d.prepaid, d.spending_limit_text) == ((("Research", D(50)),), None)
    assert d.failing == ("“Research” failed to sync: The management key was revoked.",)
    assert (d.connection_count, d.connection_label) == (1, "Research")


def test_a_connections_own_budget_applies_to_its_digest(db, store) -> None:
    d = digest_of(db, store, connection_id=store["production"])
    assert d.month_to_date_usd == D(242)  # 19 x $10 + 40 + 8 + 3 + 1
    assert d.budget_usd == D(100) and d.budget_share == D("2.42")
    assert d.failing == ()


def test_a_connection_of_another_workspace_is_not_summarised(db, store) -> None:
    with db.session() as session:
        theirs = session.query(Connection).filter_by(label="Theirs").one().id
    assert digest_of(db, store, connection_id=theirs).empty


def batch(db, store) -> list[DigestRequest]:
    """Digests of every kind, scope and day, as a busy 09:00 would bring them."""
    with db.session() as session:
        theirs = session.query(Connection).filter_by(label="Theirs").one().id
    scopes = [None, store["production"], store["research"], theirs, 999_999]
    sent = [SENT, SENT + timedelta(days=1), date(2026, 4, 1)]
    return [
        DigestRequest(every, day, scope)
        for every in ("day", "week", "month")
        for day in sent
        for scope in scopes
    ]


def test_a_batch_of_digests_is_each_digest_built_alone(db, store) -> None:
    requests = batch(db, store)
    with db.session() as session:
        together = build_digests(
            session, store["workspace"], requests, providers=built_in(), now=NOW
        )
    alone = [
        digest_of(db, store, r.every, r.occurrence, connection_id=r.connection_id) for r in requests
    ]
    assert together == alone
    # and the batch is not all alike: scopes and periods really differ
    assert len({d.total_usd for d in together}) > 5
    assert sum(d.empty for d in together) == 2 * 9  # another workspace's, and a deleted one


def test_a_batch_costs_a_few_aggregate_queries_whatever_its_size(db, store) -> None:
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        digest_of(db, store)  # three connections, seven models, two failing
        one = len(statements)
        statements.clear()
        without_weeks = [r for r in batch(db, store) if r.every != "week"]
        statements.clear()
        with db.session() as session:
            build_digests(session, store["workspace"], without_weeks * 20, providers=built_in())
        many = len(statements)
        weekly = [r for r in batch(db, store) if r.every == "week"]
        sizes = []
        for copies in (1, 20):
            statements.clear()
            with db.session() as session:
                build_digests(session, store["workspace"], weekly * copies, providers=built_in())
            sizes.append(len(statements))
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    # connections, budgets, models seen; the book of figures (daily costs, days fetched,
    # days settling); then per kind of period the costs by model, for the workspace and
    # for all the single connections; and for monthly digests each month's bills (at
    # most three statements a month: February and March here), whatever the scopes
    assert one <= 7 and many <= 6 + 2 * 2 + 2 * 3
    # weekly digests add their insights once per scope and week, not once per digest
    assert sizes[0] == sizes[1]


# -- quiet subscriptions


@pytest.mark.parametrize(
    ("total", "previous", "min_usd", "change_pct", "skipped"),
    [
        ("5", "5", None, None, False),  # not quiet: always posts
        ("59.5", "16", "50", None, False),  # passed the amount
        ("50", "16", "50", None, True),  # reached is not passed
        ("12", "16", "50", None, True),
        ("11.01", "10", None, 10, False),  # up 10.1%
        ("11", "10", None, 10, True),  # up exactly 10%: not more than
        ("5", "10", None, 10, False),  # down 50%
        ("1", "0", None, 10, False),  # spend after none is a change
        ("0", "0", None, 10, True),
        ("12", "12", "100", 10, True),  # both set, neither met
        ("12", "6", "100", 10, False),  # both set, the change is enough
        ("120", "119", "100", 10, False),  # both set, the amount is enough
    ],
)
def test_quiet_skip(db, store, total, previous, min_usd, change_pct, skipped) -> None:
    d = digest_of(db, store)
    d = dataclasses.replace(
        d,
        total=dataclasses.replace(d.total, amount=D(total)),
        previous=Comparison(D(total), D(previous)),
    )
    assert quiet_skip(d, D(min_usd) if min_usd else None, change_pct) is skipped


def test_a_quiet_digest_whose_figures_are_not_all_known_still_posts(db, store) -> None:
    d = digest_of(db, store)
    quiet = dataclasses.replace(d, previous=Comparison(d.total_usd, d.total_usd))
    assert quiet_skip(quiet, D(100), 10)  # $59.50, unchanged: quiet
    unknown = dataclasses.replace(quiet, previous=Comparison(None, None, declined="no comparison"))
    assert not quiet_skip(unknown, None, 10)  # no comparison to say it is quiet
    gap = Gap(store["production"], "Production", DAY, DAY)
    partly = dataclasses.replace(
        quiet,
        total=dataclasses.replace(
            d.total, coverage=dataclasses.replace(d.total.coverage, gaps=(gap,))
        ),
    )
    assert not quiet_skip(partly, D(100), 10)  # a day not fetched is not a quiet day


# -- rendering


def all_text(message: dict) -> str:
    parts = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(parts)


def test_the_slack_message_shows_every_figure(db, store) -> None:
    message = digest_message(digest_of(db, store))
    assert message["text"].startswith("Daily xAI spend · Fri 20 Mar 2026: $59.50")
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "Daily xAI spend · Fri 20 Mar 2026: $59.50"
    text = all_text(message)
    # (59.5 - 16) / 16 = +271.9%; (59.5 - 88/7) / (88/7) = +373.3%
    assert "vs the day before: +271.9%  ·  vs 7-day average: +373.3%" in text
    assert (
        "Month to date (1 Mar–20 Mar 2026): $267.50 vs $200.00 at the same point last month "
        "(+33.8%)" in text
    )
    assert "Month-end forecast for March 2026, at the pace of the last 7 days: $480.43" in text
    rows = native_table(message)
    assert rows[0] == ["Model", "Cost", "%", "7 days"]
    assert ["grok-4", "$40.00", "67%", "▃▃▃▃▃▃█"] in rows
    labels = [row[0] for row in rows]
    assert labels.index("grok-imagine") < labels.index("other") < labels.index("Total")
    assert rows[labels.index("other")][1] == "$1.50"
    assert rows[-1][:2] == ["Total", "$59.50"]  # the lines add up to it
    assert ":new: New: grok-code-fast-1" in text
    assert "53% of the $500.00 budget" in text
    assert "Prepaid credit left: $200.00 “Production”, $50.00 “Research”" in text
    # The limit is on invoiced spend; with prepaid credit left nothing is invoiced yet.
    assert "xAI spending limit: $1,000.00 a month on invoiced spend, $1,000.00 headroom" in text
    assert "used)" not in text
    warnings = [t for t in text.splitlines() if t.startswith(":warning:")]
    assert warnings == [
        ":warning: “Research” failed to sync: The management key was revoked. "
        "Run `/xai-usage status` to see why and how to fix it.",
        ":warning: “Staging” failed to sync: timeout. "
        "Run `/xai-usage status` to see why and how to fix it.",
    ]
    assert "All 3 connections" in text


def test_weekly_and_monthly_messages_name_their_comparison(db, store) -> None:
    weekly = all_text(digest_message(digest_of(db, store, "week", date(2026, 3, 23))))
    assert "vs the week before: +46.7%" in weekly and "7-day average" not in weekly
    monthly = all_text(digest_message(digest_of(db, store, "month", date(2026, 4, 1))))
    assert "vs the month before: -4.5%" in monthly
    assert "forecast" not in monthly.lower()  # the month is over


@pytest.fixture
def crowded(db):
    """40 models on one day, 30 of them new, and a dozen connections failing at length."""
    with db.transaction() as session:
        workspace = Workspace(name="crowded")
        session.add(workspace)
        session.flush()
        main = add_connection(session, workspace.id, "Main")
        session.flush()
        fetched(session, main, date(2026, 1, 1), DAY)
        for n in range(40):
            model = f"grok-model-{n:02d}-with-a-rather-long-name-for-tables"
            spend(session, main, DAY, model, str(100 - n))
            seen(session, main, model, DAY if n >= 10 else date(2026, 1, 1))
        for n in range(12):
            broken = add_connection(
                session,
                workspace.id,
                f"Broken <&> {n}",
                status="error",
                status_reason="invalid_key",
                status_message="The key was revoked. " * 200,
            )
            fetched(session, broken, date(2026, 1, 1), DAY)
        session.flush()
        rebuild_totals(session, workspace.id)
        return workspace.id


def test_forty_models_and_many_failures_stay_within_slack_limits(db, crowded) -> None:
    with db.session() as session:
        d = build_digest(session, crowded, "day", SENT)
    assert len(d.top) == 5 and len(d.new_models) == 30 and len(d.failing) == 12
    assert d.other_usd == sum(D(100 - n) for n in range(5, 40))
    message = digest_message(d)
    assert message["text"].strip()
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        for element in block.get("elements", []):
            assert len(element["text"]) <= 3000
    text = all_text(message)
    assert "and 20 more" in text  # new models beyond the first ten
    assert "and 4 more connections failed to sync" in text
    assert "“Broken &lt;&amp;&gt; 0” failed to sync" in text  # escaped for mrkdwn
    # Slack itself (the stand-in's Block Kit checks) takes it as it is.
    with SlackStandIn() as slack:
        slack.add_token("xoxb-digest-test")
        slack.add_channel("CCOSTS", "costs")
        WebClient(token="xoxb-digest-test", base_url=slack.api_url).chat_postMessage(
            channel="CCOSTS", **message
        )
        assert slack.violations == []


def test_an_empty_workspace_gets_a_helpful_message(db) -> None:
    with db.transaction() as session:
        workspace = Workspace(name="new")
        session.add(workspace)
        session.flush()
        workspace_id = workspace.id
    with db.session() as session:
        d = build_digest(session, workspace_id, "day", SENT)
    assert d.empty and d.total_usd == 0 and d.top == ()
    assert not quiet_skip(d, None, None)
    message = digest_message(d)
    assert message["text"] == "Daily AI spend · Fri 20 Mar 2026: no provider is connected yet."
    assert "`/xai-usage connect`" in all_text(message)
    in_a_terminal = digest_text(d)
    assert "`xai-usage connect`" in in_a_terminal
    for shown in (all_text(message), in_a_terminal):  # no figure where nothing is known
        for noise in ("$0.00", "as of never", "not fetched"):
            assert noise not in shown, noise


# -- reading on a phone


def table_lines(message: dict) -> list[str]:
    return fallback_table(message)


def test_tables_fit_a_phone_40_characters_wide_without_wrapping(db, crowded) -> None:
    with db.session() as session:
        d = build_digest(session, crowded, "day", SENT)
    lines = table_lines(digest_message(d))
    assert len(lines) == 9  # the heading, five models, other, a rule, the total
    assert max(len(line) for line in lines) <= 40
    rows = [line for line in lines[1:-2]]
    assert all(line.endswith("%") or line[-1] in formatting.SPARKS for line in rows)
    assert "…" in lines[1]  # the name gives way (cut in the middle), not the figures
    assert "$100.00" in lines[1] and "  3%" in lines[1]
    assert lines[-1].startswith("Total")


def test_a_monthly_digest_shows_the_months_trend_and_says_which_way_it_runs(db, store) -> None:
    d = digest_of(db, store, "month", date(2026, 4, 1))
    # grok-4 by week of March: 1–7, 8–14, 15–21 ($10 x 6 + $40), 22–28, 29–31
    assert d.top[0].spark == formatting.sparkline([D(70), D(70), D(100), D(0), D(0)])
    assert len(d.month_trend) == 31  # each day of March, the 1st first
    assert d.month_trend == formatting.sparkline(
        [D(10)] * 12 + [D(12)] * 6 + [D(16), D("59.5")] + [D(0)] * 11
    )
    text = all_text(digest_message(d))
    assert "last 7 days" not in text.lower()
    assert native_table(digest_message(d))[0][-1] == "Weeks"
    assert f"(1 Mar → 31 Mar): {d.month_trend}" in text
    assert "Trends run oldest → newest, over the weeks of 1 Mar–31 Mar 2026." in text
    daily = all_text(digest_message(digest_of(db, store)))
    assert "Trends run oldest → newest, over the days of 14 Mar–20 Mar 2026." in daily


def test_one_model_past_the_top_five_is_named_not_other(db, store) -> None:
    with db.transaction() as session:
        session.execute(DailyCost.__table__.delete().where(DailyCost.model == "grok-vision"))
        rebuild_totals(session, store["workspace"])
    d = digest_of(db, store)
    assert [line.model for line in d.top][-1] == "grok-embed" and d.other_usd == 0
    assert "other" not in "\n".join(table_lines(digest_message(d)))


def test_two_connections_read_both(db, store) -> None:
    d = digest_of(db, store)
    assert "All 3 connections" in all_text(digest_message(d))
    assert formatting.connections_count(2) == "Both connections"
    assert formatting.connections_count(1) == "1 connection"


# -- days no sync fetched


def forget_fetched(db, connection_id: int, first: date, last: date) -> None:
    """As if no sync had fetched ``first``..``last`` for this connection."""
    with db.transaction() as session:
        session.execute(
            FetchedSpan.__table__.delete().where(FetchedSpan.connection_id == connection_id)
        )
        connection = session.get(Connection, connection_id)
        fetched(session, connection, date(2026, 1, 1), first - timedelta(days=1))
        fetched(session, connection, last + timedelta(days=1), date(2026, 4, 30))


def test_a_day_nobody_fetched_says_not_fetched_never_zero(db, store) -> None:
    for key in ("production", "research"):
        forget_fetched(db, store[key], DAY, DAY)
    with db.transaction() as session:
        staging = session.scalar(select(Connection).where(Connection.label == "Staging"))
    forget_fetched(db, staging.id, DAY, DAY)
    with db.transaction() as session:
        session.execute(DailyCost.__table__.delete().where(DailyCost.day == DAY))
        rebuild_totals(session, store["workspace"])
    d = digest_of(db, store)
    assert d.nothing_fetched and d.unfetched[0] == "“Production”: Fri 20 Mar 2026"
    message = digest_message(d)
    text = all_text(message)
    assert message["blocks"][0]["text"]["text"] == "Daily xAI spend · Fri 20 Mar 2026: not fetched"
    assert "$0.00" not in text.split("Month to date")[0]  # no total of $0.00 ...
    assert "vs the day before" not in text and "No spend" not in text  # ... and no deltas
    assert "Not fetched, so not counted as $0.00: “Production”: Fri 20 Mar 2026" in text


def test_a_week_partly_fetched_shows_fetched_days_only(db, store) -> None:
    forget_fetched(db, store["research"], date(2026, 3, 19), date(2026, 3, 22))
    d = digest_of(db, store, "week", date(2026, 3, 23))
    assert not d.nothing_fetched and d.unfetched == ("“Research”: 19 Mar–22 Mar 2026",)
    message = digest_message(d)
    assert message["blocks"][0]["text"]["text"].endswith("(fetched days only)")
    text = all_text(message)
    # Like for like: the week before is compared over Production and Staging only.
    assert "vs the week before: +31.4% (compared without “Research” (days not fetched))" in text
    assert "Not fetched, so not counted as $0.00: “Research”: 19 Mar–22 Mar 2026" in text


def test_a_weekly_digest_carries_the_weeks_insights_and_a_daily_one_does_not(db, store) -> None:
    weekly = digest_of(db, store, "week", date(2026, 3, 23))
    with db.session() as session:  # the same as `insights` run the day after the week
        assert weekly.insights == build_insights(
            session, store["workspace"], date(2026, 3, 23), providers=built_in()
        )
    assert weekly.insights.movers is not None
    top = weekly.insights.movers.models[0]
    text = all_text(digest_message(weekly))
    assert "Top movers" in text and top.label in text
    daily = digest_of(db, store, "day")
    assert daily.insights is None and "Top movers" not in all_text(digest_message(daily))


def test_a_weekly_digest_without_the_providers_is_refused_not_built_without_hints(
    db, store
) -> None:
    with db.session() as session:
        build_digest(session, store["workspace"], "day", SENT)  # a day's needs none
        with pytest.raises(ValueError, match="weekly digests carry insights: pass the providers"):
            build_digest(session, store["workspace"], "week", SENT)
