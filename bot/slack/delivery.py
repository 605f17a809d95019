"""Posting scheduled messages to Slack, politely: ``bot.jobs``'s outbox.

The jobs hand over plain data (a digest, an alert, a pause note, a chart);
``bot.slack.messages`` renders it as Block Kit here. Paced to one message a
second per channel (Slack's limit for posting); 429s are waited out by the
client's retry handler; a channel Slack refuses becomes
:class:`~bot.jobs.ChannelUnavailable`, with what to do about it in words
(Slack's error codes stop here), so the job can pause what posts there
instead of retrying forever.

Each scheduled message carries its ledger key as Slack message metadata.
After a crash, the next attempt reads the channel's recent history for that
key (``channels:history``/``groups:history``) instead of posting blind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.formatting import mrkdwn, mrkdwn_keep_references
from bot.jobs import CannotEdit, ChannelUnavailable, ChartFile, Message, Posted, WebhookFailed
from bot.setup import CannotPost
from bot.slack.refusals import MESSAGE, NativeRefusals, Refused, calling
from bot.slack.refusals import send as send_natively
from bot.slack.settings import SlackSettings
from bot.webhooks import AddressRefused, post_json

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
        code, channel, fix=PAUSE_FIXES.get(code, ""), hint=ALERT_HINTS.get(code, "")
    )


def cannot_post(code: str) -> CannotPost:
    """Slack's refusal of a setup note, with the fix the reply gives."""
    return CannotPost(code, CANNOT_POST_FIXES.get(code, code))


PER_CHANNEL_INTERVAL = 1.0
"""Seconds between two posts to one channel: Slack's one message a second per channel."""
WEBHOOK_ATTEMPTS, WEBHOOK_RETRY_DELAY = 3, 0.5
"""An alert webhook is tried three times, 0.5 s then 1 s apart."""
EVENT_TYPE = "xai_usage_delivery"
"""The metadata event type our scheduled messages carry, with ``{"key": ledger key}``."""
HISTORY_PAGES = 5
"""How much history (pages of 200) an attempt reads looking for an earlier one's post."""
CLOCK_SKEW = timedelta(minutes=5)


def post_note(client: WebClient, channel: str, text: str) -> None:
    """Post a plain note (``digest add``'s); a refusal becomes :class:`CannotPost`.

    Its labels are escaped here, keeping the ``<@U…>``/``<#C…>`` it names."""
    try:
        client.chat_postMessage(channel=channel, text=mrkdwn_keep_references(text))
    except SlackApiError as error:
        raise cannot_post(error.response.get("error", "unknown_error")) from None


class SlackDelivery:
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

    def _client(self, team_id: str | None) -> WebClient:
        token = self.token_for(team_id)
        if not token:
            raise unavailable("not_installed", team_id or "")
        if token not in self._clients:
            from bot.slack.app import web_client  # app imports the listeners, which import this

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
    ) -> Posted | None:
        """Post ``message``: Block Kit as it is, or a digest, alert or note rendered for
        Slack; in ``thread`` (a message's ts) when given. Says where it landed."""
        message = _rendered(message)
        self._pace(channel)
        if key is not None:
            message = {
                **message,
                "metadata": {"event_type": EVENT_TYPE, "event_payload": {"key": key}},
            }
        if thread is not None:
            message = {**message, "thread_ts": thread}
        try:
            client = self._client(team_id)
            answer = self._natively(team_id, client.chat_postMessage, message, channel=channel)
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in PAUSING_ERRORS:
                raise unavailable(code, channel) from None
            raise
        finally:
            self._posted_at(channel)
        landed, ts = answer.get("channel"), answer.get("ts")
        return Posted(landed, ts) if landed and ts else None

    def update(self, team_id: str | None, posted: Posted, message: Message) -> None:
        """Show ``message`` in place of the one at ``posted`` (``chat.update``)."""
        message = _rendered(message)
        self._pace(posted.channel)
        try:
            client = self._client(team_id)
            self._natively(
                team_id, client.chat_update, message, channel=posted.channel, ts=posted.ts
            )
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in CANNOT_EDIT:
                raise CannotEdit(code) from None
            if code in PAUSING_ERRORS:
                raise unavailable(code, posted.channel) from None
            raise
        finally:
            self._posted_at(posted.channel)

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

        self._pace(channel)
        try:
            upload_file(
                self._client(team_id),
                channel,
                chart.data,
                filename=chart.filename,
                title=chart.title,
                alt=chart.alt,
            )
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in PAUSING_ERRORS:
                raise unavailable(code, channel) from None
            raise
        finally:
            self._posted_at(channel)

    def _native_chart(self, team_id: str | None, channel: str, chart: ChartFile) -> bool:
        """``chart`` as a ``data_visualization`` block; False when there is none to show or
        this workspace's Slack refuses it (now, remembered, or before)."""
        from bot.slack.native import CHART, chart_block, chart_note

        block = chart_block(chart.chart) if chart.chart is not None else None
        if block is None:
            return False
        if self.refusals and CHART in self.refusals.refused(team_id, MESSAGE):
            return False
        blocks = [block]
        if note := chart_note(chart.chart):
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        self._pace(channel)
        try:
            calling(self._client(team_id).chat_postMessage)(
                channel=channel, text=mrkdwn(chart.alt), blocks=blocks
            )
        except Refused as refused:
            log.info(
                "Slack refused a chart in %s (%s): posting the picture", team_id, refused.words()
            )
            if self.refusals is not None:
                self.refusals.remember(team_id, MESSAGE, frozenset({CHART}), refused.words())
            return False
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in PAUSING_ERRORS:
                raise unavailable(code, channel) from None
            raise
        finally:
            self._posted_at(channel)
        return True

    def posted(self, team_id: str | None, channel: str, key: str, since: datetime) -> bool | None:
        """Whether our message carrying ``key`` is in ``channel``, posted since ``since``.

        None when Slack will not say (a scope removed from the app, history
        too long to read): the caller then posts, and a warning says why.
        """
        client = self._client(team_id)
        oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
        cursor = None
        try:
            for _ in range(HISTORY_PAGES):
                page = client.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    limit=200,
                    include_all_metadata=True,
                    cursor=cursor,
                )
                for message in page.get("messages") or ():
                    metadata = message.get("metadata") or {}
                    payload = metadata.get("event_payload") or {}
                    if metadata.get("event_type") == EVENT_TYPE and payload.get("key") == key:
                        return True
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return False
        except SlackApiError as error:
            code = error.response.get("error", "")
            if code in PAUSING_ERRORS:  # posting will say so, and pause what posts there
                return False
            hint = (
                ": add the channels:history and groups:history scopes to the app (app.yaml)"
                if code == "missing_scope"
                else ""
            )
            log.warning(
                "cannot tell whether %s was posted in %s before (%s), posting it%s",
                key,
                channel,
                code,
                hint,
            )
            return None
        log.warning("more than %d messages in %s since %s", HISTORY_PAGES * 200, channel, since)
        return None

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
        """POST the alert; :class:`WebhookFailed` when it is not taken. Neither the URL
        nor what the receiver answered (its status) is in it: only the log has the status."""
        answer, told = "did not answer", "did not answer"
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                status = post_json(url, body, allow_private=self.allow_private_webhooks)
            except AddressRefused as error:
                log.warning("the alert webhook was not sent: %s", error)
                raise WebhookFailed(f"not sent: {error}") from None
            except (httpx.TransportError, OSError) as error:
                answer = told = f"did not answer ({type(error).__name__})"
            else:
                if status < 300:
                    return
                answer, told = f"answered HTTP {status}", "did not take the alert"
                if status < 500:  # refused: asking again will not help now
                    break
            if attempt + 1 < WEBHOOK_ATTEMPTS:  # no wait after the last
                self.pause(WEBHOOK_RETRY_DELAY * 2**attempt)
        log.warning("the alert webhook %s", answer)
        raise WebhookFailed(told)
