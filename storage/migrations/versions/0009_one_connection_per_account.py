"""one connection per provider account (xAI team) in a workspace

Revision ID: 0009
Revises: 0006

Connecting the same team twice counted its spend twice. Old databases may
already hold such duplicates: the oldest connection of each account gets the
key and keeps working as before; the later ones keep their data but no key
(NULLs never collide), and ``status`` says which one they duplicate, so a
person decides which to disconnect. Nothing is deleted here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as table:
        table.add_column(sa.Column("account_key", sa.String(200), nullable=True))
    connections = sa.table(
        "connections",
        sa.column("id", sa.Integer),
        sa.column("workspace_id", sa.Integer),
        sa.column("provider", sa.String),
        sa.column("account_ref", sa.String),
        sa.column("account_key", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            connections.c.id,
            connections.c.workspace_id,
            connections.c.provider,
            connections.c.account_ref,
        ).order_by(connections.c.id)
    )
    seen: set[tuple[int, str, str]] = set()
    for connection_id, workspace_id, provider, account_ref in list(rows):
        key = " ".join((account_ref or "").split()).lower()  # storage.models.account_key
        if not key or (workspace_id, provider, key) in seen:
            continue  # no account, or a later duplicate: left NULL
        seen.add((workspace_id, provider, key))
        bind.execute(
            connections.update().where(connections.c.id == connection_id).values(account_key=key)
        )
    op.create_index(
        "uq_connections_account",
        "connections",
        ["workspace_id", "provider", "account_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_connections_account", table_name="connections")
    with op.batch_alter_table("connections") as table:
        table.drop_column("account_key")
