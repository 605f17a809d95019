"""``/xai-usage insights`` end to end: a signed command, the Slack and xAI stand-ins.

The stand-in checks every message against Block Kit's limits (the fixture
fails the test on any violation).
"""

from __future__ import annotations

from bot.insights import build_insights
from bot.slack.blocks import insights_section
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import MEMBER, TEAM, SlackApp, text_of


def test_insights_answer_privately_with_each_insight_and_its_source(connected: SlackApp) -> None:
    response, url_id = connected.command("insights", user=MEMBER)
    assert response.status_code == 200 and response.text == ""
    reply = connected.reply(url_id)
    assert reply["response_type"] == "ephemeral"
    assert reply["blocks"][0]["text"]["text"] == "Insights"
    text = text_of(reply)
    assert "Top movers, " in text and "Source: xAI usage series, daily cost per model" in text
    assert "Where the money goes, " in text and "Source: xAI usage series by unit type" in text
    assert "grok-4-0709 → grok-4-fast-reasoning: $" in text
    assert "list prices as of " in text
    assert reply["text"].startswith("Insights up to ")


def test_insights_for_one_connection_and_shared(connected: SlackApp) -> None:
    _, url_id = connected.command('insights --connection "production — xai" --share')
    reply = connected.reply(url_id)
    assert reply["response_type"] == "in_channel"
    assert reply["blocks"][0]["text"]["text"] == "Insights · Production — xAI"


def test_an_unknown_connection_is_one_line_naming_the_known_ones(connected: SlackApp) -> None:
    _, url_id = connected.command('insights --connection "Staging"')
    text = text_of(connected.reply(url_id))
    assert "no connection labelled “Staging”" in text and "Production — xAI" in text


def test_the_digest_section_is_a_few_mrkdwn_lines(connected: SlackApp) -> None:
    with connected.runtime.db.session() as session:
        workspace_id = workspace_for_slack_team(session, TEAM).id
        found = build_insights(session, workspace_id, connected.runtime.clock().date())
    lines = insights_section(found).splitlines()
    assert [line.split(" ")[0] for line in lines] == [
        ":chart_with_upwards_trend:",
        ":key:",
        ":moneybag:",
        ":bulb:",
    ]
    assert all(len(line) < 500 for line in lines)
