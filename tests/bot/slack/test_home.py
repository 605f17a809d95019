"""The App Home tab and direct messages, end to end: signed events in, the stand-in out.

Every view and message passes the stand-in's Block Kit checks (the
``slack_app`` fixture fails the test on any violation), ``views.publish``
included: at most 100 blocks and 250 kB of JSON.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.grammar import parse, tokenize
from bot.home import DashboardCache
from bot.scheduler import tick
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import Budget, DigestSubscription
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import (
    ADMIN,
    BOT_TOKEN,
    BOT_USER,
    GUEST,
    MEMBER,
    SIGNING_SECRET,
    TEAM,
    VISITOR,
    SlackApp,
)
from tests.fakes.connections import add_connection, connect_demo

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def open_home(app: SlackApp, user: str = ADMIN) -> dict:
    before = len(app.slack.calls_to("views.publish"))
    assert app.event({"type": "app_home_opened", "user": user, "tab": "home"}).status_code == 200
    app.slack.wait_for(lambda: len(app.slack.calls_to("views.publish")) > before, timeout=10)
    call = app.slack.calls_to("views.publish")[-1]
    assert call.params["user_id"] == user
    return call.params["view"]


def words(view: dict) -> str:
    """What a person reads on the tab, buttons included."""
    parts = []
    for block in view["blocks"]:
        for item in [block.get("text"), block.get("accessory"), *block.get("elements", [])]:
            if isinstance(item, dict):
                text = item.get("text")
                parts.append(text.get("text", "") if isinstance(text, dict) else text or "")
    return "\n".join(parts)


def buttons(view: dict) -> dict[str, str]:
    """Every button on the tab: its label and the command it carries."""
    found = {}
    for block in view["blocks"]:
        for item in [block.get("accessory"), *block.get("elements", [])]:
            if isinstance(item, dict) and item.get("type") == "button":
                assert item["action_id"].startswith("xu:")
                assert len(item["value"]) <= 2000
                found[item["action_id"]] = item["value"]
    return found


def dm(app: SlackApp, text: str, user: str = ADMIN, **extra) -> None:
    event = {
        "type": "message",
        "channel_type": "im",
        "channel": "D" + user[1:],
        "user": user,
        "text": text,
        "ts": f"{time.time():.6f}",
        **extra,
    }
    assert app.event(event).status_code == 200


def posts_to(app: SlackApp, channel: str) -> list[dict]:
    return [
        c.params for c in app.slack.calls_to("chat.postMessage") if c.params["channel"] == channel
    ]


# -- the Home tab ---------------------------------------------------------------------


def test_admins_see_the_dashboard_and_buttons_that_are_commands(connected: SlackApp) -> None:
    view = open_home(connected)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    seen = words(view)
    for figure in ("Month to date", "Month-end forecast", "Last 30 days", "Top models"):
        assert figure in seen
    assert "Top movers" in seen and "Prepaid credit left" in seen
    assert "xAI spending limit" in seen and "invoice so far" in seen  # reconciliation
    assert "Production — xAI" in seen and "Last successful sync" in seen
    commands = buttons(view)
    # Each once: from the checklist while it is a step to take, else from the Manage row.
    for command in ("connect", "digest add", "budget set", "alerts"):
        assert list(commands.values()).count(command) == 1, command
    assert 'update-key "Production — xAI"' in commands.values()
    for value in commands.values():
        parse(tokenize(value), surface="slack")  # the grammar reads it as the typed command


def test_slack_gets_its_ack_before_the_tab_is_built(connected: SlackApp) -> None:
    """Bolt acks first, and the build runs on the service's pool: either alone keeps
    Slack from waiting (a FaaS deployment processing before the response keeps the pool)."""
    order: list[str] = []
    released = threading.Event()

    def slow_lookup(call) -> None:  # the publish starts by looking the person up
        released.wait(5)
        order.append("looked up")

    connected.slack.after("users.info", slow_lookup)
    answer = connected.event({"type": "app_home_opened", "user": ADMIN, "tab": "home"})
    order.append(f"acked {answer.status_code}")
    released.set()
    connected.slack.wait_for(lambda: connected.slack.calls_to("views.publish"), timeout=10)
    connected.slack.after("users.info", None)
    assert order == ["acked 200", "looked up"]


def test_members_see_the_figures_without_management_buttons(connected: SlackApp) -> None:
    view = open_home(connected, MEMBER)
    assert "Month to date" in words(view) and "Production — xAI" in words(view)
    assert buttons(view) == {}
    assert "Manage" not in words(view)


def test_guests_and_visitors_are_told_why_they_see_nothing(connected: SlackApp) -> None:
    guest = words(open_home(connected, GUEST))
    assert "guests can't see" in guest and "$" not in guest
    visitor = words(open_home(connected, VISITOR))
    assert "another one" in visitor and "$" not in visitor


def test_the_messages_tab_opening_publishes_nothing(connected: SlackApp) -> None:
    connected.event({"type": "app_home_opened", "user": ADMIN, "tab": "messages"})
    open_home(connected)  # the home one after it is the only publish
    assert len(connected.slack.calls_to("views.publish")) == 1


def test_a_new_workspace_gets_a_checklist_that_ticks_as_things_are_set_up(
    slack_app: SlackApp,
) -> None:
    view = open_home(slack_app)
    seen = words(view)
    assert "0 of 3 done" in seen
    assert ":white_large_square: Connect a provider's account" in seen
    assert ":white_large_square: Choose where alerts go" in seen
    assert ":white_large_square: Add a digest" in seen
    steps = {k: v for k, v in buttons(view).items() if k.startswith("xu:start-")}
    assert sorted(steps.values()) == ["alerts", "connect", "digest add"]
    assert "Connections" not in seen  # no figures before anything is connected

    _, url = slack_app.command("alerts <#CCOSTS|costs>")
    slack_app.reply(url)  # said once the route is saved (the channel's test post comes first)
    seen = words(open_home(slack_app))  # within the 5 minutes: the change shows anyway
    assert "1 of 3 done" in seen
    assert ":white_check_mark: ~Choose where alerts go~" in seen
    assert ":white_large_square: Add a digest" in seen
    assert "Alerts go to <#CCOSTS>" in seen


def test_members_get_the_checklist_without_its_buttons(slack_app: SlackApp) -> None:
    view = open_home(slack_app, MEMBER)
    assert "0 of 3 done" in words(view) and buttons(view) == {}


def test_a_dashboard_is_reused_until_a_sync_finishes(connected: SlackApp) -> None:
    first = open_home(connected)
    second = open_home(connected, MEMBER)
    assert connected.service.dashboards.builds == 1
    assert words(first).replace("Manage", "") != words(second)  # same figures, rendered per person
    _, url = connected.command("sync")
    connected.reply(url, 2, timeout=20)  # "Syncing…", then the outcome
    open_home(connected)
    assert connected.service.dashboards.builds == 2


def test_fifty_connections_and_many_digests_fit_slacks_limits(connected: SlackApp) -> None:
    with connected.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        ids = [add_connection(session, workspace_id, f"Team {n:02}").id for n in range(50)]
        for n in range(15):
            session.add(DigestSubscription(workspace_id=workspace_id, channel_id="CCOSTS"))
            session.add(
                Budget(workspace_id=workspace_id, connection_id=ids[n], amount_usd=Decimal(100))
            )
    view = open_home(connected)
    assert len(view["blocks"]) <= 100
    seen = words(view)
    assert "and 21 more: `/xai-usage status` lists every connection, 40 a page." in seen
    assert "and 5 more: `/xai-usage digest list`" in seen
    assert "and 5 more: `/xai-usage budget list`" in seen
    assert "digest remove 1" in buttons(view).values()
    assert "budget remove 1" in buttons(view).values()


def test_the_cache_reuses_a_fresh_dashboard_and_rebuilds_a_stale_or_forgotten_one() -> None:
    now = [0.0]
    cache = DashboardCache(fresh_for=300, clock=lambda: now[0])
    stamp = ["a"]
    built = []

    def get():
        return cache.get(1, lambda: (stamp[0],), lambda: built.append(1) or len(built))

    assert get() == 1 and get() == 1  # reused
    now[0] = 299
    assert get() == 1
    now[0] = 301
    assert get() == 2  # older than 5 minutes
    stamp[0] = "b"
    assert get() == 3  # a sync or a setup change elsewhere
    cache.forget(1)
    assert get() == 4
    assert cache.builds == 4


# -- direct messages ---------------------------------------------------------------------


def test_a_direct_message_is_answered_like_the_slash_command(connected: SlackApp) -> None:
    dm(connected, "today --by model")
    connected.slack.wait_for(lambda: posts_to(connected, "DADMIN"), timeout=10)
    [answer] = posts_to(connected, "DADMIN")
    assert answer["text"].startswith("Today")
    assert connected.slack.responses == []  # no response URL: the answer is the DM itself


def test_the_slash_typed_into_a_dm_is_forgiven(connected: SlackApp) -> None:
    dm(connected, "/xai-usage help")
    connected.slack.wait_for(lambda: posts_to(connected, "DADMIN"), timeout=10)
    assert "Commands" in posts_to(connected, "DADMIN")[0]["text"]


def test_bots_edits_and_other_conversations_are_not_answered(connected: SlackApp) -> None:
    dm(connected, "today", user=BOT_USER, bot_id="B0001")  # the app's own reply, or a bot
    dm(connected, "today", subtype="message_changed")
    dm(connected, "today", channel_type="channel", channel="CCOSTS")
    dm(connected, "help")  # the one to answer, sent last
    connected.slack.wait_for(lambda: posts_to(connected, "DADMIN"), timeout=10)
    time.sleep(0.3)  # the ignored ones had their chance too
    posted = connected.slack.calls_to("chat.postMessage")
    assert [p.params["channel"] for p in posted] == ["DADMIN"]


def test_a_visitor_or_guest_dm_gets_the_slash_commands_refusal(connected: SlackApp) -> None:
    dm(connected, "month", user=VISITOR)
    dm(connected, "month", user=GUEST)
    connected.slack.wait_for(
        lambda: posts_to(connected, "DVISITOR") and posts_to(connected, "DGUEST")
    )
    assert "another one" in posts_to(connected, "DVISITOR")[0]["text"]
    assert "guests can't see" in posts_to(connected, "DGUEST")[0]["text"]


def test_a_form_asked_for_by_dm_comes_as_a_button_that_opens_it(connected: SlackApp) -> None:
    dm(connected, 'update-key "Production — xAI"')
    connected.slack.wait_for(lambda: posts_to(connected, "DADMIN"), timeout=10)
    [block] = posts_to(connected, "DADMIN")[0]["blocks"]
    assert block["accessory"]["action_id"].startswith("xu:")
    assert block["accessory"]["value"] == 'update-key "Production — xAI"'
    dm(connected, "digest add")  # bare: the digest form (with a channel it is added at once)
    connected.slack.wait_for(lambda: len(posts_to(connected, "DADMIN")) == 2, timeout=10)
    assert posts_to(connected, "DADMIN")[1]["blocks"][0]["accessory"]["value"] == "digest add"
    dm(connected, "connect", user=MEMBER)
    connected.slack.wait_for(lambda: posts_to(connected, "DMEMBER"), timeout=10)
    assert "only workspace admins" in posts_to(connected, "DMEMBER")[0]["text"]
    assert connected.slack.calls_to("views.open") == []


# -- the buttons, clicked ---------------------------------------------------------------


def test_each_home_button_clicked_opens_its_form(connected: SlackApp) -> None:
    from tests.bot.slack.test_clicks import click

    commands = buttons(open_home(connected))
    clicks = {command: action_id for action_id, command in commands.items()}
    expected = {
        clicks["connect"]: "connect",
        clicks["digest add"]: "digest",
        clicks["budget set"]: "budget",
        clicks["alerts"]: "alerts",
        "xu:update-key-1": "update_key",
    }
    for action_id, form in expected.items():
        before = len(connected.slack.calls_to("views.open"))
        click(connected, action_id, commands[action_id], home=True)
        connected.slack.wait_for(
            lambda before=before: len(connected.slack.calls_to("views.open")) > before, timeout=10
        )
        view = connected.slack.calls_to("views.open")[-1].params["view"]
        assert form in view["callback_id"]


def test_a_member_clicking_an_admin_button_gets_the_refusal_by_dm(connected: SlackApp) -> None:
    from tests.bot.slack.test_clicks import click

    commands = buttons(open_home(connected))
    click(connected, "xu:update-key-1", commands["xu:update-key-1"], MEMBER, home=True)
    connected.slack.wait_for(lambda: posts_to(connected, MEMBER), timeout=10)
    assert "only workspace admins" in posts_to(connected, MEMBER)[0]["text"]
    assert connected.slack.calls_to("views.open") == []


def test_remove_on_home_removes_and_the_tab_shows_it(connected: SlackApp) -> None:
    from tests.bot.slack.test_clicks import click

    _, url = connected.command("budget set 800")
    connected.reply(url)
    commands = buttons(open_home(connected))
    [remove] = [k for k, v in commands.items() if v.startswith("budget remove")]
    click(connected, remove, commands[remove], home=True)
    connected.slack.wait_for(lambda: posts_to(connected, ADMIN), timeout=10)
    assert "Removed" in posts_to(connected, ADMIN)[0]["text"]
    assert "budget remove" not in " ".join(buttons(open_home(connected)).values())


# -- an open tab kept live ---------------------------------------------------------------


def publishes_to(app: SlackApp, user: str) -> list[dict]:
    return [
        c.params["view"] for c in app.slack.calls_to("views.publish") if c.params["user_id"] == user
    ]


def backfilled_one_day(app: SlackApp) -> SlackApp:
    """The demo team with only today fetched: the tab shows 29 days not fetched until a sync."""
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connect_demo(app.runtime.engine, workspace_id, 1, label="Production — xAI")
    return app


def synced(app: SlackApp, text: str = "sync --days 30") -> str:
    """Run a sync from the slash command; its outcome, once posted."""
    answer, url = app.command(text)
    assert answer.status_code == 200
    return app.reply(url, 2, timeout=20)["text"]


def test_a_sync_re_publishes_the_open_tab_in_place_for_whoever_looked(slack_app: SlackApp) -> None:
    app = backfilled_one_day(slack_app)
    before = {user: open_home(app, user) for user in (ADMIN, MEMBER, GUEST)}
    assert "29 days not fetched" in words(before[ADMIN])

    assert ":white_check_mark:" in synced(app)
    app.slack.wait_for(lambda: all(len(publishes_to(app, u)) == 2 for u in before), timeout=10)
    admin, member, guest = (publishes_to(app, user)[-1] for user in (ADMIN, MEMBER, GUEST))
    assert "not fetched" not in words(admin) and "Month to date" in words(admin)
    assert buttons(admin) and buttons(admin) == buttons(before[ADMIN])
    assert "not fetched" not in words(member) and "Month to date" in words(member)
    assert buttons(member) == {}  # each as their role allows
    assert "guests can't see" in words(guest) and "$" not in words(guest)
    assert publishes_to(app, VISITOR) == []  # never opened it: nothing sent


def test_a_burst_of_syncs_publishes_once(connected: SlackApp) -> None:
    open_home(connected)
    urls = []
    for _ in range(10):
        answer, url = connected.command("sync")
        assert answer.status_code == 200
        urls.append(url)
    for url in urls:
        connected.reply(url, 2, timeout=30)
    connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 2, timeout=10)
    assert connected.service.live_home.settled(timeout=10)  # no second round due or under way
    assert len(publishes_to(connected, ADMIN)) == 2
    assert connected.service.live_home.rounds == 1


def test_a_setup_change_shows_at_once_and_a_listing_publishes_nothing(connected: SlackApp) -> None:
    open_home(connected)
    _, url = connected.command("digest list")
    connected.reply(url)
    _, url = connected.command("budget set 800")
    connected.reply(url)
    connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 2, timeout=10)
    assert "budget remove" in " ".join(buttons(publishes_to(connected, ADMIN)[-1]).values())
    assert connected.service.live_home.settled(timeout=10)
    assert len(publishes_to(connected, ADMIN)) == 2  # the listing changed nothing


def test_the_daily_sync_re_publishes_open_tabs(connected: SlackApp) -> None:
    open_home(connected, MEMBER)
    tick(connected.runtime, None, "00:00", after=connected.service.check_homes)  # serve's minute
    connected.slack.wait_for(lambda: len(publishes_to(connected, MEMBER)) == 2, timeout=10)
    assert buttons(publishes_to(connected, MEMBER)[-1]) == {}


def test_a_short_rate_limit_is_waited_out_and_the_sync_is_not_held(connected: SlackApp) -> None:
    open_home(connected)
    connected.slack.rate_limit("views.publish", retry_after=1)
    assert ":white_check_mark:" in synced(connected, "sync")
    connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 3, timeout=15)
    refused, retried = connected.slack.calls_to("views.publish")[-2:]
    assert retried.at - refused.at >= 1  # Slack's Retry-After, honoured
    assert "Month to date" in words(retried.params["view"])


def test_slack_refusing_a_re_publish_is_logged_without_secrets_and_fails_nothing(
    connected: SlackApp, caplog
) -> None:
    open_home(connected)
    connected.slack.rate_limit("views.publish", retry_after=120)  # too long to wait: dropped
    with caplog.at_level("INFO"):
        assert ":white_check_mark:" in synced(connected, "sync")
        connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 2, timeout=10)
        connected.slack.fail("views.publish", "not_authed")
        assert ":white_check_mark:" in synced(connected, "sync")
        connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 3, timeout=10)
        assert ":white_check_mark:" in synced(connected, "sync")  # the token is forgotten...
        assert connected.service.live_home.settled(timeout=10)
    assert len(publishes_to(connected, ADMIN)) == 3  # ...so nothing more is tried
    logged = caplog.text
    assert "Slack said ratelimited" in logged and "Slack said not_authed" in logged
    assert BOT_TOKEN not in logged and SIGNING_SECRET not in logged
    open_home(connected)  # opening again brings the token back


def test_only_recent_openers_are_kept_and_at_most_the_newest_few(connected: SlackApp) -> None:
    live = connected.service.live_home
    live.most = 2  # 50 people, shrunk to fit a test
    later = [timedelta(0)]
    live.clock = lambda: datetime.now(UTC) + later[0]
    open_home(connected, MEMBER)
    later[0] = live.recent_for + timedelta(seconds=1)  # MEMBER's open is now too old
    for user in (VISITOR, GUEST, ADMIN):  # VISITOR is then the oldest of three: dropped
        open_home(connected, user)
    synced(connected, "sync")
    connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 2, timeout=10)
    connected.slack.wait_for(lambda: len(publishes_to(connected, GUEST)) == 2, timeout=10)
    assert live.settled(timeout=10)
    assert len(publishes_to(connected, MEMBER)) == 1 and len(publishes_to(connected, VISITOR)) == 1


def test_sync_now_and_a_confirmed_disconnect_show_on_the_open_tab(connected: SlackApp) -> None:
    from tests.bot.slack.test_clicks import click

    open_home(connected, MEMBER)
    clicked = click(connected, "xu:sync", "sync")  # status's "Sync now", clicked by an admin
    connected.reply(clicked, 2, timeout=20)
    connected.slack.wait_for(lambda: len(publishes_to(connected, MEMBER)) == 2, timeout=10)

    _, url = connected.command("disconnect Production — xAI")
    uid = connected.reply(url)["blocks"][1]["elements"][0]["value"]
    click(connected, "disconnect_confirm", uid)
    connected.slack.wait_for(lambda: len(publishes_to(connected, MEMBER)) == 3, timeout=10)
    assert "Production — xAI" in words(publishes_to(connected, MEMBER)[1])
    assert "Production — xAI" not in words(publishes_to(connected, MEMBER)[2])


def test_connecting_from_the_form_ticks_the_open_checklist(slack_app: SlackApp) -> None:
    from tests.bot.slack.test_slack_app import open_modal, submit

    assert "0 of 3 done" in words(open_home(slack_app))
    view, url = open_modal(slack_app)
    submit(slack_app, view, team_id=DEMO_TEAM_ID, management_key=DEMO_KEY, backfill_days="7")
    assert "Connected" in slack_app.reply(url, 2, timeout=20)["text"]
    slack_app.slack.wait_for(lambda: len(publishes_to(slack_app, ADMIN)) == 2, timeout=10)
    seen = words(publishes_to(slack_app, ADMIN)[-1])
    assert "1 of 3 done" in seen and "Connections" in seen and "Month to date" in seen


def test_a_new_key_clears_the_error_on_the_open_tab(connected: SlackApp) -> None:
    from tests.bot.slack.test_slack_app import NEW_KEY, open_update_key, submit

    connected.xai.revoke_key(DEMO_KEY)
    assert ":x:" in synced(connected, "sync")
    assert ":x: error" in words(open_home(connected))  # opened after the failed sync
    view, url = open_update_key(connected)
    connected.xai.add_key(NEW_KEY, DEMO_TEAM_ID)
    assert submit(connected, view, management_key=NEW_KEY).status_code == 200
    assert "New key" in connected.reply(url, timeout=20)["text"]
    connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 2, timeout=10)
    seen = words(publishes_to(connected, ADMIN)[-1])
    assert ":x: error" not in seen and ":white_check_mark: ok" in seen


def test_a_re_publish_stuck_on_slack_holds_up_no_command_and_no_sync(connected: SlackApp) -> None:
    open_home(connected)
    stuck, release = threading.Event(), threading.Event()

    def hang(call) -> None:  # Slack taking its time over the round's views.publish
        stuck.set()
        release.wait(30)

    connected.slack.after("views.publish", hang)
    try:
        synced(connected, "sync")
        assert stuck.wait(10)
        asked = time.monotonic()
        answer, url = connected.command("sync")
        assert answer.status_code == 200 and time.monotonic() - asked < 3  # Slack's 3 s
        assert ":white_check_mark:" in connected.reply(url, 2, timeout=10)["text"]  # not held
    finally:
        release.set()
        connected.slack.after("views.publish", None)
    connected.slack.wait_for(lambda: len(publishes_to(connected, ADMIN)) == 3, timeout=10)


def test_someone_slack_no_longer_knows_is_skipped_and_forgotten(
    connected: SlackApp, caplog
) -> None:
    open_home(connected, MEMBER)
    open_home(connected, ADMIN)  # the latest opener goes first
    connected.slack.fail("views.publish", "user_not_found")
    with caplog.at_level("INFO"):
        assert ":white_check_mark:" in synced(connected, "sync")
        connected.slack.wait_for(lambda: len(publishes_to(connected, MEMBER)) == 2, timeout=10)
    assert f"Home tab not re-published for {ADMIN}: user_not_found" in caplog.text
    assert ":white_check_mark:" in synced(connected, "sync")
    connected.slack.wait_for(lambda: len(publishes_to(connected, MEMBER)) == 3, timeout=10)
    assert len(publishes_to(connected, ADMIN)) == 2  # the open and the refused one: no more


def test_a_rate_limit_storm_on_home_holds_up_no_export(connected: SlackApp) -> None:
    """Slack answering every views.publish with a 429 and Retry-After 20: the tabs wait
    on their own pool, the team's others wait for the Retry-After instead of asking
    again, and an export typed meanwhile is in the asker's DM at once."""
    from tests.bot.slack.test_files import shared_files

    connected.slack.rate_limit("views.publish", times=1000, retry_after=20)
    for user in (ADMIN, MEMBER, GUEST, VISITOR, BOT_USER, ADMIN, MEMBER):  # some open twice
        answer = connected.event({"type": "app_home_opened", "user": user, "tab": "home"})
        assert answer.status_code == 200
    connected.slack.wait_for(lambda: connected.slack.calls_to("views.publish"), timeout=10)
    asked = time.monotonic()
    answer, url = connected.command("export week")
    assert answer.status_code == 200
    connected.reply(url)
    [export] = shared_files(connected)
    assert time.monotonic() - asked < 3  # not after the storm (it took 101 s)
    assert export.filename.endswith(".csv")
    time.sleep(0.3)  # the team's other tabs had their chance to ask again: they wait instead
    assert len(connected.slack.calls_to("views.publish")) == 1


def test_a_burst_of_opens_looks_the_person_up_once(connected: SlackApp) -> None:
    connected.slack.after("views.publish", lambda call: time.sleep(0.2))  # Slack taking a while
    try:
        for _ in range(5):
            connected.event({"type": "app_home_opened", "user": MEMBER, "tab": "home"})
        connected.slack.wait_for(lambda: publishes_to(connected, MEMBER), timeout=10)
        assert connected.service.live_home.settled(timeout=10)
    finally:
        connected.slack.after("views.publish", None)
    # the first open's tab, and one more for the four that came while it was being sent
    assert len(publishes_to(connected, MEMBER)) == 2
    assert len(connected.slack.calls_to("users.info")) == 1


@pytest.mark.every_store
def test_two_replicas_share_their_viewers_and_each_round_publishes_once(
    connected: SlackApp,
) -> None:
    """Behind a load balancer: people open Home through either replica, a change made
    through either reaches everyone's tab, once, published by one of them."""
    from tests.bot.slack.conftest import served_app

    env = connected.runtime.settings.environ
    with served_app(dict(env), connected.slack, connected.xai) as other:
        open_home(connected, ADMIN)
        open_home(other, MEMBER)
        synced(connected, "sync")  # through the first replica
        connected.slack.wait_for(
            lambda: (
                len(publishes_to(connected, ADMIN)) == 2
                and len(publishes_to(connected, MEMBER)) == 2
            ),
            timeout=10,
        )
        _, url = other.command("budget set 800")  # through the second
        other.reply(url)
        connected.slack.wait_for(
            lambda: (
                len(publishes_to(connected, ADMIN)) == 3
                and len(publishes_to(connected, MEMBER)) == 3
            ),
            timeout=10,
        )
        assert connected.service.live_home.settled(timeout=10)
        assert other.service.live_home.settled(timeout=10)
        assert len(publishes_to(connected, ADMIN)) == 3  # once a round, not once a replica
        assert len(publishes_to(connected, MEMBER)) == 3
        assert "budget remove" in " ".join(buttons(publishes_to(connected, ADMIN)[-1]).values())
        assert connected.service.live_home.rounds + other.service.live_home.rounds == 2


def test_a_database_outage_shows_on_the_tab_it_opens(connected: SlackApp, keyring) -> None:
    from bot.slack.service import STORE_UNAVAILABLE
    from storage.db import Database

    connected.runtime.__dict__["db"] = Database("postgresql://nobody@127.0.0.1:1/none", keyring)
    connected.service._workspaces.clear()  # nothing answered from memory
    assert STORE_UNAVAILABLE in words(open_home(connected))


def test_the_trend_is_also_a_line_of_its_weeks_drawn_by_slack(connected: SlackApp):
    view = open_home(connected)
    [chart] = [b for b in view["blocks"] if b["type"] == "data_visualization"]
    line = chart["chart"]
    assert line["type"] == "line" and chart["title"].startswith("Spend by week, ")
    weeks = line["axis_config"]["categories"]
    assert 4 <= len(weeks) <= 5 and all(len(w) <= 20 for w in weeks)
    assert "(part)" not in weeks[0] and "–" in weeks[0]  # the cut first week is left out
    # The points are the weeks table's figures, in order.
    table = next(b["text"]["text"] for b in view["blocks"] if "```" in str(b.get("text")))
    amounts = [
        Decimal(line.split("$")[-1].rstrip("*").split(" ")[0].replace(",", ""))
        for line in table.split("```")[1].splitlines()
        if "$" in line
    ]
    points = [Decimal(str(p["value"])) for p in line["series"][0]["data"]]
    assert [round(a, 2) for a in amounts][-len(points) :] == points


def test_a_home_tab_refusing_charts_is_published_without_one_once_and_then_straight(
    connected: SlackApp,
):
    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)
    open_home(connected)
    connected.slack.wait_for(lambda: len(connected.slack.calls_to("views.publish")) == 2)
    view = connected.slack.calls_to("views.publish")[-1].params["view"]
    outcomes = [o for _, o in connected.slack.outcomes("views.publish")]
    assert outcomes == ["invalid_arguments", "ok"]  # once more, without the chart
    assert not [b for b in view["blocks"] if b["type"] == "data_visualization"]
    assert "Last 30 days" in words(view)  # the sparkline and the weeks stay
    open_home(connected, user=MEMBER)
    outcomes = [o for _, o in connected.slack.outcomes("views.publish")]
    assert outcomes[:3] == ["invalid_arguments", "ok", "ok"]  # known: straight without it
    assert "invalid_arguments" not in outcomes[1:]


def all_buttons(view: dict) -> list[dict]:
    return [
        item
        for block in view["blocks"]
        for item in [block.get("accessory"), *block.get("elements", [])]
        if isinstance(item, dict) and item.get("type") == "button"
    ]


def test_an_empty_home_offers_each_step_once_and_one_primary_action(slack_app: SlackApp) -> None:
    """Connect appeared twice (the checklist's and the Manage row's) and all three steps
    were primary: one thing is asked first."""
    view = open_home(slack_app)
    offered = [b["value"] for b in all_buttons(view)]
    assert len(offered) == len(set(offered)), offered
    assert [b["value"] for b in all_buttons(view) if b.get("style") == "primary"] == ["connect"]
    assert "budget set" in offered  # what the checklist does not ask is still at hand
    assert "$" not in words(view)  # no figure before anything is connected


def test_a_first_budgets_channel_ticks_where_alerts_go_as_the_tab_says(connected: SlackApp):
    """The checklist kept "Choose where alerts go" open while the tab said "Alerts go to
    <#CCOSTS>": a budget's or digest's channel is where alerts go until a route says
    otherwise, and the tick and the sentence come from one place."""
    _, url = connected.command("budget set 500")  # typed in #costs: it alerts there
    connected.reply(url)
    seen = words(open_home(connected))
    assert "Alerts go to <#CCOSTS>, where the first budget or digest was set." in seen
    assert ":white_check_mark: ~Choose where alerts go~" in seen
    # A primary button is for the next step only, not for one done.
    view = open_home(connected)
    assert [b["value"] for b in all_buttons(view) if b.get("style") == "primary"] == ["digest add"]
