"""Posting scheduled messages to Slack, politely: ``bot.jobs``'s outbox.

The jobs hand over plain data (a digest, an alert, a pause note, a chart);
``bot.slack.messages`` renders it as Block Kit here. Paced to one message a
second per channel (Slack's limit for posting); 429s are waited out by the
client's retry handler; a channel Slack refuses becomes
:class:`~bot.jobs.ChannelUnavailable`, with what to do about it in words
(Slack's error codes stop here), so the job can pause what posts there
instead of retrying forever.

Each scheduled message carries its ledger key as Slack message metadata.
A post is never sent again blind: the client does not retry a post whose
answer was lost (``bot.slack.app.web_client``); that becomes
:class:`~bot.jobs.AnswerLost`, and the job looks before posting again: at the
ts recorded when Slack answered (``chat.getPermalink``, no scope needed), else
in the channel's recent history for the key, only where the app was granted
the optional ``channels:history``/``groups:history`` (``im:history`` for a DM).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import webhooks
from bot.formatting import mrkdwn_keep_references
from bot.jobs import (
    AnswerLost,
    CannotEdit,
    ChannelUnavailable,
    ChartFile,
    Message,
    Posted,
)
from bot.setup import CannotPost
from bot.slack.client import web_client
from bot.slack.refusals import MESSAGE, NativeRefusals, Refused, calling, refusals_for
from bot.slack.refusals import send as send_natively
from bot.slack.settings import OPTIONAL_SCOPES, SlackSettings

log = logging.getLogger(__name__)

PAUSING_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})
PAUSE_FIXES = {
    "channel_not_found": "the channel was deleted or is private: pick another with "
    "`/xai-usage digest add #channel`",
    "not_in_channel": "I was removed from it: invite me back with `/invite @xai-usage`, then "
    "add the digest again",
    "is_archived": "it was archived: unarchive it, or add the digest to another channel",
}
"""What to do about a digest paused by each refusal, told to whoever set it up."""
ALERT_HINTS = {
    "not_in_channel": " (invite me with `/invite @xai-usage`)",
    "channel_not_found": " (deleted or private: invite me, or `/xai-usage alerts #channel`)",
    "is_archived": " (archived: `/xai-usage alerts #channel` picks another)",
    "not_installed": " (the app is not installed in this workspace)",
}
"""What to do about an alert a channel refused, kept with it while it is owed."""
REFUSED_WORDS = {
    "not_in_channel": "I'm not a member of it",
    "channel_not_found": "Slack can't find it",
    "is_archived": "it is archived",
    "not_installed": "the app is not installed there",
}
"""Slack's refusal of a channel, as ``status`` and ``alerts list`` say it."""
CANNOT_POST_FIXES = {
    "not_in_channel": "invite me first with `/invite @xai-usage`",
    "channel_not_found": "for a private channel, invite me first with `/invite @xai-usage`",
    "is_archived": "that channel is archived",
    "not_installed": "the app is not installed in this Slack workspace",
}
"""Why ``digest add`` or ``alerts #channel`` cannot proceed, as the reply says it."""


CANNOT_EDIT = frozenset(
    {"cant_update_message", "message_not_found", "edit_window_closed", "msg_too_long"}
)
"""Slack's refusals of ``chat.update`` that a reply in the thread works around."""


def _rendered(message: Message) -> dict:
    """Block Kit as it is, or a digest, alert or note rendered for Slack."""
    if isinstance(message, dict):
        return message
    from bot.slack.messages import slack_message

    return slack_message(message)


def unavailable(code: str, channel: str) -> ChannelUnavailable:
    """Slack's refusal as the jobs understand it: its code, and what to do."""
    return ChannelUnavailable(
        code,
        channel,
        fix=PAUSE_FIXES.get(code, ""),
        hint=ALERT_HINTS.get(code, ""),
        words=REFUSED_WORDS.get(code, f"Slack refused it ({code})"),
    )


def cannot_post(code: str) -> CannotPost:
    """Slack's refusal of a setup note, with the fix the reply gives."""
    return CannotPost(code, CANNOT_POST_FIXES.get(code, code))


PER_CHANNEL_INTERVAL = 1.0
"""Seconds between two posts to one channel: Slack's one message a second per channel."""
EVENT_TYPE = "xai_usage_delivery"
"""The metadata event type our scheduled messages carry, with ``{"key": ledger key}``."""
HISTORY_PAGES = 5
"""How much history (pages of 200) an attempt reads looking for an earlier one's post."""
CLOCK_SKEW = timedelta(minutes=5)
HISTORY_SCOPES = {"C": "channels:history", "G": "groups:history", "D": "im:history"}
"""The scope that lets the bot read a conversation's history, by the first letter of its id."""
OPTIONAL_HISTORY = frozenset(OPTIONAL_SCOPES)
"""Granted or not by each workspace (``bot_optional`` in app.yaml)."""
MISSING_HISTORY = (
    ": add the optional channels:history and groups:history scopes to the app (app.yaml) "
    "so a post whose answer was lost is looked for instead"
)
LOST = (ConnectionError, TimeoutError, http.client.HTTPException)
"""What a request raises when it went and its answer did not come back (a connection
refused or cut while sending is a ``URLError``: that post never went)."""


def post_note(client: WebClient, channel: str, text: str) -> None:
    """Post a plain note (``digest add``'s); a refusal becomes :class:`CannotPost`.

    Its labels are escaped here, keeping the ``<@U…>``/``<#C…>`` it names."""
    try:
        client.chat_postMessage(channel=channel, text=mrkdwn_keep_references(text))
    except SlackApiError as error:
        raise cannot_post(error.response.get("error", "unknown_error")) from None


class SlackDelivery:
    slack = True

    @classmethod
    def of(
        cls, runtime, settings: SlackSettings, token_for: Callable[[str | None], str | None]
    ) -> SlackDelivery:
        """The delivery a process posts with (serve, worker, ``jobs run``): its settings and
        the operator's choices from the runtime's configuration."""
        return cls(
            settings,
            token_for,
            allow_private_webhooks=runtime.settings.webhooks_allow_private,
            refusals=refusals_for(runtime.db),
        )

    def __init__(
        self,
        settings: SlackSettings,
        token_for: Callable[[str | None], str | None],
        pause: Callable[[float], None] = time.sleep,
        *,
        allow_private_webhooks: bool = False,
        refusals: NativeRefusals | None = None,
    ) -> None:
        self.settings = settings
        self.refusals = refusals
        """Where each workspace's Slack refused a native block (tables, charts): shared
        with every process through the store; None tries them every time."""
        self.allow_private_webhooks = allow_private_webhooks
        """The operator's XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE (bot.webhooks)."""
        self.token_for = token_for
        self.pause = pause
        self._last_post: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clients: dict[str, WebClient] = {}
        self._scopes: dict[str, frozenset[str] | None] = {}
        self._dms: dict[tuple[str | None, str], str] = {}

    def _client(self, team_id: str | None) -> WebClient:
        token = self.token_for(team_id)
        if not token:
            raise unavailable("not_installed", team_id or "")
        if token not in self._clients:
            self._clients[token] = web_client(self.settings, token)
        return self._clients[token]

    def _pace(self, channel: str) -> None:
        with self._lock:
            last = self._last_post.get(channel)
            now = time.monotonic()
            wait = 0.0 if last is None else PER_CHANNEL_INTERVAL - (now - last)
            self._last_post[channel] = now + max(wait, 0.0)
        if wait > 0:
            self.pause(wait)

    @contextmanager
    def _sending(self, channel: str) -> Iterator[None]:
        """One call that posts in ``channel``: paced before, its time noted after, and a
        refusal that pauses what posts there (not in it, archived, gone) raised as
        :class:`ChannelUnavailable`."""
        self._pace(channel)
        try:
            yield
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in PAUSING_ERRORS:
                raise unavailable(code, channel) from None
            raise
        finally:
            self._posted_at(channel)

    def _posted_at(self, channel: str) -> None:
        # The interval counts from when Slack had the post (its answer), not from when
        # it was sent: a slow first request must not squeeze the next one closer.
        with self._lock:
            self._last_post[channel] = max(self._last_post.get(channel, 0.0), time.monotonic())

    def post(
        self,
        team_id: str | None,
        channel: str,
        message: Message,
        *,
        key: str | None = None,
        thread: str | None = None,
        broadcast: bool = False,
    ) -> Posted | None:
        """Post ``message``: Block Kit as it is, or a digest, alert or note rendered for
        Slack; in ``thread`` (a message's ts) when given, and shown in the channel too
        with ``broadcast``. Says where it landed; :class:`AnswerLost` when the post went
        and Slack's answer did not come back (the client does not send it again)."""
        message = _rendered(message)
        if key is not None:
            message = {
                **message,
                "metadata": {"event_type": EVENT_TYPE, "event_payload": {"key": key}},
            }
        if thread is not None:
            message = {**message, "thread_ts": thread}
            if broadcast:
                message["reply_broadcast"] = True
        with self._sending(channel):
            try:
                client = self._client(team_id)
                answer = self._natively(team_id, client.chat_postMessage, message, channel=channel)
            except LOST as error:
                raise AnswerLost(f"no answer from Slack ({type(error).__name__})") from None
        landed, ts = answer.get("channel"), answer.get("ts")
        return Posted(landed, ts, thread) if landed and ts else None

    def update(self, team_id: str | None, posted: Posted, message: Message) -> None:
        """Show ``message`` in place of the one at ``posted`` (``chat.update``)."""
        message = _rendered(message)
        with self._sending(posted.channel):
            try:
                client = self._client(team_id)
                self._natively(
                    team_id, client.chat_update, message, channel=posted.channel, ts=posted.ts
                )
            except SlackApiError as error:
                code = error.response.get("error", "")
                if code in CANNOT_EDIT:
                    raise CannotEdit(code) from None
                raise

    def _natively(self, team_id: str | None, method: Callable[..., Any], message: dict, **where):
        """``method`` (``chat.postMessage``, ``chat.update``) with ``message``; a native block
        this workspace's Slack refuses goes as its fallback (bot.slack.refusals). Slack's
        answer."""
        answers: list[Any] = []
        call = calling(method)
        send_natively(
            message,
            lambda shown: answers.append(call(**where, **shown)),
            refusals=self.refusals,
            team_id=team_id,
        )
        return answers[-1]

    def reply(self, team_id: str | None, posted: Posted, message: Message) -> Posted | None:
        """Post ``message`` in the thread of the one at ``posted``."""
        return self.post(team_id, posted.channel, message, thread=posted.ts)

    def upload(self, team_id: str | None, channel: str, chart: ChartFile) -> None:
        """Show a digest's chart in its channel: a native chart in a message of its own
        where the workspace's Slack takes one, else the picture (``files_upload_v2``), as
        ``--chart`` does."""
        if self._native_chart(team_id, channel, chart):
            return
        from bot.slack.files import upload_file

        with self._sending(channel):
            upload_file(
                self._client(team_id),
                channel,
                chart.data,
                filename=chart.filename,
                title=chart.title,
                alt=chart.alt,
            )

    def _native_chart(self, team_id: str | None, channel: str, chart: ChartFile) -> bool:
        """``chart`` as a ``data_visualization`` block; False when there is none to show or
        this workspace's Slack refuses it (now, remembered, or before)."""
        from bot.slack.native import CHART, chart_message

        message = chart_message(chart.chart) if chart.chart is not None else None
        if message is None:
            return False
        if self.refusals and CHART in self.refusals.refused(team_id, MESSAGE):
            return False
        with self._sending(channel):
            try:
                calling(self._client(team_id).chat_postMessage)(channel=channel, **message)
            except Refused as refused:
                log.info(
                    "Slack refused a chart in %s (%s): posting the picture",
                    team_id,
                    refused.words(),
                )
                if self.refusals is not None:
                    self.refusals.remember(team_id, MESSAGE, frozenset({CHART}), refused.words())
                return False
        return True

    def posted(
        self,
        team_id: str | None,
        channel: str,
        key: str,
        since: datetime,
        *,
        thread: str | None = None,
    ) -> Posted | bool | None:
        """Where our message carrying ``key`` is in ``channel`` (in the thread of
        ``thread``), posted since ``since``; False when it is not there.

        None when Slack will not say: the app was not granted the conversation's
        history scope (optional: then it is never asked), or the history is too long
        to read. The caller then posts, and a warning says why.
        """
        client = self._client(team_id)
        conversation = self._conversation(team_id, client, channel)
        needed = HISTORY_SCOPES.get((conversation or "?")[0])
        granted = self._granted(team_id, client)
        if needed is None or (granted is not None and needed not in granted):
            log.warning(
                "cannot tell whether %s was posted in %s before (%s), posting it%s",
                key,
                channel,
                f"the app has no {needed}" if needed else "no conversation",
                MISSING_HISTORY if needed in OPTIONAL_HISTORY else "",
            )
            return None
        oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
        cursor = None
        try:
            for _ in range(HISTORY_PAGES):
                read = client.conversations_replies if thread else client.conversations_history
                page = read(
                    channel=conversation,
                    oldest=oldest,
                    limit=200,
                    include_all_metadata=True,
                    cursor=cursor,
                    **({"ts": thread} if thread else {}),
                )
                for message in page.get("messages") or ():
                    metadata = message.get("metadata") or {}
                    payload = metadata.get("event_payload") or {}
                    if metadata.get("event_type") == EVENT_TYPE and payload.get("key") == key:
                        ts = message.get("ts")
                        return Posted(conversation, ts, thread) if ts else True
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return False
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in PAUSING_ERRORS:  # posting will say so, and pause what posts there
                return False
            log.warning(
                "cannot tell whether %s was posted in %s before (%s), posting it%s",
                key,
                channel,
                code,
                MISSING_HISTORY if code == "missing_scope" else "",
            )
            return None
        except LOST as error:
            log.warning("cannot tell whether %s was posted in %s (%s)", key, channel, error)
            return None
        log.warning("more than %d messages in %s since %s", HISTORY_PAGES * 200, channel, since)
        return None

    def exists(self, team_id: str | None, posted: Posted) -> bool | None:
        """Whether the message at ``posted`` is still there (``chat.getPermalink``, which
        needs no scope); None when Slack will not say."""
        try:
            self._client(team_id).chat_getPermalink(channel=posted.channel, message_ts=posted.ts)
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in ("message_not_found", "channel_not_found"):
                return False
            log.info("cannot tell whether %s in %s is there (%s)", posted.ts, posted.channel, code)
            return None
        except LOST:
            return None
        return True

    def _granted(self, team_id: str | None, client: WebClient) -> frozenset[str] | None:
        """The scopes the workspace granted the app (Slack says them in ``x-oauth-scopes``
        with every answer; asked once per token); None when Slack does not say."""
        token = client.token or ""
        if token not in self._scopes:
            try:
                headers = client.auth_test().headers
            except (SlackApiError, *LOST):
                return None
            said = next((v for k, v in headers.items() if k.lower() == "x-oauth-scopes"), None)
            if isinstance(said, list):
                said = ",".join(said)
            self._scopes[token] = (
                frozenset(s.strip() for s in said.split(",") if s.strip()) if said else None
            )
        return self._scopes[token]

    def _conversation(self, team_id: str | None, client: WebClient, channel: str) -> str | None:
        """The conversation's id: a channel's own, or the app's DM with a user (opened with
        ``im:write``, once); None when Slack will not open it."""
        if not channel.startswith(("U", "W")):
            return channel
        known = self._dms.get((team_id, channel))
        if known is None:
            try:
                known = client.conversations_open(users=channel)["channel"]["id"]
            except (SlackApiError, KeyError, TypeError, *LOST):
                return None
            self._dms[(team_id, channel)] = known
        return known

    def announce(self, team_id: str | None, channel: str, text: str) -> None:
        """:func:`post_note` with this workspace's token."""
        try:
            client = self._client(team_id)
        except ChannelUnavailable as error:  # not installed there
            raise cannot_post(error.error) from None
        post_note(client, channel, text)

    def dm(self, team_id: str | None, user_id: str, message: Message) -> Posted | None:
        return self.post(team_id, user_id, message)  # a user id as channel opens the app's DM

    def webhook(self, url: str, body: dict) -> None:
        webhooks.deliver(url, body, allow_private=self.allow_private_webhooks, pause=self.pause)
