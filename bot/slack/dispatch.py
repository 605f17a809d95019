"""Every Slack surface's commands: words (typed, carried by a button, sent by DM) to
their answer. Parse, check who asks, call the handler, render, respond.

Listeners (``listeners/``) only turn a request into an :class:`Invocation` and call
:func:`run_command`; no listener imports another. Which commands are for admins
is said once, in the grammar. Answers are ephemeral unless ``--share`` asks for the
channel: cost data is sensitive.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from logging import Logger

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import formatting
from bot.grammar import COMMANDS, REPORTS, Command, Handlers, UsageError, parse, tokenize
from bot.setup import SetupError
from bot.slack import answers, blocks, connecting, files, forms
from bot.slack.access import refusal_to_administer, refusal_to_use
from bot.slack.delivery import post_note
from bot.slack.refusals import post_message, refusals_for
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    setup_for,
    store_unavailable,
)
from bot.sync import ConnectError
from providers.manager import UnknownProvider
from storage.repo import NotFound

SLASH_COMMAND = "/xai-usage"
TYPED, CLICKED, IN_DM = "typed", "clicked", "dm"
"""How words were asked, so their answer goes back the same way (:func:`replier`)."""
HOME_OPENED = "home"
"""No words: the App Home tab was opened, and its dashboard is the answer."""
TRIGGER_EXPIRED = frozenset({"expired_trigger_id", "trigger_expired"})
"""Slack's words for a form opened after the 3 seconds its trigger lasts."""


def answer_later(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    text: str,
    logger: Logger,
    *,
    how: str = TYPED,
) -> None:
    """After the ack: the words' answer, worked out in an answer process when serve runs
    them (bot.slack.answering), else on this process's command pool; sent ``how`` it was
    asked (:func:`replier`)."""
    answerers = service.answerers
    if answerers is not None and answerers.submit(client, invocation, text, how=how):
        return
    respond = replier(service, client, invocation, how)
    service.after_ack(run_command, service, client, invocation, text, respond, logger)


def opens_a_form(text: str) -> bool:
    """Whether these words answer with a form: Slack lets them open it for 3 seconds
    (bot.slack.answering sends them ahead of other answers)."""
    try:
        command = parse(tokenize(text), surface="slack")
    except UsageError:
        return False
    return command.name in ("connect", "update-key") or forms.wants_form(command)


def replier(
    service: SlackService, client: WebClient, invocation: Invocation, how: str
) -> Callable[..., object]:
    """How an answer is sent: words ``TYPED`` as a command, through its response URL while
    Slack takes them (then by DM); ``CLICKED``, the same way, as a new message unless it
    says otherwise; typed ``IN_DM``, into the app's DM they were typed in."""
    if how == IN_DM:
        return answered_in_dm(service, client, invocation)
    respond = service.responder(client, invocation)
    return answered_as_new_message(respond) if how == CLICKED else respond


def answered_as_new_message(respond: Callable[..., object]) -> Callable[..., object]:
    """A click's ``respond``: its answer is a new message unless it says otherwise."""

    def answer(**message: object) -> object:
        message.setdefault("replace_original", False)
        return respond(**message)

    return answer


def answered_in_dm(
    service: SlackService, client: WebClient, invocation: Invocation
) -> Callable[..., None]:
    """A direct message's ``respond``: into that DM (``invocation.channel_id``), where
    ephemeral, in-channel and replacing mean nothing between two; a native block this
    workspace's Slack refuses gives way to its fallback."""

    def respond(**message: object) -> None:
        for option in ("response_type", "replace_original", "delete_original"):
            message.pop(option, None)
        refusals = refusals_for(service.runtime.db)
        post_message(client, invocation.team_id, refusals, channel=invocation.channel_id, **message)

    return respond


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
    except (UsageError, UnknownProvider) as error:
        respond(**blocks.words_notice(str(error), references=False))
    except SetupError as error:  # may name the channel it is about
        respond(**blocks.words_notice(str(error)))
    except ConnectError as error:
        respond(**blocks.words_notice(connecting.error_text(error)))
    except SlackApiError as error:
        if error.response.get("error") not in TRIGGER_EXPIRED:
            raise
        respond(**blocks.form_button(text.strip(), late=True))
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
    result = answers.report(service, invocation, command)
    in_dm = service.in_own_dm(client, invocation)  # private already, and no channel to share to
    shared = bool(command.get("share")) and not in_dm
    if command.get("chart") and not result.empty:  # made in the background: Slack's, or a picture
        service.background.submit(
            files.answer_with_chart,
            service,
            client,
            invocation,
            command,
            result,
            respond,
            _placement(invocation, shared),
            in_dm=in_dm,
        )
        return
    message = blocks.report_message(
        result, command, shared_by=invocation.user_id if shared else None, in_dm=in_dm
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
    found = answers.insights(service, invocation, command.get("connection"))
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
    """The chosen provider's connect form, filled in with what the command already says."""
    connecting.open_connect(service, client, invocation, command)


@handles("update-key")
def update_key(
    service: SlackService,
    command: Command,
    invocation: Invocation,
    respond: Respond,
    client: WebClient,
) -> None:
    """A form with only the connection's provider's secret fields: the connection keeps
    its account, label and data."""
    connection = service.find(invocation, command.args[0])
    if not invocation.trigger_id:
        raise UsageError(
            f"Slack opens the update-key form only from `{SLASH_COMMAND} update-key` or a button."
        )
    metadata = {**service.modal_metadata(invocation), "uid": connection.uid}
    client.views_open(
        trigger_id=invocation.trigger_id,
        view=connecting.update_key_view(service, metadata, connection),
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
    rows = answers.status(service, invocation)
    message = blocks.status_message(rows, alerts, page=command.get("page", 1))
    respond(**message, **_placement(invocation))


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
    """What this person may run: a guest or visitor is told why nothing, a member sees no
    admin commands."""
    person = service.person(client, invocation)
    admins = service.settings.admins
    respond(
        **blocks.help_message(
            command.args[0].lower() if command.args else None,
            admin=refusal_to_administer(person, invocation.team_id, admins) is None,
            refusal=refusal_to_use(person, invocation.team_id),
        )
    )


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
    if command.name in ("digest", "budget") and command.args == ("list",):
        respond(**_listing(service, invocation, command), **_placement(invocation))
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
    if (
        invocation.in_place
        and command.name in ("digest", "budget")
        and command.args[:1] == ("remove",)
    ):  # Remove clicked on a list: the same page again, saying what it removed
        respond(**_listing(service, invocation, command, said=reply), **_placement(invocation))
        return
    respond(**blocks.words_notice(reply))


def _listing(
    service: SlackService, invocation: Invocation, command: Command, said: str = ""
) -> dict:
    """A page of ``digest list`` or ``budget list``, each item with its Remove button;
    after a Remove (``said``), the page before when that one emptied the last page."""
    setup = setup_for(service, invocation)
    page = command.get("page", 1)
    try:
        listing = setup.listing(command.name, page)
    except SetupError:
        if not said or page == 1:
            raise
        listing = setup.listing(command.name, page - 1)
    return blocks.setup_list_message(
        listing,
        more=setup.more_words(listing) if listing.more else "",
        empty=setup.listing_text(listing) if not listing.total else "",
        said=said,
    )


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
