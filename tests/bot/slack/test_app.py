"""The Bolt app as ``build_app`` builds it: one workspace only, failures in one line,
and a reply when the database is down."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from sqlalchemy import func, select

from bot.cli import Console, main
from bot.slack import answers
from bot.slack.app import ANOTHER_WORKSPACE, token_resolver
from bot.slack.server import GuardedSocketModeHandler
from bot.slack.service import STORE_UNAVAILABLE
from storage.db import Database
from storage.models import Connection, DigestSubscription, Workspace
from tests.bot.slack.conftest import ADMIN, BOT_TOKEN, TEAM, SlackApp, text_of
from tests.fakes.connections import connect_demo

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

OUTSIDER, OTHER_TEAM = "UOUTSIDER", "T9999"


def terminal_workspace(app: SlackApp) -> int:
    """The terminal's workspace (no Slack team yet) with the demo team connected."""
    with app.runtime.db.transaction() as session:
        workspace = Workspace(name="terminal")
        session.add(workspace)
        session.flush()
        workspace_id = workspace.id
    connect_demo(app.runtime.engine, workspace_id, 3, label="Production — xAI")
    return workspace_id


def workspaces(app: SlackApp) -> list[tuple[str | None, str]]:
    with app.runtime.db.session() as session:
        return [(w.slack_team_id, w.name) for w in session.scalars(select(Workspace))]


# -- one workspace: the bot token's ------------------------------------------------


def test_another_team_is_refused_and_cannot_adopt_the_terminal_data(slack_app: SlackApp) -> None:
    terminal_workspace(slack_app)
    slack_app.slack.add_user(OUTSIDER, team_id=OTHER_TEAM, is_admin=True)
    for text in ("status", "month", "disconnect Production", "connect"):
        answer, url_id = slack_app.command(text, user=OUTSIDER, team=OTHER_TEAM)
        assert answer.status_code == 200
        assert ANOTHER_WORKSPACE in text_of(answer.json())
        assert answer.json()["response_type"] == "ephemeral"
    assert workspaces(slack_app) == [(None, "terminal")]  # nothing adopted, nothing created
    assert slack_app.slack.calls_to("users.info") == []  # nor even looked up
    assert slack_app.slack.calls_to("views.open") == []

    _, url_id = slack_app.command("status")  # the token's own team
    assert "Production — xAI" in text_of(slack_app.reply(url_id))
    assert workspaces(slack_app) == [(TEAM, "acme")]


def test_another_teams_button_or_event_touches_nothing(slack_app: SlackApp) -> None:
    terminal_workspace(slack_app)
    _, url_id = slack_app.command("status")  # adopted by the token's team
    slack_app.reply(url_id)
    with slack_app.runtime.db.session() as session:
        uid = session.scalar(select(Connection.uid))
    answer = slack_app.interact(
        {
            "type": "block_actions",
            "team": {"id": OTHER_TEAM},
            "user": {"id": OUTSIDER, "team_id": OTHER_TEAM},
            "actions": [{"action_id": "disconnect_confirm", "value": uid}],
            "response_url": slack_app.slack.response_url(),
        }
    )
    assert answer.status_code == 200
    assert slack_app.event({"type": "app_uninstalled"}, team=OTHER_TEAM).status_code == 200
    with slack_app.runtime.db.session() as session:
        assert session.scalar(select(func.count(Connection.id))) == 1
    assert workspaces(slack_app) == [(TEAM, "acme")]


def test_scheduled_posts_use_the_bot_token_for_its_own_team_only(slack_app: SlackApp) -> None:
    terminal_workspace(slack_app)
    checks = len(slack_app.slack.calls_to("auth.test"))
    token_for = token_resolver(slack_app.runtime, slack_app.service.settings)
    assert token_for(None) == BOT_TOKEN  # the terminal's workspace, adopted by the token's team
    assert workspaces(slack_app) == [(TEAM, "terminal")]
    assert token_for(TEAM) == BOT_TOKEN
    assert token_for(OTHER_TEAM) is None  # not posted with another team's channel ids
    assert len(slack_app.slack.calls_to("auth.test")) == checks + 1  # asked once


# -- malformed and failing requests -------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": ADMIN}, "actions": []},
        {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": ADMIN}},
        {"type": "view_submission", "team": {"id": TEAM}, "user": {"id": ADMIN}, "view": [1]},
        {"type": "event_callback", "team_id": TEAM, "event": "app_uninstalled"},
        {"command": "/xai-usage", "text": "status\x00", "team_id": TEAM, "user_id": ADMIN},
        {"command": "/xai-usage", "text": "status", "user_id": ADMIN},
    ],
)
def test_a_malformed_socket_mode_payload_is_one_log_line(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, payload: dict
) -> None:
    handler = GuardedSocketModeHandler(slack_app.bolt, "xapp-1-A0001-1-sockettoken")
    envelope = SocketModeRequest(type="interactive", envelope_id="E1", payload=payload)
    transport = Transport()
    caplog.clear()
    handler.handle(transport, envelope)
    assert [r.envelope_id for r in transport.sent] == ["E1"]  # acknowledged, not resent
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(logged) == 1 and logged[0].exc_info is None and "malformed" in logged[0].message
    assert slack_app.slack.responses == []


class Transport:
    """Where the handler sends its acknowledgements (the websocket in production)."""

    logger = logging.getLogger("socket-mode-transport")

    def __init__(self) -> None:
        self.sent: list[SocketModeResponse] = []

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.sent.append(response)


def test_a_well_formed_socket_mode_command_runs(slack_app: SlackApp) -> None:
    handler = GuardedSocketModeHandler(slack_app.bolt, "xapp-1-A0001-1-sockettoken")
    response_url = slack_app.slack.response_url()
    payload = {
        "command": "/xai-usage",
        "text": "help",
        "team_id": TEAM,
        "user_id": ADMIN,
        "response_url": response_url,
    }
    transport = Transport()
    handler.handle(
        transport, SocketModeRequest(type="slash_commands", envelope_id="E2", payload=payload)
    )
    assert [r.envelope_id for r in transport.sent] == ["E2"]
    slack_app.slack.wait_for(lambda: slack_app.slack.responses)


def test_a_failing_listener_is_one_log_line(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("something broke\non two lines")

    monkeypatch.setattr(answers, "status", broken)
    caplog.clear()
    answer, _ = slack_app.command("status")
    assert answer.status_code == 200
    slack_app.slack.wait_for(
        lambda: any(r.levelno >= logging.ERROR for r in caplog.records), timeout=5
    )
    seen = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    failed = [r for r in caplog.records if "something broke" in r.getMessage()]
    assert len(failed) == 1, seen
    assert failed[0].getMessage() == "a Slack request failed: RuntimeError: something broke"
    ours = [r for r in caplog.records if r.name.startswith(("bot", "slack_bolt"))]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in ours), seen


def test_a_database_outage_gets_a_reply_and_health_says_503(
    connected: SlackApp, keyring, caplog: pytest.LogCaptureFixture
) -> None:
    connected.runtime.__dict__["db"] = Database("postgresql://nobody@127.0.0.1:1/none", keyring)
    connected.service._workspaces.clear()  # nothing answered from memory
    for text in ("month", "status", "digest list"):
        _, url_id = connected.command(text)
        assert STORE_UNAVAILABLE in text_of(connected.reply(url_id))
    assert httpx.get(f"{connected.url}/healthz", timeout=5).status_code == 503
    assert all(r.exc_info is None for r in caplog.records)


def test_jobs_run_posts_with_the_bot_token_for_its_own_team_only(slack_app: SlackApp) -> None:
    at = datetime.now(UTC).replace(hour=0, minute=5, second=0, microsecond=0)
    terminal = terminal_workspace(slack_app)
    slack_app.slack.add_channel("CFOREIGN", "theirs")
    with slack_app.runtime.db.transaction() as session:
        foreign = Workspace(slack_team_id=OTHER_TEAM, name="theirs")  # adopted by an old version
        session.add(foreign)
        session.flush()
        for workspace_id, channel in ((terminal, "CCOSTS"), (foreign.id, "CFOREIGN")):
            session.add(
                DigestSubscription(
                    workspace_id=workspace_id,
                    channel_id=channel,
                    at_time="00:00",
                    created_by="terminal:ops",
                    created_at=at - timedelta(days=2),
                )
            )
    out = io.StringIO()
    env = dict(slack_app.runtime.settings.environ)
    main(["jobs", "run", "--at", at.isoformat()], environ=env, console=Console(out=out, err=out))

    posted = {c.params["channel"] for c in slack_app.slack.calls_to("chat.postMessage")}
    assert posted == {"CCOSTS"}, out.getvalue()  # not CFOREIGN, with this team's token
    assert "not_installed" in out.getvalue()
    assert sorted(workspaces(slack_app), key=str) == sorted(
        [(TEAM, "terminal"), (OTHER_TEAM, "theirs")], key=str
    )
