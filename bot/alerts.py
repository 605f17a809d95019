"""Alert rules: given the store and a moment, which alerts are due.

Plain functions over the store, no Slack and no ledger: each :class:`Alert`
carries a stable ``key`` naming the situation, and the caller delivers a key
at most once (``bot.ledger``). So the same situation must always give the
same key, and a new situation a new one.

Budgets (``budget:<budget>:<YYYY-MM>:<threshold>``)
    Month to date is :mod:`bot.figures`' (the 1st through today, today so far
    included; of fetched days only when some were never fetched, and then the
    share of the budget is "at least"). Each threshold reached (month to date
    >= threshold% of the budget) has its own key, so crossing 50% and 80% at
    once gives both, later runs the same ones, and a new month new ones. The
    title says what was spent: "Over budget: 192% of $500.00", "77% of the
    $500.00 budget used (passed 50%)".

Forecast (``budget:<budget>:<YYYY-MM>:forecast``)
    From the 3rd of the month, :meth:`bot.figures.Book.forecast` (the figure
    ``status`` and the Home tab show, never below what was spent). Once a
    month, on the first run whose forecast is over the budget.

Spikes (``spike:<connection>:<day>:r<round>``)
    For each connection and each finished UTC day ``d`` of the last three
    (``today - 3 <= d < today``), over fetched days only (a day never fetched
    is unknown, not $0):

    * ``cost(d) > 1.5 x mean7``, mean7 the mean of the fetched days of the 7 before ``d``;
    * ``cost(d) > mean28 + 3 x sd28``, the mean and population standard
      deviation of the fetched days of the 28 before ``d``;
    * ``cost(d) - mean7 >= $10``;
    * at least 7 days of history: ``d - first day with a cost row >= 7 days``.

    A day alerts once (round 1); it alerts again (round 2, 3...) only once its
    spend reaches twice what it last alerted at, read from the ledger: a
    figure that settles a little higher is the same spike.

Sync failures (``syncfail:<connection>:<error_since>``)
    A connection in ``error`` (it needs a person): one alert per incident,
    keyed by when the incident began.

Reminders (``stillfailing:<connection>:<error_since>:<n>``)
    A sync failure whose first post went out is recalled once a day (``n`` days
    after that post) while it lasts, until someone acknowledges it.

Recovery (``recovered:<connection>:<error_since>``)
    For the latest delivered failure of a connection that is ``ok`` again.

Incidents, follow-ups and rules
    An *incident* is one situation people are told about (:func:`incident_of`):
    a sync failure (its first post, its daily reminders, its "working again"),
    a spike of one connection on one day (its first alert, and a reply each time
    it doubles), a budget's alert (one post: the thresholds and the forecast of
    one run together). A *follow-up* is any post of an incident after its first:
    it replies in the first post's thread. A *rule* (:func:`rule_of`) is what
    people snooze or mute: one budget, one connection's spikes, one connection's
    sync failures.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import profiles
from bot.costs import cost_query
from bot.figures import (
    PACE,
    PACE_DAYS,
    PROVISIONAL,
    Book,
    Figure,
    Forecast,
    TeamLimit,
    as_of_words,
    budget_share_words,
    figure_words,
    forecast_words,
    period_words,
    read_provisional,
    spending_limit_text,
)
from bot.formatting import (
    clip,
    clock,
    day_label,
    decimal_text,
    money,
    month_label,
    times,
)
from bot.grammar import words
from bot.reports import fetched_days
from storage.models import BillingState, Budget, Connection, ConnectionStatus, DailyCost
from storage.reader import SessionReader

ZERO = Decimal(0)
CENT = Decimal("0.01")

FORECAST_FROM_DAY = 3  # one or two days of data would cry wolf

SPIKE_DAYS = 3
SPIKE_RATIO = Decimal("1.5")
SPIKE_WEEK = 7
SPIKE_MONTH = 28
SPIKE_SIGMAS = 3
SPIKE_MIN_IMPACT = Decimal(10)
SPIKE_MIN_HISTORY = 7

MESSAGE_DETAIL_LIMIT = 300  # of a provider's sentence, or its words, quoted in an alert


REPEATS = {
    "budget": "Each threshold alerts once a month.",
    "forecast": "The forecast alerts once a month.",
    "spike": "This day alerts again only if its spend doubles.",
    "sync_failure": "A reminder follows each day until someone acknowledges it, and “working "
    "again” once it is fixed.",
    "still_failing": "One reminder a day until someone acknowledges it.",
    "recovered": "",
}
REMIND_EVERY = timedelta(days=1)
"""How often a sync failure that goes on is recalled in its thread."""
PROVIDER_SAID = re.compile(r"\s*\((?P<who>[^()]{1,40}?) said: (?P<words>.*)\)\s*$", re.DOTALL)
"""The provider's own words, as every provider plugin ends a message: "(xAI said: …)"."""


@dataclass(frozen=True)
class Action:
    """Something to do about an alert: a button in Slack, data in the webhook.

    ``command`` is the words as typed after ``/xai-usage`` (a button is a
    command), so whoever clicks runs exactly what they could have typed.
    """

    label: str
    command: str


@dataclass(frozen=True)
class Field:
    """One thing an alert says, as people read it: ``Spent`` → ``$385.00 (77%)``.

    Every surface shows the same fields (Slack's section fields, the terminal's
    lines, the webhook's ``fields``); the value is worded here, never in a template.
    """

    label: str
    value: str


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str  # budget | forecast | spike | sync_failure | still_failing | recovered
    workspace_id: int
    connection_id: int | None
    title: str
    text: str  # plain text, with the fix where there is one: the webhook's and a notification's
    facts: dict[str, str] = field(default_factory=dict, hash=False)
    """For the JSON webhook: amounts as decimal strings, dates ISO 8601."""
    actions: tuple[Action, ...] = ()
    correction: str = ""
    """Set when a later sync moved its figure: "Updated 14:05 UTC: was $60.00. …"."""
    fields: tuple[Field, ...] = ()
    """What, how much, since when, which connection: the alert as people read it."""
    fix: str = ""
    """What to do about it, in one line; empty when there is nothing to do."""
    covers: tuple[str, ...] = ()
    """Other alerts' keys this post also says, used up with it (a budget's forecast
    due in the same run as a threshold: one post, see :func:`one_post_per_budget`)."""

    @property
    def note(self) -> str:
        """How often this kind alerts, for a reader wondering if it will again."""
        return REPEATS.get(self.kind, "")

    @property
    def incident(self) -> str:
        """The incident this alert is part of (:func:`incident_of`)."""
        return incident_of(self.key)

    @property
    def rule(self) -> str | None:
        """What snoozing or muting this alert silences (:func:`rule_of`)."""
        return rule_of(self.key)

    @property
    def follow_up(self) -> bool:
        """A later post of its incident: it replies in the thread of the first."""
        return self.incident != self.key

    @property
    def broadcast(self) -> bool:
        """A follow-up the whole channel sees as well as the thread: "working again"."""
        return self.kind == "recovered"

    @property
    def can_silence(self) -> bool:
        """Whether it can be acknowledged, snoozed or muted ("working again" closes
        an incident: there is nothing left to silence)."""
        return self.kind != "recovered" and self.rule is not None


def incident_of(key: str) -> str:
    """The incident an alert's key belongs to: its first post's key.

    A spike's later rounds belong to its first (``spike:<connection>:<day>:r1``); a sync
    failure's reminders and recovery to its ``syncfail:<connection>:<since>``; a budget
    alert is its own incident.
    """
    kind, _, rest = key.partition(":")
    if kind == "spike" and key.count(":") == 3:
        return key.rpartition(":")[0] + ":r1"
    if kind == "stillfailing":
        return "syncfail:" + rest.rpartition(":")[0]
    if kind == "recovered":
        return "syncfail:" + rest
    return key


def rule_of(key: str) -> str | None:
    """The rule an alert (or incident) key is under: ``budget:<id>``, ``spike:<connection>``
    or ``syncfail:<connection>``; None for a key of no rule."""
    kind, _, rest = key.partition(":")
    subject = rest.partition(":")[0]
    if not subject.isascii() or not subject.isdigit():
        return None
    family = {
        "budget": "budget",
        "spike": "spike",
        "syncfail": "syncfail",
        "stillfailing": "syncfail",
        "recovered": "syncfail",
    }.get(kind)
    return f"{family}:{int(subject)}" if family else None


# Budgets and the month-end forecast


def moment_of(at: date | datetime) -> datetime:
    """A run's moment; a bare day is taken at noon UTC (tests and replays name days)."""
    if isinstance(at, datetime):
        return at
    return datetime.combine(at, time(12), tzinfo=UTC)


def budget_alerts(session: Session, workspace_id: int, at: date | datetime) -> list[Alert]:
    """Thresholds reached this month, and a month-end forecast over budget.

    Month to date and the forecast are :mod:`bot.figures`' (today so far
    included; the forecast at the pace of the last 7 finished days, never
    below what was spent): the figures ``status`` and the Home tab show.
    """
    budgets = list(
        session.scalars(
            select(Budget).where(Budget.workspace_id == workspace_id).order_by(Budget.id)
        )
    )
    if not budgets:
        return []
    now = moment_of(at)
    today = now.astimezone(UTC).date()
    rows = list(
        session.execute(
            select(
                Connection.id,
                Connection.label,
                Connection.last_success_at,
                BillingState.spending_limit_usd,
                BillingState.prepaid_credit_usd,
                BillingState.invoiced_usd,
                Connection.provider,
            )
            .outerjoin(BillingState, BillingState.connection_id == Connection.id)
            .where(Connection.workspace_id == workspace_id)
        )
    )
    words = profiles.read(SessionReader(session), (row[-1] for row in rows))
    labels: dict[int, str] = {}
    limits: dict[int, TeamLimit] = {}
    for connection_id, label, _, limit, prepaid_left, invoiced, provider in rows:
        labels[connection_id] = label
        if limit is not None:
            display = words.get(provider).own_name
            limits[connection_id] = TeamLimit(limit, prepaid_left, invoiced, label, display)
    book = Book(
        SessionReader(session),
        workspace_id,
        now,
        min(today.replace(day=1), today - timedelta(days=PACE_DAYS)),
        today,
        connections=[(cid, label, synced) for cid, label, synced, *_ in rows],
    )
    alerts: list[Alert] = []
    for budget in budgets:
        if budget.amount_usd <= 0:
            continue
        scope = budget.connection_id  # None: the whole workspace
        spent = book.month_to_date(scope=scope)
        forecast = book.forecast(scope) if today.day >= FORECAST_FROM_DAY else None
        included = (
            [budget.connection_id]
            if budget.connection_id
            else sorted(labels, key=lambda c: labels[c].lower())
        )
        limit_line = spending_limit_text(limits[c] for c in included if c in limits)
        if limit_line:
            limit_line += "."
        label = labels.get(budget.connection_id) if budget.connection_id else None
        alerts += _budget_alerts_for(budget, workspace_id, spent, forecast, label, limit_line)
    return alerts


def _budget_alerts_for(
    budget: Budget,
    workspace_id: int,
    spent: Figure,
    forecast: Forecast | None,
    label: str | None,
    limit_line: str | None,
) -> list[Alert]:
    who = f"“{label}”" if label else "All connections"
    scope = f" for “{label}”" if label else ""
    today = spent.end
    period = month_label(today)
    used = budget_share_words(spent, budget.amount_usd)
    amount = money(budget.amount_usd)
    by_model = Action("See the month by model", words("month", by="model", connection=label))
    see = f"See where it goes: `/xai-usage {by_model.command}`."
    as_of = figure_as_of(spent)
    facts = {
        "budget_id": str(budget.id),
        "connection": label or "",
        "month": f"{today:%Y-%m}",
        "budget_usd": decimal_text(budget.amount_usd),
        "month_to_date_usd": decimal_text(spent.value),
        "month_to_date_complete": "true" if spent.complete else "false",
        "through": today.isoformat(),
        "as_of": spent.as_of.isoformat() if spent.as_of else "",
    }
    over = forecast.total - budget.amount_usd if forecast is not None else None
    if forecast is not None:
        facts["forecast_usd"] = decimal_text(forecast.total.quantize(CENT))
        facts["forecast_through"] = forecast.through.isoformat()
    extra = [limit_line] if limit_line else []
    spent_words = (
        f"{who} spent {figure_words(spent)} of the {amount} monthly budget in {period} so far "
        f"({used}, {period_words(spent)}, {as_of})."
    )
    # The same facts every budget alert shows, in the order people ask for them.
    spent_field = Field("Spent", f"{figure_words(spent)}, {used} of the budget")
    budget_field = Field("Budget", f"{amount} a month · {who}")
    period_field = Field("Period", period_words(spent))
    forecast_field = (
        Field(
            "Month-end forecast",
            forecast_words(forecast)
            + (f", {money(over)} over" if over is not None and over > 0 else "")
            + f" ({PACE}: {money(forecast.daily_pace)} a day)",
        )
        if forecast is not None
        else None
    )
    tail = [Field("Spending limit", limit_line.removesuffix("."))] if limit_line else []
    tail.append(Field("As of", clock(spent.as_of)))
    alerts = []
    # Several thresholds crossed at once (a budget set mid-month, a big day)
    # make one alert, for the highest: the lower ones are no news by then.
    crossed = [
        threshold
        for threshold in budget.threshold_list
        if spent.value > 0 and spent.value >= budget.amount_usd * threshold / 100
    ]
    for threshold in crossed[-1:]:
        title = (
            f"Over budget: {used} of {amount}{scope} in {period}"
            if threshold >= 100
            else f"{used[:1].upper()}{used[1:]} of the {amount} budget{scope} used in {period} "
            f"(passed {threshold}%)"
        )
        lines = [
            spent_words,
            *(
                [f"{PACE.capitalize()} the month ends near {forecast_words(forecast)}."]
                if forecast is not None
                else []
            ),
            *extra,
            see,
        ]
        alerts.append(
            Alert(
                key=f"budget:{budget.id}:{today:%Y-%m}:{threshold}",
                kind="budget",
                workspace_id=workspace_id,
                connection_id=budget.connection_id,
                title=title,
                text=" ".join(lines),
                facts={**facts, "threshold_pct": str(threshold)},
                actions=(by_model,),
                fields=(
                    spent_field,
                    budget_field,
                    period_field,
                    *([forecast_field] if forecast_field else []),
                    *tail,
                ),
                fix=see,
            )
        )
    # The first run whose forecast is over the budget, as status and the Home tab show it.
    if forecast is not None and over is not None and over > 0:
        lines = [
            f"{PACE.capitalize()} ({money(forecast.daily_pace)} a day, through "
            f"{day_label(forecast.through)}), {who if label else who.lower()} will spend "
            f"about {forecast_words(forecast)} in {period}, {money(over)} over the "
            f"{amount} monthly budget.",
            f"Spent so far: {figure_words(spent)} ({used}, {period_words(spent)}, {as_of}).",
            *extra,
            see,
        ]
        alerts.append(
            Alert(
                key=f"budget:{budget.id}:{today:%Y-%m}:forecast",
                kind="forecast",
                workspace_id=workspace_id,
                connection_id=budget.connection_id,
                title=f"Forecast over the {amount} budget{scope} for {period}",
                text=" ".join(lines),
                facts={
                    **facts,
                    "daily_mean_usd": decimal_text(forecast.daily_pace.quantize(CENT)),
                },
                actions=(by_model,),
                fields=(
                    Field(
                        "Month-end forecast",
                        f"{forecast_words(forecast)}, {money(over)} over",
                    ),
                    Field(
                        "Pace",
                        f"{money(forecast.daily_pace)} a day (the 7 days through "
                        f"{day_label(forecast.through)})",
                    ),
                    Field("Spent so far", f"{figure_words(spent)}, {used} of the budget"),
                    budget_field,
                    period_field,
                    *tail,
                ),
                fix=see,
            )
        )
    return alerts


def one_post_per_budget(alerts: Iterable[Alert]) -> list[Alert]:
    """A budget's threshold and forecast alerts due together, as one post.

    ``alerts`` are those about to go out for the first time. When a budget has
    both, the threshold's alert (which gives the forecast already) goes out
    alone, saying the forecast is over the budget and covering the forecast's
    key, so neither comes again; every other alert is kept as it is.
    """
    alerts = list(alerts)
    forecasts = {
        rule_of(a.key): a for a in alerts if a.kind == "forecast" and rule_of(a.key) is not None
    }
    merged: set[str] = set()
    out = []
    for alert in alerts:
        forecast = forecasts.get(alert.rule) if alert.kind == "budget" else None
        if forecast is None:
            out.append(alert)
            continue
        merged.add(forecast.key)
        over = money(
            Decimal(forecast.facts["forecast_usd"]) - Decimal(forecast.facts["budget_usd"])
        )
        out.append(
            replace(
                alert,
                text=f"{alert.text} That is {over} over the budget.",
                facts={**alert.facts, "forecast_over_budget": "true", **_pace(forecast)},
                covers=(*alert.covers, forecast.key),
            )
        )
    return [a for a in out if a.key not in merged]


def _pace(forecast: Alert) -> dict[str, str]:
    return {k: v for k, v in forecast.facts.items() if k == "daily_mean_usd"}


def figure_as_of(figure: Figure) -> str:
    """``as of 06:02 UTC``: when the data behind an alert's figure was read."""
    return as_of_words(figure.as_of)


# Spikes


@dataclass(frozen=True)
class _Spike:
    day: date
    cost: Decimal
    mean7: Decimal
    upper: Decimal  # mean28 + 3 sd28
    round: int = 1
    """1 for a day's first alert; one more each time its spend doubles again."""


def _spike(costs: dict[date, Decimal], day: date, fetched: set[date]) -> _Spike | None:
    """The rule's cost conditions (the history condition needs the first day).

    Only fetched days are history: a day no sync fetched is unknown, not $0,
    so it neither lowers the baseline nor counts towards the 7 days needed.
    """
    if day not in fetched:
        return None
    cost = costs.get(day, ZERO)
    before = [day - timedelta(days=n) for n in range(1, SPIKE_MONTH + 1)]
    week = [costs.get(d, ZERO) for d in before[:SPIKE_WEEK] if d in fetched]
    month = [costs.get(d, ZERO) for d in before if d in fetched]
    if not week or len(month) < SPIKE_MIN_HISTORY:
        return None
    mean7 = sum(week, ZERO) / len(week)
    mean28 = sum(month, ZERO) / len(month)
    sd28 = (sum(((c - mean28) ** 2 for c in month), ZERO) / len(month)).sqrt()
    upper = mean28 + SPIKE_SIGMAS * sd28
    if cost > SPIKE_RATIO * mean7 and cost > upper and cost - mean7 >= SPIKE_MIN_IMPACT:
        return _Spike(day, cost, mean7, upper)
    return None


def spike_alerts(
    session: Session,
    workspace_id: int,
    at: date | datetime,
    alerted: Mapping[tuple[int, date], Iterable[Decimal]] | None = None,
) -> list[Alert]:
    """Finished days of the last three well above their connection's baseline.

    ``alerted``: what each (connection, day) spike already alerted at (the
    ledger's). A day alerts again only once its spend reaches twice the
    highest of those: a figure that settles a little higher is the same spike.
    """
    now = moment_of(at)
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=n) for n in range(SPIKE_DAYS, 0, -1)]
    start = days[0] - timedelta(days=SPIKE_MONTH)
    history: dict[int, dict[date, Decimal]] = defaultdict(dict)
    query = cost_query(workspace_id, start, days[-1], ["connection_id", "day"])
    for connection_id, day, cost in session.execute(query):
        history[connection_id][day] = cost or ZERO
    # A day with a cost row was fetched; only a connection missing some day needs
    # its fetched spans read, to tell a day of no spend from a day never fetched.
    window = {start + timedelta(days=n) for n in range((days[-1] - start).days + 1)}
    gaps = any(set(costs) != window for costs in history.values())
    fetched = fetched_days(session, workspace_id, start, days[-1]) if gaps else {}
    known = {c: fetched.get(c, set()) | set(costs) for c, costs in history.items()}
    candidates = [
        (connection_id, spike)
        for connection_id in sorted(history)
        for day in days
        if (spike := _spike(history[connection_id], day, known[connection_id])) is not None
    ]
    if not candidates:
        return []

    # History: the first cost row in the window settles it, unless it is too
    # recent; only then ask for the connection's first day ever.
    first_day = {c: min(history[c]) for c, _ in candidates}
    unsure = {c for c, s in candidates if (s.day - first_day[c]).days < SPIKE_MIN_HISTORY}
    if unsure:
        earliest = (
            select(DailyCost.connection_id, func.min(DailyCost.day))
            .where(DailyCost.connection_id.in_(unsure))
            .group_by(DailyCost.connection_id)
        )
        first_day.update({c: day for c, day in session.execute(earliest)})
    spikes = []
    for c, spike in candidates:
        if (spike.day - first_day[c]).days < SPIKE_MIN_HISTORY:
            continue
        before = list((alerted or {}).get((c, spike.day), ()))
        # An alert from before amounts were kept counts as alerted at today's figure.
        amounts = [spike.cost if amount is None else amount for amount in before]
        if amounts and spike.cost < 2 * max(amounts):
            continue  # alerted already; not doubled since
        spikes.append((c, replace(spike, round=len(before) + 1)))
    if not spikes:
        return []

    spiking = {c for c, _ in spikes}
    labels, synced = {}, {}
    for c, label, last_success in session.execute(
        select(Connection.id, Connection.label, Connection.last_success_at).where(
            Connection.id.in_(spiking)
        )
    ):
        labels[c], synced[c] = label, last_success
    settling = read_provisional(SessionReader(session), workspace_id, days[0], days[-1], spiking)
    by_model: dict[int, dict[str, dict[date, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    models = cost_query(
        workspace_id,
        days[0] - timedelta(days=SPIKE_WEEK),
        days[-1],
        ["connection_id", "model", "day"],
        connection_id=spiking,
    )
    for connection_id, model, day, cost in session.execute(models):
        by_model[connection_id][model][day] = cost or ZERO
    return [
        _spike_alert(
            workspace_id,
            c,
            labels.get(c, str(c)),
            s,
            by_model[c],
            as_of=synced.get(c),
            settles_at=settling.get(c, {}).get(s.day),
            now=now,
        )
        for c, s in spikes
    ]


def _top_model(by_model: dict[str, dict[date, Decimal]], day: date) -> tuple[str, Decimal] | None:
    """The model whose cost rose most on ``day`` against its own 7-day mean."""
    increases = []
    for model, costs in by_model.items():
        mean = (
            sum((costs.get(day - timedelta(days=n), ZERO) for n in range(1, SPIKE_WEEK + 1)), ZERO)
            / SPIKE_WEEK
        )
        increases.append((costs.get(day, ZERO) - mean, model))
    if not increases:
        return None
    increase, model = min(increases, key=lambda pair: (-pair[0], pair[1]))
    return (model, increase) if increase > 0 else None


def _spike_alert(
    workspace_id: int,
    connection_id: int,
    label: str,
    spike: _Spike,
    by_model: dict[str, dict[date, Decimal]],
    *,
    as_of: datetime | None,
    settles_at: datetime | None,
    now: datetime,
) -> Alert:
    day = day_label(spike.day)
    if spike.mean7 > 0:
        ratio = spike.cost / spike.mean7
        against = f"{times(ratio)} its 7-day average of {money(spike.mean7)}"
    else:
        ratio = None
        against = "after 7 days with no spend"
    provisional = settles_at is not None
    cost = money(spike.cost) + (f" ({PROVISIONAL})" if provisional else "")
    again = " again: it has doubled since the last alert" if spike.round > 1 else ""
    lines = [
        f"“{label}” spent {cost} on {day} (UTC){again}, {against}, and above its "
        f"28-day normal range (up to {money(spike.upper)}); {as_of_words(as_of)}.",
    ]
    when = ""
    if provisional:
        when = f"until {clock(settles_at)}" if settles_at > now else "until the next sync"
        lines.append(f"The day is still settling: the provider may add to it {when}.")
    top = _top_model(by_model, spike.day)
    if top:
        lines.append(
            f"Most of the increase came from {top[0]} (+{money(top[1])} on its 7-day average)."
        )
    lines.append(
        f"See the day by model: `/xai-usage range {spike.day} {spike.day} --by model "
        f'--connection "{label}"`.'
    )
    fields = [
        Field("Spent", f"{cost} on {day} (UTC)"),
        Field(
            "Usual",
            f"{times(ratio)} the 7-day average of {money(spike.mean7)}"
            if ratio is not None
            else "nothing in the 7 days before",
        ),
        Field("Normal range", f"up to {money(spike.upper)} (28 days)"),
        *([Field("Most of the rise", f"{top[0]} (+{money(top[1])})")] if top else []),
        Field("Connection", f"“{label}”"),
        Field("As of", clock(as_of) + (f"; the day may still grow {when}" if provisional else "")),
    ]
    if spike.round > 1:
        fields.insert(1, Field("Doubled", "since the last alert about this day"))
    facts = {
        "connection": label,
        "day": spike.day.isoformat(),
        "cost_usd": decimal_text(spike.cost),
        "provisional": "true" if provisional else "false",
        "as_of": as_of.isoformat() if as_of else "",
        "baseline_usd": decimal_text(spike.mean7.quantize(CENT)),
        "upper_usd": decimal_text(spike.upper.quantize(CENT)),
        "ratio": decimal_text(ratio.quantize(CENT)) if ratio is not None else "",
        "round": str(spike.round),
        "top_model": top[0] if top else "",
        "top_model_increase_usd": decimal_text(top[1].quantize(CENT)) if top else "",
    }
    return Alert(
        key=spike_key(connection_id, spike.day, spike.round),
        kind="spike",
        workspace_id=workspace_id,
        connection_id=connection_id,
        title=f"Spend spike{' doubled' if spike.round > 1 else ''}: “{label}” on {day}",
        text=" ".join(lines),
        facts=facts,
        fields=tuple(fields),
        fix=(
            f"See the day by model: `/xai-usage range {spike.day} {spike.day} --by model "
            f'--connection "{label}"`.'
        ),
        actions=(
            Action(
                "See the day by model",
                words("range", str(spike.day), str(spike.day), by="model", connection=label),
            ),
        ),
    )


def spike_key(connection_id: int, day: date, round: int) -> str:
    """``spike:<connection>:<day>:r<round>``: a day's first alert is round 1."""
    return f"spike:{connection_id}:{day.isoformat()}:r{round}"


def spiked(payloads: Mapping[str, str | None]) -> dict[tuple[int, date], list[Decimal | None]]:
    """What each (connection, day) spike alerted at, from the ledger's spike keys and the
    alerts they carried (None: a key from before amounts were kept)."""
    found: dict[tuple[int, date], list[Decimal | None]] = defaultdict(list)
    for key, payload in payloads.items():
        parts = key.split(":")
        if len(parts) != 4 or parts[0] != "spike":
            continue
        try:
            connection_id, day = int(parts[1]), date.fromisoformat(parts[2])
        except ValueError:
            continue
        amount = None
        if payload:
            try:
                amount = Decimal(json.loads(payload)["facts"]["cost_usd"])
            except (ValueError, KeyError, TypeError, ArithmeticError):
                amount = None
        found[(connection_id, day)].append(amount)
    return dict(found)


# Sync failures and recovery


def sync_failure_alerts(session: Session, workspace_id: int) -> list[Alert]:
    """One alert per incident of a connection that needs a person."""
    failing = _failing(session, workspace_id)
    pages = _key_pages(session, failing)
    return [
        _failure_alert(
            workspace_id,
            *row[:5],
            key=f"syncfail:{row[0]}:{row[2].isoformat()}",
            key_page=pages.get(row[5], ""),
        )
        for row in failing
    ]


def reminder_alerts(
    session: Session,
    workspace_id: int,
    at: date | datetime,
    first_posted: Mapping[str, datetime],
    acknowledged: Iterable[str] = (),
) -> list[Alert]:
    """ "Still failing" for each sync failure that goes on, one a day after its first post.

    ``first_posted``: when each incident's first post went out (``bot.jobs`` reads it
    from the posts recorded); ``acknowledged``: incidents someone acknowledged, which
    are not recalled. The ``n``-th reminder is due ``n`` days after the first post,
    so a run that missed some days sends the latest one only.
    """
    now = moment_of(at)
    acked = set(acknowledged)
    alerts = []
    failing = _failing(session, workspace_id)
    pages = _key_pages(session, failing)
    for row in failing:
        connection_id, _, since, *_ = row
        incident = f"syncfail:{connection_id}:{since.isoformat()}"
        posted = first_posted.get(incident)
        if posted is None or incident in acked:
            continue
        n = (now - posted) // REMIND_EVERY
        if n >= 1:
            key = f"stillfailing:{connection_id}:{since.isoformat()}:{n}"
            alerts.append(
                _failure_alert(
                    workspace_id,
                    *row[:5],
                    key=key,
                    reminder=n,
                    key_page=pages.get(row[5], ""),
                )
            )
    return alerts


def _failing(session: Session, workspace_id: int) -> list:
    return list(
        session.execute(
            select(
                Connection.id,
                Connection.label,
                Connection.error_since,
                Connection.status_reason,
                Connection.status_message,
                Connection.provider,
            )
            .where(
                Connection.workspace_id == workspace_id,
                Connection.status == ConnectionStatus.ERROR,
                Connection.error_since.is_not(None),
            )
            .order_by(Connection.id)
        )
    )


def _key_pages(session: Session, failing: list) -> dict[str, str]:
    """Where each failing connection's provider says its keys are made, by provider."""
    words_of = profiles.read(SessionReader(session), (row[5] for row in failing))
    return {row[5]: words_of.get(row[5]).key_page for row in failing}


def provider_words(message: str | None, reason: str | None) -> tuple[str, str, str]:
    """A connection's failure as (what happened, in one sentence; who said the rest;
    their words). A provider's message ends with its service's own words, "(xAI said:
    …)": they are quoted once, apart, and the code (``invalid_key``) is not shown."""
    if not message:
        return (f"The provider refused ({reason})." if reason else "No reason given."), "", ""
    said = PROVIDER_SAID.search(message)
    summary = message[: said.start()] if said else message
    first = summary.partition(". ")[0]
    first = clip(first.strip().rstrip("."), MESSAGE_DETAIL_LIMIT) + "."
    if not said:
        return first, "", ""
    return first, said["who"].strip(), clip(said["words"].strip(), MESSAGE_DETAIL_LIMIT)


def _failure_alert(
    workspace_id: int,
    connection_id: int,
    label: str,
    since: datetime,
    reason: str | None,
    message: str | None,
    *,
    key: str,
    reminder: int = 0,
    key_page: str = "",
) -> Alert:
    """A sync failure's first post, or (``reminder``: how many days on) its reminder.
    ``key_page``: where its provider says keys are made, when it says."""
    what, who, said = provider_words(message, reason)
    quoted = f" {who} said: “{said}”." if said else ""
    where = f"in {key_page}" if key_page else "at the provider"
    fix = (
        f"Give it a new key with `/xai-usage {words('update-key', label)}` (its data is "
        f"kept), or once the key is fixed {where}, `/xai-usage {words('sync', connection=label)}`."
    )
    fields = (
        Field("Connection", f"“{label}”"),
        Field("Failing since", clock(since)),
        Field("What happened", what),
        *((Field(f"{who} said", f"“{said}”"),) if said else ()),
        Field("Meanwhile", "its figures are those of its last sync"),
    )
    if reminder:
        days = f"{reminder} day{'s' if reminder != 1 else ''}"
        title = f"“{label}” still not syncing ({days} since this alert)"
        text = f"“{label}” is still failing to sync, since {clock(since)}: {what}{quoted} {fix}"
    else:
        title = f"“{label}” stopped syncing"
        text = (
            f"“{label}” has failed to sync since {clock(since)}: {what}{quoted} Its figures "
            f"are not updated until this is fixed. {fix}"
        )
    return Alert(
        key=key,
        kind="still_failing" if reminder else "sync_failure",
        workspace_id=workspace_id,
        connection_id=connection_id,
        title=title,
        text=text,
        facts={
            "connection": label,
            "error_since": since.isoformat(),
            "reason": reason or "",
            "message": message or "",
            **({"reminder": str(reminder)} if reminder else {}),
        },
        actions=(
            Action("Update key", words("update-key", label)),
            Action("Sync now", words("sync", connection=label)),
        ),
        fields=fields,
        fix=fix,
    )


def _failure(key: str) -> tuple[int, datetime, str] | None:
    """``syncfail:<connection>:<error_since>`` as (connection, since, suffix)."""
    kind, _, suffix = key.partition(":")
    connection, _, since = suffix.partition(":")
    if kind != "syncfail":
        return None
    try:
        return int(connection), datetime.fromisoformat(since), suffix
    except ValueError:
        return None


def recovery_alerts(
    session: Session, workspace_id: int, delivered_failure_keys: Iterable[str]
) -> list[Alert]:
    """A "working again" for each connection whose delivered failure is over.

    Only a connection's latest delivered failure gets one, and only once the
    connection is ``ok``: a connection failing again is no recovery.
    """
    latest: dict[int, tuple[datetime, str]] = {}
    for key in delivered_failure_keys:
        parsed = _failure(key)
        if parsed is None:
            continue
        connection_id, since, suffix = parsed
        if connection_id not in latest or since > latest[connection_id][0]:
            latest[connection_id] = (since, suffix)
    if not latest:
        return []
    recovered = session.execute(
        select(Connection.id, Connection.label, Connection.last_success_at)
        .where(
            Connection.workspace_id == workspace_id,
            Connection.id.in_(latest),
            Connection.status == ConnectionStatus.OK,
        )
        .order_by(Connection.id)
    )
    alerts = []
    for connection_id, label, last_success in recovered:
        since, suffix = latest[connection_id]
        alerts.append(
            Alert(
                key=f"recovered:{suffix}",
                kind="recovered",
                workspace_id=workspace_id,
                connection_id=connection_id,
                title=f"“{label}” is working again",
                text=(
                    f"“{label}” is working again: it synced at {clock(last_success)} after "
                    f"failing since {clock(since)}. Its figures are up to date."
                ),
                facts={
                    "connection": label,
                    "error_since": since.isoformat(),
                    "last_success_at": last_success.isoformat() if last_success else "",
                },
                fields=(
                    Field("Connection", f"“{label}”"),
                    Field("Synced", clock(last_success)),
                    Field("Failing since", clock(since)),
                ),
            )
        )
    return alerts


def rule_words(
    session: Session, workspace_id: int, rule: str, named: Callable[[str], str] = str
) -> str | None:
    """What a rule is, as ``alerts list`` and a muted alert say it ("spend spikes of
    “Prod”"), each label as ``named`` shows it (inert, in Slack); None when its budget or
    connection is gone or is another workspace's."""
    family, _, ident = rule.partition(":")
    if not ident.isascii() or not ident.isdigit():
        return None
    if family == "budget":
        row = session.execute(
            select(Budget.amount_usd, Connection.label)
            .outerjoin(Connection, Connection.id == Budget.connection_id)
            .where(Budget.id == int(ident), Budget.workspace_id == workspace_id)
        ).first()
        if row is None:
            return None
        amount, label = row
        scope = f"“{named(label)}”" if label else "all connections"
        return f"the {money(amount)} budget for {scope}"
    label = session.scalar(
        select(Connection.label).where(
            Connection.id == int(ident), Connection.workspace_id == workspace_id
        )
    )
    if label is None:
        return None
    label = named(label)
    return {"spike": f"spend spikes of “{label}”", "syncfail": f"sync failures of “{label}”"}.get(
        family
    )


# The webhook's body, and the ledger's copy of an alert still owed


def alert_json(alert: Alert) -> dict[str, Any]:
    """The webhook body, for tools outside Slack: its actions as data, not buttons."""
    return {
        "kind": alert.kind,
        "key": alert.key,
        "workspace_id": alert.workspace_id,
        "connection_id": alert.connection_id,
        "title": alert.title,
        "text": alert.text,
        "facts": dict(alert.facts),
        "fields": [{"label": f.label, "value": f.value} for f in alert.fields],
        "fix": alert.fix,
        "incident": alert.incident,
        "actions": [{"label": a.label, "command": a.command} for a in alert.actions],
        **({"covers": list(alert.covers)} if alert.covers else {}),
        **({"correction": alert.correction} if alert.correction else {}),
    }


def alert_from_json(text: str) -> Alert:
    """An alert kept in the ledger while it is owed (:func:`alert_json`'s body)."""
    data = json.loads(text)
    return Alert(
        key=data["key"],
        kind=data["kind"],
        workspace_id=data["workspace_id"],
        connection_id=data["connection_id"],
        title=data["title"],
        text=data["text"],
        facts=dict(data.get("facts") or {}),
        actions=tuple(Action(a["label"], a["command"]) for a in data.get("actions") or ()),
        correction=data.get("correction") or "",
        fields=tuple(Field(f["label"], f["value"]) for f in data.get("fields") or ()),
        fix=data.get("fix") or "",
        covers=tuple(data.get("covers") or ()),
    )
