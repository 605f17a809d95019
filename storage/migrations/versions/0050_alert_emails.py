"""alert emails: the addresses a route's alerts are emailed to (sealed), and routes
that only add addresses (no channel of their own)

Revision ID: 0050
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

revision = "0050"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("address_sealed", sa.Text(), nullable=False),
        sa.Column("address_key_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["route_id"], ["alert_routes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
    )
    op.create_index("ix_alert_emails_route_id", "alert_emails", ["route_id"])
    op.create_index("ix_alert_emails_address_key_id", "alert_emails", ["address_key_id"])
    with op.batch_alter_table("alert_routes") as table:
        table.alter_column("channel_id", existing_type=sa.String(length=32), nullable=True)


def downgrade() -> None:
    # A route without a channel of its own cannot be kept by the older schema.
    op.execute("DELETE FROM alert_routes WHERE channel_id IS NULL")
    with op.batch_alter_table("alert_routes") as table:
        table.alter_column("channel_id", existing_type=sa.String(length=32), nullable=False)
    op.drop_index("ix_alert_emails_address_key_id", table_name="alert_emails")
    op.drop_index("ix_alert_emails_route_id", table_name="alert_emails")
    op.drop_table("alert_emails")
