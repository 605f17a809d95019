"""Cost reports: a period, a grouping and filters in; plain data out.

The terminal and Slack render the same :class:`Report`. Days are UTC days,
as on the providers' invoices; sums happen in SQL on exact integer nano-dollars.
A report words its providers' figures in their own words (their reach, their
caveats), read from the store (:mod:`bot.profiles`), never by loading a provider.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from bot import profiles
from bot.costs import cost_params, cost_query, cost_scope, cost_sql, cost_values
from bot.figures import (
    NOT_FETCHED,
    Book,
    Coverage,
    Figure,
    Forecast,
    Gap,
    amount_json,
    cents_that_add_up,
    coverage_of,
    merge_spans,
    read_provisional,
    share_words,
    shares_that_add_up,
    week_label,
)
from bot.formatting import clock, day_label, day_span, decimal_text, money, money_change
from bot.grammar import Command, UsageError, parse_day
from storage.reader import (
    STRING_AGG,
    ConnectionRef,
    Reader,
    SessionReader,
    moment,
    reader_of,
    usd,
)
from storage.reader import day as day_of

if TYPE_CHECKING:  # SQLAlchemy is imported only by what runs in a session (issue 9)
    from sqlalchemy.orm import Session

    from storage.models import Connection

NO_KEY = "(no key breakdown)"


def nothing_connected(prefix: str, *, in_slack: bool = False) -> str:
    """What a report, chart or export says with no connection at all: not "$0.00", but the
    first thing to do. ``prefix`` is how the surface spells a command (``xai-usage``)."""
    who = "A workspace admin connects" if in_slack else "Connect"
    return (
        "Nothing is connected yet, so there are no costs to show. "
        f"{who} a provider's account with `{prefix} connect`; reports fill in from its backfill."
    )


EARLIEST_DAY = date(2023, 1, 1)
"""The earliest day a report covers: no provider keeps costs that old (they keep months)."""


@dataclass(frozen=True)
class Period:
    name: str
    start: date
    end: date  # inclusive
    title: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def resolve_period(command: Command, today: date) -> Period:
    name = command.name
    if name == "today":
        return Period(name, today, today, f"Today, {day_label(today)}")
    if name == "yesterday":
        day = today - timedelta(days=1)
        return Period(name, day, day, f"Yesterday, {day_label(day)}")
    if name == "week":
        start = today - timedelta(days=6)
        return Period(name, start, today, f"Last 7 days, {day_span(start, today)}")
    if name == "month":
        start = today.replace(day=1)
        return Period(name, start, today, f"{today:%B %Y} to date")
    if name == "last-month":
        end = today.replace(day=1) - timedelta(days=1)
        return Period(name, end.replace(day=1), end, f"{end:%B %Y}")
    if name == "range":
        start, end = _within_data(*(parse_day(a) for a in command.args), today=today)
        return Period(name, start, end, day_span(start, end))
    raise ValueError(f"{name} is not a report")


def _within_data(start: date, end: date, *, today: date) -> tuple[date, date]:
    """A range cut to the days any connection can have costs for; refused if none are left.

    A report costs what its days cost, so `range 0001-01-01 9999-12-30` must
    not walk 3.6 million of them. The earliest day is xAI's API; the latest is
    tomorrow (UTC), the furthest a day anywhere on Earth is ahead of UTC's today.
    The period's title and JSON show the days actually covered.
    """
    latest = today + timedelta(days=1)
    if end < EARLIEST_DAY or start > latest:
        raise UsageError(
            f"No costs can fall between {start} and {end}: reports cover {EARLIEST_DAY} "
            f"to {latest} (tomorrow, UTC)."
        )
    return max(start, EARLIEST_DAY), min(end, latest)


@dataclass(frozen=True)
class ReportRow:
    key: str
    label: str
    cost_usd: Decimal | None  # None: no connection fetched any day of it (never $0.00)
    share: Decimal | None  # of the total, 0..1
    complete: bool = True
    """False when some day of the row was not fetched for some connection."""


@dataclass(frozen=True)
class CoverageNote:
    """Unfetched days shared by some connections, and whether a sync can reach them."""

    labels: tuple[str, ...]
    start: date
    end: date
    data_from: date | None
    """The first day these connections ever fetched (None: nothing yet)."""
    reachable_from: date
    """The oldest day a sync can fetch today (the provider's backfill limit)."""
    max_days: int

    @property
    def span(self) -> str:
        return day_span(self.start, self.end)

    @property
    def future(self) -> bool:
        """After today: nothing to fetch yet."""
        return self.start > self.reachable_from + timedelta(days=self.max_days - 1)

    @property
    def fetch_days(self) -> int | None:
        """``sync --days N`` that fetches what can be fetched of it; None if nothing can."""
        today = self.reachable_from + timedelta(days=self.max_days - 1)
        if self.future or self.end < self.reachable_from:
            return None
        return (today - max(self.start, self.reachable_from)).days + 1

    @property
    def beyond_reach(self) -> bool:
        """Some of it is older than any sync can fetch."""
        return self.start < self.reachable_from


@dataclass(frozen=True)
class Report:
    period: Period
    group_by: str
    total: Figure
    """The period's total: its amount, coverage, settling and as-of (bot.figures)."""
    rows: tuple[ReportRow, ...]
    connection_labels: tuple[str, ...]
    model_pattern: str | None = None
    problems: tuple[str, ...] = field(default=())
    coverage_notes: tuple[CoverageNote, ...] = ()
    invoices: tuple[tuple[str, Reconciliation], ...] = ()
    """A closed month's: each connection's invoice beside its usage series (as ``status``)."""
    caveats: tuple[str, ...] = ()
    """What the providers in scope say every report of their figures must state."""
    scope_name: str = profiles.SEVERAL
    """The one provider's display name ("xAI"), or "AI" for several: "xAI spend"."""

    @property
    def total_usd(self) -> Decimal:
        """The total of the fetched days ($0 when nothing was: see ``nothing_fetched``)."""
        return self.total.value

    @property
    def as_of(self) -> datetime | None:
        return self.total.as_of

    @property
    def partial(self) -> bool:
        """Today is one of its days: its figures keep growing."""
        return self.total.running

    @property
    def uncovered(self) -> tuple[Gap, ...]:
        """Days of the period a connection never fetched."""
        return self.total.coverage.gaps

    @property
    def nothing_fetched(self) -> bool:
        """Connections exist but none fetched any day of the period."""
        return not self.total.known

    @property
    def data_from(self) -> date | None:
        """The first day any of the report's connections fetched."""
        return self.total.coverage.data_from

    @property
    def empty(self) -> bool:
        return not self.connection_labels

    def table(self) -> list[Cells]:
        """Each row with its cost and share as a table shows them (:func:`table_cells`)."""
        return table_cells(self.rows, self.total)


@dataclass(frozen=True)
class Cells:
    """A table row as shown: its cost in cents and share in tenths of a percent, rounded so
    the shown rows add up to the shown total and to 100.0%."""

    row: ReportRow
    cents: Decimal | None  # None: not fetched
    share: Decimal | None  # percent, to 0.1

    @property
    def label(self) -> str:
        return self.row.label

    @property
    def cost(self) -> str:
        """``$12.34``, starred when some day was not fetched, ``not fetched`` when none was."""
        if self.cents is None:
            return NOT_FETCHED
        exact = self.row.cost_usd
        text = money(self.cents) if self.cents or not exact else money(exact)
        return text + ("" if self.row.complete else "*")

    @property
    def share_text(self) -> str:
        return "" if self.cents is None else share_words(self.share, self.row.cost_usd)


def table_cells(rows: Sequence[ReportRow], total: Figure) -> list[Cells]:
    """Rows as every table (terminal, Slack, PDF, digests) shows them: largest remainder,
    so the rows add up to the total as shown and the shares to 100.0%; a subset of a
    total (a filtered report's rows are all of it) adds up to its own sum."""
    known = [r for r in rows if r.cost_usd is not None]
    amounts = [r.cost_usd or Decimal(0) for r in known]
    whole = sum(amounts, Decimal(0))
    cents = cents_that_add_up(amounts, total.value if whole == total.value else whole)
    shares = shares_that_add_up(amounts)
    shown = {id(r): (c, p) for r, c, p in zip(known, cents, shares, strict=True)}
    return [Cells(r, *shown.get(id(r), (None, None))) for r in rows]


_ITEM, _PAIR = "\x1f", "\x1e"
"""Separators no label can contain: labels refuse control characters (grammar.label_problem)."""
_FAILING = "status IN ('error', 'failing')"
"""``ConnectionStatus.ERROR`` and ``FAILING``: connections a report warns about."""
_CONNECTION_SCOPES = {
    "workspace": "workspace_id = :workspace_id",
    "connection": "id = :connection_id",
}


@functools.cache
def _coverage_sql(scope: str, dialect: str) -> str:
    """One row on the connections a report covers.

    `today` is the command people run most, and a workspace may have a
    thousand connections: loading them as rows (a datetime parsed for each)
    to show a count, the oldest sync and the few failing cost a one-day report
    about 10 ms, several times its aggregate. The database folds them into one
    row instead (GROUP_CONCAT on SQLite, string_agg on PostgreSQL).
    """
    agg = STRING_AGG[dialect]
    return (
        f"SELECT count(*) AS connections, "
        f"{agg}(CAST(id AS VARCHAR(20)) || :pair || label, :item) AS labels, "
        "min(last_success_at) AS as_of, "
        f"count(*) FILTER (WHERE {_FAILING}) AS failing_count, "
        f"{agg}(CASE WHEN {_FAILING} THEN label || :pair || coalesce(status_reason, '') END, "
        ":item) AS failing "
        f"FROM connections WHERE {_CONNECTION_SCOPES[scope]}"
    )


@dataclass(frozen=True)
class _Scope:
    """The connections a report covers: labels, oldest sync, those failing."""

    connections: dict[int, str]  # id -> label
    as_of: datetime | None
    failing: tuple[tuple[str, str], ...]  # (label, reason)
    spans: tuple | None = None
    """The period's (covered, data_from) row (:data:`_SPANS_SQL`) where it came along."""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.connections.values())


def _scope_of(
    reader: Reader, row: Sequence, scope: str, scope_id: int, *, spans: tuple | None = None
) -> _Scope:
    """The connections a report covers, from their one row (see _coverage_sql); ``spans``,
    the period's span count where the same statement brought it."""
    count, pairs, as_of, failing_count, failing = row[:5]
    failing = tuple(tuple(f.split(_PAIR, 1)) for f in failing.split(_ITEM)) if failing else ()
    items = pairs.count(_ITEM) + 1 if pairs else 0
    legacy = bool(pairs) and pairs.count(_PAIR) != items  # a label older than the rule
    if legacy or items != count or len(failing) != failing_count:
        rows = reader.rows(
            f"SELECT id, label, status_reason, {_FAILING} FROM connections "
            f"WHERE {_CONNECTION_SCOPES[scope]}",
            **{f"{scope}_id": scope_id},
        )
        connections = {cid: label for cid, label, _, _ in rows}
        failing = tuple((label, reason or "") for _, label, reason, bad in rows if bad)
    else:  # "id␞label␟id␞label…", read in one split: a thousand connections, 0.25 ms
        flat = pairs.replace(_ITEM, _PAIR).split(_PAIR) if pairs else []
        connections = dict(zip(map(int, flat[0::2]), flat[1::2], strict=True))
    return _Scope(connections, moment(as_of), failing, spans)


@functools.cache
def _workspace_report_sql(group: tuple[str, ...], dialect: str) -> str:
    """A whole workspace's coverage and costs in one statement.

    The reports people run most (`today`, `week`, `month`, no filter) cost one
    round trip, as the hand-written aggregate does: the costs ride on the
    coverage row (LEFT JOIN ... ON 1 = 1, so a period without costs keeps it).
    """
    return (
        f"SELECT coverage.*, spans.*, costs.* "
        f"FROM ({_coverage_sql('workspace', dialect)}) AS coverage "
        f"CROSS JOIN ({_SPANS_SQL.format(scope='workspace_id = :workspace_id')}) AS spans "
        f"LEFT OUTER JOIN ({cost_sql(group)}) AS costs ON 1 = 1"
    )


_SPANS_SQL = (
    "SELECT count(DISTINCT CASE WHEN first_day <= :start AND last_day >= :end "
    "THEN connection_id END) AS covered, min(first_day) AS data_from "
    "FROM fetched_spans WHERE {scope}"
)
"""How many connections in scope fetched the whole period, and the first day any did."""


_GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "connection": ("connection_id",),
    "key": (),  # _key_rows has its own query
    "day": ("day",),
    "week": ("day",),
    "month": ("day",),
}


def _scope_and_costs(
    reader: Reader,
    workspace_id: int,
    period: Period,
    group_by: str,
    connection: ConnectionRef | None,
    filters: dict,
) -> tuple[_Scope, list]:
    group = _GROUP_COLUMNS.get(group_by, ("day",))
    labels = {"item": _ITEM, "pair": _PAIR}
    if group and connection is None and not filters["model_pattern"]:
        params = {"workspace_id": workspace_id, "start": period.start, "end": period.end}
        rows = reader.rows(_workspace_report_sql(group, reader.dialect), **params, **labels)
        costs = [
            (cost_values(row[7:-1], group), usd(row[-1])) for row in rows if row[-1] is not None
        ]
        scope = _scope_of(reader, rows[0], "workspace", workspace_id, spans=tuple(rows[0][5:7]))
        return scope, costs
    scope, scope_id = (
        ("workspace", workspace_id) if connection is None else ("connection", connection.id)
    )
    (row,) = reader.rows(
        _coverage_sql(scope, reader.dialect), **{f"{scope}_id": scope_id}, **labels
    )
    costs = _by(reader, workspace_id, period, group, filters) if group else []
    return _scope_of(reader, row, scope, scope_id), costs


def build_report(
    session: Session | Reader,
    workspace_id: int,
    period: Period,
    group_by: str = "model",
    *,
    connection: Connection | ConnectionRef | None = None,
    model_pattern: str | None = None,
    now: datetime | None = None,
) -> Report:
    now = now or datetime.now(UTC)
    reader = reader_of(session)
    filters = {
        "connection_id": connection.id if connection else None,
        "model_pattern": model_pattern,
    }
    scope, raw = _scope_and_costs(reader, workspace_id, period, group_by, connection, filters)
    if group_by == "model":
        rows = [(model, model, cost) for (model,), cost in raw]
    elif group_by == "connection":
        names = dict(_connection_labels(reader, workspace_id))
        rows = [(names.get(cid, str(cid)),) * 2 + (cost,) for (cid,), cost in raw]
    elif group_by == "key":
        several = len(scope.labels) > 1
        rows = _key_rows(reader, workspace_id, period, filters, several=several)
    else:
        rows = _time_rows(dict((day, cost) for (day,), cost in raw), period, group_by)
    coverage = read_coverage(
        reader, workspace_id, period, scope.connections, connection, now, spans=scope.spans
    )
    total = sum((cost for _, _, cost in rows), Decimal(0))
    if group_by in ("model", "connection", "key"):
        rows.sort(key=lambda r: (-r[2], r[1]))
    report_rows = tuple(
        ReportRow(key, label, cost, (cost / total) if total else Decimal(0))
        for key, label, cost in rows
    )
    report_rows = _mark(report_rows, group_by, coverage, period)
    problems = tuple(
        f"“{label}” is not syncing ({reason}): its figures may be out of date."
        for label, reason in scope.failing
    )
    month = closed_month(period, now.astimezone(UTC).date())
    invoices: tuple[tuple[str, Reconciliation], ...] = ()
    if month is not None and isinstance(reader, SessionReader) and not model_pattern:
        invoices = month_invoices(reader.session, workspace_id, month, now, connection)
    words = profiles.in_scope(reader, workspace_id, connection.id if connection else None)
    return Report(
        period=period,
        group_by=group_by,
        total=Figure(None if coverage.nothing else total, coverage, scope.as_of),
        rows=report_rows,
        connection_labels=scope.labels,
        model_pattern=model_pattern,
        problems=problems,
        coverage_notes=coverage_notes(coverage, _reach(reader, coverage, words)),
        invoices=invoices,
        caveats=words.caveats,
        scope_name=words.scope_name,
    )


def closed_month(period: Period, today: date) -> date | None:
    """The first day of the calendar month ``period`` is, when it is a whole month that
    has ended (``last-month``, or a range of exactly such a month); else None."""
    first = period.start
    if first.day != 1 or period.end != _month_end(first):
        return None
    return first if period.end < today.replace(day=1) else None


def month_invoices(
    session: Session,
    workspace_id: int,
    month: date,
    now: datetime,
    connection: Connection | ConnectionRef | None = None,
) -> tuple[tuple[str, Reconciliation], ...]:
    """Each connection's bill for ``month`` beside its usage series, by label."""
    ids = None if connection is None else [connection.id]
    found = reconcile_month(session, workspace_id, month, now.astimezone(UTC).date(), ids)
    labels = dict(_connection_labels(SessionReader(session), workspace_id))
    return tuple(
        sorted(((labels.get(c, str(c)), r) for c, r in found.items()), key=lambda x: x[0].lower())
    )


def _reach(reader: Reader, coverage: Coverage, words: profiles.Profiles) -> dict[int, int]:
    """How many days back a sync can reach, for each connection with a gap (by its
    provider's profile): read only when some day is missing."""
    if not coverage.gaps:
        return {}
    provider = profiles.providers_of(reader, (g.connection_id for g in coverage.gaps))
    return {cid: words.get(name).max_backfill_days for cid, name in provider.items()}


def _by(reader: Reader, workspace_id: int, period: Period, group, filters) -> list:
    connection_id, pattern = filters["connection_id"], filters["model_pattern"]
    sql = cost_sql(group, cost_scope(connection_id), model_filter=bool(pattern))
    params = cost_params(workspace_id, period.start, period.end, connection_id, pattern)
    return [
        (cost_values(row[:-1], group), usd(row[-1]) or Decimal(0))
        for row in reader.rows(sql, **params)
    ]


def _connection_labels(reader: Reader, workspace_id: int) -> list[tuple[int, str]]:
    return reader.rows(
        "SELECT id, label FROM connections WHERE workspace_id = :workspace_id",
        workspace_id=workspace_id,
    )


def _key_rows(reader: Reader, workspace_id, period, filters, *, several: bool) -> list:
    raw = _by(reader, workspace_id, period, ("connection_id", "api_key_id"), filters)
    names = {
        (cid, key_id): name
        for cid, key_id, name in reader.rows(
            "SELECT n.connection_id, n.api_key_id, n.name FROM api_key_names AS n "
            "JOIN connections AS c ON c.id = n.connection_id "
            "WHERE c.workspace_id = :workspace_id",
            workspace_id=workspace_id,
        )
    }
    labels = dict(_connection_labels(reader, workspace_id))
    rows = []
    for (cid, key_id), cost in raw:
        label = names.get((cid, key_id), key_id) if key_id else NO_KEY
        if several:  # the key's own name first: a table cut to a phone's width keeps it
            label = f"{label} ({labels.get(cid, cid)})"
        rows.append((key_id or "", label, cost))
    return rows


def _time_rows(by_day: dict[date, Decimal], period: Period, group_by: str) -> list:
    """Every day (week, month) of the period, zero ones included, in order.

    One step per row shown, and one per day that has costs: a 90-day report by
    month takes 3 steps, not 90.
    """
    buckets: dict[str, tuple[str, Decimal]] = {}
    step = period.start
    while step <= period.end:
        key, label, step_after = _bucket(step, group_by, period)
        buckets[key] = (label, Decimal(0))
        if step_after > period.end:
            break
        step = step_after
    for day, cost in by_day.items():
        if period.start <= day <= period.end:
            key = _bucket(day, group_by, period)[0]
            label, previous = buckets[key]
            buckets[key] = (label, previous + cost)
    return [(key, label, cost) for key, (label, cost) in buckets.items()]


def _bucket(day: date, group_by: str, period: Period) -> tuple[str, str, date]:
    """The row a day falls in: its key, its label, and the first day of the next row."""
    if group_by == "day":
        return day.isoformat(), day_label(day), day + timedelta(days=1)
    if group_by == "week":
        monday = day - timedelta(days=day.weekday())
        return (
            monday.isoformat(),
            week_label(monday, period.start, period.end),
            monday + timedelta(days=7),
        )
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return f"{day:%Y-%m}", f"{calendar.month_name[day.month]} {day.year}", following


def read_coverage(
    reader: Reader,
    workspace_id: int,
    period: Period,
    included: Mapping[int, str],
    connection: ConnectionRef | None,
    now: datetime,
    *,
    spans: tuple | None = None,
) -> Coverage:
    """Which days of the period the report's connections (``included``: id -> label)
    fetched, and which still settle.

    The usual case, every connection fetched the whole period, costs one row
    back (``spans``, where the report's own statement brought it along): a
    thousand connections' spans are read only when some day is missing.
    """
    today = now.astimezone(UTC).date()
    if connection is not None:
        scope, params = "connection_id = :scope", {"scope": connection.id}
    else:
        scope, params = "workspace_id = :scope", {"scope": workspace_id}
    if spans is None:
        (spans,) = reader.rows(
            _SPANS_SQL.format(scope=scope), start=period.start, end=period.end, **params
        )
    covered, data_from = spans
    ids = set(included)
    # Today is "so far", never provisional: a one-day report of today reads no settling.
    settling = (
        read_provisional(reader, workspace_id, period.start, period.end, ids)
        if period.start < today
        else {}
    )
    if included and covered == len(included):
        coverage = coverage_of(period.start, period.end, now, included, None, settling)
        return replace(coverage, data_from=day_of(data_from))
    fetched: dict[int, list[tuple[date, date]]] = {cid: [] for cid in ids}
    for cid, first, last in reader.rows(
        f"SELECT connection_id, first_day, last_day FROM fetched_spans WHERE {scope}", **params
    ):
        if cid in fetched:
            fetched[cid].append((day_of(first), day_of(last)))
    return coverage_of(period.start, period.end, now, included, fetched, settling)


def coverage_notes(
    coverage: Coverage, reach: dict[int, int] | None = None
) -> tuple[CoverageNote, ...]:
    """One note per distinct unfetched stretch and reach, naming the connections that lack
    it. ``reach``: how many days back each connection's provider keeps costs (the
    contract's default for one not given)."""
    reach = reach or {}
    by_span: dict[tuple[date, date, int], list[Gap]] = {}
    for gap in coverage.gaps:
        days = reach.get(gap.connection_id, profiles.DEFAULT_REACH_DAYS)
        by_span.setdefault((gap.start, gap.end, days), []).append(gap)
    notes = []
    for (start, end, days), gaps in sorted(by_span.items()):
        firsts = [
            coverage.first_days[g.connection_id]
            for g in gaps
            if g.connection_id in coverage.first_days
        ]
        notes.append(
            CoverageNote(
                labels=tuple(sorted((g.connection for g in gaps), key=str.lower)),
                start=start,
                end=end,
                data_from=min(firsts) if firsts else None,
                reachable_from=coverage.today - timedelta(days=days - 1),
                max_days=days,
            )
        )
    return tuple(notes)


def _mark(rows, group_by: str, coverage: Coverage, period: Period) -> tuple[ReportRow, ...]:
    """Day-like rows nobody fetched lose their $0.00; partly fetched ones say so."""
    if group_by == "connection":
        shown = {r.key for r in rows}
        partly = {g.connection for g in coverage.gaps}
        extra = [
            ReportRow(label, label, None, None, complete=False)
            for label in sorted(partly - shown, key=str.lower)
        ]
        marked = [
            ReportRow(r.key, r.label, r.cost_usd, r.share, complete=r.key not in partly)
            for r in rows
        ]
        return tuple(marked + extra)
    if group_by not in ("day", "week", "month"):
        return tuple(rows)
    connections = len(coverage.connections)
    days: dict[str, list[int]] = {}
    day = period.start
    for count in coverage.fetched_by():
        days.setdefault(_bucket(day, group_by, period)[0], []).append(count)
        day += timedelta(days=1)
    marked = []
    for r in rows:
        counts = days.get(r.key, [])
        if connections and counts and not any(counts):
            marked.append(ReportRow(r.key, r.label, None, None, complete=False))
        else:
            complete = all(c == connections for c in counts)
            marked.append(ReportRow(r.key, r.label, r.cost_usd, r.share, complete=complete))
    return tuple(marked)


RECONCILE_ABS = Decimal(1)
RECONCILE_REL = Decimal("0.01")
PREVIEW, INVOICE = "preview", "invoice"
"""A :class:`Reconciliation`'s ``source``: this cycle's invoice preview (the bill so far),
or a closed month's invoice."""


@dataclass(frozen=True)
class Reconciliation:
    """The usage series beside the provider's own bill for the same month.

    Made by :func:`reconcile_month` (any month) and for ``status`` (each
    connection's invoice preview). The usage series is set against the bill
    before tax where the provider states it (it carries no tax), else the bill.
    """

    month: date  # the first day of the billing cycle
    usage_usd: Decimal
    """The usage series' days of ``month``: up to the day the preview was read, or all of
    a closed month."""
    invoice_usd: Decimal | None
    """The bill as the provider states it, tax and corrections included; None when a
    closed month's invoice could not be read or was not listed (see ``status``)."""
    invoice_as_of: datetime
    explanations: tuple[str, ...] = ()
    source: str = PREVIEW
    status: str | None = None
    """A closed month's invoice: its ``providers.types.InvoiceStatus`` value."""
    bill_source: str | None = None
    """The preview's: ``totals`` (its own) or ``lines`` (added up: it stated no totals)."""
    before_tax_usd: Decimal | None = None
    tax_usd: Decimal | None = None
    corrections_usd: Decimal | None = None
    """The preview's corrections (credits, adjustments) on top of the total after tax."""
    number: str = ""
    problem: str | None = None
    """Why a closed month's invoice could not be read, in the provider's words."""

    @property
    def compared_usd(self) -> Decimal | None:
        """What the usage series is set against: the bill before tax, where stated."""
        return self.before_tax_usd if self.before_tax_usd is not None else self.invoice_usd

    @property
    def difference_usd(self) -> Decimal | None:
        compared = self.compared_usd
        return None if compared is None else self.usage_usd - compared

    @property
    def flagged(self) -> bool:
        """Over $1 and over 1% of the bill: cent rounding per invoice line never flags."""
        compared, difference = self.compared_usd, self.difference_usd
        if compared is None or difference is None:
            return False
        tolerance = max(RECONCILE_ABS, abs(compared) * RECONCILE_REL)
        return abs(difference) > tolerance

    def as_json(self) -> dict[str, object]:
        def amount(value: Decimal | None) -> str | None:
            return None if value is None else decimal_text(value)

        return {
            "month": f"{self.month:%Y-%m}",
            "source": self.source,
            "status": self.status,
            "bill_source": self.bill_source,
            "usage_usd": amount(self.usage_usd),
            "invoice_usd": amount(self.invoice_usd),
            "invoice_before_tax_usd": amount(self.before_tax_usd),
            "tax_usd": amount(self.tax_usd),
            "corrections_usd": amount(self.corrections_usd),
            "invoice_number": self.number or None,
            "invoice_as_of": self.invoice_as_of.isoformat(),
            "difference_usd": amount(self.difference_usd),
            "flagged": self.flagged,
            "explanations": list(self.explanations) if self.flagged else [],
            "problem": self.problem,
        }


def reconciliation_words(r: Reconciliation) -> tuple[str, tuple[str, ...]]:
    """A reconciliation as every surface says it: one line, and (when flagged) what
    could explain the difference. ``status``, the Home tab, ``last-month``, the monthly
    digest and the PDF all word it here."""
    month = f"{r.month:%B %Y}"
    usage = f"usage series {money(r.usage_usd)}"
    if r.source == PREVIEW:
        bill = "invoice so far"
        read = f"read {clock(r.invoice_as_of)}"
    else:
        bill = "invoice" + (f" {r.number}" if r.number else "")
        read = (r.status or "").replace("_", " ")
    if r.invoice_usd is None:
        if r.status == "not_listed":
            return f"{month}: {usage} · no invoice listed for it yet", ()
        why = f": {r.problem}" if r.problem else ""
        return f"{month}: {usage} · its invoice could not be read{why}", ()
    parts = []
    if r.before_tax_usd is not None and r.before_tax_usd != r.invoice_usd:
        parts.append(f"{money(r.before_tax_usd)} before tax")
    if r.tax_usd:
        parts.append(f"{money(r.tax_usd)} tax")
    if r.corrections_usd:
        parts.append(f"{money_change(r.corrections_usd)} corrections")
    if r.bill_source == "lines":
        parts.append("added up from its lines: it stated no total")
    if read:
        parts.append(read)
    line = f"{month}: {usage} · {bill} {money(r.invoice_usd)} ({', '.join(parts)})"
    if not r.flagged:
        return line + " · they agree", ()
    difference = r.difference_usd or Decimal(0)
    side = "below" if difference < 0 else "above"
    against = "the bill before tax" if r.before_tax_usd is not None else "the bill"
    line += f" · usage is {money(abs(difference))} {side} {against}, over 1% and $1"
    return line, r.explanations


@dataclass(frozen=True)
class StatusRow:
    label: str
    provider: str
    account: str
    """Which account it reads, as its provider names it ("" when the provider could not say)."""
    secret_mask: str
    status: str
    reason: str | None
    message: str | None
    last_success_at: datetime | None
    month_to_date: Figure
    """The 1st through today, today so far included (bot.figures: month to date)."""
    duplicate_of: str | None = None
    """The label of an older connection of the same account (old databases only)."""
    reconciliation: Reconciliation | None = None
    forecast: Forecast | None = None
    """This connection's month-end forecast (:meth:`bot.figures.Book.forecast`)."""
    workspace_forecast: Forecast | None = None
    """The workspace's, the same for every row: a connection's never exceeds it."""
    workspace_month_to_date: Figure | None = None
    """The workspace's month to date, the same for every row."""
    provider_name: str = ""
    """The provider's display name, as it calls itself (bot.profiles)."""
    account_name: str = ""
    """The account's name for people, where the provider gave one."""

    @property
    def month_to_date_usd(self) -> Decimal:
        return self.month_to_date.value

    @property
    def account_shown(self) -> str:
        """The account as people read it: "Acme (org-1)", its id, or its name."""
        if self.account_name and self.account and self.account_name != self.account:
            return f"{self.account_name} ({self.account})"
        return self.account_name or self.account

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "provider": self.provider,
            "provider_name": self.provider_name or self.provider,
            "account": self.account,
            "account_name": self.account_name,
            "key": self.secret_mask,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "month_to_date_usd": amount_json(self.month_to_date.amount),
            "month_to_date": self.month_to_date.as_json(),
            "duplicate_of": self.duplicate_of,
            "reconciliation": self.reconciliation.as_json() if self.reconciliation else None,
            "forecast": (
                {
                    "month": f"{self.forecast.month:%Y-%m}",
                    "through": self.forecast.through.isoformat(),
                    "usd": amount_json(self.forecast.total),
                    "complete": self.forecast.complete,
                    "workspace_usd": amount_json(self.workspace_forecast.total),
                }
                if self.forecast and self.workspace_forecast
                else None
            ),
        }


def status_rows(session: Session, workspace_id: int, now: datetime) -> list[StatusRow]:
    """Every connection of a workspace with its health, month to date and forecast."""
    from sqlalchemy import select

    from storage.models import Connection, account_key

    today = now.astimezone(UTC).date()
    connections = list(
        session.execute(  # the columns shown, not whole rows with their secrets
            select(
                Connection.id,
                Connection.label,
                Connection.provider,
                Connection.account_ref,
                Connection.account_key,
                Connection.account_name,
                Connection.secret_mask,
                Connection.status,
                Connection.status_reason,
                Connection.status_message,
                Connection.last_success_at,
            )
            .where(Connection.workspace_id == workspace_id)
            .order_by(Connection.label)
        )
    )
    if not connections:
        return []
    book = status_book(session, workspace_id, now, connections)
    words = profiles.read(SessionReader(session), (c.provider for c in connections))
    # A connection without an account key duplicates an older one (see migration 0009), or
    # reads an account its provider could not name (never a duplicate of anything).
    owners = {(c.provider, c.account_key): c.label for c in connections if c.account_key}
    reconciled = _reconcile(session, workspace_id, today)
    workspace_forecast = book.forecast()
    workspace_month = book.month_to_date()
    month_by_connection = book.parts(workspace_month.start, workspace_month.end)
    return [
        StatusRow(
            label=c.label,
            provider=c.provider,
            account=c.account_ref,
            secret_mask=c.secret_mask,
            status=c.status,
            reason=c.status_reason,
            message=c.status_message,
            last_success_at=c.last_success_at,
            month_to_date=month_by_connection[c.id],
            duplicate_of=None
            if c.account_key or not c.account_ref
            else owners.get((c.provider, account_key(c.account_ref))),
            reconciliation=reconciled.get(c.id),
            forecast=book.forecast(c.id),
            workspace_forecast=workspace_forecast,
            workspace_month_to_date=workspace_month,
            provider_name=words.get(c.provider).display_name,
            account_name=c.account_name or "",
        )
        for c in connections
    ]


def status_book(session: Session, workspace_id: int, now: datetime, connections=None) -> Book:
    """The figures live surfaces show (status, the Home tab): month to date through today,
    the forecast's pace days, last month, and the Home tab's 30-day trend."""
    today = now.astimezone(UTC).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    rows = (
        None if connections is None else [(c.id, c.label, c.last_success_at) for c in connections]
    )
    return Book(
        SessionReader(session),
        workspace_id,
        now,
        min(last_month, today - timedelta(days=31)),
        today,
        connections=rows,
    )


def _reconcile(session: Session, workspace_id: int, today: date) -> dict[int, Reconciliation]:
    """Each connection's usage series beside its invoice preview, where there is one."""
    return _reconciled(session, workspace_id, today, previews=_previews(session, workspace_id))


def reconcile_month(
    session: Session,
    workspace_id: int,
    month: date,
    today: date,
    connection_ids: Collection[int] | None = None,
) -> dict[int, Reconciliation]:
    """Each connection's usage series for ``month`` beside the provider's bill for it.

    A closed month's invoice where one was stored (its status, and its total
    unless it could not be read or was not listed), else the invoice preview
    where the latest one is for ``month``. Connections with neither are left out.
    ``connection_ids`` narrows it to some connections of the workspace.
    """
    month = month.replace(day=1)
    past = _past_invoices(session, workspace_id, month, connection_ids)
    previews = [
        p
        for p in _previews(session, workspace_id, connection_ids)
        if p.stated.month == month and p.connection_id not in past
    ]
    return _reconciled(session, workspace_id, today, previews=previews, past=past.values())


@dataclass(frozen=True)
class _Bill:
    """One connection's stored bill for a month, before the usage series is set beside it."""

    connection_id: int
    end: date  # the last day of usage it covers
    synced: datetime | None  # when the connection's costs were last fetched
    stated: Reconciliation  # the bill's own figures; usage and explanations come after


def _previews(
    session: Session, workspace_id: int, connection_ids: Collection[int] | None = None
) -> list[_Bill]:
    from sqlalchemy import select

    from storage.models import BillingState, Connection

    query = (
        select(BillingState, Connection.last_success_at)
        .join(Connection, Connection.id == BillingState.connection_id)
        .where(Connection.workspace_id == workspace_id, BillingState.month_to_date_usd.is_not(None))
    )
    if connection_ids is not None:
        query = query.where(BillingState.connection_id.in_(list(connection_ids)))
    bills = []
    for b, synced in session.execute(query):
        read = b.as_of.astimezone(UTC).date()
        start = b.invoice_month or read.replace(day=1)
        corrected, total = b.total_with_corrections_usd, b.total_usd
        stated = Reconciliation(
            month=start,
            usage_usd=Decimal(0),
            invoice_usd=b.month_to_date_usd,
            invoice_as_of=b.as_of,
            bill_source=b.bill_source,
            before_tax_usd=b.subtotal_usd,
            tax_usd=b.tax_usd,
            corrections_usd=None if corrected is None or total is None else corrected - total,
        )
        bills.append(_Bill(b.connection_id, min(read, _month_end(start)), synced, stated))
    return bills


def _past_invoices(
    session: Session, workspace_id: int, month: date, connection_ids: Collection[int] | None
) -> dict[int, _Bill]:
    from sqlalchemy import select

    from storage.models import Connection, Invoice

    query = (
        select(Invoice, Connection.last_success_at)
        .join(Connection, Connection.id == Invoice.connection_id)
        .where(Connection.workspace_id == workspace_id, Invoice.month == month)
    )
    if connection_ids is not None:
        query = query.where(Invoice.connection_id.in_(list(connection_ids)))
    bills = {}
    for invoice, synced in session.execute(query):
        stated = Reconciliation(
            month=month,
            usage_usd=Decimal(0),
            invoice_usd=invoice.total_usd,
            invoice_as_of=invoice.as_of,
            source=INVOICE,
            status=invoice.status,
            before_tax_usd=invoice.subtotal_usd,
            tax_usd=invoice.tax_usd,
            number=invoice.number,
            problem=invoice.problem,
        )
        bills[invoice.connection_id] = _Bill(
            invoice.connection_id, _month_end(month), synced, stated
        )
    return bills


def _reconciled(
    session: Session,
    workspace_id: int,
    today: date,
    *,
    previews: Collection[_Bill] = (),
    past: Collection[_Bill] = (),
) -> dict[int, Reconciliation]:
    """The bills beside the usage series over the days each covers, with what could
    explain a difference."""
    from sqlalchemy import select

    from storage.models import FetchedSpan

    bills = [*previews, *past]
    if not bills:
        return {}
    windows: dict[tuple[date, date], list[int]] = {}
    for bill in bills:
        windows.setdefault((bill.stated.month, bill.end), []).append(bill.connection_id)
    usage: dict[int, Decimal] = {}
    for (start, end), cids in windows.items():
        query = cost_query(workspace_id, start, end, ["connection_id"], connection_id=cids)
        usage.update({cid: cost for cid, cost in session.execute(query)})
    spans: dict[int, list[tuple[date, date]]] = {}
    for cid, first, last in session.execute(
        select(FetchedSpan.connection_id, FetchedSpan.first_day, FetchedSpan.last_day).where(
            FetchedSpan.workspace_id == workspace_id,
            FetchedSpan.connection_id.in_([bill.connection_id for bill in bills]),
        )
    ):
        spans.setdefault(cid, []).append((first, last))
    reader = SessionReader(session)
    provider = profiles.providers_of(reader, (bill.connection_id for bill in bills))
    words = profiles.read(reader, provider.values())
    found = {}
    for bill in bills:
        spent = usage.get(bill.connection_id) or Decimal(0)
        fetched = merge_spans(spans.get(bill.connection_id, []))
        said_by = words.get(provider.get(bill.connection_id, ""))
        found[bill.connection_id] = dataclasses.replace(
            bill.stated,
            usage_usd=spent,
            explanations=_explanations(bill, fetched, today, spent, said_by),
        )
    return found


def _explanations(
    bill: _Bill,
    spans: list[tuple[date, date]],
    today: date,
    usage: Decimal,
    provider: profiles.Profile,
) -> tuple[str, ...]:
    """What could explain a difference, most actionable first, naming the provider."""
    stated, start, end = bill.stated, bill.stated.month, bill.end
    reasons = []
    missing = []
    day = start
    for first, last in spans:
        if last < day or first > end:
            continue
        if first > day:
            missing.append((day, first - timedelta(days=1)))
        day = max(day, last + timedelta(days=1))
    if day <= end:
        missing.append((day, end))
    if missing:
        days = (today - missing[0][0]).days + 1
        reasons.append(
            "days not fetched into the usage series: "
            + ", ".join(day_span(a, b) for a, b in missing)
            + f" (sync --days {days} fetches them)"
        )
    synced, as_of = bill.synced, stated.invoice_as_of
    if stated.source == PREVIEW and synced and abs((synced - as_of).total_seconds()) > 60:
        reasons.append(
            f"read at different times: the invoice at {clock(as_of)}, "
            f"the costs at {clock(synced)} (the next sync reads both)"
        )
    if end >= today - timedelta(days=1):
        who = provider.own_name or "the provider"
        reasons.append(
            f"today's and yesterday's figures are still settling: {who} keeps updating a day "
            f"for up to {provider.settle_hours} hours after it ends"
        )
    # The stored values of providers.types' InvoiceStatus and BillSource (not imported:
    # it brings httpx, which a terminal report never needs).
    if stated.status == "pending":
        reasons.append("the invoice is still pending: it may change before it is charged")
    if stated.bill_source == "lines":
        reasons.append(
            "the invoice preview stated no totals: its lines were added up, each rounded to "
            "the cent"
        )
    invoice = stated.invoice_usd
    if stated.before_tax_usd is None and invoice is not None and invoice > usage:
        reasons.append("tax or fees on the invoice that the usage series does not carry")
    reasons.append(
        f"corrections or credits {provider.own_name or 'the provider'} applied to the invoice"
    )
    return tuple(reasons)


def _month_end(first: date) -> date:
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


def fetched_days(
    session: Session, workspace_id: int, start: date, end: date
) -> dict[int, set[date]]:
    """The days from ``start`` to ``end`` each connection of a workspace fetched.

    For figures that must not read a day nobody fetched as $0.00 (digests,
    spike detection); a connection that fetched none of them is absent.
    """
    from sqlalchemy import select

    from storage.models import FetchedSpan

    query = select(FetchedSpan.connection_id, FetchedSpan.first_day, FetchedSpan.last_day).where(
        FetchedSpan.workspace_id == workspace_id,
        FetchedSpan.first_day <= end,
        FetchedSpan.last_day >= start,
    )
    days: dict[int, set[date]] = {}
    for connection_id, first, last in session.execute(query):
        day, stop = max(first, start), min(last, end)
        found = days.setdefault(connection_id, set())
        while day <= stop:
            found.add(day)
            day += timedelta(days=1)
    return days
