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
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import delete, select

from bot.grammar import Command, slack_channel
from bot.reports import Report, StatusRow, build_report, resolve_period, status_rows
from bot.runtime import REDACTOR, Runtime
from bot.slack.access import Person, look_up, refusal_to_administer, refusal_to_use
from bot.slack.settings import SlackSettings
from bot.sync import MAX_BACKFILL_DAYS, Connected, SyncResult
from providers.types import CheckResult
from storage.models import (
    AlertRoute,
    Budget,
    Connection,
    ConnectionStatus,
    DigestSubscription,
    Workspace,
    new_uid,
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
        if label and not errors:
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


class SetupError(Exception):
    """A digest, budget or alert route that can't be set up as asked; says why."""


def parse_channel(word: str | None, invocation: Invocation) -> tuple[str, str]:
    """``<#C123|costs>`` (Slack escapes channels) or, without one, where we are."""
    if not word:
        if not invocation.channel_id:
            raise SetupError("Name a channel, e.g. `#costs`.")
        return invocation.channel_id, ""
    found = slack_channel(word)
    if found is None:
        raise SetupError(
            f"“{word}” is not a channel I can see: pick it from Slack's #-autocomplete "
            "so it arrives as a link."
        )
    return found


def parse_usd(text: str) -> Decimal:
    try:
        amount = Decimal(text.replace("$", "").replace(",", ""))
    except InvalidOperation:
        raise SetupError(f"“{text}” is not an amount in dollars, e.g. 500 or 1250.50.") from None
    if not amount.is_finite() or amount <= 0:
        raise SetupError("The amount must be more than $0.")
    return amount.quantize(Decimal("0.01"))


class SetupService:
    """Digests, budgets and alert routes: the admin side of scheduled work."""

    def __init__(self, service: SlackService) -> None:
        self.service = service
        self.db = service.runtime.db

    def _connection_id(self, invocation: Invocation, label: str | None) -> int | None:
        return self.service.find(invocation, label).id if label else None

    def add_digest(
        self, invocation: Invocation, client: WebClient, command: Command
    ) -> DigestSubscription:
        channel_id, channel_name = parse_channel(
            command.args[1] if len(command.args) > 1 else None, invocation
        )
        at = command.get("at", "09:00")
        hour, _, minute = at.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise SetupError(f"--at takes a time like 09:00; got “{at}”.")
        person = self.service.person(client, invocation)
        tz = command.get("tz") or (person.tz if person else "UTC")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise SetupError(
                f"“{tz}” is not a time zone: use one like Europe/London or America/New_York."
            ) from None
        every = command.get("every", "day")
        subscription = DigestSubscription(
            workspace_id=self.service.workspace_id(invocation),
            channel_id=channel_id,
            channel_name=channel_name,
            at_time=f"{int(hour):02d}:{int(minute):02d}",
            tz=tz,
            every=every,
            connection_id=self._connection_id(invocation, command.get("connection")),
            quiet_min_usd=parse_usd(command.get("quiet-min")) if command.get("quiet-min") else None,
            quiet_change_pct=command.get("quiet-change"),
            created_by=invocation.user_id,
        )
        when = {"day": "every day", "week": "every Monday", "month": "on the 1st of each month"}
        try:  # proves the bot can post there before anything is saved
            client.chat_postMessage(
                channel=channel_id,
                text=(
                    f":calendar: <@{invocation.user_id}> set up an xAI spend digest here, "
                    f"{when[every]} at {subscription.at_time} ({tz})."
                ),
            )
        except SlackApiError as error:
            code = error.response.get("error", "")
            fix = {
                "not_in_channel": "invite me first with `/invite @xai-usage`",
                "channel_not_found": "for a private channel, invite me first with "
                "`/invite @xai-usage`",
                "is_archived": "that channel is archived",
            }.get(code, code)
            raise SetupError(f"I can't post in <#{channel_id}>: {fix}. Then try again.") from None
        with self.db.transaction() as session:
            session.add(subscription)
        return subscription

    def digests(self, invocation: Invocation) -> list[DigestSubscription]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(DigestSubscription)
                    .where(DigestSubscription.workspace_id == self.service.workspace_id(invocation))
                    .order_by(DigestSubscription.id)
                )
            )

    def remove(self, invocation: Invocation, model: type, ident: str | None) -> None:
        if not ident or not ident.isdigit():
            raise SetupError("Give the number shown by `list`, e.g. `remove 3`.")
        with self.db.transaction() as session:
            gone = session.execute(
                delete(model).where(
                    model.id == int(ident),
                    model.workspace_id == self.service.workspace_id(invocation),
                )
            )
        if gone.rowcount == 0:
            raise SetupError(f"There is no number {ident} here: see `list`.")

    def set_budget(self, invocation: Invocation, command: Command) -> Budget:
        if len(command.args) < 2:
            raise SetupError("Say how much, e.g. `budget set 500`.")
        amount = parse_usd(command.args[1])
        raw = command.get("thresholds", "50,80,100")
        try:
            thresholds = sorted({int(t) for t in raw.split(",") if t.strip()})
        except ValueError:
            thresholds = []
        if not thresholds or not all(1 <= t <= 1000 for t in thresholds):
            raise SetupError(f"--thresholds takes percentages like 50,80,100; got “{raw}”.")
        channel = (
            parse_channel(command.get("channel"), invocation)[0] if command.get("channel") else None
        )
        budget = Budget(
            workspace_id=self.service.workspace_id(invocation),
            amount_usd=amount,
            connection_id=self._connection_id(invocation, command.get("connection")),
            thresholds=",".join(str(t) for t in thresholds),
            channel_id=channel,
            created_by=invocation.user_id,
        )
        with self.db.transaction() as session:
            session.add(budget)
        return budget

    def budgets(self, invocation: Invocation) -> list[Budget]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Budget)
                    .where(Budget.workspace_id == self.service.workspace_id(invocation))
                    .order_by(Budget.id)
                )
            )

    def route_alerts(self, invocation: Invocation, command: Command) -> AlertRoute:
        channel_id, _ = parse_channel(command.args[0] if command.args else None, invocation)
        webhook = command.get("webhook")
        if webhook and not webhook.startswith(("https://", "http://")):
            raise SetupError("--webhook takes an http(s) URL.")
        connection_id = self._connection_id(invocation, command.get("connection"))
        workspace_id = self.service.workspace_id(invocation)
        with self.db.transaction() as session:
            route = session.scalar(
                select(AlertRoute).where(
                    AlertRoute.workspace_id == workspace_id,
                    AlertRoute.connection_key == (connection_id or 0),
                )
            )
            if route is None:
                route = AlertRoute(
                    workspace_id=workspace_id,
                    connection_id=connection_id,
                    connection_key=connection_id or 0,
                    uid=new_uid(),
                )
                session.add(route)
            route.channel_id = channel_id
            route.created_by = invocation.user_id
            if webhook:
                REDACTOR.add(webhook)
                route.webhook_sealed = self.db.keyring.seal(webhook.encode(), route.webhook_aad)
                route.webhook_key_id = self.db.keyring.primary_key_id
        return route
