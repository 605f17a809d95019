"""Lists in Slack: every item reachable a page at a time, and Remove that asks first.

`digest list` stopped at 40 with nothing said, so digests 41–80 could be neither
seen nor removed from Slack. Each list now shows a page, says how many more there
are and the command (and button) that shows the next; each digest and budget
listed carries a Remove button that asks for confirmation, whose answer names
what it removed, and a second click says it is gone already.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from bot.grammar import parse, tokenize
from storage.models import AlertRoute, Budget, DigestSubscription
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, TEAM, SlackApp, text_of
from tests.bot.slack.test_clicks import click
from tests.bot.slack.test_home import buttons, open_home, posts_to
from tests.fakes.connections import add_connection

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def workspace(app: SlackApp) -> int:
    with app.runtime.db.transaction() as session:
        return workspace_for_slack_team(session, TEAM, "acme").id


def add_digests(app: SlackApp, count: int) -> None:
    """``count`` digests in #costs, each at its own minute (none repeats another)."""
    workspace_id = workspace(app)
    with app.runtime.db.transaction() as session:
        for n in range(count):
            at = f"{n // 60:02}:{n % 60:02}"
            session.add(
                DigestSubscription(
                    workspace_id=workspace_id,
                    channel_id="CCOSTS",
                    at_time=at,
                    schedule_key=f"CCOSTS|{at}|UTC|day|all|-|-|",
                )
            )


def listed(message: dict) -> list[str]:
    """The numbers of the items a list message shows, in order."""
    return [
        b["accessory"]["value"].split(" ")[2]
        for b in message["blocks"]
        if b.get("accessory", {}).get("value", "").split(" ")[1:2] == ["remove"]
    ]


def page_buttons(message: dict) -> dict[str, str]:
    return {
        e["text"]["text"]: e["value"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    }


def test_digest_list_shows_a_page_and_the_way_to_every_other(connected: SlackApp):
    add_digests(connected, 45)
    _, url_id = connected.command("digest list")
    first = connected.reply(url_id)
    assert listed(first) == [str(n) for n in range(1, 21)]
    assert "and 25 more: `/xai-usage digest list --page 2`" in text_of(first)
    assert page_buttons(first) == {"Next page": "digest list --page 2"}

    clicked = click(connected, "xu:view:page-next", "digest list --page 2")
    second = connected.reply(clicked)
    assert second["replace_original"] is True  # the list turns its page in place
    assert listed(second) == [str(n) for n in range(21, 41)]
    assert "and 5 more: `/xai-usage digest list --page 3`" in text_of(second)
    assert page_buttons(second) == {
        "Previous page": "digest list",
        "Next page": "digest list --page 3",
    }

    _, url_id = connected.command("digest list --page 3")
    last = connected.reply(url_id)
    assert listed(last) == ["41", "42", "43", "44", "45"]  # 41–80 were out of reach before
    assert " more" not in text_of(last)
    assert page_buttons(last) == {"Previous page": "digest list --page 2"}

    _, url_id = connected.command("digest list --page 4")
    assert "There are 45 digests, 20 a page: `/xai-usage digest list --page 3` is the last." in (
        text_of(connected.reply(url_id))
    )


def test_a_page_typed_as_a_bare_number_says_how_to_ask_for_it(connected: SlackApp):
    _, url_id = connected.command("digest list 2")
    assert "`/xai-usage digest list --page 2`" in text_of(connected.reply(url_id))


def test_budget_and_alert_lists_and_status_page_too(connected: SlackApp):
    workspace_id = workspace(connected)
    with connected.runtime.db.transaction() as session:
        for n in range(45):
            team = add_connection(session, workspace_id, f"Team {n:02}")
            session.add(
                Budget(workspace_id=workspace_id, connection_id=team.id, amount_usd=Decimal(100))
            )
            session.add(
                AlertRoute(
                    workspace_id=workspace_id,
                    connection_id=team.id,
                    connection_key=team.id,
                    channel_id="CCOSTS",
                    uid=f"route{n}",
                )
            )
    _, url_id = connected.command("budget list --page 3")
    budgets = connected.reply(url_id)
    assert len(listed(budgets)) == 5 and "Team 44" in text_of(budgets)

    _, url_id = connected.command("alerts list")
    routes = text_of(connected.reply(url_id))
    assert "“Team 19”" in routes and "“Team 20”" not in routes
    assert "and 25 more: `/xai-usage alerts list --page 2`" in routes
    _, url_id = connected.command("alerts list --page 3")
    assert "“Team 44”" in text_of(connected.reply(url_id))

    # 46 connections: the demo team and these 45, 40 a page
    _, url_id = connected.command("status")
    status = connected.reply(url_id)
    assert "and 6 more: `/xai-usage status --page 2`" in text_of(status)
    assert page_buttons(status)["Next page"] == "status --page 2"
    _, url_id = connected.command("status --page 2")
    second = text_of({"blocks": connected.reply(url_id)["blocks"]})  # the fallback counts all
    assert "Team 44" in second and "Team 00" not in second


def test_the_terminal_lists_every_digest(connected: SlackApp):
    """A terminal has no message limits: `digest list` there shows them all, no pages."""
    from bot.setup import TERMINAL, Setup

    add_digests(connected, 45)
    setup = Setup(connected.runtime.db, workspace(connected), "terminal:ops", TERMINAL)
    lines = setup.run(parse(["digest", "list"]), here=None, default_tz=str, announce=print)
    assert len(lines.splitlines()) == 45


def test_the_home_tab_says_where_the_rest_of_each_list_is(connected: SlackApp):
    add_digests(connected, 25)
    seen = text_of({"blocks": open_home(connected)["blocks"]})
    assert "and 15 more: `/xai-usage digest list` lists them all, 20 a page." in seen


# -- Remove ---------------------------------------------------------------------------


def remove_button(message: dict, number: str) -> dict:
    [button] = [
        b["accessory"]
        for b in message["blocks"]
        if f"remove {number}" in b.get("accessory", {}).get("value", "")
        and b["accessory"]["value"].split(" ")[2] == number
    ]
    return button


def test_remove_on_a_list_page_updates_that_page_in_place(connected: SlackApp):
    add_digests(connected, 41)  # 20 a page: three pages, the last with one digest
    _, url_id = connected.command("digest list --page 2")
    page = connected.reply(url_id)
    assert listed(page) == [str(n) for n in range(21, 41)]
    button = remove_button(page, "23")
    updated = connected.reply(click(connected, button["action_id"], button["value"]))
    assert updated["replace_original"] is True  # the page itself, not a new message
    assert text_of(updated).startswith(":white_check_mark: Removed digest 23: <#CCOSTS>")
    assert listed(updated) == [str(n) for n in range(21, 42) if n != 23]
    assert "page 2 of 2, 40 in all" in text_of(updated)

    _, url_id = connected.command("digest list --page 2")
    last = connected.reply(url_id)
    for number in ("21", "22"):  # the page's last digests: the page before it is shown
        button = remove_button(last, number)
        last = connected.reply(click(connected, button["action_id"], button["value"]))
    assert listed(last)[-1] == "41" and "page 2 of 2, 38 in all" in text_of(last)
    for number in listed(last):
        button = remove_button(last, number)
        last = connected.reply(click(connected, button["action_id"], button["value"]))
    assert listed(last) == [str(n) for n in range(1, 21)] and "page" not in text_of(last)
    assert text_of(last).startswith(":white_check_mark: Removed digest 41")

    _, url_id = connected.command("digest list")
    first = connected.reply(url_id)
    for number in listed(first):
        button = remove_button(first, number)
        first = connected.reply(click(connected, button["action_id"], button["value"]))
    assert listed(first) == [] and "No digests" in text_of(first)


def test_remove_asks_first_says_what_it_removed_and_then_that_it_is_gone(connected: SlackApp):
    _, url_id = connected.command("digest add --at 07:30 --tz Europe/London")
    connected.reply(url_id)
    _, url_id = connected.command("digest list")
    button = remove_button(connected.reply(url_id), "1")
    confirm = button["confirm"]
    assert confirm["title"]["text"] == "Remove digest 1?"
    assert confirm["text"]["text"] == (
        "<#CCOSTS>, every day at 07:30 (Europe/London), all connections: it won't be posted again."
    )
    assert (confirm["confirm"]["text"], confirm["deny"]["text"]) == ("Remove", "Keep it")
    assert confirm["style"] == "danger"

    clicked = click(connected, button["action_id"], button["value"])
    assert text_of(connected.reply(clicked)).startswith(
        ":white_check_mark: Removed digest 1: <#CCOSTS>, every day at 07:30 (Europe/London), "
        "all connections. It won't be posted again."
    )
    clicked = click(connected, button["action_id"], button["value"])  # the same button again
    gone = text_of(connected.reply(clicked))
    assert gone.startswith("Digest 1 is gone already (or never was):")
    [named] = set(re.findall(r"`/xai-usage ([^`]+)`", gone))
    assert named == "digest list"
    parse(tokenize(named), surface="slack")  # a command that exists


def test_a_budget_removed_is_named_with_its_amount(connected: SlackApp):
    _, url_id = connected.command("budget set 800 --thresholds 80,100")
    connected.reply(url_id)
    _, url_id = connected.command("budget remove 1")
    assert text_of(connected.reply(url_id)).startswith(
        ":white_check_mark: Removed budget 1: all connections, $800.00 a month, alerts at 80%, "
        "100% in <#CCOSTS>. It won't alert again."
    )


def test_remove_on_the_home_tab_asks_first_too(connected: SlackApp):
    for words in ("digest add --at 07:30", "budget set 800"):
        _, url_id = connected.command(words)
        connected.reply(url_id)
    view = open_home(connected)
    for number in ("digest remove 1", "budget remove 1"):
        [button] = [
            b["accessory"] for b in view["blocks"] if b.get("accessory", {}).get("value") == number
        ]
        assert button["confirm"]["style"] == "danger", number
        assert button["confirm"]["title"]["text"] == f"Remove {number.split()[0]} 1?"
    commands = buttons(view)
    [remove] = [k for k, v in commands.items() if v == "digest remove 1"]
    click(connected, remove, commands[remove], home=True)
    connected.slack.wait_for(lambda: posts_to(connected, ADMIN), timeout=10)
    [reply] = posts_to(connected, ADMIN)
    assert "Removed digest 1: <#CCOSTS>, every day at 07:30" in reply["text"]
