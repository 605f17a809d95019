"""Channel digests: a period's spend summarised as plain data, then rendered.

:func:`build_digests` reads the store for a whole batch of due digests at
once, with a handful of aggregate queries however many digests,
connections, models and days there are (see there); everything else is
worked out in Python. A :class:`Digest` is plain data; each surface renders
it from ``templates/`` (:func:`digest_view` is what they all show): Slack's
in ``bot.slack.messages``, the terminal's in ``bot.render``. Days are UTC
days, as on the providers' invoices; a digest only ever summarises finished days.
"""

from __future__ import annotations

import calendar
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bot import figures, formatting, profiles
from bot.costs import cost_query
from bot.figures import (
    PACE,
    PACE_DAYS,
    Book,
    Comparison,
    Figure,
    Forecast,
    TeamLimit,
    compare,
    spending_limit_text,
)
from bot.insights import Insights, build_insights
from providers.types import Provider
from storage.models import (
    BillingState,
    Budget,
    Connection,
    ConnectionStatus,
    ModelSeen,
    ProviderProfile,
)
from storage.reader import SessionReader

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
    """A daily, weekly or monthly summary of a workspace's (or one connection's) spend.

    Its figures are :mod:`bot.figures`' (the headline ``total`` is what a later
    correction compares); this only picks which to show.
    """

    every: str  # day | week | month
    period_start: date
    period_end: date  # inclusive
    title: str
    total: Figure
    """The period's spend: the headline, with its coverage, settling and as-of."""
    previous: Comparison
    """Against the period before: the day, the Monday–Sunday week or the month before."""
    average: Comparison | None  # daily digests: against the mean of the 7 days before
    month_to_date: Figure | None
    """Daily and weekly digests: the 1st of period_end's month through period_end."""
    month_vs_last: Comparison | None
    """Month to date against the month before through the same day (clipped)."""
    forecast: Forecast | None
    top: tuple[ModelLine, ...]
    other_usd: Decimal  # every model after the top five, summed
    new_models: tuple[str, ...]
    budget_usd: Decimal | None
    prepaid: tuple[tuple[str, Decimal], ...]
    """Each team's prepaid credit left, by connection label (never summed across teams)."""
    failing: tuple[str, ...]
    connection_count: int
    connection_label: str | None = None  # the one connection, for a filtered digest
    spending_limit_text: str | None = None  # bot.figures: prepaid only, or the headroom
    month_trend: str = ""  # monthly digests: the total of each day of the month, in order
    insights: Insights | None = None
    """Weekly digests: top movers, idle keys, where the money goes (as ``insights``)."""
    tz: str = "UTC"
    """The subscription's time zone: its "yesterday" is a UTC day, said in its own time."""
    freshness: str | None = None
    """Why its figures are older than the digest wanted (a sync before posting failed)."""
    caveats: tuple[str, ...] = ()
    """What the providers in scope say their figures leave out (their words)."""
    invoices: tuple[tuple[str, Any], ...] = ()
    """Monthly digests: each connection's invoice for the month beside its usage series
    (``bot.reports.Reconciliation``, as ``status`` and ``last-month`` show it)."""
    correction: Any = None
    """A :class:`bot.posts.Correction` when a later sync moved its headline and it is shown
    again, corrected."""

    # The amounts as plain numbers, for code that has already read the marks.

    @property
    def total_usd(self) -> Decimal:
        return self.total.value

    @property
    def previous_usd(self) -> Decimal | None:
        return self.previous.previous

    @property
    def average_usd(self) -> Decimal | None:
        return None if self.average is None else self.average.previous

    @property
    def month_to_date_usd(self) -> Decimal:
        return self.month_to_date.value if self.month_to_date else self.total.value

    @property
    def month_to_date_last_month_usd(self) -> Decimal | None:
        return None if self.month_vs_last is None else self.month_vs_last.previous

    @property
    def forecast_usd(self) -> Decimal | None:
        return None if self.forecast is None else self.forecast.total

    @property
    def budget_share(self) -> Decimal | None:
        if not self.budget_usd:
            return None
        return self.month_to_date_usd / self.budget_usd

    @property
    def as_of(self):
        return self.total.as_of

    @property
    def nothing_fetched(self) -> bool:
        """No day of the period was fetched for any connection."""
        return not self.total.known

    @property
    def unfetched(self) -> tuple[str, ...]:
        """Days of the period no sync fetched, per connection: its total is of fetched days."""
        by_label: dict[str, list[str]] = {}
        for gap in self.total.coverage.gaps:
            by_label.setdefault(gap.connection, []).append(formatting.day_span(gap.start, gap.end))
        return tuple(f"“{label}”: " + ", ".join(spans) for label, spans in by_label.items())

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

    ``day``: yesterday. ``week``: the last whole Monday–Sunday week before
    the occurrence (a Monday's digest: the week ending yesterday). ``month``:
    the last full calendar month before the occurrence.
    """
    yesterday = occurrence - timedelta(days=1)
    if every == "day":
        return yesterday, yesterday
    if every == "week":
        sunday = yesterday - timedelta(days=(yesterday.weekday() + 1) % 7)
        return sunday - timedelta(days=6), sunday
    if every == "month":
        end = occurrence.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    raise ValueError(f"a digest comes every day, week or month, not {every!r}")


def previous_period(every: str, start: date, end: date) -> tuple[date, date]:
    """The period a digest compares with: the day, the week or the month before."""
    if every == "month":
        before_end = start - timedelta(days=1)
        return before_end.replace(day=1), before_end
    length = end - start + timedelta(days=1)
    return start - length, start - timedelta(days=1)


def same_point_last_month(day: date) -> date:
    """The same day number a month earlier, clipped: 31 Mar -> 28 Feb."""
    last_month = day.replace(day=1) - timedelta(days=1)
    return last_month.replace(day=min(day.day, last_month.day))


def covers_words(every: str, tz: str, today: date) -> str:
    """Which days a digest covers, said for its time zone: what ``digest add`` confirms.

    A digest speaks of finished UTC days, as invoices do; outside UTC that is
    not the reader's own "yesterday", so the hours it ran locally are named.
    """
    from zoneinfo import ZoneInfo

    if every == "week":
        what = "the last whole Monday–Sunday week (UTC days) before it is posted"
    elif every == "month":
        what = "the last whole calendar month (UTC days) before it is posted"
    else:
        what = "the last UTC day that ended before it is posted"
    if tz not in ("UTC", "Etc/UTC", "Etc/GMT"):
        midnight = figures.day_start(today).astimezone(ZoneInfo(tz))
        what += f" (UTC days run {midnight:%H:%M}–{midnight:%H:%M} in {tz})"
    return (
        f"each covers {what}; figures still settling are marked provisional, and a posted "
        "digest is corrected if they move by more than 1% and $1"
    )


def utc_day_words(day: date, tz: str) -> str:
    """Which hours of a digest's own time zone a UTC day ran, for a reader outside UTC:
    ``Fri 20 Mar 2026 is a UTC day: 09:00 Fri–09:00 Sat in Asia/Tokyo``."""
    from zoneinfo import ZoneInfo

    if tz in ("UTC", "Etc/UTC", "Etc/GMT"):
        return f"{formatting.day_label(day)} is a UTC day, as on invoices"
    zone = ZoneInfo(tz)
    began = figures.day_start(day).astimezone(zone)
    ended = figures.day_end(day).astimezone(zone)
    return f"{formatting.day_label(day)} is a UTC day: {began:%H:%M %a}–{ended:%H:%M %a} in {tz}"


@dataclass(frozen=True)
class DigestRequest:
    """One digest to build: its period kind, the UTC date it is sent on, its scope."""

    every: str
    occurrence: date
    connection_id: int | None = None  # None: every connection of the workspace
    tz: str = "UTC"


def build_digest(
    session: Session,
    workspace_id: int,
    every: str,
    occurrence: date,
    *,
    connection_id: int | None = None,
    providers: Iterable[Provider] | None = None,
    now: datetime | None = None,
    tz: str = "UTC",
) -> Digest:
    """The digest due on ``occurrence`` (its UTC date), from finished days only."""
    request = DigestRequest(every, occurrence, connection_id, tz)
    return build_digests(session, workspace_id, [request], providers=providers, now=now)[0]


def build_digests(
    session: Session,
    workspace_id: int,
    requests: Sequence[DigestRequest],
    *,
    providers: Iterable[Provider] | None = None,
    now: datetime | None = None,
) -> list[Digest]:
    """Every digest in ``requests``, in order, read from the store at once.

    A thousand digests due at 09:00 cost a handful of statements, not a
    handful each: the workspace's connections, budgets and first-seen
    models, one :class:`bot.figures.Book` of daily costs and coverage for
    every figure, and the model-by-day costs for the tables (once for the
    whole workspace, from the rollup, and once for all the single
    connections asked for). The rest is worked out in Python, by the
    definitions in :mod:`bot.figures`.

    Weekly digests carry the week's insights, which read kinds of usage and
    list prices through ``providers`` (``runtime.providers``): they need them.
    ``now`` is when the digests are made (what is still settling then).
    """
    if providers is None and any(request.every == "week" for request in requests):
        raise ValueError("weekly digests carry insights: pass the providers (runtime.providers)")
    facts = _Facts.load(session, workspace_id, requests, now or datetime.now(UTC))
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
    # Monthly digests set the month's invoices beside them: read once per month.
    from bot.reports import reconcile_month

    bills: dict[date, dict] = {}
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    for n, digest in enumerate(digests):
        if digest.every != "month" or digest.empty:
            continue
        month = digest.period_start
        if month not in bills:
            bills[month] = reconcile_month(session, workspace_id, month, today)
        scope = digest.total.coverage.connections  # id -> label
        invoices = [(scope[c], r) for c, r in bills[month].items() if c in scope]
        digests[n] = replace(
            digest, invoices=tuple(sorted(invoices, key=lambda item: item[0].lower()))
        )
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


# Costs of one scope by day and model.
_ByModel = dict[date, dict[str, Decimal]]
_WORKSPACE = None  # the scope key of a workspace-wide digest


@dataclass
class _Facts:
    """What a batch of digests reads from the store, loaded once."""

    connections: dict[int, Any]  # id -> row (label, status, billing figures)
    budgets: dict[int | None, Decimal]  # connection id (None: workspace) -> amount
    first_seen: dict[int, dict[str, date]]  # connection id -> model -> first day
    book: Book | None
    by_model: dict[tuple[str, int | None], _ByModel]
    now: datetime
    words: profiles.Profiles
    """The providers' own words (display names), for titles and limits."""

    @classmethod
    def load(
        cls,
        session: Session,
        workspace_id: int,
        requests: Sequence[DigestRequest],
        now: datetime,
    ) -> _Facts:
        params = {"workspace_id": workspace_id}
        connections = {row.id: row for row in session.execute(_CONNECTIONS, params)}
        budgets: dict[int | None, Decimal] = {}
        for connection_id, amount in session.execute(_BUDGETS, params):
            budgets.setdefault(connection_id, amount)
        first_seen: dict[int, dict[str, date]] = defaultdict(dict)
        for connection_id, model, first_day in session.execute(_FIRST_SEEN, params):
            first_seen[connection_id][model] = first_day
        wanted = [r for r in requests if r.connection_id is None or r.connection_id in connections]
        book = None
        if wanted:
            spans = [_Span.of(r.every, r.occurrence) for r in wanted]
            book = Book(
                SessionReader(session),
                workspace_id,
                now,
                min(span.first_total for span in spans),
                max(span.end for span in spans),
                connections=[(c.id, c.label, c.last_success_at) for c in connections.values()],
            )
        words = profiles.Profiles(
            {
                c.provider: profiles.Profile(
                    c.provider,
                    c.display_name or c.provider,
                    caveats=tuple(json.loads(c.caveats or "[]")),
                    stored=c.display_name is not None,
                )
                for c in connections.values()
            }
        )
        facts = cls(connections, budgets, first_seen, book, defaultdict(dict), now, words)
        by_every: dict[str, list[DigestRequest]] = defaultdict(list)
        for request in wanted:
            by_every[request.every].append(request)
        for every, group in by_every.items():
            facts._load_models(session, workspace_id, every, group)
        return facts

    def _load_models(
        self, session: Session, workspace_id: int, every: str, group: list[DigestRequest]
    ) -> None:
        """Costs by day and model over the union of the group's days: the workspace's
        (from the rollup), then its single connections'."""
        spans = [_Span.of(every, request.occurrence) for request in group]
        first = min(span.first_by_model for span in spans)
        last = max(span.end for span in spans)
        if any(request.connection_id is None for request in group):
            by_model = self.by_model[(every, _WORKSPACE)] = defaultdict(dict)
            for day, model, cost in session.execute(
                cost_query(workspace_id, first, last, ["day", "model"])
            ):
                by_model[day][model] = cost or Decimal(0)
        ids = sorted({r.connection_id for r in group if r.connection_id is not None})
        if not ids:
            return
        for connection_id in ids:
            self.by_model[(every, connection_id)] = defaultdict(dict)
        for connection_id, day, model, cost in session.execute(
            cost_query(
                workspace_id, first, last, ["connection_id", "day", "model"], connection_id=ids
            )
        ):
            self.by_model[(every, connection_id)][day][model] = cost or Decimal(0)

    def digest(self, request: DigestRequest) -> Digest:
        span = _Span.of(request.every, request.occurrence)
        start, end, every = span.start, span.end, span.every
        one = request.connection_id
        if one is None:
            included = list(self.connections.values())
        else:
            included = [self.connections[one]] if one in self.connections else []
        title = _title(every, start, end, self.words.name_for(c.provider for c in included))
        if not included or self.book is None:
            return _empty(every, start, end, title, self.now, request.tz)
        book = self.book
        scope = one  # None: the whole workspace
        recent = self.by_model[(every, one)]

        total = book.figure(start, end, scope)
        by_model: dict[str, Decimal] = defaultdict(Decimal)
        for day in _days(start, end):
            for model, cost in recent.get(day, {}).items():
                by_model[model] += cost
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
        amount = total.value
        top = tuple(
            ModelLine(
                model=model,
                cost_usd=cost,
                share=cost / amount if amount else Decimal(0),
                spark=trend(model),
            )
            for model, cost in ranked[:shown]
        )
        other = sum((cost for _, cost in ranked[shown:]), Decimal(0))

        previous = compare(total, book.figure(span.before_start, span.before_end, scope))
        average = None
        if every == "day":
            week = book.figure(span.average_start, start - timedelta(days=1), scope)
            average = compare(total, week, per_day=AVERAGE_DAYS)
        month_to_date = month_vs_last = None
        if every != "month":
            month_to_date = book.month_to_date(end, scope)
            month_vs_last = compare(
                month_to_date, book.figure(span.last_month_start, span.last_month_point, scope)
            )
        forecast = book.forecast(scope, through=end, spent_through=end)
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
            total=total,
            previous=previous,
            average=average,
            month_to_date=month_to_date,
            month_vs_last=month_vs_last,
            forecast=forecast,
            top=top,
            other_usd=other,
            new_models=self._new_models(included, start, end),
            budget_usd=budget,
            prepaid=tuple(
                (c.label, c.prepaid_credit_usd)
                for c in sorted(included, key=lambda c: c.label.lower())
                if c.prepaid_credit_usd is not None
            ),
            spending_limit_text=spending_limit_text(
                TeamLimit(
                    c.spending_limit_usd,
                    c.prepaid_credit_usd,
                    c.invoiced_usd,
                    c.label,
                    self.words.get(c.provider).own_name,
                )
                for c in sorted(included, key=lambda c: c.label.lower())
                if c.spending_limit_usd is not None
            ),
            failing=failing,
            connection_count=len(included),
            connection_label=included[0].label if one is not None else None,
            month_trend=(
                formatting.sparkline([cost for _, cost in book.daily(start, end, scope)])
                if every == "month"
                else ""
            ),
            tz=request.tz,
            caveats=profiles.Profiles(
                {c.provider: self.words.get(c.provider) for c in included}
            ).caveats,
        )

    def _new_models(self, included: list[Any], start: date, end: date) -> tuple[str, ...]:
        """Models first seen, by any included connection, during the period."""
        first: dict[str, date] = {}
        for connection in included:
            for model, day in self.first_seen.get(connection.id, {}).items():
                if model not in first or day < first[model]:
                    first[model] = day
        return tuple(sorted(model for model, day in first.items() if start <= day <= end))


def quiet_skip(digest: Digest, min_usd: Decimal | None, change_pct: int | None) -> bool:
    """True when a quiet subscription should not post this digest.

    Without a quiet option every digest posts. With one or both, a digest
    posts when the period's spend passed ``min_usd`` (strictly more) or moved
    by more than ``change_pct`` percent against the period before; spend
    after a period of none counts as a change. A digest whose figures are not
    known in full always posts: unknown is never quiet.
    """
    if min_usd is None and change_pct is None:
        return False
    if not digest.total.complete:
        return False
    if min_usd is not None and digest.total_usd > min_usd:
        return False
    if change_pct is not None:
        now, before = digest.previous.current, digest.previous.previous
        if now is None or before is None:
            return False
        if before == 0:
            if now > 0:
                return False
        elif abs(now - before) / before * 100 > change_pct:
            return False
    return True


@dataclass(frozen=True)
class DigestLine:
    """One line of a digest's table, as shown: rounded so the lines add up (bot.figures)."""

    model: str
    cost: str
    share: str
    spark: str


def digest_lines(digest: Digest) -> tuple[list[DigestLine], DigestLine | None]:
    """The top models, and the rest as "other" (None when nothing), as every surface lists
    them: cents that add up to the total, whole percents that add up to 100."""
    amounts = [line.cost_usd for line in digest.top] + [digest.other_usd]
    cents = figures.cents_that_add_up(amounts, digest.total.value)
    shares = figures.shares_that_add_up(amounts, unit=Decimal(1))
    lines = [
        DigestLine(
            line.model, formatting.money(c), figures.share_words(p, line.cost_usd), line.spark
        )
        for line, c, p in zip(digest.top, cents, shares, strict=False)
    ]
    other = None
    if digest.other_usd:
        other = DigestLine(
            "other",
            formatting.money(cents[-1]),
            figures.share_words(shares[-1], digest.other_usd),
            "",
        )
    return lines, other


def digest_view(digest: Digest) -> dict[str, Any]:
    """What every surface's template shows, worded once: the headline and its marks, the
    comparisons, month to date, the forecast, the table (rows that add up to the total),
    budget and billing lines, what is still settling and when the figures were read; lists
    already cut to fit a chat message (:data:`MAX_NEW_MODELS`). ``digest.txt.j2`` and
    ``slack/digest.json.j2`` render it."""
    total = digest.total
    lines, other = digest_lines(digest)
    cost_width = max([len(line.cost) for line in lines] + [len(other.cost) if other else 0, 1])
    new_models = list(digest.new_models[:MAX_NEW_MODELS])
    if len(digest.new_models) > MAX_NEW_MODELS:
        new_models.append(f"and {len(digest.new_models) - MAX_NEW_MODELS} more")
    failing = [
        _sentence(formatting.clip(line, MAX_LINE_CHARS)) for line in digest.failing[:MAX_FAILING]
    ]
    if digest.connection_label is not None:
        scope = f"“{digest.connection_label}” only"
    else:
        scope = formatting.connections_count(digest.connection_count)
    total_words = figures.figure_words(total)
    if digest.empty:
        headline = digest.title
        fallback = f"{digest.title}: no provider is connected yet."
    else:
        headline = f"{digest.title}: {total_words}"
        fallback = headline
        if digest.previous.current is not None:
            fallback += f" ({digest.previous.words()} vs {digest.compared_with})"
    comparisons = []
    if total.known:
        comparisons.append(_comparison_words(digest.compared_with, digest.previous))
        if digest.average is not None:
            comparisons.append(_comparison_words(f"{AVERAGE_DAYS}-day average", digest.average))
    month_line = None
    if digest.month_to_date is not None and digest.month_vs_last is not None:
        mtd = digest.month_to_date
        span = formatting.day_span(mtd.start, mtd.end)
        vs = digest.month_vs_last
        month_line = f"Month to date ({span}): {figures.figure_words(mtd)}"
        if vs.current is not None and vs.previous is not None:
            month_line += (
                f" vs {formatting.money(vs.previous)} at the same point last month ({vs.words()})"
            )
        if vs.note():
            month_line += f"; {vs.note()}"
    forecast_line = None
    if digest.forecast is not None and digest.every != "month" and digest.days_left:
        forecast_line = (
            f"Month-end forecast for {digest.month_name}, {PACE}: "
            f"{figures.forecast_words(digest.forecast)}"
        )
    budget_line = None
    if digest.budget_usd is not None:
        spent = digest.month_to_date or total
        budget_line = (
            f"{figures.budget_share_words(spent, digest.budget_usd)} of the "
            f"{formatting.money(digest.budget_usd)} budget for {digest.month_name}"
        )
    billing = [
        budget_line,
        prepaid_words(digest.prepaid),
        digest.spending_limit_text,
    ]
    days_note = (
        utc_day_words(digest.period_end, digest.tz)
        if digest.every == "day"
        else f"finished UTC days ({formatting.day_span(digest.period_start, digest.period_end)}),"
        " as on invoices"
    )
    as_of = figures.as_of_words(total.as_of)
    settling = figures.settle_words(total.coverage)
    if settling:
        settling += f" {CORRECTED}"
    return {
        "digest": digest,
        "headline": formatting.fit(headline, 150).rstrip(),
        "fallback": fallback,
        "total_words": total_words,
        "comparisons": comparisons,
        "month_line": month_line,
        "forecast_line": forecast_line,
        "lines": lines,
        "other": other,
        "label_width": min(
            MODEL_WIDTH,
            PHONE_WIDTH - 2 - cost_width - 2 - SHARE_WIDTH - 2 - SPARK_DAYS,
            max([len(line.model) for line in digest.top] + [len("other"), 12]),
        ),
        "cost_width": cost_width,
        "new_models": ", ".join(new_models),
        "billing": [line for line in billing if line],
        "failing": failing,
        "more_failing": len(digest.failing) - len(failing),
        "scope": scope,
        "footer": f"{scope}  ·  {days_note}  ·  {as_of}",
        "settling": settling,
        "freshness": digest.freshness,
        "caveats": list(digest.caveats),
        "correction": digest.correction.words() if digest.correction else None,
        "invoices": [
            (label, *reconciliation_words(r)) for label, r in digest.invoices[:MAX_FAILING]
        ],
        "unfetched": [
            formatting.clip(line, MAX_LINE_CHARS) for line in digest.unfetched[:MAX_FAILING]
        ],
    }


def reconciliation_words(r):
    from bot.reports import reconciliation_words as words

    return words(r)


def prepaid_words(prepaid: Sequence[tuple[str, Decimal]]) -> str | None:
    """``Prepaid credit left: $200.00``, or each team's when there are several."""
    if not prepaid:
        return None
    if len(prepaid) == 1:
        return f"Prepaid credit left: {formatting.money(prepaid[0][1])}"
    each = ", ".join(f"{formatting.money(left)} “{label}”" for label, left in prepaid)
    return f"Prepaid credit left: {each}"


CORRECTED = "If it moves by more than 1% and $1, this message is corrected."


def _comparison_words(label: str, comparison: Comparison) -> str:
    """``vs the day before: +12.5%``, with what it leaves out, or why there is none."""
    if comparison.current is None:
        return f"vs {label}: {comparison.note() or 'no comparison'}"
    text = f"vs {label}: {comparison.words()}"
    if comparison.left_out:
        text += f" ({comparison.note()})"
    return text


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
        Connection.last_success_at,
        BillingState.prepaid_credit_usd,
        BillingState.spending_limit_usd,
        BillingState.invoiced_usd,
        Connection.provider,
        ProviderProfile.display_name,
        ProviderProfile.caveats,
    )
    .outerjoin(BillingState, BillingState.connection_id == Connection.id)
    .outerjoin(ProviderProfile, ProviderProfile.name == Connection.provider)
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


def _empty(every: str, start: date, end: date, title: str, now: datetime, tz: str) -> Digest:
    """No connection to summarise: every figure unknown, nothing compared."""
    nothing = Figure(None, figures.coverage_of(start, end, now, {}, {}), None)
    none = Comparison(None, None, declined="no connection")
    return Digest(
        every=every,
        period_start=start,
        period_end=end,
        title=title,
        total=nothing,
        previous=none,
        average=None,
        month_to_date=None,
        month_vs_last=None,
        forecast=None,
        top=(),
        other_usd=Decimal(0),
        new_models=(),
        budget_usd=None,
        prepaid=(),
        failing=(),
        connection_count=0,
        tz=tz,
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


def _title(every: str, start: date, end: date, name: str) -> str:
    """ "Daily xAI spend · …": ``name`` is the provider's, or "AI" for several (bot.profiles)."""
    if every == "day":
        span = formatting.day_label(end)
    elif every == "week":
        span = formatting.day_span(start, end)
    else:
        span = formatting.month_label(end)
    return f"{TITLES[every]} {name} spend · {span}"


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _month_days(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]
