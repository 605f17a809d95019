"""The exactly-once ledger, on both stores and across real processes."""

from __future__ import annotations

import multiprocessing
import queue
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, text

from bot.ledger import MAX_ATTEMPTS, Ledger
from storage.db import Database
from storage.models import Delivery

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_a_key_is_claimed_once_and_done_stays_done(db) -> None:
    clock = Clock()
    a, b = Ledger(db, owner="a", clock=clock), Ledger(db, owner="b", clock=clock)
    assert a.claim("digest:1:2026-11-23")
    assert not b.claim("digest:1:2026-11-23")
    a.done("digest:1:2026-11-23")
    clock.now += timedelta(days=1)
    assert not b.claim("digest:1:2026-11-23")  # done is final, however late
    assert a.delivered("digest:") == ["digest:1:2026-11-23"]


def test_a_dead_owner_is_taken_over_after_its_lease(db) -> None:
    clock = Clock()
    a, b = Ledger(db, owner="a", clock=clock), Ledger(db, owner="b", clock=clock)
    assert a.claim("alert:1", lease=timedelta(minutes=10))
    clock.now += timedelta(minutes=9)
    assert not b.claim("alert:1")
    clock.now += timedelta(minutes=2)  # a died: its lease ran out
    taken = b.claim("alert:1")
    assert taken and taken.retry and taken.since == T0  # since a began, not b
    a.done("alert:1")  # a late word from the old owner changes nothing
    assert a.delivered("alert:") == []
    b.done("alert:1")
    assert b.delivered("alert:") == ["alert:1"]


def test_a_failure_is_retried_later_a_few_times_only(db) -> None:
    clock = Clock()
    ledger = Ledger(db, owner="a", clock=clock)
    assert ledger.claim("digest:2:2026-11-23")
    for _ in range(MAX_ATTEMPTS - 1):
        ledger.failed("digest:2:2026-11-23", "ConnectError", retry_in=timedelta(minutes=5))
        assert not ledger.claim("digest:2:2026-11-23")  # not before the retry time
        clock.now += timedelta(minutes=6)
        assert ledger.claim("digest:2:2026-11-23")
    ledger.failed("digest:2:2026-11-23", "ConnectError")
    clock.now += timedelta(hours=1)
    assert not ledger.claim("digest:2:2026-11-23")  # given up: no endless retries
    with db.session() as session:
        row = session.get(Delivery, "digest:2:2026-11-23")
    assert row.attempts == MAX_ATTEMPTS and row.outcome == "ConnectError"


def _race(url: str, keys: list[str], owner: str, barrier, results) -> None:
    from storage.crypto import Keyring
    from storage.db import Database

    db = Database(url, Keyring([Keyring.generate_key()]))
    ledger = Ledger(db, owner=owner)
    with db.engine.connect():
        pass  # connected before the start line, so nobody gets a head start
    keys = random.Random(owner).sample(keys, len(keys))  # each in its own order: they collide
    barrier.wait()  # every process starts claiming at the same instant
    results.put((owner, [key for key in keys if ledger.claim(key)]))
    db.dispose()


@pytest.mark.parametrize("processes", [6])
def test_processes_racing_for_the_same_keys_each_get_one_owner(db, processes) -> None:
    if db.backend != "postgresql":
        pytest.skip("several processes share one database in production only on PostgreSQL")
    keys = [f"digest:{n}:2026-11-23" for n in range(200)]
    # Fresh processes, not forks of this threaded one; the fork server imports the store's
    # modules once and forks each worker from it, instead of six cold starts.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["storage.db", "storage.crypto", "bot.ledger", "psycopg"])
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_race, args=(db.url, keys, f"p{n}", barrier, results))
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        claimed = [results.get(timeout=60) for _ in workers]
    except queue.Empty:
        for worker in workers:  # none may outlive the test and claim keys in the next one
            worker.kill()
        raise
    for worker in workers:
        worker.join(timeout=30)
    winners = [key for _, won in claimed for key in won]
    assert sorted(winners) == sorted(keys)  # every key once, none twice
    assert sum(1 for _, won in claimed if won) > 1  # really concurrent, not one process alone
    with db.session() as session:
        owners = dict(session.execute(select(Delivery.key, Delivery.claimed_by)).all())
    assert all(owners[key] == owner for owner, won in claimed for key in won)


def test_many_keys_are_claimed_at_once_and_only_the_free_ones_won(db) -> None:
    clock = Clock()
    a, b = Ledger(db, owner="a", clock=clock), Ledger(db, owner="b", clock=clock)
    assert a.claim("digest:1:2026-11-23")
    assert a.claim("digest:2:2026-11-23", lease=timedelta(minutes=1))
    a.done("digest:1:2026-11-23")
    clock.now += timedelta(minutes=2)  # a's claim on digest 2 has run out
    won = b.claim_many([f"digest:{n}:2026-11-23" for n in (1, 2, 3, 4)])
    assert set(won) == {"digest:2:2026-11-23", "digest:3:2026-11-23", "digest:4:2026-11-23"}
    assert set(a.claim_many(["digest:3:2026-11-23", "digest:5:2026-11-23"])) == {
        "digest:5:2026-11-23"
    }
    # digest 2 is a second attempt, begun when a first claimed it: look for a's post
    taken = won["digest:2:2026-11-23"]
    assert (taken.attempt, taken.retry, taken.since) == (2, True, T0)
    fresh = won["digest:3:2026-11-23"]
    assert (fresh.attempt, fresh.retry, fresh.since) == (1, False, T0 + timedelta(minutes=2))


def test_done_records_a_state_only_when_given_one(db) -> None:
    ledger = Ledger(db, owner="a", clock=Clock())
    for key in ("alert:1", "alert:2"):
        assert ledger.claim(key)
        ledger.pending(key, "no route", payload="{}")
    ledger.done("alert:1", "delivered to #costs", state="delivered")
    ledger.done("alert:2", "given up")
    with db.session() as session:
        rows = {row.key: row for row in session.scalars(select(Delivery))}
    # What it said stays: a spike's next round reads the amount it alerted at.
    assert (rows["alert:1"].state, rows["alert:1"].payload) == ("delivered", "{}")
    assert (rows["alert:2"].state, rows["alert:2"].payload) == ("pending", "{}")
    assert [rows[k].outcome for k in ("alert:1", "alert:2")] == ["delivered to #costs", "given up"]


# -- a batch: the done marks of a thousand digests due at once


def test_a_batch_marks_done_over_one_connection_and_others_see_each_at_once(db) -> None:
    clock = Clock()
    ledger = Ledger(db, owner="a", clock=clock)
    elsewhere = Database(db.url, db.keyring)  # another process's engine and connections
    other = Ledger(elsewhere, owner="b", clock=clock)
    checkouts: list[object] = []

    def checkout(*args) -> None:
        checkouts.append(args)

    event.listen(db.engine, "checkout", checkout)
    sizes = []
    try:
        for size in (2, 20):
            keys = [f"digest:{n}:{size}" for n in range(size)]
            assert set(ledger.claim_many(keys)) == set(keys)
            checkouts.clear()
            with ledger.batch():
                for key in keys:
                    ledger.done(key)
                    # recorded at once, not at the end of the batch: another process
                    # would not take it over, and a crash here repeats nothing before it
                    assert other.states([key]) == {key: (True, "ok")}
            sizes.append(len(checkouts))
        clock.now += timedelta(days=1)
        assert not other.claim_many(keys)  # done is final
    finally:
        event.remove(db.engine, "checkout", checkout)
        elsewhere.dispose()
    assert sizes == [1, 1]  # one connection a batch, not one a digest


def test_in_a_batch_a_done_mark_alone_does_not_wait_for_the_disk(db) -> None:
    if db.backend != "postgresql":
        pytest.skip("SQLite in WAL mode with synchronous=NORMAL never waits at a commit")
    ledger = Ledger(db, owner="a", clock=Clock())
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with ledger.batch():
            assert ledger.claim("digest:1:2026-11-23")  # a claim made meanwhile
            ledger.done("digest:1:2026-11-23")
        assert ledger.claim("digest:2:2026-11-23")  # and after
        ledger.done("digest:2:2026-11-23")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    # At a commit the server waits for the disk or not by the setting then in force; in
    # autocommit each statement commits alone. Each is run again in a transaction of its
    # own, to read the setting it leaves for its commit, and the one after.
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        found = []
        for statement, parameters in sent:
            if statement.startswith("INSERT INTO deliveries"):
                kind = "claim"
            elif "UPDATE deliveries SET done_at" in statement:
                kind = "done"
            else:
                continue
            cursor.execute(statement, parameters)
            cursor.execute("SHOW synchronous_commit")
            found.append((kind, cursor.fetchone()[0]))
            raw.rollback()
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"  # nothing outlives the statement's transaction
            raw.rollback()
    finally:
        raw.close()
    # A claim decides who owns a key: it is on disk before anyone acts on it. A batch's
    # done mark, lost with the server, sends its digest to a retry that looks for the post.
    assert found == [("claim", "on"), ("done", "off"), ("claim", "on"), ("done", "on")]


def test_a_batch_that_fails_hands_its_connection_back_committing_synchronously(db) -> None:
    if db.backend != "postgresql":
        pytest.skip("only PostgreSQL connections carry the setting")
    ledger = Ledger(db, owner="a", clock=Clock())
    assert ledger.claim("digest:1:2026-11-23")
    with pytest.raises(RuntimeError), ledger.batch():
        ledger.done("digest:1:2026-11-23")
        raise RuntimeError("Slack went away")
    pooled = [db.engine.connect() for _ in range(db.engine.pool.checkedin())]
    try:
        settings = [c.execute(text("SHOW synchronous_commit")).scalar() for c in pooled]
    finally:
        for connection in pooled:
            connection.close()
    assert pooled and settings == ["on"] * len(pooled)


def test_a_batch_whose_connection_dies_marks_the_next_done_over_a_new_one(db) -> None:
    if db.backend != "postgresql":
        pytest.skip("a server that drops a connection: PostgreSQL")
    ledger = Ledger(db, owner="a", clock=Clock())
    keys = ["digest:1:2026-11-23", "digest:2:2026-11-23"]
    assert set(ledger.claim_many(keys)) == set(keys)
    pids: list[int] = []

    def remember(conn, cursor, statement, *args) -> None:
        if "UPDATE deliveries SET done_at" in statement:
            pids.append(cursor.connection.info.backend_pid)

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        with ledger.batch():
            ledger.done(keys[0])
            with db.engine.connect() as admin:  # the server restarts, or a proxy drops it
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
            ledger.done(keys[1])  # not lost, and the rest of the batch not held up
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert Ledger(db, owner="b").states(keys) == {key: (True, "ok") for key in keys}
    assert len(set(pids)) == 2
