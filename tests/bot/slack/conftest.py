"""The Slack app over real HTTP: signed requests in, the Slack stand-in out.

The app runs on waitress on 127.0.0.1, configured as `xai-usage serve --http`
configures it (:func:`bot.slack.server.http_server`); requests carry real
Slack signatures; every Web API call and response-URL reply lands in the
stand-in, which checks Block Kit limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from slack_bolt import App

from bot.config import Settings
from bot.runtime import Runtime
from bot.slack.answering import AnswerProcesses
from bot.slack.app import build_app
from bot.slack.server import http_server, stop_waitress, wsgi_app
from bot.slack.service import SlackService
from bot.slack.settings import SlackSettings
from providers.xai.sandbox import Sandbox
from storage.repo import workspace_for_slack_team
from tests.fakes.connections import connect_demo
from tests.fakes.slack_api import SlackStandIn

TEAM = "T0001"
BOT_TOKEN = "xoxb-1111-2222-testtokenvalue"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ADMIN, MEMBER, GUEST, BOT_USER, VISITOR = "UADMIN", "UMEMBER", "UGUEST", "UBOTX", "UVISITOR"


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


# The tests speak plain HTTP to 127.0.0.1, but every httpx client loads the CA bundle
# (30 ms) unless it is handed a context: one, shared, saves that on every test.
_TLS = ssl.create_default_context()


@dataclass
class SlackApp:
    url: str
    slack: SlackStandIn
    xai: Sandbox
    runtime: Runtime
    service: SlackService
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10, verify=_TLS))
    bolt: App | None = None
    """The Bolt app itself, to dispatch what HTTP cannot carry (Socket Mode payloads)."""

    def post(self, body: str, headers: dict | None = None) -> httpx.Response:
        return self.http.post(
            f"{self.url}/slack/events",
            content=body,
            headers=headers if headers is not None else sign(body),
        )

    def command(self, text: str, user: str = ADMIN, team: str = TEAM) -> tuple[httpx.Response, str]:
        """Run /xai-usage; returns the HTTP answer and the response URL's id."""
        response_url = self.slack.response_url(team)
        body = urlencode(
            {
                "command": "/xai-usage",
                "text": text,
                "team_id": team,
                "team_domain": "acme",
                "user_id": user,
                "user_name": user.lower(),
                "channel_id": "CCOSTS",
                "channel_name": "costs",
                "response_url": response_url,
                "trigger_id": f"trig.{time.monotonic_ns()}",
                "api_app_id": "A0001",
            }
        )
        return self.post(body), response_url.rsplit("/", 1)[-1]

    def replies(self, url_id: str) -> list[dict]:
        """What a response URL took (a payload Slack refused is not a reply)."""
        return [r.payload for r in self.slack.responses if r.url_id == url_id and not r.refused]

    def reply(self, url_id: str, count: int = 1, timeout: float = 10) -> dict:
        """The ``count``-th reply sent to a response URL (waits for it)."""
        self.slack.wait_for(lambda: len(self.replies(url_id)) >= count, timeout=timeout)
        return self.replies(url_id)[count - 1]

    def interact(self, payload: dict) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body)

    def event(self, event: dict, team: str = TEAM) -> httpx.Response:
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": team,
                "api_app_id": "A0001",
                "event": event,
                "event_id": f"Ev{time.monotonic_ns()}",
                "event_time": int(time.time()),
            }
        )
        return self.post(body, {**sign(body), "Content-Type": "application/json"})


def table_cells(block: dict) -> list[list[str]]:
    """A ``table`` block's rows as the words in its cells."""

    def words(cell: dict) -> str:
        if cell.get("type") == "raw_text":
            return cell["text"]
        return "".join(
            part.get("text", "")
            for element in cell.get("elements", [])
            for part in element.get("elements", [])
        )

    return [[words(cell).strip() for cell in row] for row in block.get("rows", [])]


def native_table(message: dict) -> list[list[str]] | None:
    """The cells of a message's ``table`` block; None when it has none."""
    found = [b for b in message.get("blocks", []) if b.get("type") == "table"]
    return table_cells(found[0]) if found else None


def fallback_table(message: dict) -> list[str]:
    """The lines of the code block a message falls back to where its table is refused
    (bot.slack.native.degrade), as a person reads them."""
    from bot.slack.native import degrade

    fallen = degrade(message, {"table"})
    section = next(
        b["text"]["text"] for b in fallen["blocks"] if "```" in b.get("text", {}).get("text", "")
    )
    code = section[section.index("```") + 3 : section.rindex("```")]
    return code.replace("\u200b", "").splitlines()


def text_of(message: dict, *, as_sent: bool = False) -> str:
    """Everything a person reads in a message: fallback and every block's text, a table's
    cells and a chart's title (without the zero-width spaces that keep a label's * _ ~
    from turning into markup, unless ``as_sent``)."""
    parts = [message.get("text", "")]
    for block in message.get("blocks", []):
        if block.get("type") == "table":
            parts += ["  ".join(row) for row in table_cells(block)]
        if block.get("type") == "data_visualization":
            parts.append(block.get("title", ""))
        for item in [block.get("text"), *block.get("elements", []), *block.get("fields", [])]:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif isinstance(item, dict) and isinstance(item.get("text"), dict):
                parts.append(item["text"].get("text", ""))
    text = "\n".join(parts)
    return text if as_sent else text.replace("\u200b", "")


@pytest.fixture
def slack_env(tmp_path: Path, db) -> dict[str, str]:
    env = {
        "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "XAI_USAGE_HTTP_DEADLINE": "2",
        "XAI_USAGE_NO_PLUGINS": "1",
        "HOST": "127.0.0.1",
        "DATABASE_URL": db.url,
    }
    return env


@contextmanager
def serving(slack_env: dict[str, str], store_key: bytes, **more_env: str) -> Iterator[SlackApp]:
    """The app served over HTTP with the Slack stand-in and xAI's, and ``more_env``."""
    with SlackStandIn(team_id=TEAM) as stand_in, Sandbox() as xai:
        stand_in.add_token(BOT_TOKEN)
        stand_in.add_user(ADMIN, name="ada", is_admin=True)
        stand_in.add_user(MEMBER, name="max")
        stand_in.add_user(GUEST, name="gus", is_restricted=True)
        stand_in.add_user(BOT_USER, name="robot", is_bot=True)
        stand_in.add_user(VISITOR, name="val", team_id="T9999")
        stand_in.add_channel("CCOSTS", "costs")
        env = {
            **slack_env,
            "SLACK_API_URL": stand_in.api_url,
            "XAI_MANAGEMENT_API_URL": xai.url,
            "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(store_key).decode(),
            **more_env,
        }
        with served_app(env, stand_in, xai) as harness:
            yield harness
        assert stand_in.violations == []  # every message and view stayed within Block Kit limits


@contextmanager
def served_app(env: dict[str, str], stand_in: SlackStandIn, xai: Sandbox) -> Iterator[SlackApp]:
    """The app on waitress as `serve --http` runs it, with its own runtime (engine,
    database pool, caches, Home publisher): a second one on the same store is another
    replica behind the load balancer, sharing only the store."""
    runtime = Runtime(Settings.from_env(env))
    settings = SlackSettings.from_env(env, force_http=True, port=0)
    app, service = build_app(runtime, settings)
    if env.get("XAI_USAGE_ANSWER_PROCESSES"):  # as `serve` runs them; else answers in-process
        service.answerers = AnswerProcesses(service, runtime.settings.answer_processes)
    server = http_server(
        wsgi_app(app, runtime, SIGNING_SECRET),
        settings.limits,
        host="127.0.0.1",
        port=0,
        threads=8,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    harness = SlackApp(
        f"http://127.0.0.1:{server.effective_port}", stand_in, xai, runtime, service, bolt=app
    )
    try:
        yield harness
    finally:
        if service.answerers is not None:
            service.answerers.close()
        # No publish outlives the test: one still in flight would log, in the next test,
        # that Slack (this test's stand-in, stopped by then) is unreachable.
        deadline = time.monotonic() + 5
        while not service.live_home.publisher.idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        service.live_home.close()
        stop_waitress(server)
        thread.join(timeout=5)
        assert not thread.is_alive()
        harness.http.close()
        runtime.close()


@pytest.fixture
def slack_app(slack_env, db, store_key):
    with serving(slack_env, store_key) as app:
        yield app


@pytest.fixture
def connected(slack_app: SlackApp) -> SlackApp:
    """A workspace with the demo xAI team connected (through the engine, 30 days)."""
    return with_demo_team(slack_app)


@pytest.fixture
def connected_settling(slack_env, db, store_key) -> Iterator[SlackApp]:
    """As ``connected``, with days that settle 24 hours after they end: yesterday is
    provisional whatever the time of day the test runs (with xAI's 12 hours, only
    until noon UTC)."""
    with serving(slack_env, store_key, XAI_USAGE_SETTLE_HOURS="24") as app:
        yield with_demo_team(app)


def with_demo_team(app: SlackApp) -> SlackApp:
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connect_demo(app.runtime.engine, workspace_id, 30, label="Production — xAI")
    return app
