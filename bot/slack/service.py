"""The Slack app's service: who asks and where, where the answer goes, and the work
pools it runs on.

Split by job: what an answer says is ``answers.py`` (reports, insights, status);
the connect and update-key forms, and every credential Slack handles, are
``connecting.py``; the Home tab is ``home.py``; the setup forms are ``forms.py``.
Nothing here imports Bolt; the Slack client is passed in where a Slack lookup is
needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.grammar import Command
from bot.home import DashboardCache
from bot.runtime import Runtime
from bot.setup import Setup
from bot.slack.access import Person, look_up, refusal_to_administer, refusal_to_use
from bot.slack.refusals import NothingLeft, Refused, calling, refusals_for, response_refusal
from bot.slack.refusals import send as send_natively
from bot.slack.settings import SlackSettings
from bot.slack.setup_words import SLACK
from bot.sync import SyncResult
from storage.db import missing_keys_warning
from storage.models import Connection, Workspace
from storage.repo import find_connection, workspace_for_slack_team

if TYPE_CHECKING:
    from bot.slack.answering import AnswerProcesses
    from bot.slack.home import LiveHome

log = logging.getLogger(__name__)
COMMAND_WORKERS = 4
"""Commands worked out at once; the rest queue, and their acks never wait for them.

What these threads do is short (parse, a permission check, the store, the reply):
syncs, charts and exports go on to ``background``. Under the ack benchmark's load, 4
threads beat 8 and 16 on every ack percentile: more only contend for the GIL."""


def log_failed_request(error: BaseException) -> None:
    """A failed request is one line in the log (the traceback at DEBUG level)."""
    if store_unavailable(error):
        log.error("a Slack request failed: %s", STORE_UNAVAILABLE)
    else:
        first = str(error).splitlines()[0][:300] if str(error) else ""
        log.error("a Slack request failed: %s: %s", type(error).__name__, first)
    log.debug("the failed request's traceback", exc_info=error)


RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60
RESPONSE_URL_MARGIN = 60
"""A reply sent a minute before the end may land after it: DM it instead."""


class ResponseUrls:
    """What each command's response URL still allows: Slack takes 5 posts in 30 minutes.

    Counted from when the command arrived (Slack issued the URL a moment
    before). One process's count: a post refused anyway (another process
    used it, Slack expired it early) falls back to a DM too.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[str, list[float]] = {}  # url: [first seen, uses]
        self._lock = threading.Lock()

    def seen(self, url: str | None) -> None:
        if not url:
            return
        now = self.clock()
        with self._lock:
            for old in [u for u, (at, _) in self._seen.items() if now - at > RESPONSE_URL_SECONDS]:
                del self._seen[old]
            self._seen.setdefault(url, [now, 0])

    def take(self, url: str | None) -> bool:
        """Count one use, if Slack still accepts one; False means send it another way."""
        if not url:
            return False
        now = self.clock()
        with self._lock:
            entry = self._seen.setdefault(url, [now, 0])
            if entry[1] >= RESPONSE_URL_USES:
                return False
            if now - entry[0] > RESPONSE_URL_SECONDS - RESPONSE_URL_MARGIN:
                return False
            entry[1] += 1
            return True

    def can_take(self, url: str | None) -> bool:
        """Whether :meth:`take` would count one more use now (without counting it)."""
        if not url:
            return False
        now = self.clock()
        with self._lock:
            entry = self._seen.get(url, [now, 0])
            return entry[1] < RESPONSE_URL_USES and now - entry[0] <= (
                RESPONSE_URL_SECONDS - RESPONSE_URL_MARGIN
            )

    def uses(self, url: str) -> int:
        with self._lock:
            return int(self._seen.get(url, [0, 0])[1])


class _NotSent(Exception):
    """A response URL did not take a reply (used up, expired, or Slack said no)."""


STORE_UNAVAILABLE = (
    "xai-usage can't reach its database right now; try again in a few minutes "
    "(admins: check DATABASE_URL / the server log)."
)


def store_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database did not answer (down, refused, pool exhausted)."""
    return isinstance(error, DBAPIError | PoolTimeout)


@dataclass(frozen=True)
class Invocation:
    """Who asked, where: the parts of a Slack request the service needs."""

    team_id: str
    user_id: str
    team_name: str = ""
    channel_id: str | None = None
    trigger_id: str | None = None
    response_url: str | None = None
    in_place: bool = False
    """A click asked for its message to be replaced by the answer (``xu:view:`` buttons)."""
    only_chart: bool = False
    """A report's Chart button: the report is on screen already, so only its chart is sent."""


class SlackService:
    def __init__(
        self,
        runtime: Runtime,
        settings: SlackSettings,
        forget_installations: Callable[[str], None] | None = None,
        *,
        home_team: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.forget_installations = forget_installations
        self.home_team = home_team
        """One workspace: the bot token's team, the only one served (and the only one
        that may adopt the terminal's workspace)."""
        self._workspaces: dict[str, int] = {}
        self._dms: dict[str, str] = {}  # user id: the app's DM channel with them
        self._dm_lock = threading.Lock()
        # Long work (syncs, backfills) runs here, not on the request's thread,
        # and a workspace syncs once at a time: a second `sync` joins the first.
        self.background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="xai-usage-work")
        # What follows an ack is done here, not on the request's thread: Bolt sends the
        # ack when the listener returns (bot.slack.app), and answers that held those
        # threads (a `status` of 200 connections under a sync, one after another) kept
        # the next requests' acks waiting. With answer processes (bot.slack.answering),
        # commands' answers are worked out there instead.
        self.commands = ThreadPoolExecutor(
            max_workers=COMMAND_WORKERS, thread_name_prefix="xai-usage-command"
        )
        self._syncing: dict[tuple[int, int | None], Future] = {}
        self._syncing_lock = threading.Lock()
        self.response_urls = ResponseUrls()
        # The App Home tab's dashboards (bot/slack/home.py), rebuilt after a sync.
        self.dashboards = DashboardCache()
        self.live_home: LiveHome | None = None
        """Open Home tabs, re-published when their dashboard changes (set by build_app)."""
        self.tokens: Callable[[str | None], str | None] | None = None
        """A bot token for a team when no request brings one (set by build_app)."""
        self.answerers: AnswerProcesses | None = None
        """Processes that work commands' answers out, when serve runs them
        (bot.slack.answering); else this process does."""

    def after_ack(self, work: Callable[..., object], *args: object, long: bool = False) -> None:
        """Run ``work(*args)`` after the ack, off the request (Bolt sends a request's ack
        when its listener returns): on the command pool, or with ``long`` (a backfill, a
        sync) on the background pool. A failure is one log line, as Bolt's are."""

        def logged() -> None:
            try:
                work(*args)
            except Exception as error:
                log_failed_request(error)

        (self.background if long else self.commands).submit(logged)

    def home_changed(self, team_id: str, *, force: bool = False) -> None:
        """Tell the open Home tabs of ``team_id`` that their dashboard may have changed.

        ``force`` after a sync, whose figures can change without the fingerprint;
        setup changes go by the fingerprint. Returns at once: the work is queued.
        """
        if self.live_home is not None:
            self.live_home.changed(team_id, force=force)

    def check_homes(self) -> None:
        """Re-publish the open Home tabs whose workspace changed elsewhere (every minute)."""
        if self.live_home is not None:
            self.live_home.check_all()

    # -- replies ----------------------------------------------------------------

    def reply(
        self, client: WebClient, invocation: Invocation, message: dict, **options: object
    ) -> str:
        """Through the command's response URL while Slack accepts it, else by DM; a native
        block this workspace's Slack refuses is left out (bot.slack.refusals).

        Returns how it went: ``response_url`` or ``dm``.
        """
        url = invocation.response_url
        refusals = refusals_for(self.runtime.db)
        team = invocation.team_id

        def by_response_url(shown: dict) -> None:
            if not self.response_urls.take(url):
                raise _NotSent("used up")
            sent = WebhookClient(url).send(**shown, **options)
            if sent.status_code != 200:
                raise response_refusal(sent.status_code, sent.body) or _NotSent(sent.status_code)

        if self.response_urls.can_take(url):
            try:
                send_natively(message, by_response_url, refusals=refusals, team_id=team)
                return "response_url"
            except NothingLeft:
                raise  # no DM would take it either: the caller sends something else
            except (_NotSent, Refused) as error:
                log.info("a response URL refused a reply (%s); sending it by DM", error)
            except OSError as error:
                log.info("a response URL failed (%s); sending it by DM", type(error).__name__)
        if options.get("delete_original") or options.get("replace_original"):
            return "dropped"  # an edit of the original message has no DM equivalent
        post = calling(client.chat_postMessage)
        try:
            send_natively(
                message,
                lambda shown: post(channel=invocation.user_id, **shown),
                refusals=refusals,
                team_id=team,
            )
        except SlackApiError as error:
            log.warning("could not DM %s: %s", invocation.user_id, error.response.get("error"))
            return "failed"
        return "dm"

    def responder(self, client: WebClient, invocation: Invocation) -> Callable[..., str]:
        """A ``respond`` for one command whose every use is counted (see :meth:`reply`)."""
        self.response_urls.seen(invocation.response_url)

        def respond(**message: object) -> str:
            options = {
                k: message.pop(k)
                for k in ("response_type", "replace_original", "delete_original")
                if k in message
            }
            options.setdefault("response_type", "ephemeral")
            return self.reply(client, invocation, message, **options)

        return respond

    @staticmethod
    def modal_metadata(invocation: Invocation) -> dict[str, str]:
        """What a form carries so its answer goes where the command was typed."""
        return {
            k: v
            for k, v in (
                ("channel_id", invocation.channel_id),
                ("response_url", invocation.response_url),
            )
            if v
        }

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
                adopt_local=not self.settings.multi_workspace
                and invocation.team_id == self.home_team,
            )
            self._workspaces[invocation.team_id] = workspace.id
            return workspace.id

    def own_dm(self, client: WebClient, user_id: str) -> str | None:
        """The app's direct-message channel with ``user_id``, as Slack opens it (kept once
        known); None when Slack will not say (an app without the ``im:write`` scope)."""
        with self._dm_lock:
            known = self._dms.get(user_id)
        if known is not None:
            return known
        try:
            channel = client.conversations_open(users=user_id)["channel"]["id"]
        except (SlackApiError, KeyError, TypeError) as error:
            log.info("could not open the DM with %s (%s)", user_id, type(error).__name__)
            return None
        with self._dm_lock:
            self._dms[user_id] = channel
        return channel

    def in_own_dm(self, client: WebClient, invocation: Invocation) -> bool:
        """Whether the request came from the app's own DM with the asker: an answer there
        is already private, and there is no channel to share it to."""
        channel = invocation.channel_id or ""
        return channel.startswith("D") and self.own_dm(client, invocation.user_id) == channel

    def person(self, client: WebClient, invocation: Invocation) -> Person | None:
        return look_up(client, invocation.user_id)

    def refusal(
        self, client: WebClient, invocation: Invocation, *, admin: bool = False, what: str = ""
    ) -> str | None:
        """Why this person may not do this (``what``: the words refused), or None."""
        person = self.person(client, invocation)
        if admin:
            return refusal_to_administer(person, invocation.team_id, self.settings.admins, what)
        return refusal_to_use(person, invocation.team_id)

    def key_warnings(self) -> list[str]:
        """For ``status``: that this server lacks a key the store now uses, if it does."""
        missing = self.runtime.db.missing_key_ids()
        return [f":warning: {missing_keys_warning(missing)}"] if missing else []

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
                self.dashboards.forget(workspace_id)
                with self._syncing_lock:
                    self._syncing.pop(key, None)
                self.home_changed(invocation.team_id, force=True)

        with self._syncing_lock:
            running = self._syncing.get(key)
            if running is None:
                running = self._syncing[key] = self.background.submit(run)
        return running

    def run_setup(self, invocation: Invocation, command: Command, **how: Any) -> str:
        """A ``digest``, ``budget`` or ``alerts`` command (bot.setup.Setup.run); its reply.

        Open Home tabs follow when it changed what they show (their fingerprint).
        """
        reply = setup_for(self, invocation).run(command, **how)
        self.home_changed(invocation.team_id)
        return reply

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
        self.home_changed(invocation.team_id)
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


def verified_team(context: Any) -> str:
    """The one team a request is for: Bolt's reading of it, the field the gatekeeper
    (``only_home_team``, or the installation lookup) checked. Every other team field of
    the request names the same team, or it was refused before (bot.slack.inbound)."""
    team = context.team_id
    if not isinstance(team, str) or not team:
        raise LookupError("a Slack request without a team reached a listener")
    return team


def click_invocation(body: dict, context: Any, *, in_place: bool = False) -> Invocation:
    """Who clicked, where: ``block_actions`` carries the user, channel, a trigger for
    a modal, and a response URL for the message clicked; the team is the one the
    gatekeeper verified (every team field of the request names it)."""
    team = body.get("team") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    return Invocation(
        team_id=verified_team(context),
        user_id=body["user"]["id"],
        team_name=team.get("domain", ""),
        channel_id=channel,
        trigger_id=body.get("trigger_id"),
        response_url=body.get("response_url"),
        in_place=in_place,
    )


def metadata_of(view: dict) -> dict[str, str]:
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return metadata if isinstance(metadata, dict) else {}


def setup_for(service: SlackService, invocation: Invocation) -> Setup:
    """Digests, budgets and alert routes of the workspace the command came from."""
    return Setup(
        service.runtime.db,
        service.workspace_id(invocation),
        invocation.user_id,
        SLACK,
        allow_private_webhooks=service.runtime.settings.webhooks_allow_private,
        environ=service.runtime.settings.environ,
    )
