"""invoices: the last closed months' invoices per connection (status, total, subtotal, tax)

Revision ID: 0016
Revises: 0015

Nothing to backfill: the next sync asks for the last few closed months.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total_usd", sa.BigInteger(), nullable=True),
        sa.Column("subtotal_usd", sa.BigInteger(), nullable=True),
        sa.Column("tax_usd", sa.BigInteger(), nullable=True),
        sa.Column("number", sa.String(200), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "month"),
    )


def downgrade() -> None:
    op.drop_table("invoices")
