"""Numbers typed in Slack are ASCII digits (the one parser: bot/numbers.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.models import Budget, DigestSubscription
from tests.bot.slack.conftest import SlackApp, text_of

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def test_digest_times_and_thresholds_typed_in_other_digits_are_refused(connected: SlackApp):
    for words, expected in (
        ("digest add --at ²:00", "--at takes a time like 09:00"),
        ("digest add --at ١٠:٠٠", "--at takes a time like 09:00"),
        ("budget set 500 --thresholds ٥٠,١٠٠", "--thresholds takes percentages"),
        ("budget remove ١", "Give the number `/xai-usage budget list` shows"),
    ):
        _, url_id = connected.command(words)
        assert expected in text_of(connected.reply(url_id)), words
    with connected.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DigestSubscription)) == 0
        assert session.scalar(select(func.count()).select_from(Budget)) == 0


def test_the_connect_forms_days_are_ascii_digits(slack_app: SlackApp) -> None:
    from bot.slack.connecting import BACKFILL_FIELD, Request, problems

    provider = slack_app.runtime.providers.get("xai")
    request = Request(provider, {"team_id": "", "management_key": ""}, "", "٣٠")
    assert problems(slack_app.service, 1, request)[BACKFILL_FIELD].startswith(
        "A whole number of days from 1 to 90"
    )
