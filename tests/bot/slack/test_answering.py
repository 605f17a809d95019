"""Answers worked out in answer processes (bot.slack.answering): the serving process
only acknowledges, and an answer process that dies loses no command silently."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.bot.slack.conftest import ADMIN, SlackApp, serving, text_of, with_demo_team
from tests.bot.slack.test_clicks import click
from tests.bot.slack.test_home import dm, open_home, posts_to, words

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)


@pytest.fixture
def answered_apart(slack_env, db, store_key):
    """The app as `serve` runs it: one answer process beside the serving one."""
    with serving(slack_env, store_key, XAI_USAGE_ANSWER_PROCESSES="1") as app:
        yield with_demo_team(app)


def answer_process(app: SlackApp, timeout: float = 30) -> int:
    """The pid of the app's answer process, once it is ready."""
    answerers = app.service.answerers
    assert answerers is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [a for a in answerers.answerers if a.ready and not a.dead]
        if ready:
            return ready[0].process.pid
        time.sleep(0.05)
    raise AssertionError("no answer process became ready")


def test_commands_and_clicks_are_answered_in_the_answer_process(
    answered_apart: SlackApp, monkeypatch
) -> None:
    app = answered_apart
    pid = answer_process(app)
    here: list[str] = []  # what the serving process did after its acks
    after_ack = app.service.after_ack

    def noted(work, *args, **how) -> None:
        here.append(getattr(work, "__name__", repr(work)))
        after_ack(work, *args, **how)

    monkeypatch.setattr(app.service, "after_ack", noted)

    response, url_id = app.command("month --by model")
    assert response.status_code == 200
    report = app.reply(url_id, timeout=20)
    assert "grok" in text_of(report) and "Total" in text_of(report)

    clicked = click(app, "xu:view:day", "month --by day")
    by_day = app.reply(clicked, timeout=20)
    assert "By day" in text_of(by_day) or "Day" in text_of(by_day)
    assert by_day.get("replace_original") is True  # a view button replaces its message
    shared = app.reply(click(app, "xu:share:month", "month --by model"), timeout=20)
    assert shared["response_type"] == "in_channel" and shared["replace_original"] is False
    assert f"Shared by <@{ADMIN}>" in text_of(shared)

    dm(app, "month --by model")
    app.slack.wait_for(lambda: posts_to(app, "DADMIN"), timeout=20)
    assert "Total" in text_of(posts_to(app, "DADMIN")[-1])  # typed in the DM, answered there

    opened: list[tuple] = []
    monkeypatch.setattr("bot.slack.home.opened", lambda *how: opened.append(how))
    view = open_home(app)
    assert "Month to date" in words(view) and opened == []  # built by the answer process

    # Not one answer was worked out in the serving process: a DM's channel was looked up.
    assert here == ["_direct_message"]
    assert os.getpid() != pid and answer_process(app) == pid


def test_an_answer_process_killed_mid_answer_is_replaced_and_its_person_told(
    answered_apart: SlackApp, caplog
) -> None:
    app = answered_apart
    first = answer_process(app)
    # `digest list` asks Slack who is asking (users.info) before it answers: the
    # process dies right there, with the command taken and its answer unsent.
    app.slack.after("users.info", lambda call: os.kill(first, signal.SIGKILL))
    with caplog.at_level(logging.WARNING, logger="bot.slack.answering"):
        _, url_id = app.command("digest list")
        told = app.reply(url_id, timeout=20)
        app.slack.after("users.info", None)
        assert "interrupted" in text_of(told) and "`/xai-usage digest`" in text_of(told)
        assert "ask again" in text_of(told)
        assert told.get("response_type") == "ephemeral"
        second = answer_process(app)
    assert second != first
    assert [r.getMessage() for r in caplog.records if "answer process stopped" in r.getMessage()]

    _, again = app.command("digest list")
    answer = app.reply(again, timeout=20)
    assert "interrupted" not in text_of(answer) and "digest" in text_of(answer).lower()
    assert len(app.replies(url_id)) == 1  # told once; nothing was sent again blind


def never_ready(*_args: object) -> None:
    """An answer process that cannot start (its configuration, say)."""
    raise SystemExit(3)


def test_answer_processes_that_cannot_start_leave_the_answers_to_the_serving_process(
    connected: SlackApp, caplog
) -> None:
    from bot.slack.answering import STARTS_BEFORE_GIVING_UP, AnswerProcesses

    app = connected
    with caplog.at_level(logging.WARNING, logger="bot.slack.answering"):
        answerers = AnswerProcesses(app.service, 1, target=never_ready)
        app.service.answerers = answerers
        deadline = time.monotonic() + 60
        while not answerers.given_up and time.monotonic() < deadline:
            time.sleep(0.05)
    assert answerers.given_up and answerers.answerers == []
    assert answerers.health()["running"] == 0 and "serving process" in answerers.health()["warning"]
    gave_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(gave_up) == 1 and "answered in the serving process" in gave_up[0].getMessage()
    assert answerers.failed_starts == STARTS_BEFORE_GIVING_UP

    _, url_id = app.command("month --by model", user=ADMIN)
    assert "Total" in text_of(app.reply(url_id))
    answerers.close()


def test_serve_takes_its_answer_process_with_it(tmp_path: Path) -> None:
    """`serve` killed outright (SIGKILL, no clean-up): its answer process sees the pipe
    close and ends, so no process is left behind to answer for nobody."""
    from bot.slack.answering import NICENESS
    from tests.bot.slack import test_serve

    with test_serve.SlackStandIn(team_id=test_serve.TEAM) as stand_in:
        stand_in.add_token(test_serve.BOT_TOKEN)
        env = test_serve.env.__wrapped__(tmp_path, stand_in)
        process = test_serve.start(env, "--http", "--port", "0")
        try:
            line = test_serve.wait_for_line(process, r"serving Slack \(http://")
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            deadline = time.monotonic() + 20
            answerer = None
            while answerer is None and time.monotonic() < deadline:
                for pid in children.read_text().split():
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                        answerer = int(pid)
                time.sleep(0.05)
            assert answerer is not None, "serve started no answer process"
            url = re.search(r"(http://[\d.]+:\d+)", line).group(1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                health = httpx.get(f"{url}/healthz", timeout=5).json()["answer_processes"]
                if health["running"]:
                    break
                time.sleep(0.05)
            assert health == {"running": 1, "wanted": 1}
            stat = Path(f"/proc/{answerer}/stat").read_text().rsplit(")", 1)[1].split()
            serving = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            assert int(stat[16]) == int(serving[16]) + NICENESS  # field 19: it gives way
            process.kill()
            process.wait(5)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{answerer}").exists() and time.monotonic() < deadline:
                state = Path(f"/proc/{answerer}/stat").read_text().split()[2]
                if state == "Z":
                    break  # ended; only its exit status is left for init to collect
                time.sleep(0.05)
            gone = not Path(f"/proc/{answerer}").exists()
            assert gone or Path(f"/proc/{answerer}/stat").read_text().split()[2] == "Z"
        finally:
            process.kill()


def test_a_home_tab_lost_with_its_answer_process_is_published_by_serve(
    answered_apart: SlackApp,
) -> None:
    app = answered_apart
    first = answer_process(app)

    def kill_once(call: object) -> None:
        app.slack.after("users.info", None)
        os.kill(first, signal.SIGKILL)

    app.slack.after("users.info", kill_once)
    view = open_home(app)  # the tab the person opened is there all the same
    assert "Month to date" in words(view)
    assert posts_to(app, "UADMIN") == [] and posts_to(app, "DADMIN") == []  # no "ask again"
    assert answer_process(app) != first


def test_a_form_is_opened_ahead_of_the_answers_queued_before_it(
    answered_apart: SlackApp,
) -> None:
    """Slack lets a command open its form for 3 seconds: one typed while the answer
    process is busy opens its form at once, not after the answers queued before it."""
    app = answered_apart
    answer_process(app)
    held = threading.Event()
    stuck: list[object] = []

    def slow_for_the_first_four(call: object) -> None:
        if len(stuck) < 4:
            stuck.append(call)
            held.wait(10)  # Slack slow to say who is asking: every answer thread waits

    app.slack.after("users.info", slow_for_the_first_four)
    try:
        for _ in range(5):  # four answer threads taken, one more answer queued
            app.command("digest list")
        app.slack.wait_for(lambda: len(stuck) == 4, timeout=20)
        opened = len(app.slack.calls_to("views.open"))
        began = time.monotonic()
        app.command("connect")
        app.slack.wait_for(lambda: len(app.slack.calls_to("views.open")) > opened, timeout=3)
        assert time.monotonic() - began < 3  # within the trigger's life, answers still queued
        assert app.slack.outcomes("views.open")[-1][1] == "ok"
    finally:
        held.set()
        app.slack.after("users.info", None)
