"""What reaches the log: no URL with a secret in its path or query, at any level.

For a Slack incoming webhook the URL is the secret, and the HTTP libraries log
every request's full URL at INFO (httpx) and DEBUG (httpcore, urllib3).
"""

from __future__ import annotations

import json
import logging
import sys

import pytest

from bot.runtime import HideUrlSecrets, RedactSecrets
from providers.xai.sandbox import DEMO_KEY
from tests.bot.test_jobs import run_cli
from tests.conftest import xai_usage_in_process
from tests.fakes.webhook import webhook_server
from tests.fakes.world import World, at

HOOK_PATH = "/services/T0AAAAAAA/B0BBBBBBB/hooksecretpath4242"


@pytest.fixture
def webhook():
    received: list[dict] = []

    def answer(path: str, body: bytes) -> int:
        received.append({"path": path, **json.loads(body)})
        return 200

    with webhook_server(answer) as server:
        yield f"http://127.0.0.1:{server.server_port}{HOOK_PATH}?token=querysecret77", received


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_delivering_to_a_webhook_never_logs_its_url(world: World, webhook, level) -> None:
    url, received = webhook
    code, out = run_cli(world, "budget", "set", "$50", "--thresholds", "50")
    assert code == 0, out
    code, out = run_cli(world, "alerts", "CALERTS", "--webhook", url)
    assert code == 0, out
    when = at("2026-10-21T06:01:00")  # the month so far is well over $25
    world.clock.now = when
    done = xai_usage_in_process(
        {**world.env, "XAI_USAGE_LOG_LEVEL": level}, "jobs", "run", "--at", when.isoformat()
    )
    assert done.returncode == 0, done.stderr
    # Delivered for real: the threshold, saying the forecast is over budget too (one alert).
    assert [r["kind"] for r in received] == ["budget"]
    assert received[0]["covers"][0].endswith(":forecast")
    assert all(r["path"].startswith(HOOK_PATH) for r in received)
    log = done.stderr
    assert "HTTP Request: POST http://127.0.0.1" in log  # httpx's line is there, trimmed
    for secret in ("hooksecretpath4242", "querysecret77", "B0BBBBBBB"):
        assert secret not in log + done.stdout


def test_urls_in_http_library_records_keep_only_scheme_and_host() -> None:
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s"', None, None
    )
    record.args = ("POST", "https://hooks.slack.com/services/T1/B2/xyz?a=b", "HTTP/1.1 200 OK")
    assert HideUrlSecrets().filter(record)
    assert record.getMessage() == 'HTTP Request: POST https://hooks.slack.com/… "HTTP/1.1 200 OK"'
    ours = logging.LogRecord("bot.jobs", logging.INFO, __file__, 1, "see %s", None, None)
    ours.args = ("https://example.com/docs",)
    HideUrlSecrets().filter(ours)
    assert ours.getMessage() == "see https://example.com/docs"  # only the HTTP libraries


def test_a_known_secret_is_redacted_from_tracebacks_too() -> None:
    redactor = RedactSecrets(["sekrit-value-123"])
    try:
        raise ValueError("bad URL https://h/sekrit-value-123")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    redactor.filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError" in text and "sekrit-value-123" not in text


SMTP_PASSWORD = "smtp-pass/Xy7%secret"  # a slash and a percent: written %2F and %25 in the URL


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_emailing_alerts_never_logs_the_mail_servers_password(world: World, tmp_path, level):
    from urllib.parse import quote

    from tests.fakes.smtp import CertificateAuthority, SmtpStandIn

    authority = CertificateAuthority(tmp_path / "tls")
    with SmtpStandIn("smtps", authority=authority, login=("alerts", SMTP_PASSWORD)) as server:
        url = server.url("alerts", quote(SMTP_PASSWORD, safe=""))
        world.env.update(
            XAI_USAGE_SMTP_URL=url.replace(quote(SMTP_PASSWORD, safe=""), "wrong-pass-4242"),
            XAI_USAGE_SMTP_FROM="xai-usage <alerts@example.com>",
            XAI_USAGE_SMTP_CA_FILE=str(authority.ca_file),
            XAI_USAGE_LOG_LEVEL=level,
        )
        refused = xai_usage_in_process(world.env, "alerts", "CALERTS", "--email", "a@example.com")
        assert refused.returncode == 1 and "refused the login" in refused.stderr
        world.env["XAI_USAGE_SMTP_URL"] = url
        added = xai_usage_in_process(world.env, "alerts", "CALERTS", "--email", "a@example.com")
        assert added.returncode == 0, added.stderr
        world.xai.revoke_key(DEMO_KEY)
        when = at("2026-10-21T06:01:00")
        world.clock.now = when
        done = xai_usage_in_process(world.env, "jobs", "run", "--at", when.isoformat())
        assert done.returncode == 0, done.stderr
        assert len(server.received) == 2 and server.logins[-1] == ("alerts", True)
    everything = "".join(f.stdout + f.stderr for f in (refused, added, done))
    assert "sync" in done.stderr.lower()  # the log was written, at this level
    for secret in (SMTP_PASSWORD, quote(SMTP_PASSWORD, safe=""), "wrong-pass-4242", url):
        assert secret not in everything


def test_the_mail_servers_url_and_password_are_known_secrets(monkeypatch) -> None:
    from bot.mail import MailServer
    from bot.runtime import REDACTOR, configure_logging

    url = "smtps://alerts:p%40ss-word-77@smtp.example.com"
    monkeypatch.setattr(REDACTOR, "secrets", [])
    monkeypatch.setenv("XAI_USAGE_SMTP_URL", url)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("WARNING")
        assert url in REDACTOR.secrets  # the whole URL, from the environment
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    MailServer.from_env({"XAI_USAGE_SMTP_URL": url, "XAI_USAGE_SMTP_FROM": "a@example.com"})
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "login %s", None, None)
    record.args = ("p@ss-word-77",)  # the password as it is sent, decoded from the URL
    REDACTOR.filter(record)
    assert record.getMessage() == "login [redacted]"
