"""`serve --http` against slow clients: real sockets on 127.0.0.1, the server as `serve` runs it.

A slowloris client opens connections and sends a request a few bytes at a
time, or half a request line and then nothing. None of it may delay
``/healthz`` or a signed command, and a client that drips must be cut at the
request deadline even though it never goes quiet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest

from bot.config import ConfigError
from bot.slack.settings import HttpLimits, SlackSettings
from tests.bot.slack.conftest import BOT_TOKEN, SIGNING_SECRET, SlackApp

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # not about storage

PROMPT = 1.0  # seconds: what "not delayed" means here
DEADLINE = 2.0


@pytest.fixture
def slack_env(slack_env: dict[str, str]) -> dict[str, str]:
    return {**slack_env, "XAI_USAGE_SERVE_REQUEST_DEADLINE": str(DEADLINE)}


def address(app: SlackApp) -> tuple[str, int]:
    host, port = app.url.removeprefix("http://").split(":")
    return host, int(port)


@contextmanager
def half_requests(app: SlackApp, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that each send half a request line and stop."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(address(app), timeout=5)
            sock.sendall(b"POST /slack/ev")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def drippers(app: SlackApp, count: int, every: float) -> Iterator[list[float | None]]:
    """``count`` connections sending one byte of headers every ``every`` seconds
    for as long as the server keeps them; each slot gets the seconds it survived."""
    survived: list[float | None] = [None] * count
    stop = threading.Event()
    request = b"POST /slack/events HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000

    def drip(slot: int) -> None:
        began = time.monotonic()
        with socket.create_connection(address(app), timeout=5) as sock:
            try:
                for byte in request:
                    sock.sendall(bytes([byte]))
                    if stop.wait(every):
                        return
                    sock.setblocking(False)
                    try:
                        if sock.recv(1) == b"":
                            break  # the server closed it
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
            except OSError:  # reset by the server
                pass
        survived[slot] = time.monotonic() - began

    threads = [threading.Thread(target=drip, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield survived
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def closed_by_server(sock: socket.socket, wait: float = 2.0) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed with bytes of ours still unread
        return True


def timed(call) -> tuple[float, httpx.Response]:
    began = time.perf_counter()
    response = call()
    return time.perf_counter() - began, response


@sqlite_only
def test_slow_clients_do_not_delay_health_or_commands(slack_app: SlackApp) -> None:
    with half_requests(slack_app, 150), drippers(slack_app, 20, every=0.5):
        time.sleep(0.3)  # all of them connected and stalled
        for _ in range(3):
            took, health = timed(lambda: httpx.get(f"{slack_app.url}/healthz", timeout=5))
            assert health.status_code == 200 and took < PROMPT
            took, (ack, url_id) = timed(lambda: slack_app.command("help"))
            assert ack.status_code == 200 and took < PROMPT
            assert "Commands: today" in str(slack_app.reply(url_id))  # the work after the ack


@sqlite_only
def test_a_client_dripping_bytes_is_cut_at_the_deadline(slack_app: SlackApp) -> None:
    with drippers(slack_app, 3, every=0.4) as survived:
        give_up = time.monotonic() + DEADLINE + 3
        while None in survived and time.monotonic() < give_up:  # until all three are cut
            time.sleep(0.05)
        lasted = list(survived)
    # The server checks deadlines once a second, hence the slack above the deadline.
    assert all(t is not None and DEADLINE - 0.2 < t < DEADLINE + 1.6 for t in lasted), lasted


@sqlite_only
def test_a_silent_connection_is_cut_at_the_deadline(slack_app: SlackApp) -> None:
    with socket.create_connection(address(slack_app), timeout=DEADLINE + 4) as sock:
        began = time.monotonic()
        assert closed_by_server(sock, wait=DEADLINE + 4)
        assert DEADLINE - 0.2 < time.monotonic() - began < DEADLINE + 1.6


@sqlite_only
def test_a_kept_alive_connection_serves_request_after_request(slack_app: SlackApp) -> None:
    """The deadline is per request: a connection in use for longer is not cut."""
    with httpx.Client(timeout=5) as client:
        for _ in range(4):
            assert client.get(f"{slack_app.url}/healthz").status_code == 200
            time.sleep(DEADLINE / 2 + 0.2)
        assert client.get(f"{slack_app.url}/healthz").status_code == 200


class TestWhenFull:
    @pytest.fixture
    def slack_env(self, slack_env: dict[str, str]) -> dict[str, str]:
        return {
            **slack_env,
            "XAI_USAGE_SERVE_MAX_CONNECTIONS": "30",
            "XAI_USAGE_SERVE_REQUEST_DEADLINE": "30",
        }

    @sqlite_only
    def test_the_slowest_connection_makes_room_for_a_new_one(self, slack_app: SlackApp) -> None:
        with half_requests(slack_app, 60) as stalled:
            took, health = timed(lambda: httpx.get(f"{slack_app.url}/healthz", timeout=5))
            assert health.status_code == 200 and took < PROMPT
            assert closed_by_server(stalled[0])  # the oldest was the one dropped


@pytest.mark.parametrize(
    "name, value",
    [
        ("XAI_USAGE_SERVE_REQUEST_DEADLINE", "soon"),
        ("XAI_USAGE_SERVE_REQUEST_DEADLINE", "0"),
        ("XAI_USAGE_SERVE_REQUEST_DEADLINE", "nan"),
        ("XAI_USAGE_SERVE_IDLE_TIMEOUT", "2.5"),
        ("XAI_USAGE_SERVE_MAX_CONNECTIONS", "-1"),
    ],
)
def test_a_bad_limit_is_one_line_naming_the_variable(name: str, value: str) -> None:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, name: value}
    with pytest.raises(ConfigError, match=name):
        SlackSettings.from_env(env, force_http=True)


def test_limits_have_sane_defaults() -> None:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    assert SlackSettings.from_env(env, force_http=True).limits == HttpLimits(
        request_deadline=5.0, idle_timeout=75, max_connections=10_000
    )


# -- malformed requests ------------------------------------------------------------

COMMAND_FORM = (
    "command=%2Fxai-usage&text=help&team_id=T0001&user_id=UADMIN&channel_id=CCOSTS"
    "&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fr&trigger_id=t.1"
)
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MALFORMED = {
    "body not UTF-8": (COMMAND_FORM.encode() + b"&x=\xff\xfe", FORM),
    "JSON type, form body": (COMMAND_FORM.encode(), JSON),
    "JSON body not an object": (b'["event_callback"]', JSON),
    "JSON body not JSON": (b'{"type": "event_callback"', JSON),
    "payload not JSON": (b"payload=%7Bnot+json", FORM),
    "payload a list": (b"payload=%5B1%2C2%5D", FORM),
    "block_actions without actions": (
        b"payload="
        + quote(
            json.dumps(
                {
                    "type": "block_actions",
                    "team": {"id": "T0001"},
                    "user": {"id": "UADMIN", "team_id": "T0001"},
                    "actions": [],
                    "response_url": "http://127.0.0.1:9/r",
                }
            )
        ).encode(),
        FORM,
    ),
    "NUL in the command text": (COMMAND_FORM.replace("text=help", "text=he%00lp").encode(), FORM),
    "NUL in the team id": (
        COMMAND_FORM.replace("team_id=T0001", "team_id=T00%0001").encode(),
        FORM,
    ),
    "NUL in an event": (
        json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0001",
                "event": {"type": "app_uninstalled"},
                "event_id": "Ev1\u0000",
                "api_app_id": "A0001",
            }
        ).encode(),
        JSON,
    ),
    "NUL raw in a form": (COMMAND_FORM.encode() + b"&x=\x00", FORM),
}


def signed(body: bytes, content_type: str, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
        "Content-Type": content_type,
    }


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Warnings and worse, but waitress's own "Task queue depth is 1": a loaded machine
    can start a thread late for any request, malformed or not (and it is throttled)."""
    return [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "waitress.queue"
    ]


@sqlite_only
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_signed_malformed_request_is_a_400_and_one_log_line(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    body, content_type = MALFORMED[case]
    caplog.clear()
    answer = slack_app.post(body, signed(body, content_type))
    time.sleep(0.3)  # anything the listeners would log after the ack
    assert answer.status_code == 400, answer.text
    logged = problems(caplog)
    assert len(logged) == 1 and logged[0].exc_info is None, [r.getMessage() for r in logged]
    assert "\n" not in logged[0].getMessage()
    assert slack_app.slack.responses == []  # nothing was run


@sqlite_only
@pytest.mark.parametrize("case", list(MALFORMED))
def test_an_unsigned_malformed_request_is_a_401_before_any_parsing(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    body, content_type = MALFORMED[case]
    caplog.clear()
    answer = slack_app.post(body, signed(body, content_type, secret="not-the-secret"))
    assert answer.status_code == 401
    assert all(r.exc_info is None for r in caplog.records)


@sqlite_only
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "1e3", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": str(int(time.time()))},
        {},
    ],
)
def test_a_missing_or_non_numeric_timestamp_or_signature_is_a_401(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    answer = slack_app.post(COMMAND_FORM, {**headers, "Content-Type": FORM})
    assert answer.status_code == 401
    assert all(r.exc_info is None for r in caplog.records)


@sqlite_only
def test_a_non_numeric_timestamp_signed_over_is_still_a_401(slack_app: SlackApp) -> None:
    body = COMMAND_FORM.encode()
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:soon:" + body, hashlib.sha256).hexdigest()
    headers = {
        "X-Slack-Request-Timestamp": "soon",
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": FORM,
    }
    assert slack_app.post(body, headers).status_code == 401


@sqlite_only
def test_a_well_formed_command_still_runs(slack_app: SlackApp) -> None:
    body = COMMAND_FORM.replace(
        "http%3A%2F%2F127.0.0.1%3A9%2Fr", quote(slack_app.slack.response_url(), safe="")
    ).encode()
    assert slack_app.post(body, signed(body, FORM)).status_code == 200
    slack_app.slack.wait_for(lambda: slack_app.slack.responses)


def test_stopping_a_server_whose_loop_lost_its_wake_up_pipe_still_stops_it() -> None:
    from bot.slack.server import http_server, stop_waitress

    server = http_server(lambda environ, start: [], HttpLimits(), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    server.trigger.close()  # as when the loop has already ended and closed it
    stop_waitress(server)  # no OSError: the channels are closed directly
    thread.join(timeout=5)
    assert not thread.is_alive()
