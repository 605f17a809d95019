"""What a request from Slack must look like before any listener sees it.

Slack's own requests are always well formed; anything else on the public
URL is a stranger's. An unsigned request is refused before a byte of its
body is parsed; a signed one that does not parse, lacks what the listeners
read, gives a field they read another type, or names more than one team, is
refused with one log line instead of a traceback (or a second workspace).
Socket Mode payloads arrive parsed, and go through :func:`shape_problem` alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

from bot.numbers import whole_number

MAX_SKEW = 5 * 60
"""Seconds a request's timestamp may be from now (Slack's own rule, against replays)."""
MAX_DEPTH = 64


class Malformed(ValueError):
    """A signed request that cannot be what Slack sends; the message says why."""


def signature_valid(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> bool:
    """Slack's v0 signature over ``v0:timestamp:body``, with a fresh numeric timestamp."""
    if not timestamp or not signature:
        return False
    sent = whole_number(timestamp)
    if sent is None or abs(now - sent) > MAX_SKEW:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """The request as Bolt will read it: a JSON object, or a form (``payload`` decoded)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the body is not UTF-8") from None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return _json_object(text, "the JSON body")
    if media_type != "application/x-www-form-urlencoded":
        raise Malformed(f"unexpected content type {media_type or '(none)'!r}")
    try:
        form = parse_qs(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Malformed("the form is not UTF-8") from None
    body: dict[str, Any] = {key: values[0] for key, values in form.items()}
    if "payload" in body:
        return _json_object(body["payload"], "payload")
    return body


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def shape_problem(body: Any) -> str | None:
    """Why ``body`` is not a request our listeners can read, or None if it is.

    Besides the fields each kind needs, every field a listener reads must have
    the type Slack gives it (``team`` an object, ``text`` a string, a form's
    ``private_metadata`` a JSON object), and every team field must name the
    same team (:func:`team_problem`).
    """
    if not isinstance(body, dict):
        return f"the request is a {type(body).__name__}, not an object"
    if nul := _nul_problem(body):
        return nul
    kind = body.get("type")
    if "command" in body:
        return (
            _missing_strings(body, "command", "team_id", "user_id")
            or _typed(body, COMMAND_FIELDS)
            or team_problem(body)
        )
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions without actions"
        if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
            return "an action without an action_id"
        return (
            _user_and_team(body)
            or _typed(body, INTERACTION_FIELDS)
            or next(filter(None, (_typed(a, ACTION_FIELDS, "an action's") for a in actions)), None)
            or team_problem(body)
        )
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str):
            return f"{kind} without a view callback_id"
        return (
            _user_and_team(body, view.get("team_id"))
            or _typed(body, INTERACTION_FIELDS)
            or _view_problem(view)
            or team_problem(body)
        )
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event type"
        return (
            _missing_strings(body, "team_id")
            or _typed(body, ENVELOPE_FIELDS)
            or (
                _typed(event, EVENT_FIELDS, "the event's") if event["type"] in READ_EVENTS else None
            )
            or team_problem(body)
        )
    if kind in ("shortcut", "message_action"):
        return (
            _missing_strings(body, "callback_id")
            or _user_and_team(body)
            or _typed(body, INTERACTION_FIELDS)
            or team_problem(body)
        )
    return None


# What each field a listener reads must be, where present (None is "not given").
_STR, _DICT, _LIST = (str,), (dict,), (list,)
COMMAND_FIELDS = {
    name: _STR
    for name in (
        "text",
        "team_domain",
        "channel_id",
        "response_url",
        "trigger_id",
        "enterprise_id",
        "api_app_id",
    )
}
INTERACTION_FIELDS = {
    "team": _DICT,
    "user": _DICT,
    "user.id": _STR,
    "user.team_id": _STR,
    "team.id": _STR,
    "team.domain": _STR,
    "channel": _DICT,
    "channel.id": _STR,
    "container": _DICT,
    "container.channel_id": _STR,
    "container.message_ts": _STR,
    "message": _DICT,
    "message.ts": _STR,
    "message.blocks": _LIST,
    "response_url": _STR,
    "trigger_id": _STR,
    "view": _DICT,
    "view.id": _STR,
    "view.team_id": _STR,
    "view.app_installed_team_id": _STR,
}
ACTION_FIELDS = {"value": _STR, "selected_option": _DICT, "selected_option.value": _STR}
READ_EVENTS = frozenset({"message", "app_home_opened"})
"""The events whose fields a listener reads (others' shapes vary by type: a channel
event's ``channel`` is an object)."""
ENVELOPE_FIELDS = {"authorizations": _LIST, "event_id": _STR, "enterprise_id": _STR}
EVENT_FIELDS = {
    name: _STR
    for name in ("user", "channel", "channel_type", "text", "tab", "subtype", "bot_id", "team")
} | {"view": _DICT, "view.team_id": _STR, "tokens": _DICT}


def _typed(body: dict, fields: dict[str, tuple[type, ...]], whose: str = "") -> str | None:
    """The first of ``fields`` (dotted paths) present in ``body`` with another type."""
    for path, types in fields.items():
        value: Any = body
        for step in path.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, types):
            name = " ".join(filter(None, (whose, path)))
            return f"{name} is a {type(value).__name__}, not a {types[0].__name__}"
    return None


def _view_problem(view: dict) -> str | None:
    """A submitted form the listeners can read: its state and its own metadata."""
    if problem := _typed(view, {"id": _STR, "state": _DICT, "state.values": _DICT}, "the view's"):
        return problem
    for block in ((view.get("state") or {}).get("values") or {}).values():
        if not isinstance(block, dict) or not all(isinstance(a, dict) for a in block.values()):
            return "a form field that is not an object"
        for action in block.values():
            value = action.get("value")
            if value is not None and not isinstance(value, str):
                return f"a form field's value is a {type(value).__name__}"
    metadata = view.get("private_metadata")
    if metadata is None or metadata == "":
        return None
    if not isinstance(metadata, str):
        return f"private_metadata is a {type(metadata).__name__}"
    try:
        decoded = json.loads(metadata)
    except (ValueError, RecursionError):
        return "private_metadata is not JSON"
    if not isinstance(decoded, dict):
        return f"private_metadata is a JSON {type(decoded).__name__}, not an object"
    return None


def team_ids(body: dict) -> set[str]:
    """Every team a request names: the envelope's, the team's, the user's, the view's, the
    event's, each authorization's (org-wide installs leave some out; None is no claim)."""

    def at(value: Any, *path: str) -> Any:
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        return value

    event = body.get("event")
    found = [
        body.get("team_id"),
        at(body, "team", "id"),
        at(body, "user", "team_id"),
        at(body, "view", "team_id"),
        at(body, "view", "app_installed_team_id"),
        at(event, "team"),
        at(event, "team_id"),
        at(event, "view", "team_id"),
        *(at(a, "team_id") for a in body.get("authorizations") or () if isinstance(a, dict)),
    ]
    return {team for team in found if isinstance(team, str) and team}


def team_problem(body: dict) -> str | None:
    """A request naming more than one team is not Slack's: which one would it act for?"""
    teams = team_ids(body)
    if len(teams) > 1:
        return f"it names {len(teams)} teams ({', '.join(sorted(teams))})"
    return None


def _missing_strings(body: dict, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(body.get(key), str) or not body[key]:
            return f"no {key}"
    return None


def _user_and_team(body: dict, view_team: Any = None) -> str | None:
    user, team = body.get("user"), body.get("team")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        return "no user id"
    team_id = (team or {}).get("id") if isinstance(team, dict) else None
    if not any(isinstance(t, str) and t for t in (team_id, user.get("team_id"), view_team)):
        return "no team id"
    return None


def _nul_problem(value: Any) -> str | None:
    """Where the first string (key or value) holding a NUL byte is, if any."""
    stack: list[tuple[str, Any, int]] = [("the body", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"more than {MAX_DEPTH} levels of nesting"
        if isinstance(item, str):
            if "\x00" in item:
                return f"a NUL byte in {path}"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"a NUL byte in a key of {path}"
                stack.append((f"field {str(key)[:40]!r}", child, depth + 1))
        elif isinstance(item, list):
            stack.extend((path, child, depth + 1) for child in item)
    return None
