"""one digest per channel, time, zone, frequency, scope and options

Revision ID: 0063
Revises: 0062

Two identical digests were both accepted and both posted. Each digest now records
what decides what it posts, where and when (``storage.models.digest_schedule_key``),
and a unique index keeps a second one out however many processes add it at once.
A store may already hold repeats: the oldest of each gets the key and the later
ones keep NULL (NULLs never collide), so nothing is deleted here; ``digest list``
names them as repeats, with the command that removes one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0063"
down_revision = "0062"
branch_labels = None
depends_on = None


def _key(channel_id, at_time, tz, every, connection_id, quiet_min_nanos, quiet_change, chart):
    """storage.models.digest_schedule_key, on the stored values (amounts in nano-dollars)."""
    return "|".join(
        (
            channel_id,
            at_time,
            tz,
            every,
            "all" if connection_id is None else str(connection_id),
            "-" if quiet_min_nanos is None else str(int(quiet_min_nanos)),
            "-" if quiet_change is None else str(quiet_change),
            "chart" if chart and every == "day" else "",
        )
    )


def upgrade() -> None:
    with op.batch_alter_table("digest_subscriptions") as table:
        table.add_column(sa.Column("schedule_key", sa.String(400), nullable=True))
    digests = sa.table(
        "digest_subscriptions",
        *(
            sa.column(name)
            for name in (
                "id",
                "workspace_id",
                "channel_id",
                "at_time",
                "tz",
                "every",
                "connection_id",
                "quiet_min_usd",
                "quiet_change_pct",
                "chart",
                "schedule_key",
            )
        ),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            digests.c.id,
            digests.c.workspace_id,
            digests.c.channel_id,
            digests.c.at_time,
            digests.c.tz,
            digests.c.every,
            digests.c.connection_id,
            digests.c.quiet_min_usd,
            digests.c.quiet_change_pct,
            digests.c.chart,
        ).order_by(digests.c.id)
    )
    seen: set[tuple[int, str]] = set()
    for digest_id, workspace_id, *settings in list(rows):
        key = _key(*settings)
        if (workspace_id, key) in seen:
            continue  # a later repeat: left NULL, and still posted until someone removes it
        seen.add((workspace_id, key))
        bind.execute(digests.update().where(digests.c.id == digest_id).values(schedule_key=key))
    op.create_index(
        "uq_digest_subscriptions_schedule",
        "digest_subscriptions",
        ["workspace_id", "schedule_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_digest_subscriptions_schedule", table_name="digest_subscriptions")
    with op.batch_alter_table("digest_subscriptions") as table:
        table.drop_column("schedule_key")
