"""A button is a command: signed ``block_actions`` through the app to the Slack stand-in.

Each control's value holds the words of a ``/xai-usage`` command; a click runs
them as that person typing them would, and the answer lands where the button
says (in place, in the channel, or as a new private message).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from bot.grammar import parse, tokenize
from bot.slack import dispatch
from storage.models import Connection
from tests.bot.slack.conftest import ADMIN, MEMBER, TEAM, SlackApp, text_of
from tests.bot.slack.test_files import DM_OF_MEMBER, shared_files

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

LABEL = "Production — xAI"


def click(
    app: SlackApp,
    action_id: str,
    value: str | None,
    user: str = ADMIN,
    select: bool = False,
    home: bool = False,
    channel: str = "CCOSTS",
) -> str:
    """Click a control of a private message in #costs, or in ``channel`` (the app's DM),
    or on the App Home tab, which has neither channel nor response URL; returns the
    click's response URL id."""
    response_url = app.slack.response_url()
    action: dict = {"action_id": action_id, "block_id": "b", "action_ts": f"{time.time():.6f}"}
    if select:
        action |= {"type": "static_select", "selected_option": {"value": value}}
    else:
        action |= {"type": "button", "value": value} if value is not None else {"type": "button"}
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0001",
        "channel": {"id": channel, "name": "costs" if channel == "CCOSTS" else "directmessage"},
        "container": {"type": "message", "channel_id": channel, "is_ephemeral": True},
        "response_url": response_url,
        "trigger_id": f"trig.{time.monotonic_ns()}",
        "actions": [action],
    }
    if home:
        del payload["channel"], payload["response_url"]
        payload["container"] = {"type": "view", "view_id": "V1"}
    app.interact(payload)
    return response_url.rsplit("/", 1)[-1]


def controls(message: dict) -> dict[str, dict]:
    """Every control of a message by action_id (a select's options flattened in)."""
    found = {}
    for block in message["blocks"]:
        if block["type"] == "actions":
            for element in block["elements"]:
                assert element["action_id"] not in found
                found[element["action_id"]] = element
    return found


def option_values(select: dict) -> dict[str, str]:
    return {o["text"]["text"]: o["value"] for o in select["options"]}


def test_a_report_carries_its_controls_each_a_command_that_keeps_the_filters(
    connected: SlackApp,
) -> None:
    _, url_id = connected.command(f"week --by model --connection {LABEL}")
    found = controls(connected.reply(url_id))
    assert list(found) == [
        "xu:view:period",
        "xu:view:by-model",
        "xu:view:by-day",
        "xu:view:by-key",
        "xu:view:by-connection",
        "xu:chart",
        "xu:export",
        "xu:share:report",
    ]
    period = found["xu:view:period"]
    assert period["type"] == "static_select"
    assert period["initial_option"]["text"]["text"] == "Last 7 days"
    assert option_values(period) == {
        "Today": 'today --by model --connection "Production — xAI"',
        "Yesterday": 'yesterday --by model --connection "Production — xAI"',
        "Last 7 days": 'week --by model --connection "Production — xAI"',
        "This month": 'month --by model --connection "Production — xAI"',
        "Last month": 'last-month --by model --connection "Production — xAI"',
    }
    assert [k for k, e in found.items() if e.get("style") == "primary"] == ["xu:view:by-model"]
    assert found["xu:view:by-key"]["value"] == 'week --by key --connection "Production — xAI"'
    assert found["xu:chart"]["value"].endswith("--chart")
    assert found["xu:export"]["value"] == (
        'export week --by model --connection "Production — xAI" --format csv'
    )
    values = [*option_values(period).values()]
    values += [e["value"] for e in found.values() if e["type"] == "button"]
    for value in values:  # each is a command the grammar takes back, filters and all
        assert parse(tokenize(value), surface="slack").get("connection") == LABEL


def test_a_period_then_a_grouping_replace_the_message_in_place(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by model", user=MEMBER)
    period = controls(connected.reply(url_id))["xu:view:period"]
    clicked = click(
        connected, "xu:view:period", option_values(period)["This month"], MEMBER, select=True
    )
    month = connected.reply(clicked)
    assert month["replace_original"] is True and month["response_type"] == "ephemeral"
    assert "to date: $" in month["blocks"][0]["text"]["text"]
    found = controls(month)
    assert found["xu:view:period"]["initial_option"]["text"]["text"] == "This month"
    assert found["xu:view:by-model"].get("style") == "primary"  # the grouping is kept

    clicked = click(connected, "xu:view:by-day", found["xu:view:by-day"]["value"], MEMBER)
    by_day = connected.reply(clicked)
    assert by_day["replace_original"] is True
    assert "by day" in text_of(by_day)
    assert [k for k, e in controls(by_day).items() if e.get("style") == "primary"] == [
        "xu:view:by-day"
    ]


def test_a_range_keeps_its_dates_when_the_grouping_changes(connected: SlackApp) -> None:
    _, url_id = connected.command("range 2026-11-20 2026-11-21 --by model")
    found = controls(connected.reply(url_id))
    assert "initial_option" not in found["xu:view:period"]  # no period names a range
    assert found["xu:view:by-day"]["value"] == "range 2026-11-20 2026-11-21 --by day"
    assert found["xu:export"]["value"] == "export 2026-11-20 2026-11-21 --by model --format csv"
    clicked = click(connected, "xu:view:by-connection", found["xu:view:by-connection"]["value"])
    assert "by connection" in text_of(connected.reply(clicked))


def test_share_posts_the_view_in_the_channel_saying_who_shared_it(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by key", user=MEMBER)
    share = controls(connected.reply(url_id))["xu:share:report"]
    clicked = click(connected, "xu:share:report", share["value"], MEMBER)
    shared = connected.reply(clicked)
    assert shared["response_type"] == "in_channel" and shared["replace_original"] is False
    assert f"Shared by <@{MEMBER}>" in text_of(shared)
    assert "by API key" in text_of(shared)
    assert controls(shared) == {}  # a copy for everyone: its buttons would act for the clicker
    # A share button without --share in its value still posts in the channel.
    clicked = click(connected, "xu:share:x", "week --by model", MEMBER)
    assert connected.reply(clicked)["response_type"] == "in_channel"


def test_chart_and_export_answer_as_new_private_messages(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by model", user=MEMBER)
    found = controls(connected.reply(url_id))
    clicked = click(connected, "xu:chart", found["xu:chart"]["value"], MEMBER)
    reply = connected.reply(clicked)
    assert reply["replace_original"] is False and reply["response_type"] == "ephemeral"
    assert [b for b in reply["blocks"] if b["type"] == "data_visualization"]  # Slack draws it
    assert connected.slack.files == {}

    clicked = click(connected, "xu:export", found["xu:export"]["value"], MEMBER)
    assert connected.reply(clicked)["replace_original"] is False
    exported = [f for f in shared_files(connected, 1) if f.filename.endswith(".csv")]
    assert [f.shared_in for f in exported] == [[DM_OF_MEMBER]]


def test_status_syncs_now_and_offers_a_new_key_to_admins_only(connected: SlackApp) -> None:
    with connected.runtime.db.transaction() as session:
        session.execute(update(Connection).values(status="error", status_reason="auth"))
    _, url_id = connected.command("status", user=MEMBER)
    found = controls(connected.reply(url_id))
    assert found["xu:sync"]["value"] == "sync"
    assert found["xu:update-key:0"]["value"] == 'update-key "Production — xAI"'

    clicked = click(connected, "xu:update-key:0", found["xu:update-key:0"]["value"], MEMBER)
    assert "only workspace admins" in text_of(connected.reply(clicked))
    assert connected.slack.calls_to("views.open") == []
    click(connected, "xu:update-key:0", found["xu:update-key:0"]["value"], ADMIN)
    connected.slack.wait_for(lambda: connected.slack.calls_to("views.open"))
    [opened] = connected.slack.calls_to("views.open")
    assert '"callback_id": "update_key"' in str(opened.params["view"]).replace("'", '"')

    clicked = click(connected, "xu:sync", "sync", MEMBER)
    assert "Syncing" in text_of(connected.reply(clicked))
    assert ":white_check_mark:" in text_of(connected.reply(clicked, 2, timeout=20))


def test_a_click_on_the_home_tab_answers_by_direct_message(connected: SlackApp) -> None:
    click(connected, "xu:view:by-model", "month --by model", MEMBER, home=True)
    connected.slack.wait_for(lambda: connected.slack.calls_to("chat.postMessage"), timeout=10)
    [dm] = connected.slack.calls_to("chat.postMessage")
    assert dm.params["channel"] == MEMBER and "to date: $" in dm.params["text"]


def test_a_click_on_connect_opens_the_form(slack_app: SlackApp) -> None:
    click(slack_app, "xu:connect", "connect")
    slack_app.slack.wait_for(lambda: slack_app.slack.calls_to("views.open"))


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("tdoay --by model", "out of date: “tdoay” is not a command. Did you mean `today`?"),
        ("week --by team", "That button is out of date: --by must be one of"),
        (None, "That button no longer does anything"),
        ('week --connection "Staging"', LABEL),  # a connection since removed: the real ones
    ],
)
def test_stale_clicks_get_one_clear_line(connected: SlackApp, value, says) -> None:
    clicked = click(connected, "xu:view:by-model", value)
    reply = connected.reply(clicked)
    assert says in text_of(reply)
    assert reply["replace_original"] is False  # the report clicked stays as it was
    assert "Traceback" not in text_of(reply)


def test_a_command_without_a_slack_handler_says_so(connected: SlackApp, monkeypatch) -> None:
    monkeypatch.delitem(dispatch.HANDLERS, "status")
    _, url_id = connected.command("status")
    assert "`status` isn't available here" in text_of(connected.reply(url_id))
    clicked = click(connected, "xu:sync", "status")
    assert "`status` isn't available here" in text_of(connected.reply(clicked))
