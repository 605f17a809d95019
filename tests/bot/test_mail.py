"""Email alerts, sent to a real SMTP server on 127.0.0.1 (tests/fakes/smtp.py).

An address is added with a test message (or refused, with the fix, and nothing
saved); each alert then goes to it as plain text and HTML, as one more place of
its own: a server that refuses for good (5xx) is told once and not asked again,
one that says "later" (4xx) or is down keeps the alert pending until a later run.
"""

from __future__ import annotations

import email.utils

import pytest
from sqlalchemy import select, update

from bot.alerts import sync_failure_alerts
from bot.mail import AddressProblem, parse_addresses
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import AlertEmail, AlertRoute, Connection, Delivery
from tests.bot.test_jobs import alert_posts, connected_from_a_terminal, run_cli
from tests.fakes.smtp import CertificateAuthority, SmtpStandIn
from tests.fakes.world import World, at

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

SENDER = "xai-usage <alerts@example.com>"
ANA = "Ana López <ana@example.com>"
FAILING = at("2026-10-21T06:01:00")  # the daily sync finds the key revoked: a sync failure


@pytest.fixture
def authority(tmp_path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "tls")


@pytest.fixture
def servers(authority):
    """Start SMTP stand-ins (``mode``, ``login``); all are stopped after the test."""
    started: list[SmtpStandIn] = []

    def start(mode: str = "starttls", **kwargs) -> SmtpStandIn:
        server = SmtpStandIn(mode, authority=authority, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def use(world: World, server: SmtpStandIn, authority=None, **env: str) -> None:
    """Point the bot at ``server`` (trusting the test CA when given)."""
    world.env.update(
        {
            "XAI_USAGE_SMTP_URL": env.pop("url", None) or server.url(),
            "XAI_USAGE_SMTP_FROM": SENDER,
            **({"XAI_USAGE_SMTP_CA_FILE": str(authority.ca_file)} if authority else {}),
            **env,
        }
    )


def fail_sync(world: World) -> None:
    world.xai.revoke_key(DEMO_KEY)


def saved(world: World) -> tuple[list[AlertRoute], int]:
    with world.runtime().db.session() as session:
        routes = list(session.scalars(select(AlertRoute)))
        addresses = len(list(session.scalars(select(AlertEmail))))
    return routes, addresses


# -- adding an address ---------------------------------------------------------------------


def test_an_address_gets_a_test_message_then_each_alert_as_text_and_html(
    world: World, servers, authority
) -> None:
    server = servers("starttls")
    use(world, server, authority)
    with world.runtime().db.transaction() as session:  # a label with markup in it
        session.execute(update(Connection).values(label="R&D <b>ops</b>"))

    code, out = run_cli(world, "alerts", "CALERTS", "--email", ANA)

    assert code == 0, out
    assert out.strip() == (
        "Alerts for all connections now go to CALERTS and by email to Ana López <ana@example.com>."
    )
    [test] = server.received
    assert test.tls and test.rcpt_tos == ["ana@example.com"]  # STARTTLS offered, and used
    assert test.message["To"] == ANA and "will come to this address" in test.message["Subject"]
    assert "shows that mail reaches you" in test.part("plain")

    fail_sync(world)
    out = world.jobs(FAILING)

    assert world.code == 0, out
    assert "-> #CALERTS, @UADMIN, email 1" in out and "ana@" not in out
    alert = server.received[-1]
    message = alert.message
    assert len(alert_posts(world, "CALERTS", "stopped syncing")) == 1
    with world.runtime().db.session() as session:
        [failure] = sync_failure_alerts(session, world.workspace_id)
    assert message["Subject"] == failure.title == "“R&D <b>ops</b>” stopped syncing"
    assert message["From"] == SENDER and message["To"] == ANA
    assert message["Auto-Submitted"] == "auto-generated"
    assert email.utils.parsedate_to_datetime(message["Date"]) == FAILING
    assert message["Message-ID"].endswith("@example.com>")
    plain, html = alert.part("plain"), alert.part("html")
    assert "R&D <b>ops</b>" in plain and "update-key" in plain
    assert "R&amp;D &lt;b&gt;ops&lt;/b&gt;" in html and "<b>ops</b>" not in html
    assert "/xai-usage alerts remove --email ana@example.com" in plain
    # Said once: a later run sends nothing more.
    world.jobs(at("2026-10-21T06:30:00"))
    assert len(server.received) == 2


def test_an_address_alone_leaves_the_channel_where_it_was(world: World, servers) -> None:
    server = servers("plain")
    use(world, server)
    route = run_cli(world, "alerts", "CALERTS")
    assert route[0] == 0, route
    code, out = run_cli(world, "alerts", "--email", "ops@example.com", "--connection", "R")
    assert code == 1 and "no connection" in out.lower(), out  # a label that is not one
    code, out = run_cli(world, "alerts", "--email", "ops@example.com, ana@example.com")
    assert code == 0, out
    assert "now go to CALERTS and by email to ops@example.com and ana@example.com" in out
    code, out = run_cli(world, "alerts", "list")
    assert out.splitlines()[0] == (
        "All: CALERTS and by email to ops@example.com (email 1) and ana@example.com (email 2)"
    ), out

    fail_sync(world)
    out = world.jobs(FAILING)

    assert world.code == 0 and "-> #CALERTS, @UADMIN, email 1, email 2" in out, out
    alerts = [r for r in server.received if "stopped syncing" in r.message["Subject"]]
    assert sorted(r.rcpt_tos[0] for r in alerts) == ["ana@example.com", "ops@example.com"]
    assert not any(r.tls for r in server.received)  # no TLS offered, none asked for


def test_a_connections_own_addresses_keep_the_workspace_channel(world: World, servers) -> None:
    server = servers("plain")
    use(world, server)
    assert run_cli(world, "alerts", "CALERTS")[0] == 0
    code, out = run_cli(
        world, "alerts", "--email", "prod@example.com", "--connection", "Production — xAI"
    )
    assert code == 0, out
    assert "Alerts go to CALERTS and by email to 1 address" in out, out
    fail_sync(world)
    out = world.jobs(FAILING)
    assert "-> #CALERTS, @UADMIN, email 1" in out, out
    assert server.received[-1].rcpt_tos == ["prod@example.com"]


def test_without_a_mail_server_an_address_is_refused_and_nothing_saved(world: World) -> None:
    code, out = run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")
    assert code == 1
    assert "Not saved: email needs a mail server" in out and "XAI_USAGE_SMTP_URL" in out, out
    assert saved(world) == ([], 0)
    assert world.slack.history("CALERTS") == []  # refused before the channel's note


@pytest.mark.parametrize(
    "typed",
    ["ana@", "ana", "ana@example", "Ana López ana@example.com", "ana@exa mple.com", "a;b@x.io"],
)
def test_a_malformed_address_is_refused_with_how_to_write_one(world: World, typed) -> None:
    code, out = run_cli(world, "alerts", "CALERTS", "--email", typed)
    assert code == 1
    assert "is not an email address: write it as ana@example.com" in out, out
    assert '"Ana Lopez <ana@example.com>"' in out
    assert saved(world) == ([], 0)


def test_addresses_as_typed_in_a_terminal_or_slack() -> None:
    def shown(text: str) -> list[str]:
        return [str(a) for a in parse_addresses(text)]

    assert shown(ANA) == [ANA]
    assert shown('"López, Ana" <ana@example.com>, bob@example.org') == [
        '"López, Ana" <ana@example.com>',
        "bob@example.org",
    ]
    # Slack sends a typed address as a link, and escapes < > &.
    assert shown("<mailto:ana@example.com|ana@example.com>") == ["ana@example.com"]
    escaped = "Ana &lt;<mailto:ana@example.com|ana@example.com>&gt;"
    assert shown(escaped) == ["Ana <ana@example.com>"]
    assert shown("ana@Bücher.example") == ["ana@xn--bcher-kva.example"]
    with pytest.raises(AddressProblem, match="plain ASCII"):
        parse_addresses("anä@example.com")
    with pytest.raises(AddressProblem, match="Give an email address"):
        parse_addresses(" ")


def test_the_address_is_sealed_and_never_in_the_ledger(world: World, servers) -> None:
    server = servers("plain")
    use(world, server)
    assert run_cli(world, "alerts", "CALERTS", "--email", ANA)[0] == 0
    fail_sync(world)
    world.jobs(FAILING)
    assert len(server.received) == 2
    runtime = world.runtime()
    with runtime.db.engine.connect() as conn:
        dumped = "\n".join(
            repr(row)
            for table in (AlertEmail.__table__, AlertRoute.__table__, Delivery.__table__)
            for row in conn.execute(select(table))
        )
    assert "email 1" in dumped and "ana@" not in dumped and "López" not in dumped


def test_an_address_is_removed_alone_and_an_empty_route_with_it(world: World, servers) -> None:
    use(world, servers("plain"))
    assert run_cli(world, "alerts", "--email", "ops@example.com, ana@example.com")[0] == 0
    code, out = run_cli(world, "alerts", "remove", "--email", "bob@example.com")
    assert code == 1 and "do not go to bob@example.com" in out, out
    code, out = run_cli(world, "alerts", "remove", "--email", "ANA@example.com")
    assert code == 0 and "no longer go by email to ana@example.com" in out, out
    assert len(saved(world)[0]) == 1
    code, out = run_cli(world, "alerts", "remove", "--email")
    assert code == 0 and "no longer go by email to ops@example.com" in out, out
    assert saved(world) == ([], 0)  # nothing was left of the route
    assert "direct message to <@UADMIN>" in out


# -- TLS and logins ------------------------------------------------------------------------


def test_require_tls_refuses_a_server_that_offers_none(world: World, servers) -> None:
    server = servers("plain")
    use(world, server, XAI_USAGE_SMTP_REQUIRE_TLS="1")
    code, out = run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")
    assert code == 1, out
    assert "offers no TLS (STARTTLS) and XAI_USAGE_SMTP_REQUIRE_TLS=1: not sent in the clear" in out
    assert server.received == [] and saved(world) == ([], 0)
    # Set while the server still offered TLS... then it stops: alerts wait, never in the clear.
    world.env["XAI_USAGE_SMTP_REQUIRE_TLS"] = "0"
    assert run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")[0] == 0
    world.env["XAI_USAGE_SMTP_REQUIRE_TLS"] = "1"
    fail_sync(world)
    out = world.jobs(FAILING)
    assert world.code == 1 and "email 1: the mail server" in out and "not sent in the clear" in out
    assert len(server.received) == 1  # the test message only


def test_smtps_with_a_login(world: World, servers, authority) -> None:
    server = servers("smtps", login=("alerts", "s3cret-pass-9"))
    use(world, server, authority, url=server.url("alerts", "wrong-pass-00"))
    code, out = run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")
    assert code == 1 and "refused the login (535)" in out and "XAI_USAGE_SMTP_URL" in out, out
    assert "wrong-pass-00" not in out and saved(world) == ([], 0)

    world.env["XAI_USAGE_SMTP_URL"] = server.url("alerts", "s3cret-pass-9")
    assert run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")[0] == 0
    fail_sync(world)
    out = world.jobs(FAILING)
    assert world.code == 0, out
    assert [(r.tls, r.login) for r in server.received] == [(True, "alerts"), (True, "alerts")]


def test_a_password_is_never_sent_in_the_clear(world: World, servers) -> None:
    server = servers("plain")
    use(world, server, url=server.url("alerts", "s3cret-pass-9"))
    code, out = run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")
    assert code == 1 and "is never sent in the clear" in out, out
    assert server.logins == [] and server.received == []


def test_a_certificate_not_trusted_says_how_to_trust_it(world: World, servers) -> None:
    server = servers("starttls")
    use(world, server)  # no CA file: the test CA is unknown
    code, out = run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")
    assert code == 1 and "certificate is not trusted" in out and "XAI_USAGE_SMTP_CA_FILE" in out
    assert server.received == []


# -- refusals, later and for good ----------------------------------------------------------


def test_a_refusal_for_good_is_said_once_and_a_refusal_for_now_is_retried(
    world: World, servers
) -> None:
    server = servers("plain")
    use(world, server)
    addresses = "gone@example.com, full@example.com, ana@example.com"
    assert run_cli(world, "alerts", "CALERTS", "--email", addresses)[0] == 0
    server.answers = {
        "gone@example.com": "550 5.1.1 <gone@example.com>: no such user",
        "full@example.com": "452 4.2.2 mailbox full",
    }
    fail_sync(world)

    out = world.jobs(FAILING)

    assert world.code == 1, out
    assert "alerts pending, kept for the next run: 1" in out
    assert "email 2: the mail server refused the address: 452 4.2.2 mailbox full" in out
    assert "email 1: the mail server refused the address: 550 5.1.1 <the address>" in out
    assert "gone@" not in out and "full@" not in out
    delivered = [r.rcpt_tos for r in server.received if "stopped" in r.message["Subject"]]
    assert delivered == [["ana@example.com"]]
    _, listed = run_cli(world, "alerts", "list")
    assert "gone@example.com (email 1) refused the last alert: the mail server refused" in listed
    assert "alerts remove --email gone@example.com" in listed

    server.answers = {"gone@example.com": server.answers["gone@example.com"]}  # room again
    tried = len(server.rcpt_attempts)
    out = world.jobs(at("2026-10-21T06:07:00"))

    assert world.code == 1, out  # the refusal for good is told once, with the delivery
    assert "alerts delivered: 1" in out and "email 2" in out
    assert "email 1: the mail server refused the address" in out and "(not tried again)" in out
    assert "gone@example.com" not in server.rcpt_attempts[tried:]  # not asked again
    assert [r.rcpt_tos for r in server.received][-1] == ["full@example.com"]
    out = world.jobs(at("2026-10-21T06:20:00"))
    assert world.code == 0 and "email" not in out, out  # said once


def test_the_server_down_keeps_the_alert_pending_until_a_later_run(world: World, servers) -> None:
    server = servers("plain")
    use(world, server)
    assert run_cli(world, "alerts", "CALERTS", "--email", "ana@example.com")[0] == 0
    server.stop()
    fail_sync(world)

    out = world.jobs(FAILING)

    assert world.code == 1, out
    assert "email 1: the mail server 127.0.0.1" in out and "did not answer" in out
    assert "(delivered to #CALERTS, @UADMIN (direct message))" in out
    _, status = run_cli(world, "status")
    assert "1 alert not delivered yet" in status and "email 1: the mail server" in status

    server.start()
    out = world.jobs(at("2026-10-21T06:07:00"))

    assert world.code == 0 and "alerts delivered: 1" in out, out
    assert "stopped syncing" in server.received[-1].message["Subject"]
    assert len(alert_posts(world, "CALERTS", "stopped syncing")) == 1  # Slack's not repeated
    world.xai.add_key(DEMO_KEY, DEMO_TEAM_ID)


def test_who_gets_an_alert_with_only_an_address_and_nobody_in_slack(world: World, servers) -> None:
    """No channel anywhere and nobody in Slack to DM: the address is the whole route."""
    connected_from_a_terminal(world)
    server = servers("plain")
    use(world, server)
    code, out = run_cli(world, "alerts", "--email", "ops@example.com")
    assert code == 0 and "Alerts go by email to 1 address only, to no channel" in out, out
    out = world.jobs(at("2026-10-13T12:00:00"))  # Monday 12 October spiked
    assert world.code == 0 and "-> email 1" in out, out
    [spike] = [r for r in server.received if "spike" in r.message["Subject"].lower()]
    assert "12 Oct" in spike.part("plain")
    # The fix names the command, so the list of what to do does not repeat it.
    command = "/xai-usage range 2026-10-12 2026-10-12 --by model --connection"
    assert spike.part("plain").count(command) == 1 and "What to do" not in spike.part("plain")
    assert spike.part("html").count(command) == 1, spike.part("html")
    assert world.slack.calls_to("chat.postMessage") == []


def test_without_slack_configured_alerts_still_go_by_email(world: World, servers) -> None:
    """A terminal-only install (no SLACK_BOT_TOKEN): the address is the route, and the
    run says the digests wait for Slack."""
    connected_from_a_terminal(world)
    server = servers("plain")
    use(world, server)
    code, out = run_cli(world, "alerts", "--email", "ops@example.com")
    assert code == 0, out
    del world.env["SLACK_BOT_TOKEN"]
    out = world.jobs(at("2026-10-13T12:00:00"))  # Monday 12 October spiked
    assert world.code == 0 and "-> email 1" in out, out
    assert "digests: no Slack configured to post them" in out
    [spike] = [r for r in server.received if "spike" in r.message["Subject"].lower()]
    assert "12 Oct" in spike.part("plain")
    world.jobs(at("2026-10-13T13:00:00"))
    assert len([r for r in server.received if "spike" in r.message["Subject"].lower()]) == 1
    assert world.slack.calls_to("chat.postMessage") == []


def test_without_slack_or_an_address_an_alert_waits_saying_what_to_add(world: World) -> None:
    connected_from_a_terminal(world)
    del world.env["SLACK_BOT_TOKEN"]
    out = world.jobs(at("2026-10-13T12:00:00"))
    assert world.code == 1, out
    assert "no Slack is configured" in out
    assert "add one with `xai-usage alerts --email ADDRESS`" in out


def test_rotating_the_key_reseals_the_addresses_and_mail_still_goes(world: World, servers) -> None:
    import base64
    import os

    server = servers("plain")
    use(world, server)
    assert run_cli(world, "alerts", "CALERTS", "--email", ANA)[0] == 0
    new = base64.b64encode(os.urandom(32)).decode()
    world.env["XAI_USAGE_ENCRYPTION_KEY"] = f"{new},{world.env['XAI_USAGE_ENCRYPTION_KEY']}"
    code, out = run_cli(world, "rotate-key")
    assert code == 0, out
    world.env["XAI_USAGE_ENCRYPTION_KEY"] = new  # the old key is gone
    fail_sync(world)
    out = world.jobs(FAILING)
    assert world.code == 0 and "email 1" in out, out
    assert server.received[-1].message["To"] == ANA
