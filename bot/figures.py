"""One model of a figure, and one definition of each figure every surface shows.

A :class:`Figure` is an amount with everything a reader needs to trust it:
the UTC days it covers, which of those each connection fetched
(:class:`Coverage`), when the data behind it was read, whether it is final
or still settling, and its source (the usage series, an invoice preview, a
past invoice). Reports, digests, alerts, the Home tab, ``status``, exports,
chart titles and webhook JSON all show figures made here, and word their
marks with :func:`figure_words`; none works out a total, a comparison, a
forecast or a coverage mark of its own. README's "What the figures mean"
says the same in a reader's words.

Month to date
    The spend of the 1st of the month (UTC) through a named day. Live
    surfaces (``status``, the Home tab, budget alerts, ``month``) name today:
    today's partial figures are included and said to be ("today so far").
    A digest names the last day of its period, so what it posted stays the
    same figure when a later sync corrects it.

Final and provisional
    A provider keeps adding to a UTC day for hours after it ends (each
    provider declares how long: ``providers.types.settle_hours``). A day is *final* once a sync
    fetched it after that settle time; until then it is *provisional*, and
    so is every figure that counts it. Today is never final ("so far").

Unknown is never $0
    A day no sync fetched for a connection is a gap, not a zero: a figure
    that misses days says "fetched days only", one with nothing fetched is
    "not fetched" (``null`` in JSON); comparisons, forecasts, budget shares
    and spike baselines leave such days out and say so.

Comparisons
    Like for like: over the connections that fetched every day of both
    periods. When that is not all of them, the others are named; when it is
    none, there is no comparison, and the reason is given instead.

The month-end forecast
    At the pace of the last 7 days: for each connection, its spend through
    the last finished UTC day plus the mean of its fetched days among the 7
    finished days ending then, times the days of the month still to come.
    Today's partial figures never set the pace, so every run on one day gives
    the same forecast; it is never below what was already spent (today so
    far included); once the month is over it is the month's total.

A provider's spending limit
    Where a provider has one, it applies to invoiced (postpaid) spend only:
    usage is paid from prepaid credit first, and a limit of $0 means prepaid only. So it is
    shown as "prepaid only", or as headroom on invoiced spend where that is
    known (while prepaid credit is left, nothing is invoiced yet); never as a
    share of all spend. Invoiced spend is the bill so far as the provider
    states it minus the prepaid credit used. Each team's limit is its own:
    shown per team, never summed.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum

from bot.formatting import clock, day_label, day_span, decimal_text, money
from storage.reader import Reader, moment
from storage.reader import day as day_of

PACE_DAYS = 7
PACE = "at the pace of the last 7 days"
"""How the forecast is made, in the words every message uses."""
SETTLE_HOURS = 12
"""How long after a UTC day ends its figures may still change, unless a provider says."""
ZERO = Decimal(0)
CENT = Decimal("0.01")
TENTH = Decimal("0.1")

NOT_FETCHED = "not fetched"
FETCHED_ONLY = "fetched days only"
PROVISIONAL = "provisional"
SO_FAR = "today so far"


class Source(StrEnum):
    """Where a figure's amount comes from."""

    USAGE = "usage"
    """The provider's usage series: daily cost per model, what reports sum."""
    INVOICE_PREVIEW = "invoice_preview"
    """The current billing cycle's invoice as the provider states it so far."""
    INVOICE = "invoice"
    """A closed month's invoice."""


SOURCE_WORDS = {
    Source.USAGE: "usage series",
    Source.INVOICE_PREVIEW: "invoice so far",
    Source.INVOICE: "invoice",
}


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def day_end(day: date) -> datetime:
    """Midnight UTC after ``day``: when it has ended."""
    return day_start(day + timedelta(days=1))


def last_finished_day(today: date) -> date:
    """Forecasts made on ``today`` (UTC) count the days before it."""
    return today - timedelta(days=1)


def month_to_date_span(day: date) -> tuple[date, date]:
    """Month to date through ``day``: the 1st of its month to it."""
    return day.replace(day=1), day


def monday_of(day: date) -> date:
    """The Monday of ``day``'s week: weeks run Monday to Sunday everywhere."""
    return day - timedelta(days=day.weekday())


def week_label(monday: date, start: date, end: date) -> str:
    """A Monday–Sunday week's days within ``start``..``end``: ``23 Nov–29 Nov``, with
    ``(part)`` when the period cuts the week, the year when the period spans two."""
    first, last = max(monday, start), min(monday + timedelta(days=6), end)
    year = f" {last.year}" if start.year != end.year else ""
    span = f"{first.day} {first:%b}" + ("" if first == last else f"–{last.day} {last:%b}")
    part = "" if (first, last) == (monday, monday + timedelta(days=6)) else " (part)"
    return f"{span}{year}{part}"


def weeks_of(start: date, end: date) -> list[tuple[date, date, str]]:
    """The Monday–Sunday weeks of ``start``..``end``, each cut to it: (first, last, label)."""
    weeks = []
    monday = monday_of(start)
    while monday <= end:
        first, last = max(monday, start), min(monday + timedelta(days=6), end)
        weeks.append((first, last, week_label(monday, start, end)))
        monday += timedelta(days=7)
    return weeks


def _days(start: date, end: date) -> Iterable[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


# -- coverage -----------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """Days of a period one connection never fetched."""

    connection_id: int
    connection: str  # its label
    start: date
    end: date  # inclusive


@dataclass(frozen=True)
class Coverage:
    """Which days of a period each connection in scope fetched, and which are settled."""

    start: date
    end: date  # inclusive
    now: datetime  # when the figure was made
    connections: Mapping[int, str]
    """The connections in scope, id -> label."""
    gaps: tuple[Gap, ...] = ()
    provisional: Mapping[int, tuple[date, ...]] = field(default_factory=dict)
    """Finished days of the period a connection fetched before they settled."""
    settles_at: datetime | None = None
    """When the last provisional day settles (a sync after that reads its final figure)."""
    data_from: date | None = None
    """The first day any connection in scope ever fetched."""
    first_days: Mapping[int, date] = field(default_factory=dict)
    """Each connection's first fetched day (read only when some day is missing)."""

    @property
    def today(self) -> date:
        """The UTC day the figure was made on."""
        return self.now.astimezone(UTC).date()

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def complete(self) -> bool:
        """Every connection fetched every day."""
        return not self.gaps

    def complete_for(self, connection_id: int) -> bool:
        return all(gap.connection_id != connection_id for gap in self.gaps)

    @property
    def nothing(self) -> bool:
        """No connection in scope fetched any day of the period (or there is none)."""
        if not self.connections:
            return True
        whole = {(g.connection_id) for g in self.gaps if (g.start, g.end) == (self.start, self.end)}
        return whole == set(self.connections)

    @property
    def running(self) -> bool:
        """The period includes today, which is still going."""
        return self.start <= self.today <= self.end

    @property
    def provisional_days(self) -> tuple[date, ...]:
        return tuple(sorted(set(itertools.chain.from_iterable(self.provisional.values()))))

    @property
    def settled(self) -> bool:
        """No finished day of it is still settling (today aside)."""
        return not self.provisional_days

    @property
    def final(self) -> bool:
        """Every day fetched, ended and settled: the figure will not change."""
        return self.complete and self.settled and not self.running and self.end < self.today

    @property
    def missing_labels(self) -> tuple[str, ...]:
        labels = {gap.connection for gap in self.gaps}
        return tuple(sorted(labels, key=str.lower))

    def fetched_by(self) -> list[int]:
        """How many connections fetched each day of the period, in order."""
        counts = [len(self.connections)] * self.days
        for gap in self.gaps:
            for n in range((gap.start - self.start).days, (gap.end - self.start).days + 1):
                counts[n] -= 1
        return counts

    def fetched(self, connection_id: int, day: date) -> bool:
        if connection_id not in self.connections or not self.start <= day <= self.end:
            return False
        return not any(
            g.connection_id == connection_id and g.start <= day <= g.end for g in self.gaps
        )

    def narrowed(self, connection_ids: Iterable[int]) -> Coverage:
        """The same period for some of its connections."""
        keep = set(connection_ids)
        return Coverage(
            start=self.start,
            end=self.end,
            now=self.now,
            connections={c: label for c, label in self.connections.items() if c in keep},
            gaps=tuple(g for g in self.gaps if g.connection_id in keep),
            provisional={c: d for c, d in self.provisional.items() if c in keep},
            settles_at=self.settles_at,
            data_from=self.data_from,
            first_days={c: d for c, d in self.first_days.items() if c in keep},
        )


def coverage_of(
    start: date,
    end: date,
    now: datetime,
    connections: Mapping[int, str],
    spans: Mapping[int, Sequence[tuple[date, date]]] | None,
    provisional: Mapping[int, Mapping[date, datetime]] | None = None,
) -> Coverage:
    """The coverage of ``start``..``end`` from each connection's fetched spans.

    ``spans`` are each connection's fetched (first, last) days, in any order
    and overlapping, or None when every connection is known to have fetched
    every day (no gaps, nothing to read per connection); ``provisional`` each
    connection's days fetched before they settled, with when each settles.
    Today itself is "so far", never counted as provisional.
    """
    today = now.astimezone(UTC).date()
    gaps: list[Gap] = []
    firsts: dict[int, date] = {}
    for cid, label in connections.items() if spans is not None else ():
        merged = merge_spans(spans.get(cid, ()))
        if merged:
            firsts[cid] = merged[0][0]
        day = start
        for first, last in merged:
            lo, hi = max(first, start), min(last, end)
            if lo > hi:
                continue
            if lo > day:
                gaps.append(Gap(cid, label, day, lo - timedelta(days=1)))
            day = max(day, hi + timedelta(days=1))
        if day <= end:
            gaps.append(Gap(cid, label, day, end))
    gaps.sort(key=lambda g: (g.connection.lower(), g.start))
    settling: dict[int, tuple[date, ...]] = {}
    settles_at = None
    for cid, days in (provisional or {}).items():
        if cid not in connections:
            continue
        inside = tuple(sorted(d for d in days if start <= d <= end and d < today))
        if inside:
            settling[cid] = inside
            latest = max(days[d] for d in inside)
            settles_at = latest if settles_at is None else max(settles_at, latest)
    return Coverage(
        start=start,
        end=end,
        now=now,
        connections=dict(connections),
        gaps=tuple(gaps),
        provisional=settling,
        settles_at=settles_at,
        data_from=min(firsts.values()) if firsts else None,
        first_days=firsts,
    )


def merge_spans(spans: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Overlapping or adjacent (first, last) day spans as one, in order."""
    merged: list[tuple[date, date]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


# -- a figure -----------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """An amount, the days it covers and how far to trust it."""

    amount: Decimal | None
    """None when no connection fetched any of its days: unknown, never $0.00."""
    coverage: Coverage
    as_of: datetime | None
    """When the data behind it was read: the oldest last sync among its connections."""
    parts: Mapping[int, Decimal] = field(default_factory=dict, compare=False)
    """The amount by connection (fetched days only): what like-for-like comparisons read."""
    source: Source = Source.USAGE
    shown: Decimal | None = field(default=None, compare=False)
    """The cents it is written with as one of the parts listed beside their total
    (:meth:`Book.parts`), so the parts add up to the total as written; None: its own
    amount, rounded."""

    @property
    def start(self) -> date:
        return self.coverage.start

    @property
    def end(self) -> date:
        return self.coverage.end

    @property
    def known(self) -> bool:
        return self.amount is not None

    @property
    def value(self) -> Decimal:
        """The amount, $0 when unknown: for arithmetic that has already checked ``known``."""
        return self.amount if self.amount is not None else ZERO

    @property
    def complete(self) -> bool:
        return self.coverage.complete

    @property
    def final(self) -> bool:
        return self.coverage.final

    @property
    def provisional(self) -> bool:
        """Some finished day of it may still change."""
        return not self.coverage.settled

    @property
    def running(self) -> bool:
        return self.coverage.running

    @property
    def money_text(self) -> str:
        """The amount as written: ``$1.01``."""
        return money(self.value if self.shown is None else self.shown)

    @property
    def mark(self) -> str:
        """The coverage mark a table cell carries: ``*`` for fetched days only."""
        return "" if self.complete or not self.known else "*"

    def as_json(self) -> dict[str, object]:
        """The figure for machines: the amount as :func:`decimal_text`, null when unknown."""
        return {
            "usd": amount_json(self.amount),
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "complete": self.complete,
            "final": self.final,
            "provisional_days": [d.isoformat() for d in self.coverage.provisional_days],
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "source": str(self.source),
        }


def figure_words(figure: Figure, *, money_text: str | None = None) -> str:
    """A figure as every surface writes it: ``$963.98``, ``$540.62 (fetched days only)``,
    ``not fetched``, with ``provisional`` when a finished day of it is still settling.

    ``money_text`` replaces the amount as written (a table's rounded cell)."""
    if not figure.known:
        return NOT_FETCHED
    words = money_text if money_text is not None else figure.money_text
    marks = []
    if not figure.complete:
        marks.append(FETCHED_ONLY)
    if figure.provisional:
        marks.append(PROVISIONAL)
    return f"{words} ({', '.join(marks)})" if marks else words


def period_words(figure: Figure) -> str:
    """The days a figure covers, with "today so far" when today is one of them."""
    span = day_span(figure.start, figure.end)
    return f"{span}, {SO_FAR}" if figure.running else span


def settle_words(coverage: Coverage) -> str | None:
    """Why a figure is provisional, in one sentence; None when it is not."""
    days = coverage.provisional_days
    if not days:
        return None
    which = day_label(days[0]) if len(days) == 1 else day_span(days[0], days[-1])
    verb, them = ("is", "it") if len(days) == 1 else ("are", "them")
    settles = coverage.settles_at
    if settles is not None and settles > coverage.now:
        when = f"until {clock(settles)}"
    else:
        when = "until the next sync reads its final figure"
    return f"{which} {verb} {PROVISIONAL}: the provider may still add to {them} {when}."


def as_of_words(as_of: datetime | None) -> str:
    return f"as of {clock(as_of)}"


# -- amounts for machines and for tables ----------------------------------------------


def amount_json(value: Decimal | None) -> str | None:
    """An amount in JSON and CSV: :func:`decimal_text`, or None when unknown."""
    return None if value is None else decimal_text(value)


def cents_that_add_up(amounts: Sequence[Decimal], total: Decimal | None = None) -> list[Decimal]:
    """Each amount rounded to cents so the rounded rows add up to the rounded total.

    Largest remainder: every amount is rounded down, then the cents still
    missing from the total (rounded half up, as :func:`money` shows it) go to
    the amounts that lost most. ``total`` defaults to the amounts' sum; rows
    that are a part of a larger total (a "top five") pass that total's share.
    """
    total = sum(amounts, ZERO) if total is None else total
    target = total.quantize(CENT, rounding=ROUND_HALF_UP)
    floors = [a.quantize(CENT, rounding=ROUND_FLOOR) for a in amounts]
    missing = int(((target - sum(floors, ZERO)) / CENT).to_integral_value())
    missing = max(0, min(missing, len(amounts)))
    order = sorted(range(len(amounts)), key=lambda n: (-(amounts[n] - floors[n]), n))
    for n in order[:missing]:
        floors[n] += CENT
    return floors


def shares_that_add_up(
    amounts: Sequence[Decimal], *, unit: Decimal = TENTH
) -> list[Decimal | None]:
    """Each amount's share of their sum in percent, to ``unit`` (0.1, or 1 where a phone
    table is narrow), adding to exactly 100.

    Largest remainder again; None for every row when the sum is not positive
    (no shares of nothing)."""
    total = sum(amounts, ZERO)
    if total <= 0:
        return [None] * len(amounts)
    exact = [a / total * 100 for a in amounts]
    floors = [e.quantize(unit, rounding=ROUND_FLOOR) for e in exact]
    missing = int(((Decimal(100) - sum(floors, ZERO)) / unit).to_integral_value())
    missing = max(0, min(missing, len(amounts)))
    order = sorted(range(len(amounts)), key=lambda n: (-(exact[n] - floors[n]), n))
    for n in order[:missing]:
        floors[n] += unit
    return floors


def share_words(percent: Decimal | None, amount: Decimal | None = None) -> str:
    """A share from :func:`shares_that_add_up`: ``48.5%``; ``<0.1%`` for a sliver of
    ``amount`` that rounds to nothing."""
    if percent is None:
        return "–"
    if percent == 0 and amount:
        sliver = "<0.1%" if percent.as_tuple().exponent < 0 else "<1%"  # type: ignore[operator]
        return sliver if amount > 0 else f"-{sliver}"
    return f"{percent}%"


# -- comparisons ----------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Two figures set side by side, like for like."""

    current: Decimal | None
    previous: Decimal | None
    left_out: tuple[str, ...] = ()
    """Connections left out of both sides: some day of either period was not fetched."""
    declined: str | None = None
    """Why there is no comparison (then ``current`` and ``previous`` are None)."""

    @property
    def change(self) -> Decimal | None:
        """The relative change, or None when there is none to give."""
        if self.current is None or self.previous is None or self.previous == 0:
            return None
        return (self.current - self.previous) / self.previous

    def words(self) -> str:
        """``+12.5%``, ``-3.0%``, ``new``, ``±0%``, or ``no comparison``."""
        if self.current is None or self.previous is None:
            return "no comparison"
        if self.previous == 0:
            return "new" if self.current else "±0%"
        pct = (self.current - self.previous) / self.previous * 100
        sign = "+" if pct >= 0 else "-"
        return f"{sign}{abs(pct).quantize(TENTH, rounding=ROUND_HALF_UP)}%"

    def note(self) -> str | None:
        """What the comparison leaves out, or why there is none; None when nothing."""
        if self.declined:
            return self.declined
        if self.left_out:
            return f"compared without {_names(self.left_out)} (days not fetched)"
        return None


def compare(current: Figure, previous: Figure, *, per_day: int | None = None) -> Comparison:
    """``current`` against ``previous`` over the connections that fetched every day of both.

    ``per_day``: compare with ``previous``'s daily mean over that many days (a day
    against the average of the 7 before it)."""
    both = set(current.coverage.connections) & set(previous.coverage.connections)
    usable = sorted(
        c for c in both if current.coverage.complete_for(c) and previous.coverage.complete_for(c)
    )
    labels = {**previous.coverage.connections, **current.coverage.connections}
    left_out = tuple(sorted((labels[c] for c in set(labels) - set(usable)), key=str.lower))
    if not usable:
        span = day_span(previous.start, previous.end)
        return Comparison(
            None, None, left_out, declined=f"no comparison: {span} was not fetched in full"
        )
    now = sum((current.parts.get(c, ZERO) for c in usable), ZERO)
    before = sum((previous.parts.get(c, ZERO) for c in usable), ZERO)
    if per_day:
        before /= per_day
    return Comparison(now, before, left_out)


def _names(labels: Sequence[str]) -> str:
    shown = ", ".join(f"“{label}”" for label in labels[:3])
    return shown + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")


# -- the month-end forecast --------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    through: date  # the last finished day counted
    month_to_date: Decimal  # from the 1st of through's month through ``through`` (fetched days)
    daily_pace: Decimal  # the sum of each connection's mean over its fetched pace days
    days_left: int  # days of the month after ``through``
    total: Decimal  # the month-end forecast, never below what was spent
    pace_sums: Mapping[int, Decimal] = field(default_factory=dict, compare=False)
    """The sum of the pace days' costs, by how many days were fetched (the mean's divisor)."""
    complete: bool = True
    """Every connection fetched every day the forecast reads; else it is of fetched days only."""
    left_out: tuple[str, ...] = ()
    """Connections that fetched none of the 7 pace days: their spend to come is not counted."""

    @property
    def month(self) -> date:
        return self.through.replace(day=1)


def month_end_forecast(
    by_day: Mapping[date, Decimal],
    through: date,
    *,
    fetched: Iterable[date] | None = None,
    spent: Decimal | None = None,
) -> Forecast:
    """One connection's (or one series') forecast for ``through``'s month.

    ``by_day`` maps days to costs; ``fetched`` names the days fetched (None:
    every day is, a missing day being $0 of spend). The pace is the mean of
    the fetched days among the 7 ending with ``through``. ``spent``, what the
    month has cost so far (today included), is the forecast's floor.
    """
    first = through.replace(day=1)
    known = None if fetched is None else set(fetched)
    window = [through - timedelta(days=n) for n in range(PACE_DAYS)]
    pace_days = window if known is None else [d for d in window if d in known]
    month_to_date = sum((c for d, c in by_day.items() if first <= d <= through), ZERO)
    pace = (
        sum((by_day.get(d, ZERO) for d in pace_days), ZERO) / len(pace_days) if pace_days else ZERO
    )
    days_left = calendar.monthrange(through.year, through.month)[1] - through.day
    complete = known is None or all(d in known for d in _days(first, through))
    complete = complete and len(pace_days) == PACE_DAYS
    total = month_to_date + pace * days_left
    if spent is not None:
        total = max(total, spent)
    pace_sum = sum((by_day.get(d, ZERO) for d in pace_days), ZERO)
    sums = {len(pace_days): pace_sum} if pace_days else {}
    return Forecast(through, month_to_date, pace, days_left, total, sums, complete)


def combine_forecasts(
    forecasts: Mapping[int, Forecast], labels: Mapping[int, str], spent: Decimal, through: date
) -> Forecast:
    """A scope's forecast: the sum of its connections', never below what it spent."""
    days_left = calendar.monthrange(through.year, through.month)[1] - through.day
    parts = list(forecasts.values())
    # Each connection's mean divides its own pace days; summed per divisor first, so a
    # scope whose connections all fetched all 7 days is exactly its days' mean.
    sums: dict[int, Decimal] = {}
    for f in parts:
        for days, amount in f.pace_sums.items():
            sums[days] = sums.get(days, ZERO) + amount
    pace = sum((amount / days for days, amount in sorted(sums.items())), ZERO)
    month_to_date = sum((f.month_to_date for f in parts), ZERO)
    return Forecast(
        through=through,
        month_to_date=month_to_date,
        daily_pace=pace,
        days_left=days_left,
        total=max(month_to_date + pace * days_left, spent),
        pace_sums=sums,
        complete=all(f.complete for f in parts) and set(forecasts) == set(labels),
        left_out=tuple(sorted((labels[c] for c in labels if c not in forecasts), key=str.lower)),
    )


def forecast_words(forecast: Forecast) -> str:
    """``$4,308.55`` with the marks a forecast carries."""
    text = money(forecast.total)
    return text if forecast.complete else f"{text} ({FETCHED_ONLY})"


# -- budgets -------------------------------------------------------------------------------


def budget_share_words(spent: Figure, budget: Decimal) -> str:
    """How much of a budget a month to date used, rounded down (``100%`` only once reached);
    ``at least`` when some day was not fetched."""
    from bot.formatting import percent_reached

    text = percent_reached(spent.value, budget)
    return text if spent.complete else f"at least {text}"


# -- a workspace's figures, read once -------------------------------------------------------


Scope = int | frozenset[int] | None
"""A figure's connections: one, several, or (None) every connection of the book."""


class Book:
    """A workspace's daily costs, coverage and settling over a window, read once.

    Every figure a digest, an alert, ``status`` or the Home tab shows comes
    from a book: a handful of statements, however many figures are asked of
    it, and each worked out by the definitions above.
    """

    def __init__(
        self,
        reader: Reader,
        workspace_id: int,
        now: datetime,
        start: date,
        end: date,
        *,
        connection_ids: Iterable[int] | None = None,
        connections: Iterable[tuple[int, str, datetime | None]] | None = None,
    ) -> None:
        """``connections``: the workspace's (id, label, last_success_at), when the caller
        has read them already."""
        self.now = now
        self.today = now.astimezone(UTC).date()
        self.start, self.end = start, end
        self.workspace_id = workspace_id
        wanted = None if connection_ids is None else set(connection_ids)
        self.labels: dict[int, str] = {}
        self.last_success: dict[int, datetime | None] = {}
        if connections is None:
            connections = reader.rows(
                "SELECT id, label, last_success_at FROM connections WHERE workspace_id = :w",
                w=workspace_id,
            )
        for cid, label, last_success in connections:
            if wanted is None or cid in wanted:
                self.labels[cid] = label
                self.last_success[cid] = moment(last_success)
        self.costs: dict[int, dict[date, Decimal]] = {cid: {} for cid in self.labels}
        from storage.reader import usd

        for cid, day, cost in reader.rows(
            "SELECT connection_id, day, SUM(cost) FROM daily_costs "
            "WHERE workspace_id = :w AND day >= :start AND day <= :end "
            "GROUP BY connection_id, day",
            w=workspace_id,
            start=start,
            end=end,
        ):
            if cid in self.costs:
                self.costs[cid][day_of(day)] = usd(cost) or ZERO
        self.spans: dict[int, list[tuple[date, date]]] = {cid: [] for cid in self.labels}
        for cid, first, last in reader.rows(
            "SELECT connection_id, first_day, last_day FROM fetched_spans WHERE workspace_id = :w",
            w=workspace_id,
        ):
            if cid in self.spans:
                self.spans[cid].append((day_of(first), day_of(last)))
        self.provisional = read_provisional(reader, workspace_id, start, end, set(self.labels))

    def scope_ids(self, scope: Scope) -> list[int]:
        if scope is None:
            return sorted(self.labels)
        ids = {scope} if isinstance(scope, int) else set(scope)
        return sorted(c for c in ids if c in self.labels)

    def _check(self, start: date, end: date) -> None:
        if start < self.start or end > self.end:
            raise ValueError(f"the book holds {self.start}..{self.end}, not {start}..{end}")

    def coverage(self, start: date, end: date, scope: Scope = None) -> Coverage:
        ids = self.scope_ids(scope)
        return coverage_of(
            start,
            end,
            self.now,
            {c: self.labels[c] for c in ids},
            {c: self.spans[c] for c in ids},
            {c: self.provisional.get(c, {}) for c in ids},
        )

    def as_of(self, scope: Scope = None) -> datetime | None:
        """The oldest last successful sync in scope (None: one never synced)."""
        moments = [self.last_success[c] for c in self.scope_ids(scope)]
        if not moments or any(m is None for m in moments):
            return None
        return min(moments)  # type: ignore[type-var]

    def figure(self, start: date, end: date, scope: Scope = None) -> Figure:
        """What the scope spent on ``start``..``end``: fetched days only, marked so."""
        self._check(start, end)
        coverage = self.coverage(start, end, scope)
        parts = {
            c: sum((cost for d, cost in self.costs[c].items() if start <= d <= end), ZERO)
            for c in coverage.connections
        }
        amount = None if coverage.nothing else sum(parts.values(), ZERO)
        return Figure(amount, coverage, self.as_of(scope), parts)

    def month_to_date(self, through: date | None = None, scope: Scope = None) -> Figure:
        """Month to date through ``through`` (default today: today so far included)."""
        return self.figure(*month_to_date_span(through or self.today), scope)

    def parts(self, start: date, end: date) -> dict[int, Figure]:
        """Each connection's figure for ``start``..``end``, as a list of them beside the
        workspace's writes it: in cents that add up to the workspace's figure as written
        (:func:`cents_that_add_up`, as every table's rows do), its own marks kept."""
        each = {c: self.figure(start, end, c) for c in self.scope_ids(None)}
        known = [c for c, f in each.items() if f.known]
        cents = cents_that_add_up([each[c].value for c in known])
        for c, shown in zip(known, cents, strict=True):
            each[c] = replace(each[c], shown=shown)
        return each

    def daily(
        self, start: date, end: date, scope: Scope = None
    ) -> list[tuple[date, Decimal | None]]:
        """Each day's spend, None for a day no connection in scope fetched."""
        self._check(start, end)
        ids = self.scope_ids(scope)
        coverage = self.coverage(start, end, scope)
        counts = coverage.fetched_by()
        out = []
        for n, day in enumerate(_days(start, end)):
            if ids and counts[n] == 0:
                out.append((day, None))
            else:
                out.append((day, sum((self.costs[c].get(day, ZERO) for c in ids), ZERO)))
        return out

    def fetched_days(self, connection_id: int, start: date, end: date) -> set[date]:
        coverage = self.coverage(start, end, connection_id)
        return {d for d in _days(start, end) if coverage.fetched(connection_id, d)}

    def forecast(
        self,
        scope: Scope = None,
        *,
        through: date | None = None,
        spent_through: date | None = None,
    ) -> Forecast:
        """The month-end forecast (see the module's definition) for the scope.

        ``through``: the last finished day it counts (default yesterday).
        ``spent_through``: the last day of what was spent, its floor (default
        today, so far, while ``through``'s month is today's; a digest passes
        its own last day, so its forecast reads only its own days).
        """
        through = through or last_finished_day(self.today)
        first = through.replace(day=1)
        self._check(min(first, through - timedelta(days=PACE_DAYS - 1)), through)
        ids = self.scope_ids(scope)
        if spent_through is None:
            same_month = (through.year, through.month) == (self.today.year, self.today.month)
            spent_through = self.today if same_month else through
        spent_to = min(spent_through, self.end)
        forecasts: dict[int, Forecast] = {}
        for c in ids:
            pace_start = through - timedelta(days=PACE_DAYS - 1)
            fetched = self.fetched_days(c, min(first, pace_start), through)
            if not any(d in fetched for d in _days(pace_start, through)):
                continue  # no pace: this connection's days to come are unknown
            forecasts[c] = month_end_forecast(self.costs[c], through, fetched=fetched)
        spent = self.figure(first, spent_to, scope).value if ids else ZERO
        return combine_forecasts(forecasts, {c: self.labels[c] for c in ids}, spent, through)


def read_provisional(
    reader: Reader, workspace_id: int, start: date, end: date, connection_ids: set[int] | None
) -> dict[int, dict[date, datetime]]:
    """Each connection's days of ``start``..``end`` fetched before they settled."""
    found: dict[int, dict[date, datetime]] = {}
    for cid, day, settles_at in reader.rows(
        "SELECT connection_id, day, settles_at FROM provisional_days "
        "WHERE workspace_id = :w AND day >= :start AND day <= :end",
        w=workspace_id,
        start=start,
        end=end,
    ):
        if connection_ids is None or cid in connection_ids:
            found.setdefault(cid, {})[day_of(day)] = moment(settles_at)
    return found


# -- a provider's spending limit ---------------------------------------------------------


@dataclass(frozen=True)
class TeamLimit:
    """One account's monthly spending limit at its provider, with what tells its
    invoiced spend."""

    limit: Decimal
    prepaid_left: Decimal | None = None
    invoiced: Decimal | None = None  # the bill so far minus prepaid credit used, when known
    label: str = ""
    """The connection's name, to tell the teams apart when several are shown."""
    provider: str = ""
    """The provider's display name (``bot.profiles``): whose limit it is, in its words."""

    @property
    def invoiced_spend(self) -> Decimal | None:
        if self.invoiced is not None:
            return self.invoiced
        if self.prepaid_left is not None and self.prepaid_left > 0:
            return ZERO  # prepaid credit is used first: nothing invoiced yet
        return None

    @property
    def headroom(self) -> Decimal | None:
        """What may still be invoiced this month: the limit less the invoiced spend, never
        below $0 (a prepaid-only team has none); None when the invoiced spend is unknown."""
        if self.limit <= 0:
            return ZERO
        spend = self.invoiced_spend
        return None if spend is None else max(self.limit - spend, ZERO)


def spending_limit_lines(teams: Iterable[TeamLimit]) -> tuple[str, ...]:
    """A provider's own limit, one phrase per team: "prepaid only", or the headroom on invoiced
    spend. Never summed across teams: a team that ran out must not hide behind another's
    room. Teams are named (their label, else "team N") when there are several."""
    teams = list(teams)
    lines = []
    for number, team in enumerate(teams, start=1):
        name = ""
        if len(teams) > 1:
            name = f" for “{team.label}”" if team.label else f" for team {number}"
        whose = f"{team.provider} spending limit" if team.provider else "Spending limit"
        lines.append(f"{whose}{name}: {_limit_phrase(team)}")
    return tuple(lines)


def spending_limit_text(teams: Iterable[TeamLimit]) -> str | None:
    """:func:`spending_limit_lines` as one sentence; None when no team has a limit."""
    return "; ".join(spending_limit_lines(teams)) or None


def _limit_phrase(team: TeamLimit) -> str:
    if team.limit <= 0:
        if team.prepaid_left is None:
            return "prepaid only (usage stops when prepaid credit runs out)"
        if team.prepaid_left <= 0:
            return "prepaid only, and its prepaid credit is used up (usage has stopped)"
        return (
            f"prepaid only, {money(team.prepaid_left)} prepaid credit left "
            "(usage stops when it runs out)"
        )
    text = f"{money(team.limit)} a month on invoiced spend"
    headroom = team.headroom
    if headroom is None:
        return text + ", after prepaid credit"
    text += f", {money(headroom)} headroom"
    if headroom <= 0:
        who = team.provider or "the provider"
        text += f" (reached: {who} stops serving once prepaid credit is gone)"
    return text
