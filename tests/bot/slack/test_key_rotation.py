"""README's key rotation, followed while a server runs on the same store.

``rotate-key`` (run with the new key first) re-seals every secret with the new
key. A server started before that has only the old key: it used to mark every
connection ``error (credentials_unreadable)`` and alert their owners, and after
a restart the daily sync left them in error until a forced ``sync``. Its own
keys are what is missing, not anything about the connections: it now leaves
them as they are, says so once (log, ``status``, ``/healthz``), and a restart
with the new key carries on without a forced sync.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from bot.config import Settings
from bot.jobs import run_due
from bot.runtime import Runtime
from bot.slack.delivery import SlackDelivery
from bot.slack.settings import SlackSettings
from storage.crypto import Keyring, key_id
from storage.models import Connection, Delivery
from tests.bot.slack.conftest import BOT_TOKEN, SlackApp, text_of
from tests.conftest import xai_usage_in_process
from tests.fakes.webhook import webhook_server

MISSING = "does not have"
ALLOW = "XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE"


def env_with(app: SlackApp, keys: str) -> dict[str, str]:
    """The environment of a process on the same store, with ``keys`` as its key list."""
    settings = app.runtime.settings
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": settings.database_url,
        "XAI_USAGE_DATA_DIR": str(settings.data_dir),
        "XAI_USAGE_ENCRYPTION_KEY": keys,
        "XAI_USAGE_NO_PLUGINS": "1",
        "XAI_MANAGEMENT_API_URL": app.xai.url,
        "XAI_USAGE_HTTP_DEADLINE": "2",
    }


def delivery(app: SlackApp, *, allow_private: bool = False) -> SlackDelivery:
    settings = SlackSettings.from_env(
        {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": app.slack.api_url}, delivering_only=True
    )
    return SlackDelivery(
        settings,
        lambda team: BOT_TOKEN,
        pause=lambda seconds: None,
        allow_private_webhooks=allow_private,
    )


def statuses(app: SlackApp) -> list[tuple[str, str | None]]:
    with app.runtime.db.session() as session:
        return list(session.execute(select(Connection.status, Connection.status_reason)))


def rotate(app: SlackApp, store_key: bytes) -> str:
    """README's steps: a new key listed first, the old after it, then ``rotate-key``."""
    new = base64.b64encode(Keyring.generate_key()).decode()
    old = base64.b64encode(store_key).decode()
    done = xai_usage_in_process(env_with(app, f"{new},{old}"), "rotate-key")
    assert done.returncode == 0, done.stderr
    assert "Re-encrypted" in done.stdout
    return new


def test_rotating_keys_under_a_running_server_breaks_nothing(
    connected: SlackApp, store_key: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    before = statuses(connected)
    new = rotate(connected, store_key)
    new_id = key_id(base64.b64decode(new))
    caplog.set_level(logging.WARNING)
    caplog.clear()

    # The running server, still with the old key only: a sync from Slack...
    _, url_id = connected.command("sync")
    assert MISSING in text_of(connected.reply(url_id, 2, timeout=30))
    # ...`status`...
    _, url_id = connected.command("status")
    shown = text_of(connected.reply(url_id))
    assert MISSING in shown and new_id in shown
    # ...`/healthz`...
    health = httpx.get(f"{connected.url}/healthz", timeout=5)
    assert health.status_code == 200  # it serves: a balancer must not pull every replica
    assert health.json()["ok"] and new_id in health.json()["keys_missing"]
    # ...and its scheduled work, when the daily sync and alerts are due.
    outcome = run_due(
        connected.runtime, datetime.now(UTC), delivery(connected), daily_sync_at="00:00"
    )
    assert outcome.synced is None  # left to a process that has the key
    assert statuses(connected) == before  # no connection marked failed
    assert outcome.alerts == [] and outcome.pending == []  # nobody alerted
    said = [r for r in caplog.records if MISSING in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING  # said once, not per connection

    # A restart with the new key: the day's sync runs as scheduled, no forced sync.
    restarted = Runtime(Settings.from_env(env_with(connected, new)))
    try:
        outcome = run_due(restarted, datetime.now(UTC), None, daily_sync_at="00:00")
        assert outcome.synced == 1
        with restarted.db.session() as session:
            connection = session.scalar(select(Connection))
            assert (connection.status, connection.last_success_at is not None) == ("ok", True)
            assert connection.credentials_key_id == new_id
            assert session.scalar(select(Delivery).where(Delivery.key.like("syncfail%"))) is None
    finally:
        restarted.close()


def test_a_connection_failed_for_a_missing_key_recovers_at_the_next_daily_sync(
    connected: SlackApp,
) -> None:
    """As older versions left them: in error, though its key is configured now."""
    with connected.runtime.db.transaction() as session:
        session.execute(
            update(Connection).values(
                status="error",
                status_reason="credentials_unreadable",
                status_message="The stored credentials could not be decrypted.",
                error_since=datetime.now(UTC),
            )
        )
    outcome = run_due(connected.runtime, datetime.now(UTC), None, daily_sync_at="00:00")
    assert outcome.synced == 1
    assert statuses(connected) == [("ok", None)]


def test_a_webhook_sealed_with_a_key_this_process_lacks_waits_for_one_that_has_it(
    connected: SlackApp, store_key: bytes
) -> None:
    received: list[dict] = []

    def answer(path: str, body: bytes) -> int:
        received.append(json.loads(body))
        return 204

    # The receiver listens on 127.0.0.1: the operator allows that.
    connected.runtime.settings = replace(connected.runtime.settings, webhooks_allow_private=True)
    with webhook_server(answer) as server:
        url = f"http://127.0.0.1:{server.server_port}/hook/secret-5"
        _, url_id = connected.command(f"alerts <#CCOSTS|costs> --webhook {url}")
        assert "and to the webhook" in text_of(connected.reply(url_id))
        new = rotate(connected, store_key)
        with connected.runtime.db.transaction() as session:  # a sync failure to alert about
            session.execute(
                update(Connection).values(
                    status="error", status_reason="invalid_key", error_since=datetime.now(UTC)
                )
            )
        now = datetime.now(UTC)
        outcome = run_due(connected.runtime, now, delivery(connected, allow_private=True))
        assert received == []  # the old server can't open the URL: it waits, it is not lost
        assert [p for p in outcome.pending if "webhook" in p and "key" in p]
        restarted = Runtime(Settings.from_env({**env_with(connected, new), ALLOW: "1"}))
        try:
            later = now + timedelta(minutes=10)
            outcome = run_due(restarted, later, delivery(connected, allow_private=True))
        finally:
            restarted.close()
    assert [r["kind"] for r in received] == ["sync_failure"], outcome
