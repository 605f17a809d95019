"""Migration 0063 keys each digest by what it posts, where and when, and keeps repeats."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from bot.setup import TERMINAL, Setup
from storage.db import Database, alembic_config
from storage.models import DigestSubscription, Workspace


def _digest(session, workspace_id: int, at: str, quiet_min_nanos: int | None = None) -> int:
    # The columns of the 0062 schema only: the model has the column this migration adds.
    return session.execute(
        text(
            "INSERT INTO digest_subscriptions (workspace_id, channel_id, channel_name, at_time, "
            "tz, every, quiet_min_usd, chart, created_by, created_at) VALUES (:w, 'C0COSTS', '', "
            ":at, 'UTC', 'day', :quiet, false, 'UADMIN', CURRENT_TIMESTAMP) RETURNING id"
        ),
        {"w": workspace_id, "at": at, "quiet": quiet_min_nanos},
    ).scalar_one()


def test_repeats_already_saved_are_kept_and_the_first_one_is_keyed(db: Database):
    command.downgrade(alembic_config(db.engine), "0062")
    with db.transaction() as session:
        workspace = Workspace(name="old")
        session.add(workspace)
        session.flush()
        first = _digest(session, workspace.id, "09:00", 25_000_000_000)
        repeat = _digest(session, workspace.id, "09:00", 25_000_000_000)
        other = _digest(session, workspace.id, "10:00")
        workspace_id = workspace.id
    db.migrate()
    with db.session() as session:
        keys = dict(
            session.execute(select(DigestSubscription.id, DigestSubscription.schedule_key)).all()
        )
    assert keys == {
        first: "C0COSTS|09:00|UTC|day|all|25000000000|-|",
        repeat: None,  # not posted, and named in `digest list` as a repeat
        other: "C0COSTS|10:00|UTC|day|all|-|-|",
    }
    listed = Setup(db, workspace_id, "terminal:ops", TERMINAL).digest_lines(
        Setup(db, workspace_id, "terminal:ops", TERMINAL).digests()
    )
    assert (
        f"repeats digest {first}, not posted: `xai-usage digest remove {repeat}` removes it"
        in listed
    )
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(
            DigestSubscription(
                workspace_id=workspace_id,
                channel_id="C0COSTS",
                at_time="10:00",
                tz="UTC",
                every="day",
                schedule_key=keys[other],
            )
        )
