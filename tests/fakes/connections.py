"""Connections for tests and benchmarks: rows built by hand (no real key, or a real key
sealed as ``connect`` seals it), or the demo team synced."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from bot.profiles import Profile, record
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.crypto import Keyring
from storage.models import Connection, ConnectionStatus, DailyCost, new_uid
from tests.fakes.providers import built_in


def add_connection(session, workspace_id: int, label: str, **fields) -> Connection:
    """A connection, flushed for its id: xAI's and status ``ok`` unless ``fields`` say
    otherwise (``provider="..."``, ``status="..."``). A built-in provider's profile is
    recorded as the engine records it (bot.profiles), so surfaces word it as in use."""
    provider = fields.pop("provider", "xai")
    connection = Connection(
        workspace_id=workspace_id,
        provider=provider,
        label=label,
        credentials_sealed="sealed",
        credentials_key_id="k1",
        status=fields.pop("status", "ok"),
        **fields,
    )
    session.add(connection)
    session.flush()
    try:
        loaded = built_in().get(provider)
    except LookupError:
        return connection  # a provider of the test's own: no profile, as if never synced
    record(session, [Profile.of(loaded)], datetime.now(UTC))
    return connection


def add_sealed_connection(
    session: Session,
    keyring: Keyring,
    workspace_id: int,
    credentials: Mapping[str, str],
    *,
    label: str,
    secret_mask: str,
    backfill_days: int,
    key_breakdown: bool,
    now: datetime,
) -> Connection:
    """An xAI connection as ``connect`` leaves it after a good sync, written straight in.

    Benchmarks need hundreds of them and must not pay a backfill each; the
    credentials are sealed exactly as ``connect`` seals them (bound to the
    connection's uid, under the primary key), so the engine can open them.
    """
    connection = Connection(
        uid=new_uid(),  # set up front: the ciphertext is bound to it
        workspace_id=workspace_id,
        provider="xai",
        label=label,
        account_ref=credentials["team_id"],
        secret_mask=secret_mask,
        backfill_days=backfill_days,
        created_by="bench",
        credentials_changed_at=now,
        credentials_key_id=keyring.primary_key_id,
        status=ConnectionStatus.OK,
        key_breakdown=key_breakdown,
        last_success_at=now,
        last_attempt_at=now,
    )
    connection.credentials_sealed = keyring.seal_json(credentials, connection.credentials_aad)
    session.add(connection)
    return connection


def connect_demo(engine, workspace_id: int, days: int, label: str | None = None):
    """The xAI stand-in's demo team, connected through the engine with ``days`` of backfill."""
    return asyncio.run(
        engine.connect(
            workspace_id,
            "xai",
            {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY},
            label=label,
            backfill_days=days,
        )
    )


def spend(session, connection: Connection, day: date, model: str, usd: str) -> None:
    """One model's cost on one day for ``connection`` (rollups are the caller's to rebuild)."""
    session.add(
        DailyCost(
            connection_id=connection.id,
            workspace_id=connection.workspace_id,
            day=day,
            model=model,
            cost=Decimal(usd),
        )
    )
