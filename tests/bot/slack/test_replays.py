"""Replays are handled once: a click sent again, an event Slack delivers again.

Slack redelivers an event it thinks went unanswered (``X-Slack-Retry-Num``),
and a signed request can be sent again within its five minutes. The same
click (same ``action_ts``, user and action) or event (same ``event_id``) runs
once, across every process sharing the store: what was seen is recorded there.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import urlencode

from bot.config import Settings
from bot.runtime import Runtime
from bot.slack.replays import SeenRequests, replay_key
from tests.bot.slack.conftest import ADMIN, TEAM, SlackApp, sign, text_of
from tests.bot.slack.test_clicks import controls


def shared_posts(app: SlackApp) -> list[dict]:
    return [
        r.payload for r in app.slack.responses if r.payload.get("response_type") == "in_channel"
    ]


def share_click(app: SlackApp, value: str) -> str:
    """A signed Share click, as one body: the same bytes can be sent again."""
    response_url = app.slack.response_url()
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": ADMIN, "team_id": TEAM},
        "api_app_id": "A0001",
        "channel": {"id": "CCOSTS", "name": "costs"},
        "container": {"type": "message", "channel_id": "CCOSTS", "is_ephemeral": True},
        "response_url": response_url,
        "trigger_id": "trig.1",
        "actions": [
            {
                "action_id": "xu:share:report",
                "block_id": "b",
                "type": "button",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def test_the_same_signed_click_sent_three_times_shares_once(connected: SlackApp) -> None:
    _, url_id = connected.command("week --by model")
    share = controls(connected.reply(url_id))["xu:share:report"]["value"]
    body = share_click(connected, share)
    headers = sign(body)
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(connected.post(body, headers)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200, 200]  # Slack needs no retry
    connected.slack.wait_for(lambda: shared_posts(connected), timeout=10)
    time.sleep(0.5)  # the others had their chance
    assert len(shared_posts(connected)) == 1
    # A new click on the same button (a new action_ts) shares again.
    connected.post(share_click(connected, share))
    connected.slack.wait_for(lambda: len(shared_posts(connected)) == 2, timeout=10)


def test_an_event_redelivered_with_x_slack_retry_num_is_answered_once(
    connected: SlackApp,
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": TEAM,
            "api_app_id": "A0001",
            "event": {
                "type": "message",
                "channel_type": "im",
                "channel": "DADMIN",
                "user": ADMIN,
                "text": "help",
                "ts": f"{time.time():.6f}",
            },
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
        }
    )
    first = {**sign(body), "Content-Type": "application/json"}
    assert connected.post(body, first).status_code == 200
    connected.slack.wait_for(lambda: connected.slack.calls_to("chat.postMessage"), timeout=10)
    for retry in ("1", "2"):
        again = {
            **sign(body),
            "Content-Type": "application/json",
            "X-Slack-Retry-Num": retry,
            "X-Slack-Retry-Reason": "http_timeout",
        }
        assert connected.post(body, again).status_code == 200
    time.sleep(0.5)
    [answer] = connected.slack.calls_to("chat.postMessage")
    assert "Commands" in text_of(answer.params)


def test_what_one_process_saw_another_sees_and_it_expires(db, store_key, tmp_path) -> None:
    env = {
        "DATABASE_URL": db.url,
        "XAI_USAGE_DATA_DIR": str(tmp_path),
        "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(store_key).decode(),
    }
    one, two = Runtime(Settings.from_env(env)), Runtime(Settings.from_env(env))
    try:
        now = [1_000_000.0]
        first = SeenRequests(one.db, clock=lambda: now[0])
        second = SeenRequests(two.db, clock=lambda: now[0])
        assert first.first_time("click:T1:U1:xu:a:1.2")
        assert not second.first_time("click:T1:U1:xu:a:1.2")  # the other process's
        assert second.first_time("click:T1:U1:xu:a:1.3")
        now[0] += SeenRequests.KEEP_FOR + 1  # long after Slack's last retry
        second.forget_expired()
        assert first.first_time("click:T1:U1:xu:a:1.2")
    finally:
        one.close()
        two.close()


def test_what_is_a_replay_of_what() -> None:
    click = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": ADMIN},
        "actions": [{"action_id": "xu:share:report", "action_ts": "1.2"}],
    }
    assert replay_key(click, TEAM) == f"click:{TEAM}:{ADMIN}:xu:share:report:1.2"
    assert replay_key({**click, "actions": [{"action_id": "x"}]}, TEAM) is None
    event = {"type": "event_callback", "team_id": TEAM, "event_id": "Ev1", "event": {}}
    assert replay_key(event, TEAM) == f"event:{TEAM}:Ev1"
    assert replay_key({"command": "/xai-usage", "text": "month"}, TEAM) is None
