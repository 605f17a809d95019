"""Channel digests: a period's spend summarised as plain data, then rendered.

:func:`build_digests` reads the store for a whole batch of due digests at
once, with a handful of aggregate queries however many digests,
connections, models and days there are (see there); everything else is
worked out in Python. A :class:`Digest` is plain data; each surface renders
it from ``templates/`` (:func:`digest_view` is what they all show): Slack's
in ``bot.slack.messages``, the terminal's in ``bot.render``. Days are UTC
days, as on xAI invoices; a digest only ever summarises finished days.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bot import formatting
from bot.figures import PACE, PACE_DAYS, TeamLimit, month_end_forecast, spending_limit_text
from bot.insights import Insights, build_insights
from bot.reports import cost_query, fetched_days
from providers.types import Provider
from storage.models import BillingState, Budget, Connection, ConnectionStatus, ModelSeen

COMPARED_WITH = {"day": "the day before", "week": "the week before", "month": "the month before"}
TITLES = {"day": "Daily", "week": "Weekly", "month": "Monthly"}
TOP_MODELS = 5
SPARK_DAYS = 7
FORECAST_DAYS = PACE_DAYS
AVERAGE_DAYS = 7

# A chat message has room for so much (Slack: 50 blocks, 3,000 characters a
# section): lists are cut here, before rendering, so no workspace breaks one.
MAX_NEW_MODELS = 10
MAX_FAILING = 8
MAX_LINE_CHARS = 300
MODEL_WIDTH = 28
PHONE_WIDTH = 40
"""A table line at most: what a phone shows without wrapping (model names give way first)."""
SHARE_WIDTH = 4  # "67%", narrowed from "67.2%" to fit a phone


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
    spending_limit_text: str | None = None  # bot.figures: prepaid only, or the headroom
    month_trend: str = ""  # monthly digests: the total of each day of the month, in order
    unfetched: tuple[str, ...] = ()
    """Days of the period no sync fetched, per connection: its total is of fetched days only."""
    nothing_fetched: bool = False  # no day of the period was fetched for any connection
    insights: Insights | None = None
    """Weekly digests: top movers, idle keys, where the money goes (as ``insights``)."""

    @property
    def trend_span(self) -> str:
        """What a model's sparkline covers, oldest first (see :func:`_trend_buckets`)."""
        first = _trend_buckets(self.every, self.period_start, self.period_end)[0][0]
        kind = "weeks" if self.every == "month" else "days"
        return f"{kind} of {formatting.day_span(first, self.period_end)}"

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


@dataclass(frozen=True)
class DigestRequest:
    """One digest to build: its period kind, the UTC date it is sent on, its scope."""

    every: str
    occurrence: date
    connection_id: int | None = None  # None: every connection of the workspace


def build_digest(
    session: Session,
    workspace_id: int,
    every: str,
    occurrence: date,
    *,
    connection_id: int | None = None,
    providers: Iterable[Provider] | None = None,
) -> Digest:
    """The digest due on ``occurrence`` (its UTC date), from finished days only."""
    request = DigestRequest(every, occurrence, connection_id)
    return build_digests(session, workspace_id, [request], providers=providers)[0]


def build_digests(
    session: Session,
    workspace_id: int,
    requests: Sequence[DigestRequest],
    *,
    providers: Iterable[Provider] | None = None,
) -> list[Digest]:
    """Every digest in ``requests``, in order, read from the store at once.

    A thousand digests due at 09:00 cost a handful of statements, not a
    handful each: the workspace's connections, budgets and first-seen
    models, then per kind of period the daily totals and the model-by-day
    costs, once for the whole workspace (from the rollup) and once for all
    the single connections asked for. The rest is worked out in Python.

    The month-end forecast is :func:`bot.figures.month_end_forecast` through
    period_end, the one definition alerts and status use too. Weekly digests
    carry the week's insights, which read kinds of usage and list prices
    through ``providers`` (``runtime.providers``): they need them.
    """
    if providers is None and any(request.every == "week" for request in requests):
        raise ValueError("weekly digests carry insights: pass the providers (runtime.providers)")
    facts = _Facts.load(session, workspace_id, requests)
    digests = [facts.digest(request) for request in requests]
    # Weekly digests carry the week's insights, worked out once per scope and week.
    found: dict[tuple[int | None, date], Insights] = {}
    for n, digest in enumerate(digests):
        if digest.every != "week" or digest.empty:  # nothing of this workspace to look into
            continue
        scope = (requests[n].connection_id, digest.period_end)
        if scope not in found:
            connection = session.get(Connection, scope[0]) if scope[0] is not None else None
            today = digest.period_end + timedelta(days=1)  # the week: its 7 finished days
            found[scope] = build_insights(
                session, workspace_id, today, connection, providers=providers
            )
        digests[n] = replace(digest, insights=found[scope])
    return digests


@dataclass(frozen=True)
class _Span:
    """The days one digest reads."""

    every: str
    start: date
    end: date
    before_start: date
    before_end: date
    last_month_start: date
    last_month_point: date
    average_start: date

    @classmethod
    def of(cls, every: str, occurrence: date) -> _Span:
        start, end = digest_period(every, occurrence)
        before_start, before_end = previous_period(every, start, end)
        last_month_point = same_point_last_month(end)
        return cls(
            every=every,
            start=start,
            end=end,
            before_start=before_start,
            before_end=before_end,
            last_month_start=last_month_point.replace(day=1),
            last_month_point=last_month_point,
            average_start=start - timedelta(days=AVERAGE_DAYS),
        )

    @property
    def recent_start(self) -> date:
        """The first of the days the sparklines and the forecast read."""
        return self.end - timedelta(days=max(SPARK_DAYS, FORECAST_DAYS) - 1)

    @property
    def first_total(self) -> date:
        """The first day whose total a figure needs (about two months back)."""
        return min(self.before_start, self.last_month_start, self.average_start, self.recent_start)

    @property
    def first_by_model(self) -> date:
        """The first day whose costs by model are needed: sparklines and the period."""
        return min(self.start, self.recent_start)


# Costs of one scope: by day, and by day and model.
_Totals = dict[date, Decimal]
_ByModel = dict[date, dict[str, Decimal]]
_WORKSPACE = None  # the scope key of a workspace-wide digest


@dataclass
class _Facts:
    """What a batch of digests reads from the store, loaded once."""

    connections: dict[int, Any]  # id -> row (label, status, billing figures)
    budgets: dict[int | None, Decimal]  # connection id (None: workspace) -> amount
    first_seen: dict[int, dict[str, date]]  # connection id -> model -> first day
    totals: dict[tuple[str, int | None], _Totals]  # (every, scope) -> day -> cost
    by_model: dict[tuple[str, int | None], _ByModel]
    fetched: dict[int, set[date]] = field(default_factory=dict)  # connection -> days fetched

    @classmethod
    def load(cls, session: Session, workspace_id: int, requests: Sequence[DigestRequest]) -> _Facts:
        params = {"workspace_id": workspace_id}
        connections = {row.id: row for row in session.execute(_CONNECTIONS, params)}
        budgets: dict[int | None, Decimal] = {}
        for connection_id, amount in session.execute(_BUDGETS, params):
            budgets.setdefault(connection_id, amount)
        first_seen: dict[int, dict[str, date]] = defaultdict(dict)
        for connection_id, model, first_day in session.execute(_FIRST_SEEN, params):
            first_seen[connection_id][model] = first_day
        facts = cls(connections, budgets, first_seen, defaultdict(dict), defaultdict(dict))
        by_every: dict[str, list[DigestRequest]] = defaultdict(list)
        for request in requests:
            if request.connection_id is None or request.connection_id in connections:
                by_every[request.every].append(request)
        for every, group in by_every.items():
            facts._load_costs(session, workspace_id, every, group)
        periods = [digest_period(r.every, r.occurrence) for r in requests]
        if periods:  # which days of the periods were fetched: one query for the batch
            first, last = min(p[0] for p in periods), max(p[1] for p in periods)
            facts.fetched = fetched_days(session, workspace_id, first, last)
        return facts

    def _load_costs(
        self, session: Session, workspace_id: int, every: str, group: list[DigestRequest]
    ) -> None:
        """Costs over the union of the group's days: the workspace's, then its connections'."""
        spans = [_Span.of(every, request.occurrence) for request in group]
        first_total = min(span.first_total for span in spans)
        first_by_model = min(span.first_by_model for span in spans)
        last = max(span.end for span in spans)
        if any(request.connection_id is None for request in group):
            key = (every, _WORKSPACE)
            totals = self.totals[key] = {}
            for day, cost in session.execute(cost_query(workspace_id, first_total, last, ["day"])):
                totals[day] = cost or Decimal(0)
            by_model = self.by_model[key] = defaultdict(dict)
            for day, model, cost in session.execute(
                cost_query(workspace_id, first_by_model, last, ["day", "model"])
            ):
                by_model[day][model] = cost or Decimal(0)
        ids = sorted({r.connection_id for r in group if r.connection_id is not None})
        if not ids:
            return
        for connection_id in ids:
            self.totals[(every, connection_id)] = {}
            self.by_model[(every, connection_id)] = defaultdict(dict)
        for connection_id, day, cost in session.execute(
            cost_query(workspace_id, first_total, last, ["connection_id", "day"], connection_id=ids)
        ):
            self.totals[(every, connection_id)][day] = cost or Decimal(0)
        for connection_id, day, model, cost in session.execute(
            cost_query(
                workspace_id,
                first_by_model,
                last,
                ["connection_id", "day", "model"],
                connection_id=ids,
            )
        ):
            self.by_model[(every, connection_id)][day][model] = cost or Decimal(0)

    def digest(self, request: DigestRequest) -> Digest:
        span = _Span.of(request.every, request.occurrence)
        start, end, every = span.start, span.end, span.every
        title = _title(every, start, end)
        one = request.connection_id
        if one is None:
            included = list(self.connections.values())
        else:
            included = [self.connections[one]] if one in self.connections else []
        if not included:
            return _empty(every, start, end, title)
        day_totals = self.totals[(every, one)]
        recent = self.by_model[(every, one)]

        def spent(a: date, b: date) -> Decimal:
            return sum((day_totals.get(day, Decimal(0)) for day in _days(a, b)), Decimal(0))

        by_model: dict[str, Decimal] = defaultdict(Decimal)
        for day in _days(start, end):
            for model, cost in recent.get(day, {}).items():
                by_model[model] += cost
        total = sum(by_model.values(), Decimal(0))
        ranked = sorted(
            ((model, cost) for model, cost in by_model.items() if cost),
            key=lambda item: (-item[1], item[0]),
        )
        buckets = _trend_buckets(every, start, end)

        def trend(model: str) -> str:
            def cost(day: date) -> Decimal:
                return recent.get(day, {}).get(model, Decimal(0))

            return formatting.sparkline(
                [sum((cost(day) for day in _days(a, b)), Decimal(0)) for a, b in buckets]
            )

        # One model past the top five is shown by name, not as "other".
        shown = TOP_MODELS + 1 if len(ranked) == TOP_MODELS + 1 else TOP_MODELS
        top = tuple(
            ModelLine(
                model=model,
                cost_usd=cost,
                share=cost / total if total else Decimal(0),
                spark=trend(model),
            )
            for model, cost in ranked[:shown]
        )
        other = sum((cost for _, cost in ranked[shown:]), Decimal(0))

        month_to_date = spent(end.replace(day=1), end)
        period_days = list(_days(start, end))
        missing = {
            c.id: [day for day in period_days if day not in self.fetched.get(c.id, ())]
            for c in included
        }
        unfetched = tuple(
            f"“{c.label}”: " + ", ".join(formatting.day_span(a, b) for a, b in _runs(missing[c.id]))
            for c in sorted(included, key=lambda c: c.label)
            if missing[c.id]
        )
        budget = self.budgets.get(one)
        failing = tuple(
            f"“{c.label}” failed to sync: {c.status_message or c.status_reason or 'unknown error'}"
            for c in sorted(included, key=lambda c: c.label)
            if c.status in _FAILING_STATUSES
        )
        return Digest(
            every=every,
            period_start=start,
            period_end=end,
            title=title,
            total_usd=total,
            previous_usd=spent(span.before_start, span.before_end),
            average_usd=(
                spent(span.average_start, start - timedelta(days=1)) / AVERAGE_DAYS
                if every == "day"
                else None
            ),
            month_to_date_usd=month_to_date,
            month_to_date_last_month_usd=spent(span.last_month_start, span.last_month_point),
            forecast_usd=month_end_forecast(day_totals, end).total,
            top=top,
            other_usd=other,
            new_models=self._new_models(included, start, end),
            budget_usd=budget,
            budget_share=month_to_date / budget if budget else None,
            prepaid_credit_usd=_known_sum(c.prepaid_credit_usd for c in included),
            spending_limit_usd=_known_sum(c.spending_limit_usd for c in included),
            spending_limit_text=spending_limit_text(
                TeamLimit(c.spending_limit_usd, c.prepaid_credit_usd, c.invoiced_usd)
                for c in included
                if c.spending_limit_usd is not None
            ),
            failing=failing,
            connection_count=len(included),
            connection_label=included[0].label if one is not None else None,
            unfetched=unfetched,
            nothing_fetched=all(len(m) == len(period_days) for m in missing.values()),
            month_trend=(
                formatting.sparkline([day_totals.get(day, Decimal(0)) for day in _days(start, end)])
                if every == "month"
                else ""
            ),
        )

    def _new_models(self, included: list[Any], start: date, end: date) -> tuple[str, ...]:
        """Models first seen, by any included connection, during the period."""
        first: dict[str, date] = {}
        for connection in included:
            for model, day in self.first_seen.get(connection.id, {}).items():
                if model not in first or day < first[model]:
                    first[model] = day
        return tuple(sorted(model for model, day in first.items() if start <= day <= end))


def _known_sum(values: Iterable[Decimal | None]) -> Decimal | None:
    """The sum of the figures known; None when none is (unknown is not zero)."""
    known = [value for value in values if value is not None]
    return sum(known, Decimal(0)) if known else None


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


def digest_view(digest: Digest) -> dict[str, Any]:
    """What every surface's template shows, its lists already cut to fit a chat
    message (:data:`MAX_NEW_MODELS`): ``digest.txt.j2``, ``slack/digest.json.j2``."""
    costs = [formatting.money(line.cost_usd) for line in digest.top]
    costs.append(formatting.money(digest.other_usd))
    cost_width = max(len(cost) for cost in costs)
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
        scope = formatting.connections_count(count)
    comparisons = [(digest.compared_with, digest.previous_usd)]
    if digest.average_usd is not None:
        comparisons.append((f"{AVERAGE_DAYS}-day average", digest.average_usd))
    money_total = formatting.money(digest.total_usd)
    if digest.empty:
        headline = digest.title
        fallback = f"{digest.title}: no xAI team is connected yet."
    elif digest.unfetched:  # a total short of unfetched days: no $0.00, no deltas
        comparisons = []
        if digest.nothing_fetched:
            headline = f"{digest.title}: {formatting.NOT_FETCHED}"
        else:
            headline = f"{digest.title}: {money_total} (fetched days only)"
        fallback = f"{headline}; not fetched: {'; '.join(digest.unfetched[:3])}"
    else:
        headline = f"{digest.title}: {money_total}"
        change = formatting.delta(digest.total_usd, digest.previous_usd)
        fallback = f"{headline} ({change} vs {digest.compared_with})"
    return {
        "digest": digest,
        "headline": formatting.fit(headline, 150).rstrip(),
        "fallback": fallback,
        "comparisons": comparisons,
        "label_width": min(
            MODEL_WIDTH,
            PHONE_WIDTH - 2 - cost_width - 2 - SHARE_WIDTH - 2 - SPARK_DAYS,
            max([len(line.model) for line in digest.top] + [len("other"), 12]),
        ),
        "cost_width": cost_width,
        "new_models": ", ".join(new_models),
        "budget_used": (
            formatting.percent_reached(digest.month_to_date_usd, digest.budget_usd)
            if digest.budget_usd is not None
            else None
        ),
        "pace": PACE,
        "failing": failing,
        "more_failing": len(digest.failing) - len(failing),
        "scope": scope,
        "unfetched": [
            formatting.clip(line, MAX_LINE_CHARS) for line in digest.unfetched[:MAX_FAILING]
        ],
    }


# The statements that are not cost sums, built once with bound parameters.
_FAILING_STATUSES = (ConnectionStatus.ERROR, ConnectionStatus.FAILING)
_IN_WORKSPACE = Connection.workspace_id == bindparam("workspace_id")
_CONNECTIONS = (
    select(
        Connection.id,
        Connection.label,
        Connection.status,
        Connection.status_message,
        Connection.status_reason,
        BillingState.prepaid_credit_usd,
        BillingState.spending_limit_usd,
        BillingState.invoiced_usd,
    )
    .outerjoin(BillingState, BillingState.connection_id == Connection.id)
    .where(_IN_WORKSPACE)
)
# The first budget set for each scope (a connection, or None for the workspace).
_BUDGETS = (
    select(Budget.connection_id, Budget.amount_usd)
    .where(Budget.workspace_id == bindparam("workspace_id"))
    .order_by(Budget.id)
)
_FIRST_SEEN = (
    select(ModelSeen.connection_id, ModelSeen.model, ModelSeen.first_day)
    .join(Connection, Connection.id == ModelSeen.connection_id)
    .where(_IN_WORKSPACE)
)


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


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) stretches of consecutive days."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _trend_buckets(every: str, start: date, end: date) -> list[tuple[date, date]]:
    """The stretches a sparkline shows, oldest first: the 7 days ending with the period,
    or, for a month, its weeks from the 1st (the last one shorter)."""
    if every != "month":
        return [(day, day) for day in _days(end - timedelta(days=SPARK_DAYS - 1), end)]
    firsts = list(_days(start, end))[::7]
    return [(a, min(a + timedelta(days=6), end)) for a in firsts]


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
