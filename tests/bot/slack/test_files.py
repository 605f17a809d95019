"""Charts and exports in Slack: uploaded with files.getUploadURLExternal and
files.completeUploadExternal, private (the asker's DM) unless --share."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.charts import PIXELS, png_size
from bot.grammar import UsageError, parse
from bot.reports import Period, build_report
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, MEMBER, TEAM, SlackApp, text_of

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


def test_a_private_chart_goes_to_the_askers_dm_and_never_to_the_channel(
    connected: SlackApp,
) -> None:
    _, url_id = connected.command("week --by model --chart", user=MEMBER)
    reply = connected.reply(url_id)
    assert reply["response_type"] == "ephemeral"
    assert "grok-4-0709" in text_of(reply)  # the table stays, for screen readers
    assert "direct messages" in text_of(reply)
    [chart] = shared_files(connected)
    assert chart.shared_in == [DM_OF_MEMBER]
    assert "CCOSTS" not in chart.shared_in
    assert png_size(chart.data) == PIXELS
    assert chart.filename.endswith(".png") and "$" in chart.title
    assert connected.slack.calls_to("chat.postMessage") == []  # nothing said in the channel
    [opened] = connected.slack.calls_to("conversations.open")
    assert opened.params["users"] == MEMBER


def test_a_shared_chart_is_posted_in_the_channel(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by day --chart --share", user=MEMBER)
    assert connected.reply(url_id)["response_type"] == "in_channel"
    [chart] = shared_files(connected)
    assert chart.shared_in == ["CCOSTS"]
    assert connected.slack.calls_to("conversations.open") == []


def test_a_refused_upload_says_how_to_fix_it(connected: SlackApp) -> None:
    connected.slack.fail("files.completeUploadExternal", "not_in_channel")
    _, url_id = connected.command("week --chart --share")
    assert "invite me" in text_of(connected.reply(url_id, count=2))
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
