"""`xai-usage jobs run --at T`, moving through days: digests, alerts, exactly once.

The xAI stand-in serves costs anchored to a fixed day, so history does not
shift as the clock moves; the Slack stand-in records every post.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.pool import Pool

from bot.cli import Console, main
from bot.jobs import latest_occurrence
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import (
    AlertRoute,
    Budget,
    Connection,
    DailyCost,
    Delivery,
    DigestSubscription,
    new_uid,
)
from tests.bot.slack.conftest import BOT_TOKEN, text_of
from tests.fakes.processes import run_together
from tests.fakes.world import ADMIN, World, at, route_alerts, subscribe

ROOT = Path(__file__).parents[2]


def test_the_schedule_follows_local_time_across_daylight_saving() -> None:
    # Europe/London leaves summer time on Sunday 25 October 2026.
    before = latest_occurrence("day", "09:00", "Europe/London", at("2026-10-24T08:30:00"))
    after = latest_occurrence("day", "09:00", "Europe/London", at("2026-10-26T09:30:00"))
    assert before.astimezone(UTC) == at("2026-10-24T08:00:00")  # 09:00 BST
    assert after.astimezone(UTC) == at("2026-10-26T09:00:00")  # 09:00 GMT
    weekly = latest_occurrence("week", "09:00", "Europe/London", at("2026-10-28T12:00:00"))
    assert weekly.date() == date(2026, 10, 26)  # the Monday
    monthly = latest_occurrence("month", "08:00", "UTC", at("2026-11-01T07:59:00"))
    assert monthly.date() == date(2026, 10, 1)


def test_a_daily_digest_arrives_on_time_once_across_a_clock_change(world: World) -> None:
    subscribe(world, at_time="09:00", tz="Europe/London", every="day")
    world.jobs(at("2026-10-24T07:59:00"))
    assert world.posts("CCOSTS") == []  # 08:59 in London: not yet
    world.jobs(at("2026-10-24T08:00:30"))
    world.jobs(at("2026-10-24T08:05:00"))  # a later run, or another process: no repeat
    assert len(world.posts("CCOSTS")) == 1
    assert "Fri 23 Oct 2026" in text_of(world.posts("CCOSTS")[0])  # yesterday, a whole UTC day
    world.jobs(at("2026-10-25T08:00:30"))  # 08:00 GMT: summer time has ended, not 09:00 yet
    assert len(world.posts("CCOSTS")) == 1
    world.jobs(at("2026-10-25T09:00:30"))
    assert len(world.posts("CCOSTS")) == 2
    assert "Sat 24 Oct 2026" in text_of(world.posts("CCOSTS")[1])


def test_weekly_and_monthly_digests_come_once_each_across_a_month_end(world: World) -> None:
    subscribe(world, at_time="09:00", tz="Europe/London", every="week")
    subscribe(world, at_time="09:00", tz="Europe/London", every="month")
    days = [date(2026, 10, 23) + timedelta(days=n) for n in range(12)]  # 23 Oct to 3 Nov
    titles = []
    for day in days:
        for hour in ("08:00:30", "09:00:30", "15:00:00"):  # three runs a day
            before = len(world.posts("CCOSTS"))
            world.jobs(at(f"{day.isoformat()}T{hour}"))
            titles += [(day.day, hour, p["text"]) for p in world.posts("CCOSTS")[before:]]
    heads = [(day, hour, text.split(":")[0]) for day, hour, text in titles]
    assert heads == [
        # Monday 26 Oct, 09:00 London (BST ended the day before): the week to Sunday
        (26, "09:00:30", "Weekly xAI spend · 19 Oct–25 Oct 2026"),
        # Sunday 1 Nov, 09:00 London = 09:00 UTC: the whole of October
        (1, "09:00:30", "Monthly xAI spend · October 2026"),
        # Monday 2 Nov: a week across the month end
        (2, "09:00:30", "Weekly xAI spend · 26 Oct–1 Nov 2026"),
    ], titles


def test_a_digest_missed_while_down_is_caught_up_within_12_hours(world: World) -> None:
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.jobs(at("2026-10-24T20:30:00"))  # the bot was down at 09:00: still sent
    world.jobs(at("2026-10-26T08:00:00"))  # Sunday's was missed by 23 h: too stale, skipped
    days = [text_of(p) for p in world.posts("CCOSTS")]
    assert len(days) == 1 and "Fri 23 Oct 2026" in days[0]


def test_the_daily_sync_runs_once_a_day_after_its_hour(world: World) -> None:
    out = world.jobs(at("2026-10-21T06:00:10"))
    assert "daily sync: 1 connection\n" in out
    again = world.jobs(at("2026-10-21T06:30:00"))
    assert "not due, or already done" in again


def test_budget_thresholds_alert_once_each_on_the_day_they_are_crossed(world: World) -> None:
    runtime = world.runtime()
    with runtime.db.transaction() as session:
        session.add(
            Budget(
                workspace_id=world.workspace_id,
                amount_usd=Decimal(600),
                thresholds="50,80,100",
                channel_id="CALERTS",
                created_by=ADMIN,
            )
        )

    def month_to_date(day: int) -> Decimal:
        """The store's own sum, as it stands (today is partial until tomorrow's sync)."""
        with runtime.db.session() as session:
            total = session.scalar(
                select(func.sum(DailyCost.cost)).where(
                    DailyCost.day >= date(2026, 10, 1), DailyCost.day <= date(2026, 10, day)
                )
            )
        return total or Decimal(0)

    titles: dict[int, list[str]] = {}
    seen: dict[int, Decimal] = {0: Decimal(0)}  # the month to date each run saw
    for day in range(1, 32):  # a run at noon every day of October
        before = len(world.posts("CALERTS"))
        world.jobs(at(f"2026-10-{day:02d}T12:00:00"))
        titles[day] = [p["text"].split(":")[0] for p in world.posts("CALERTS")[before:]]
        seen[day] = month_to_date(day)
    # With no alert route, the spike goes to the channel of the first budget too
    assert titles[13] == ["Spend spike"]
    sent = [(day, title) for day, ts in titles.items() for title in ts if title != "Spend spike"]
    kinds = [
        "forecast"
        if title.startswith("Forecast over the $600.00 budget for October 2026")
        else "over"
        if title.startswith("Over budget")
        else re.search(r"budget used in October 2026 \(passed (\d+)%\)", title).group(1)
        for _, title in sent
    ]
    assert kinds == ["forecast", "50", "80", "over"], sent
    # each threshold alerted by the first run whose month to date reached it
    for (day, _), share in zip(sent[1:], (50, 80, 100), strict=True):
        assert seen[day - 1] < Decimal(600) * share / 100 <= seen[day], (day, share)


def test_a_spike_is_found_once_and_not_repeated(world: World) -> None:
    route_alerts(world, "CALERTS")
    for day in (13, 14, 15, 16):  # Monday 12 October is among the finished days checked
        world.jobs(at(f"2026-10-{day:02d}T12:00:00"))
    spikes = [text_of(p) for p in world.posts("CALERTS") if "spike" in text_of(p).lower()]
    assert len(spikes) == 1
    assert "12 Oct" in spikes[0] and "grok-4-0709" in spikes[0]


def test_a_revoked_key_alerts_once_and_recovers_once(world: World) -> None:
    route_alerts(world, "CALERTS")
    world.xai.revoke_key(DEMO_KEY)
    world.jobs(at("2026-10-21T06:01:00"))  # the daily sync fails: the connection needs a person
    world.jobs(at("2026-10-21T06:02:00"))
    world.jobs(at("2026-10-22T06:01:00"))  # another day: still one alert, and a reminder
    failures = [p for p in world.posts("CALERTS") if "Production — xAI" in text_of(p)]
    first, reminder = failures
    assert "thread_ts" not in first and reminder["thread_ts"] == first_ts(world, "CALERTS")
    assert "/xai-usage update-key" in text_of(first)  # says how to fix it
    assert "still not syncing" in text_of(reminder)
    # and the person who connected it heard directly, reminded in the DM's thread
    assert ["thread_ts" in p for p in world.posts(ADMIN)] == [False, True]
    world.xai.add_key(DEMO_KEY, DEMO_TEAM_ID)  # a new key
    out = io.StringIO()
    world.clock.now = at("2026-10-22T10:00:00")
    main(["sync"], environ=world.env, console=Console(out=out, err=out))  # a forced sync succeeds
    world.jobs(at("2026-10-22T10:01:00"))
    world.jobs(at("2026-10-22T10:02:00"))
    recovered = [p for p in world.posts("CALERTS") if "is working again" in text_of(p)]
    assert len(recovered) == 1, out.getvalue()
    # in the failure's thread, and shown in the channel too
    assert recovered[0]["thread_ts"] == first_ts(world, "CALERTS")
    assert recovered[0]["reply_broadcast"] in (True, "true", "1")


def test_a_channel_the_bot_left_pauses_the_digest_and_tells_its_creator(world: World) -> None:
    world.slack.add_channel("CGONE", "gone", is_member=False)
    runtime = world.runtime()
    with runtime.db.transaction() as session:
        session.add(
            DigestSubscription(
                workspace_id=world.workspace_id,
                channel_id="CGONE",
                at_time="09:00",
                tz="UTC",
                created_by=ADMIN,
                created_at=world.clock.now,
            )
        )
    world.jobs(at("2026-10-21T09:00:30"))
    world.jobs(at("2026-10-22T09:00:30"))
    with runtime.db.session() as session:
        sub = session.scalar(select(DigestSubscription))
    assert sub.paused_reason and "invite me back" in sub.paused_reason
    assert len(world.slack.calls_to("chat.postMessage")) == 2  # one refused post, one DM
    assert "/invite @xai-usage" in text_of(world.posts(ADMIN)[0])


def test_processes_started_together_deliver_each_digest_once(world: World) -> None:
    if "postgresql" not in world.env["DATABASE_URL"]:
        pytest.skip("several processes share one database in production only on PostgreSQL")
    channels = ("CCOSTS", "CTEAM1", "CTEAM2")
    for channel in channels:
        world.slack.add_channel(channel, channel.lower())
        subscribe(world, channel, at_time="09:00", tz="UTC", every="day")
    when = at("2026-10-21T09:00:30").isoformat()
    world.clock.now = at("2026-10-21T09:00:30")
    outputs = run_together(["-m", "bot.cli", "jobs", "run", "--at", when], 4, env=world.env)
    assert all(code == 0 for code, _, _ in outputs), outputs
    posted = [len(world.posts(channel)) for channel in channels]
    assert posted == [1, 1, 1]  # three digests, four processes, no repeats
    syncs = sum("daily sync: 1 connection" in out for _, out, _ in outputs)
    assert syncs == 1


def test_work_a_dead_process_claimed_is_done_by_the_next_run_once(world: World) -> None:
    from bot.ledger import Ledger

    first = subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.slack.add_channel("CTEAM", "team")
    second = subscribe(world, "CTEAM", at_time="09:00", tz="UTC", every="day")
    when = at("2026-10-21T09:00:30")
    runtime = world.runtime()
    # A process claimed both digests, posted the first, and died before the second.
    dead = Ledger(runtime.db, owner="dead-process", clock=lambda: when)
    keys = [f"digest:{first}:2026-10-21", f"digest:{second}:2026-10-21"]
    assert set(dead.claim_many(keys, lease=timedelta(minutes=10))) == set(keys)
    dead.done(keys[0])
    world.jobs(at("2026-10-21T09:05:00"))  # its lease still holds: nobody steps in
    assert world.posts("CTEAM") == []
    world.jobs(at("2026-10-21T09:11:00"))  # the lease ran out: the next run finishes the work
    world.jobs(at("2026-10-21T09:12:00"))
    assert len(world.posts("CTEAM")) == 1  # the second digest, once
    assert world.posts("CCOSTS") == []  # the first is not repeated


def _killed_after_slack_took_the_post(world: World, when: datetime) -> None:
    """``jobs run`` in its own process, killed (SIGKILL) once Slack has the
    message and before the process hears back: the ledger never learns."""
    process: list[subprocess.Popen] = []
    world.slack.after("chat.postMessage", lambda call: process[0].kill())
    world.clock.now = when
    process.append(
        subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "jobs", "run", "--at", when.isoformat()],
            env=world.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    out, err = process[0].communicate(timeout=120)
    world.slack.after("chat.postMessage", None)
    assert process[0].returncode == -signal.SIGKILL, (out, err)


def test_a_digest_slack_took_from_a_killed_process_is_not_posted_again(world: World) -> None:
    from bot.jobs import EARLIER_POST

    sub = subscribe(world, at_time="09:00", tz="UTC", every="day")
    _killed_after_slack_took_the_post(world, at("2026-10-21T09:00:30"))
    assert len(world.posts("CCOSTS")) == 1  # Slack has it; the ledger does not know
    world.jobs(at("2026-10-21T09:05:00"))  # the dead process's lease still holds
    out = world.jobs(at("2026-10-21T09:12:00"))  # taken over: looked for, found, not repeated
    assert len(world.posts("CCOSTS")) == 1, out
    history = world.slack.calls_to("conversations.history")
    assert [c.params["channel"] for c in history] == ["CCOSTS"]
    with world.runtime().db.session() as session:
        row = session.get(Delivery, f"digest:{sub}:2026-10-21")
    assert row.done_at is not None and row.outcome == EARLIER_POST and row.attempts == 2
    world.jobs(at("2026-10-22T09:00:30"))  # the next day is a first attempt: no lookup
    assert len(world.posts("CCOSTS")) == 2
    assert len(world.slack.calls_to("conversations.history")) == 1


def test_the_posts_of_a_run_that_dies_midway_are_recorded_for_their_corrections(
    world: World, monkeypatch
) -> None:
    """A run records its digests' posts (where they are, what they said) as it goes, so
    the posts made before a process dies can still be corrected (bot.posts)."""
    import bot.jobs
    from storage.models import PostedMessage

    for n in range(3):  # each in its own channel: no pacing to wait out
        world.slack.add_channel(f"CRUN{n}", f"run{n}")
        subscribe(world, f"CRUN{n}", at_time="09:00", tz="UTC", every="day")
    monkeypatch.setattr(bot.jobs, "RECORD_POSTS_EVERY", 1)
    post_once, posted = bot.jobs._post_once, []

    def dies_before_the_third(*args, **kwargs):
        if len(posted) == 2:
            raise KeyboardInterrupt  # the process stops here, as a kill would stop it
        posted.append(args[2])
        return post_once(*args, **kwargs)

    monkeypatch.setattr(bot.jobs, "_post_once", dies_before_the_third)
    world.jobs(at("2026-10-21T09:00:30"))
    assert world.code != 0  # stopped before its end
    with world.runtime().db.session() as session:
        recorded = {row.channel_id for row in session.query(PostedMessage)}
    assert recorded == set(posted) and len(recorded) == 2


def test_a_revoked_key_alert_from_a_killed_process_reaches_the_channel_once(
    world: World,
) -> None:
    route_alerts(world, "CALERTS")
    world.xai.revoke_key(DEMO_KEY)
    # the daily sync finds the key revoked, the alert reaches the channel, the process dies
    _killed_after_slack_took_the_post(world, at("2026-10-21T06:01:00"))
    assert len(world.posts("CALERTS")) == 1 and world.posts(ADMIN) == []
    world.jobs(at("2026-10-21T06:12:00"))
    # the channel's alert is found, not repeated; the DM the dead process never sent goes out
    assert len(world.posts("CALERTS")) == 1
    assert len(world.posts(ADMIN)) == 1
    assert "revoked" in text_of(world.posts(ADMIN)[0]).lower()


def test_without_the_history_scopes_a_killed_process_costs_one_repeat_not_a_loss(
    world: World, capfd
) -> None:
    world.slack.add_token(BOT_TOKEN, scope="commands,chat:write,users:read")
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    _killed_after_slack_took_the_post(world, at("2026-10-21T09:00:30"))
    capfd.readouterr()
    world.jobs(at("2026-10-21T09:12:00"))
    assert len(world.posts("CCOSTS")) == 2  # at least once: never lost
    logged = capfd.readouterr().err  # the CLI's log goes to stderr
    assert "add the optional channels:history and groups:history scopes" in logged
    assert BOT_TOKEN not in logged
    world.jobs(at("2026-10-21T09:30:00"))
    assert len(world.posts("CCOSTS")) == 2  # and done after that


# -- the same setup from a terminal


def run_cli(world: World, *words: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(words), environ=world.env, console=Console(out=out, err=out))
    return code, out.getvalue()


def backdate_digests(world: World, when: datetime) -> None:
    """The CLI stamps a digest with the real time; move it to the test's calendar."""
    with world.runtime().db.transaction() as session:
        session.execute(update(DigestSubscription).values(created_at=when))


def test_a_digest_set_up_in_a_terminal_is_announced_then_delivered(world: World) -> None:
    code, out = run_cli(world, "digest", "add", "CCOSTS", "--at", "09:00", "--tz", "UTC")
    assert code == 0, out
    assert "Digest 1: CCOSTS, every day at 09:00 (UTC)" in out
    assert "`xai-usage digest remove 1` stops it" in out
    [note] = world.posts("CCOSTS")
    assert note["text"].startswith(":calendar: An admin set up a spend digest here")
    with world.runtime().db.session() as session:
        sub = session.scalar(select(DigestSubscription))
    assert sub.created_by.startswith("terminal:")
    backdate_digests(world, at("2026-10-20T12:00:00"))
    world.jobs(at("2026-10-21T09:00:30"))
    digest = world.posts("CCOSTS")[1]
    assert digest["text"].startswith("Daily xAI spend · Tue 20 Oct 2026: $")
    code, out = run_cli(world, "digest", "list")
    assert (code, out.split()[:3]) == (0, ["1", "CCOSTS", "every"])


def test_a_repeat_saved_before_repeats_were_refused_is_not_posted_again(world: World) -> None:
    """A store from before migration 0063 may hold two digests that post the same thing
    at the same time: the channel gets it once, and `digest list` says which is the
    repeat, that it is not posted, and how to remove it."""
    first = subscribe(world, at_time="09:00", tz="UTC", every="day")
    repeat = subscribe(world, at_time="09:00", tz="UTC", every="day")
    later = subscribe(world, at_time="10:00", tz="UTC", every="day")
    world.jobs(at("2026-10-21T10:00:30"))
    posted = [text_of(p) for p in world.posts("CCOSTS")]
    assert len(posted) == 2, posted  # 09:00 once, and 10:00
    assert all(text.startswith("Daily xAI spend · Tue 20 Oct 2026: $") for text in posted)
    world.jobs(at("2026-10-21T10:05:00"))
    assert len(world.posts("CCOSTS")) == 2
    code, out = run_cli(world, "digest", "list")
    lines = {int(w[0]): line for line in out.splitlines() if (w := line.split()) and w[0].isdigit()}
    assert code == 0 and set(lines) == {first, repeat, later}, out
    assert (
        f"(repeats digest {first}, not posted: `xai-usage digest remove {repeat}` removes it)"
        in lines[repeat]
    )
    assert "repeats" not in lines[first] + lines[later]


def test_a_terminal_digest_where_the_bot_cannot_post_is_not_saved(world: World) -> None:
    world.slack.add_channel("CSECRET", "secret", is_member=False)
    code, out = run_cli(world, "digest", "add", "CSECRET")
    assert code == 1
    assert "I can't post in CSECRET: invite me first with `/invite @xai-usage`" in out
    code, out = run_cli(world, "digest", "add", "#costs")
    assert code == 1 and "give the channel's id" in out
    assert run_cli(world, "digest", "list")[1].startswith("No digests yet")


def test_budgets_and_alert_routes_from_a_terminal_reach_slack(world: World) -> None:
    code, out = run_cli(world, "budget", "set", "$50", "--channel", "CALERTS", "--thresholds", "50")
    assert code == 0 and "Budget 1 for all connections: $50.00 a month, alerts at 50% and" in out, (
        out
    )
    code, out = run_cli(world, "alerts", "CALERTS", "--connection", "production — xai")
    assert code == 0 and out.strip() == "Alerts for “production — xai” now go to CALERTS."
    assert run_cli(world, "budget", "list")[1].split()[:4] == ["1", "all", "connections,", "$50.00"]
    world.jobs(at("2026-10-21T06:01:00"))  # the month so far is well over $25
    budget_alerts = [p for p in world.posts("CALERTS") if "50%" in text_of(p)]
    assert len(budget_alerts) == 1
    code, out = run_cli(world, "budget", "remove", "1")
    assert code == 0 and run_cli(world, "budget", "list")[1].startswith("No budgets yet")


def test_a_terminal_digest_that_gets_paused_says_so_in_its_list(world: World) -> None:
    assert run_cli(world, "digest", "add", "CCOSTS", "--tz", "UTC")[0] == 0
    backdate_digests(world, at("2026-10-20T12:00:00"))
    world.slack.add_channel("CCOSTS", "costs", is_member=False)  # the bot was removed
    world.jobs(at("2026-10-21T09:00:30"))
    assert world.slack.calls_to("chat.postMessage")[-1].params["channel"] == "CCOSTS"
    code, out = run_cli(world, "digest", "list")
    assert code == 0 and "paused: not_in_channel" in out and "/invite @xai-usage" in out


def test_a_webhook_set_in_a_terminal_is_sealed_and_never_echoed(world: World) -> None:
    url = "https://hooks.example.com/T000/very-secret-token-4242"
    code, out = run_cli(world, "alerts", "CALERTS", "--webhook", url)
    assert (
        code == 0
        and out.strip() == "Alerts for all connections now go to CALERTS and to the webhook."
    )
    assert "very-secret-token-4242" not in out
    runtime = world.runtime()
    with runtime.db.engine.connect() as conn:
        dumped = "\n".join(repr(row) for row in conn.execute(select(AlertRoute.__table__)))
    assert "very-secret-token-4242" not in dumped and "CALERTS" in dumped


# -- every alert arrives, or someone is told why not


def first_ts(world: World, channel: str) -> str:
    """The ts of the first message Slack took in ``channel``."""
    return world.slack.history(channel)[0]["ts"]


def alert_posts(world: World, channel: str, words: str) -> list[dict]:
    """Messages Slack took in ``channel`` (refused posts are not there)."""
    return [m for m in world.slack.history(channel) if words in text_of(m)]


def connected_from_a_terminal(world: World) -> None:
    """Nobody in Slack connected the team: no one to DM."""
    with world.runtime().db.transaction() as session:
        session.execute(update(Connection).values(created_by="terminal:ops"))


def test_an_alert_with_nowhere_to_go_is_kept_until_a_route_is_set(world: World) -> None:
    connected_from_a_terminal(world)
    out = world.jobs(at("2026-10-13T12:00:00"))  # Monday 12 October spiked
    assert world.code == 1, out
    assert "alerts pending, kept for the next run: 1" in out
    assert "spike:" in out and "nowhere to send it" in out and "/xai-usage alerts #channel" in out
    assert "alerts delivered" not in out
    assert world.slack.calls_to("chat.postMessage") == []
    # Days later the spike is no longer among the days checked; it is still owed.
    world.jobs(at("2026-10-16T12:00:00"))
    assert world.code == 1 and world.slack.calls_to("chat.postMessage") == []
    code, status = run_cli(world, "status")
    assert code == 0
    assert "Alerts have nowhere to go yet" in status, status
    assert "1 alert not delivered yet, retried for 7 days:" in status, status
    assert "• Spend spike: “Production — xAI” on Mon 12 Oct 2026: nowhere to send it" in status
    assert not re.search(r"spike:\d", status)  # no internal keys
    with world.runtime().db.transaction() as session:
        session.add(
            AlertRoute(workspace_id=world.workspace_id, connection_key=0, channel_id="CALERTS")
        )
    out = world.jobs(at("2026-10-16T12:01:00"))
    assert world.code == 0, out
    assert "alerts delivered: 1" in out and "-> #CALERTS" in out
    [spike] = alert_posts(world, "CALERTS", "spike")
    assert "12 Oct" in text_of(spike)
    world.jobs(at("2026-10-16T12:02:00"))
    assert len(alert_posts(world, "CALERTS", "spike")) == 1  # used up once delivered


def test_an_alert_undelivered_for_seven_days_is_recorded_as_expired(world: World) -> None:
    connected_from_a_terminal(world)
    world.jobs(at("2026-10-13T12:00:00"))
    world.jobs(at("2026-10-19T12:00:00"))
    assert world.code == 1
    out = world.jobs(at("2026-10-20T12:00:00"))
    assert world.code == 1, out
    assert "alerts expired, never delivered: 1" in out and "not delivered in 7 days" in out
    with world.runtime().db.session() as session:
        row = session.scalar(select(Delivery).where(Delivery.key.like("spike:%")))
    assert row.state == "expired" and row.done_at is not None
    out = world.jobs(at("2026-10-20T12:01:00"))  # said once
    assert "expired" not in out and world.code == 0
    from bot.setup import Setup

    setup = Setup(world.runtime().db, world.workspace_id, "")  # what status shows
    said = setup.alert_status(at("2026-10-21T12:00:00"))[1]
    assert said == "1 alert expired undelivered: Spend spike: “Production — xAI” on Mon 12 Oct 2026"
    assert len(setup.alert_status(at("2026-10-28T12:00:00"))) == 1  # said for a week, then not


def test_each_place_is_tried_on_its_own_and_a_refusing_channel_gets_it_later(
    world: World, webhook
) -> None:
    world.slack.add_channel("CGONE", "gone", is_member=False)
    runtime = world.runtime()
    with runtime.db.transaction() as session:
        route = AlertRoute(
            workspace_id=world.workspace_id, connection_key=0, channel_id="CGONE", uid=new_uid()
        )
        route.webhook_sealed = runtime.db.keyring.seal(webhook.url.encode(), route.webhook_aad)
        session.add(route)
    world.xai.revoke_key(DEMO_KEY)
    out = world.jobs(at("2026-10-21T06:01:00"))
    assert world.code == 1, out
    # The channel refused; the DM and the webhook went out all the same.
    assert len(world.posts(ADMIN)) == 1 and len(webhook.received) == 1
    assert "alerts pending, kept for the next run: 1" in out
    assert "#CGONE: I'm not a member of it (invite me with `/invite @xai-usage`)" in out
    assert "delivered to @UADMIN (direct message), the webhook" in out
    assert webhook.url not in out
    code, listed = run_cli(world, "alerts", "list")  # where and why, in words: no keys
    assert code == 0, listed
    assert "• “Production — xAI” stopped syncing: #CGONE: I'm not a member of it" in listed
    assert not re.search(r"syncfail:\d", listed) and "@UADMIN (direct message)" in listed
    with runtime.db.session() as session:
        row = session.scalar(
            select(Delivery).where(Delivery.key.like("syncfail:%@%"), Delivery.key.like("%CGONE"))
        )
    assert row.state == "pending" and row.done_at is None
    world.slack.add_channel("CGONE", "gone", is_member=True)  # someone invites the bot
    world.jobs(at("2026-10-21T06:03:00"))  # the channel's pause after a refusal still holds
    assert alert_posts(world, "CGONE", "stopped syncing") == []
    out = world.jobs(at("2026-10-21T06:07:00"))
    assert world.code == 0, out
    assert "alerts delivered: 1" in out
    assert len(alert_posts(world, "CGONE", "stopped syncing")) == 1
    assert len(world.posts(ADMIN)) == 1 and len(webhook.received) == 1  # not repeated


def test_a_webhook_that_fails_is_retried_and_never_named(world: World, webhook) -> None:
    webhook.status = 500
    route_alerts(world, "CALERTS")
    runtime = world.runtime()
    with runtime.db.transaction() as session:
        route = session.scalar(select(AlertRoute))
        route.uid = new_uid()
        route.webhook_sealed = runtime.db.keyring.seal(webhook.url.encode(), route.webhook_aad)
    world.xai.revoke_key(DEMO_KEY)
    out = world.jobs(at("2026-10-21T06:01:00"))
    assert world.code == 1 and "webhook: webhook did not take the alert" in out, out
    assert "500" not in out  # what the receiver answered is the log's, not the output's
    assert webhook.url not in out
    assert len(alert_posts(world, "CALERTS", "stopped syncing")) == 1
    webhook.status = 204
    out = world.jobs(at("2026-10-21T06:07:00"))
    assert world.code == 0 and webhook.received[-1]["kind"] == "sync_failure", out
    assert len(alert_posts(world, "CALERTS", "stopped syncing")) == 1


class Webhook:
    """A receiver on 127.0.0.1 answering ``status``; keeps what it accepted."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[dict] = []
        self.status = 204
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.status < 300:
                    receiver.received.append(json.loads(body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/secret-4242"


@pytest.fixture
def webhook():
    from tests.fakes.servers import serving

    hook = Webhook()
    with serving(hook.server):
        yield hook


def test_a_budget_set_in_a_channel_brings_its_alerts_and_the_spikes_there(world: World) -> None:
    from bot.grammar import parse
    from bot.setup import Setup
    from bot.slack.setup_words import SLACK

    setup = Setup(world.runtime().db, world.workspace_id, ADMIN, SLACK)
    reply = setup.run(
        parse(["budget", "set", "20"], surface="slack"),
        here="CCOSTS",
        default_tz=lambda: "UTC",
        announce=lambda channel, text: None,
    )
    assert "Its alerts go to <#CCOSTS>." in reply
    out = world.jobs(at("2026-10-13T12:00:00"))
    assert world.code == 0, out
    assert "alerts pending" not in out and "-> #CCOSTS" in out
    titles = [text_of(m).split(":")[0] for m in world.slack.history("CCOSTS")]
    assert "Spend spike" in titles and "Over budget" in titles, titles
    assert world.posts(ADMIN) == []  # a channel was found: no DM needed


def test_alert_routes_from_a_terminal_are_tested_listed_and_removed(world: World) -> None:
    world.slack.add_channel("CGONE", "gone", is_member=False)
    code, out = run_cli(world, "alerts", "CGONE")
    assert code == 1 and "I can't post in CGONE: invite me first" in out, out
    code, out = run_cli(world, "alerts", "list")
    assert code == 0 and "Alerts go by direct message to <@UADMIN>" in out, out
    code, out = run_cli(world, "alerts", "CALERTS")
    assert code == 0, out
    [note] = world.slack.history("CALERTS")
    assert note["text"].startswith(":bell: An admin sent spend alerts for all connections")
    code, out = run_cli(world, "budget", "set", "20")
    assert code == 0 and "Alerts go to CALERTS. `xai-usage alerts C0123ABCD` changes it." in out
    code, out = run_cli(world, "alerts", "list")
    assert out.splitlines()[0] == "All: CALERTS", out
    code, out = run_cli(world, "alerts", "remove")
    assert code == 0 and "no longer go to CALERTS" in out and "direct message" in out


def test_a_late_failure_alert_reaches_the_channel_before_its_recovery(world: World) -> None:
    world.slack.add_channel("CGONE", "gone", is_member=False)
    route_alerts(world, "CGONE")
    world.xai.revoke_key(DEMO_KEY)
    world.jobs(at("2026-10-21T06:01:00"))  # the DM went out; the channel refused
    assert len(world.posts(ADMIN)) == 1
    world.xai.add_key(DEMO_KEY, DEMO_TEAM_ID)
    world.clock.now = at("2026-10-21T08:00:00")
    assert run_cli(world, "sync")[0] == 0  # working again
    world.slack.add_channel("CGONE", "gone", is_member=True)
    out = world.jobs(at("2026-10-21T08:01:00"))
    assert world.code == 0, out
    texts = [text_of(m) for m in world.slack.history("CGONE")]
    assert ["stopped syncing" in t for t in texts] == [True, False], texts
    assert "working again" in texts[1]
    assert len(world.posts(ADMIN)) == 2  # the person who connected it hears both too


# -- digest charts


@pytest.fixture
def draws(monkeypatch) -> list[str]:
    """The title of every chart drawn (really drawn: the PNG is made)."""
    import bot.charts

    drawn: list[str] = []
    real = bot.charts.render_chart

    def counted(data, fmt="png"):
        drawn.append(data.title)
        return real(data, fmt)

    monkeypatch.setattr(bot.charts, "render_chart", counted)
    return drawn


def test_weekly_digests_bring_their_chart_natively_once_per_scope_and_period(
    world: World, draws: list[str]
) -> None:
    for channel in ("CTEAM", "CFIN", "COPS"):
        world.slack.add_channel(channel, channel.lower())
    with world.runtime().db.session() as session:
        production = session.scalar(select(Connection.id))
    subscribe(world, at_time="09:00", tz="UTC", every="week")
    subscribe(world, "CTEAM", at_time="09:00", tz="UTC", every="week")  # the same scope
    subscribe(world, "CFIN", at_time="09:00", tz="UTC", every="week", connection_id=production)
    subscribe(world, "COPS", at_time="09:00", tz="UTC", every="day")  # daily: no chart
    subscribe(world, "COPS", at_time="09:00", tz="UTC", every="day", chart=True)  # asked for

    out = world.jobs(at("2026-10-26T09:00:30"))  # a Monday

    assert world.code == 0, out
    assert "digest charts shown" in out
    posts = world.slack.calls_to("chat.postMessage")
    charts = [p for p in posts if "data_visualization" in str(p.params.get("blocks"))]
    digests = [p for p in posts if p not in charts]
    assert len(digests) == 5 and max(p.at for p in digests) < min(c.at for c in charts)
    shown = sorted((c.params["channel"], c.params["blocks"][0]["title"]) for c in charts)
    assert [where for where, _ in shown] == ["CCOSTS", "CFIN", "COPS", "CTEAM"]
    weekly = [title for where, title in shown if where != "COPS"]
    assert all(title.startswith("19 Oct–25 Oct 2026 · $") for title in weekly), weekly
    assert all(len(title) <= 50 for _, title in shown)
    bars = charts[0].params["blocks"][0]["chart"]
    assert bars["type"] == "bar" and len(bars["axis_config"]["categories"]) == 7
    assert draws == [] and world.slack.files == {}  # no picture drawn where Slack draws it
    world.jobs(at("2026-10-26T10:00:00"))  # a later run: nothing again, charts included
    assert len(world.slack.calls_to("chat.postMessage")) == len(posts)


def test_where_slack_refuses_charts_the_picture_is_drawn_once_per_scope(
    world: World, draws: list[str]
) -> None:
    from bot.charts import PIXELS, png_size

    world.slack.refuse_blocks("data_visualization")
    for channel in ("CTEAM", "CFIN"):
        world.slack.add_channel(channel, channel.lower())
    with world.runtime().db.session() as session:
        production = session.scalar(select(Connection.id))
    subscribe(world, at_time="09:00", tz="UTC", every="week")
    subscribe(world, "CTEAM", at_time="09:00", tz="UTC", every="week")  # the same scope
    subscribe(world, "CFIN", at_time="09:00", tz="UTC", every="week", connection_id=production)

    out = world.jobs(at("2026-10-26T09:00:30"))

    assert world.code == 0, out
    outcomes = [o for _, o in world.slack.outcomes("chat.postMessage")]
    assert outcomes == ["ok"] * 3 + ["invalid_blocks"]  # one chart refused, then remembered
    assert len(draws) == 2, draws  # the workspace's week and Production's
    shown = sorted((f.shared_in, f.title) for f in world.slack.files.values() if f.title)
    assert [where for where, _ in shown] == [["CCOSTS"], ["CFIN"], ["CTEAM"]]
    assert all(png_size(f.data) == PIXELS for f in world.slack.files.values())


def test_a_chart_that_fails_to_draw_never_loses_its_digest(world: World, monkeypatch) -> None:
    import bot.charts

    attempts: list[str] = []

    def broken(data, fmt="png"):
        attempts.append(data.title)
        raise RuntimeError("no fonts")

    monkeypatch.setattr(bot.charts, "render_chart", broken)
    world.slack.refuse_blocks("data_visualization")  # so the picture is needed
    world.slack.add_channel("CTEAM", "team")
    subscribe(world, at_time="09:00", tz="UTC", every="week")
    subscribe(world, "CTEAM", at_time="09:00", tz="UTC", every="week")

    out = world.jobs(at("2026-10-26T09:00:30"))
    world.jobs(at("2026-10-26T09:05:00"))

    assert len(world.posts("CCOSTS")) == 1 and len(world.posts("CTEAM")) == 1, out
    assert world.posts("CCOSTS")[0]["text"].startswith("Weekly xAI spend · 19 Oct–25 Oct 2026")
    assert "chart not shown (RuntimeError)" in out
    assert len(attempts) == 1  # failed once for the scope, not once per digest
    assert world.slack.files == {}


def test_a_workspace_that_refused_native_blocks_is_known_to_every_later_process(
    world: World,
) -> None:
    """``jobs run`` in one process meets the refusals; the next, in another, goes
    straight to the code block and the picture."""
    world.slack.refuse_blocks("table")
    world.slack.refuse_blocks("data_visualization")
    subscribe(world, at_time="09:00", tz="UTC", every="week")

    def run(when: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "jobs", "run", "--at", when],
            env=world.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)

    world.clock.now = at("2026-10-26T09:00:30")
    run("2026-10-26T09:00:30")  # Monday: the week of 19–25 October
    first = world.slack.outcomes("chat.postMessage")
    # The digest: refused with its table, taken without; its chart: refused, then a picture.
    assert [o for _, o in first] == ["invalid_blocks", "ok", "invalid_blocks"]
    assert "table" not in str(first[1][0].params["blocks"])
    assert "```" in str(first[1][0].params["blocks"])  # the code block took its place
    assert len(world.slack.files) == 1

    world.clock.now = at("2026-11-02T09:00:30")
    run("2026-11-02T09:00:30")  # a week on, another process
    later = world.slack.outcomes("chat.postMessage")[len(first) :]
    assert [o for _, o in later] == ["ok"]  # straight to the fallback: nothing refused
    assert "```" in str(later[0][0].params["blocks"]) and "table" not in str(later[0][0].params)
    assert len(world.slack.files) == 2  # and straight to the picture


# -- what a batch of digests costs


def test_each_digest_more_in_a_run_costs_its_done_mark_and_nothing_else(world: World) -> None:
    """One statement (the ledger's record that it went out) and no connection of its
    own; on PostgreSQL that record does not wait for the disk (tests/bot/test_ledger.py)."""
    statements: list[str] = []
    checkouts: list[object] = []

    def statement(conn, cursor, sql, *args) -> None:
        statements.append(sql.partition(" VALUES ")[0])  # the claim: one, of as many rows

    def checkout(*args) -> None:
        checkouts.append(args)

    channels: list[str] = []
    runs = []
    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Pool, "checkout", checkout)
    try:
        # The first run has no earlier posts to look at again (bot.posts): leave it out.
        for day, digests in (("2026-11-09", 2), ("2026-11-10", 2), ("2026-11-11", 8)):
            while len(channels) < digests:  # each in its own channel: no pacing to wait out
                channels.append(f"CDIGEST{len(channels)}")
                world.slack.add_channel(channels[-1], channels[-1].lower())
                subscribe(world, channels[-1], at_time="05:00", tz="UTC", every="day")
            statements.clear()
            checkouts.clear()
            out = world.jobs(at(f"{day}T05:00:30"))  # before the daily sync's 06:00
            assert world.code == 0 and out.count("digest:") == digests, out
            runs.append((Counter(statements), len(checkouts)))
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Pool, "checkout", checkout)
    _, (few, few_checkouts), (many, many_checkouts) = runs
    more = many - few
    assert list(more.values()) == [8 - 2] and not few - many, more
    assert next(iter(more)).startswith("UPDATE deliveries SET done_at"), more
    assert many_checkouts == few_checkouts
