"""/xai-usage digest, budget and alerts: set up from Slack, checked as they are saved."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, update

from storage.models import AlertRoute, Budget, Connection, DigestSubscription
from tests.bot.slack.conftest import MEMBER, SlackApp, text_of

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


def test_digest_add_defaults_to_here_at_nine_in_the_askers_time_zone(connected: SlackApp):
    connected.slack.add_user("UTOKYO", is_admin=True, tz="Asia/Tokyo")
    # With any option typed it runs at once (bare `digest add` opens the form: test_forms.py).
    _, url_id = connected.command("digest add --every day", user="UTOKYO")
    reply = text_of(connected.reply(url_id))
    assert "every day at 09:00 (Asia/Tokyo)" in reply
    [announcement] = connected.slack.calls_to("chat.postMessage")
    assert announcement.params["channel"] == "CCOSTS"  # where the command was typed
    with connected.runtime.db.session() as session:
        sub = session.scalar(select(DigestSubscription))
    assert (sub.channel_id, sub.at_time, sub.tz, sub.every) == (
        "CCOSTS",
        "09:00",
        "Asia/Tokyo",
        "day",
    )


def test_digest_add_with_every_option(connected: SlackApp):
    connected.slack.add_channel("CWEEK", "weekly")
    _, url_id = connected.command(
        "digest add <#CWEEK|weekly> --at 08:30 --tz Europe/Paris --every weekly "
        "--connection production — xai --quiet-min 25"
    )
    assert "every Monday at 08:30 (Europe/Paris)" in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        sub = session.scalar(select(DigestSubscription))
    assert sub.channel_id == "CWEEK" and sub.connection_id is not None
    assert sub.quiet_min_usd == Decimal(25)


def test_a_channel_the_bot_is_not_in_is_refused_with_the_fix(connected: SlackApp):
    connected.slack.add_channel("CPRIV", "private", is_member=False)
    _, url_id = connected.command("digest add <#CPRIV|private>")
    assert "/invite @xai-usage" in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        assert session.scalar(select(DigestSubscription)) is None  # nothing saved


def test_bad_digest_input_says_what_to_type(connected: SlackApp):
    for words, expected in (
        ("digest add --at 25:00", "09:00"),
        ("digest add --tz Mars/Olympus", "Europe/London"),
        ("digest add #costs", "autocomplete"),
        ("digest ad", "Did you mean `digest add`?"),
        ("digest remove 99", "Digest 99 is gone already (or never was)"),
    ):
        _, url_id = connected.command(words)
        assert expected in text_of(connected.reply(url_id)), words


def test_digest_list_and_remove(connected: SlackApp):
    _, url_id = connected.command("digest add --at 09:00")
    connected.reply(url_id)
    _, url_id = connected.command("digest list")
    listing = text_of(connected.reply(url_id))
    assert "*1*" in listing and "<#CCOSTS>" in listing
    _, url_id = connected.command("digest remove 1")
    assert "Removed" in text_of(connected.reply(url_id))
    _, url_id = connected.command("digest list")
    assert "No digests yet" in text_of(connected.reply(url_id))


def test_budget_set_list_remove(connected: SlackApp):
    _, url_id = connected.command("budget set $1,250.50 --thresholds 90,50 --channel <#CCOSTS|c>")
    assert "$1,250.50 a month, alerts at 50%, 90%" in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        budget = session.scalar(select(Budget))
    assert budget.amount_usd == Decimal("1250.50") and budget.thresholds == "50,90"
    _, url_id = connected.command("budget set -5")
    assert "more than $0" in text_of(connected.reply(url_id))
    _, url_id = connected.command("budget list")
    assert "$1,250.50" in text_of(connected.reply(url_id))
    _, url_id = connected.command(f"budget remove {budget.id}")
    assert "Removed" in text_of(connected.reply(url_id))


def test_alerts_route_to_a_channel_and_keep_the_webhook_sealed(connected: SlackApp):
    url = "https://hooks.example.com/services/T000/B000/secretpart"
    _, url_id = connected.command(f"alerts <#CCOSTS|costs> --webhook {url}")
    assert "now go to <#CCOSTS> and to the webhook" in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        route = session.scalar(select(AlertRoute))
    assert url not in (route.webhook_sealed or "")
    assert (
        connected.runtime.db.keyring.open(route.webhook_sealed, route.webhook_aad).decode() == url
    )
    _, url_id = connected.command("alerts <#CCOSTS|costs>")  # again: updated, not duplicated
    connected.reply(url_id)
    with connected.runtime.db.session() as session:
        assert len(list(session.scalars(select(AlertRoute)))) == 1


def test_setting_up_is_for_admins(connected: SlackApp):
    for words, named in (
        ("digest add", "`/xai-usage digest add`"),
        ("budget set 100", "`/xai-usage budget set`"),
        ("alerts <#CCOSTS|costs>", "`/xai-usage alerts`"),
        ('disconnect "Production — xAI"', "`/xai-usage disconnect`"),
    ):
        _, url_id = connected.command(words, user=MEMBER)
        refusal = text_of(connected.reply(url_id))
        assert "only workspace admins" in refusal and f"can run {named}." in refusal  # what


def test_a_budget_set_in_a_channel_alerts_there_and_says_so(connected: SlackApp):
    _, url_id = connected.command("budget set 20")  # typed in #costs, no --channel
    assert "Its alerts go to <#CCOSTS>." in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        assert session.scalar(select(Budget)).channel_id == "CCOSTS"
    connected.slack.add_channel("CALERTS", "alerts")
    _, url_id = connected.command("budget set 30 --channel <#CALERTS|alerts>")
    assert "Its alerts go to <#CALERTS> (they went to <#CCOSTS>)." in text_of(
        connected.reply(url_id)
    )


def test_alerts_to_a_channel_post_a_note_there_first(connected: SlackApp):
    connected.slack.add_channel("CALERTS", "alerts")
    _, url_id = connected.command("alerts <#CALERTS|alerts>")
    assert "now go to <#CALERTS>" in text_of(connected.reply(url_id))
    [note] = connected.slack.history("CALERTS")
    assert "<@UADMIN> sent spend alerts for all connections here" in note["text"]
    _, url_id = connected.command("status")
    assert "Alerts go to <#CALERTS>." in text_of(connected.reply(url_id))


def test_alerts_to_a_channel_the_bot_cannot_post_in_are_refused_with_the_fix(
    connected: SlackApp,
):
    connected.slack.add_channel("CPRIV", "private", is_member=False)
    _, url_id = connected.command("alerts <#CPRIV|private>")
    reply = text_of(connected.reply(url_id))
    assert "I can't post in <#CPRIV>" in reply and "/invite @xai-usage" in reply
    assert ":white_check_mark:" not in reply
    with connected.runtime.db.session() as session:
        assert session.scalar(select(AlertRoute)) is None  # nothing saved


def test_alerts_list_and_remove(connected: SlackApp):
    connected.slack.add_user("UCONN", is_admin=True)
    with connected.runtime.db.transaction() as session:
        session.execute(update(Connection).values(created_by="UCONN"))
    _, url_id = connected.command("alerts list")
    assert "Alerts go by direct message to <@UCONN>" in text_of(connected.reply(url_id))
    url = "https://hooks.example.com/services/T000/B000/secretpart"
    _, url_id = connected.command(f"alerts <#CCOSTS|costs> --webhook {url}")
    connected.reply(url_id)
    _, url_id = connected.command("alerts list")
    listing = text_of(connected.reply(url_id))
    assert "All: <#CCOSTS> and the webhook" in listing and "secretpart" not in listing
    _, url_id = connected.command("alerts remove --webhook")
    assert "no longer go to the webhook" in text_of(connected.reply(url_id))
    _, url_id = connected.command("alerts list")
    assert "All: <#CCOSTS>\n" in text_of(connected.reply(url_id))
    _, url_id = connected.command("alerts remove")
    reply = text_of(connected.reply(url_id))
    assert "no longer go to <#CCOSTS>" in reply and "direct message to <@UCONN>" in reply
    _, url_id = connected.command("alerts remove")
    assert "No alert channel is set" in text_of(connected.reply(url_id))


def test_budget_set_again_for_the_same_scope_replaces_it(connected: SlackApp):
    _, url_id = connected.command("budget set 500")
    first = text_of(connected.reply(url_id))
    assert "for all connections: $500.00 a month" in first
    _, url_id = connected.command("budget set 800 --thresholds 90")
    again = text_of(connected.reply(url_id))
    assert "for all connections: $800.00 a month (replaces $500.00), alerts at 90%" in again
    _, url_id = connected.command('budget set 50 --connection "Production — xAI"')
    assert "for “Production — xAI”: $50.00 a month" in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        budgets = session.scalars(select(Budget).order_by(Budget.id)).all()
    assert [(b.amount_usd, b.thresholds, b.connection_id is None) for b in budgets] == [
        (Decimal(800), "90", True),
        (Decimal(50), "50,80,100", False),
    ]
    _, url_id = connected.command("budget list")
    listed = text_of(connected.reply(url_id))
    assert "all connections, $800.00" in listed and "“Production — xAI”, $50.00" in listed


def test_digest_add_and_list_echo_every_setting(connected: SlackApp):
    _, url_id = connected.command(
        'digest add --at 08:30 --tz UTC --every week --connection "Production — xAI" '
        "--quiet-min 25 --quiet-change 20"
    )
    reply = text_of(connected.reply(url_id))
    assert (
        "every Monday at 08:30 (UTC), “Production — xAI”, posted only when spend "
        "over $25.00 or moved by more than 20%" in reply
    )
    _, url_id = connected.command("digest list")
    assert "“Production — xAI”, posted only when spend over $25.00" in text_of(
        connected.reply(url_id)
    )


def test_a_second_identical_digest_is_refused_naming_the_first(connected: SlackApp):
    _, url_id = connected.command("digest add --at 09:00 --tz Europe/London")
    assert "Digest 1:" in text_of(connected.reply(url_id))
    _, url_id = connected.command("digest add <#CCOSTS|costs> --every day --tz Europe/London")
    refused = text_of(connected.reply(url_id))
    assert refused.startswith(
        "Digest 1 already posts in <#CCOSTS>, every day at 09:00 (Europe/London), all "
        "connections: nothing was added."
    )
    with connected.runtime.db.session() as session:
        assert len(list(session.scalars(select(DigestSubscription)))) == 1
    assert len(connected.slack.history("CCOSTS")) == 1  # one note: the first digest's
