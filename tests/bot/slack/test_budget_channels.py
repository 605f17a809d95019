"""A budget's channel is tested as ``alerts`` tests its channel: a note posted there.

A budget form is forged as easily as it is filled in: it named a channel the
bot can't post in, was saved, and its alerts then had nowhere to go. The form
and the slash command go through one check (``Setup.prove_channel``), the one
``digest add`` and ``alerts`` use.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.models import Budget
from tests.bot.slack.conftest import SlackApp, text_of
from tests.bot.slack.test_forms import errors_of, open_form, submit

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def budgets(app: SlackApp) -> int:
    with app.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(Budget))


def test_a_forged_budget_form_naming_a_channel_the_bot_cant_post_in_is_refused(
    connected: SlackApp,
) -> None:
    connected.slack.add_channel("CPRIV", "private", is_member=False)
    view, _ = open_form(connected, "budget set")
    errors = errors_of(submit(connected, view, amount="500", channel="CPRIV"))
    assert list(errors) == ["channel"] and "/invite @xai-usage" in errors["channel"]
    errors = errors_of(submit(connected, view, amount="500", channel="CNOWHERE"))
    assert list(errors) == ["channel"]
    assert budgets(connected) == 0


def test_budget_set_naming_a_channel_the_bot_cant_post_in_is_refused(connected: SlackApp):
    connected.slack.add_channel("CPRIV", "private", is_member=False)
    _, url_id = connected.command("budget set 500 --channel <#CPRIV|private>")
    assert "/invite @xai-usage" in text_of(connected.reply(url_id))
    assert budgets(connected) == 0


def test_a_budgets_channel_gets_a_note_saying_what_comes_there(connected: SlackApp):
    connected.slack.add_channel("CALERTS", "alerts")
    view, url_id = open_form(connected, "budget set")
    assert submit(connected, view, amount="500", channel="CALERTS").text == ""
    assert "Its alerts go to <#CALERTS>." in text_of(connected.reply(url_id))
    [note] = connected.slack.history("CALERTS")
    assert "budget" in note["text"] and "<@UADMIN>" in note["text"]
    assert budgets(connected) == 1
