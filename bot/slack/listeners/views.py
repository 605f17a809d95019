"""The connect modal: malformed input and failed tests stay on the form.

Slack gives a modal submission 3 seconds. Field checks are instant; the
credential test gets most of the rest. If xAI is slow, the form turns into
a "testing" view and the answer follows with views.update.
"""

from __future__ import annotations

from logging import Logger

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot import formatting
from bot.slack import blocks
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    metadata_of,
    store_unavailable,
)
from bot.sync import ConnectError
from providers.types import CheckResult

KEY_FIELD = "management_key"


def register(app: App) -> None:
    app.view("connect")(connect_submitted)


def connect_submitted(
    ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext, logger: Logger
) -> None:
    service: SlackService = context["xai_usage"]
    invocation = Invocation(
        team_id=view.get("team_id") or body["team"]["id"], user_id=body["user"]["id"]
    )
    metadata = metadata_of(view)
    if refusal := service.refusal(client, invocation, admin=True):
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
    def tell(text: str) -> None:
        message = blocks.notice(text)
        if metadata.get("response_url"):
            WebhookClient(metadata["response_url"]).send(**message, response_type="ephemeral")
        else:
            client.chat_postMessage(channel=invocation.user_id, **message)

    days = values.get("backfill_days") or "90"
    tell(f":hourglass: Testing passed. Saving and backfilling {days} days…")
    try:
        connected = service.connect(invocation, values, check)
    except ConnectError as error:
        tell(f":x: Not connected: {error.message}")
        return
    label = formatting.mrkdwn(connected.label)
    backfill = connected.backfill
    if backfill.ok:
        tell(
            f":white_check_mark: Connected *{label}* (`{connected.mask}`); the key is stored "
            f"encrypted and won't be shown again. Backfilled {backfill.days} days: "
            f"{formatting.money(backfill.total_usd)}. Try `/xai-usage month --by model`."
        )
    else:
        tell(
            f":warning: Connected *{label}* (`{connected.mask}`), but the backfill failed: "
            f"{formatting.mrkdwn(backfill.message or '')} It will be retried at the next sync; "
            "`/xai-usage sync` retries now."
        )
