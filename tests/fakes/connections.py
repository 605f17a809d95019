"""Connections for tests: rows built by hand (no real key), or the demo team synced."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import Connection, DailyCost


def add_connection(session, workspace_id: int, label: str, **fields) -> Connection:
    """A connection, flushed for its id: xAI's and status ``ok`` unless ``fields`` say
    otherwise (``provider="..."``, ``status="..."``)."""
    connection = Connection(
        workspace_id=workspace_id,
        provider=fields.pop("provider", "xai"),
        label=label,
        credentials_sealed="sealed",
        credentials_key_id="k1",
        status=fields.pop("status", "ok"),
        **fields,
    )
    session.add(connection)
    session.flush()
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
