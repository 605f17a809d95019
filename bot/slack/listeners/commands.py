"""``/xai-usage``: ack at once, then parse, check who asks, call the service,
render, respond. Which commands are for admins is said once, in the grammar.

Answers are ephemeral unless ``--share`` asks for the channel: cost data
is sensitive.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import Logger

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.grammar import COMMANDS, REPORTS, Command, UsageError, parse, tokenize
from bot.slack import blocks
from bot.slack.service import Invocation, SlackService
from storage.repo import NotFound

SLASH_COMMAND = "/xai-usage"


def register(app: App) -> None:
    app.command(SLASH_COMMAND)(xai_usage)


def xai_usage(
    ack: Ack, body: dict, respond: Respond, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    ack()
    service: SlackService = context["xai_usage"]
    try:
        command = parse(tokenize(body.get("text", "")), surface="slack")
    except UsageError as error:
        respond(**blocks.notice(error.message, error.usage))
        return
    invocation = Invocation(
        team_id=body["team_id"],
        user_id=body["user_id"],
        team_name=body.get("team_domain", ""),
        channel_id=body.get("channel_id"),
        trigger_id=body.get("trigger_id"),
        response_url=body.get("response_url"),
    )
    if command.name != "help" and (
        refusal := service.refusal(client, invocation, admin=COMMANDS[command.name].admin)
    ):
        respond(**blocks.notice(refusal))
        return
    try:
        HANDLERS[command.name](service, command, invocation, respond, client)
    except NotFound as error:
        respond(**blocks.notice(str(error)))


Handler = Callable[[SlackService, Command, Invocation, Respond, WebClient], None]


def report(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    message = blocks.report_message(service.report(invocation, command))
    respond(**message, response_type="in_channel" if command.get("share") else "ephemeral")


def connect(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    client.views_open(
        trigger_id=invocation.trigger_id,
        view=blocks.connect_modal(service.modal_metadata(invocation)),
    )


def status(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    respond(**blocks.status_message(service.status(invocation)))


def sync(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    respond(**blocks.notice(":arrows_counterclockwise: Syncing… I'll post the result here."))
    results = service.sync(invocation, command.get("connection"), command.get("days"))
    respond(**blocks.notice(blocks.sync_lines(results)))


def disconnect(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    connection = service.find(invocation, command.args[0])
    respond(**blocks.confirm_disconnect(connection.label, connection.uid))


def help_(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    respond(**blocks.help_message(command.args[0].lower() if command.args else None))


HANDLERS: dict[str, Handler] = {
    **{name: report for name in REPORTS},
    "connect": connect,
    "status": status,
    "connections": status,
    "sync": sync,
    "disconnect": disconnect,
    "help": help_,
}
