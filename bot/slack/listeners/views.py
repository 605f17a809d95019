"""Modal submissions: malformed input and failed tests stay on the form.

Slack gives a modal submission 3 seconds. Field checks are instant; the
credential test gets most of the rest. If xAI is slow, the connect form turns
into a "testing" view and the answer follows with views.update. The setup
forms (bot/slack/forms.py) run their command before closing, so a channel
the bot can't post in is told on the channel field.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC
from functools import partial
from logging import Logger

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import formatting
from bot.setup import SetupError
from bot.slack import blocks, forms
from bot.slack.delivery import post_note
from bot.slack.listeners.commands import run_command
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    metadata_of,
    setup_for,
    store_unavailable,
    verified_team,
)
from bot.sync import ConnectError
from providers.types import CheckResult
from storage.repo import NotFound

KEY_FIELD = "management_key"


def register(app: App) -> None:
    app.view("connect")(connect_submitted)
    app.view("update_key")(update_key_submitted)
    for name in ("digest", "budget", "alerts"):
        app.view(forms.CALLBACK_IDS[name])(setup_form_submitted)
    app.view(forms.CALLBACK_IDS["range"])(range_form_submitted)


def _submitter(body: dict, context: BoltContext) -> Invocation:
    """Who submitted a modal, in the workspace the gatekeeper verified."""
    return Invocation(team_id=verified_team(context), user_id=body["user"]["id"])


def connect_submitted(
    ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    service: SlackService = context["xai_usage"]
    invocation = _submitter(body, context)
    metadata = metadata_of(view)
    if refusal := service.refusal(client, invocation, admin=True, what="connect"):
        ack(response_action="errors", errors={"team_id": refusal})
        return
    values = service.submitted_values(view)
    try:
        errors = service.field_errors(service.workspace_id(invocation), values)
    except Exception as error:
        if not store_unavailable(error):
            raise
        logger.error("connect form: %s", STORE_UNAVAILABLE)
        ack(response_action="errors", errors={"label": STORE_UNAVAILABLE})
        return
    if errors:
        ack(response_action="errors", errors=errors)
        return
    try:
        check = service.check(values)
    except ConnectError as error:
        ack(response_action="errors", errors={error.field or KEY_FIELD: error.message})
        return
    except TimeoutError:
        ack(
            response_action="update",
            view=blocks.message_view(
                "Connect xAI",
                ":hourglass: Still testing the key with xAI… this view updates when it is done.",
            ),
        )
        _slow_check(service, client, body["view"]["id"], invocation, values, metadata)
        return
    ack()  # closes the modal; the backfill runs after the ack
    _connect_and_backfill(service, client, invocation, values, metadata, check)


def _slow_check(
    service: SlackService,
    client: WebClient,
    view_id: str,
    invocation: Invocation,
    values: dict[str, str],
    metadata: dict,
) -> None:
    try:
        check = service.check(values, budget=None)
    except ConnectError as error:
        client.views_update(
            view_id=view_id,
            view=blocks.connect_modal(
                metadata, values, error=f"{error.message} Paste the key again to retry."
            ),
        )
        return
    client.views_update(
        view_id=view_id,
        view=blocks.message_view(
            "Connect xAI", "Key accepted. Backfilling now; I'll message you when it is done."
        ),
    )
    _connect_and_backfill(service, client, invocation, values, metadata, check)


def _connect_and_backfill(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    values: dict[str, str],
    metadata: dict,
    check: CheckResult,
) -> None:
    tell = _teller(service, client, invocation, metadata)
    days = values.get("backfill_days") or "90"
    tell(f":hourglass: Testing passed. Saving and backfilling {days} days…")
    try:
        connected = service.connect(invocation, values, check)
    except ConnectError as error:
        tell(f":x: Not connected: {formatting.mrkdwn(service.error_text(error))}")
        return
    label = formatting.mrkdwn_inert(connected.label)
    alerts = setup_for(service, invocation).where_alerts_go(connected.connection_id)
    backfill = connected.backfill
    if backfill.ok:
        tell(
            f":white_check_mark: Connected *{label}* (`{connected.mask}`); the key is stored "
            f"encrypted and won't be shown again. Backfilled {backfill.days} days: "
            f"{formatting.money(backfill.total_usd)}."
            f"{formatting.mrkdwn(formatting.zero_backfill_hint(backfill.total_usd, backfill.days))}"
            f" Try `/xai-usage month --by model`. {alerts}"
        )
    else:
        tell(
            f":warning: Connected *{label}* (`{connected.mask}`), but the backfill failed: "
            f"{formatting.mrkdwn(backfill.message or '')} It will be retried at the next sync; "
            f"`/xai-usage sync` retries now. {alerts}"
        )


def _teller(
    service: SlackService, client: WebClient, invocation: Invocation, metadata: dict
) -> Callable[[str], str]:
    """Replies to the command that opened the modal: its response URL while Slack
    still takes it (5 uses, 30 minutes), else a DM."""
    asker = replace(invocation, response_url=metadata.get("response_url"))
    return lambda text: service.reply(client, asker, blocks.notice(text), response_type="ephemeral")


# -- update-key ---------------------------------------------------------------------


def update_key_submitted(
    ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    """The key is tested before the form closes; every problem shows on the key field."""
    service: SlackService = context["xai_usage"]
    invocation = _submitter(body, context)
    metadata = metadata_of(view)
    if refusal := service.refusal(client, invocation, admin=True, what="update-key"):
        ack(response_action="errors", errors={KEY_FIELD: refusal})
        return
    connection = service.update_key_target(invocation, metadata.get("uid", ""))
    if connection is None:
        ack(
            response_action="update",
            view=blocks.message_view("New xAI key", "That connection was disconnected meanwhile."),
        )
        return
    key = service.submitted_values(view)[KEY_FIELD]
    try:
        check = service.check_update(connection, key)
    except ConnectError as error:
        ack(response_action="errors", errors={KEY_FIELD: error.message})
        return
    except TimeoutError:
        ack(
            response_action="update",
            view=blocks.message_view(
                "New xAI key",
                ":hourglass: Still testing the key with xAI… this view updates when it is done.",
            ),
        )
        try:
            check = service.check_update(connection, key, budget=None)
        except ConnectError as error:
            client.views_update(
                view_id=body["view"]["id"],
                view=blocks.update_key_modal(
                    metadata,
                    connection.label,
                    connection.account_ref,
                    error=f"{error.message} Paste the key again to retry.",
                ),
            )
            return
        client.views_update(
            view_id=body["view"]["id"],
            view=blocks.message_view("New xAI key", "Key accepted. Syncing now…"),
        )
    else:
        ack()  # closes the modal; the sync runs after the ack
    tell = _teller(service, client, invocation, metadata)
    try:
        updated = service.update_key(invocation, connection, key, check)
    except ConnectError as error:
        tell(f":x: The key was not changed: {formatting.mrkdwn(error.message)}")
        return
    label = formatting.mrkdwn_inert(updated.label)
    sync = updated.sync
    if sync.ok:
        tell(
            f":white_check_mark: New key for *{label}* (`{updated.mask}`), stored encrypted; "
            f"its data is kept and its error cleared. Synced {sync.days} days: "
            f"{formatting.money(sync.total_usd)}."
        )
    else:
        tell(
            f":warning: New key for *{label}* (`{updated.mask}`) saved, but the sync failed: "
            f"{formatting.mrkdwn(sync.message or '')} `/xai-usage sync` retries."
        )


# -- setup and range forms ----------------------------------------------------------


def _asker(invocation: Invocation, metadata: dict) -> Invocation:
    """The submitter, answered where the command that opened the form was typed."""
    return replace(
        invocation,
        channel_id=metadata.get("channel_id"),
        response_url=metadata.get("response_url"),
    )


def setup_form_submitted(
    ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    """``digest add``, ``budget set`` or ``alerts`` from their form: run as typed, before
    the form closes, so that every refusal is shown on its field."""
    service: SlackService = context["xai_usage"]
    invocation = _submitter(body, context)
    metadata = metadata_of(view)
    name = forms.COMMAND_OF[view["callback_id"]]
    first = "amount" if name == "budget" else "channel"  # the field a general refusal shows on
    if refusal := service.refusal(client, invocation, admin=True, what=forms.WHAT[name]):
        ack(response_action="errors", errors={first: refusal})
        return

    def zone() -> str:
        person = service.person(client, invocation)
        return person.tz if person and person.tz else "UTC"

    try:
        command, errors = forms.setup_command(service, invocation, name, forms.submitted(view))
        if command is None:
            ack(response_action="errors", errors=errors)
            return
        reply = service.run_setup(
            invocation, command, here=None, default_tz=zone, announce=partial(post_note, client)
        )
    except SetupError as error:  # what is left after the field checks: posting in the channel
        field = error.field or first
        ack(response_action="errors", errors={field: forms.field_error(str(error))})
        return
    except NotFound:
        ack(
            response_action="errors",
            errors={"connection": "That connection was removed meanwhile: pick another."},
        )
        return
    except Exception as error:
        if not store_unavailable(error):
            raise
        logger.error("%s form: %s", name, STORE_UNAVAILABLE)
        ack(response_action="errors", errors={first: STORE_UNAVAILABLE})
        return
    ack()
    service.reply(
        client, _asker(invocation, metadata), blocks.words_notice(reply), response_type="ephemeral"
    )


def range_form_submitted(
    ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    """The date-picker form: checked on its fields, then answered as ``range FROM TO --by X``
    typed where the form was opened."""
    service: SlackService = context["xai_usage"]
    invocation = _submitter(body, context)
    metadata = metadata_of(view)
    carried = [word for word in metadata.get("words", []) if isinstance(word, str)]
    today = service.runtime.clock().astimezone(UTC).date()
    words, errors = forms.range_command(forms.submitted(view), carried, today)
    if words is None:
        ack(response_action="errors", errors=errors)
        return
    ack()
    asker = _asker(invocation, metadata)
    respond = service.responder(client, asker)
    run_command(service, client, asker, shlex.join(words), respond, logger)
