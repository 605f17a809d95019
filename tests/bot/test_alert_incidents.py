"""Alerts as incidents, exactly once on a flaky Slack: `jobs run --at T` against the stand-ins.

A follow-up of an incident (a sync failure's daily reminder and its "working again",
a spike that doubles) replies in the thread of its first post, whichever process
posts it; a budget's threshold and forecast of one run are one post; a post whose
answer Slack lost is looked for, at its recorded ts or in the channel, never sent
again blind.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.cli import Console, main
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import Budget, DailyCost, Delivery, PostedMessage
from storage.repo import rebuild_totals
from tests.bot.slack.conftest import BOT_TOKEN, text_of
from tests.fakes.world import ADMIN, World, at, route_alerts, subscribe

ROOT = Path(__file__).parents[2]
NO_HISTORY = "commands,chat:write,users:read,files:write,im:write,im:history"
"""A workspace that did not grant the optional channels:history and groups:history."""


def jobs_processes(world: World, when: datetime, count: int = 1) -> list[str]:
    """``jobs run --at`` in ``count`` processes of their own, started together."""
    world.clock.now = when
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "jobs", "run", "--at", when.isoformat()],
            env=world.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode in (0, 1) for p in processes), outputs
    return [out for out, _ in outputs]


def top_level(world: World, channel: str) -> list[dict]:
    return [m for m in world.slack.history(channel) if "thread_ts" not in m]


def thread(world: World, channel: str, parent: dict) -> list[dict]:
    return [m for m in world.slack.history(channel) if m.get("thread_ts") == parent["ts"]]


# -- follow-ups in the first post's thread, across processes


def test_a_failures_reminder_and_recovery_reply_in_its_thread_once_across_processes(
    world: World,
) -> None:
    route_alerts(world, "CALERTS")
    world.xai.revoke_key(DEMO_KEY)
    jobs_processes(world, at("2026-10-21T06:01:00"))  # one process: the failure's first post
    [first] = top_level(world, "CALERTS")
    assert text_of(first).startswith("“Production — xAI” stopped syncing")
    # A day on, other processes (two at once where they share PostgreSQL) find that post
    # in the store and remind in its thread, once.
    together = 2 if "postgresql" in world.env["DATABASE_URL"] else 1
    jobs_processes(world, at("2026-10-22T06:05:00"), together)
    world.jobs(at("2026-10-22T06:10:00"))  # and this one: nothing more
    [reminder] = thread(world, "CALERTS", first)
    assert "still not syncing (1 day since this alert)" in text_of(reminder)
    assert "reply_broadcast" not in reminder  # a reminder stays in the thread
    assert top_level(world, "CALERTS") == [first]
    # Fixed: "working again" in the same thread, shown to the channel too, once.
    world.xai.add_key(DEMO_KEY, DEMO_TEAM_ID)
    world.clock.now = at("2026-10-22T10:00:00")
    assert main(["sync"], environ=world.env, console=Console(out=io.StringIO())) == 0
    jobs_processes(world, at("2026-10-22T10:05:00"), together)
    world.jobs(at("2026-10-22T10:10:00"))
    reminder, recovered = thread(world, "CALERTS", first)
    assert "is working again" in text_of(recovered) and recovered["reply_broadcast"] is True
    with world.runtime().db.session() as session:  # where each landed, as recorded
        posts = {
            p.key.partition("@")[0]: p
            for p in session.scalars(select(PostedMessage))
            if p.key.endswith("@#CALERTS")
        }
    incident = next(k for k in posts if k.startswith("syncfail:"))
    assert len(posts) == 3 and {p.incident for p in posts.values()} == {incident}
    assert (posts[incident].ts, posts[incident].thread_ts) == (first["ts"], None)
    assert all(p.thread_ts == first["ts"] for k, p in posts.items() if k != incident)


def test_a_spike_that_doubles_replies_in_the_spikes_thread(world: World) -> None:
    route_alerts(world, "CALERTS")
    world.jobs(at("2026-10-13T12:00:00"))  # Monday 12 October spiked
    [spike] = top_level(world, "CALERTS")
    assert text_of(spike).startswith("Spend spike: “Production — xAI” on Mon 12 Oct 2026")
    with world.runtime().db.transaction() as session:  # a late bill doubles the day
        session.execute(
            update(DailyCost)
            .where(DailyCost.day == date(2026, 10, 12))
            .values(cost=DailyCost.cost + DailyCost.cost)
        )
        rebuild_totals(session, world.workspace_id)
    world.jobs(at("2026-10-13T12:10:00"))
    world.jobs(at("2026-10-13T12:20:00"))
    [doubled] = thread(world, "CALERTS", spike)
    assert text_of(doubled).startswith("Spend spike doubled: “Production — xAI”")
    assert "reply_broadcast" not in doubled
    assert top_level(world, "CALERTS") == [spike]


# -- a budget's alerts of one run: one post


def test_a_budgets_threshold_and_forecast_due_together_are_one_post(world: World) -> None:
    world.slack.add_channel("CBUDGET", "budget")
    with world.runtime().db.transaction() as session:
        session.add(
            Budget(
                workspace_id=world.workspace_id,
                amount_usd=Decimal(200),
                channel_id="CBUDGET",
                created_by=ADMIN,
            )
        )
    out = world.jobs(at("2026-10-13T12:00:00"))  # set mid-month, over budget, heading further
    [post] = budget_posts(world)
    assert text_of(post).startswith("Over budget:"), out
    assert "*Month-end forecast*" in text_of(post) and " over (at the pace" in text_of(post)
    with world.runtime().db.session() as session:
        done = dict(
            session.execute(
                select(Delivery.key, Delivery.outcome).where(Delivery.key.like("budget:%:forecast"))
            ).all()
        )
    [said] = done.values()
    assert said.startswith("said with budget:") and said.endswith(":100")
    world.jobs(at("2026-10-14T12:00:00"))  # the forecast is not said again on its own
    assert budget_posts(world) == [post]


def budget_posts(world: World) -> list[dict]:
    """The budget's posts in its channel (the spike of 12 October goes there too)."""
    return [m for m in world.slack.history("CBUDGET") if "spike" not in text_of(m).lower()]


# -- exactly once on a flaky Slack


def test_a_digest_and_an_alert_whose_answers_slack_lost_land_exactly_once(world: World) -> None:
    route_alerts(world, "CALERTS")
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.xai.revoke_key(DEMO_KEY)
    # Slack keeps each post and the connection drops before its answer: the channel's
    # failure alert, the DM to whoever connected the team, then the digest.
    world.slack.lose_answers("chat.postMessage", times=3)
    out = world.jobs(at("2026-10-21T09:00:30"))
    assert world.code == 0, out
    assert len(top_level(world, "CALERTS")) == 1
    assert len(world.posts(ADMIN)) == 1
    assert len(world.slack.history("CCOSTS")) == 1
    assert len(world.slack.calls_to("chat.postMessage")) == 3  # none sent again
    looked = [c.params["channel"] for c in world.slack.calls_to("conversations.history")]
    assert sorted(looked) == ["CALERTS", "CCOSTS", "DADMIN"]
    assert "digests sent: 1" in out and "alerts delivered: 1" in out
    # Found where it landed: the follow-ups can reply in its thread.
    with world.runtime().db.session() as session:
        posts = {p.key.rpartition("@")[2]: p.ts for p in session.scalars(select(PostedMessage))}
    assert posts["#CALERTS"] == top_level(world, "CALERTS")[0]["ts"]
    world.jobs(at("2026-10-21T09:05:00"))
    assert len(world.slack.calls_to("chat.postMessage")) == 3


def test_without_the_history_scopes_a_lost_answer_is_posted_again_once_with_a_warning(
    world: World, capfd
) -> None:
    world.slack.add_token(BOT_TOKEN, scope=NO_HISTORY)
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.slack.lose_answers("chat.postMessage")
    capfd.readouterr()
    world.jobs(at("2026-10-21T09:00:30"))
    # At most twice, never three times (the client no longer retries a post blind), and
    # never lost; the channel's history is not read: the app may not.
    assert len(world.slack.history("CCOSTS")) == 2
    assert world.slack.calls_to("conversations.history") == []
    logged = capfd.readouterr().err
    assert "Slack's answer was lost" in logged and "it may show twice" in logged
    assert "add the optional channels:history and groups:history scopes" in logged
    assert BOT_TOKEN not in logged


class Crash(BaseException):
    """The process dies: not an error anything catches."""


def crash_after_slack_answered(world: World, monkeypatch, when: datetime) -> None:
    """The alert reaches #alerts, Slack answers and its ts is recorded, and the process
    dies before the ledger hears it was delivered."""
    from bot.ledger import Ledger

    real = Ledger.done

    def dies(self, key, *args, **kwargs):
        if key.endswith("@#CALERTS"):
            raise Crash(key)
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(Ledger, "done", dies)
    with pytest.raises(Crash):
        world.jobs(when)
    monkeypatch.setattr(Ledger, "done", real)


def test_a_takeover_finds_a_post_by_its_recorded_ts_without_reading_the_channel(
    world: World, monkeypatch
) -> None:
    world.slack.add_token(BOT_TOKEN, scope=NO_HISTORY)  # it does not need the history scopes
    route_alerts(world, "CALERTS")
    world.xai.revoke_key(DEMO_KEY)
    crash_after_slack_answered(world, monkeypatch, at("2026-10-21T06:01:00"))
    [posted] = world.slack.history("CALERTS")
    with world.runtime().db.session() as session:  # the ledger never heard
        row = session.scalar(select(Delivery).where(Delivery.key.endswith("@#CALERTS")))
    assert row.done_at is None and row.attempts == 1
    out = world.jobs(at("2026-10-21T06:12:00"))  # the dead process's lease is over
    assert world.code == 0, out
    assert world.slack.history("CALERTS") == [posted]  # not posted again
    [asked] = world.slack.calls_to("chat.getPermalink")
    assert (asked.params["channel"], asked.params["message_ts"]) == ("CALERTS", posted["ts"])
    assert world.slack.calls_to("conversations.history") == []
    assert "#CALERTS (by an earlier attempt)" in _outcome(world, "@#CALERTS")


def test_a_recorded_post_deleted_since_is_posted_again_once(world: World, monkeypatch) -> None:
    route_alerts(world, "CALERTS")
    world.xai.revoke_key(DEMO_KEY)
    crash_after_slack_answered(world, monkeypatch, at("2026-10-21T06:01:00"))
    [posted] = world.slack.history("CALERTS")
    world.slack.delete_message("CALERTS", posted["ts"])  # someone removed it
    world.jobs(at("2026-10-21T06:12:00"))
    world.jobs(at("2026-10-21T06:13:00"))
    [again] = world.slack.history("CALERTS")
    assert again["ts"] != posted["ts"] and "stopped syncing" in text_of(again)


def _outcome(world: World, suffix: str) -> str:
    with world.runtime().db.session() as session:
        return session.scalar(select(Delivery.outcome).where(Delivery.key.endswith(suffix)))
