"""Setup forms: ``digest add``, ``budget set``, ``alerts`` and ``range`` typed bare
open a modal instead of guessing a channel or refusing.

A form is another way of typing the command. Its submission becomes the
command's words, parsed by the same grammar and checked by the same
:mod:`bot.setup` parsers, then run exactly as typed, so every rule lives in
one place. What a form adds is where a problem shows: under its field.
Building the views and reading submissions is here; the listeners that
open and receive them are in ``dispatch.py`` and ``listeners/views.py``; the connect
and update-key forms, built from a provider's fields, are ``connecting.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, timedelta
from typing import Any

from slack_sdk import WebClient

from bot import formatting
from bot.grammar import COMMANDS, GROUPINGS, Command, UsageError, parse, parse_day
from bot.render import GROUP_TITLES, render_json
from bot.reports import EARLIEST_DAY, resolve_period
from bot.setup import (
    DEFAULT_AT,
    DEFAULT_THRESHOLDS,
    WHEN,
    SetupError,
    check_emails,
    check_webhook,
    check_zone,
    parse_channel,
    parse_thresholds,
    parse_time,
    parse_usd,
)
from bot.slack.service import Invocation, SlackService, setup_for
from storage.repo import connections, find_connection

CALLBACK_IDS = {
    "digest": "digest_form",
    "budget": "budget_form",
    "alerts": "alerts_form",
    "range": "range_form",
}
COMMAND_OF = {callback_id: name for name, callback_id in CALLBACK_IDS.items()}
HEADS = {"digest": ("digest", "add"), "budget": ("budget", "set"), "alerts": ("alerts",)}
"""The words a form's submission starts with: the command it stands for."""
WHAT = {"digest": "digest add", "budget": "budget set", "alerts": "alerts"}
ALL_CONNECTIONS = "all"
MAX_CONNECTION_OPTIONS = 99  # Slack shows 100 options; one is "All connections"
MAX_OPTION_TEXT = 75
MAX_METADATA = 3000
RANGE_DAYS = 7  # the range form starts on the last week, today included
NO_FORM = {
    "digest": "Name the channel, e.g. `digest add #costs`.",
    "budget": "Say how much, e.g. `budget set 500`.",
    "alerts": "Name the channel, e.g. `alerts #costs`.",
    "range": "Give the days, e.g. `range 2026-11-01 2026-11-30`.",
}
"""Without a trigger (a DM) Slack opens no modal: the command has to be typed whole."""

FIELD_CHECKS: dict[str, Callable[[str], object]] = {
    "at": parse_time,
    "tz": check_zone,
    "quiet_min": parse_usd,
    "amount": parse_usd,
    "thresholds": parse_thresholds,
    "webhook": check_webhook,
    "email": check_emails,
}
"""Each field through the parser the typed command uses for it, so an error
lands on that field before the command runs."""
FIELD_ASKS = {
    "at": "Pick a time, e.g. 09:00.",
    "quiet_change": "Enter a whole percentage from 1 to 1000, e.g. 20.",
    "thresholds": "Enter whole percentages from 1 to 1000, separated by commas, e.g. 50, 80, 100.",
    "webhook": "Enter an http(s) URL, e.g. https://hooks.example.com/xai.",
}
"""What to enter, for the fields whose typed error names the command's --option: a form
shows fields, not flags. The rule stays the parser's; only its words are the form's."""
FIELDS: dict[str, dict[str, str | None]] = {
    "digest": {
        "channel": None,
        "at": "at",
        "tz": "tz",
        "every": "every",
        "connection": "connection",
        "quiet_min": "quiet-min",
        "quiet_change": "quiet-change",
    },
    "budget": {
        "amount": None,
        "connection": "connection",
        "thresholds": "thresholds",
        "channel": "channel",
    },
    "alerts": {
        "channel": None,
        "connection": "connection",
        "webhook": "webhook",
        "email": "email",
    },
}
"""Each form's fields: the ``--option`` each stands for, or None for the command's argument."""


def wants_form(command: Command) -> bool:
    """Typed without what they need, these ask for it in a form, filled in with any
    options typed; ``digest add`` with an option runs as always (``--at 08:00`` means here)."""
    if command.name == "digest":
        return command.args == ("add",) and not command.options
    if command.name == "budget":
        return command.args == ("set",)  # no amount: asked for, with any options typed filled in
    if command.name == "alerts" and command.get("email"):
        return False  # addresses alone: added as typed, the channel left as it is
    return command.name in ("alerts", "range") and not command.args


def open_form(
    service: SlackService, client: WebClient, invocation: Invocation, command: Command
) -> None:
    """Open ``command``'s form where it was asked; UsageError (with the usage line)
    when Slack gave no trigger to open one with."""
    usage = COMMANDS[command.name].usage("slack")
    if command.get("webhook"):  # a secret is never put in a view, nor kept in its metadata
        raise UsageError("Name the channel too, e.g. `alerts #costs --webhook URL`.", usage)
    if not invocation.trigger_id:
        raise UsageError(NO_FORM[command.name], usage)
    metadata: dict[str, Any] = service.modal_metadata(invocation)
    if command.name == "range":
        view = range_view(metadata, command, service.runtime.clock().astimezone(UTC).date())
    else:
        view = setup_view(service, client, invocation, command, metadata)
    client.views_open(trigger_id=invocation.trigger_id, view=view)


# -- building the views -----------------------------------------------------------------


def setup_view(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    command: Command,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The digest, budget or alerts form, starting from what the typed command would do."""
    workspace_id = service.workspace_id(invocation)
    with service.runtime.db.session() as session:
        known = [(c.uid, c.label) for c in connections(session, workspace_id)]
        label = command.get("connection")
        typed = find_connection(session, workspace_id, label) if label else None
        chosen = typed.uid if typed else ALL_CONNECTIONS
    # A form opened from a DM (a button there) starts empty: the picker lists channels only.
    here = invocation.channel_id if (invocation.channel_id or "D")[0] in "CG" else None
    values: dict[str, Any] = {"channel": here, "connection": chosen}
    if command.name == "digest":
        person = service.person(client, invocation)
        values |= {
            "at": DEFAULT_AT,
            "tz": person.tz if person and person.tz else "UTC",
            "every": "day",
            "quiet_min": "",
            "quiet_change": "",
        }
    elif command.name == "budget":
        # The scope's budget, if it has one, is what the form starts from: it replaces it.
        setup = setup_for(service, invocation)
        existing = setup.budget_of(typed.id if typed else None)
        channel = command.get("channel")
        values |= {
            "amount": formatting.decimal_text(existing.amount_usd) if existing else "",
            "thresholds": command.get("thresholds")
            or (existing.thresholds if existing else DEFAULT_THRESHOLDS),
            "channel": parse_channel(channel, here, "slack")[0]
            if channel
            else (existing.channel_id if existing and existing.channel_id else here),
        }
        values["replaces"] = setup.budget_lines([existing]) if existing else ""
    options = [{"text": _option_text("All connections"), "value": ALL_CONNECTIONS}]
    shown = known[:MAX_CONNECTION_OPTIONS]
    if chosen != ALL_CONNECTIONS and all(uid != chosen for uid, _ in shown):
        shown[-1:] = [next(c for c in known if c[0] == chosen)]  # the one typed stays choosable
    options += [{"text": _option_text(label), "value": uid} for uid, label in shown]
    return render_json(
        f"slack/{command.name}_modal.json.j2",
        metadata=json.dumps(metadata),
        values=values,
        connections=options,
        frequencies=[
            {"text": _option_text(_first_upper(WHEN[every])), "value": every} for every in WHEN
        ],
    )


def range_view(metadata: dict[str, Any], command: Command, today: date) -> dict[str, Any]:
    """Two date pickers and a grouping; options typed with the bare ``range`` ride along."""
    carried = [
        f"--{name}" if value is True else f"--{name}={value}"
        for name, value in command.options.items()
        if name != "by"
    ]
    metadata = {**metadata, "words": carried}
    if len(json.dumps(metadata)) > MAX_METADATA:
        raise UsageError(NO_FORM["range"], COMMANDS["range"].usage("slack"))  # too long to carry
    return render_json(
        "slack/range_modal.json.j2",
        metadata=json.dumps(metadata),
        start=(today - timedelta(days=RANGE_DAYS - 1)).isoformat(),
        end=today.isoformat(),
        earliest=EARLIEST_DAY.isoformat(),
        by=command.get("by", "model"),
        groupings=[
            {"text": _option_text(_first_upper(GROUP_TITLES[g])), "value": g} for g in GROUPINGS
        ],
    )


def _first_upper(text: str) -> str:
    """``every Monday`` as ``Every Monday``, ``API key`` kept (str.capitalize lowers the rest)."""
    return text[:1].upper() + text[1:]


def _option_text(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": formatting.clip(text, MAX_OPTION_TEXT)}


# -- reading submissions ----------------------------------------------------------------


def submitted(view: dict) -> dict[str, str]:
    """Each field's value, whatever its element (text, select, channel, time, date)."""
    values = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        element = (actions or {}).get("value") or {}
        value = (
            element.get("value")
            or element.get("selected_conversation")
            or element.get("selected_time")
            or element.get("selected_date")
            or (element.get("selected_option") or {}).get("value")
        )
        values[block_id] = value.strip() if isinstance(value, str) else ""
    return values


def setup_command(
    service: SlackService, invocation: Invocation, name: str, values: dict[str, str]
) -> tuple[Command | None, dict[str, str]]:
    """The command a digest, budget or alerts form stands for, or the errors by field.

    Each field is parsed alone first (the grammar, then the parser
    ``bot.setup`` uses for it), so a problem is told under its own field.
    """
    errors: dict[str, str] = {}
    words: list[tuple[str, str]] = []  # (field, word): the argument first, then --options
    for field, option in FIELDS[name].items():
        value = values.get(field, "")
        if field == "connection" and value and value != ALL_CONNECTIONS:
            value = _connection_label(service, invocation, value)
            if value is None:
                errors[field] = "That connection was removed meanwhile: pick another."
                continue
        if field == "connection" and value == ALL_CONNECTIONS:
            value = ""  # no --connection: all of them
        if field == "channel" and value:
            value = f"<#{value}>"
        if option is None:  # the command's argument: a channel or an amount, never left out
            if not value and field == "channel":
                errors[field] = "Pick a channel."
            words.insert(0, (field, value))
        elif value:
            words.append((field, f"--{option}={value}"))
    head = list(HEADS[name])
    for field, word in words:
        if field in errors:
            continue
        try:
            parse([*head, word], surface="slack")
            if field in FIELD_CHECKS:
                FIELD_CHECKS[field](values.get(field, ""))
        except UsageError as error:
            errors[field] = FIELD_ASKS.get(field, error.message)
        except SetupError as error:
            errors[field] = FIELD_ASKS.get(field, str(error))
    if errors:
        return None, errors
    return parse([*head, *(word for _, word in words)], surface="slack"), {}


def _connection_label(service: SlackService, invocation: Invocation, uid: str) -> str | None:
    workspace_id = service.workspace_id(invocation)
    with service.runtime.db.session() as session:
        return next((c.label for c in connections(session, workspace_id) if c.uid == uid), None)


def range_command(
    values: dict[str, str], carried: list[str], today: date
) -> tuple[list[str] | None, dict[str, str]]:
    """The words ``range FROM TO --by X`` a date-picker form stands for, or errors by field:
    a day that is no date, FROM after TO, or a range with no day costs can fall on."""
    errors: dict[str, str] = {}
    days = {}
    for field in ("from", "to"):
        try:
            days[field] = parse_day(values.get(field, ""))
        except UsageError as error:
            errors[field] = error.message
    if errors:
        return None, errors
    words = [
        "range",
        days["from"].isoformat(),
        days["to"].isoformat(),
        "--by",
        values.get("by") or "model",
        *carried,
    ]
    try:
        command = parse(words, surface="slack")
    except UsageError as error:
        field = "to" if days["from"] > days["to"] else "by"
        return None, {field: error.message}
    try:
        resolve_period(command, today)
    except UsageError as error:
        return None, {"from": error.message}
    return words, {}


_CHANNEL_REFERENCE = re.compile(r"<#[A-Z0-9]+(?:\|([^>]*))?>")


def field_error(text: str) -> str:
    """A reply's words as a field error: plain text, where ``<#C…>`` would show raw."""
    return _CHANNEL_REFERENCE.sub(lambda m: f"#{m[1]}" if m[1] else "that channel", text)
