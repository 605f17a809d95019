"""Buttons: the disconnect confirmation."""

from __future__ import annotations

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.formatting import mrkdwn
from bot.slack import blocks
from bot.slack.service import STORE_UNAVAILABLE, Invocation, SlackService, store_unavailable


def register(app: App) -> None:
    app.action("disconnect_confirm")(disconnect_confirmed)
    app.action("disconnect_cancel")(disconnect_cancelled)


def _invocation(body: dict) -> Invocation:
    return Invocation(
        team_id=body["team"]["id"] if body.get("team") else body["user"]["team_id"],
        user_id=body["user"]["id"],
    )


def disconnect_confirmed(
    ack: Ack, body: dict, respond: Respond, client: WebClient, context: BoltContext
) -> None:
    ack()
    service: SlackService = context["xai_usage"]
    invocation = _invocation(body)
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
        f"Disconnected *{mrkdwn(label)}*: its management key and cost data are deleted."
        if label
        else "That connection was already removed."
    )
    respond(**blocks.notice(text), replace_original=True)


def disconnect_cancelled(ack: Ack, respond: Respond) -> None:
    ack()
    respond(**blocks.notice("Kept it: nothing was deleted."), replace_original=True)
