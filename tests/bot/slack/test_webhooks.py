"""Alert webhooks go to the public internet only, unless the operator allows more.

A webhook is a URL an admin types; the server then POSTs to it. Pointed at
169.254.169.254 (a cloud's metadata service), loopback or the private network,
it let anyone with ``alerts --webhook`` probe what only the server can reach,
and ``alerts list`` echoed what answered there (its status code). Refused when
set, and checked again on the address each send connects to, since a name can
resolve elsewhere by then. ``XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE=1`` allows a
receiver on a private network (these tests' receivers listen on 127.0.0.1).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.jobs import WebhookFailed
from bot.slack.delivery import SlackDelivery
from bot.slack.settings import SlackSettings
from bot.webhooks import ALLOW_PRIVATE, blocked_address
from storage.models import AlertRoute
from tests.bot.slack.conftest import BOT_TOKEN, SlackApp, text_of
from tests.bot.slack.test_forms import errors_of, open_form, submit
from tests.fakes.webhook import webhook_server

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

PRIVATE_URLS = (
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://127.0.0.1:5432/",
    "http://localhost:8080/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0:3000/hook",
    "http://100.64.0.1/hook",
    "http://[fe80::1]/hook",
)


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "127.0.0.1", "10.0.0.1", "::1", "::ffff:10.0.0.1", "224.0.0.1", "0.0.0.0"],
)
def test_what_is_not_the_public_internet(address: str) -> None:
    assert blocked_address(address) is not None


def test_what_is() -> None:
    assert blocked_address("8.8.8.8") is None
    assert blocked_address("2606:4700:4700::1111") is None


def routes(app: SlackApp) -> int:
    with app.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(AlertRoute))


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_webhook_to_a_private_address_is_refused_when_set(connected: SlackApp, url: str):
    _, url_id = connected.command(f"alerts <#CCOSTS|costs> --webhook {url}")
    reply = text_of(connected.reply(url_id))
    assert "public internet" in reply and ALLOW_PRIVATE in reply
    assert url not in reply  # the URL may be the secret; the host is enough to fix it
    assert routes(connected) == 0
    assert connected.slack.history("CCOSTS") == []  # refused before any note


def test_the_operator_may_allow_private_receivers(connected: SlackApp) -> None:
    connected.runtime.settings = replace(connected.runtime.settings, webhooks_allow_private=True)
    _, url_id = connected.command("alerts <#CCOSTS|costs> --webhook http://10.1.2.3/hook")
    assert "and to the webhook" in text_of(connected.reply(url_id))
    assert routes(connected) == 1
    assert Settings.from_env({ALLOW_PRIVATE: "1"}).webhooks_allow_private
    assert not Settings.from_env({}).webhooks_allow_private


def delivery(slack_url: str, *, allow_private: bool) -> SlackDelivery:
    settings = SlackSettings.from_env(
        {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack_url}, delivering_only=True
    )
    return SlackDelivery(
        settings,
        lambda team: BOT_TOKEN,
        pause=lambda seconds: None,
        allow_private_webhooks=allow_private,
    )


def test_the_address_is_checked_again_when_sending(slack_app: SlackApp) -> None:
    """A name that resolved to a public address when set may point home by now."""
    received: list[dict] = []

    def answer(path: str, body: bytes) -> int:
        received.append(json.loads(body))
        return 204

    with webhook_server(answer) as server:
        url = f"http://localhost:{server.server_port}/hook/secret-99"
        with pytest.raises(WebhookFailed) as refused:
            delivery(slack_app.slack.api_url, allow_private=False).webhook(url, {"kind": "spike"})
        assert received == []  # never connected
        assert "public internet" in refused.value.reason and "secret-99" not in refused.value.reason
        delivery(slack_app.slack.api_url, allow_private=True).webhook(url, {"kind": "spike"})
        assert received == [{"kind": "spike"}]


def test_metadata_addresses_are_never_sent_to(slack_app: SlackApp) -> None:
    with pytest.raises(WebhookFailed) as refused:
        delivery(slack_app.slack.api_url, allow_private=False).webhook(
            "http://169.254.169.254/latest/meta-data/", {"kind": "spike"}
        )
    assert "link-local" in refused.value.reason


def test_what_a_webhook_answered_is_not_repeated_to_anyone(slack_app: SlackApp) -> None:
    with webhook_server(lambda path, body: 503) as server:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        with pytest.raises(WebhookFailed) as failed:
            delivery(slack_app.slack.api_url, allow_private=True).webhook(url, {"kind": "spike"})
    assert "503" not in failed.value.reason and "did not take the alert" in failed.value.reason


def test_the_alerts_form_shows_the_refusal_under_the_webhook(connected: SlackApp) -> None:
    connected.slack.add_channel("CALERTS", "alerts")
    view, _ = open_form(connected, "alerts")
    errors = errors_of(
        submit(connected, view, channel="CALERTS", webhook="http://169.254.169.254/latest/")
    )
    assert list(errors) == ["webhook"] and "link-local" in errors["webhook"]
    assert routes(connected) == 0 and connected.slack.history("CALERTS") == []
