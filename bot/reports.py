"""Cost reports: a period, a grouping and filters in; plain data out.

The terminal and Slack render the same :class:`Report`. Days are UTC days,
as on xAI invoices; sums happen in SQL on exact integer nano-dollars.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, case, func, select, true
from sqlalchemy.orm import Session

from bot.formatting import day_label
from bot.grammar import Command, UsageError, parse_day
from storage.models import (
    ApiKeyName,
    Connection,
    ConnectionStatus,
    DailyCost,
    WorkspaceDailyTotal,
)

NO_KEY = "(no key breakdown)"
EARLIEST_DAY = date(2023, 1, 1)
"""No connection can hold costs before this day: xAI's API did not exist."""


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
        return Period(name, start, today, f"Last 7 days, {_span(start, today)}")
    if name == "month":
        start = today.replace(day=1)
        return Period(name, start, today, f"{today:%B %Y} to date")
    if name == "last-month":
        end = today.replace(day=1) - timedelta(days=1)
        return Period(name, end.replace(day=1), end, f"{end:%B %Y}")
    if name == "range":
        start, end = _within_data(*(parse_day(a) for a in command.args), today=today)
        return Period(name, start, end, _span(start, end))
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


def _span(start: date, end: date) -> str:
    if start == end:
        return day_label(start)
    if start.year == end.year:
        return f"{start:%d %b}–{end:%d %b %Y}".replace(" 0", " ").lstrip("0")
    return f"{start:%d %b %Y}–{end:%d %b %Y}".lstrip("0")


@dataclass(frozen=True)
class ReportRow:
    key: str
    label: str
    cost_usd: Decimal
    share: Decimal  # of the total, 0..1


@dataclass(frozen=True)
class Report:
    period: Period
    group_by: str
    total_usd: Decimal
    rows: tuple[ReportRow, ...]
    as_of: datetime | None
    partial: bool
    connection_labels: tuple[str, ...]
    model_pattern: str | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.connection_labels


def like_pattern(pattern: str) -> str:
    """A user's ``grok-4*`` or ``fast`` as a case-insensitive LIKE pattern."""
    escaped = pattern.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if "*" in pattern or "?" in pattern:
        return escaped.replace("*", "%").replace("?", "_")
    return f"%{escaped}%"


ROLLUP_GROUPS = frozenset({"model", "day"})


def cost_query(
    workspace_id: int | BindParameter[int],
    start: date | BindParameter[date],
    end: date | BindParameter[date],
    group: Sequence[str],
    *,
    connection_id: int | Collection[int] | None = None,
    model_pattern: str | None = None,
) -> Select:
    """``SELECT <group>, SUM(cost)`` over a workspace's days: the one aggregate.

    ``group`` names columns of daily_costs. ``connection_id`` narrows it to
    one connection or to several (a batch of digests). Without a connection filter and
    grouped by model or day, the per-workspace rollup answers the same sums
    from a few hundred rows instead of one per connection, day and model.
    """
    use_rollup = connection_id is None and set(group) <= ROLLUP_GROUPS
    table = WorkspaceDailyTotal if use_rollup else DailyCost
    columns = [getattr(table, name) for name in group]
    # A connection is always resolved inside its workspace by the caller, so it
    # is the whole filter then: adding the workspace steers SQLite to the
    # workspace index, which scans every team's rows.
    if connection_id is None:
        scope = table.workspace_id == workspace_id
    elif isinstance(connection_id, int):
        scope = DailyCost.connection_id == connection_id
    else:
        scope = DailyCost.connection_id.in_(connection_id)
    query = (
        select(*columns, func.sum(table.cost))
        .where(scope, table.day >= start, table.day <= end)
        .group_by(*columns)
    )
    if model_pattern:
        query = query.where(func.lower(table.model).like(like_pattern(model_pattern), "\\"))
    return query


_FAILING = Connection.status.in_((ConnectionStatus.ERROR, ConnectionStatus.FAILING))
_ITEM, _PAIR = "\x1f", "\x1e"
"""Separators no label can contain: labels refuse control characters (grammar.label_problem)."""


def _coverage_statement(match: ColumnElement[bool]) -> Select:
    """One row on the connections a report covers: built once, reused by every report.

    `today` is the command people run most, and a workspace may have a
    thousand connections: loading them as rows (a datetime parsed for each)
    to show a count, the oldest sync and the few failing cost a one-day report
    about 10 ms, several times its aggregate. The database folds them into one
    row instead (GROUP_CONCAT on SQLite, string_agg on PostgreSQL).
    """
    return select(
        func.count(),
        func.aggregate_strings(Connection.label, _ITEM),
        func.min(Connection.last_success_at),
        func.count().filter(_FAILING),
        func.aggregate_strings(
            case(
                (_FAILING, Connection.label + _PAIR + func.coalesce(Connection.status_reason, ""))
            ),
            _ITEM,
        ),
    ).where(match)


_WORKSPACE_COVERAGE = _coverage_statement(Connection.workspace_id == bindparam("scope"))
_CONNECTION_COVERAGE = _coverage_statement(Connection.id == bindparam("scope"))


@dataclass(frozen=True)
class _Coverage:
    labels: tuple[str, ...]
    as_of: datetime | None
    failing: tuple[tuple[str, str], ...]  # (label, reason)


def _coverage_of(
    session: Session, row: Sequence, workspace_id: int, connection: Connection | None
) -> _Coverage:
    """The connections a report covers, from their one row (see _coverage_statement)."""
    count, labels, as_of, failing_count, failing = row[:5]
    legacy = bool(labels) and _PAIR in labels  # a label older than the rule
    labels = tuple(labels.split(_ITEM)) if labels else ()
    failing = tuple(tuple(f.split(_PAIR, 1)) for f in failing.split(_ITEM)) if failing else ()
    if legacy or len(labels) != count or len(failing) != failing_count:
        match = (
            Connection.id == connection.id
            if connection is not None
            else Connection.workspace_id == workspace_id
        )
        rows = session.execute(
            select(Connection.label, Connection.status_reason, _FAILING).where(match)
        ).all()
        labels = tuple(label for label, _, _ in rows)
        failing = tuple((label, reason or "") for label, reason, bad in rows if bad)
    return _Coverage(labels, as_of, failing)


@functools.cache
def _workspace_report(group: tuple[str, ...]) -> Select:
    """A whole workspace's coverage and costs in one statement, built once per grouping.

    The reports people run most (`today`, `week`, `month`, no filter) cost one
    round trip, as the hand-written aggregate does: the costs ride on the
    coverage row (LEFT JOIN ... ON TRUE, so a period without costs keeps it).
    """
    costs = cost_query(bindparam("scope"), bindparam("start"), bindparam("end"), list(group))
    covered, found = _WORKSPACE_COVERAGE.subquery("coverage"), costs.subquery("costs")
    return select(*covered.c, *found.c).select_from(covered.outerjoin(found, true()))


_GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "connection": ("connection_id",),
    "key": (),  # _key_rows has its own query
    "day": ("day",),
    "week": ("day",),
    "month": ("day",),
}


def _coverage_and_costs(
    session: Session,
    workspace_id: int,
    period: Period,
    group_by: str,
    connection: Connection | None,
    filters: dict,
) -> tuple[_Coverage, list]:
    group = _GROUP_COLUMNS.get(group_by, ("day",))
    core = session.connection()
    if group and connection is None and not filters["model_pattern"]:
        params = {"scope": workspace_id, "start": period.start, "end": period.end}
        rows = core.execute(_workspace_report(group), params).all()
        costs = [(tuple(row[5:-1]), row[-1]) for row in rows if row[-1] is not None]
        return _coverage_of(session, rows[0], workspace_id, None), costs
    statement = _WORKSPACE_COVERAGE if connection is None else _CONNECTION_COVERAGE
    scope = {"scope": workspace_id if connection is None else connection.id}
    coverage = _coverage_of(session, core.execute(statement, scope).one(), workspace_id, connection)
    return coverage, (_by(session, workspace_id, period, list(group), filters) if group else [])


def build_report(
    session: Session,
    workspace_id: int,
    period: Period,
    group_by: str = "model",
    *,
    connection: Connection | None = None,
    model_pattern: str | None = None,
    now: datetime | None = None,
) -> Report:
    now = now or datetime.now(UTC)
    filters = {
        "connection_id": connection.id if connection else None,
        "model_pattern": model_pattern,
    }
    coverage, raw = _coverage_and_costs(
        session, workspace_id, period, group_by, connection, filters
    )
    if group_by == "model":
        rows = [(model, model, cost) for (model,), cost in raw]
    elif group_by == "connection":
        names = dict(
            session.execute(
                select(Connection.id, Connection.label).where(
                    Connection.workspace_id == workspace_id
                )
            ).all()
        )
        rows = [(names.get(cid, str(cid)),) * 2 + (cost,) for (cid,), cost in raw]
    elif group_by == "key":
        several = len(coverage.labels) > 1
        rows = _key_rows(session, workspace_id, period, filters, several=several)
    else:
        rows = _time_rows(dict((day, cost) for (day,), cost in raw), period, group_by)
    total = sum((cost for _, _, cost in rows), Decimal(0))
    if group_by in ("model", "connection", "key"):
        rows.sort(key=lambda r: (-r[2], r[1]))
    report_rows = tuple(
        ReportRow(key, label, cost, (cost / total) if total else Decimal(0))
        for key, label, cost in rows
    )
    problems = tuple(
        f"“{label}” is not syncing ({reason}): its figures may be out of date."
        for label, reason in coverage.failing
    )
    return Report(
        period=period,
        group_by=group_by,
        total_usd=total,
        rows=report_rows,
        as_of=coverage.as_of,
        partial=period.end >= now.astimezone(UTC).date(),
        connection_labels=coverage.labels,
        model_pattern=model_pattern,
        problems=problems,
    )


def _by(session: Session, workspace_id: int, period: Period, group, filters) -> list:
    query = cost_query(workspace_id, period.start, period.end, group, **filters)
    rows = session.connection().execute(query)  # Core: plain tuples, no ORM rows
    return [(tuple(row[:-1]), row[-1] or Decimal(0)) for row in rows]


def _key_rows(session, workspace_id, period, filters, *, several: bool) -> list:
    raw = _by(session, workspace_id, period, ["connection_id", "api_key_id"], filters)
    names = {
        (n.connection_id, n.api_key_id): n.name
        for n in session.scalars(
            select(ApiKeyName).join(Connection).where(Connection.workspace_id == workspace_id)
        )
    }
    labels = {
        cid: label
        for cid, label in session.execute(
            select(Connection.id, Connection.label).where(Connection.workspace_id == workspace_id)
        )
    }
    rows = []
    for (cid, key_id), cost in raw:
        label = names.get((cid, key_id), key_id) if key_id else NO_KEY
        if several:
            label = f"{labels.get(cid, cid)}: {label}"
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
        key, label, step_after = _bucket(step, group_by)
        buckets[key] = (label, Decimal(0))
        if step_after > period.end:
            break
        step = step_after
    for day, cost in by_day.items():
        if period.start <= day <= period.end:
            key = _bucket(day, group_by)[0]
            label, previous = buckets[key]
            buckets[key] = (label, previous + cost)
    return [(key, label, cost) for key, (label, cost) in buckets.items()]


def _bucket(day: date, group_by: str) -> tuple[str, str, date]:
    """The row a day falls in: its key, its label, and the first day of the next row."""
    if group_by == "day":
        return day.isoformat(), day_label(day), day + timedelta(days=1)
    if group_by == "week":
        monday = day - timedelta(days=day.weekday())
        return monday.isoformat(), f"week of {day_label(monday)}", monday + timedelta(days=7)
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return f"{day:%Y-%m}", f"{calendar.month_name[day.month]} {day.year}", following


@dataclass(frozen=True)
class StatusRow:
    label: str
    provider: str
    account: str
    secret_mask: str
    status: str
    reason: str | None
    message: str | None
    last_success_at: datetime | None
    month_to_date_usd: Decimal

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "provider": self.provider,
            "account": self.account,
            "key": self.secret_mask,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "month_to_date_usd": str(self.month_to_date_usd),
        }


def status_rows(session: Session, workspace_id: int, now: datetime) -> list[StatusRow]:
    """Every connection of a workspace with its health and month to date."""
    today = now.astimezone(UTC).date()
    month_query = cost_query(workspace_id, today.replace(day=1), today, ["connection_id"])
    month = {connection_id: cost for connection_id, cost in session.execute(month_query)}
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
            month_to_date_usd=month.get(c.id) or Decimal(0),
        )
        for c in session.execute(  # the columns shown, not whole rows with their secrets
            select(
                Connection.id,
                Connection.label,
                Connection.provider,
                Connection.account_ref,
                Connection.secret_mask,
                Connection.status,
                Connection.status_reason,
                Connection.status_message,
                Connection.last_success_at,
            )
            .where(Connection.workspace_id == workspace_id)
            .order_by(Connection.label)
        )
    ]
