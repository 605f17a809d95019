"""Connecting from Slack: the connect and update-key forms, built from what each provider
declares, and the one place in ``bot/slack`` that handles credentials.

A form is another way of typing ``connect``: its fields are the chosen provider's
(``CredentialField``: label, help, placeholder, optional or not), it is checked by
the provider's own rules and by the engine's (:meth:`bot.sync.SyncEngine.problems`),
and it connects through :meth:`bot.sync.SyncEngine.connect`, the call the terminal
makes. What Slack adds: every problem shows on its field (the provider names the
field to blame, ``ProviderError.field``), the key is tested before the form closes
(Slack gives a submission 3 seconds), and a choice of provider at the top of the
connect form rebuilds it for another provider (``views.update``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.grammar import COMMANDS, Command, UsageError, field_options
from bot.render import render_json
from bot.runtime import REDACTOR
from bot.slack.forms import submitted
from bot.slack.service import Invocation, SlackService
from bot.sync import (
    ALREADY_CONNECTED,
    BACKFILL_FIELD,
    LABEL_FIELD,
    Connected,
    ConnectError,
    KeyUpdated,
    already_connected,
)
from providers.manager import DEFAULT_PROVIDER
from providers.types import CheckResult, CredentialField, Provider, key_page, max_backfill_days
from storage.models import Connection

SLASH = "/xai-usage"
CHECK_BUDGET_SECONDS = 2.3  # of Slack's 3 s for a modal submission
CHOICE_BLOCK = "provider"
CHOICE_ACTION = "connect_provider"
"""The provider choice's action: choosing rebuilds the form (``listeners/views.py``)."""
HOST_BLOCKS = frozenset({LABEL_FIELD, BACKFILL_FIELD, CHOICE_BLOCK})
"""The form's own inputs; a provider field of the same name gets a block id of its own."""
MAX_PLACEHOLDER = 150
MAX_CHOICES = 100
SECRET_PLACEHOLDER = "Paste the key shown when you created it"


@dataclass(frozen=True)
class FieldInput:
    """One declared credential field as a form input."""

    block_id: str
    label: str
    hint: str
    placeholder: str
    optional: bool
    initial: str = ""
    """A non-secret field's value, to fill the form in with; a secret is never echoed."""


@dataclass(frozen=True)
class Form:
    """What a connect or update-key form shows, all from the provider."""

    provider: str
    display_name: str
    intro: str
    fields: tuple[FieldInput, ...]
    reach: int = 0
    default_label: str = ""
    choices: tuple[dict[str, Any], ...] = ()
    choice_block: str = CHOICE_BLOCK
    choice_action: str = CHOICE_ACTION


def block_id(field: str) -> str:
    """The input a credential field is shown in: its own name, unless the form uses it."""
    return f"field_{field}" if field in HOST_BLOCKS or field.startswith("field_") else field


def field_of(block: str) -> str:
    return block.removeprefix("field_") if block.startswith("field_") else block


def _input(spec: CredentialField, value: str = "") -> FieldInput:
    placeholder = spec.placeholder or (SECRET_PLACEHOLDER if spec.secret else spec.label)
    return FieldInput(
        block_id(spec.name),
        spec.label,
        spec.help,
        placeholder[:MAX_PLACEHOLDER],
        spec.optional,
        "" if spec.secret else value,
    )


def provider_named(service: SlackService, name: str | None) -> Provider:
    """The provider a form or command names (the built-in one when none); UsageError with
    the loaded ones when it is not loaded."""
    from providers.manager import UnknownProvider

    try:
        return service.runtime.providers.get(name or DEFAULT_PROVIDER)
    except UnknownProvider as error:
        raise UsageError(str(error), COMMANDS["connect"].usage("slack")) from None


# -- the connect form -----------------------------------------------------------------


def connect_form(
    service: SlackService, provider: Provider, values: Mapping[str, str] | None = None
) -> Form:
    values = values or {}
    page = key_page(provider)
    intro = (
        f"Connect a {provider.display_name} account. The key is tested first, stored "
        "encrypted (AES-256-GCM) and never shown again."
        + (f" Keys are made in {page}." if page else "")
    )
    choices = tuple(
        {"text": {"type": "plain_text", "text": p.display_name[:75]}, "value": p.name}
        for p in list(service.runtime.providers)[:MAX_CHOICES]
    )
    return Form(
        provider=provider.name,
        display_name=provider.display_name,
        intro=intro,
        fields=tuple(
            _input(spec, values.get(spec.name, "")) for spec in provider.credential_fields
        ),
        reach=max_backfill_days(provider),
        default_label=provider.default_label({}),
        choices=choices,
    )


def connect_view(
    service: SlackService,
    metadata: Mapping[str, Any],
    provider: Provider,
    values: Mapping[str, str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The connect form for ``provider``; ``values`` refill it, never a secret."""
    values = dict(values or {})
    return render_json(
        "slack/connect_modal.json.j2",
        metadata=json.dumps({**metadata, "provider": provider.name}),
        form=connect_form(service, provider, values),
        values=values,
        error=error,
    )


def open_connect(service: SlackService, client, invocation: Invocation, command: Command) -> None:
    """``connect [--provider NAME] [--FIELD VALUE]…``: its form, filled in with what the
    command says. What the command already gets wrong (a field the provider does not
    have, a key typed in the channel, an account connected already) is said instead."""
    provider = provider_named(service, command.get("provider"))
    declared = {spec.name: spec for spec in provider.credential_fields}
    given = field_options(command)
    for name in given:
        spec = declared.get(name)
        flag = f"--{name.replace('_', '-')}"
        if spec is None:
            usable = [f"--{n.replace('_', '-')}" for n, s in declared.items() if not s.secret]
            raise UsageError(
                f"{provider.display_name} has no field {flag}. Its fields: "
                f"{', '.join(usable) or 'none: it needs only a key, pasted in the form'}.",
                COMMANDS["connect"].usage("slack"),
            )
        if spec.secret:
            raise UsageError(
                f"{spec.label} is a secret: never type it in a message. Run `{SLASH} connect` "
                "and paste it in the form, where nobody else sees it."
            )
    values = {
        LABEL_FIELD: command.get("label") or "",
        BACKFILL_FIELD: str(command.get("days") or ""),
        **{name: value.strip() for name, value in given.items()},
    }
    workspace_id = service.workspace_id(invocation)
    problems = service.runtime.engine.problems(
        workspace_id,
        provider.name,
        {name: values[name] for name in given},
        label=values[LABEL_FIELD],
        backfill_days=values[BACKFILL_FIELD] or None,
    )
    if problems:
        raise UsageError(" ".join(slack_words(message) for message in problems.values()))
    if not invocation.trigger_id:
        raise UsageError(f"Slack opens the connect form only from `{SLASH} connect` or a button.")
    client.views_open(
        trigger_id=invocation.trigger_id,
        view=connect_view(service, service.modal_metadata(invocation), provider, values),
    )


def slack_words(message: str) -> str:
    """An engine message as Slack says it: commands spelled ``/xai-usage``."""
    return message.replace("`xai-usage ", f"`{SLASH} ")


def error_text(error: ConnectError) -> str:
    """A ConnectError as Slack shows it."""
    if error.reason == ALREADY_CONNECTED and error.existing:
        return already_connected(error.existing, error.account, SLASH)
    return slack_words(error.message)


@dataclass(frozen=True)
class Request:
    """A connect form's submission: the provider's fields, the label and the days."""

    provider: Provider
    credentials: dict[str, str]
    label: str
    backfill_days: str

    def secret_block(self) -> str:
        """Where a problem no field owns is shown: the key (what a check tests)."""
        fields = self.provider.credential_fields
        spec = next((f for f in fields if f.secret), fields[0] if fields else None)
        return block_id(spec.name) if spec else LABEL_FIELD

    def block_for(self, field: str | None) -> str:
        """The input a problem with ``field`` shows on (the key's when none or unknown)."""
        if field in (LABEL_FIELD, BACKFILL_FIELD):
            return field
        names = {spec.name for spec in self.provider.credential_fields}
        return block_id(field) if field in names else self.secret_block()


def connect_request(service: SlackService, view: dict) -> Request:
    """What a connect form says, for the provider its metadata names."""
    from bot.slack.service import metadata_of

    provider = provider_named(service, metadata_of(view).get("provider"))
    state = submitted(view)
    credentials = {}
    for spec in provider.credential_fields:
        value = state.get(block_id(spec.name), "")
        if spec.secret and value:
            REDACTOR.add(value)
        credentials[spec.name] = value
    return Request(provider, credentials, state.get(LABEL_FIELD, ""), state.get(BACKFILL_FIELD, ""))


def problems(service: SlackService, workspace_id: int, request: Request) -> dict[str, str]:
    """Every problem found without the network, by input (block id)."""
    found = service.runtime.engine.problems(
        workspace_id,
        request.provider.name,
        request.credentials,
        label=request.label,
        backfill_days=request.backfill_days or None,
    )
    return {request.block_for(field): slack_words(message) for field, message in found.items()}


def check(
    service: SlackService,
    workspace_id: int,
    request: Request,
    *,
    budget: float | None = CHECK_BUDGET_SECONDS,
) -> CheckResult:
    """Test the credentials (an account connected already refused too); TimeoutError if
    it takes longer than ``budget``."""
    tested = service.runtime.engine.check(
        request.provider.name, request.credentials, workspace_id=workspace_id
    )
    return asyncio.run(asyncio.wait_for(tested, budget) if budget else tested)


def connect(
    service: SlackService, invocation: Invocation, request: Request, tested: CheckResult
) -> Connected:
    connected = asyncio.run(
        service.runtime.engine.connect(
            service.workspace_id(invocation),
            request.provider.name,
            request.credentials,
            label=request.label or None,
            backfill_days=int(request.backfill_days) if request.backfill_days else None,
            created_by=invocation.user_id,
            check=tested,
        )
    )
    service.home_changed(invocation.team_id, force=True)
    return connected


# -- the update-key form ---------------------------------------------------------------


def update_key_form(service: SlackService, connection: Connection) -> Form:
    provider = provider_named(service, connection.provider)
    account = connection.account_ref or "its account"
    if connection.account_name and connection.account_name != connection.account_ref:
        account = f"{connection.account_name} ({account})"
    page = key_page(provider)
    intro = (
        f"A new key for *{_mrkdwn(connection.label)}* ({_mrkdwn(provider.display_name)} "
        f"account `{_mrkdwn(account)}`). It must be a key of that account. It is tested first "
        "and stored encrypted; the connection keeps its label, history and settings."
        + (f" Keys are made in {_mrkdwn(page)}." if page else "")
    )
    secrets = tuple(_input(spec) for spec in provider.credential_fields if spec.secret)
    return Form(provider.name, provider.display_name, intro, secrets)


def update_key_view(
    service: SlackService,
    metadata: Mapping[str, Any],
    connection: Connection,
    error: str | None = None,
) -> dict[str, Any]:
    return render_json(
        "slack/update_key_modal.json.j2",
        metadata=json.dumps(dict(metadata)),
        form=update_key_form(service, connection),
        error=error,
    )


def update_key_target(service: SlackService, invocation: Invocation, uid: str) -> Connection | None:
    from sqlalchemy import select

    with service.runtime.db.session() as session:
        return session.scalar(
            select(Connection).where(
                Connection.uid == uid, Connection.workspace_id == service.workspace_id(invocation)
            )
        )


def new_secrets(service: SlackService, connection: Connection, view: dict) -> dict[str, str]:
    """The secret fields an update-key form says, by field name."""
    provider = provider_named(service, connection.provider)
    state = submitted(view)
    secrets = {}
    for spec in provider.credential_fields:
        if spec.secret:
            secrets[spec.name] = value = state.get(block_id(spec.name), "")
            if value:
                REDACTOR.add(value)
    return secrets


def key_block(service: SlackService, connection: Connection) -> str:
    """The input an update-key problem shows on: its first secret field."""
    provider = provider_named(service, connection.provider)
    return block_id(next(f.name for f in provider.credential_fields if f.secret))


def check_update(
    service: SlackService,
    connection: Connection,
    secrets: Mapping[str, str],
    *,
    budget: float | None = CHECK_BUDGET_SECONDS,
) -> CheckResult:
    """Test new secrets for ``connection``; ConnectError (on the key) or TimeoutError."""
    engine = service.runtime.engine
    _, _, credentials = engine.new_credentials(connection.id, secrets)
    tested = engine.check_update(connection, credentials)
    return asyncio.run(asyncio.wait_for(tested, budget) if budget else tested)


def update_key(
    service: SlackService,
    invocation: Invocation,
    connection: Connection,
    secrets: Mapping[str, str],
    tested: CheckResult,
) -> KeyUpdated:
    updated = asyncio.run(service.runtime.engine.update_key(connection.id, secrets, check=tested))
    service.home_changed(invocation.team_id, force=True)  # the new key's sync ran
    return updated


def display_name(service: SlackService, provider_name: str) -> str:
    try:
        return service.runtime.providers.get(provider_name).display_name
    except LookupError:
        return provider_name


def _mrkdwn(text: str) -> str:
    from bot.formatting import mrkdwn

    return mrkdwn(text)
