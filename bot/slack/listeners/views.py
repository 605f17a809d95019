"""Modal submissions: malformed input and failed tests stay on the form.

Slack gives a modal submission 3 seconds. Field checks are instant; the
credential test gets most of the rest. If the provider is slow, the connect form
turns into a "testing" view and the answer follows with views.update. Choosing
another provider at the top of the connect form rebuilds it for that provider.
The setup forms (bot/slack/forms.py) run their command before closing, so a
channel the bot can't post in is told on the channel field.
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
from bot.grammar import UsageError
from bot.setup import SetupError
from bot.slack import blocks, connecting, forms
from bot.slack.delivery import post_note
from bot.slack.dispatch import answer_later
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
from providers.types import CheckResult, no_spend_hint
from storage.models import Connection
from storage.repo import NotFound


def register(app: App) -> None:
    app.view("connect")(connect_submitted)
    app.action(connecting.CHOICE_ACTION)(provider_chosen)
    app.view("update_key")(update_key_submitted)
    for name in ("digest", "budget", "alerts"):
        app.view(forms.CALLBACK_IDS[name])(setup_form_submitted)
    app.view(forms.CALLBACK_IDS["range"])(range_form_submitted)


def _submitter(body: dict, context: BoltContext) -> Invocation:
    """Who submitted a modal, in the workspace the gatekeeper verified."""
    return Invocation(team_id=verified_team(context), user_id=body["user"]["id"])


# -- connect --------------------------------------------------------------------------


def provider_chosen(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    """Another provider chosen at the top of the connect form: the form is rebuilt with
    that provider's fields (what was typed in the label and days is kept by Slack)."""
    ack()
    service: SlackService = context["xai_usage"]
    service.after_ack(_rebuild_connect_form, service, client, body)


def _rebuild_connect_form(service: SlackService, client: WebClient, body: dict) -> None:
    view = body.get("view") or {}
    action = (body.get("actions") or [{}])[0]
    chosen = (action.get("selected_option") or {}).get("value")
    try:
        provider = connecting.provider_named(service, chosen)
    except UsageError:
        return  # an option from an older form, for a provider no longer loaded
    metadata = metadata_of(view)
    if metadata.get("provider") == provider.name:
        return
    client.views_update(
        view_id=view["id"],
        hash=view.get("hash"),
        view=connecting.connect_view(service, metadata, provider),
    )


def connect_submitted(
    ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    service: SlackService = context["xai_usage"]
    invocation = _submitter(body, context)
    metadata = metadata_of(view)
    try:
        request = connecting.connect_request(service, view)
    except UsageError as error:  # the provider the form was for is no longer loaded
        ack(response_action="update", view=blocks.message_view("Connect", error.message))
        return
    if refusal := service.refusal(client, invocation, admin=True, what="connect"):
        ack(response_action="errors", errors={request.secret_block(): refusal})
        return
    try:
        workspace_id = service.workspace_id(invocation)
        errors = connecting.problems(service, workspace_id, request)
    except Exception as error:
        if not store_unavailable(error):
            raise
        logger.error("connect form: %s", STORE_UNAVAILABLE)
        ack(response_action="errors", errors={"label": STORE_UNAVAILABLE})
        return
    if errors:
        ack(response_action="errors", errors=errors)
        return
    name = request.provider.display_name
    try:
        check = connecting.check(service, workspace_id, request)
    except ConnectError as error:
        ack(
            response_action="errors",
            errors={request.block_for(error.field): connecting.error_text(error)},
        )
        return
    except TimeoutError:
        ack(
            response_action="update",
            view=blocks.message_view(
                f"Connect {name}",
                f":hourglass: Still testing the key with {name}… this view updates when it "
                "is done.",
            ),
        )
        view_id = body["view"]["id"]
        service.after_ack(
            _slow_check, service, client, view_id, invocation, request, metadata, long=True
        )
        return
    ack()  # closes the modal; the backfill runs after the ack
    service.after_ack(
        _connect_and_backfill, service, client, invocation, request, metadata, check, long=True
    )


def _slow_check(
    service: SlackService,
    client: WebClient,
    view_id: str,
    invocation: Invocation,
    request: connecting.Request,
    metadata: dict,
) -> None:
    workspace_id = service.workspace_id(invocation)
    try:
        check = connecting.check(service, workspace_id, request, budget=None)
    except ConnectError as error:
        values = {
            "label": request.label,
            "backfill_days": request.backfill_days,
            **{
                spec.name: request.credentials.get(spec.name, "")
                for spec in request.provider.credential_fields
                if not spec.secret
            },
        }
        client.views_update(
            view_id=view_id,
            view=connecting.connect_view(
                service,
                metadata,
                request.provider,
                values,
                error=f"{connecting.error_text(error)} Paste the key again to retry.",
            ),
        )
        return
    client.views_update(
        view_id=view_id,
        view=blocks.message_view(
            f"Connect {request.provider.display_name}",
            "Key accepted. Backfilling now; I'll message you when it is done.",
        ),
    )
    _connect_and_backfill(service, client, invocation, request, metadata, check)


def _connect_and_backfill(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    request: connecting.Request,
    metadata: dict,
    check: CheckResult,
) -> None:
    tell = _teller(service, client, invocation, metadata)
    days = request.backfill_days or str(connecting.max_backfill_days(request.provider))
    tell(f":hourglass: Testing passed. Saving and backfilling {days} days…")
    try:
        connected = connecting.connect(service, invocation, request, check)
    except ConnectError as error:
        tell(f":x: Not connected: {formatting.mrkdwn(connecting.error_text(error))}")
        return
    label = formatting.mrkdwn_inert(connected.label)
    account = (
        f", {formatting.mrkdwn(request.provider.display_name)} account "
        f"`{formatting.mrkdwn(connected.account)}`"
        if connected.account
        else ""
    )
    notes = "".join(f" {formatting.mrkdwn(note)}" for note in connected.check.notes)
    alerts = setup_for(service, invocation).where_alerts_go(connected.connection_id)
    backfill = connected.backfill
    if backfill.ok:
        hint = formatting.zero_backfill_hint(
            backfill.total_usd, backfill.days, no_spend_hint(request.provider)
        )
        tell(
            f":white_check_mark: Connected *{label}* (`{connected.mask}`){account}; the "
            f"key is stored encrypted and won't be shown again.{notes} Backfilled "
            f"{backfill.days} days: {formatting.money(backfill.total_usd)}."
            f"{formatting.mrkdwn(hint)}"
            f" Try `/xai-usage month --by model`. {alerts}"
        )
    else:
        tell(
            f":warning: Connected *{label}* (`{connected.mask}`){account}, but the "
            f"backfill failed: {formatting.mrkdwn(backfill.message or '')} It will be retried "
            f"at the next sync; `/xai-usage sync` retries now. {alerts}"
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
    connection = connecting.update_key_target(service, invocation, metadata.get("uid", ""))
    if connection is None:
        ack(
            response_action="update",
            view=blocks.message_view("New key", "That connection was disconnected meanwhile."),
        )
        return
    try:
        key_block = connecting.key_block(service, connection)
    except UsageError as error:  # its provider is no longer loaded
        ack(response_action="update", view=blocks.message_view("New key", error.message))
        return
    if refusal := service.refusal(client, invocation, admin=True, what="update-key"):
        ack(response_action="errors", errors={key_block: refusal})
        return
    secrets = connecting.new_secrets(service, connection, view)
    name = connecting.display_name(service, connection.provider)
    try:
        check = connecting.check_update(service, connection, secrets)
    except ConnectError as error:
        ack(response_action="errors", errors={key_block: connecting.error_text(error)})
        return
    except TimeoutError:
        ack(
            response_action="update",
            view=blocks.message_view(
                f"New {name} key",
                f":hourglass: Still testing the key with {name}… this view updates when it "
                "is done.",
            ),
        )
        check = None
    else:
        ack()  # closes the modal; the sync runs after the ack
    service.after_ack(
        _update_key, service, client, invocation, body, connection, secrets, check, long=True
    )


def _update_key(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    body: dict,
    connection: Connection,
    secrets: dict[str, str],
    check: CheckResult | None,
) -> None:
    """After the form's ack: the key's test finished if it was still running
    (``check`` None), then the key saved and a sync; the asker told how it went."""
    metadata = metadata_of(body["view"])
    name = connecting.display_name(service, connection.provider)
    if check is None:
        try:
            check = connecting.check_update(service, connection, secrets, budget=None)
        except ConnectError as error:
            client.views_update(
                view_id=body["view"]["id"],
                view=connecting.update_key_view(
                    service,
                    metadata,
                    connection,
                    error=f"{connecting.error_text(error)} Paste the key again to retry.",
                ),
            )
            return
        client.views_update(
            view_id=body["view"]["id"],
            view=blocks.message_view(f"New {name} key", "Key accepted. Syncing now…"),
        )
    tell = _teller(service, client, invocation, metadata)
    try:
        updated = connecting.update_key(service, invocation, connection, secrets, check)
    except ConnectError as error:
        tell(f":x: The key was not changed: {formatting.mrkdwn(connecting.error_text(error))}")
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
    service.after_ack(
        partial(service.reply, response_type="ephemeral"),
        client,
        _asker(invocation, metadata),
        blocks.words_notice(reply),
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
    answer_later(service, client, _asker(invocation, metadata), shlex.join(words), logger)
