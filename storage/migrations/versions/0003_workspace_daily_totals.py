"""workspace daily totals: the rollup reports read

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_daily_totals",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "day", "model"),
    )
    op.execute(
        "INSERT INTO workspace_daily_totals (workspace_id, day, model, cost) "
        "SELECT workspace_id, day, model, SUM(cost) FROM daily_costs "
        "GROUP BY workspace_id, day, model"
    )


def downgrade() -> None:
    op.drop_table("workspace_daily_totals")
