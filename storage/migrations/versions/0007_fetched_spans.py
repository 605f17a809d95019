"""fetched spans (which days each connection has fetched) and the invoice's month

Revision ID: 0007
Revises: 0006

Existing stores learn what was fetched from what they hold: every successful
sync run's window (runs are kept until a connection is deleted, so they are
the exact record, zero-spend days included). A connection with costs but no
successful run on record gets every day from its first stored day to its last
successful sync (daily syncs catch up since the previous success, so that
stretch was fetched). Any other day stays "not fetched" until a sync fetches it.
"""

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetched_spans",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "first_day"),
    )
    op.create_index("ix_fetched_spans_workspace", "fetched_spans", ["workspace_id", "last_day"])
    with op.batch_alter_table("billing_states") as table:
        table.add_column(sa.Column("invoice_month", sa.Date(), nullable=True))
    _backfill_spans()


def _backfill_spans() -> None:
    bind = op.get_bind()
    meta = sa.MetaData()
    connections = sa.Table("connections", meta, autoload_with=bind)
    runs = sa.Table("sync_runs", meta, autoload_with=bind)
    costs = sa.Table("daily_costs", meta, autoload_with=bind)
    spans = sa.Table("fetched_spans", meta, autoload_with=bind)
    workspace_of: dict[int, int] = {}
    fetched: dict[int, list[tuple[date, date]]] = {}
    last_success = {}
    for cid, wid, success in bind.execute(
        sa.select(connections.c.id, connections.c.workspace_id, connections.c.last_success_at)
    ):
        workspace_of[cid] = wid
        last_success[cid] = success
    for cid, start, end in bind.execute(
        sa.select(runs.c.connection_id, runs.c.window_start, runs.c.window_end).where(
            runs.c.outcome == "ok"
        )
    ):
        fetched.setdefault(cid, []).append((_day(start), _day(end)))
    for cid, first, last in bind.execute(
        sa.select(
            costs.c.connection_id, sa.func.min(costs.c.day), sa.func.max(costs.c.day)
        ).group_by(costs.c.connection_id)
    ):
        if cid in fetched:  # its sync runs say exactly what was fetched
            continue
        success = last_success.get(cid)
        end = _day(success) if success is not None else _day(last)
        fetched[cid] = [(_day(first), max(end, _day(last)))]
    rows = []
    for cid, windows in fetched.items():
        if cid not in workspace_of:
            continue
        for first, last in _merged(windows):
            rows.append(
                {
                    "connection_id": cid,
                    "first_day": first,
                    "last_day": last,
                    "workspace_id": workspace_of[cid],
                }
            )
    if rows:
        op.bulk_insert(spans, rows)


def _day(value) -> date:
    """A DATE or a timestamp as the UTC day (SQLite may hand back text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if len(value) > 10 else date.fromisoformat(value)
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def _merged(windows: list[tuple[date, date]]) -> list[tuple[date, date]]:
    merged: list[tuple[date, date]] = []
    for first, last in sorted(windows):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def downgrade() -> None:
    with op.batch_alter_table("billing_states") as table:
        table.drop_column("invoice_month")
    op.drop_index("ix_fetched_spans_workspace", table_name="fetched_spans")
    op.drop_table("fetched_spans")
