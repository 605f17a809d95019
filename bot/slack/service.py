"""What the Slack listeners call: plain methods over the store and the engine.

Listeners ack, parse, call one of these, and render. Nothing here imports
Bolt; the Slack client is passed in where a Slack lookup is needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, timedelta

from slack_sdk import WebClient
from sqlalchemy import delete, select

from bot.grammar import Command, label_problem
from bot.reports import Report, StatusRow, build_report, resolve_period, status_rows
from bot.runtime import REDACTOR, Runtime
from bot.setup import Setup
from bot.slack.access import Person, look_up, refusal_to_administer, refusal_to_use
from bot.slack.settings import SlackSettings
from bot.sync import MAX_BACKFILL_DAYS, Connected, SyncResult
from providers.types import CheckResult
from storage.models import (
    Connection,
    ConnectionStatus,
    Workspace,
)
from storage.repo import find_connection, workspace_for_slack_team

log = logging.getLogger(__name__)

FRESH_FOR = timedelta(minutes=15)
CHECK_BUDGET_SECONDS = 2.3  # of Slack's 3 s for a modal submission
CONNECT_FIELDS = ("label", "team_id", "management_key", "backfill_days")


@dataclass(frozen=True)
class Invocation:
    """Who asked, where: the parts of a Slack request the service needs."""

    team_id: str
    user_id: str
    team_name: str = ""
    channel_id: str | None = None
    trigger_id: str | None = None
    response_url: str | None = None


class SlackService:
    def __init__(
        self,
        runtime: Runtime,
        settings: SlackSettings,
        forget_installations: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.forget_installations = forget_installations
        self._workspaces: dict[str, int] = {}
        # Long work (syncs, backfills) runs here, not on Bolt's listener threads,
        # and a workspace syncs once at a time: a second `sync` joins the first.
        self.background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="xai-usage-work")
        self._syncing: dict[tuple[int, int | None], Future] = {}
        self._syncing_lock = threading.Lock()

    # -- who and where ---------------------------------------------------------

    def workspace_id(self, invocation: Invocation) -> int:
        """The workspace a request belongs to; every query is scoped to it."""
        cached = self._workspaces.get(invocation.team_id)
        if cached is not None:
            return cached
        with self.runtime.db.transaction() as session:
            workspace = workspace_for_slack_team(
                session,
                invocation.team_id,
                invocation.team_name,
                adopt_local=not self.settings.multi_workspace,
            )
            self._workspaces[invocation.team_id] = workspace.id
            return workspace.id

    def person(self, client: WebClient, invocation: Invocation) -> Person | None:
        return look_up(client, invocation.user_id)

    def refusal(
        self, client: WebClient, invocation: Invocation, *, admin: bool = False
    ) -> str | None:
        person = self.person(client, invocation)
        if admin:
            return refusal_to_administer(person, invocation.team_id, self.settings.admins)
        return refusal_to_use(person, invocation.team_id)

    # -- reports ----------------------------------------------------------------

    def report(self, invocation: Invocation, command: Command) -> Report:
        workspace_id = self.workspace_id(invocation)
        if command.name == "today":
            self.refresh_today(workspace_id)
        now = self.runtime.clock()
        with self.runtime.db.session() as session:
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

    def refresh_today(self, workspace_id: int) -> list[SyncResult]:
        """Re-fetch today for connections whose data is over 15 minutes old."""
        cutoff = self.runtime.clock() - FRESH_FOR
        with self.runtime.db.session() as session:
            stale = list(
                session.scalars(
                    select(Connection.id).where(
                        Connection.workspace_id == workspace_id,
                        Connection.status != ConnectionStatus.ERROR,
                        (Connection.last_success_at.is_(None))
                        | (Connection.last_success_at < cutoff),
                    )
                )
            )
        if not stale:
            return []
        return asyncio.run(self.runtime.engine.sync_many(stale, trigger="today", days=1))

    def status(self, invocation: Invocation) -> list[StatusRow]:
        with self.runtime.db.session() as session:
            return status_rows(session, self.workspace_id(invocation), self.runtime.clock())

    def sync(
        self, invocation: Invocation, label: str | None, days: int | None
    ) -> Future[list[SyncResult]]:
        """Force a sync in the background; joins one already running for the same ask."""
        workspace_id = self.workspace_id(invocation)
        target = None
        if label:
            with self.runtime.db.session() as session:
                target = find_connection(session, workspace_id, label).id
        key = (workspace_id, target)
        engine = self.runtime.engine

        def run() -> list[SyncResult]:
            try:
                if target is not None:
                    return asyncio.run(
                        engine.sync_many([target], trigger="force", force=True, days=days)
                    )
                return asyncio.run(
                    engine.sync_all(workspace_id, trigger="force", force=True, days=days)
                )
            finally:
                with self._syncing_lock:
                    self._syncing.pop(key, None)

        with self._syncing_lock:
            running = self._syncing.get(key)
            if running is None:
                running = self._syncing[key] = self.background.submit(run)
        return running

    # -- connect ----------------------------------------------------------------

    @staticmethod
    def modal_metadata(invocation: Invocation) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("channel_id", invocation.channel_id),
                ("response_url", invocation.response_url),
            )
            if v
        }

    @staticmethod
    def submitted_values(view: dict) -> dict[str, str]:
        state = view.get("state", {}).get("values", {})
        values = {}
        for block_id in CONNECT_FIELDS:
            value = (state.get(block_id, {}).get("value", {}) or {}).get("value")
            values[block_id] = (value or "").strip()
        if values["management_key"]:
            REDACTOR.add(values["management_key"])
        return values

    def field_errors(self, workspace_id: int, values: dict[str, str]) -> dict[str, str]:
        """Malformed input, shown on the field at once; no network."""
        errors = {}
        provider = self.runtime.providers.get("xai")
        for spec in provider.credential_fields:
            value = values.get(spec.name, "")
            problem = spec.validate(value) if value else f"{spec.label} is required."
            if problem:
                errors[spec.name] = problem
        days = values.get("backfill_days") or str(MAX_BACKFILL_DAYS)
        if not days.isdigit() or not 1 <= int(days) <= MAX_BACKFILL_DAYS:
            errors["backfill_days"] = f"A whole number of days from 1 to {MAX_BACKFILL_DAYS}."
        label = values.get("label", "")
        if problem := label_problem(label):  # Slack enforces max_length only in its own client
            errors["label"] = problem
        elif label and not errors:
            with self.runtime.db.session() as session:
                taken = session.scalar(
                    select(Connection.id).where(
                        Connection.workspace_id == workspace_id, Connection.label == label
                    )
                )
            if taken:
                errors["label"] = f"“{label}” is taken: pick another label."
        return errors

    def check(
        self, values: dict[str, str], *, budget: float | None = CHECK_BUDGET_SECONDS
    ) -> CheckResult:
        """Test the credentials; TimeoutError if it takes longer than ``budget``."""
        credentials = {"team_id": values["team_id"], "management_key": values["management_key"]}
        check = self.runtime.engine.check("xai", credentials)
        return asyncio.run(asyncio.wait_for(check, budget) if budget else check)

    def connect(
        self, invocation: Invocation, values: dict[str, str], check: CheckResult
    ) -> Connected:
        credentials = {"team_id": values["team_id"], "management_key": values["management_key"]}
        return asyncio.run(
            self.runtime.engine.connect(
                self.workspace_id(invocation),
                "xai",
                credentials,
                label=values.get("label") or None,
                backfill_days=int(values.get("backfill_days") or MAX_BACKFILL_DAYS),
                created_by=invocation.user_id,
                check=check,
            )
        )

    # -- disconnect -------------------------------------------------------------

    def find(self, invocation: Invocation, label: str) -> Connection:
        with self.runtime.db.session() as session:
            return find_connection(session, self.workspace_id(invocation), label)

    def disconnect(self, invocation: Invocation, uid: str) -> str | None:
        """Delete a connection of this workspace by uid; its label, or None if gone."""
        with self.runtime.db.session() as session:
            connection = session.scalar(
                select(Connection).where(
                    Connection.uid == uid, Connection.workspace_id == self.workspace_id(invocation)
                )
            )
        if connection is None:
            return None
        self.runtime.engine.disconnect(connection.id)
        return connection.label

    # -- uninstall --------------------------------------------------------------

    def forget_workspace(self, team_id: str, enterprise_id: str | None = None) -> None:
        """The app was uninstalled: delete the workspace's tokens, keys and data."""
        if self.forget_installations:
            self.forget_installations(team_id, enterprise_id)
        with self.runtime.db.session() as session:
            workspace_id = session.scalar(
                select(Workspace.id).where(Workspace.slack_team_id == team_id)
            )
            connection_ids = list(
                session.scalars(
                    select(Connection.id).where(Connection.workspace_id == workspace_id)
                )
            )
        for connection_id in connection_ids:
            self.runtime.engine.disconnect(connection_id)
        if workspace_id is not None:
            with self.runtime.db.transaction() as session:
                session.execute(delete(Workspace).where(Workspace.id == workspace_id))
        self._workspaces.pop(team_id, None)
        log.info("forgot workspace %s after uninstall", team_id)


def metadata_of(view: dict) -> dict[str, str]:
    try:
        return json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}


def setup_for(service: SlackService, invocation: Invocation) -> Setup:
    """Digests, budgets and alert routes of the workspace the command came from."""
    return Setup(service.runtime.db, service.workspace_id(invocation), invocation.user_id, "slack")
