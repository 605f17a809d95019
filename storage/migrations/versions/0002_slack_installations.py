"""slack installations and oauth states

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_installations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("team_name", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bot_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
    )
    op.create_index(
        "ix_slack_installations_team_id", "slack_installations", ["team_id"], unique=False
    )
    op.create_index(
        "ix_slack_installations_key_id", "slack_installations", ["key_id"], unique=False
    )
    # One row per installer; NULLs never collide in a unique index, hence coalesce().
    op.create_index(
        "uq_slack_installations_installer",
        "slack_installations",
        [
            "client_id",
            sa.text("coalesce(enterprise_id, '')"),
            sa.text("coalesce(team_id, '')"),
            "user_id",
        ],
        unique=True,
    )

    op.create_table(
        "slack_oauth_states",
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("expire_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state"),
    )


def downgrade() -> None:
    op.drop_table("slack_oauth_states")
    op.drop_index("uq_slack_installations_installer", table_name="slack_installations")
    op.drop_index("ix_slack_installations_key_id", table_name="slack_installations")
    op.drop_index("ix_slack_installations_team_id", table_name="slack_installations")
    op.drop_table("slack_installations")
