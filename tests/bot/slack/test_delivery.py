"""Scheduled posts: paced per channel, 429s waited out, refusals named, webhooks sent."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.jobs import ChannelUnavailable, Posted
from bot.slack.delivery import SlackDelivery
from bot.slack.settings import SlackSettings
from tests.fakes.slack_api import SlackStandIn
from tests.fakes.webhook import webhook_server

TOKEN = "xoxb-delivery-0000-test"
MESSAGE = {
    "text": "hello",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}],
}


@pytest.fixture
def slack():
    with SlackStandIn(team_id="T1") as stand_in:
        stand_in.add_token(TOKEN)
        stand_in.add_channel("CA", "a")
        stand_in.add_channel("CB", "b")
        yield stand_in


def delivery(slack: SlackStandIn, waits: list[float] | None = None) -> SlackDelivery:
    settings = SlackSettings.from_env(
        {"SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": slack.api_url}, delivering_only=True
    )
    pause = waits.append if waits is not None else (lambda seconds: None)
    # The webhook receivers here listen on 127.0.0.1: the operator allows that.
    return SlackDelivery(settings, lambda team: TOKEN, pause=pause, allow_private_webhooks=True)


def test_posts_to_one_channel_are_paced_a_second_apart(slack) -> None:
    sender = delivery(slack, None)
    sender.pause = time.sleep  # real waits: the stand-in's arrival times are the evidence
    sender.post("T1", "CA", MESSAGE)
    sender.post("T1", "CB", MESSAGE)  # another channel: no wait
    sender.post("T1", "CA", MESSAGE)
    first_a, b, second_a = (call.at for call in slack.calls_to("chat.postMessage"))
    assert second_a - first_a >= 0.99  # one message a second per channel, however loaded
    assert b - first_a < second_a - first_a  # the other channel did not wait its turn


def test_a_rate_limit_is_waited_out_and_the_post_goes_through(slack) -> None:
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    delivery(slack).post("T1", "CA", MESSAGE)
    assert len(slack.calls_to("chat.postMessage")) == 2  # refused once, then delivered


@pytest.mark.parametrize(
    "channel, error",
    [("CGONE", "channel_not_found"), ("COUT", "not_in_channel"), ("COLD", "is_archived")],
)
def test_a_channel_slack_refuses_is_named(slack, channel, error) -> None:
    slack.add_channel("COUT", "out", is_member=False)
    slack.add_channel("COLD", "old", is_archived=True)
    with pytest.raises(ChannelUnavailable) as caught:
        delivery(slack).post("T1", channel, MESSAGE)
    assert caught.value.error == error and caught.value.channel == channel


def test_alerts_reach_a_webhook_as_json() -> None:
    received: list[dict] = []

    def answer(path: str, body: bytes) -> int:
        received.append(json.loads(body))
        return 204

    with webhook_server(answer) as server, SlackStandIn() as slack:
        delivery(slack).webhook(
            f"http://127.0.0.1:{server.server_port}/hook",
            {"kind": "budget", "key": "budget:1:2026-11:80"},
        )
    assert received == [{"kind": "budget", "key": "budget:1:2026-11:80"}]


# -- finding an earlier attempt's post


SINCE = datetime.now(UTC) - timedelta(minutes=1)


def test_a_keyed_post_is_found_in_its_channel_and_nowhere_else(slack) -> None:
    sender = delivery(slack)
    sender.post("T1", "CA", MESSAGE, key="digest:1:2026-11-23")
    [posted] = slack.history("CA")
    assert posted["metadata"] == {
        "event_type": "xai_usage_delivery",
        "event_payload": {"key": "digest:1:2026-11-23"},
    }
    # found where it is, so a follow-up can reply in its thread
    assert sender.posted("T1", "CA", "digest:1:2026-11-23", SINCE) == Posted("CA", posted["ts"])
    assert sender.posted("T1", "CA", "digest:2:2026-11-23", SINCE) is False  # another key
    assert sender.posted("T1", "CB", "digest:1:2026-11-23", SINCE) is False  # another channel
    # posted before the work began: an older message is not this attempt's
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert sender.posted("T1", "CA", "digest:1:2026-11-23", later) is False


def test_the_search_pages_through_a_busy_channel(slack) -> None:
    sender = delivery(slack)
    first = sender.post("T1", "CA", MESSAGE, key="alert:budget:1")
    for _ in range(450):  # then a busy morning: the post is on the third page
        sender.post("T1", "CA", MESSAGE)
    assert sender.posted("T1", "CA", "alert:budget:1", SINCE) == first
    pages = slack.calls_to("conversations.history")
    assert len(pages) == 3 and all(p.params["limit"] in ("200", 200) for p in pages)


def test_without_the_history_scopes_it_cannot_tell_and_says_how_to_fix_it(slack, caplog) -> None:
    narrow = "xoxb-delivery-0000-narrow"
    slack.add_token(narrow, scope="commands,chat:write,users:read")
    settings = SlackSettings.from_env(
        {"SLACK_BOT_TOKEN": narrow, "SLACK_API_URL": slack.api_url}, delivering_only=True
    )
    sender = SlackDelivery(settings, lambda team: narrow, pause=lambda seconds: None)
    sender.post("T1", "CA", MESSAGE, key="digest:1:2026-11-23")
    with caplog.at_level("WARNING"):
        assert sender.posted("T1", "CA", "digest:1:2026-11-23", SINCE) is None
    assert "channels:history and groups:history" in caplog.text
    assert narrow not in caplog.text
    # The scopes are optional: a workspace that did not grant them is never asked for history.
    assert slack.calls_to("conversations.history") == []


def test_a_webhook_that_refuses_or_fails_raises_without_naming_its_url(slack) -> None:
    from bot.jobs import WebhookFailed

    waits: list[float] = []
    with webhook_server(lambda path, _body: 403 if "refuse" in path else 502) as server:
        base = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(WebhookFailed) as refused:
            delivery(slack, waits).webhook(f"{base}/refuse/secret-77", {"kind": "spike"})
        # What it answered is the log's, never the reason's (shown by `alerts list`).
        assert str(refused.value) == "did not take the alert" and waits == []  # not asked again
        with pytest.raises(WebhookFailed) as failed:
            delivery(slack, waits).webhook(f"{base}/down/secret-77", {"kind": "spike"})
        assert str(failed.value) == "did not take the alert" and waits == [
            0.5,
            1.0,
        ]  # none after the last
        server.shutdown()
        server.server_close()  # nobody listens there any more
        with pytest.raises(WebhookFailed) as silent:
            delivery(slack).webhook(f"{base}/gone/secret-77", {"kind": "spike"})
        assert "did not answer" in str(silent.value)
    for caught in (refused, failed, silent):
        assert "secret-77" not in str(caught.value) + caught.value.reason


# -- a lost answer: a post is never sent again blind, anything else is


def test_a_post_whose_answer_was_lost_is_not_sent_again_by_the_client(slack) -> None:
    from bot.jobs import AnswerLost

    slack.lose_answers("chat.postMessage")
    with pytest.raises(AnswerLost):
        delivery(slack).post("T1", "CA", MESSAGE, key="digest:1:2026-11-23")
    assert len(slack.calls_to("chat.postMessage")) == 1  # Slack kept it; nothing resent it
    assert len(slack.history("CA")) == 1


def test_a_lost_answer_to_anything_but_a_post_is_asked_again(slack) -> None:
    sender = delivery(slack)
    posted = sender.post("T1", "CA", MESSAGE)
    slack.lose_answers("chat.getPermalink")  # a question: asking twice changes nothing
    assert sender.exists("T1", posted) is True
    assert len(slack.calls_to("chat.getPermalink")) == 2


def test_a_recorded_post_is_confirmed_without_any_scope(slack) -> None:
    sender = delivery(slack)
    posted = sender.post("T1", "CA", MESSAGE)
    assert sender.exists("T1", posted) is True
    slack.delete_message("CA", posted.ts)
    assert sender.exists("T1", posted) is False
