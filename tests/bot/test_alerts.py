"""Alert rules: which alerts are due, each under a key that names its situation.

Each test runs on SQLite and PostgreSQL. Costs are written straight into the
store with known amounts, and the rollup rebuilt, as a sync would leave it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from slack_sdk import WebClient
from sqlalchemy import delete, event, select, update

from bot.alerts import (
    Action,
    Alert,
    alert_from_json,
    alert_json,
    budget_alerts,
    recovery_alerts,
    spike_alerts,
    spiked,
    sync_failure_alerts,
)
from bot.formatting import mrkdwn
from bot.grammar import parse, tokenize
from bot.render import alert_text
from bot.slack.messages import alert_message
from storage.db import Database
from storage.models import BillingState, Budget, Connection, DailyCost, FetchedSpan, Workspace
from storage.repo import rebuild_totals
from tests.fakes.connections import add_connection
from tests.fakes.slack_api import SlackStandIn

SPIKE_DAY = date(2026, 11, 20)  # a Friday
NEXT_DAY = SPIKE_DAY + timedelta(days=1)
T1 = datetime(2026, 11, 20, 6, 0, 3, tzinfo=UTC)
T2 = datetime(2026, 11, 23, 6, 0, 1, tzinfo=UTC)


def days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


class Store:
    """A workspace with connections and costs, written as a sync leaves them."""

    def __init__(self, db: Database, name: str = "acme") -> None:
        self.db = db
        with db.transaction() as session:
            workspace = Workspace(name=name)
            session.add(workspace)
            session.flush()
            self.workspace_id = workspace.id

    def connection(self, label: str = "Production — xAI", **fields) -> int:
        with self.db.transaction() as session:
            return add_connection(session, self.workspace_id, label, **fields).id

    def spend(self, connection_id: int, costs: dict[date, object], model: str = "grok-4") -> None:
        """Set a model's cost on some days (replacing what was there)."""
        with self.db.transaction() as session:
            session.execute(
                delete(DailyCost).where(
                    DailyCost.connection_id == connection_id,
                    DailyCost.model == model,
                    DailyCost.day.in_(list(costs)),
                )
            )
            session.add_all(
                DailyCost(
                    connection_id=connection_id,
                    workspace_id=self.workspace_id,
                    day=day,
                    model=model,
                    cost=Decimal(str(cost)),
                )
                for day, cost in costs.items()
            )
            session.flush()
            rebuild_totals(session, self.workspace_id)
        self.fetched(connection_id, *costs)

    def fetched(self, connection_id: int, *fetched: date) -> None:
        """Record days as fetched by a sync (a day with a cost row was fetched)."""
        with self.db.transaction() as session:
            known = set(
                session.scalars(
                    select(FetchedSpan.first_day).where(FetchedSpan.connection_id == connection_id)
                )
            )
            session.add_all(
                FetchedSpan(
                    connection_id=connection_id,
                    workspace_id=self.workspace_id,
                    first_day=day,
                    last_day=day,
                )
                for day in sorted(set(fetched) - known)
            )

    def daily(self, connection_id: int, start: date, end: date, cost, model="grok-4") -> None:
        self.spend(connection_id, dict.fromkeys(days(start, end), cost), model)

    def budget(self, amount, connection_id: int | None = None, thresholds="50,80,100") -> int:
        with self.db.transaction() as session:
            budget = Budget(
                workspace_id=self.workspace_id,
                connection_id=connection_id,
                amount_usd=Decimal(amount),
                thresholds=thresholds,
            )
            session.add(budget)
            session.flush()
            return budget.id

    def spending_limit(self, connection_id: int, amount, prepaid_left=None, invoiced=None) -> None:
        with self.db.transaction() as session:
            session.add(
                BillingState(
                    connection_id=connection_id,
                    as_of=T1,
                    spending_limit_usd=amount,
                    prepaid_credit_usd=prepaid_left,
                    invoiced_usd=invoiced,
                )
            )

    def set(self, connection_id: int, **fields) -> None:
        with self.db.transaction() as session:
            session.execute(update(Connection).where(Connection.id == connection_id).values(fields))

    def budgets(self, today: date, kind: str | None = None) -> list[Alert]:
        with self.db.session() as session:
            alerts = budget_alerts(session, self.workspace_id, today)
        return [a for a in alerts if kind is None or a.kind == kind]

    def spikes(self, today: date) -> list[Alert]:
        with self.db.session() as session:
            return spike_alerts(session, self.workspace_id, today)

    def failures(self) -> list[Alert]:
        with self.db.session() as session:
            return sync_failure_alerts(session, self.workspace_id)

    def recoveries(self, delivered: list[str]) -> list[Alert]:
        with self.db.session() as session:
            return recovery_alerts(session, self.workspace_id, delivered)


def keys(alerts: list[Alert]) -> list[str]:
    return [a.key for a in alerts]


@contextmanager
def counting_queries(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


# Budgets


def test_each_threshold_alerts_once_a_month(db) -> None:
    store = Store(db)
    prod = store.connection()
    budget = store.budget(1000, thresholds="50,80,100")
    store.daily(prod, date(2026, 11, 1), date(2026, 11, 9), 10)
    assert store.budgets(date(2026, 11, 9)) == []  # $90 of $1,000

    store.spend(prod, {date(2026, 11, 10): 500})  # $590: past 50%
    assert keys(store.budgets(date(2026, 11, 10), "budget")) == [f"budget:{budget}:2026-11:50"]

    store.spend(prod, {date(2026, 11, 11): 250})  # $840: 80%, one alert
    crossed = store.budgets(date(2026, 11, 11), "budget")
    assert keys(crossed) == [f"budget:{budget}:2026-11:80"]
    assert "$840.00 of the $1,000.00 monthly budget" in crossed[0].text
    assert "(84%" in crossed[0].text
    again = store.budgets(date(2026, 11, 11), "budget")  # a later run: the same key
    assert keys(again) == keys(crossed)

    store.spend(prod, {date(2026, 11, 12): 200})  # $1,040: the next threshold is new
    over = store.budgets(date(2026, 11, 12), "budget")
    assert keys(over) == [f"budget:{budget}:2026-11:100"]
    assert over[0].title.startswith("Over budget: 104%")

    store.spend(prod, {date(2026, 12, 1): 600})  # a new month starts from zero
    assert keys(store.budgets(date(2026, 12, 1), "budget")) == [f"budget:{budget}:2026-12:50"]


def test_thresholds_crossed_at_once_make_one_alert_for_the_highest(db) -> None:
    store = Store(db)
    prod = store.connection()
    budget = store.budget(400, thresholds="50,80,100")
    store.daily(prod, date(2026, 11, 1), date(2026, 11, 20), 30)  # $600 when the budget is set
    assert keys(store.budgets(date(2026, 11, 20), "budget")) == [f"budget:{budget}:2026-11:100"]


def test_a_connection_budget_counts_only_its_connection(db) -> None:
    store = Store(db)
    prod, staging = store.connection("Production"), store.connection("Staging")
    mine = store.budget(100, connection_id=prod, thresholds="50")
    everyone = store.budget(100, thresholds="50")
    store.spend(prod, {date(2026, 11, 1): 30})
    store.spend(staging, {date(2026, 11, 1): 30})

    alerts = store.budgets(date(2026, 11, 1))

    assert keys(alerts) == [f"budget:{everyone}:2026-11:50"]
    store.spend(prod, {date(2026, 11, 2): 25})
    alerts = store.budgets(date(2026, 11, 2))
    assert keys(alerts) == [f"budget:{mine}:2026-11:50", f"budget:{everyone}:2026-11:50"]
    assert alerts[0].connection_id == prod and "“Production”" in alerts[0].text
    assert "--connection Production" in alerts[0].text  # where to look next
    assert alerts[1].connection_id is None and alerts[1].text.startswith("All connections")


def test_the_forecast_alerts_once_a_month_from_the_third(db) -> None:
    store = Store(db)
    prod = store.connection()
    budget = store.budget(1000)
    store.daily(prod, date(2026, 10, 20), date(2026, 11, 3), 40)  # $40 a day: ~$1,200 a month

    assert store.budgets(date(2026, 11, 2), "forecast") == []  # too early to tell
    forecast = store.budgets(date(2026, 11, 3), "forecast")

    assert keys(forecast) == [f"budget:{budget}:2026-11:forecast"]
    # $120 so far + $40 a day (27 Oct–2 Nov) x the 27 days after the 3rd
    assert forecast[0].facts["forecast_usd"] == "1200.00"
    assert "about $1,200.00 in November 2026, $200.00 over" in forecast[0].text
    assert keys(store.budgets(date(2026, 11, 4), "forecast")) == keys(forecast)


def test_no_forecast_while_the_pace_fits_the_budget(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.budget(1000)
    store.daily(prod, date(2026, 10, 20), date(2026, 11, 3), 30)  # $90 + $30 x 27 = $900

    assert store.budgets(date(2026, 11, 3)) == []


def test_a_budget_alert_gives_the_headroom_on_invoiced_spend_not_a_share_of_all(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.spending_limit(prod, Decimal(1000), prepaid_left=Decimal(88))
    store.budget(500, connection_id=prod, thresholds="80")
    store.spend(prod, {date(2026, 11, 1): 212, date(2026, 11, 2): 200})

    (alert,) = store.budgets(date(2026, 11, 2))

    # Prepaid credit is used first: while some is left, nothing is invoiced.
    assert "xAI spending limit: $1,000.00 a month on invoiced spend, $1,000.00 headroom." in (
        alert.text
    )
    assert "41%" not in alert.text


def test_a_limit_of_zero_is_prepaid_only(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.spending_limit(prod, Decimal(0))
    store.budget(500, connection_id=prod, thresholds="80")
    store.spend(prod, {date(2026, 11, 1): 450})

    (alert,) = store.budgets(date(2026, 11, 1))

    assert "xAI spending limit: prepaid only" in alert.text
    assert "$0.00" not in alert.text and "(–)" not in alert.text


def test_without_prepaid_figures_the_limit_is_named_without_a_share(db) -> None:
    store = Store(db)
    prod, staging = store.connection("Production"), store.connection("Staging")
    store.spending_limit(prod, Decimal(1000))
    store.budget(500, thresholds="80")
    store.spend(prod, {date(2026, 11, 1): 300})
    store.spend(staging, {date(2026, 11, 1): 150})

    (alert,) = store.budgets(date(2026, 11, 1))

    assert "$450.00 of the $500.00" in alert.text
    assert "xAI spending limit: $1,000.00 a month on invoiced spend, after prepaid credit." in (
        alert.text
    )
    assert "30%" not in alert.text


def test_once_prepaid_credit_is_used_up_the_headroom_is_the_limit_less_invoiced_spend(db) -> None:
    store = Store(db)
    prod = store.connection("Production")
    store.spending_limit(prod, Decimal(1000), prepaid_left=Decimal(0), invoiced=Decimal(620))
    store.budget(500, thresholds="80")
    store.spend(prod, {date(2026, 11, 1): 820})  # $200 of it was prepaid

    (alert,) = store.budgets(date(2026, 11, 1))

    assert "xAI spending limit: $1,000.00 a month on invoiced spend, $380.00 headroom." in (
        alert.text
    )


def test_the_forecast_is_the_digests_and_a_connections_never_exceeds_the_workspaces(
    db,
) -> None:
    from bot.digests import build_digest

    store = Store(db)
    prod, staging = store.connection("Production"), store.connection("Staging")
    store.daily(prod, date(2026, 10, 25), date(2026, 11, 9), 30)
    store.daily(staging, date(2026, 10, 25), date(2026, 11, 9), 10)
    store.spend(prod, {date(2026, 11, 10): 400})  # today, partial: no forecast counts it
    store.budget(1100)
    store.budget(800, connection_id=prod)

    alerts = {a.connection_id: a for a in store.budgets(date(2026, 11, 10), "forecast")}
    with db.session() as session:
        digest = build_digest(session, store.workspace_id, "day", date(2026, 11, 10))
        prod_digest = build_digest(
            session, store.workspace_id, "day", date(2026, 11, 10), connection_id=prod
        )
    # $40 a day: $360 through the 9th + $40 x 21 = $1,200; Production $30: $900
    assert digest.forecast_usd == Decimal(1200) == Decimal(alerts[None].facts["forecast_usd"])
    assert prod_digest.forecast_usd == Decimal(900) == Decimal(alerts[prod].facts["forecast_usd"])
    assert "At the pace of the last 7 days" in alerts[None].text


def test_the_forecast_alerts_even_when_the_month_is_already_over_budget(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.budget(400)
    store.daily(prod, date(2026, 10, 20), date(2026, 11, 20), 90)

    kinds = [a.kind for a in store.budgets(date(2026, 11, 20))]

    assert kinds == ["budget", "forecast"]  # over budget, and heading for $2,700


def test_budget_alerts_without_budgets_ask_once(db) -> None:
    store = Store(db)
    store.connection()
    with counting_queries(db) as statements:
        assert store.budgets(date(2026, 11, 10)) == []
    assert len(statements) == 1


# Spikes


def steady(store: Store, connection_id: int, cost, days_before: int = 40) -> None:
    store.daily(
        connection_id, SPIKE_DAY - timedelta(days=days_before), SPIKE_DAY - timedelta(1), cost
    )


def test_a_day_far_above_its_baseline_is_a_spike(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 20)
    store.spend(prod, {SPIKE_DAY: 60})

    (alert,) = store.spikes(NEXT_DAY)

    assert alert.key == f"spike:{prod}:2026-11-20:r1"  # its first alert
    assert alert.kind == "spike" and alert.connection_id == prod
    assert "“Production — xAI” spent $60.00 on Fri 20 Nov 2026" in alert.text
    assert "3.0× its 7-day average of $20.00" in alert.text
    assert "Most of the increase came from grok-4 (+$40.00" in alert.text
    assert alert.facts["day"] == "2026-11-20"
    assert alert.facts["cost_usd"] == "60.00"
    assert alert.facts["baseline_usd"] == "20.00"


def test_a_rise_under_one_and_a_half_times_the_week_is_no_spike(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 100)
    store.spend(prod, {SPIKE_DAY: 140})  # above 3 sigma (0) and by $40, but only 1.4x

    assert store.spikes(NEXT_DAY) == []


def test_a_day_within_three_sigma_of_the_month_is_no_spike(db) -> None:
    store = Store(db)
    prod = store.connection()
    # Alternating $40 and $0: the 28-day mean is $20 with sigma $20, so up to $80 is normal.
    store.spend(prod, {SPIKE_DAY - timedelta(n): 40 if n % 2 else 0 for n in range(1, 41)})
    store.spend(prod, {SPIKE_DAY: 70})  # 3x the week's $22.86 and $47 more, but under $80

    assert store.spikes(NEXT_DAY) == []
    store.spend(prod, {SPIKE_DAY: 90})
    assert len(store.spikes(NEXT_DAY)) == 1


def test_a_rise_under_ten_dollars_is_no_spike(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 4)
    store.spend(prod, {SPIKE_DAY: 12})  # 3x, but only $8 more

    assert store.spikes(NEXT_DAY) == []
    store.spend(prod, {SPIKE_DAY: 15})
    assert len(store.spikes(NEXT_DAY)) == 1


def test_under_seven_days_of_history_is_no_spike(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 20, days_before=6)
    store.spend(prod, {SPIKE_DAY: 60})

    assert store.spikes(NEXT_DAY) == []
    store.spend(prod, {SPIKE_DAY - timedelta(days=7): 20})  # a seventh day of history
    assert keys(store.spikes(NEXT_DAY)) == [f"spike:{prod}:2026-11-20:r1"]


def test_history_counts_from_the_first_cost_row_ever(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.spend(prod, {date(2026, 9, 1): 5})  # long ago, then quiet for weeks
    store.fetched(prod, *days(date(2026, 9, 1), SPIKE_DAY))  # quiet: fetched, no spend
    steady(store, prod, 5, days_before=6)  # then six days in the window
    store.spend(prod, {SPIKE_DAY: 60})

    assert keys(store.spikes(NEXT_DAY)) == [f"spike:{prod}:2026-11-20:r1"]  # 60 vs 30 / 7


def test_days_never_fetched_are_not_zero_spend_history(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.spend(prod, {date(2026, 9, 1): 5})  # long ago; the weeks since were never fetched
    steady(store, prod, 20, days_before=5)  # five fetched days in the window
    store.spend(prod, {SPIKE_DAY: 60})
    assert store.spikes(NEXT_DAY) == []  # 5 days known, not 28 days of $0 around them

    store.fetched(prod, *days(SPIKE_DAY - timedelta(days=28), SPIKE_DAY))  # now they are
    assert keys(store.spikes(NEXT_DAY)) == [f"spike:{prod}:2026-11-20:r1"]  # 60 vs 100 / 7


def test_only_the_last_three_finished_days_are_checked(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 20)
    store.spend(prod, {SPIKE_DAY: 60})

    assert store.spikes(SPIKE_DAY) == []  # today is not finished
    for later in (1, 2, 3):  # the same spike, seen on each of the next three days
        assert keys(store.spikes(SPIKE_DAY + timedelta(later))) == [f"spike:{prod}:2026-11-20:r1"]
    assert store.spikes(SPIKE_DAY + timedelta(4)) == []


def test_a_spike_alerts_again_only_when_it_doubles(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 20)
    store.spend(prod, {SPIKE_DAY: 60})
    (first,) = store.spikes(NEXT_DAY)
    assert first.key == f"spike:{prod}:2026-11-20:r1"
    alerted = {(prod, SPIKE_DAY): [Decimal(60)]}  # what the ledger says it alerted at

    def again() -> list[Alert]:
        with db.session() as session:
            return spike_alerts(session, store.workspace_id, NEXT_DAY, alerted)

    store.spend(prod, {SPIKE_DAY: 75})  # the figure settles higher: +25% is the same spike
    assert again() == []
    store.spend(prod, {SPIKE_DAY: 90})  # 4.5x its baseline, but only 1.5x what was said
    assert again() == []
    store.spend(prod, {SPIKE_DAY: 120})  # twice what was alerted: say it again
    (second,) = again()
    assert second.key == f"spike:{prod}:2026-11-20:r2"
    assert "again: it has doubled since the last alert" in second.text
    alerted[(prod, SPIKE_DAY)].append(Decimal(120))
    store.spend(prod, {SPIKE_DAY: 200})
    assert again() == []  # the next repeat needs $240


def test_a_spike_alerted_before_amounts_were_kept_repeats_only_from_a_doubling(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 20)
    store.spend(prod, {SPIKE_DAY: 60})
    with db.session() as session:
        legacy = {(prod, SPIKE_DAY): [None]}  # a key from before: its amount unknown
        assert spike_alerts(session, store.workspace_id, NEXT_DAY, legacy) == []


def test_the_ledger_keys_say_what_each_spike_alerted_at() -> None:
    body = json.dumps({"facts": {"cost_usd": "60.00"}})
    assert spiked(
        {
            "spike:3:2026-11-20:r1": body,
            "spike:3:2026-11-20:2": None,  # from before amounts were kept
            "spike:x:2026-11-20:r1": body,  # not a connection: ignored
            "budget:1:2026-11:50": body,
        }
    ) == {(3, SPIKE_DAY): [Decimal("60.00"), None]}


def test_a_spike_names_the_model_behind_the_increase(db) -> None:
    store = Store(db)
    prod = store.connection()
    steady(store, prod, 20, days_before=30)
    store.spend(prod, {SPIKE_DAY: 25})
    store.spend(prod, {SPIKE_DAY: 40}, model="grok-code-fast")

    (alert,) = store.spikes(NEXT_DAY)

    assert "Most of the increase came from grok-code-fast (+$40.00" in alert.text
    assert alert.facts["top_model"] == "grok-code-fast"


def test_spikes_are_per_connection_in_one_query(db) -> None:
    store = Store(db)
    quiet = [store.connection(f"Team {n}") for n in range(5)]
    for connection_id in quiet:
        steady(store, connection_id, 20)
        store.spend(connection_id, {SPIKE_DAY: 21})
    with counting_queries(db) as statements:
        assert store.spikes(NEXT_DAY) == []
    assert len(statements) == 1

    loud = store.connection("Loud")
    steady(store, loud, 20)
    store.spend(loud, {SPIKE_DAY: 60})
    with counting_queries(db) as statements:
        assert [a.connection_id for a in store.spikes(NEXT_DAY)] == [loud]
    # the history, the labels, the days still settling, the models behind it
    assert len(statements) <= 4


# Sync failures and recovery


def test_a_failing_connection_alerts_once_per_incident(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.set(prod, status="failing", status_reason="timeout")  # transient: retried, no alert
    assert store.failures() == []

    store.set(
        prod,
        status="error",
        status_reason="invalid_key",
        status_message="xAI refused the management key",
        error_since=T1,
    )
    (alert,) = store.failures()
    assert alert.key == f"syncfail:{prod}:2026-11-20T06:00:03+00:00"
    assert alert.kind == "sync_failure" and alert.connection_id == prod
    assert "“Production — xAI”" in alert.title
    assert "xAI refused the management key." in alert.text
    assert "(invalid_key)" not in alert.text  # the code is for machines: facts["reason"]
    assert alert.facts["reason"] == "invalid_key"
    assert 'Give it a new key with `/xai-usage update-key "Production — xAI"`' in alert.text
    assert "/xai-usage connect" not in alert.text  # a second connection would count twice
    assert alert.facts["error_since"] == T1.isoformat()

    store.set(prod, status_message="xAI still refuses the key")  # the incident goes on
    assert keys(store.failures()) == [alert.key]

    store.set(prod, error_since=T2)  # a new incident
    assert keys(store.failures()) == [f"syncfail:{prod}:2026-11-23T06:00:01+00:00"]


def test_a_delivered_failure_recovers_once_the_connection_works(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.set(prod, status="error", status_reason="invalid_key", error_since=T1)
    (failure,) = store.failures()

    assert store.recoveries([failure.key]) == []  # still failing

    store.set(prod, status="ok", status_reason=None, error_since=None, last_success_at=T2)
    (recovered,) = store.recoveries([failure.key])

    assert recovered.key == f"recovered:{prod}:2026-11-20T06:00:03+00:00"
    assert recovered.kind == "recovered"
    assert "working again" in recovered.text
    assert store.failures() == []


def test_no_recovery_while_a_new_incident_is_on(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.set(prod, status="error", status_reason="invalid_key", error_since=T2)
    old = f"syncfail:{prod}:{T1.isoformat()}"

    assert store.recoveries([old]) == []


def test_only_the_latest_delivered_failure_of_a_connection_recovers(db) -> None:
    store = Store(db)
    prod = store.connection()
    other = Store(db, "elsewhere")
    theirs = other.connection()
    store.set(prod, last_success_at=T2)
    delivered = [
        f"syncfail:{prod}:{T1.isoformat()}",
        f"syncfail:{prod}:{T2.isoformat()}",
        f"syncfail:{theirs}:{T1.isoformat()}",  # another workspace's
        "syncfail:not-a-connection",
    ]

    assert keys(store.recoveries(delivered)) == [f"recovered:{prod}:{T2.isoformat()}"]


# Messages


def every_kind(db) -> list[Alert]:
    store = Store(db)
    prod = store.connection()
    store.budget(100, thresholds="50")
    store.daily(prod, date(2026, 10, 1), SPIKE_DAY - timedelta(1), 2)
    store.spend(prod, {SPIKE_DAY: 60})
    store.set(prod, status="error", status_reason="invalid_key", error_since=T1)
    alerts = store.budgets(NEXT_DAY) + store.spikes(NEXT_DAY) + store.failures()
    store.set(prod, status="ok", last_success_at=T2)
    alerts += store.recoveries([f"syncfail:{prod}:{T1.isoformat()}"])
    return alerts


def test_every_kind_of_alert_renders_a_slack_message_with_its_emoji(db) -> None:
    alerts = every_kind(db)
    assert {a.kind for a in alerts} == {"budget", "forecast", "spike", "sync_failure", "recovered"}
    alerts.append(alert_from_json(json.dumps({**alert_json(alerts[-1]), "kind": "still_failing"})))
    headers = set()
    for alert in alerts:
        message = alert_message(alert)
        header, section = message["blocks"][0], message["blocks"][1]
        assert header["type"] == "header"
        assert alert.title in header["text"]["text"]
        # Shown as written: escaped, its markup kept from pairing by zero-width spaces.
        assert [f["text"] for f in section["fields"]] == [
            f"*{mrkdwn(f.label)}*\n{mrkdwn(f.value)}" for f in alert.fields
        ]
        assert message["text"].startswith(alert.title)  # the notification's fallback
        headers.add(header["text"]["text"].split()[0])
    assert len(headers) == len(alerts)  # an emoji per kind


def test_an_alert_message_stays_within_slacks_limits() -> None:
    label = "R&D <prod> " * 20
    alert = Alert(
        key="syncfail:1:2026-11-20T06:00:03+00:00",
        kind="sync_failure",
        workspace_id=1,
        connection_id=1,
        title=f"“{label}” stopped syncing",
        text="&" * 5000,
    )

    message = alert_message(alert)

    header, section = message["blocks"][0]["text"]["text"], message["blocks"][1]["text"]["text"]
    assert len(header) <= 150 and header.endswith("…")
    assert len(section) <= 3000 and section.endswith("&amp;…")  # never half an entity
    assert len(message["text"]) <= 3000
    assert "<prod>" not in message["text"] and "&lt;prod&gt;" in message["text"]
    assert len(json.dumps(message["blocks"])) < 10_000


def test_alert_json_is_the_webhook_body(db) -> None:
    for alert in every_kind(db):
        body = json.loads(json.dumps(alert_json(alert)))
        assert body == {
            "kind": alert.kind,
            "key": alert.key,
            "workspace_id": alert.workspace_id,
            "connection_id": alert.connection_id,
            "title": alert.title,
            "text": alert.text,
            "facts": alert.facts,
            "fields": [{"label": f.label, "value": f.value} for f in alert.fields],
            "fix": alert.fix,
            "incident": alert.incident,
            "actions": [{"label": a.label, "command": a.command} for a in alert.actions],
            **({"covers": list(alert.covers)} if alert.covers else {}),
        }
        amounts = [v for k, v in body["facts"].items() if k.endswith("_usd")]
        assert all(Decimal(v) >= 0 and "E" not in v for v in amounts if v)  # no 1E+3


# Actions: a button is a command


def test_alerts_carry_what_to_do_as_commands(db) -> None:
    by_kind = {alert.kind: alert for alert in every_kind(db)}
    assert [(a.label, a.command) for a in by_kind["sync_failure"].actions] == [
        ("Update key", 'update-key "Production — xAI"'),
        ("Sync now", 'sync --connection "Production — xAI"'),
    ]
    assert [(a.label, a.command) for a in by_kind["spike"].actions] == [
        (
            "See the day by model",
            f'range {SPIKE_DAY} {SPIKE_DAY} --by model --connection "Production — xAI"',
        )
    ]
    assert by_kind["recovered"].actions == ()
    for alert in by_kind.values():  # each runs as typed: the grammar takes it
        for action in alert.actions:
            words = tokenize(action.command)
            assert parse(words, surface="slack").name == words[0]


def test_slack_shows_an_alerts_actions_as_buttons_carrying_their_commands(db) -> None:
    failure = next(a for a in every_kind(db) if a.kind == "sync_failure")

    message = alert_message(failure)

    [actions] = [block for block in message["blocks"] if block["type"] == "actions"]
    commands = [e for e in actions["elements"] if e["action_id"].startswith("xu:")]
    assert [(b["action_id"], b["value"], b["text"]["text"]) for b in commands] == [
        ("xu:update-key", 'update-key "Production — xAI"', "Update key"),
        ("xu:sync-now", 'sync --connection "Production — xAI"', "Sync now"),
    ]
    with SlackStandIn() as slack:  # Slack's own limits (the stand-in's Block Kit checks)
        slack.add_token("xoxb-alert-test")
        slack.add_channel("CALERTS", "alerts")
        WebClient(token="xoxb-alert-test", base_url=slack.api_url).chat_postMessage(
            channel="CALERTS", **message
        )
        assert slack.violations == []


def test_a_command_too_long_for_a_button_is_left_out_not_cut() -> None:
    alert = Alert(
        key="syncfail:1:2026-11-20T06:00:03+00:00",
        kind="sync_failure",
        workspace_id=1,
        connection_id=1,
        title="“x” stopped syncing",
        text="It failed.",
        actions=(Action("Update key", "update-key " + "x" * 2000), Action("Sync now", "sync")),
    )
    [actions] = [b for b in alert_message(alert)["blocks"] if b["type"] == "actions"]
    assert [b["value"] for b in actions["elements"] if b["action_id"].startswith("xu:")] == ["sync"]


def test_the_webhook_has_the_actions_as_data_and_the_terminal_leaves_them_out(db) -> None:
    failure = next(a for a in every_kind(db) if a.kind == "sync_failure")

    body = alert_json(failure)
    text = alert_text(failure)

    assert body["actions"] == [
        {"label": "Update key", "command": 'update-key "Production — xAI"'},
        {"label": "Sync now", "command": 'sync --connection "Production — xAI"'},
    ]
    assert alert_from_json(json.dumps(body)) == failure  # owed alerts keep their actions
    assert text.splitlines()[0] == "“Production — xAI” stopped syncing"
    assert failure.fix in text and "“working again” once it is fixed." in text
    assert all(f"{f.value}" in text for f in failure.fields)
    assert "Sync now" not in text and "xu:" not in text and "mrkdwn" not in text


def test_a_budget_alert_title_says_what_was_spent_not_the_threshold_crossed(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.budget(500, thresholds="50,80,100")
    store.spend(prod, {date(2026, 12, 1): 385})  # 77%: passed 50%, not 80%
    (alert,) = store.budgets(date(2026, 12, 1), "budget")
    assert alert.title == "77% of the $500.00 budget used in December 2026 (passed 50%)"
    store.spend(prod, {date(2026, 12, 2): 575})  # $960: 192%
    (alert,) = store.budgets(date(2026, 12, 2), "budget")
    assert alert.title == "Over budget: 192% of $500.00 in December 2026"


def test_a_budget_alert_over_a_month_not_fetched_in_full_says_at_least(db) -> None:
    store = Store(db)
    prod, late = store.connection("Production"), store.connection("Late")
    store.budget(500, thresholds="50")
    store.spend(prod, {date(2026, 12, 1): 300, date(2026, 12, 2): 10})
    store.spend(late, {date(2026, 12, 2): 5})  # fetched only from the 2nd
    (alert,) = store.budgets(date(2026, 12, 2), "budget")
    assert alert.title.startswith("At least 63% of the $500.00 budget used")
    assert "$315.00 (fetched days only)" in alert.text
    assert alert.facts["month_to_date_complete"] == "false"


def test_the_month_ends_no_lower_than_it_has_already_spent(db) -> None:
    store = Store(db)
    prod = store.connection()
    store.budget(1000)
    store.daily(prod, date(2026, 11, 20), date(2026, 12, 9), 10)
    store.spend(prod, {date(2026, 12, 10): 2000})  # today, partial, already over
    (forecast,) = store.budgets(date(2026, 12, 10), "forecast")
    # $90 + $10 x 22 days = $310 at the week's pace; $2,090 is already spent
    assert forecast.facts["forecast_usd"] == "2090.00"
    assert "about $2,090.00 in December 2026" in forecast.text


# Alerts people can act on: a short title, fields, the fix in one line


def revoked_message() -> str:
    """What the xAI plugin stores for a revoked key: its advice, then xAI's own words."""
    from providers.types import Reason
    from providers.xai.provider import _refusal

    said = " (xAI said: injected fault)"
    return _refusal(Reason.INVALID_KEY, "team-1", said, guessed=True).message


def test_a_sync_failure_reads_as_fields_with_the_providers_words_quoted_once(db) -> None:
    store = Store(db)
    prod = store.connection()
    message = revoked_message()
    assert len(message) > 400  # the paragraph people used to get, with our fix after it
    store.set(
        prod, status="error", status_reason="invalid_key", status_message=message, error_since=T1
    )
    (alert,) = store.failures()

    assert alert.title == "“Production — xAI” stopped syncing"
    fields = {f.label: f.value for f in alert.fields}
    assert fields["Connection"] == "“Production — xAI”"
    assert fields["Failing since"] == "20 Nov 06:00 UTC"
    assert fields["What happened"] == (
        "xAI rejected the management key: it was revoked or deleted, or it is not a key xAI knows."
    )
    assert fields["xAI said"] == "“injected fault”"
    assert alert.fix.count("\n") == 0 and alert.fix.startswith("Give it a new key with")
    shown = [alert.title, *(f"{f.label} {f.value}" for f in alert.fields), alert.fix]
    assert sum(line.count("injected fault") for line in shown) == 1  # quoted once
    assert not any("invalid_key" in line for line in shown)
    assert len(" ".join(shown)) < 500
    # The webhook and a notification's text say it once too, without the code.
    assert alert.text.count("injected fault") == 1 and "(invalid_key)" not in alert.text
    assert alert.facts["message"] == message  # the whole message stays, for machines


def test_every_surface_gets_the_same_fields(db) -> None:
    for alert in every_kind(db):
        assert alert.fields, alert.kind
        body = alert_json(alert)
        assert body["fields"] == [{"label": f.label, "value": f.value} for f in alert.fields]
        assert body["fix"] == alert.fix and body["incident"] == alert.incident
        terminal = alert_text(alert)
        message = alert_message(alert)
        [section] = [b for b in message["blocks"] if b["type"] == "section" and "fields" in b]
        slack_fields = [f["text"].replace("\u200b", "") for f in section["fields"]]
        for f, shown in zip(alert.fields, slack_fields, strict=True):
            assert f.value in terminal and f.label in terminal
            assert shown == f"*{f.label}*\n{f.value}".replace("&", "&amp;")


def test_a_budget_threshold_and_its_forecast_due_in_one_run_are_one_post(db) -> None:
    from bot.alerts import one_post_per_budget

    store = Store(db)
    prod = store.connection()
    budget = store.budget(400, thresholds="50,80,100")
    store.daily(prod, date(2026, 10, 20), date(2026, 11, 20), 90)  # over budget, heading far over
    alerts = store.budgets(date(2026, 11, 20))
    assert [a.kind for a in alerts] == ["budget", "forecast"]  # two situations, two keys...

    (post,) = one_post_per_budget(alerts)  # ...one post

    assert post.key == f"budget:{budget}:2026-11:100"
    assert post.covers == (f"budget:{budget}:2026-11:forecast",)
    fields = {f.label: f.value for f in post.fields}
    assert fields["Month-end forecast"].startswith("$2,700.00, $2,300.00 over")
    assert "That is $2,300.00 over the budget." in post.text
    assert post.facts["forecast_over_budget"] == "true"
    assert alert_from_json(json.dumps(alert_json(post))).covers == post.covers  # kept if owed
    # A forecast alone (its threshold went out on an earlier run) is its own post.
    (forecast,) = one_post_per_budget([alerts[1]])
    assert forecast.kind == "forecast" and forecast.covers == ()


def test_incidents_follow_ups_and_rules_are_named_by_the_key() -> None:
    from bot.alerts import incident_of, rule_of

    since = "2026-11-20T06:00:03+00:00"
    assert incident_of(f"syncfail:3:{since}") == f"syncfail:3:{since}"
    assert incident_of(f"stillfailing:3:{since}:2") == f"syncfail:3:{since}"
    assert incident_of(f"recovered:3:{since}") == f"syncfail:3:{since}"
    assert incident_of("spike:3:2026-11-20:r1") == "spike:3:2026-11-20:r1"
    assert incident_of("spike:3:2026-11-20:r2") == "spike:3:2026-11-20:r1"
    assert incident_of("budget:7:2026-11:80") == "budget:7:2026-11:80"
    assert [rule_of(k) for k in (f"recovered:3:{since}", "spike:3:2026-11-20:r2")] == [
        "syncfail:3",
        "spike:3",
    ]
    assert rule_of("budget:7:2026-11:forecast") == "budget:7"
    assert rule_of("digest:7:2026-11-20") is None and rule_of("spike:x:1:r1") is None
    assert rule_of("spike:١:2026-11-20:r1") is None  # ASCII digits only


def test_a_failure_that_goes_on_is_recalled_once_a_day_after_its_first_post(db) -> None:
    from bot.alerts import reminder_alerts

    store = Store(db)
    prod = store.connection()
    store.set(prod, status="error", status_reason="invalid_key", error_since=T1)
    incident = f"syncfail:{prod}:{T1.isoformat()}"
    posted = {incident: T1 + timedelta(minutes=1)}

    def reminders(at: datetime, acked=()) -> list[str]:
        with db.session() as session:
            return keys(reminder_alerts(session, store.workspace_id, at, posted, acked))

    assert reminders(T1 + timedelta(hours=23)) == []  # not a day yet
    assert reminders(T1 + timedelta(days=1, minutes=1)) == [
        f"stillfailing:{prod}:{T1.isoformat()}:1"
    ]
    assert reminders(T1 + timedelta(days=3, hours=5)) == [f"stillfailing:{prod}:{T1.isoformat()}:3"]
    assert reminders(T1 + timedelta(days=3), acked=[incident]) == []  # acknowledged: quiet
    with db.session() as session:  # never posted (nowhere to go yet): nothing to recall
        assert reminder_alerts(session, store.workspace_id, T2, {}) == []
    store.set(prod, status="ok", error_since=None)
    assert reminders(T1 + timedelta(days=3)) == []  # fixed
