"""costs by kind of usage (unit type), the days they cover, and the invoice's unit counts

Revision ID: 0012
Revises: 0010

Nothing to backfill: the next sync fetches the recent days' unit types (where
xAI answers them) and the invoice's lines; until then insights say so.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def _owned() -> list:
    """The connection column every table here has: its rows go with the connection."""
    return [
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
    ]


def upgrade() -> None:
    op.create_table(
        "unit_costs",
        *_owned(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("unit_type", sa.String(200), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "day", "model", "unit_type"),
    )
    op.create_index("ix_unit_costs_workspace", "unit_costs", ["workspace_id", "day"])
    op.create_table(
        "unit_cost_spans",
        *_owned(),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "first_day"),
    )
    op.create_table(
        "invoice_line_units",
        *_owned(),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("unit_type", sa.String(200), nullable=False),
        sa.Column("invoice_month", sa.Date(), nullable=True),
        sa.Column("num_units", sa.BigInteger(), nullable=False),
        sa.Column("amount_usd", sa.BigInteger(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "model", "unit_type"),
    )


def downgrade() -> None:
    op.drop_table("invoice_line_units")
    op.drop_table("unit_cost_spans")
    op.drop_index("ix_unit_costs_workspace", table_name="unit_costs")
    op.drop_table("unit_costs")
