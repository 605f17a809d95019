"""alerts people can act on: threads per incident, acknowledgements, snoozes and mutes

Revision ID: 0045
Revises: 0061

``posted_messages`` learns which incident an alert's post belongs to and which
message it replied to, so follow-ups reply in the first post's thread; every
alert post is recorded from now on. Nothing to backfill: an incident whose first
post predates this has no thread, and its follow-ups are posted on their own.
"""

import sqlalchemy as sa
from alembic import op

revision = "0045"
down_revision = "0061"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posted_messages") as batch:
        batch.add_column(sa.Column("incident", sa.String(200), nullable=True))
        batch.add_column(sa.Column("thread_ts", sa.String(32), nullable=True))
        batch.create_index("ix_posted_messages_incident", ["incident"])
    op.create_table(
        "alert_incidents",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("acked_by", sa.String(32), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "key"),
    )
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_by", sa.String(32), nullable=True),
        sa.Column("muted_by", sa.String(32), nullable=True),
        sa.Column("muted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "rule"),
    )


def downgrade() -> None:
    op.drop_table("alert_silences")
    op.drop_table("alert_incidents")
    with op.batch_alter_table("posted_messages") as batch:
        batch.drop_index("ix_posted_messages_incident")
        batch.drop_column("thread_ts")
        batch.drop_column("incident")
