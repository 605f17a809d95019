"""Email addresses for alerts, from Slack: typed (as Slack escapes them) or in the alerts form.

Signed requests drive the app; a real SMTP server on 127.0.0.1 receives the test
message each new address gets before it is saved.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage.models import AlertEmail, AlertRoute
from tests.bot.slack.conftest import SlackApp, text_of
from tests.bot.slack.test_forms import errors_of, inputs, open_form, submit
from tests.fakes.smtp import CertificateAuthority, SmtpStandIn

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


@pytest.fixture
def mail(tmp_path):
    authority = CertificateAuthority(tmp_path / "tls")
    with SmtpStandIn("starttls", authority=authority) as server:
        yield server, authority


@pytest.fixture
def slack_env(slack_env, mail):
    """The Slack app's environment, with the operator's mail server set."""
    server, authority = mail
    return {
        **slack_env,
        "XAI_USAGE_SMTP_URL": server.url(),
        "XAI_USAGE_SMTP_FROM": "xai-usage <alerts@example.com>",
        "XAI_USAGE_SMTP_CA_FILE": str(authority.ca_file),
    }


def saved_addresses(app: SlackApp) -> list[str]:
    db = app.runtime.db
    with db.session() as session:
        return [
            db.keyring.open(row.address_sealed, row.address_aad).decode()
            for row in session.scalars(select(AlertEmail).order_by(AlertEmail.id))
        ]


def test_the_alerts_form_adds_addresses_once_each_got_its_test_message(
    connected: SlackApp, mail
) -> None:
    server, _ = mail
    connected.slack.add_channel("CALERTS", "alerts")
    view, url_id = open_form(connected, "alerts")
    assert "email" in inputs(view)

    errors = errors_of(submit(connected, view, channel="CALERTS", email="ana@example"))
    assert list(errors) == ["email"] and "is not an email address" in errors["email"]
    server.answers = {"ana@example.com": "550 5.1.1 no such user"}
    errors = errors_of(submit(connected, view, channel="CALERTS", email="Ana <ana@example.com>"))
    assert "Not saved: the test message to Ana <ana@example.com> was not sent" in errors["email"]
    assert "550 5.1.1 no such user" in errors["email"]
    assert saved_addresses(connected) == []

    server.answers = {}
    typed = "Ana <ana@example.com>, bob@example.org"
    assert submit(connected, view, channel="CALERTS", email=typed).text == ""

    reply = text_of(connected.reply(url_id))
    assert "now go to <#CALERTS> and by email to Ana &lt;ana@example.com&gt;" in reply, reply
    assert saved_addresses(connected) == ["Ana <ana@example.com>", "bob@example.org"]
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["ana@example.com", "bob@example.org"]
    assert all(r.tls for r in server.received)


def test_an_address_typed_in_slack_is_added_without_a_form(connected: SlackApp, mail) -> None:
    server, _ = mail
    # Slack sends what was typed escaped: an address as a mailto link, < and > as entities.
    _, url_id = connected.command(
        'alerts --email "Ana &lt;<mailto:ana@example.com|ana@example.com>&gt;"'
    )
    reply = text_of(connected.reply(url_id))
    assert "now go by email to Ana &lt;ana@example.com&gt;" in reply, reply
    # Nothing else was set up here, and nobody in Slack connected the team: email is all.
    assert "Alerts go by email to 1 address only, to no channel: `/xai-usage alerts #channel`" in (
        reply
    )
    assert connected.slack.calls_to("views.open") == []  # no form: the command was whole
    assert saved_addresses(connected) == ["Ana <ana@example.com>"]
    with connected.runtime.db.session() as session:
        route = session.scalar(select(AlertRoute))
    assert route.channel_id is None  # the channel it was typed in was not taken as the route's
    assert [r.rcpt_tos for r in server.received] == [["ana@example.com"]]
