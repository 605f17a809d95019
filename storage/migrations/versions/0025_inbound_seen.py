"""the Slack clicks and events already handled, so a replay is handled once

Revision ID: 0025
Revises: 0017

Starts empty: a replay of a request handled before the upgrade is handled again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_seen",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_inbound_seen_expires_at", "inbound_seen", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_seen_expires_at", table_name="inbound_seen")
    op.drop_table("inbound_seen")
