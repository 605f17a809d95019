"""Replies read right on a phone: whole months of days, 40 columns, clipped weeks named."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from tests.bot.slack.conftest import SlackApp, text_of


def table_of(message: dict) -> list[str]:
    table = next(
        b["text"]["text"] for b in message["blocks"] if "```" in b.get("text", {}).get("text", "")
    )
    return table.strip("`").splitlines()


def test_a_day_table_shows_a_whole_month_within_40_columns(connected: SlackApp):
    today = datetime.now(UTC).date()
    start = today - timedelta(days=30)
    _, url_id = connected.command(f"range {start} {today} --by day")
    lines = table_of(connected.reply(url_id))
    assert len(lines) == 31 and not any("more" in line for line in lines)
    assert max(len(line) for line in lines) <= 40
    assert lines[0].startswith(f"{start:%a} {start.day} {start:%b %Y}")  # no leading zero

    _, url_id = connected.command(f"range {start - timedelta(days=2)} {today} --by day")
    lines = table_of(connected.reply(url_id))
    assert len(lines) == 32 and lines[-1].startswith("and 2 more")  # 31 days, then the rest


def test_a_week_cut_by_the_period_says_so(connected: SlackApp):
    today = datetime.now(UTC).date()
    wednesday = today - timedelta(days=today.weekday() + 12)  # two weeks back, mid-week
    sunday = wednesday + timedelta(days=4)
    _, url_id = connected.command(f"range {wednesday} {sunday + timedelta(days=7)} --by week")
    lines = table_of(connected.reply(url_id))
    assert lines[0].startswith(f"{wednesday.day} {wednesday:%b}–{sunday.day} {sunday:%b} (part)")
    monday, next_sunday = sunday + timedelta(days=1), sunday + timedelta(days=7)
    assert lines[1].startswith(f"{monday.day} {monday:%b}–{next_sunday.day} {next_sunday:%b} ")
    assert "(part)" not in lines[1]
    assert max(len(line) for line in lines) <= 40


def test_empty_answers_say_what_to_do_first(slack_app: SlackApp):
    _, url_id = slack_app.command("sync")
    assert "`/xai-usage connect` first" in text_of(slack_app.reply(url_id, count=2))


def test_no_spend_on_a_model_pattern_says_how_to_see_the_models(connected: SlackApp):
    _, url_id = connected.command("month --model nothing-like-this*")
    text = text_of(connected.reply(url_id)).replace("\u200b", "")  # what a person reads
    assert "No spend in this period on models matching “nothing-like-this*”" in text
    assert "`/xai-usage month --by model` lists the models used" in text


def test_status_shows_the_month_end_forecast(connected: SlackApp):
    _, url_id = connected.command("status")
    text = text_of(connected.reply(url_id))
    assert re.search(r"month-end forecast for [A-Z][a-z]+ \$", text)  # the connection's
    assert ", at the pace of the last 7 days, all connections: *$" in text  # the workspace's


def test_a_providers_own_words_in_a_form_are_escaped():
    from types import SimpleNamespace

    from bot.slack import connecting
    from storage.models import Connection
    from tests.fakes.providers import built_in

    service = SimpleNamespace(runtime=SimpleNamespace(providers=built_in()))
    connection = Connection(label="R&D <!here>", provider="xai", account_ref="team-1")
    said = "xAI said: team <!channel> & key > 1"
    for view in (
        connecting.connect_view(service, {}, built_in().get("xai"), error=said),
        connecting.update_key_view(service, {}, connection, error=said),
    ):
        text = json.dumps(view)
        assert "<!channel>" not in text and "<!here>" not in text
        assert "team &lt;!channel&gt; &amp; key &gt; 1" in text
