"""days fetched before they settled: what tells a final figure from a provisional one

Revision ID: 0013
Revises: 0012

A store from before this knows only when each connection last synced: the
days that sync fetched within 12 hours of their end (xAI's settle time, the
default) are marked provisional, so the next sync confirms them.
"""

from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SETTLE = timedelta(hours=12)


def upgrade() -> None:
    table = op.create_table(
        "provisional_days",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settles_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "day"),
    )
    op.create_index("ix_provisional_days_workspace", "provisional_days", ["workspace_id", "day"])
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT c.id, c.workspace_id, c.last_success_at, max(s.last_day) "
            "FROM connections AS c JOIN fetched_spans AS s ON s.connection_id = c.id "
            "WHERE c.last_success_at IS NOT NULL GROUP BY c.id, c.workspace_id, c.last_success_at"
        )
    ).all()
    marks = []
    for cid, workspace_id, synced, last_day in rows:
        if isinstance(synced, str):
            synced = datetime.fromisoformat(synced)
        synced = synced.replace(tzinfo=UTC) if synced.tzinfo is None else synced
        if isinstance(last_day, str):
            last_day = datetime.fromisoformat(last_day).date()
        day = last_day
        while True:
            settles = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC) + SETTLE
            if settles <= synced:
                break
            marks.append(
                {
                    "connection_id": cid,
                    "workspace_id": workspace_id,
                    "day": day,
                    "fetched_at": synced,
                    "settles_at": settles,
                }
            )
            day -= timedelta(days=1)
    if marks:
        op.bulk_insert(table, marks)


def downgrade() -> None:
    op.drop_index("ix_provisional_days_workspace", table_name="provisional_days")
    op.drop_table("provisional_days")
