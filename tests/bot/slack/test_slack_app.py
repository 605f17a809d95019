"""/xai-usage end to end: signed HTTP requests, the Slack and xAI stand-ins."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from sqlalchemy import func, select

from bot.slack import answers
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import ApiKeyName, Connection, DailyCost, FetchedSpan, SyncRun, Workspace
from storage.repo import rebuild_totals, workspace_for_slack_team
from tests.bot.slack.conftest import (
    ADMIN,
    BOT_USER,
    GUEST,
    MEMBER,
    SIGNING_SECRET,
    TEAM,
    VISITOR,
    SlackApp,
    fallback_table,
    native_table,
    sign,
    text_of,
)
from tests.fakes.connections import add_connection

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def test_the_ack_comes_at_once_and_the_report_follows(connected: SlackApp) -> None:
    started = time.perf_counter()
    response, url_id = connected.command("month --by model")
    assert response.status_code == 200 and response.text == ""
    assert time.perf_counter() - started < 3
    reply = connected.reply(url_id)
    assert reply["response_type"] == "ephemeral"
    text = text_of(reply)
    assert "to date: $" in reply["blocks"][0]["text"]["text"]
    assert "grok-4-0709" in text and "%" in text and "as of" in text
    assert reply["text"]  # a text fallback for notifications and screen readers


def test_share_posts_in_the_channel(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by day --share", user=MEMBER)
    assert connected.reply(url_id)["response_type"] == "in_channel"


def test_report_totals_match_the_store(connected_settling: SlackApp) -> None:
    connected = connected_settling
    _, url_id = connected.command("range 2000-01-01 2100-01-01 --by connection")
    header = connected.reply(url_id)["blocks"][0]["text"]["text"]
    with connected.runtime.db.session() as session:
        total = session.scalar(select(func.sum(DailyCost.cost)))
    # 2023 to tomorrow: the days before the backfill and tomorrow were not fetched, and
    # the last days are still settling; the amount is the store's, to the cent.
    assert header.endswith(f"${total.quantize(Decimal('0.01')):,} (fetched days only, provisional)")


def test_days_before_the_backfill_say_not_fetched_in_slack(connected_settling: SlackApp) -> None:
    connected = connected_settling
    today = connected.runtime.clock().date()
    start = (today - timedelta(days=31)).isoformat()  # two days before the 30-day backfill
    _, url_id = connected.command(f"range {start} {today.isoformat()} --by day")
    reply = connected.reply(url_id)
    text = text_of(reply)
    costs = [row[1] for row in native_table(reply)]
    assert costs.count("not fetched") == 2 and "$0.00" not in costs
    fallback = "\n".join(fallback_table(reply))
    assert fallback.count("not fetched") == 2 and "$0.00" not in fallback
    assert "(fetched days only, provisional)" in reply["blocks"][0]["text"]["text"]
    assert '`/xai-usage sync --connection "Production — xAI" --days 32`' in text
    _, url_id = connected.command("range 2025-01-01 2025-01-31")
    text = text_of(connected.reply(url_id))
    assert "Nothing was fetched for this period" in text and "No spend" not in text


def test_a_long_list_is_cut_to_its_newest_rows_and_says_how_to_see_the_rest(
    connected: SlackApp,
) -> None:
    _, url_id = connected.command("range 2026-01-01 2026-12-31 --by day")
    reply = connected.reply(url_id)
    assert native_table(reply)[1][0].endswith(" earlier days")
    assert "`/xai-usage range 2026-01-01 " in text_of(reply)
    assert len(reply["blocks"]) <= 50


def key_table(app: SlackApp, words: str) -> list[str]:
    """The lines of a report's table as the Slack reply shows them (its code block)."""
    _, url_id = app.command(words)
    text = text_of(app.reply(url_id))
    return text.split("```")[1].splitlines()


def test_keys_of_several_connections_are_told_apart_by_their_own_names(
    connected: SlackApp,
) -> None:
    """Keys used to be labelled "Connection: key" and cut to the table's width, so every
    key of a long-labelled connection read "Production — xAI Europ…": the key's own name
    comes first now, its connection after it."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with connected.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        europe = add_connection(
            session, workspace_id, "Production — xAI Europe", last_success_at=datetime.now(UTC)
        )
        for key_id, name, usd in (("k1", "Production key", "40"), ("k2", "Test key", "3")):
            session.add(ApiKeyName(connection_id=europe.id, api_key_id=key_id, name=name))
            session.add(
                DailyCost(
                    connection_id=europe.id,
                    workspace_id=workspace_id,
                    day=yesterday,
                    model="grok-4",
                    api_key_id=key_id,
                    cost=Decimal(usd),
                )
            )
        session.add(
            FetchedSpan(
                connection_id=europe.id,
                workspace_id=workspace_id,
                first_day=yesterday,
                last_day=yesterday,
            )
        )
        session.flush()
        rebuild_totals(session, workspace_id)
    _, url_id = connected.command("week --by key")
    reply = connected.reply(url_id)
    [table] = [b for b in reply["blocks"] if b["type"] == "table"]
    shown = [row[0]["text"] for row in table["rows"][1:-1]]  # the header and total aside
    fallback = [  # the code block, cut to a phone's width
        line.rsplit("$", 1)[0].split("  ")[0]
        for line in text_of(reply).split("```")[1].splitlines()
        if "%" in line and not line.startswith("Total")
    ]
    for labels, after in ((shown, " ("), (fallback, "")):  # the fallback cuts in the middle
        assert len(set(labels)) == len(labels) == 4, labels
        for name in ("production", "staging", "Production key", "Test key"):
            assert any(label.startswith(f"{name}{after}") for label in labels), (name, labels)


def test_today_refreshes_data_older_than_15_minutes(connected: SlackApp) -> None:
    with connected.runtime.db.transaction() as session:
        connection = session.scalar(select(Connection))
        connection.last_success_at = connection.last_success_at.replace(year=2025)
    before = len(connected.xai.requests)
    _, url_id = connected.command("today")
    connected.reply(url_id)
    assert len(connected.xai.requests) > before  # today's window was fetched again
    _, url_id = connected.command("today")
    connected.reply(url_id)
    fetched = len(connected.xai.requests)
    _, url_id = connected.command("today")
    connected.reply(url_id)
    assert len(connected.xai.requests) == fetched  # fresh now: no second fetch


def test_a_typo_gets_the_closest_command_and_the_usage(slack_app: SlackApp) -> None:
    _, url_id = slack_app.command("tody --by model")
    text = text_of(slack_app.reply(url_id))
    assert "Did you mean `today`?" in text and "Usage: `/xai-usage today" in text


def test_help_lists_the_commands(slack_app: SlackApp) -> None:
    _, url_id = slack_app.command("help")
    text = text_of(slack_app.reply(url_id))
    for command in ("today", "month", "connect", "disconnect", "sync", "status"):
        assert f"`{command}`" in text
    assert "rotate-key" not in text  # terminal-only commands are not offered in Slack


ADMIN_COMMANDS = ("connect", "disconnect", "update-key", "digest", "budget", "alerts")


def test_help_shows_each_person_what_they_may_run(slack_app: SlackApp) -> None:
    """Guests saw every admin command in `help`, members too: each sees what they may run."""
    _, url_id = slack_app.command("help", user=ADMIN)
    admin = text_of(slack_app.reply(url_id))
    assert all(f"`{name}`" in admin for name in ADMIN_COMMANDS)
    _, url_id = slack_app.command("help", user=MEMBER)
    member = text_of(slack_app.reply(url_id))
    assert "`month`" in member and "`status`" in member
    assert not any(f"`{name}`" in member for name in ADMIN_COMMANDS)
    assert "Workspace admins also" in member  # who to ask for the rest
    _, url_id = slack_app.command("help", user=GUEST)
    guest = text_of(slack_app.reply(url_id))
    assert "guests can't see this workspace's costs" in guest
    assert "`month`" not in guest and not any(f"`{n}`" in guest for n in ADMIN_COMMANDS)
    _, url_id = slack_app.command("help connect", user=MEMBER)
    assert "Only workspace admins" in text_of(slack_app.reply(url_id))


def test_help_about_an_unknown_command_says_so_and_suggests_the_nearest(
    slack_app: SlackApp,
) -> None:
    _, url_id = slack_app.command("help foo", user=MEMBER)
    text = text_of(slack_app.reply(url_id))
    assert "“foo” is not a command" in text and "`month`" in text  # and the list follows
    _, url_id = slack_app.command("help stauts", user=MEMBER)
    assert "“stauts” is not a command. Did you mean `status`?" in text_of(slack_app.reply(url_id))


def test_status_shows_every_connection_with_a_masked_key(connected: SlackApp) -> None:
    _, url_id = connected.command("status", user=MEMBER)
    text = text_of(connected.reply(url_id))
    assert "Production — xAI" in text and "xai-…beef" in text and "month to date (" in text
    assert DEMO_KEY not in text


def test_sync_reports_rows_days_and_total(connected: SlackApp) -> None:
    _, url_id = connected.command("sync")
    assert "Syncing" in text_of(connected.reply(url_id))
    text = text_of(connected.reply(url_id, 2))
    assert "Production — xAI" in text and "3 days" in text and "rows" in text and "$" in text


def test_sync_reports_an_outage_and_keeps_the_data(connected: SlackApp) -> None:
    connected.xai.add_fault("usage", status=503, times=0)
    _, url_id = connected.command("sync")
    text = text_of(connected.reply(url_id, 2))
    assert ":x:" in text and "Production — xAI" in text
    with connected.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DailyCost)) > 0


# -- who may do what ------------------------------------------------------------


@pytest.mark.parametrize(
    "user, words", [(GUEST, "guests"), (BOT_USER, "bots"), (VISITOR, "another")]
)
def test_guests_bots_and_visitors_are_refused_politely(connected, user, words) -> None:
    _, url_id = connected.command("month", user=user)
    text = text_of(connected.reply(url_id))
    assert text.startswith("Sorry") and words in text
    assert "$" not in text


def test_only_admins_may_connect_or_disconnect(connected: SlackApp) -> None:
    _, url_id = connected.command("connect", user=MEMBER)
    assert "only workspace admins" in text_of(connected.reply(url_id))
    _, url_id = connected.command("disconnect Production — xAI", user=MEMBER)
    assert "only workspace admins" in text_of(connected.reply(url_id))
    assert connected.slack.calls_to("views.open") == []


def test_people_listed_in_xai_usage_admins_may_connect(connected: SlackApp) -> None:
    settings = connected.service.settings
    connected.service.settings = replace(settings, admins=frozenset({MEMBER}))
    _, url_id = connected.command("connect", user=MEMBER)
    connected.slack.wait_for(lambda: connected.slack.calls_to("views.open"))
    assert connected.replies(url_id) == []  # no refusal: the modal opened instead


def test_queries_are_scoped_to_the_workspace(connected: SlackApp) -> None:
    """One workspace (a bot token): another team's request is refused outright."""
    other = "T0002"
    connected.slack.add_user("UOTHER", team_id=other, is_admin=True)
    answer, url_id = connected.command("month", user="UOTHER", team=other)
    assert "set up for another Slack workspace" in text_of(answer.json())
    assert "Production" not in answer.text and connected.replies(url_id) == []


OTHER_TEAM, OTHER_ADMIN = "T0002", "UOTHER"


def from_another_workspace(app: SlackApp, kind: str) -> httpx.Response:
    """A request from an admin of another workspace where this app is also installed."""
    other = {"team": {"id": OTHER_TEAM, "domain": "other"}, "api_app_id": "A0001"}
    other["user"] = {"id": OTHER_ADMIN, "team_id": OTHER_TEAM}
    if kind == "click":
        return app.interact(
            {
                **other,
                "type": "block_actions",
                "channel": {"id": "COTHER"},
                "response_url": app.slack.response_url(),
                "trigger_id": "trig.other",
                "actions": [{"action_id": "xu:view:by-day", "value": "month --by day"}],
            }
        )
    if kind == "form":
        view = {"id": "VOTHER", "team_id": OTHER_TEAM, "callback_id": "digest_form"}
        view |= {"type": "modal", "state": {"values": {}}, "private_metadata": "{}"}
        return app.interact({**other, "type": "view_submission", "view": view})
    event = {"type": "app_home_opened", "user": OTHER_ADMIN, "tab": "home"}
    if kind == "dm":
        event = {"type": "message", "channel_type": "im", "channel": "DOTHER", "text": "month"}
        event |= {"user": OTHER_ADMIN, "ts": "1.000001"}
    return app.event(event, team=OTHER_TEAM)


def test_an_admin_of_another_workspace_is_refused_politely_wherever_they_ask(
    connected: SlackApp,
) -> None:
    """The same app installed in another workspace (or an org-wide install) reaches this
    one's server: a slash command got the polite refusal, a click, a DM or the Home tab
    got nothing at all. Each is told, where Slack lets it be said, and nothing is done."""
    connected.slack.add_user(OTHER_ADMIN, team_id=OTHER_TEAM, is_admin=True)
    said = "this xai-usage is set up for another Slack workspace"

    response = from_another_workspace(connected, "click")
    assert response.status_code == 200
    [reply] = [r.payload for r in wait_for_responses(connected, 1)]
    assert said in text_of(reply) and reply["response_type"] == "ephemeral"

    answer = from_another_workspace(connected, "form").json()
    assert answer["response_action"] == "update" and said in json.dumps(answer["view"])

    assert from_another_workspace(connected, "dm").status_code == 200
    connected.slack.wait_for(lambda: connected.slack.calls_to("chat.postMessage"))
    [dm] = connected.slack.calls_to("chat.postMessage")
    assert dm.params["channel"] == "DOTHER" and said in dm.params["text"]
    for unanswered in ({"bot_id": "B0THER"}, {"subtype": "message_changed"}):  # no loops
        event = {"type": "message", "channel_type": "im", "channel": "DOTHER", "text": "x"}
        event |= {"user": OTHER_ADMIN, "ts": f"{time.time():.6f}", **unanswered}
        assert connected.event(event, team=OTHER_TEAM).status_code == 200

    assert from_another_workspace(connected, "home").status_code == 200
    connected.slack.wait_for(lambda: connected.slack.calls_to("views.publish"))
    [home] = connected.slack.calls_to("views.publish")
    assert home.params["user_id"] == OTHER_ADMIN and said in json.dumps(home.params["view"])

    connected.service.commands.shutdown(wait=True)  # whatever was queued has run
    assert len(connected.slack.calls_to("chat.postMessage")) == 1
    everything = json.dumps([c.params for c in connected.slack.calls]) + json.dumps(reply)
    assert "Production" not in everything and "$" not in everything  # nothing of this one's
    assert connected.slack.calls_to("views.open") == []


def wait_for_responses(app: SlackApp, count: int):
    app.slack.wait_for(lambda: len(app.slack.responses) >= count)
    return list(app.slack.responses)


# -- the connect modal ----------------------------------------------------------


def open_modal(app: SlackApp) -> tuple[dict, str]:
    _, url_id = app.command("connect")
    app.slack.wait_for(lambda: app.slack.calls_to("views.open"))
    return app.slack.calls_to("views.open")[-1].params["view"], url_id


def submit(app: SlackApp, view: dict, user: str = ADMIN, **values: str):
    state = {
        block: {"value": {"type": "plain_text_input", "value": value}}
        for block, value in values.items()
    }
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0001",
        "trigger_id": "trig.1",
        "view": {**view, "id": "V0001", "team_id": TEAM, "state": {"values": state}},
    }
    return app.interact(payload)


def test_malformed_input_is_shown_on_the_field_at_once(slack_app: SlackApp) -> None:
    view, _ = open_modal(slack_app)
    assert view["callback_id"] == "connect"
    response = submit(
        slack_app, view, team_id="65c1e471", management_key="short", backfill_days="120"
    )
    body = response.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"team_id", "management_key", "backfill_days"}
    assert "UUID" in body["errors"]["team_id"]
    assert slack_app.xai.requests == []  # nothing was sent to xAI


def test_a_rejected_key_keeps_the_modal_open_with_the_fix(slack_app: SlackApp) -> None:
    view, _ = open_modal(slack_app)
    response = submit(
        slack_app,
        view,
        team_id=DEMO_TEAM_ID,
        management_key="xai-revoked-key-00000000000000000000",
        backfill_days="30",
    )
    body = response.json()
    assert body["response_action"] == "errors"
    assert "Management API key" in body["errors"]["management_key"]
    with slack_app.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


def test_a_key_of_another_team_is_blamed_on_the_team_id(slack_app: SlackApp) -> None:
    slack_app.xai.add_key(
        "xai-mgmt-other-team-000000000000000", "11111111-2222-3333-4444-555555555555"
    )
    view, _ = open_modal(slack_app)
    body = submit(
        slack_app, view, team_id=DEMO_TEAM_ID, management_key="xai-mgmt-other-team-000000000000000"
    ).json()
    assert list(body["errors"]) == ["team_id"]


def test_a_good_key_closes_the_modal_and_reports_the_backfill(slack_app: SlackApp) -> None:
    view, url_id = open_modal(slack_app)
    response = submit(
        slack_app, view, label="", team_id=DEMO_TEAM_ID, management_key=DEMO_KEY, backfill_days="45"
    )
    assert response.status_code == 200 and response.text == ""  # closes the modal
    done = text_of(slack_app.reply(url_id, 2, timeout=20))
    assert "Connected *Production — xAI* (`xai-…beef`)" in done
    assert "Backfilled 45 days: $" in done
    # where its alerts will go, and how to change that
    assert f"Alerts go by direct message to <@{ADMIN}>. `/xai-usage alerts #channel`" in done
    with slack_app.runtime.db.session() as session:
        connection = session.scalar(select(Connection))
        assert connection.created_by == ADMIN and connection.backfill_days == 45
    assert all(DEMO_KEY not in json.dumps(call.params) for call in slack_app.slack.calls)
    assert all(DEMO_KEY not in json.dumps(r.payload) for r in slack_app.slack.responses)


def test_a_slow_xai_turns_the_modal_into_a_progress_view(slack_app: SlackApp) -> None:
    slack_app.xai.latency = 1.5  # two round trips: past the 2.3 s budget
    view, url_id = open_modal(slack_app)
    response = submit(
        slack_app, view, team_id=DEMO_TEAM_ID, management_key=DEMO_KEY, backfill_days="3"
    )
    assert response.json()["response_action"] == "update"
    slack_app.slack.wait_for(lambda: slack_app.slack.calls_to("views.update"), timeout=20)
    slack_app.xai.latency = 0
    assert "Backfilled 3 days" in text_of(slack_app.reply(url_id, 2, timeout=30))


# -- disconnect -------------------------------------------------------------------


def click(app: SlackApp, action_id: str, value: str, response_url: str, user: str = ADMIN):
    return app.interact(
        {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": "A0001",
            "response_url": response_url,
            "trigger_id": "trig.2",
            "actions": [
                {"action_id": action_id, "block_id": "disconnect", "value": value, "type": "button"}
            ],
        }
    )


def test_disconnect_asks_first_and_cancel_keeps_everything(connected: SlackApp) -> None:
    _, url_id = connected.command("disconnect production — xai")
    ask = connected.reply(url_id)
    buttons = ask["blocks"][1]["elements"]
    assert [b["action_id"] for b in buttons] == ["disconnect_confirm", "disconnect_cancel"]
    url = f"{connected.slack.url}/response/{url_id}"
    click(connected, "disconnect_cancel", buttons[1]["value"], url)
    assert "nothing was deleted" in text_of(connected.reply(url_id, 2))
    with connected.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 1


def test_confirmed_disconnect_deletes_the_key_and_the_data(connected: SlackApp) -> None:
    _, url_id = connected.command("disconnect Production — xAI")
    uid = connected.reply(url_id)["blocks"][1]["elements"][0]["value"]
    url = f"{connected.slack.url}/response/{url_id}"
    click(connected, "disconnect_confirm", uid, url, user=MEMBER)  # not an admin: refused
    assert "only workspace admins" in text_of(connected.reply(url_id, 2))
    click(connected, "disconnect_confirm", uid, url)
    assert "Disconnected" in text_of(connected.reply(url_id, 3))
    with connected.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0
        assert session.scalar(select(func.count()).select_from(DailyCost)) == 0


def test_unknown_labels_list_the_real_ones(connected: SlackApp) -> None:
    _, url_id = connected.command("disconnect staging")
    assert "Production — xAI" in text_of(connected.reply(url_id))


# -- security ---------------------------------------------------------------------


def test_forged_unsigned_and_replayed_requests_are_refused(connected: SlackApp) -> None:
    body = "command=%2Fxai-usage&text=month&team_id=T0001&user_id=UADMIN&response_url=x"
    assert connected.post(body, sign(body, secret="not-the-secret")).status_code == 401
    assert (
        connected.post(body, {"Content-Type": "application/x-www-form-urlencoded"}).status_code
        == 401
    )
    stale = sign(body, timestamp=int(time.time()) - 600)  # a captured request, replayed later
    assert connected.post(body, stale).status_code == 401
    assert connected.slack.responses == []


SECOND_TEAM, SECOND_KEY = (
    "22222222-3333-4444-5555-666666666666",
    "xai-mgmt-second-team-0f1e2d3c4b5a69788796",
)


def test_no_log_line_holds_a_body_a_token_or_a_key(connected: SlackApp) -> None:
    from bot.runtime import REDACTOR, RedactSecrets, WithholdBodies

    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(WithholdBodies())
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        view, url_id = open_modal(connected)
        connected.xai.add_key(SECOND_KEY, SECOND_TEAM)  # the demo team is connected already
        submit(
            connected,
            view,
            label="Second",
            team_id=SECOND_TEAM,
            management_key=SECOND_KEY,
            backfill_days="2",
        )
        connected.reply(url_id, 2, timeout=20)
        body = "command=%2Fxai-usage&text=month+secret-text&team_id=T0001&user_id=UADMIN"
        connected.post(body, sign(body, secret="forged"))  # Bolt logs the body of these
        _, url_id = connected.command("month")
        connected.reply(url_id)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert "DEBUG" in logged  # the capture really saw the debug logs
    for secret in (
        DEMO_KEY,
        SECOND_KEY,
        SIGNING_SECRET,
        "xoxb-1111-2222-testtokenvalue",
        "secret-text",
        "private_metadata",
        "response_url",
    ):
        assert secret not in logged, secret
    assert isinstance(REDACTOR, RedactSecrets)


def test_uninstalling_forgets_the_workspace(connected: SlackApp) -> None:
    response = connected.event({"type": "app_uninstalled"})
    assert response.status_code == 200
    connected.slack.wait_for(lambda: _workspaces(connected) == 0)
    with connected.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


def _workspaces(app: SlackApp) -> int:
    with app.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(Workspace))


def test_slack_rate_limits_are_waited_out(connected: SlackApp) -> None:
    connected.slack.rate_limit("users.info", times=1, retry_after=1)
    _, url_id = connected.command("month")
    assert "to date" in text_of(connected.reply(url_id, timeout=15))
    assert len(connected.slack.calls_to("users.info")) >= 2


def test_a_burst_of_syncs_is_acked_at_once_and_joined(connected: SlackApp) -> None:
    connected.xai.latency = 1.5  # each sync outlasts the burst, so later asks can join it
    started = time.perf_counter()
    sent = [connected.command("sync") for _ in range(8)]
    assert all(response.status_code == 200 for response, _ in sent)
    assert time.perf_counter() - started < 3  # no ack waited behind a running sync
    for _, url_id in sent:
        assert "rows" in text_of(connected.reply(url_id, 2, timeout=30))
    with connected.runtime.db.session() as session:
        runs = session.scalar(
            select(func.count()).select_from(SyncRun).where(SyncRun.trigger == "force")
        )
    assert runs < 8  # later asks joined the sync already running
    _, url_id = connected.command("help")
    assert "`today`" in text_of(connected.reply(url_id))


def test_answers_still_being_worked_out_keep_no_ack_waiting(
    connected: SlackApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More slow answers at once than Bolt has listener threads: every ack is still at once.

    Bolt acks a command only when a listener thread starts it; answers worked out on those
    threads once held the next requests' acks behind them (a `status` of 200 connections
    under a sync, asked again and again, missed the ack benchmark).
    """
    release = threading.Event()
    status = answers.status

    def slow(service, invocation):
        release.wait(20)
        return status(service, invocation)

    monkeypatch.setattr(answers, "status", slow)
    try:
        sent = []
        for _ in range(24):  # Bolt's listener pool has 16 threads
            began = time.perf_counter()
            answer, url_id = connected.command("status")
            sent.append((answer.status_code, time.perf_counter() - began, url_id))
        answer, help_url = connected.command("help")
    finally:
        release.set()
    assert [code for code, _, _ in sent] == [200] * 24 and answer.status_code == 200
    assert max(took for _, took, _ in sent) < 1.5  # Slack gives 3 s; none waited its turn
    assert "`today`" in text_of(connected.reply(help_url, timeout=30))
    for _, _, url_id in sent:  # and every answer came, once it could be worked out
        assert "Production — xAI" in text_of(connected.reply(url_id, timeout=30))


# -- one team, one connection -----------------------------------------------------


def total_stored(app: SlackApp) -> Decimal:
    with app.runtime.db.session() as session:
        return session.scalar(select(func.sum(DailyCost.cost)))


def test_connecting_a_connected_team_again_is_refused_on_the_field(connected: SlackApp) -> None:
    total = total_stored(connected)
    view, _ = open_modal(connected)
    body = submit(
        connected, view, label="", team_id=DEMO_TEAM_ID, management_key=DEMO_KEY, backfill_days="7"
    ).json()
    assert body["response_action"] == "errors" and list(body["errors"]) == ["team_id"]
    error = body["errors"]["team_id"]
    assert "already connected here as “Production — xAI”" in error
    assert '`/xai-usage update-key "Production — xAI"`' in error
    assert total_stored(connected) == total
    with connected.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 1


def test_connect_with_a_connected_team_id_is_refused_before_the_form(connected: SlackApp) -> None:
    _, url_id = connected.command(f"connect --team-id {DEMO_TEAM_ID.upper()}")
    text = text_of(connected.reply(url_id))
    assert "already connected here as “Production — xAI”" in text
    assert "/xai-usage update-key" in text
    assert connected.slack.calls_to("views.open") == []


def test_connect_options_fill_in_the_form(slack_app: SlackApp) -> None:
    slack_app.command(f'connect --team-id {DEMO_TEAM_ID} --label "Research lab" --days 14')
    slack_app.slack.wait_for(lambda: slack_app.slack.calls_to("views.open"))
    view = slack_app.slack.calls_to("views.open")[-1].params["view"]
    initial = {
        b["block_id"]: b["element"].get("initial_value")
        for b in view["blocks"]
        if b["type"] == "input"
    }
    assert initial == {
        "label": "Research lab",
        "team_id": DEMO_TEAM_ID,
        "management_key": None,
        "backfill_days": "14",
    }


NEW_KEY = "xai-mgmt-second-key-9a8b7c6d5e4f3a2b1c0dcafe"


def open_update_key(app: SlackApp, label: str = "Production — xAI") -> tuple[dict, str]:
    before = len(app.slack.calls_to("views.open"))
    _, url_id = app.command(f"update-key {label}")
    app.slack.wait_for(lambda: len(app.slack.calls_to("views.open")) > before)
    return app.slack.calls_to("views.open")[-1].params["view"], url_id


def test_a_revoked_key_is_replaced_from_slack_and_the_data_is_kept(connected: SlackApp) -> None:
    total = total_stored(connected)
    connected.xai.revoke_key(DEMO_KEY)
    _, url_id = connected.command("sync")
    assert ":x:" in text_of(connected.reply(url_id, 2))
    _, url_id = connected.command("status")
    status = text_of(connected.reply(url_id))
    assert "error" in status and "`/xai-usage update-key Production — xAI`" in status

    view, url_id = open_update_key(connected, "production — xai")
    assert view["callback_id"] == "update_key"
    assert [b["block_id"] for b in view["blocks"] if b["type"] == "input"] == ["management_key"]
    assert DEMO_TEAM_ID in text_of(view)

    connected.xai.add_key(NEW_KEY, "11111111-2222-3333-4444-555555555555")
    body = submit(connected, view, management_key=NEW_KEY).json()  # another team's key
    assert body["response_action"] == "errors" and list(body["errors"]) == ["management_key"]
    assert (
        f"reads {DEMO_TEAM_ID}, which a new key cannot change" in body["errors"]["management_key"]
    )
    body = submit(connected, view, management_key="xai-" + "0" * 30).json()  # unknown key
    assert list(body["errors"]) == ["management_key"]

    connected.xai.add_key(NEW_KEY, DEMO_TEAM_ID)
    response = submit(connected, view, management_key=NEW_KEY)
    assert response.status_code == 200 and response.text == ""  # the form closes
    done = text_of(connected.reply(url_id, timeout=20))
    assert "New key for *Production — xAI* (`xai-…cafe`)" in done and "Synced" in done
    with connected.runtime.db.session() as session:
        connection = session.scalar(select(Connection))
        assert (connection.status, connection.secret_mask) == ("ok", "xai-…cafe")
        assert session.scalar(select(func.count()).select_from(Connection)) == 1
        outcomes = list(session.scalars(select(SyncRun.outcome).order_by(SyncRun.id)))
    assert outcomes[-2:] == ["error", "ok"]  # the failure, then the sync after the new key
    assert total_stored(connected) >= total  # nothing lost (today may have grown)
    assert all(NEW_KEY not in json.dumps(r.payload) for r in connected.slack.responses)
    assert all(NEW_KEY not in json.dumps(c.params) for c in connected.slack.calls)


def test_update_key_is_for_admins_and_names_real_connections(connected: SlackApp) -> None:
    _, url_id = connected.command("update-key Production — xAI", user=MEMBER)
    assert "only workspace admins" in text_of(connected.reply(url_id))
    _, url_id = connected.command("update-key Staging")
    assert "Production — xAI" in text_of(connected.reply(url_id))
    assert connected.slack.calls_to("views.open") == []


# -- the final reply of long work: response URL while Slack takes it, else a DM -----


def dms(app: SlackApp, user: str = ADMIN) -> list[str]:
    return [
        c.params.get("text", "")
        for c in app.slack.calls_to("chat.postMessage")
        if c.params.get("channel") == user
    ]


def test_a_backfill_ending_after_30_minutes_is_reported_by_dm(slack_app: SlackApp) -> None:
    view, url_id = open_modal(slack_app)
    # The person took over half an hour to fill the form in.
    slack_app.slack.age_response_urls(31 * 60)
    slack_app.service.response_urls.clock = lambda: time.monotonic() + 31 * 60
    submit(slack_app, view, team_id=DEMO_TEAM_ID, management_key=DEMO_KEY, backfill_days="3")
    slack_app.slack.wait_for(lambda: any("Backfilled 3 days" in t for t in dms(slack_app)), 20)
    assert slack_app.replies(url_id) == []  # the expired URL was not tried


def test_a_refused_response_url_falls_back_to_a_dm(connected: SlackApp) -> None:
    connected.xai.latency = 1  # the sync outlasts the first reply
    _, url_id = connected.command("sync")
    assert "Syncing" in text_of(connected.reply(url_id))
    connected.slack.break_response_url(url_id)
    connected.xai.latency = 0
    connected.slack.wait_for(lambda: any("rows" in t for t in dms(connected)), timeout=20)
    assert len(connected.replies(url_id)) == 1


def test_a_response_url_is_used_five_times_then_dms_take_over(connected: SlackApp) -> None:
    from bot.slack.client import web_client
    from bot.slack.service import Invocation
    from tests.bot.slack.conftest import BOT_TOKEN

    service = connected.service
    url = connected.slack.response_url()
    invocation = Invocation(team_id=TEAM, user_id=ADMIN, response_url=url)
    client = web_client(service.settings, BOT_TOKEN)
    respond = service.responder(client, invocation)
    ways = [respond(text=f"step {n}") for n in range(1, 8)]
    assert ways == ["response_url"] * 5 + ["dm"] * 2
    assert [r["text"] for r in connected.replies(url.rsplit("/", 1)[1])] == [
        f"step {n}" for n in range(1, 6)
    ]
    assert dms(connected)[-2:] == ["step 6", "step 7"]


# -- nothing connected yet ---------------------------------------------------------

NOTHING_YET_NOISE = ("$0.00", "0 connections", "as of never", "not fetched", "Today is partial")


@pytest.mark.parametrize(
    "words",
    [
        "month",
        "today --by day",
        "week --by key",
        "range 2026-11-01 2026-11-30 --by day",
        "month --chart",
        "export month",
        "export week --format pdf",
    ],
)
def test_with_nothing_connected_an_answer_says_how_to_connect(slack_app: SlackApp, words) -> None:
    """Reports used to answer "$0.00 … 0 connections · as of never": the first thing to do
    is to connect an account, and that is what they say, with no figure and no file."""
    _, url_id = slack_app.command(words, user=MEMBER)
    text = text_of(slack_app.reply(url_id))
    assert "Nothing is connected yet" in text and "`/xai-usage connect`" in text
    for noise in NOTHING_YET_NOISE:
        assert noise not in text, (words, noise)
    time.sleep(0.3)  # a chart or file would be on its way by now
    assert slack_app.slack.calls_to("files.getUploadURLExternal") == []
