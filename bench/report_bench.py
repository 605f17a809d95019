"""Report benchmark: ``build_report`` against the SQL it boils down to, on fixed periods.

The store holds one workspace with 1,000 connections x 90 days (ending today,
UTC) x 6 models, without an API key breakdown (``api_key_id`` ""), costs in
realistic integer nano-dollars: 540,000 ``daily_costs`` rows, bulk loaded
after ``Database.migrate()`` and followed by ANALYZE (on PostgreSQL ``VACUUM
ANALYZE``, which also sets the visibility map an index-only scan relies on:
the state autovacuum leaves a long-lived store in).

Three fixed periods, so a run means the same on any day of the month (``month``
covers one day on the 1st and 31 on the 31st): one day (``today``, the command
people run most), the last 30 days and the last 90 days (the whole store). For
each, two things are timed, alternately, after a warm-up, 60 times each, each
in a fresh session/connection from the pool as the product does per command:

* the product: ``build_report(session, workspace_id, period, "model")``,
  everything included (the workspace's connections, the aggregate, Decimal
  conversion, sorting);
* the yardstick: the same aggregate as one hand-written query,
  ``SELECT model, SUM(cost) FROM daily_costs WHERE workspace_id = ? AND day
  BETWEEN ? AND ? GROUP BY model``, through the same engine with ``text()``.

Targets, per period and backend: the product's p95 within 1.5x of the
hand-written query's p95, and under 50 ms. Both answers are compared model by
model, so neither can be fast by being wrong. The plan of the hand-written
query is printed (to show ``ix_daily_costs_report`` serves it), and, for
information, the same query on the per-workspace rollup the product reads.
"""

from __future__ import annotations

import gc
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, bindparam, insert, text

from bench.stores import STORES, Unavailable, bulk_insert_costs
from bench.table import Column, Scoreboard, Table, count, ms, percentile, ratio
from bot.grammar import Command
from bot.reports import Period, build_report, resolve_period
from providers.xai.provider import model_id
from providers.xai.sandbox import MODELS
from storage.crypto import Keyring
from storage.db import Database
from storage.models import NANO, FetchedSpan, Workspace
from storage.repo import rebuild_totals
from tests.fakes.connections import add_sealed_connection

CONNECTIONS = 1000
DAYS = 90
MODEL_IDS = tuple(model_id(label) for label in MODELS)
# Typical weekday dollars per connection (before its own scale), as the stand-in has them.
MODEL_DAILY_USD = dict(zip(MODEL_IDS, (12.0, 4.5, 2.8, 7.0, 1.6, 2.1), strict=True))
WARMUP = 5
ITERATIONS = 60
TARGET_RATIO = 1.5
TARGET_P95 = 0.050

HAND_WRITTEN_ON_ROLLUP = text(
    "SELECT model, SUM(cost) FROM workspace_daily_totals "
    "WHERE workspace_id = :workspace_id AND day BETWEEN :start AND :end "
    "GROUP BY model"
).bindparams(bindparam("start", type_=Date), bindparam("end", type_=Date))

HAND_WRITTEN = text(
    "SELECT model, SUM(cost) FROM daily_costs "
    "WHERE workspace_id = :workspace_id AND day BETWEEN :start AND :end "
    "GROUP BY model"
).bindparams(bindparam("start", type_=Date), bindparam("end", type_=Date))

PERIOD_DAYS = (1, 30, 90)
"""Fixed periods ending today: `today`, the last 30 days, the whole store."""

COLUMNS = (
    Column("backend", 10, "<"),
    Column("period", 8, "<"),
    Column("query", 34, "<"),
    Column("p50", 9),
    Column("p95", 9),
    Column("p95 ratio", 9),
    Column(f"<={TARGET_RATIO}x", 6),
    Column(f"<{TARGET_P95 * 1000:.0f} ms", 6),
)


def periods(today: date) -> list[Period]:
    """The fixed periods, resolved as the commands people type would resolve them."""
    chosen = []
    for days in PERIOD_DAYS:
        if days == 1:
            command = Command("today")
        else:
            start = (today - timedelta(days=days - 1)).isoformat()
            command = Command("range", (start, today.isoformat()))
        chosen.append(resolve_period(command, today))
    return chosen


def run(score: Scoreboard) -> None:
    today = datetime.now(UTC).date()
    table = Table(
        f"Report: `--by model` over 1, 30 and 90 days on {count(CONNECTIONS)} connections x "
        f"{DAYS} days x {len(MODEL_IDS)} models; {ITERATIONS} runs each after {WARMUP} warm-up",
        COLUMNS,
    )
    keyring = Keyring([Keyring.generate_key()])
    for backend, open_store in STORES:
        try:
            with open_store() as url:
                db = Database(url, keyring)
                try:
                    _one_backend(table, score, backend, db, today)
                finally:
                    db.dispose()
        except Unavailable as why:
            table.note(f"{backend}: skipped, {why}")


def _one_backend(table: Table, score: Scoreboard, backend: str, db: Database, today: date) -> None:
    began = time.perf_counter()
    db.migrate()
    workspace_id = _load_store(db, today)
    built = time.perf_counter() - began
    table.note(
        f"{backend}: store built in {built:.1f} s, "
        f"{count(CONNECTIONS * DAYS * len(MODEL_IDS))} rows"
    )
    for line in _plan(db, {"workspace_id": workspace_id, "start": today, "end": today}):
        table.note(f"{backend} plan: {line}")
    for period in periods(today):
        _one_period(table, score, backend, db, workspace_id, period)


def _one_period(
    table: Table, score: Scoreboard, backend: str, db: Database, workspace_id: int, period: Period
) -> None:
    params = {"workspace_id": workspace_id, "start": period.start, "end": period.end}
    name = f"{period.days} day" + ("s" if period.days != 1 else "")

    def product() -> Any:
        with db.session() as session:
            return build_report(session, workspace_id, period, "model")

    def hand_written() -> Any:
        with db.engine.connect() as conn:
            return conn.execute(HAND_WRITTEN, params).all()

    def hand_written_on_rollup() -> Any:
        with db.engine.connect() as conn:
            return conn.execute(HAND_WRITTEN_ON_ROLLUP, params).all()

    _check_same_answer(score, backend, product(), hand_written(), period)
    timings, full_collections = _alternate(
        {"report": product, "hand": hand_written, "rollup": hand_written_on_rollup}
    )
    hand_p95 = percentile(timings["hand"], 95)
    report_p95 = percentile(timings["report"], 95)
    where = f"{backend} {name}"
    table.row(
        backend,
        name,
        "hand-written SQL (text())",
        ms(percentile(timings["hand"], 50)),
        ms(hand_p95),
        "1.00x",
        "",
        "",
    )
    table.row(
        backend,
        name,
        "build_report --by model",
        ms(percentile(timings["report"], 50)),
        ms(report_p95),
        ratio(report_p95 / hand_p95),
        score.target(
            f"{where}: report p95 within {TARGET_RATIO}x of the hand-written query",
            report_p95 <= TARGET_RATIO * hand_p95,
        ),
        score.target(
            f"{where}: report p95 under {TARGET_P95 * 1000:.0f} ms", report_p95 < TARGET_P95
        ),
    )
    table.row(
        backend,
        name,
        "  hand-written SQL on the rollup",
        ms(percentile(timings["rollup"], 50)),
        ms(percentile(timings["rollup"], 95)),
        ratio(percentile(timings["rollup"], 95) / hand_p95),
        "",
        "",
    )
    if any(full_collections.values()):
        table.note(
            f"{where}: full garbage collections inside the timed calls: "
            + ", ".join(f"{n} {k}" for k, n in full_collections.items())
        )


def _alternate(
    calls: dict[str, Callable[[], Any]],
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Time each call ITERATIONS times, taking turns so drift hits all of them alike.

    Also counts the full (generation 2) garbage collections that ran inside
    each call's timings: a pause of tens of milliseconds shows in the p95.
    """
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    timings: dict[str, list[float]] = {name: [] for name in calls}
    full_collections = dict.fromkeys(calls, 0)
    for _ in range(ITERATIONS):
        for name, call in calls.items():
            collections = gc.get_stats()[2]["collections"]
            began = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - began)
            full_collections[name] += gc.get_stats()[2]["collections"] - collections
    return timings, full_collections


def _check_same_answer(score: Scoreboard, backend: str, report, rows, period: Period) -> None:
    """The report and the hand-written query agree to the nano-dollar, and are not empty."""
    by_hand = {model: Decimal(int(total)) * NANO for model, total in rows}
    by_report = {row.key: row.cost_usd for row in report.rows}
    if not by_hand or by_report != by_hand:
        score.fail(
            f"{backend} {period.days} days: the report {by_report} differs from the SQL {by_hand}"
        )
    if len(report.connection_labels) != CONNECTIONS:
        score.fail(f"{backend}: the report saw {len(report.connection_labels)} connections")


def _plan(db: Database, params: dict[str, Any]) -> list[str]:
    """The plan of the hand-written query, one line per step."""
    sql = HAND_WRITTEN.text
    with db.engine.connect() as conn:
        if db.backend == "sqlite":
            explain = text(f"EXPLAIN QUERY PLAN {sql}").bindparams(*_date_params())
            return [row[-1] for row in conn.execute(explain, params)]
        explain = text(f"EXPLAIN {sql}").bindparams(*_date_params())
        return [row[0] for row in conn.execute(explain, params)]


def _date_params() -> tuple:
    return bindparam("start", type_=Date), bindparam("end", type_=Date)


# -- building the store ---------------------------------------------------------


def _load_store(db: Database, today: date) -> int:
    """One workspace, its connections (sealed as connect seals them), 90 days of costs."""
    now = datetime.now(UTC)
    with db.transaction() as session:
        workspace = Workspace(name="bench report")
        session.add(workspace)
        session.flush()
        workspace_id = workspace.id
        connections = []
        for n in range(CONNECTIONS):
            team = str(uuid.uuid5(uuid.NAMESPACE_URL, f"xai-usage-bench-report-{n}"))
            key = f"xai-mgmt-report-{n:04d}-5b3e8f0a1c2d"
            connection = add_sealed_connection(
                session,
                db.keyring,
                workspace_id,
                {"management_key": key, "team_id": team},
                label=f"Team {n:04d} — xAI",
                secret_mask=f"xai-…{key[-4:]}",
                backfill_days=DAYS,
                key_breakdown=False,
                now=now,
            )
            connections.append(connection)
        session.flush()
        ids = [c.id for c in connections]
    bulk_insert_costs(db, _cost_rows(workspace_id, ids, today))
    with db.transaction() as session:
        rebuild_totals(session, workspace_id)  # the bulk load bypassed the writer
        # ...and what the writer records beside the costs: the days each connection fetched.
        session.execute(
            insert(FetchedSpan),
            [
                {
                    "connection_id": cid,
                    "workspace_id": workspace_id,
                    "first_day": today - timedelta(days=DAYS - 1),
                    "last_day": today,
                }
                for cid in ids
            ],
        )
    _analyze(db)
    return workspace_id


def _cost_rows(workspace_id: int, connection_ids: list[int], today: date):
    """(connection_id, workspace_id, day, model, api_key_id, nano-dollars), deterministic."""
    rng = random.Random(2026)
    days = [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    for connection_id in connection_ids:
        scale = rng.lognormvariate(0, 0.8)  # a few big teams, many small ones
        for day in days:
            weekday = 0.4 if day.weekday() >= 5 else 1.0
            for model, usd in MODEL_DAILY_USD.items():
                nano = int(usd * scale * weekday * rng.uniform(0.7, 1.3) * 1e9)
                yield connection_id, workspace_id, day, model, "", nano


def _analyze(db: Database) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE" if db.backend == "sqlite" else "VACUUM ANALYZE")
