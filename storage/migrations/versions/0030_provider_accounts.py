"""accounts as providers name them, and what the host knows of each provider

Revision ID: 0030
Revises: 0025

``connections.account_name`` and ``account_fields`` (the non-secret credential fields,
kept apart from the account id a provider now returns); ``provider_profiles``, each
provider's display name, reach, settling, caveats and hints, recorded by the engine.
Nothing to backfill: an older connection keeps its fields in ``account_ref`` (read as
before), and profiles are recorded by the next sync or connect.
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("account_name", sa.String(200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("account_fields", sa.Text(), nullable=True))
    op.create_table(
        "provider_profiles",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("max_backfill_days", sa.Integer(), nullable=False),
        sa.Column("settle_hours", sa.Integer(), nullable=False),
        sa.Column("caveats", sa.Text(), nullable=False),
        sa.Column("key_page", sa.Text(), nullable=False),
        sa.Column("no_spend_hint", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("provider_profiles")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("account_fields")
        batch.drop_column("account_name")
