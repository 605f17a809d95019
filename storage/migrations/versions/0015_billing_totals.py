"""billing_states: the bill as the provider states it (its totals, tax, prepaid credit used)

Revision ID: 0015
Revises: 0013

The bill so far was the invoice preview's lines added up, $0.00 when a preview
stated its totals and no lines. Kept now: where the bill was read (the totals,
or the lines when it states none) and the figures beside it. Nothing to
backfill: the next sync reads them; until then ``bill_source`` is NULL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

MONEY = (
    "subtotal_usd",
    "tax_usd",
    "total_usd",
    "total_with_corrections_usd",
    "prepaid_total_usd",
    "prepaid_used_usd",
)


def upgrade() -> None:
    with op.batch_alter_table("billing_states") as table:
        table.add_column(sa.Column("bill_source", sa.String(8), nullable=True))
        for name in MONEY:
            table.add_column(sa.Column(name, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_states") as table:
        for name in reversed(MONEY):
            table.drop_column(name)
        table.drop_column("bill_source")
