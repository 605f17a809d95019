"""Sync benchmark: how close the engine gets to the network's floor.

The xAI stand-in runs in its own process (:mod:`bench.sandbox_process`) and
waits 100 ms before answering each API request, like a distant service. With
that much latency a sync is all waiting, so the honest yardstick is the
*floor*: the round trips the sync cannot avoid, divided by how many it may
have in flight, times the latency. The target is to stay within 1.5x of it;
whatever is above the floor is the engine's own overhead (Python, the store,
queueing), since the stand-in's CPU is not on the engine's clock.

1. **Backfill of one connection**: ``SyncEngine.connect`` for 90 days, timed
   from the call to its return. It validates the key (GET), runs a one-day
   usage query to prove the key can read usage, saves the connection, then
   backfills: three usage windows of at most 31 days, two billing GETs and
   the last days' costs by unit type, all at once. The validation must
   finish before the check query, and the check before the backfill, so the
   floor is three sequential round trips: 3 x 100 ms = 300 ms. One untimed
   connect warms up; then three timed ones (fresh teams each) give the
   median and worst.

2. **Daily sync of 500 connections**: 500 connections are written straight
   into the store, sealed exactly as ``connect`` seals them, status ok, key
   breakdown known, last success "now", so the daily window is the trailing
   3 days (one usage request per connection, and beside it one by unit type
   for its finished days). ``SyncEngine.sync_all(trigger="daily")`` is timed
   at the default concurrency (32) and at 64, on the same store (the c=64
   run replaces the rows the c=32 run stored). The engine caps requests in
   flight at ``concurrency`` (its HTTP pool), so the floor is
   ``ceil(requests / concurrency) x 100 ms``, counting the requests the
   stand-in actually served (its own request log). The count is printed too:
   four per connection (one usage window, two billing GETs and the split by
   unit type) is the minimum, so a sync that sends more than it needs shows
   there.

Every run is checked: all 500 results ok, rows stored equal rows reported,
and every stored cost of a settled day equals what the stand-in serves for it
(the stand-in's own oracle); the engine's and the stand-in's CPU seconds are
printed beside the wall time to show where the time above the floor went.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import func, select

from bench.sandbox_process import SandboxProcess, by_endpoint
from bench.stores import STORES, Unavailable
from bench.table import Column, Scoreboard, Table, count, ratio, secs
from bot.sync import SyncEngine
from providers.manager import ProviderRegistry
from providers.xai.provider import XaiProvider, model_id
from providers.xai.sandbox import MODELS, Sandbox
from storage.crypto import Keyring
from storage.db import Database
from storage.models import (
    Connection,
    DailyCost,
    SyncRun,
    Workspace,
)
from tests.fakes.connections import add_sealed_connection

LATENCY = 0.1
TEAMS = 500
BACKFILL_DAYS = 90
BACKFILL_RUNS = 3
BACKFILL_ROUND_TRIPS = 3  # validation, the check query, then costs, billing and unit types at once
CONCURRENCIES = (32, 64)
TARGET = 1.5

_TEAM_NAMESPACE = uuid.UUID("6f1d3c52-8a8e-4d9b-9a57-0c4f3b1e2d10")
_KEY_PADDING = "7d6a5b3e8f0a1c2d"

T = TypeVar("T")

COLUMNS = (
    Column("backend", 10, "<"),
    Column("run", 26, "<"),
    Column("requests", 8),
    Column("measured", 9),
    Column("floor", 8),
    Column("ratio", 6),
    Column("rows", 7),
    Column("engine CPU", 10),
    Column("stand-in CPU", 12),
    Column(f"<={TARGET}x", 6),
)


def team_id(n: int) -> str:
    return str(uuid.uuid5(_TEAM_NAMESPACE, f"bench-team-{n}"))


def management_key(n: int) -> str:
    return f"xai-mgmt-bench-{n:03d}-{_KEY_PADDING}"


def credentials(n: int) -> dict[str, str]:
    return {"team_id": team_id(n), "management_key": management_key(n)}


async def _timed(awaitable: Awaitable[T]) -> tuple[float, T]:
    began = time.perf_counter()
    result = await awaitable
    return time.perf_counter() - began, result


class _CpuMeter:
    """CPU seconds used by this process and by the stand-in between start and stop."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox

    def __enter__(self) -> _CpuMeter:
        self._engine = time.process_time()
        self._sandbox = self.sandbox.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine = time.process_time() - self._engine
        after = self.sandbox.cpu_seconds()
        self.stand_in = None if after is None or self._sandbox is None else after - self._sandbox

    def cells(self) -> tuple[str, str]:
        stand_in = "n/a" if self.stand_in is None else secs(self.stand_in)
        return secs(self.engine), stand_in


def run(score: Scoreboard) -> None:
    table = Table(
        f"Sync: against the xAI stand-in (own process, {LATENCY * 1000:.0f} ms per request); "
        f"target within {TARGET}x of the floor",
        COLUMNS,
    )
    with SandboxProcess(latency=LATENCY) as sandbox:
        for n in range(TEAMS):
            sandbox.add_key(management_key(n), team_id(n), name=f"bench {n}")
        registry = ProviderRegistry([XaiProvider(base_url=sandbox.url)])
        keyring = Keyring([Keyring.generate_key()])
        for backend, open_store in STORES:
            try:
                with open_store() as url:
                    db = Database(url, keyring)
                    try:
                        db.migrate()
                        _backfill(table, score, backend, db, registry, sandbox)
                        _daily(table, score, backend, db, registry, sandbox)
                    finally:
                        db.dispose()
            except Unavailable as why:
                table.note(f"{backend}: skipped, {why}")
    table.note(
        f"floor: backfill = {BACKFILL_ROUND_TRIPS} sequential round trips (validate key, check "
        "query, then 3 usage windows + 2 billing GETs + the last days by unit type at once);"
    )
    table.note("       daily = ceil(requests served / concurrency) x latency.")


def _new_workspace(db: Database, name: str) -> int:
    with db.transaction() as session:
        workspace = Workspace(name=name)
        session.add(workspace)
        session.flush()
        return workspace.id


# -- backfill ------------------------------------------------------------------


def _backfill(
    table: Table,
    score: Scoreboard,
    backend: str,
    db: Database,
    registry: ProviderRegistry,
    sandbox: SandboxProcess,
) -> None:
    engine = SyncEngine(db, registry)
    workspace_id = _new_workspace(db, "bench backfill")

    def connect(n: int) -> tuple[float, object]:
        return asyncio.run(
            _timed(
                engine.connect(
                    workspace_id,
                    "xai",
                    credentials(n),
                    label=f"Backfill {n}",
                    backfill_days=BACKFILL_DAYS,
                )
            )
        )

    connect(0)  # warm-up: first-use costs (statement caches, imports) are not the engine's
    timings, requests, rows = [], [], []
    with _CpuMeter(sandbox) as cpu:
        for n in range(1, BACKFILL_RUNS + 1):
            before = sandbox.request_count()
            seconds, connected = connect(n)
            served = sandbox.requests_since(before)
            timings.append(seconds)
            requests.append(len(served))
            rows.append(_check_backfill(score, backend, db, connected, served))
    floor = BACKFILL_ROUND_TRIPS * LATENCY
    measured = statistics.median(timings)
    engine_cpu, stand_in_cpu = cpu.cells()
    table.row(
        backend,
        f"backfill {BACKFILL_DAYS} d, median of {BACKFILL_RUNS}",
        max(requests),
        secs(measured),
        secs(floor),
        ratio(measured / floor),
        count(max(rows)),
        engine_cpu,
        stand_in_cpu,
        score.target(f"{backend} backfill within {TARGET}x", measured <= TARGET * floor),
    )
    table.note(
        f"{backend}: backfill runs {', '.join(secs(t) for t in timings)} (worst "
        f"{ratio(max(timings) / floor)} of the floor); CPU columns are for all {BACKFILL_RUNS}"
    )


def _check_backfill(
    score: Scoreboard, backend: str, db: Database, connected, served: list[dict]
) -> int:
    """The backfill stored 90 days of rows and sent exactly the requests it needs."""
    backfill = connected.backfill
    with db.session() as session:
        stored = session.scalar(
            select(func.count())
            .select_from(DailyCost)
            .where(DailyCost.connection_id == connected.connection_id)
        )
    endpoints = by_endpoint(served)
    # usage: the key check's day, three 31-day windows, and the last days by unit type.
    wanted = {"validation": 1, "usage": 1 + 3 + 1, "invoice/preview": 1, "spending-limits": 1}
    if not backfill.ok or backfill.days != BACKFILL_DAYS:
        score.fail(f"{backend}: backfill not ok: {backfill.reason} {backfill.message}")
    if not stored or stored != backfill.rows:
        score.fail(f"{backend}: backfill stored {stored} rows but reported {backfill.rows}")
    if dict(endpoints) != wanted:
        score.fail(f"{backend}: backfill requests {dict(endpoints)}, expected {wanted}")
    return stored or 0


# -- daily ---------------------------------------------------------------------


def _add_connections(
    db: Database, engine: SyncEngine, workspace_id: int, now: datetime
) -> dict[int, int]:
    """500 connections as ``connect`` leaves them after a good sync; id -> team number."""
    provider = engine.providers.get("xai")
    connections = {}
    with db.transaction() as session:
        for n in range(TEAMS):
            clean = engine.validate_fields(provider, credentials(n))
            connections[n] = add_sealed_connection(
                session,
                db.keyring,
                workspace_id,
                clean,
                label=f"Bench team {n:03d}",
                secret_mask=provider.mask(clean),
                backfill_days=BACKFILL_DAYS,
                key_breakdown=True,
                now=now,
            )
        session.flush()
        return {connection.id: n for n, connection in connections.items()}


def _daily(
    table: Table,
    score: Scoreboard,
    backend: str,
    db: Database,
    registry: ProviderRegistry,
    sandbox: SandboxProcess,
) -> None:
    workspace_id = _new_workspace(db, "bench daily")
    teams = _add_connections(db, SyncEngine(db, registry), workspace_id, datetime.now(UTC))
    for concurrency in CONCURRENCIES:
        engine = SyncEngine(db, registry, concurrency=concurrency)
        before = sandbox.request_count()
        with _CpuMeter(sandbox) as cpu:
            measured, results = asyncio.run(_timed(engine.sync_all(workspace_id, trigger="daily")))
        served = sandbox.requests_since(before)
        rows = _check_daily(score, backend, db, workspace_id, teams, results, served)
        floor = math.ceil(len(served) / concurrency) * LATENCY
        engine_cpu, stand_in_cpu = cpu.cells()
        table.row(
            backend,
            f"daily {TEAMS} conns, c={concurrency}",
            count(len(served)),
            secs(measured),
            secs(floor),
            ratio(measured / floor),
            count(rows),
            engine_cpu,
            stand_in_cpu,
            score.target(
                f"{backend} daily sync of {TEAMS} at c={concurrency} within {TARGET}x",
                measured <= TARGET * floor,
            ),
        )
    table.note(
        f"{backend}: daily requests by endpoint (last run): "
        + ", ".join(f"{name} {n}" for name, n in sorted(by_endpoint(served).items()))
    )


def _check_daily(
    score: Scoreboard,
    backend: str,
    db: Database,
    workspace_id: int,
    teams: dict[int, int],
    results: list,
    served: list[dict],
) -> int:
    """All synced, rows stored = rows reported, settled days equal the stand-in's figures."""
    if not results:
        score.fail(f"{backend}: the daily sync returned no results")
        return 0
    failed = [r for r in results if not r.ok or r.skipped]
    if len(results) != TEAMS or failed:
        first = failed[0] if failed else None
        score.fail(
            f"{backend}: {len(results)} results, {len(failed)} not ok"
            + (f" (first: {first.reason}: {first.message})" if first else "")
        )
    if any(r["status"] != 200 for r in served):
        score.fail(f"{backend}: non-200 answers were served: {dict(by_endpoint(served))}")
    start, end = results[0].start, results[0].end
    if (end - start).days + 1 != 3:
        score.fail(f"{backend}: the daily window was {start}..{end}, not the trailing 3 days")
    with db.session() as session:
        stored = {
            (teams[c], day, model, key): cost
            for c, day, model, key, cost in session.execute(
                select(
                    DailyCost.connection_id,
                    DailyCost.day,
                    DailyCost.model,
                    DailyCost.api_key_id,
                    DailyCost.cost,
                ).where(DailyCost.workspace_id == workspace_id)
            )
        }
        runs = session.scalar(
            select(func.count())
            .select_from(SyncRun)
            .join(Connection)
            .where(Connection.workspace_id == workspace_id, SyncRun.outcome == "ok")
        )
    reported = sum(r.rows for r in results)
    if not stored or len(stored) != reported:
        score.fail(f"{backend}: {len(stored)} rows stored, {reported} reported")
    if not runs or runs % TEAMS:
        score.fail(f"{backend}: {runs} ok sync runs recorded, expected a multiple of {TEAMS}")
    settled = _expected_settled(start, end)
    got = {k: v for k, v in stored.items() if k[1] < end}
    if got != settled:
        wrong = len(set(got.items()) ^ set(settled.items()))
        score.fail(f"{backend}: {wrong} settled-day rows differ from the stand-in's figures")
    return len(stored)


def _expected_settled(start: date, end: date) -> dict[tuple[int, date, str, str], Decimal]:
    """What the stand-in serves for the finished days of the window (today is still moving)."""
    oracle = Sandbox(demo=False)  # not started: only its figures are used
    expected = {}
    for n in range(TEAMS):
        team = team_id(n)
        day = start
        while day < end:
            for label in MODELS:
                for key_id, _ in oracle.api_keys(team):
                    cost = oracle.cost(team, label, day, key_id)
                    if cost:
                        expected[(n, day, model_id(label), key_id)] = cost
            day += timedelta(days=1)
    return expected
