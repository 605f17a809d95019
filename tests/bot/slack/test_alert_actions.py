"""Acknowledge, Snooze and Mute on a posted alert: signed ``block_actions`` end to end.

A whole deployment (tests/fakes/world.py): ``jobs run --at T`` posts the alerts to the
Slack stand-in, and the Slack app (HTTP mode, real signatures, the same store and
clock) takes the clicks on them; the next runs show what each click changed.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.runtime import Runtime
from bot.slack.app import build_app
from bot.slack.server import http_server, stop_waitress, wsgi_app
from bot.slack.settings import SlackSettings
from providers.xai.sandbox import DEMO_KEY
from storage.models import AlertIncident, AlertSilence
from tests.bot.slack.conftest import (
    ADMIN,
    GUEST,
    MEMBER,
    SIGNING_SECRET,
    TEAM,
    SlackApp,
    sign,
    text_of,
)
from tests.bot.slack.test_home import buttons, open_home
from tests.fakes.world import World, at, route_alerts

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


@pytest.fixture
def app(world: World):
    """The Slack app over HTTP, on the world's store, stand-ins and clock."""
    world.slack.add_user(MEMBER, name="max")
    world.slack.add_user(GUEST, name="gus", is_restricted=True)
    env = {**world.env, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "HOST": "127.0.0.1"}
    runtime = Runtime(Settings.from_env(env), clock=world.clock)
    settings = SlackSettings.from_env(env, force_http=True, port=0)
    bolt, service = build_app(runtime, settings)
    server = http_server(
        wsgi_app(bolt, runtime, SIGNING_SECRET), settings.limits, host="127.0.0.1", port=0
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    harness = SlackApp(
        f"http://127.0.0.1:{server.effective_port}",
        world.slack,
        world.xai,
        runtime,
        service,
        bolt=bolt,
    )
    try:
        yield harness
    finally:
        service.live_home.close()
        stop_waitress(server)
        thread.join(timeout=5)
        harness.http.close()
        runtime.close()
    assert world.slack.violations == []


def failing(world: World) -> dict:
    """A revoked key: the failure's first post in #alerts, as Slack holds it."""
    route_alerts(world, "CALERTS")
    world.xai.revoke_key(DEMO_KEY)
    world.jobs(at("2026-10-21T06:01:00"))
    [first] = world.slack.history("CALERTS")
    return first


def click_body(
    app: SlackApp,
    message: dict,
    control: str,
    *,
    user: str = ADMIN,
    option: str | None = None,
    channel: str = "CALERTS",
) -> str:
    """The signed ``block_actions`` Slack sends for a click on ``control`` of ``message``."""
    [element] = [
        e
        for block in message["blocks"]
        if block["type"] == "actions"
        for e in block["elements"]
        if e["action_id"] == control
    ]
    action: dict = {"action_id": control, "block_id": "xa:actions"}
    action["action_ts"] = f"{time.time():.6f}"
    if option is not None:
        [chosen] = [o for o in element["options"] if o["text"]["text"] == option]
        action |= {"type": "static_select", "selected_option": chosen}
    else:
        action |= {"type": "button", "value": element["value"]}
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0001",
        "channel": {"id": channel},
        "container": {
            "type": "message",
            "channel_id": channel,
            "message_ts": message["ts"],
            "is_ephemeral": False,
        },
        "message": {k: v for k, v in message.items() if k != "metadata"},
        "response_url": app.slack.response_url(),
        "trigger_id": f"trig.{time.monotonic_ns()}",
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})


def click(app: SlackApp, message: dict, control: str, **how) -> str:
    """Click and wait for the alert to change (or for the clicker's private answer):
    returns the click's response URL id."""
    body = click_body(app, message, control, **how)
    url_id = json.loads(dict(_form(body))["payload"])["response_url"].rsplit("/", 1)[-1]
    updates = len(app.slack.calls_to("chat.update"))
    assert app.post(body).status_code == 200
    app.slack.wait_for(
        lambda: len(app.slack.calls_to("chat.update")) > updates or app.replies(url_id)
    )
    return url_id


def _form(body: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body)


def current(world: World, message: dict, channel: str = "CALERTS") -> dict:
    """The message as the channel shows it now (after any ``chat.update``)."""
    return next(m for m in world.slack.history(channel) if m["ts"] == message["ts"])


def controls_of(message: dict) -> list[str]:
    return [
        e["action_id"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for e in block["elements"]
    ]


def replies_in_thread(world: World, parent: dict, channel: str = "CALERTS") -> list[dict]:
    return [m for m in world.slack.history(channel) if m.get("thread_ts") == parent["ts"]]


def test_an_alert_carries_acknowledge_snooze_and_mute(world: World, app: SlackApp) -> None:
    first = failing(world)
    assert controls_of(first) == ["xu:update-key", "xu:sync-now", "xa:ack", "xa:snooze", "xa:mute"]
    [snooze] = [e for b in first["blocks"] if b["type"] == "actions" for e in b["elements"]][3:4]
    assert [o["text"]["text"] for o in snooze["options"]] == ["1 day", "1 week"]
    mute = [e for b in first["blocks"] if b["type"] == "actions" for e in b["elements"]][4]
    assert "Only admins can mute" in mute["confirm"]["text"]["text"]  # asked before it is done
    fields = [f["text"] for b in first["blocks"] if "fields" in b for f in b["fields"]]
    assert fields[:2] == ["*Connection*\n“Production — xAI”", "*Failing since*\n21 Oct 06:01 UTC"]


def test_acknowledged_by_a_member_it_shows_who_and_no_reminder_comes(
    world: World, app: SlackApp
) -> None:
    first = failing(world)
    world.clock.now = at("2026-10-21T06:30:00")
    click(app, first, "xa:ack", user=MEMBER)
    shown = current(world, first)
    assert "Acknowledged by <@UMEMBER> at 21 Oct 06:30 UTC. No more reminders about it." in (
        text_of(shown)
    )
    assert "xa:ack" not in controls_of(shown) and "xa:snooze" in controls_of(shown)
    world.jobs(at("2026-10-22T06:05:00"))  # a day on: no reminder, here or by DM
    assert replies_in_thread(world, first) == []
    assert [m for m in world.posts(ADMIN) if "thread_ts" in m] == []
    # The DM's copy still has its button; a second acknowledgement names the first.
    [dm] = world.slack.history("DADMIN")
    url_id = click(app, dm, "xa:ack", channel="DADMIN")
    assert "<@UMEMBER> acknowledged it already, at 21 Oct 06:30 UTC." in text_of(app.reply(url_id))
    with world.runtime().db.session() as session:
        [row] = session.scalars(select(AlertIncident))
    assert (row.acked_by, row.key.startswith("syncfail:")) == (MEMBER, True)


def test_the_same_signed_click_sent_three_times_is_handled_once(
    world: World, app: SlackApp
) -> None:
    first = failing(world)
    body = click_body(app, first, "xa:ack")
    headers = sign(body)
    answers = [app.post(body, headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    app.slack.wait_for(lambda: app.slack.calls_to("chat.update"))
    time.sleep(0.5)  # the others had their chance
    assert len(app.slack.calls_to("chat.update")) == 1
    assert app.slack.responses == []  # nor an "acknowledged already"


def test_snoozed_for_a_day_the_reminder_waits_until_it_ends(world: World, app: SlackApp) -> None:
    first = failing(world)
    world.clock.now = at("2026-10-21T08:00:00")
    click(app, first, "xa:snooze", option="1 day")
    assert "Snoozed by <@UADMIN> until 22 Oct 08:00 UTC" in text_of(current(world, first))
    world.jobs(at("2026-10-22T06:05:00"))  # a day after the first post: snoozed
    assert replies_in_thread(world, first) == []
    world.jobs(at("2026-10-22T08:01:00"))  # the snooze is over: reminded, once
    world.jobs(at("2026-10-22T08:02:00"))
    [reminder] = replies_in_thread(world, first)
    assert "still not syncing (1 day since this alert)" in text_of(reminder)


def test_snoozed_for_a_week_nothing_comes_for_a_week(world: World, app: SlackApp) -> None:
    first = failing(world)
    world.clock.now = at("2026-10-21T08:00:00")
    click(app, first, "xa:snooze", option="1 week")
    assert "until 28 Oct 08:00 UTC" in text_of(current(world, first))
    for day in range(22, 29):
        world.jobs(at(f"2026-10-{day}T06:05:00"))
    assert replies_in_thread(world, first) == []
    world.jobs(at("2026-10-28T08:05:00"))
    [reminder] = replies_in_thread(world, first)
    assert "still not syncing (7 days since this alert)" in text_of(reminder)


def test_a_member_may_not_mute_and_a_guest_may_not_acknowledge(world: World, app: SlackApp) -> None:
    first = failing(world)
    url_id = click(app, first, "xa:mute", user=MEMBER)
    assert "Only workspace admins and owners" in text_of(app.reply(url_id))
    assert "You can Acknowledge this one, or Snooze it" in text_of(app.reply(url_id))
    url_id = click(app, first, "xa:ack", user=GUEST)
    assert "Sorry" in text_of(app.reply(url_id))
    assert app.slack.calls_to("chat.update") == []  # the alert is as it was
    with world.runtime().db.session() as session:
        assert session.scalars(select(AlertSilence)).all() == []
        assert session.scalars(select(AlertIncident)).all() == []


def test_an_admin_mutes_a_rule_and_unmutes_it_from_the_home_tab(
    world: World, app: SlackApp
) -> None:
    first = failing(world)
    world.clock.now = at("2026-10-21T07:00:00")
    click(app, first, "xa:mute")
    shown = text_of(current(world, first))
    assert (
        "Muted by <@UADMIN>: no more alerts about sync failures of “Production — xAI” until "
        "an admin unmutes them" in shown
    )
    assert controls_of(current(world, first))[-1] == "xa:ack"  # snooze and mute are gone
    world.jobs(at("2026-10-22T06:05:00"))
    world.jobs(at("2026-10-23T06:05:00"))
    assert replies_in_thread(world, first) == []
    # `alerts list` says what is muted, by whom, and how to undo it.
    _, url_id = app.command("alerts list")
    listed = text_of(app.reply(url_id))
    assert "Muted: sync failures of “Production — xAI”, by <@UADMIN>." in listed
    assert "`/xai-usage alerts unmute 1` undoes it." in listed
    # The Home tab has an Unmute button for admins; a click on it runs that command.
    home = open_home(app)
    assert buttons(home)["xu:alerts-unmute-1"] == "alerts unmute 1"
    from tests.bot.slack.test_clicks import click as click_control

    click_control(app, "xu:alerts-unmute-1", "alerts unmute 1", home=True)
    app.slack.wait_for(lambda: any("Unmuted" in text_of(p) for p in world.posts(ADMIN)))
    with world.runtime().db.session() as session:
        assert session.scalars(select(AlertSilence)).all() == []
    world.jobs(at("2026-10-23T06:10:00"))  # reminded again, in the thread
    [reminder] = replies_in_thread(world, first)
    assert "still not syncing (2 days since this alert)" in text_of(reminder)
