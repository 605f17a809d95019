"""Signed payloads that are not what Slack sends: mixed teams and odd shapes.

The gatekeeper (one workspace: the bot token's) checked one team field and the
listeners read another, so a payload naming the served team in one place and
another team elsewhere created a second workspace and a connection. Every
request now has one team: all its team fields agree, or it is a 400 with one
log line, and the listeners take the team the gatekeeper verified. Shapes the
listeners cannot read (``team`` as a string, ``text`` as a list, a
``private_metadata`` that is not an object) are 400s too, never an ERROR.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import func, select

from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import Connection, Workspace
from tests.bot.slack.conftest import ADMIN, BOT_TOKEN, TEAM, SlackApp, sign, text_of
from tests.bot.slack.test_slack_app import open_modal
from tests.fakes.slack_api import DEFAULT_BOT_SCOPES

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

OTHER = "T9999"


def counts(app: SlackApp) -> tuple[list[str], int]:
    with app.runtime.db.session() as session:
        teams = sorted(t or "" for t in session.scalars(select(Workspace.slack_team_id)))
        return teams, session.scalar(select(func.count()).select_from(Connection))


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def post_json(app: SlackApp, body: dict):
    raw = json.dumps(body)
    return app.post(raw, {**sign(raw), "Content-Type": "application/json"})


def connect_submission(view: dict, *, team: str = TEAM, view_team: str = TEAM, user_team=TEAM):
    values = {"label": "", "team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}
    values["backfill_days"] = "3"
    state = {
        block: {"value": {"type": "plain_text_input", "value": value}}
        for block, value in values.items()
    }
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "acme"},
        "user": {"id": ADMIN, "team_id": user_team},
        "api_app_id": "A0001",
        "trigger_id": "trig.1",
        "view": {**view, "id": "V0001", "team_id": view_team, "state": {"values": state}},
    }


def test_a_connect_form_naming_two_teams_creates_nothing(
    slack_app: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    view, _ = open_modal(slack_app)
    before = counts(slack_app)
    caplog.clear()
    for payload in (
        connect_submission(view, view_team=OTHER),  # the case
        connect_submission(view, team=OTHER, view_team=TEAM, user_team=TEAM),
        connect_submission(view, user_team=OTHER),
    ):
        answer = slack_app.interact(payload)
        assert answer.status_code == 400, answer.text
    time.sleep(0.3)  # anything a listener would do after an ack
    assert counts(slack_app) == before
    assert slack_app.xai.requests == []  # the key was never even tested
    logged = warnings(caplog)
    assert len(logged) == 3 and all("teams" in r.getMessage() for r in logged)
    assert all(r.exc_info is None for r in logged)


def test_the_same_form_naming_one_team_connects(slack_app: SlackApp) -> None:
    view, url_id = open_modal(slack_app)
    answer = slack_app.interact(connect_submission(view))
    assert answer.status_code == 200
    assert "Connected" in text_of(slack_app.reply(url_id, 2, timeout=20))
    assert counts(slack_app) == ([TEAM], 1)


def test_a_direct_message_whose_envelope_names_another_team_runs_nothing(
    connected: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    before = counts(connected)
    event = {"type": "message", "channel_type": "im", "channel": "DADMIN", "user": ADMIN}
    for body in (
        # Bolt reads the team from authorizations; the listener read team_id.
        {"team_id": OTHER, "authorizations": [{"team_id": TEAM, "is_bot": True}]},
        {"team_id": TEAM, "authorizations": [{"team_id": TEAM}], "event_team": OTHER},
    ):
        event_team = body.pop("event_team", None)
        payload = {
            "type": "event_callback",
            "api_app_id": "A0001",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": {**event, "text": "status", **({"team": event_team} if event_team else {})},
            **body,
        }
        assert post_json(connected, payload).status_code == 400
    time.sleep(0.3)
    assert counts(connected) == before
    assert connected.slack.calls_to("chat.postMessage") == []


def test_a_home_tab_click_whose_view_names_another_team_is_refused(connected: SlackApp) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": ADMIN, "team_id": TEAM},
        "view": {"id": "VHOME", "type": "home", "team_id": OTHER},
        "actions": [{"action_id": "xu:status", "value": "status", "action_ts": "1.1"}],
        "trigger_id": "t.1",
    }
    assert connected.interact(payload).status_code == 400
    assert counts(connected)[0] == [TEAM]


def form(callback_id: str, **view: object) -> dict:
    """A view submission as Slack sends one, with ``view`` changed."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": ADMIN, "team_id": TEAM},
        "api_app_id": "A0001",
        "trigger_id": "t.1",
        "view": {
            "id": "V0001",
            "type": "modal",
            "hash": "1.abc",
            "team_id": TEAM,
            "callback_id": callback_id,
            "private_metadata": "{}",
            "state": {"values": {}},
            **view,
        },
    }


ACTION = {
    "type": "block_actions",
    "team": {"id": TEAM, "domain": "acme"},
    "user": {"id": ADMIN, "team_id": TEAM},
    "actions": [{"action_id": "xu:status", "value": "status", "action_ts": "1.1"}],
    "trigger_id": "t.1",
}
SHAPES = {
    "team as a string": {**ACTION, "team": TEAM},
    "a user id that is a number": {**ACTION, "user": {"id": 7, "team_id": TEAM}},
    "a response URL that is a list": {**ACTION, "response_url": ["http://127.0.0.1:9/r"]},
    "a channel that is a string": {**ACTION, "channel": "CCOSTS"},
    "a button value that is an object": {
        **ACTION,
        "actions": [{"action_id": "xu:status", "value": {"x": 1}, "action_ts": "1.1"}],
    },
    "private_metadata a list": form("range_form", private_metadata="[1]"),
    "private_metadata a number": form("budget_form", private_metadata="5"),
    "private_metadata not JSON": form("budget_form", private_metadata="{x"),
    "form state that is a list": form("budget_form", state={"values": [1]}),
    "a form field that is a list": form(
        "budget_form", state={"values": {"amount": {"value": {"value": ["500"]}}}}
    ),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_an_interaction_of_the_wrong_shape_is_a_400_and_no_error(
    connected: SlackApp, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.clear()
    answer = connected.interact(SHAPES[case])
    time.sleep(0.3)
    assert answer.status_code == 400, answer.text
    logged = warnings(caplog)
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING, [
        r.getMessage() for r in logged
    ]
    assert connected.slack.responses == [] and connected.slack.calls_to("chat.postMessage") == []


def test_a_command_whose_text_is_a_list_is_a_400_and_no_error(
    connected: SlackApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    body = {
        "command": "/xai-usage",
        "text": ["status"],
        "team_id": TEAM,
        "user_id": ADMIN,
        "channel_id": "CCOSTS",
        "response_url": connected.slack.response_url(),
    }
    answer = post_json(connected, body)
    time.sleep(0.3)
    assert answer.status_code == 400
    assert [r.levelname for r in warnings(caplog)] == ["WARNING"]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message", "channel_type": "im", "channel": "DADMIN", "user": ADMIN, "text": [1]},
        {"type": "message", "channel_type": "im", "channel": ["D1"], "user": ADMIN, "text": "x"},
        {"type": "app_home_opened", "tab": "home", "user": {"id": ADMIN}},
    ],
)
def test_an_event_of_the_wrong_shape_is_a_400_and_no_error(
    connected: SlackApp, caplog: pytest.LogCaptureFixture, event: dict
) -> None:
    caplog.clear()
    answer = connected.event(event)
    time.sleep(0.3)
    assert answer.status_code == 400
    assert [r.levelname for r in warnings(caplog)] == ["WARNING"]
    assert connected.slack.calls_to("chat.postMessage") == []
    assert connected.slack.calls_to("views.publish") == []


def test_a_form_encoded_command_still_runs(connected: SlackApp) -> None:
    """The checks above leave Slack's own requests alone."""
    response_url = connected.slack.response_url()
    body = urlencode(
        {
            "command": "/xai-usage",
            "text": "help",
            "team_id": TEAM,
            "user_id": ADMIN,
            "response_url": response_url,
        }
    )
    assert connected.post(body).status_code == 200
    connected.slack.wait_for(lambda: connected.slack.responses)
    assert quote("x") == "x"


def test_a_direct_message_event_naming_a_public_channel_posts_nothing_there(
    connected: SlackApp,
) -> None:
    """A forged ``message.im`` naming #costs (or someone else's DM) is not answered there."""
    for channel in ("CCOSTS", "DMEMBER"):  # a public channel; another person's DM with the app
        event = {
            "type": "message",
            "channel_type": "im",
            "channel": channel,
            "user": ADMIN,
            "text": "month --by model",
            "ts": f"{time.time():.6f}",
        }
        assert connected.event(event).status_code == 200
    event = {**event, "channel": "DADMIN", "text": "help"}  # the real one, sent last
    assert connected.event(event).status_code == 200
    connected.slack.wait_for(lambda: connected.slack.calls_to("chat.postMessage"), timeout=10)
    time.sleep(0.5)  # the forged ones had their chance too
    posted = [c.params["channel"] for c in connected.slack.calls_to("chat.postMessage")]
    assert posted == ["DADMIN"]


def test_without_im_write_a_dm_is_still_answered_in_the_dm_and_only_there(
    connected: SlackApp,
) -> None:
    scopes = ",".join(s for s in DEFAULT_BOT_SCOPES.split(",") if s != "im:write")
    connected.slack.add_token(BOT_TOKEN, scope=scopes)  # an app from an older app.yaml
    for channel, text in (("CCOSTS", "month"), ("DADMIN", "help")):
        event = {"type": "message", "channel_type": "im", "channel": channel, "user": ADMIN}
        assert connected.event({**event, "text": text, "ts": f"{time.time():.6f}"}).status_code
    connected.slack.wait_for(lambda: connected.slack.calls_to("chat.postMessage"), timeout=10)
    time.sleep(0.5)
    posted = [c.params["channel"] for c in connected.slack.calls_to("chat.postMessage")]
    assert posted == [ADMIN]  # Slack posts a message addressed to a user in their DM
