"""``/xai-usage``: ack at once, then hand the words to the dispatcher (``bot.slack.dispatch``)."""

from __future__ import annotations

from logging import Logger

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.slack.dispatch import SLASH_COMMAND, answer_later
from bot.slack.service import Invocation, SlackService, verified_team


def register(app: App) -> None:
    app.command(SLASH_COMMAND)(xai_usage)


def xai_usage(
    ack: Ack, body: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    ack()
    service: SlackService = context["xai_usage"]
    invocation = Invocation(
        team_id=verified_team(context),
        user_id=body["user_id"],
        team_name=body.get("team_domain", ""),
        channel_id=body.get("channel_id"),
        trigger_id=body.get("trigger_id"),
        response_url=body.get("response_url"),
    )
    # Every reply counts against the response URL's 5 uses in 30 minutes; past
    # them (a long backfill, a sync), replies come by DM instead.
    answer_later(service, client, invocation, body.get("text", ""), logger)
