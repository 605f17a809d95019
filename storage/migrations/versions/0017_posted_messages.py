"""scheduled messages Slack took, and the figure each headlined: for corrections in place

Revision ID: 0017
Revises: 0016

Nothing to backfill: messages posted before this are not corrected.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "posted_messages",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headline", sa.JSON(), nullable=True),
        sa.Column("shown_usd", sa.BigInteger(), nullable=True),
        sa.Column("corrections", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_posted_messages_open", "posted_messages", ["final", "posted_at"])


def downgrade() -> None:
    op.drop_index("ix_posted_messages_open", table_name="posted_messages")
    op.drop_table("posted_messages")
