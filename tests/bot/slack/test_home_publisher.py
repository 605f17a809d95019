"""The Home tab publisher's word that a tab is done (bot.slack.home.HomePublisher): an
answer process reports a Home tab finished only once it is sent, so one that dies
before leaves the tab to be published by serve (tests/bot/slack/test_answering.py)."""

from __future__ import annotations

import threading
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.slack.home import HomePublisher, _Publish


def wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.01)


def test_each_open_is_finished_once_when_its_tab_or_the_one_that_replaced_it_is_sent():
    publisher = HomePublisher(workers=1)
    release = threading.Event()
    sent: list[str] = []
    finished: list[str] = []

    def send(name: str, hold: bool = False):
        def go() -> None:
            if hold:
                release.wait(5)
            sent.append(name)

        return go

    publisher.submit(
        _Publish("T1", "U1", send("a", hold=True), finished=[lambda: finished.append("a")])
    )
    wait(lambda: not publisher.idle() and "a" not in sent and publisher._sending)
    # While a is in flight, b waits, and c (the same person's newer tab) takes its place.
    publisher.submit(_Publish("T1", "U1", send("b"), finished=[lambda: finished.append("b")]))
    publisher.submit(_Publish("T1", "U1", send("c"), finished=[lambda: finished.append("c")]))
    assert finished == []
    release.set()
    wait(publisher.idle)
    assert sent == ["a", "c"]  # b was never sent: c was sent for it
    assert finished == ["a", "b", "c"]
    publisher.close()


def test_a_rate_limited_tab_is_finished_after_it_is_sent_not_when_it_is_refused():
    publisher = HomePublisher(workers=1)
    finished: list[str] = []
    attempts: list[float] = []

    def send() -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            response = SlackResponse(
                client=None,
                http_verb="POST",
                api_url="views.publish",
                req_args={},
                data={"ok": False, "error": "ratelimited"},
                headers={"Retry-After": "1"},
                status_code=429,
            )
            raise SlackApiError("ratelimited", response)

    publisher.submit(_Publish("T1", "U1", send, finished=[lambda: finished.append("x")]))
    wait(lambda: len(attempts) == 1)
    time.sleep(0.2)
    assert finished == []  # refused: it waits for its Retry-After, not yet finished
    wait(lambda: finished == ["x"])
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.9
    publisher.close()
