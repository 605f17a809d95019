"""``/xai-usage``: ack at once, then parse, check who asks, call the service,
render, respond. Which commands are for admins is said once, in the grammar.

Answers are ephemeral unless ``--share`` asks for the channel: cost data
is sensitive.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from logging import Logger

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot import formatting
from bot.grammar import COMMANDS, REPORTS, Command, Handlers, UsageError, parse, tokenize
from bot.setup import SetupError
from bot.slack import blocks, files, forms
from bot.slack.delivery import post_note
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    setup_for,
    store_unavailable,
    verified_team,
)
from bot.sync import ConnectError
from storage.repo import NotFound

SLASH_COMMAND = "/xai-usage"


def register(app: App) -> None:
    app.command(SLASH_COMMAND)(xai_usage)


def xai_usage(
    ack: Ack, body: dict, respond: Respond, client: WebClient, context: BoltContext, logger: Logger
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
    respond = service.responder(client, invocation)
    service.after_ack(
        run_command, service, client, invocation, body.get("text", ""), respond, logger
    )


def run_command(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    text: str,
    respond: Respond,
    logger: Logger,
) -> None:
    """Words typed (or carried by a button, or sent by DM) to their answer:
    parse, check who asks, call the handler. Every surface in Slack comes here."""
    try:
        command = parse(tokenize(text), surface="slack")
    except UsageError as error:
        respond(**blocks.words_notice(error.message, error.usage, references=False))
        return
    if command.name != "help" and (
        refusal := service.refusal(
            client, invocation, admin=COMMANDS[command.name].admin, what=_refused(command)
        )
    ):
        respond(**blocks.notice(refusal))
        return
    handler = HANDLERS.get(command.name)
    if handler is None:
        respond(**blocks.notice(Handlers.unavailable(command.name)))
        return
    try:
        handler(service, command, invocation, respond, client)
    except NotFound as error:  # names what was typed and the labels there are, nothing else
        respond(**blocks.notice(formatting.mrkdwn_inert(str(error))))
    except UsageError as error:
        respond(**blocks.words_notice(str(error), references=False))
    except SetupError as error:  # may name the channel it is about
        respond(**blocks.words_notice(str(error)))
    except Exception as error:
        if not store_unavailable(error):
            raise  # a bug: Bolt's error handler logs it
        logger.error("/xai-usage %s: %s", command.name, STORE_UNAVAILABLE)
        respond(**blocks.notice(f":warning: {STORE_UNAVAILABLE}"))


def _refused(command: Command) -> str:
    """The words of a command, as a refusal names them: ``budget set``, ``disconnect``."""
    action = (
        command.args[0] if command.name in ("digest", "budget", "alerts") and command.args else ""
    )
    return (
        f"{command.name} {action}".strip()
        if action in ("add", "set", "remove", "list")
        else (command.name)
    )


Handler = Callable[[SlackService, Command, Invocation, Respond, WebClient], None]
HANDLERS: Handlers[Handler] = Handlers("slack")
handles = HANDLERS.handles


@handles(*(name for name in REPORTS if name != "range"))
def report(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    result = service.report(invocation, command)
    shared = bool(command.get("share"))
    if command.get("chart"):  # the chart (Slack's, or a picture) is made in the background
        service.background.submit(
            files.answer_with_chart,
            service,
            client,
            invocation,
            command,
            result,
            respond,
            _placement(invocation, shared),
        )
        return
    message = blocks.report_message(
        result, command, shared_by=invocation.user_id if shared else None
    )
    respond(**message, **_placement(invocation, shared))


def _placement(invocation: Invocation, shared: bool = False) -> dict[str, object]:
    """Where an answer goes: the channel, the clicked message (replaced), or only to the asker."""
    if shared:
        return {"response_type": "in_channel", "replace_original": False}
    if invocation.in_place:
        return {"response_type": "ephemeral", "replace_original": True}
    return {"response_type": "ephemeral"}


@handles("range")
def range_report(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """``range FROM TO`` answers; ``range`` with no days opens a date-picker form."""
    if forms.wants_form(command):
        _open_form(service, client, invocation, command, respond)
        return
    report(service, command, invocation, respond, client)


@handles("insights")
def insights(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """``insights``: private unless --share, like a report (cost data is sensitive)."""
    found = service.insights(invocation, command.get("connection"))
    respond(
        **blocks.insights_message(found),
        response_type="in_channel" if command.get("share") else "ephemeral",
    )


@handles("export")
def export(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """``export PERIOD``: a CSV, JSON or PDF file, to the asker's DM unless --share."""
    service.background.submit(files.send_export, service, client, invocation, command, respond)


@handles("connect")
def connect(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """The connect form, filled in with what the command already says."""
    values = {
        "label": command.get("label") or "",
        "team_id": (command.get("team-id") or "").strip(),
        "backfill_days": str(command.get("days") or ""),
    }
    if values["team_id"]:
        workspace_id = service.workspace_id(invocation)
        try:
            service.runtime.engine.refuse_connected(workspace_id, "xai", values["team_id"])
        except ConnectError as error:
            respond(**blocks.words_notice(service.error_text(error)))
            return
    client.views_open(
        trigger_id=invocation.trigger_id,
        view=blocks.connect_modal(service.modal_metadata(invocation), values),
    )


@handles("update-key")
def update_key(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """A form with only the key: the connection keeps its team, label and data."""
    connection = service.find(invocation, command.args[0])
    metadata = {**service.modal_metadata(invocation), "uid": connection.uid}
    client.views_open(
        trigger_id=invocation.trigger_id,
        view=blocks.update_key_modal(metadata, connection.label, connection.account_ref),
    )


@handles("status", "connections")
def status(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    alerts = [*service.key_warnings(), *setup_for(service, invocation).alert_status()]
    respond(**blocks.status_message(service.status(invocation), alerts), **_placement(invocation))


@handles("sync")
def sync(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    respond(**blocks.notice(":arrows_counterclockwise: Syncing… I'll post the result here."))
    running = service.sync(invocation, command.get("connection"), command.get("days"))
    # The result is posted when the sync ends; this listener's thread is free now.
    running.add_done_callback(lambda done: respond(**blocks.notice(_sync_outcome(done))))


def _sync_outcome(done: Future) -> str:
    error = done.exception()
    if error is not None and store_unavailable(error):
        return f":warning: {STORE_UNAVAILABLE}"
    if error is not None:
        return f":x: The sync failed ({type(error).__name__}); `/xai-usage status` shows why."
    return blocks.sync_lines(done.result())


@handles("disconnect")
def disconnect(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    connection = service.find(invocation, command.args[0])
    respond(**blocks.confirm_disconnect(connection.label, connection.uid))


@handles("help")
def help_(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    respond(**blocks.help_message(command.args[0].lower() if command.args else None))


@handles("digest", "budget", "alerts")
def setup(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """``digest``, ``budget`` and ``alerts``: here by default, in the asker's time zone;
    typed bare (``digest add``, ``budget set``, ``alerts``), a form asks instead."""
    if forms.wants_form(command):
        _open_form(service, client, invocation, command, respond)
        return

    def zone() -> str:
        person = service.person(client, invocation)
        return person.tz if person and person.tz else "UTC"

    reply = service.run_setup(
        invocation,
        command,
        here=invocation.channel_id,
        default_tz=zone,
        announce=partial(post_note, client),
    )
    respond(**blocks.words_notice(reply))


def _open_form(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    command: Command,
    respond: Respond,
) -> None:
    """The command's form; where Slack can't open one (no trigger: a DM), what to type."""
    try:
        forms.open_form(service, client, invocation, command)
    except UsageError as error:
        respond(**blocks.words_notice(error.message, error.usage, references=False))
