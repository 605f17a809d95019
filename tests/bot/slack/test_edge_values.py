"""/xai-usage and the connect form with edge values: one clear answer, nothing saved."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import Connection
from tests.bot.slack.conftest import SlackApp, text_of
from tests.bot.slack.test_slack_app import open_modal, submit

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def test_the_form_caps_the_label_at_80_characters(slack_app: SlackApp) -> None:
    view, _ = open_modal(slack_app)
    label = next(b for b in view["blocks"] if b.get("block_id") == "label")
    assert label["element"]["max_length"] == 80


def test_a_label_over_80_characters_stays_on_the_form(slack_app: SlackApp) -> None:
    # Slack's own clients enforce max_length; a crafted submission does not have to.
    view, _ = open_modal(slack_app)
    body = submit(
        slack_app,
        view,
        label="L" * 10_240,
        team_id=DEMO_TEAM_ID,
        management_key=DEMO_KEY,
        backfill_days="3",
    ).json()
    assert body["response_action"] == "errors"
    assert "at most 80 characters" in body["errors"]["label"]
    assert slack_app.xai.requests == []  # refused before the key was tested
    with slack_app.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


def test_a_label_with_a_nul_byte_is_refused_and_nothing_is_saved(slack_app: SlackApp) -> None:
    # Slack's clients never send a NUL: a crafted submission is refused before any listener.
    view, _ = open_modal(slack_app)
    answer = submit(
        slack_app, view, label="Prod\x00", team_id=DEMO_TEAM_ID, management_key=DEMO_KEY
    )
    assert answer.status_code == 400
    assert slack_app.xai.requests == []
    with slack_app.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


def test_a_range_with_no_possible_day_is_one_answer(connected: SlackApp) -> None:
    _, url_id = connected.command("range 9999-12-31 9999-12-31 --by day")
    text = text_of(connected.reply(url_id))
    assert "No costs can fall between 9999-12-31 and 9999-12-31: reports cover 2023-01-01" in text


def test_a_nul_byte_in_a_command_is_refused_before_any_listener(connected: SlackApp) -> None:
    answer, url_id = connected.command("today --connection Prod\x00")
    assert answer.status_code == 400
    assert connected.replies(url_id) == []
