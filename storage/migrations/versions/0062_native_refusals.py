"""the native Slack blocks (table, chart) each workspace's Slack refused

Revision ID: 0062
Revises: 0045

Starts empty: every workspace tries the native blocks first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0062"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "native_refusals",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("block_type", sa.String(32), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "surface", "block_type"),
    )


def downgrade() -> None:
    op.drop_table("native_refusals")
