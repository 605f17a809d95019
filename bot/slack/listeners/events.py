"""Events: uninstalling forgets the workspace; opening Home shows the dashboard;
a direct message is a command, answered in that conversation.

Bolt acks an event when its listener returns (bot.slack.app), so each listener
only hands its work on: forgetting a workspace and answering a DM run after the
ack; the Home tab is built and published on the Home tab's own pool (in the
answer process when serve runs one), so nothing waits on Slack's answer to it,
and its opener is remembered so that a later change re-publishes it
(bot.slack.home).
"""

from __future__ import annotations

import logging
from logging import Logger

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.grammar import tokenize
from bot.slack import blocks, home
from bot.slack.dispatch import HOME_OPENED, IN_DM, SLASH_COMMAND, answer_later, replier
from bot.slack.service import Invocation, SlackService, verified_team

log = logging.getLogger(__name__)

ALWAYS_A_FORM = frozenset({"connect", "update-key"})
"""Commands that open a modal: Slack gives no trigger_id with a message, only with a click."""
BARE_FORMS = frozenset({("digest", "add"), ("budget", "set"), ("alerts",), ("range",)})
"""Commands that open their setup form when typed bare (and act at once with arguments)."""


def register(app: App) -> None:
    app.event("app_uninstalled")(app_uninstalled)
    app.event("tokens_revoked")(tokens_revoked)
    app.event("app_home_opened")(app_home_opened)
    app.event("message")(message)


def app_uninstalled(body: dict, context: BoltContext) -> None:
    service: SlackService = context["xai_usage"]
    service.after_ack(service.forget_workspace, verified_team(context), body.get("enterprise_id"))


def tokens_revoked(body: dict, context: BoltContext) -> None:
    if body.get("event", {}).get("tokens", {}).get("bot"):
        service: SlackService = context["xai_usage"]
        team, enterprise = verified_team(context), body.get("enterprise_id")
        service.after_ack(service.forget_workspace, team, enterprise)


def app_home_opened(event: dict, body: dict, client: WebClient, context: BoltContext) -> None:
    """Publish the dashboard (the Messages tab needs nothing: Slack opens the DM)."""
    if event.get("tab") != "home" or not event.get("user"):
        return
    service: SlackService = context["xai_usage"]
    invocation = Invocation(team_id=verified_team(context), user_id=event["user"])
    answerers = service.answerers  # the dashboard is built where answers are worked out
    if answerers is None or not answerers.submit(client, invocation, "", how=HOME_OPENED):
        home.opened(service, client, invocation)  # queued on Home's own pool


def message(
    event: dict, body: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    """A person's direct message to the app, run as ``/xai-usage`` would run those words.

    Only new messages people type in the app's DM: edits, deletions, joins
    (subtypes) and anything a bot posted, this app's own replies included,
    are left alone. The answer goes to the app's DM with whoever wrote, and
    only when that is where the event says it was written: an event naming a
    channel, or someone else's DM, is not Slack's and gets no answer anywhere.
    """
    if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
        return
    if not event.get("user") or not event.get("channel"):
        return
    service: SlackService = context["xai_usage"]
    service.after_ack(_direct_message, service, client, event, verified_team(context), logger)


def _direct_message(
    service: SlackService, client: WebClient, event: dict, team_id: str, logger: Logger
) -> None:
    """After the event's ack: where the DM is (Slack may be asked), then its answer."""
    own = service.own_dm(client, event["user"])
    # Unknown (no im:write): a DM id is answered by user id, which Slack posts to their DM.
    channel = own or (event["user"] if event["channel"].startswith("D") else None)
    if channel is None or (own is not None and event["channel"] != own):
        log.warning(
            "ignored a direct message event from %s naming %s, not their DM with the app",
            event["user"],
            event["channel"],
        )
        return
    invocation = Invocation(team_id=team_id, user_id=event["user"], channel_id=channel)

    text = _without_slash(event.get("text") or "")
    words = [word.lower() for word in tokenize(text)]
    if words and (words[0] in ALWAYS_A_FORM or tuple(words) in BARE_FORMS):
        respond = replier(service, client, invocation, IN_DM)
        admin = words[0] != "range"
        if refusal := service.refusal(client, invocation, admin=admin, what=" ".join(words[:2])):
            respond(**blocks.notice(refusal))
        else:
            respond(**blocks.form_button(text))
        return
    answer_later(service, client, invocation, text, logger, how=IN_DM)


def _without_slash(text: str) -> str:
    """``/xai-usage today`` typed into the DM reads as ``today``."""
    text = text.strip()
    if text.lower().startswith(SLASH_COMMAND):
        return text[len(SLASH_COMMAND) :].strip()
    return text


__all__ = ["Ack", "app_home_opened", "app_uninstalled", "message", "tokens_revoked"]
