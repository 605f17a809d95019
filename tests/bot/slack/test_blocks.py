"""Replies read right on a phone: whole months of days, 40 columns, clipped weeks named."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.slack.native import degrade
from tests.bot.slack.conftest import SlackApp, fallback_table, native_table, text_of

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def money(text: str) -> Decimal:
    return Decimal(text.rstrip("*").replace("$", "").replace(",", ""))


def test_a_day_table_is_a_native_table_with_its_total_row_marked(connected: SlackApp):
    today = datetime.now(UTC).date()
    start = today - timedelta(days=30)
    _, url_id = connected.command(f"range {start} {today} --by day")
    reply = connected.reply(url_id)
    block = next(b for b in reply["blocks"] if b["type"] == "table")
    assert [c.get("align") for c in block["column_settings"]] == ["left", "right", "right"]
    rows = native_table(reply)
    assert rows[0] == ["Day", "Cost", "Share"]
    assert len(rows) == 1 + 31 + 1 and rows[-1][0] == "Total"
    assert rows[1][0] == f"{start:%a} {start.day} {start:%b %Y}"  # the oldest first, all 31
    total = block["rows"][-1]
    assert all(cell["type"] == "rich_text" for cell in total)  # bold: the marked row
    assert total[0]["elements"][0]["elements"][0]["style"] == {"bold": True}
    # The rows are the report's cells: they add up to the total as shown, to the cent.
    shown = [money(row[1]) for row in rows[1:-1] if row[1] != "not fetched"]
    assert sum(shown) == money(rows[-1][1])
    assert rows[-1][2] == "100.0%"
    assert "not fetched" in [row[1] for row in rows]  # the day before the backfill


def test_the_fallback_table_is_a_whole_month_within_40_columns(connected: SlackApp):
    today = datetime.now(UTC).date()
    start = today - timedelta(days=30)
    _, url_id = connected.command(f"range {start} {today} --by day")
    reply = connected.reply(url_id)
    lines = fallback_table(reply)
    assert lines[0].split() == ["Day", "Cost", "Share"]
    assert len(lines) == 1 + 31 + 2 and lines[-1].startswith("Total")  # a rule above the total
    assert lines[1].startswith(f"{start:%a} {start.day} {start:%b %Y}")  # no leading zero
    assert max(len(line) for line in lines) <= 40 and not any("more" in x for x in lines)
    assert reply["text"].index("```") > reply["text"].index(":")  # after the headline


def test_a_long_day_table_shows_the_newest_days_and_how_to_see_the_rest(connected: SlackApp):
    today = datetime.now(UTC).date()
    start = today - timedelta(days=89)
    _, url_id = connected.command(f"range {start} {today} --by day")
    reply = connected.reply(url_id)
    assert len(native_table(reply)) == 1 + 90 + 1  # the native table holds all 90
    lines = fallback_table(reply)  # the code block keeps a month: the newest 31
    assert lines[1].startswith("59 earlier days")
    assert lines[2].startswith(f"{today - timedelta(days=30):%a} ")
    assert lines[-3].startswith(f"{today:%a} {today.day} {today:%b %Y}")
    hidden = today - timedelta(days=31)
    command = f"range {start} {hidden} --by day"
    section = next(b for b in degrade(reply, {"table"})["blocks"] if "```" in str(b))
    assert f"`/xai-usage {command}` shows the 59 before them" in section["text"]["text"]
    # Where the native table is shown, no note speaks of rows it does not leave out.
    assert "earlier" not in text_of({"blocks": reply["blocks"]})
    _, url_id = connected.command(command)  # the way to the rest does reach it
    header = connected.reply(url_id)["blocks"][0]["text"]["text"]
    assert header.startswith(f"{start.day} {start:%b}–{hidden.day} {hidden:%b}")


def test_a_table_longer_than_slack_takes_folds_its_oldest_rows(connected: SlackApp):
    today = datetime.now(UTC).date()
    start = today - timedelta(days=119)
    _, url_id = connected.command(f"range {start} {today} --by day")
    reply = connected.reply(url_id)
    rows = native_table(reply)
    assert len(rows) == 100  # Slack's most: header, the fold, 97 days, the total
    assert rows[1][0] == "23 earlier days" and rows[-2][0].startswith(f"{today:%a} {today.day}")
    note = next(b for b in reply["blocks"] if b.get("block_id") == "xu-table-note")
    first = today - timedelta(days=96)
    assert f"`/xai-usage range {start} {first - timedelta(days=1)} --by day`" in str(note)
    assert money(rows[-1][1]) == sum(money(r[1]) for r in rows[1:-1] if r[1] != "not fetched")


def test_a_week_cut_by_the_period_says_so(connected: SlackApp):
    today = datetime.now(UTC).date()
    wednesday = today - timedelta(days=today.weekday() + 12)  # two weeks back, mid-week
    sunday = wednesday + timedelta(days=4)
    _, url_id = connected.command(f"range {wednesday} {sunday + timedelta(days=7)} --by week")
    reply = connected.reply(url_id)
    rows = native_table(reply)
    assert rows[1][0] == f"{wednesday.day} {wednesday:%b}–{sunday.day} {sunday:%b} (part)"
    monday, next_sunday = sunday + timedelta(days=1), sunday + timedelta(days=7)
    assert rows[2][0] == f"{monday.day} {monday:%b}–{next_sunday.day} {next_sunday:%b}"
    lines = fallback_table(reply)
    assert lines[1].startswith(f"{wednesday.day} {wednesday:%b}–{sunday.day} {sunday:%b} (part)")
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


def test_status_opens_with_a_table_of_its_connections_and_the_workspace(connected: SlackApp):
    _, url_id = connected.command("status")
    reply = connected.reply(url_id)
    rows = native_table(reply)
    assert rows[0] == ["Connection", "Status", "Month to date", "Forecast"]
    [(label, state, month, forecast)] = rows[1:-1]
    assert (label, state) == ("Production — xAI", "ok")
    assert month.startswith("$") and forecast.startswith("$")
    assert rows[-1] == ["The workspace", "", month, forecast]  # one connection: the same
    text = text_of(reply)
    assert "month to date (" in text and month.rstrip("*") in text  # as the section says it
    lines = fallback_table(reply)
    assert max(len(line) for line in lines) <= 40 and lines[0].split()[:2] == [
        "Connection",
        "Status",
    ]
