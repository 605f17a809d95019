"""``/xai-usage insights`` end to end: a signed command, the Slack and xAI stand-ins.

The stand-in checks every message against Block Kit's limits (the fixture
fails the test on any violation).
"""

from __future__ import annotations

import json

import pytest

from bot.insights import build_insights
from bot.render import insights_section
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import MEMBER, TEAM, SlackApp, text_of

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


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
        found = build_insights(
            session,
            workspace_id,
            connected.runtime.clock().date(),
            providers=connected.runtime.providers,
        )
    lines = insights_section(found).splitlines()
    assert [line.split(" ")[0] for line in lines] == [
        ":chart_with_upwards_trend:",
        ":key:",
        ":moneybag:",
        ":bulb:",
    ]
    assert all(len(line) < 500 for line in lines)


def test_names_are_escaped_and_lists_stay_within_block_kit_limits() -> None:
    from datetime import date
    from decimal import Decimal

    from bot.insights import IdleKey, IdleKeys, Insights, Mover, Movers, Span
    from bot.slack.blocks import insights_message

    week, before = (
        Span(date(2026, 11, 15), date(2026, 11, 21)),
        Span(date(2026, 11, 8), date(2026, 11, 14)),
    )
    sneaky = "<!channel> *bold* " + "x" * 400
    movers = Movers(
        week,
        before,
        tuple(Mover(f"{sneaky}{i}", Decimal(i + 1), Decimal(i)) for i in range(5)),
        (),
        "xAI usage series, daily cost per model",
        "xAI usage series by API key",
    )
    idle = IdleKeys(
        week,
        before,
        (IdleKey(sneaky, Decimal(3), date(2026, 11, 1)),) * 10,
        7,
        "xAI usage series by API key",
    )
    notes = tuple(f"note {i} <@U123>" for i in range(9))
    message = insights_message(Insights(date(2026, 11, 22), None, movers, idle, None, (), notes))
    text = json.dumps(message, ensure_ascii=False)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<@U123>" not in text
    assert len(message["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if b["type"] == "section")
    assert "• and 7 more" in text
    assert text.count(":grey_question:") == 5  # the first notes; the rest would only repeat why
