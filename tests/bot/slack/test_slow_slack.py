"""Every request is acknowledged at once, however slow Slack is to answer the app's own
calls: a request's acknowledgement is sent as its listener returns (bot.slack.app), so
no listener waits on Slack, the store's slow work or a provider before it returns."""

from __future__ import annotations

import time

import pytest

from tests.bot.slack.conftest import ADMIN, SlackApp, text_of
from tests.bot.slack.test_clicks import click
from tests.bot.slack.test_home import dm, posts_to

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

SLOW = 1.5
"""Seconds Slack takes over each Web API call the app makes."""
AT_ONCE = 0.5


def timed(send) -> float:
    began = time.perf_counter()
    send()
    return time.perf_counter() - began


def test_nothing_waits_on_slack_before_its_acknowledgement(connected: SlackApp) -> None:
    app = connected
    _, url_id = app.command("month")  # Slack's answers about the asker, known from now
    app.reply(url_id)
    app.slack.latency = SLOW
    took = {
        "command": timed(lambda: app.command("week --by model")),
        "click": timed(lambda: click(app, "xu:view:day", "month --by day")),
        "stale click": timed(lambda: click(app, "xu:view:x", "")),
        "kept": timed(lambda: click(app, "disconnect_cancel", "c1")),
        "direct message": timed(lambda: dm(app, "today", user=ADMIN)),
        "home opened": timed(
            lambda: app.event({"type": "app_home_opened", "user": ADMIN, "tab": "home"})
        ),
    }
    assert {what: s for what, s in took.items() if s > AT_ONCE} == {}
    # And the work after each acknowledgement is done all the same.
    app.slack.wait_for(lambda: posts_to(app, "DADMIN"), timeout=15)
    assert "Today" in text_of(posts_to(app, "DADMIN")[-1])
    app.slack.wait_for(lambda: app.slack.calls_to("views.publish"), timeout=15)
