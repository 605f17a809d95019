"""What counts as a well-formed Slack request, checked without a server."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from bot.slack.inbound import Malformed, parse_body, shape_problem, signature_valid

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_800_000_000


def signature(body: bytes, timestamp: str = str(NOW), secret: str = SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def test_slacks_signature_is_valid() -> None:
    assert signature_valid(SECRET, str(NOW), signature(b"a=1"), b"a=1", NOW)


@pytest.mark.parametrize(
    "timestamp, sign_with, now",
    [
        (str(NOW), "another secret", NOW),  # not ours
        (str(NOW - 301), SECRET, NOW),  # stale: a replay
        (str(NOW + 301), SECRET, NOW),
        ("soon", SECRET, NOW),  # not a number, even if signed over
        ("１８００", SECRET, NOW),  # digits, but not ASCII ones
        ("9" * 40, SECRET, NOW),
        ("", SECRET, NOW),
    ],
)
def test_a_wrong_stale_or_odd_signature_is_invalid(timestamp, sign_with, now) -> None:
    body = b"a=1"
    sig = signature(body, timestamp, sign_with)
    assert not signature_valid(SECRET, timestamp, sig, body, now)


def test_a_missing_or_non_ascii_signature_is_invalid() -> None:
    assert not signature_valid(SECRET, str(NOW), None, b"", NOW)
    assert not signature_valid(SECRET, str(NOW), "v0=é", b"", NOW)


def test_forms_json_and_payloads_parse_as_bolt_reads_them() -> None:
    form = "application/x-www-form-urlencoded"
    assert parse_body(b"command=%2Fx&text=a+b", form) == {"command": "/x", "text": "a b"}
    assert parse_body(b'{"type": "event_callback"}', "application/json; charset=utf-8") == {
        "type": "event_callback"
    }
    payload = json.dumps({"type": "block_actions"})
    assert parse_body(f"payload={payload}".encode(), form) == {"type": "block_actions"}


@pytest.mark.parametrize(
    "raw, content_type, reason",
    [
        (b"text=\xff", "application/x-www-form-urlencoded", "not UTF-8"),
        (b"text=%ff", "application/x-www-form-urlencoded", "form is not UTF-8"),
        (b"text=a", "application/json", "not JSON"),
        (b"[1]", "application/json", "a JSON list"),
        (b"payload=%7B", "application/x-www-form-urlencoded", "payload is not JSON"),
        (b"payload=null", "application/x-www-form-urlencoded", "a JSON NoneType"),
        (b"a=1", "text/plain", "unexpected content type"),
        (b"[" * 100_000, "application/json", "not JSON"),  # deeper than json can go
    ],
)
def test_what_does_not_parse_says_why(raw: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        parse_body(raw, content_type)


GOOD_ACTION = {
    "type": "block_actions",
    "team": {"id": "T1"},
    "user": {"id": "U1"},
    "actions": [{"action_id": "disconnect_confirm"}],
}


@pytest.mark.parametrize(
    "body",
    [
        {"command": "/xai-usage", "text": "", "team_id": "T1", "user_id": "U1"},
        GOOD_ACTION,
        {**GOOD_ACTION, "team": None, "user": {"id": "U1", "team_id": "T1"}},
        {
            "type": "view_submission",
            "user": {"id": "U1"},
            "view": {"callback_id": "c", "team_id": "T1"},
        },
        {"type": "event_callback", "team_id": "T1", "event": {"type": "app_uninstalled"}},
        {"type": "url_verification", "challenge": "x"},
    ],
)
def test_what_slack_sends_has_no_problem(body: dict) -> None:
    assert shape_problem(body) is None


@pytest.mark.parametrize(
    "body, problem",
    [
        ([1], "a list"),
        ({"command": "/xai-usage", "text": "a\x00", "team_id": "T1", "user_id": "U1"}, "NUL"),
        ({"command": "/xai-usage", "team_id": "T1"}, "no user_id"),
        ({**GOOD_ACTION, "actions": []}, "without actions"),
        ({**GOOD_ACTION, "actions": ["x"]}, "without an action_id"),
        ({**GOOD_ACTION, "team": None}, "no team id"),
        ({**GOOD_ACTION, "user": "U1"}, "no user id"),
        ({"type": "view_submission", "user": {"id": "U1"}, "view": None}, "callback_id"),
        ({"type": "event_callback", "team_id": "T1", "event": "x"}, "event type"),
        ({"type": "x", "deep": {"\x00": 1}}, "a key"),
        ({"type": "x", "deep": [[[["ok", "\x00"]]]]}, "NUL byte in field 'deep'"),
    ],
)
def test_what_listeners_cannot_read_is_named(body, problem: str) -> None:
    found = shape_problem(body)
    assert found is not None and problem in found and "\n" not in found


def test_very_deep_nesting_is_a_problem_not_a_crash() -> None:
    body: dict = {"type": "x"}
    node = body
    for _ in range(200):
        node["n"] = {}
        node = node["n"]
    assert "levels of nesting" in shape_problem(body)
