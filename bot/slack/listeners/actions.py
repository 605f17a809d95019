"""Buttons. A button is a command: an ``xu:`` control carries the words of a
``/xai-usage`` command in its value, and a click runs them as that person
typing them would (same parsing, permissions and errors). The disconnect
confirmation is the one button with its own listener.
"""

from __future__ import annotations

import re
from dataclasses import replace
from logging import Logger

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.formatting import mrkdwn_inert
from bot.grammar import COMMANDS, UsageError, parse, tokenize
from bot.slack import blocks
from bot.slack.dispatch import CLICKED, SLASH_COMMAND, answer_later, replier
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    click_invocation,
    store_unavailable,
)

CLICK = re.compile(r"^xu:")
IN_PLACE = "xu:view:"
"""Answers replace the clicked message: a period or grouping of the same report."""
TO_CHANNEL = "xu:share:"
"""Answers are posted in the channel, saying who shared them."""
CHART = "xu:chart"
"""A report's Chart button: the chart alone follows, not the report again."""


def register(app: App) -> None:
    app.action("disconnect_confirm")(disconnect_confirmed)
    app.action("disconnect_cancel")(disconnect_cancelled)
    app.action(CLICK)(clicked)


def clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext, logger: Logger) -> None:
    ack()
    service: SlackService = context["xai_usage"]
    action = (body.get("actions") or [{}])[0]
    action_id = action.get("action_id", "")
    # Without a response URL (a button on the App Home tab) there is no message to replace.
    in_place = action_id.startswith(IN_PLACE) and bool(body.get("response_url"))
    invocation = replace(
        click_invocation(body, context, in_place=in_place), only_chart=action_id == CHART
    )
    text = clicked_words(action)
    if (stale := stale_click(text)) is not None:
        notice = blocks.words_notice(stale, references=False)
        service.after_ack(lambda: replier(service, client, invocation, CLICKED)(**notice))
        return
    if action_id.startswith(TO_CHANNEL):
        text = _shared(text)
    answer_later(service, client, invocation, text, logger, how=CLICKED)


def clicked_words(action: dict) -> str:
    """The command a control carries: a button's value, or the chosen option's."""
    selected = action.get("selected_option") or {}
    return str(action.get("value") or selected.get("value") or "")


def stale_click(text: str) -> str | None:
    """Why a clicked command cannot run any more, in one line (a button from an
    older version of the app, say), or None when it parses."""
    if not text.strip():
        return f"That button no longer does anything: type `{SLASH_COMMAND} help` for the commands."
    try:
        parse(tokenize(text), surface="slack")
    except UsageError as error:
        return f"That button is out of date: {error.message}"
    return None


def _shared(text: str) -> str:
    """A share button's command, with ``--share`` if it takes one and lacks it."""
    command = parse(tokenize(text), surface="slack")
    if "share" in COMMANDS[command.name].options and not command.get("share"):
        return f"{text} --share"
    return text


def disconnect_confirmed(
    ack: Ack, body: dict, respond: Respond, client: WebClient, context: BoltContext
) -> None:
    ack()
    service: SlackService = context["xai_usage"]
    invocation = click_invocation(body, context)
    service.after_ack(_disconnect, service, client, invocation, body, respond)


def _disconnect(
    service: SlackService, client: WebClient, invocation: Invocation, body: dict, respond: Respond
) -> None:
    if refusal := service.refusal(client, invocation, admin=True, what="disconnect"):
        respond(**blocks.notice(refusal), replace_original=False)
        return
    try:
        label = service.disconnect(invocation, body["actions"][0].get("value", ""))
    except Exception as error:
        if not store_unavailable(error):
            raise
        respond(**blocks.notice(f":warning: {STORE_UNAVAILABLE}"), replace_original=False)
        return
    text = (
        f"Disconnected *{mrkdwn_inert(label)}*: its key and cost data are deleted."
        if label
        else "That connection was already removed."
    )
    respond(**blocks.notice(text), replace_original=True)


def disconnect_cancelled(ack: Ack, respond: Respond, context: BoltContext) -> None:
    ack()
    kept = blocks.notice("Kept it: nothing was deleted.")
    context["xai_usage"].after_ack(lambda: respond(**kept, replace_original=True))
