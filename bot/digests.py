"""Channel digests: a period's spend summarised as plain data, then rendered.

:func:`build_digest` reads the store with a handful of aggregate queries,
however many connections, models and days there are: one row about the
included connections (count, failures, billing figures, the budget), the
daily totals over every day a figure compares (about two months), the
model-by-day costs of the last 7 days (a month's digest adds the month by
model), and the new models; the failing connections are read only when
there are some. Everything else is worked out in Python. The same
:class:`Digest` renders as Block Kit (:func:`digest_message`). Days are UTC
days, as on xAI invoices; a digest only ever summarises finished days.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select
from sqlalchemy.orm import Session

from bot import formatting
from bot.render import render_json
from bot.reports import cost_query
from storage.models import BillingState, Budget, Connection, ConnectionStatus, ModelSeen

COMPARED_WITH = {"day": "the day before", "week": "the week before", "month": "the month before"}
TITLES = {"day": "Daily", "week": "Weekly", "month": "Monthly"}
TOP_MODELS = 5
SPARK_DAYS = 7
FORECAST_DAYS = 7
AVERAGE_DAYS = 7

# Slack allows 50 blocks a message and 3,000 characters a section: lists are
# cut here, before rendering, so no workspace can break the message.
MAX_NEW_MODELS = 10
MAX_FAILING = 8
MAX_LINE_CHARS = 300
MODEL_WIDTH = 28


@dataclass(frozen=True)
class ModelLine:
    model: str
    cost_usd: Decimal
    share: Decimal  # of the period's total, 0..1
    spark: str  # the model's daily cost over the 7 days ending with the period


@dataclass(frozen=True)
class Digest:
    """A daily, weekly or monthly summary of a workspace's (or one connection's) spend."""

    every: str  # day | week | month
    period_start: date
    period_end: date  # inclusive
    title: str
    total_usd: Decimal
    previous_usd: Decimal  # the period before: the day, 7 days or month before
    average_usd: Decimal | None  # daily digests: the mean of the 7 days before the day
    month_to_date_usd: Decimal  # from the 1st of period_end's month through period_end
    month_to_date_last_month_usd: Decimal  # the month before, through the same day (clipped)
    forecast_usd: Decimal  # see build_digest
    top: tuple[ModelLine, ...]
    other_usd: Decimal  # every model after the top five, summed
    new_models: tuple[str, ...]
    budget_usd: Decimal | None
    budget_share: Decimal | None  # month to date / budget, 0..1 and beyond
    prepaid_credit_usd: Decimal | None
    spending_limit_usd: Decimal | None
    failing: tuple[str, ...]
    connection_count: int
    connection_label: str | None = None  # the one connection, for a filtered digest

    @property
    def empty(self) -> bool:
        """No connection to summarise: the message says how to add one."""
        return self.connection_count == 0

    @property
    def compared_with(self) -> str:
        return COMPARED_WITH[self.every]

    @property
    def days_left(self) -> int:
        """Days of period_end's month still to come (0 when the month is over)."""
        return _month_days(self.period_end) - self.period_end.day

    @property
    def month_name(self) -> str:
        return formatting.month_label(self.period_end)


def digest_period(every: str, occurrence: date) -> tuple[date, date]:
    """The finished UTC days a digest sent on ``occurrence`` (a UTC date) covers.

    ``day``: yesterday. ``week``: the 7 days ending yesterday. ``month``: the
    last full calendar month before the occurrence (the previous month when
    sent on the 1st).
    """
    yesterday = occurrence - timedelta(days=1)
    if every == "day":
        return yesterday, yesterday
    if every == "week":
        return yesterday - timedelta(days=6), yesterday
    if every == "month":
        end = occurrence.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    raise ValueError(f"a digest comes every day, week or month, not {every!r}")


def previous_period(every: str, start: date, end: date) -> tuple[date, date]:
    """The period a digest compares with: the day, 7 days or month before."""
    if every == "month":
        before_end = start - timedelta(days=1)
        return before_end.replace(day=1), before_end
    length = end - start + timedelta(days=1)
    return start - length, start - timedelta(days=1)


def same_point_last_month(day: date) -> date:
    """The same day number a month earlier, clipped: 31 Mar -> 28 Feb."""
    last_month = day.replace(day=1) - timedelta(days=1)
    return last_month.replace(day=min(day.day, last_month.day))


def build_digest(
    session: Session,
    workspace_id: int,
    every: str,
    occurrence: date,
    *,
    connection_id: int | None = None,
) -> Digest:
    """The digest due on ``occurrence`` (its UTC date), from finished days only.

    The month-end forecast is the month to date plus the mean daily spend of
    the last 7 finished days (those ending with period_end, zero-spend days
    included) times the days left in period_end's month; once that month is
    over, the forecast is simply its total.
    """
    start, end = digest_period(every, occurrence)
    before_start, before_end = previous_period(every, start, end)
    title = _title(every, start, end)
    params = {"workspace_id": workspace_id, "connection_id": connection_id}
    scope = session.execute(_SCOPE[connection_id is not None], params).one()
    if not scope.connections:
        return _empty(every, start, end, title)

    month_start = end.replace(day=1)
    last_month_point = same_point_last_month(end)
    last_month_start = last_month_point.replace(day=1)
    average_start = start - timedelta(days=AVERAGE_DAYS)
    recent_start = end - timedelta(days=max(SPARK_DAYS, FORECAST_DAYS) - 1)
    first = min(before_start, last_month_start, average_start, recent_start)

    # Few rows, few queries: the daily totals over every day a figure needs
    # (about two months), the model-by-day costs of the last 7 days only, and
    # (for a month) the period's costs by model.
    def costs(a: date, b: date, group: list[str]) -> Any:
        return session.execute(cost_query(workspace_id, a, b, group, connection_id=connection_id))

    day_totals = {day: cost or Decimal(0) for day, cost in costs(first, end, ["day"])}
    recent: dict[date, dict[str, Decimal]] = defaultdict(dict)
    for day, model, cost in costs(recent_start, end, ["day", "model"]):
        recent[day][model] = cost or Decimal(0)
    by_model: dict[str, Decimal] = defaultdict(Decimal)
    if start >= recent_start:
        for day in _days(start, end):
            for model, cost in recent.get(day, {}).items():
                by_model[model] += cost
    else:
        for model, cost in costs(start, end, ["model"]):
            by_model[model] += cost or Decimal(0)

    def spent(a: date, b: date) -> Decimal:
        return sum((day_totals.get(day, Decimal(0)) for day in _days(a, b)), Decimal(0))

    total = sum(by_model.values(), Decimal(0))
    ranked = sorted(
        ((model, cost) for model, cost in by_model.items() if cost),
        key=lambda item: (-item[1], item[0]),
    )
    spark_days = list(_days(end - timedelta(days=SPARK_DAYS - 1), end))
    top = tuple(
        ModelLine(
            model=model,
            cost_usd=cost,
            share=cost / total if total else Decimal(0),
            spark=formatting.sparkline(
                [recent.get(day, {}).get(model, Decimal(0)) for day in spark_days]
            ),
        )
        for model, cost in ranked[:TOP_MODELS]
    )
    other = sum((cost for _, cost in ranked[TOP_MODELS:]), Decimal(0))

    month_to_date = spent(month_start, end)
    days_left = _month_days(end) - end.day
    recent_mean = spent(end - timedelta(days=FORECAST_DAYS - 1), end) / FORECAST_DAYS
    budget = scope.budget_usd
    failing = ()
    if scope.failing:  # most days none: skip the query
        failing = tuple(
            f"“{label}” failed to sync: {message or reason or 'unknown error'}"
            for label, message, reason in session.execute(
                _FAILING[connection_id is not None], params
            )
        )
    new_models = session.scalars(
        _NEW_MODELS[connection_id is not None], {**params, "start": start, "end": end}
    )
    return Digest(
        every=every,
        period_start=start,
        period_end=end,
        title=title,
        total_usd=total,
        previous_usd=spent(before_start, before_end),
        average_usd=(
            spent(average_start, start - timedelta(days=1)) / AVERAGE_DAYS
            if every == "day"
            else None
        ),
        month_to_date_usd=month_to_date,
        month_to_date_last_month_usd=spent(last_month_start, last_month_point),
        forecast_usd=month_to_date + recent_mean * days_left,
        top=top,
        other_usd=other,
        new_models=tuple(new_models),
        budget_usd=budget,
        budget_share=month_to_date / budget if budget else None,
        prepaid_credit_usd=scope.prepaid_credit_usd,
        spending_limit_usd=scope.spending_limit_usd,
        failing=failing,
        connection_count=scope.connections,
        connection_label=scope.label if connection_id is not None else None,
    )


def quiet_skip(digest: Digest, min_usd: Decimal | None, change_pct: int | None) -> bool:
    """True when a quiet subscription should not post this digest.

    Without a quiet option every digest posts. With one or both, a digest
    posts when the period's spend passed ``min_usd`` (strictly more) or moved
    by more than ``change_pct`` percent against the period before; spend
    after a period of none counts as a change.
    """
    if min_usd is None and change_pct is None:
        return False
    total, previous = digest.total_usd, digest.previous_usd
    if min_usd is not None and total > min_usd:
        return False
    if change_pct is not None:
        if previous == 0:
            if total > 0:
                return False
        elif abs(total - previous) / previous * 100 > change_pct:
            return False
    return True


def digest_message(digest: Digest) -> dict[str, Any]:
    """Block Kit for ``chat.postMessage``: ``{"text": fallback, "blocks": [...]}``."""
    return render_json("slack/digest.json.j2", **_view(digest))


def _view(digest: Digest) -> dict[str, Any]:
    """What both templates show, already cut to Slack's limits."""
    costs = [formatting.money(line.cost_usd) for line in digest.top]
    costs.append(formatting.money(digest.other_usd))
    new_models = list(digest.new_models[:MAX_NEW_MODELS])
    if len(digest.new_models) > MAX_NEW_MODELS:
        new_models.append(f"and {len(digest.new_models) - MAX_NEW_MODELS} more")
    failing = [
        _sentence(formatting.clip(line, MAX_LINE_CHARS)) for line in digest.failing[:MAX_FAILING]
    ]
    if digest.connection_label is not None:
        scope = f"“{digest.connection_label}” only"
    else:
        count = digest.connection_count
        scope = f"{'All ' if count > 1 else ''}{count} connection{'s' if count != 1 else ''}"
    comparisons = [(digest.compared_with, digest.previous_usd)]
    if digest.average_usd is not None:
        comparisons.append((f"{AVERAGE_DAYS}-day average", digest.average_usd))
    money_total = formatting.money(digest.total_usd)
    if digest.empty:
        header = digest.title
        fallback = f"{digest.title}: no xAI team is connected yet."
    else:
        header = f"{digest.title}: {money_total}"
        change = formatting.delta(digest.total_usd, digest.previous_usd)
        fallback = f"{header} ({change} vs {digest.compared_with})"
    limit_used = None
    if digest.spending_limit_usd:  # an unknown or zero limit has no "used" share
        limit_used = formatting.percent_reached(digest.month_to_date_usd, digest.spending_limit_usd)
    return {
        "digest": digest,
        "header": formatting.fit(header, 150).rstrip(),
        "fallback": fallback,
        "comparisons": comparisons,
        "label_width": min(
            MODEL_WIDTH, max([len(line.model) for line in digest.top] + [len("other"), 12])
        ),
        "cost_width": max(len(cost) for cost in costs),
        "new_models": ", ".join(new_models),
        "budget_used": (
            formatting.percent_reached(digest.month_to_date_usd, digest.budget_usd)
            if digest.budget_usd is not None
            else None
        ),
        "limit_used": limit_used,
        "failing": failing,
        "more_failing": len(digest.failing) - len(failing),
        "scope": scope,
    }


# The statements that are not cost sums are built once, with bound
# parameters; each comes in two shapes: the whole workspace, or one
# connection (index ``True``).
_FAILING_STATUSES = (ConnectionStatus.ERROR, ConnectionStatus.FAILING)
_IN_WORKSPACE = Connection.workspace_id == bindparam("workspace_id")
_ONE_CONNECTION = Connection.id == bindparam("connection_id")


def _scope(one: bool) -> Select:
    """The included connections: how many, how many failing, summed billing, the budget.

    SUM over no known figure is NULL, so unknown credit stays None; MIN(label)
    is the label itself when there is one connection.
    """
    budget = (
        select(Budget.amount_usd)
        .where(
            Budget.workspace_id == bindparam("workspace_id"),
            Budget.connection_id == bindparam("connection_id")
            if one
            else Budget.connection_id.is_(None),
        )
        .order_by(Budget.id)
        .limit(1)
        .scalar_subquery()
    )
    failing = case((Connection.status.in_(_FAILING_STATUSES), 1), else_=0)
    query = (
        select(
            func.count(Connection.id).label("connections"),
            func.coalesce(func.sum(failing), 0).label("failing"),
            func.sum(BillingState.prepaid_credit_usd).label("prepaid_credit_usd"),
            func.sum(BillingState.spending_limit_usd).label("spending_limit_usd"),
            func.min(Connection.label).label("label"),
            budget.label("budget_usd"),
        )
        .outerjoin(BillingState, BillingState.connection_id == Connection.id)
        .where(_IN_WORKSPACE)
    )
    return query.where(_ONE_CONNECTION) if one else query


def _failing(one: bool) -> Select:
    query = (
        select(Connection.label, Connection.status_message, Connection.status_reason)
        .where(_IN_WORKSPACE, Connection.status.in_(_FAILING_STATUSES))
        .order_by(Connection.label)
    )
    return query.where(_ONE_CONNECTION) if one else query


def _new_models(one: bool) -> Select:
    """Models first seen, by any included connection, during the period."""
    query = (
        select(ModelSeen.model)
        .join(Connection, Connection.id == ModelSeen.connection_id)
        .where(_IN_WORKSPACE)
        .group_by(ModelSeen.model)
        .having(func.min(ModelSeen.first_day).between(bindparam("start"), bindparam("end")))
        .order_by(ModelSeen.model)
    )
    return query.where(_ONE_CONNECTION) if one else query


_SCOPE = (_scope(False), _scope(True))
_FAILING = (_failing(False), _failing(True))
_NEW_MODELS = (_new_models(False), _new_models(True))


def _empty(every: str, start: date, end: date, title: str) -> Digest:
    zero = Decimal(0)
    return Digest(
        every=every,
        period_start=start,
        period_end=end,
        title=title,
        total_usd=zero,
        previous_usd=zero,
        average_usd=zero if every == "day" else None,
        month_to_date_usd=zero,
        month_to_date_last_month_usd=zero,
        forecast_usd=zero,
        top=(),
        other_usd=zero,
        new_models=(),
        budget_usd=None,
        budget_share=None,
        prepaid_credit_usd=None,
        spending_limit_usd=None,
        failing=(),
        connection_count=0,
    )


def _title(every: str, start: date, end: date) -> str:
    if every == "day":
        span = formatting.day_label(end)
    elif every == "week":
        span = formatting.day_span(start, end)
    else:
        span = formatting.month_label(end)
    return f"{TITLES[every]} xAI spend · {span}"


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _month_days(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]
