"""App Home viewers and re-publish rounds, in the store: shared by every replica

Revision ID: 0061
Revises: 0060

Before this each server process kept its own viewers in memory; nothing to carry
over (a viewer comes back with their next open).
"""

import sqlalchemy as sa
from alembic import op

revision = "0061"
down_revision = "0060"
branch_labels = None
depends_on = None


def _workspace() -> list:
    return [
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
    ]


def upgrade() -> None:
    op.create_table(
        "home_viewers",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        *_workspace(),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "user_id"),
    )
    op.create_index("ix_home_viewers_workspace_id", "home_viewers", ["workspace_id"])
    op.create_table(
        "home_rounds",
        sa.Column("team_id", sa.String(32), nullable=False),
        *_workspace(),
        sa.Column("shown", sa.String(64), nullable=True),
        sa.Column("changed_first", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_last", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("team_id"),
    )
    op.create_index("ix_home_rounds_workspace_id", "home_rounds", ["workspace_id"])


def downgrade() -> None:
    op.drop_index("ix_home_rounds_workspace_id", table_name="home_rounds")
    op.drop_table("home_rounds")
    op.drop_index("ix_home_viewers_workspace_id", table_name="home_viewers")
    op.drop_table("home_viewers")
