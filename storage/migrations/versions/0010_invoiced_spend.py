"""billing_states.invoiced_usd: spend beyond prepaid credit, what xAI's spending limit caps

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled by the next sync; until then the headroom reads "after prepaid credit".
    with op.batch_alter_table("billing_states") as table:
        table.add_column(sa.Column("invoiced_usd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_states") as table:
        table.drop_column("invoiced_usd")
