"""The daily sync shared by several processes: each connection once, a dead one's share
taken over once its lease runs out."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.cli import Console, main
from bot.jobs import SYNC_LEASE
from bot.ledger import process_name
from providers.xai.sandbox import Sandbox
from storage.models import Connection, Delivery, SyncRun, Workspace
from tests.conftest import FixedClock
from tests.fakes.connections import add_sealed_connection

ROOT = Path(__file__).parents[2]
AT = datetime(2026, 11, 22, 6, 1, tzinfo=UTC)
DAY = "sync:2026-11-22"


def team(n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"xai-usage-test-team-{n}"))


def key(n: int) -> str:
    return f"xai-mgmt-test-{n:04d}-7d6a5b3e8f0a1c2d"


@pytest.fixture
def teams(db, tmp_path, store_key):
    """A store with ``n`` xAI connections, their teams in the stand-in, and the env of a
    process run against both."""

    def make(count: int) -> tuple[Sandbox, dict[str, str]]:
        with db.transaction() as session:
            workspace = Workspace(name="acme")
            session.add(workspace)
            session.flush()
            for n in range(count):
                add_sealed_connection(
                    session,
                    db.keyring,
                    workspace.id,
                    {"team_id": team(n), "management_key": key(n)},
                    label=f"Team {n:03d}",
                    secret_mask="xai-…1c2d",
                    backfill_days=3,
                    key_breakdown=True,
                    now=AT - timedelta(days=1),
                )
        for n in range(count):
            xai.add_key(key(n), team(n))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))},
            "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": db.url,
            "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(store_key).decode(),
            "XAI_MANAGEMENT_API_URL": xai.url,
            "XAI_USAGE_NO_PLUGINS": "1",
        }
        return xai, env

    with Sandbox(clock=FixedClock(AT), demo=False) as xai:
        yield make


def jobs_run(env: dict[str, str], when: datetime) -> str:
    out = io.StringIO()
    main(["jobs", "run", "--at", when.isoformat()], environ=env, console=Console(out=out, err=out))
    return out.getvalue()


def owners(db) -> set[str]:
    with db.session() as session:
        return set(
            session.scalars(
                select(Delivery.claimed_by).where(Delivery.key.startswith(f"{DAY}:c")).distinct()
            )
        )


def test_three_processes_share_the_daily_sync_and_a_killed_ones_share_is_taken_over(
    db, teams
) -> None:
    if db.backend != "postgresql":
        pytest.skip("several processes share one database in production only on PostgreSQL")
    xai, env = teams(300)
    xai.hold()  # every process's first requests wait: all three are in at once
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "jobs", "run", "--at", AT.isoformat()],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(owners(db)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(owners(db)) < 3:
            for worker in workers:
                worker.kill()
            pytest.fail(f"not three owners: {[w.communicate() for w in workers]}")
        killed = workers[0]
        killed.send_signal(signal.SIGKILL)  # dies holding its share, nothing stored
        killed.wait(timeout=10)
    finally:
        xai.release()
    finished = [worker.communicate(timeout=120) for worker in workers[1:]]
    assert [w.returncode for w in workers[1:]] == [0, 0], finished
    survivors = {f"{process_name().split(':')[0]}:{w.pid}" for w in workers[1:]}
    dead = f"{process_name().split(':')[0]}:{killed.pid}"

    with db.session() as session:
        runs = Counter(dict(session.execute(_runs_by_worker()).all()))
        orphaned = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.claimed_by == dead, Delivery.done_at.is_(None))
        )
    assert orphaned and sum(runs.values()) == 300 - orphaned  # the dead one's share waits
    assert set(runs) == survivors and all(runs[w] for w in survivors)

    early = jobs_run(env, AT + SYNC_LEASE - timedelta(seconds=30))  # its lease still holds
    assert "daily sync: not due, or already done" in early
    late = jobs_run(env, AT + SYNC_LEASE + timedelta(seconds=30))  # now it is taken over
    assert f"daily sync: {orphaned} connections" in late

    with db.session() as session:
        runs = Counter(dict(session.execute(_runs_by_worker()).all()))
        per_connection = Counter(session.scalars(select(SyncRun.connection_id)))
        day = session.get(Delivery, DAY)
        connections = session.scalar(select(func.count()).select_from(Connection))
    assert connections == 300 and len(per_connection) == 300
    assert set(per_connection.values()) == {1}  # each connection synced once, no more
    assert runs[process_name()] == orphaned  # this process took the dead one's share
    assert day is not None and day.done_at is not None  # the day is closed
    assert "daily sync: not due, or already done" in jobs_run(env, AT + timedelta(hours=1))


def _runs_by_worker():
    return (
        select(SyncRun.worker, func.count())
        .where(SyncRun.trigger == "daily")
        .group_by(SyncRun.worker)
    )


def test_one_process_syncs_every_connection_once_and_closes_the_day(db, teams) -> None:
    _, env = teams(5)
    assert "daily sync: 5 connections" in jobs_run(env, AT)
    with db.session() as session:
        keys = dict(
            session.execute(
                select(Delivery.key, Delivery.outcome).where(Delivery.key.startswith("sync:"))
            ).all()
        )
        runs = list(session.scalars(select(SyncRun.worker)))
    assert keys.pop(DAY) == "5 connections"
    assert sorted(keys.values()) == ["synced"] * 5  # one key a connection, each done
    assert runs == [process_name()] * 5
    next_day = jobs_run(env, AT + timedelta(days=1))
    assert "daily sync: 5 connections" in next_day
    with db.session() as session:  # yesterday's connection keys are gone, its day key stays
        left = set(session.scalars(select(Delivery.key).where(Delivery.key.startswith("sync:"))))
    assert DAY in left and not any(k.startswith(f"{DAY}:c") for k in left)
    assert len([k for k in left if k.startswith("sync:2026-11-23:c")]) == 5


def test_a_long_daily_sync_keeps_renewing_its_claims(db, teams, monkeypatch) -> None:
    """While its share is in flight, a process renews its claims from the time it renews
    them: a sync longer than the lease is not taken over under its feet."""
    import threading

    import bot.jobs

    monkeypatch.setattr(bot.jobs, "RENEW_EVERY", timedelta(seconds=0.1))
    xai, env = teams(3)
    xai.hold()  # the share stays in flight until released
    run = threading.Thread(target=jobs_run, args=(env, AT))
    run.start()
    try:
        deadline = time.monotonic() + 20

        def leases() -> list[datetime]:
            with db.session() as session:
                return list(
                    session.scalars(
                        select(Delivery.lease_until).where(Delivery.key.startswith(f"{DAY}:c"))
                    )
                )

        while len(leases()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        first = max(leases())
        while max(leases()) < first + timedelta(seconds=0.3) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert max(leases()) >= first + timedelta(seconds=0.3)  # renewed, and later each time
    finally:
        xai.release()
        run.join(timeout=30)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 3
