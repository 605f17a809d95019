"""Charts and exports in Slack: uploaded with files.getUploadURLExternal and
files.completeUploadExternal, private (the asker's DM) unless --share."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.charts import PIXELS, png_size
from bot.grammar import UsageError, parse
from bot.reports import Period, build_report
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, MEMBER, TEAM, SlackApp, text_of

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

DM_OF_MEMBER = "D" + MEMBER[1:]


def shared_files(slack: SlackApp, count: int = 1):
    slack.slack.wait_for(
        lambda: sum(1 for f in slack.slack.files.values() if f.title) >= count, timeout=20
    )
    return [f for f in slack.slack.files.values() if f.title]


def week_total(slack: SlackApp) -> Decimal:
    today = datetime.now(UTC).date()
    with slack.runtime.db.session() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        period = Period("week", today - timedelta(days=6), today, "week")
        return build_report(session, workspace_id, period, "model").total_usd


def test_a_chart_is_drawn_by_slack_in_the_private_reply(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by model --chart", user=MEMBER)
    reply = connected.reply(url_id)
    assert reply["response_type"] == "ephemeral"
    assert "grok-4-0709" in text_of(reply)  # the table stays above it
    [block] = [b for b in reply["blocks"] if b["type"] == "data_visualization"]
    chart = block["chart"]
    assert chart["type"] == "bar" and len(chart["axis_config"]["categories"]) == 7
    assert 1 <= len(chart["series"]) <= 6 and "grok-4-0709" in [s["name"] for s in chart["series"]]
    # The picture's data: every model's cost each day, adding up to the week's total.
    drawn = sum(Decimal(str(p["value"])) for s in chart["series"] for p in s["data"])
    assert abs(drawn - week_total(connected)) <= Decimal("0.01") * 7 * len(chart["series"])
    assert "$" in block["title"] and len(block["title"]) <= 50
    assert connected.slack.files == {}  # no picture, no DM
    assert connected.slack.calls_to("conversations.open") == []
    assert "direct messages" not in text_of(reply)


def test_a_chart_by_key_is_a_pie_of_the_shares(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by key --chart")
    [block] = [b for b in connected.reply(url_id)["blocks"] if b["type"] == "data_visualization"]
    segments = block["chart"]["segments"]
    assert block["chart"]["type"] == "pie" and 1 <= len(segments) <= 6
    assert all(s["value"] > 0 and len(s["label"]) <= 20 for s in segments)


def test_where_slack_refuses_charts_the_picture_goes_to_the_askers_dm(
    connected: SlackApp,
) -> None:
    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)
    _, url_id = connected.command("week --by model --chart", user=MEMBER)
    reply = connected.reply(url_id)  # refused with its chart, taken without it
    assert not [b for b in reply["blocks"] if b["type"] == "data_visualization"]
    assert "grok-4-0709" in text_of(reply)
    assert "direct messages" in text_of(connected.reply(url_id, count=2))
    [chart] = shared_files(connected)
    assert chart.shared_in == [DM_OF_MEMBER]
    assert "CCOSTS" not in chart.shared_in
    assert png_size(chart.data) == PIXELS
    assert chart.filename.endswith(".png") and "$" in chart.title
    assert connected.slack.calls_to("chat.postMessage") == []  # nothing said in the channel
    [opened] = connected.slack.calls_to("conversations.open")
    assert opened.params["users"] == MEMBER
    # Known now: the next one goes straight to the picture, saying so in the reply.
    _, url_id = connected.command("week --by day --chart", user=MEMBER)
    assert "direct messages" in text_of(connected.reply(url_id))
    assert [r.refused for r in connected.slack.responses if r.url_id == url_id] == [None]
    shared_files(connected, count=2)


def test_a_shared_chart_is_posted_in_the_channel(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by day --chart --share", user=MEMBER)
    reply = connected.reply(url_id)
    assert reply["response_type"] == "in_channel"
    assert [b for b in reply["blocks"] if b["type"] == "data_visualization"]
    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)
    _, url_id = connected.command("week --by day --chart --share", user=MEMBER)
    assert connected.reply(url_id)["response_type"] == "in_channel"
    [chart] = shared_files(connected)
    assert chart.shared_in == ["CCOSTS"]
    assert connected.slack.calls_to("conversations.open") == []


def test_a_refused_upload_says_how_to_fix_it(connected: SlackApp) -> None:
    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)
    connected.slack.fail("files.completeUploadExternal", "not_in_channel")
    _, url_id = connected.command("week --chart --share")
    assert "invite me" in text_of(connected.reply(url_id, count=3))
    connected.slack.fail("files.getUploadURLExternal", "missing_scope")
    _, url_id = connected.command("week --chart")
    assert "files:write" in text_of(connected.reply(url_id, count=2))


def test_export_sends_the_csv_privately_with_the_reports_total(connected: SlackApp) -> None:
    _, url_id = connected.command("export week", user=MEMBER)
    reply = connected.reply(url_id)
    assert reply["response_type"] == "ephemeral" and "direct messages" in text_of(reply)
    [export] = shared_files(connected)
    assert export.shared_in == [DM_OF_MEMBER] and export.filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(export.data.decode())))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == week_total(connected)


def test_export_as_pdf_shared_in_the_channel(connected: SlackApp) -> None:
    from pypdf import PdfReader

    _, url_id = connected.command("export week --format pdf --share", user=ADMIN)
    assert connected.reply(url_id)["response_type"] == "in_channel"
    [export] = shared_files(connected)
    assert export.shared_in == ["CCOSTS"]
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(export.data)).pages)
    assert "Last 7 days" in text and "Total $" in text


def test_an_export_mistake_is_one_line(connected: SlackApp) -> None:
    _, url_id = connected.command("export fortnight")
    assert "is not a period" in text_of(connected.reply(url_id))
    assert connected.slack.files == {}


def test_chart_is_for_slack_and_output_for_the_terminal() -> None:
    assert parse(["week", "--chart"], surface="slack").get("chart") is True
    assert parse(["export", "week", "--format", "pdf"], surface="slack").get("format") == "pdf"
    for words, surface in ((["week", "--chart"], "cli"), (["week", "-o", "x"], "slack")):
        try:
            parse(words, surface=surface)
        except UsageError:
            continue
        raise AssertionError(f"{words} should be refused on {surface}")


# -- Chart adds the chart; a DM is its own place -----------------------------------


def test_chart_clicked_adds_the_chart_and_not_the_report_again(connected: SlackApp) -> None:
    """The Chart button re-posted the whole report as a second message before the chart:
    the report is on screen already, so the click answers with the chart alone."""
    from tests.bot.slack.test_clicks import click, controls

    _, url_id = connected.command("week --by model", user=MEMBER)
    chart = controls(connected.reply(url_id))["xu:chart"]
    clicked = click(connected, "xu:chart", chart["value"], MEMBER)
    reply = connected.reply(clicked)
    assert reply["replace_original"] is False
    assert reply["blocks"][0]["type"] == "data_visualization"  # Slack draws it
    assert not [b for b in reply["blocks"] if b["type"] == "table"]  # no table again
    assert "```" not in text_of(reply)
    assert controls(reply) == {}  # no second set of buttons either
    connected.service.background.shutdown(wait=True)  # the chart's work is done...
    assert len(connected.replies(clicked)) == 1  # ...and nothing else was said
    assert connected.slack.files == {}


def test_chart_clicked_where_slack_refuses_charts_is_a_line_and_the_picture(
    connected: SlackApp,
) -> None:
    from tests.bot.slack.test_clicks import click, controls

    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)
    _, url_id = connected.command("week --by model --chart", user=MEMBER)  # learns it
    connected.reply(url_id)
    shared_files(connected)
    chart = controls(connected.reply(url_id))["xu:chart"]
    clicked = click(connected, "xu:chart", chart["value"], MEMBER)
    reply = connected.reply(clicked)
    assert "```" not in text_of(reply) and "grok-4-0709" not in text_of(reply)  # no table
    assert controls(reply) == {}
    assert "on its way to your direct messages" in text_of(reply)
    pictures = shared_files(connected, 2)
    assert [p.shared_in for p in pictures] == [[DM_OF_MEMBER], [DM_OF_MEMBER]]
    connected.service.background.shutdown(wait=True)
    assert len(connected.replies(clicked)) == 1


def test_chart_clicked_first_where_slack_refuses_charts_is_one_line_and_the_picture(
    connected: SlackApp,
) -> None:
    """Slack's refusal not known yet: the chart alone is refused, and without its chart
    it would be a title with nothing under it. It is not sent: the line saying where the
    picture goes is, and the picture."""
    from tests.bot.slack.test_clicks import click, controls

    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)
    _, url_id = connected.command("week --by model", user=MEMBER)  # no chart: nothing learnt
    chart = controls(connected.reply(url_id))["xu:chart"]
    clicked = click(connected, "xu:chart", chart["value"], MEMBER)
    reply = connected.reply(clicked)
    assert "on its way to your direct messages" in text_of(reply)
    [picture] = shared_files(connected)
    assert picture.shared_in == [DM_OF_MEMBER]
    connected.service.background.shutdown(wait=True)
    assert len(connected.replies(clicked)) == 1  # that line alone: no bare title before it


def dm_posts(app: SlackApp, user: str) -> list[dict]:
    channel = "D" + user[1:]
    return [
        c.params for c in app.slack.calls_to("chat.postMessage") if c.params["channel"] == channel
    ]


def test_in_the_apps_dm_a_chart_is_said_to_follow_here_and_nothing_is_shared(
    connected: SlackApp,
) -> None:
    """Inside the DM, "on its way to your direct messages" pointed at itself, and "Share to
    channel" posted "Shared by …" into a conversation of two."""
    from tests.bot.slack.test_clicks import controls
    from tests.bot.slack.test_home import dm

    dm(connected, "week --by model --chart", user=MEMBER)
    connected.slack.wait_for(lambda: dm_posts(connected, MEMBER), timeout=10)
    [report] = dm_posts(connected, MEMBER)
    assert [b for b in report["blocks"] if b["type"] == "data_visualization"]
    assert "direct messages" not in text_of(report)
    assert "xu:share:report" not in controls(report)  # no channel to share it to
    assert connected.slack.files == {}

    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)  # the picture, then
    dm(connected, "month --by model --chart", user=MEMBER)
    [drawn] = shared_files(connected)  # the picture comes last
    assert drawn.shared_in == [DM_OF_MEMBER]
    said = " ".join(text_of(p) for p in dm_posts(connected, MEMBER)[1:])
    assert "direct messages" not in said and "follows here" in said

    posted = len(dm_posts(connected, MEMBER))
    dm(connected, "week --by model --share", user=MEMBER)
    connected.slack.wait_for(lambda: len(dm_posts(connected, MEMBER)) == posted + 1, timeout=10)
    assert "Shared by" not in text_of(dm_posts(connected, MEMBER)[-1])

    dm(connected, "export week", user=MEMBER)
    connected.slack.wait_for(lambda: len(dm_posts(connected, MEMBER)) == posted + 2, timeout=10)
    said = text_of(dm_posts(connected, MEMBER)[-1])
    assert "direct messages" not in said and "here" in said


def test_a_chart_clicked_in_the_apps_dm_follows_there(connected: SlackApp) -> None:
    from tests.bot.slack.test_clicks import click

    connected.service.own_dm(connected.bolt.client, MEMBER)  # as the DM's first message does
    clicked = click(connected, "xu:chart", "week --by model --chart", MEMBER, channel=DM_OF_MEMBER)
    reply = connected.reply(clicked)
    assert [b for b in reply["blocks"] if b["type"] == "data_visualization"]
    assert "direct messages" not in text_of(reply)

    connected.slack.refuse_blocks("data_visualization", team_id=TEAM)  # the picture, then
    clicked = click(connected, "xu:chart", "week --by model --chart", MEMBER, channel=DM_OF_MEMBER)
    [drawn] = shared_files(connected)
    assert drawn.shared_in == [DM_OF_MEMBER]
    said = " ".join(text_of(r) for r in connected.replies(clicked))
    assert "direct messages" not in said and "follows here" in said
