"""The one aggregate every figure is read with: ``SUM(cost)`` over a scope's UTC days.

Reports, digests, alerts, status, exports and charts all ask the store the
same question (what did these connections spend on these days, grouped by
these columns), so it is written once, as SQL text portable between SQLite
and PostgreSQL (:func:`cost_sql`), and as a typed SQLAlchemy statement for
code that runs in a session (:func:`cost_query`). Sums happen in SQL on
exact integer nano-dollars.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from typing import TYPE_CHECKING

from storage.reader import day as day_of

if TYPE_CHECKING:  # SQLAlchemy is imported only by what runs in a session (issue 9)
    from sqlalchemy import TextualSelect


def like_pattern(pattern: str) -> str:
    """A user's ``grok-4*`` or ``fast`` as a case-insensitive LIKE pattern."""
    escaped = pattern.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if "*" in pattern or "?" in pattern:
        return escaped.replace("*", "%").replace("?", "_")
    return f"%{escaped}%"


ROLLUP_GROUPS = frozenset({"model", "day"})
_COST_SCOPES = {
    # A connection is always resolved inside its workspace by the caller, so it
    # is the whole filter then: adding the workspace steers SQLite to the
    # workspace index, which scans every team's rows.
    "workspace": "workspace_id = :workspace_id",
    "connection": "connection_id = :connection_id",
    "connections": "connection_id IN :connection_ids",  # expanded by SQLAlchemy only
}


def cost_sql(group: Sequence[str], scope: str = "workspace", *, model_filter: bool = False) -> str:
    """``SELECT <group>, SUM(cost)`` over a workspace's days: the one aggregate, as SQL text.

    ``group`` names columns of daily_costs; ``scope`` is a key of
    ``_COST_SCOPES``; parameters ``:start`` and ``:end`` (days, inclusive) and,
    with ``model_filter``, ``:model_pattern`` (:func:`like_pattern`). Over a
    whole workspace and grouped by model or day, the per-workspace rollup
    answers the same sums from a few hundred rows instead of one per
    connection, day and model.
    """
    table = (
        "workspace_daily_totals"
        if scope == "workspace" and set(group) <= ROLLUP_GROUPS
        else "daily_costs"
    )
    columns = ", ".join(group)
    sql = (
        f"SELECT {columns}{', ' if group else ''}SUM(cost) AS cost FROM {table} "
        f"WHERE {_COST_SCOPES[scope]} AND day >= :start AND day <= :end"
    )
    if model_filter:
        sql += " AND lower(model) LIKE :model_pattern ESCAPE '\\'"
    return sql + (f" GROUP BY {columns}" if group else "")


def cost_scope(connection_id: int | Collection[int] | None) -> str:
    if connection_id is None:
        return "workspace"
    return "connection" if isinstance(connection_id, int) else "connections"


def cost_params(workspace_id, start, end, connection_id, model_pattern) -> dict:
    """The parameters of :func:`cost_sql` for the scope :func:`cost_scope` picks."""
    if connection_id is None:
        scope = {"workspace_id": workspace_id}
    elif isinstance(connection_id, int):
        scope = {"connection_id": connection_id}
    else:
        scope = {"connection_ids": list(connection_id)}
    pattern = {"model_pattern": like_pattern(model_pattern)} if model_pattern else {}
    return {**scope, "start": start, "end": end, **pattern}


def cost_values(row: Sequence, group: Sequence[str]) -> tuple:
    """A cost row's group values as Python values (days as dates); the cost is left as read."""
    return tuple(day_of(v) if name == "day" else v for name, v in zip(group, row, strict=True))


def cost_query(
    workspace_id: int,
    start: date,
    end: date,
    group: Sequence[str],
    *,
    connection_id: int | Collection[int] | None = None,
    model_pattern: str | None = None,
) -> TextualSelect:
    """:func:`cost_sql` as a SQLAlchemy statement whose rows come back typed.

    For the figures that run in a session (status, digests, alerts, exports,
    charts). ``connection_id`` narrows it to one connection or to several (a
    batch of digests).
    """
    from sqlalchemy import bindparam, column, text

    from storage.models import DailyCost, NanoUSD

    scope = cost_scope(connection_id)
    statement = text(cost_sql(group, scope, model_filter=bool(model_pattern)))
    params = cost_params(workspace_id, start, end, connection_id, model_pattern)
    if scope == "connections":
        ids = params.pop("connection_ids")
        statement = statement.bindparams(bindparam("connection_ids", ids, expanding=True))
    types = DailyCost.__table__.c
    return statement.bindparams(**params).columns(
        *(column(name, types[name].type) for name in group), column("cost", NanoUSD())
    )
