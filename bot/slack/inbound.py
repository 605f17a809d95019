"""What a request from Slack must look like before any listener sees it.

Slack's own requests are always well formed; anything else on the public
URL is a stranger's. An unsigned request is refused before a byte of its
body is parsed; a signed one that does not parse, or lacks what the
listeners read, is refused with one log line instead of a traceback. Socket
Mode payloads arrive parsed, and go through :func:`shape_problem` alone.
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
    """Why ``body`` is not a request our listeners can read, or None if it is."""
    if not isinstance(body, dict):
        return f"the request is a {type(body).__name__}, not an object"
    if nul := _nul_problem(body):
        return nul
    kind = body.get("type")
    if "command" in body:
        return _missing_strings(body, "command", "team_id", "user_id")
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions without actions"
        if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
            return "an action without an action_id"
        return _user_and_team(body)
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str):
            return f"{kind} without a view callback_id"
        return _user_and_team(body, view.get("team_id"))
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event type"
        return _missing_strings(body, "team_id")
    if kind in ("shortcut", "message_action"):
        return _missing_strings(body, "callback_id") or _user_and_team(body)
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
