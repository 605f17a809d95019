"""digest_subscriptions.chart: a daily digest opts in to its chart (weekly, monthly: always)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing digests keep what they did: no chart unless weekly or monthly.
    with op.batch_alter_table("digest_subscriptions") as table:
        table.add_column(
            sa.Column("chart", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("digest_subscriptions") as table:
        table.drop_column("chart")
