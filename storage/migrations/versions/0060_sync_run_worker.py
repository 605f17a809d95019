"""which process ran each sync: the daily sync is shared by every replica

Revision ID: 0060
Revises: 0050

A sync run from before this says nothing of where it ran (NULL).
"""

import sqlalchemy as sa
from alembic import op

revision = "0060"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as table:
        table.add_column(sa.Column("worker", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as table:
        table.drop_column("worker")
