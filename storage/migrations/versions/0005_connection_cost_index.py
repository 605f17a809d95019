"""a covering index for one connection's days

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_daily_costs_connection", "daily_costs", ["connection_id", "day", "model", "cost"]
    )


def downgrade() -> None:
    op.drop_index("ix_daily_costs_connection", table_name="daily_costs")
