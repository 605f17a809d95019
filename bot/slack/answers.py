"""What Slack answers with: reports, insights and status, read from the store.

The reading half of the Slack service (``bot/slack/service.py`` knows who asks and
where the answer goes; this knows what the answer is). ``today`` first re-fetches
connections whose data is over 15 minutes old, so it is never stale by much.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

from sqlalchemy import select

from bot.grammar import Command
from bot.insights import Insights, build_insights
from bot.reports import Report, StatusRow, build_report, resolve_period, status_rows
from bot.slack.service import Invocation, SlackService
from bot.sync import SyncResult
from storage.models import Connection, ConnectionStatus
from storage.repo import find_connection

FRESH_FOR = timedelta(minutes=15)


def report(service: SlackService, invocation: Invocation, command: Command) -> Report:
    runtime = service.runtime
    workspace_id = service.workspace_id(invocation)
    if command.name == "today" and refresh_today(service, workspace_id):
        service.home_changed(invocation.team_id, force=True)
    now = runtime.clock()
    with runtime.db.session() as session:
        connection = (
            find_connection(session, workspace_id, command.get("connection"))
            if command.get("connection")
            else None
        )
        return build_report(
            session,
            workspace_id,
            resolve_period(command, now.astimezone(UTC).date()),
            command.get("by", "model"),
            connection=connection,
            model_pattern=command.get("model"),
            now=now,
        )


def insights(service: SlackService, invocation: Invocation, label: str | None = None) -> Insights:
    """The workspace's insights (or one connection's), as of today (UTC)."""
    runtime = service.runtime
    workspace_id = service.workspace_id(invocation)
    with runtime.db.session() as session:
        connection = find_connection(session, workspace_id, label) if label else None
        today = runtime.clock().astimezone(UTC).date()
        return build_insights(session, workspace_id, today, connection, providers=runtime.providers)


def refresh_today(service: SlackService, workspace_id: int) -> list[SyncResult]:
    """Re-fetch today for connections whose data is over 15 minutes old."""
    runtime = service.runtime
    cutoff = runtime.clock() - FRESH_FOR
    with runtime.db.session() as session:
        stale = list(
            session.scalars(
                select(Connection.id).where(
                    Connection.workspace_id == workspace_id,
                    Connection.status != ConnectionStatus.ERROR,
                    (Connection.last_success_at.is_(None)) | (Connection.last_success_at < cutoff),
                )
            )
        )
    if not stale:
        return []
    try:
        return asyncio.run(runtime.engine.sync_many(stale, trigger="today", days=1))
    finally:
        service.dashboards.forget(workspace_id)


def status(service: SlackService, invocation: Invocation) -> list[StatusRow]:
    with service.runtime.db.session() as session:
        return status_rows(session, service.workspace_id(invocation), service.runtime.clock())
