"""The exactly-once ledger for scheduled work, shared by every process.

Each digest, alert and daily sync has a key naming what and which period
(``digest:12:2026-11-22``). A process may do the work only after claiming
the key: the INSERT that wins the key, or, when the owner died and its lease
ran out, the UPDATE that takes it over. Both are single atomic statements, so
on PostgreSQL several processes starting at the same instant still get one
owner each. ``done`` records the outcome; a failure hands the key back for a
later run, up to a limit.

A process may die after Slack took its message and before ``done``. So a
claim says which attempt it is and when the first began: a later attempt
first looks for the earlier one's message (``bot.jobs``), and posts only if
it is not there.

A batch (:meth:`Ledger.batch`: the digests due at one minute) records its
outcomes over one connection, and on PostgreSQL without waiting for the disk
at each: see there for why that keeps each digest exactly once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Update,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from storage.db import Database, upsert
from storage.models import Delivery

MAX_ATTEMPTS = 5
PENDING = "pending"
DELIVERED = "delivered"
EXPIRED = "expired"


@dataclass(frozen=True)
class Claim:
    """A key this process now owns: which attempt, and since when it is being tried."""

    key: str
    attempt: int
    since: datetime  # when the first attempt claimed it

    @property
    def retry(self) -> bool:
        """An earlier attempt may have done the work before it died or failed."""
        return self.attempt > 1


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Ledger:
    def __init__(
        self,
        db: Database,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.owner = owner or process_name()
        self.clock = clock
        self._marks: _DoneMarks | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Within it, :meth:`done` records over one connection held for the batch, and
        on PostgreSQL each mark's commit does not wait for the disk.

        For work a later attempt looks for before doing it again (a digest's post:
        ``bot.jobs._post_once``). Each mark is still committed, and seen by every
        process, as it is made: a process killed mid-batch repeats nothing it had
        recorded. What a mark gives up is being on disk for a fraction of a second
        (PostgreSQL writes it within three ``wal_writer_delay``, 0.6 s by default), so
        only a crash of the database server itself can lose one; a lost mark is then
        what a killed process leaves, handled the same way: once the lease runs out the
        next attempt looks for the post and does not post it again. The setting is the
        mark's own (``set_config(…, true)`` in its statement, see :func:`_done_mark`),
        never the connection's: a claim always waits for the disk, whatever connection
        or pooler runs it, so two processes never both own a key.

        For 1,000 digests due at once that is one connection instead of 1,000 (each
        with its liveness ping) and no wait for the disk instead of 1,000.
        """
        marks = self._marks = _DoneMarks(self.db.engine)
        try:
            yield
        finally:
            self._marks = None
            marks.close()

    def claim(
        self, key: str, *, workspace_id: int | None = None, lease: timedelta = timedelta(minutes=10)
    ) -> Claim | None:
        """The claim when this process now owns ``key`` and must do its work, else None."""
        return self.claim_many([key], workspace_id=workspace_id, lease=lease).get(key)

    def claim_many(
        self,
        keys: list[str],
        *,
        workspace_id: int | None = None,
        lease: timedelta = timedelta(minutes=10),
    ) -> dict[str, Claim]:
        """The keys won, in two statements at most, each with its :class:`Claim`.

        A thousand digests due at 09:00 cost one round trip, not a thousand.
        """
        if not keys:
            return {}
        now = self.clock()
        columns = (Delivery.key, Delivery.attempts, Delivery.first_claimed_at)
        with self.db.transaction() as session:
            fresh = (
                upsert(session, Delivery)
                .values(
                    [
                        {
                            "key": key,
                            "workspace_id": workspace_id,
                            "claimed_by": self.owner,
                            "lease_until": now + lease,
                            "attempts": 1,
                            "first_claimed_at": now,
                        }
                        # In one order for everyone: processes claiming overlapping keys
                        # then wait for each other instead of deadlocking.
                        for key in sorted(keys)
                    ]
                )
                .on_conflict_do_nothing(index_elements=["key"])
                # RETURNING, not rowcount: drivers disagree on rowcount for upserts
                .returning(*columns)
            )
            won = list(session.execute(fresh))
            taken = {row.key for row in won}
            rest = [key for key in keys if key not in taken]
            if rest:
                takeover = (
                    update(Delivery)
                    .where(
                        Delivery.key.in_(rest),
                        Delivery.done_at.is_(None),
                        Delivery.lease_until < now,
                        # an alert still owed is retried until it expires (bot.jobs)
                        or_(Delivery.attempts < MAX_ATTEMPTS, Delivery.state == PENDING),
                    )
                    .values(
                        claimed_by=self.owner,
                        lease_until=now + lease,
                        attempts=Delivery.attempts + 1,
                    )
                    .returning(*columns)
                )
                won.extend(session.execute(takeover))
        # Rows from before first_claimed_at existed: the lease began at most a day before.
        return {
            key: Claim(key, attempts, since or now - timedelta(days=1))
            for key, attempts, since in won
        }

    def done(self, key: str, outcome: str = "ok", *, state: str | None = None) -> None:
        # One statement, committed on its own: one round trip instead of three.
        params = {"mark_key": key, "owner": self.owner, "at": self.clock(), "said": outcome[:2000]}
        if state is not None:  # else the state stays as it was
            params["new_state"] = state
        marks = self._marks
        statement = _DONE_MARKS[
            state is not None, marks is not None and self.db.backend == "postgresql"
        ]
        if marks is not None:
            marks.record(statement, params)
            return
        with _autocommit(self.db.engine) as conn:
            conn.execute(statement, params)

    def done_with(self, session: Session, keys: list[str], outcome: str = "ok") -> list[str]:
        """Mark ``keys`` done in ``session``'s transaction, so the work and its mark are
        stored together or not at all; the keys this process still held."""
        if not keys:
            return []
        statement = (
            update(Delivery)
            .where(Delivery.key.in_(keys), Delivery.claimed_by == self.owner)
            .values(done_at=self.clock(), outcome=outcome[:2000])
            .returning(Delivery.key)
        )
        return list(session.scalars(statement))

    def renew(self, keys: list[str], lease: timedelta) -> int:
        """Extend this process's lease on ``keys`` not done yet, while it works on them;
        how many it still held (another process may have taken one over meanwhile)."""
        if not keys:
            return 0
        with self.db.transaction() as session:
            return len(
                session.scalars(
                    update(Delivery)
                    .where(
                        Delivery.key.in_(keys),
                        Delivery.claimed_by == self.owner,
                        Delivery.done_at.is_(None),
                    )
                    .values(lease_until=self.clock() + lease)
                    .returning(Delivery.key)
                ).all()
            )

    def pending(
        self,
        key: str,
        reason: str,
        *,
        payload: str | None = None,
        retry_in: timedelta = timedelta(0),
    ) -> None:
        """Still owed: not done, retried by a later run (however many attempts)
        until it is delivered or :meth:`owed` finds it too old."""
        values = {
            "lease_until": self.clock() + retry_in,
            "outcome": reason[:2000],
            "state": PENDING,
        }
        if payload is not None:
            values["payload"] = payload
        with self.db.transaction() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.key == key, Delivery.claimed_by == self.owner)
                .values(**values)
            )

    def keep(self, key: str, payload: str) -> None:
        """Record what a claimed key is about (an alert's JSON): later runs read it back with
        :meth:`payloads`, and an alert still owed is sent from it."""
        with self.db.transaction() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.key == key, Delivery.claimed_by == self.owner)
                .values(payload=payload)
            )

    def payloads(self, prefix: str, workspace_id: int | None = None) -> dict[str, str | None]:
        """Keys starting with ``prefix`` (not their destinations) and what they carried."""
        query = select(Delivery.key, Delivery.payload).where(
            Delivery.key.startswith(prefix), Delivery.key.not_like("%@%")
        )
        if workspace_id is not None:
            query = query.where(Delivery.workspace_id == workspace_id)
        with self.db.session() as session:
            return {key: payload for key, payload in session.execute(query)}

    def states(self, keys: list[str]) -> dict[str, tuple[bool, str | None]]:
        """For each of ``keys`` in the ledger: whether it is done, and its last outcome."""
        if not keys:
            return {}
        query = select(Delivery.key, Delivery.done_at, Delivery.outcome).where(
            Delivery.key.in_(keys)
        )
        with self.db.session() as session:
            return {
                key: (done is not None, outcome) for key, done, outcome in session.execute(query)
            }

    def owed(self, workspace_id: int) -> list:
        """The workspace's alerts still pending, oldest first: rows of ``key``,
        ``payload`` (what to send), ``first_claimed_at`` and ``outcome`` (why)."""
        with self.db.session() as session:
            return list(
                session.execute(
                    select(
                        Delivery.key, Delivery.payload, Delivery.first_claimed_at, Delivery.outcome
                    )
                    .where(
                        Delivery.workspace_id == workspace_id,
                        Delivery.state == PENDING,
                        Delivery.done_at.is_(None),
                        Delivery.payload.is_not(None),
                    )
                    .order_by(Delivery.first_claimed_at, Delivery.key)
                )
            )

    def reached(self, prefix: str, workspace_id: int | None = None) -> list[str]:
        """Keys starting with ``prefix`` delivered somewhere: done (not expired
        unseen), or at least one of their destinations (``key@destination``) done."""
        query = select(Delivery.key, Delivery.state).where(
            Delivery.key.startswith(prefix), Delivery.done_at.is_not(None)
        )
        if workspace_id is not None:
            query = query.where(Delivery.workspace_id == workspace_id)
        with self.db.session() as session:
            rows = list(session.execute(query))
        return sorted({key.partition("@")[0] for key, state in rows if state in (None, DELIVERED)})

    def failed(self, key: str, outcome: str, *, retry_in: timedelta = timedelta(minutes=5)) -> None:
        """Hand the key back: another run may try again once ``retry_in`` passed."""
        with self.db.transaction() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.key == key, Delivery.claimed_by == self.owner)
                .values(lease_until=self.clock() + retry_in, outcome=outcome[:2000])
            )

    def delivered(self, prefix: str, workspace_id: int | None = None) -> list[str]:
        """Keys starting with ``prefix`` whose work was done."""
        query = select(Delivery.key).where(
            Delivery.key.startswith(prefix), Delivery.done_at.is_not(None)
        )
        if workspace_id is not None:
            query = query.where(Delivery.workspace_id == workspace_id)
        with self.db.session() as session:
            return list(session.scalars(query))


def _done_mark(*, in_state: bool, relaxed: bool) -> Update:
    """The UPDATE that marks a key done; ``relaxed`` (PostgreSQL only): its commit does
    not wait for the disk. PostgreSQL decides that at each commit from the setting then
    in force, and ``set_config(…, true)`` holds until the end of the transaction: this
    statement's own, in autocommit. Nothing outlives it on the connection."""
    values = {"done_at": bindparam("at"), "outcome": bindparam("said")}
    if in_state:  # the payload stays: what an alert said (a spike's amount, its title)
        values |= {"state": bindparam("new_state")}
    statement = update(Delivery).where(
        Delivery.key == bindparam("mark_key"), Delivery.claimed_by == bindparam("owner")
    )
    if relaxed:  # … AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
        relax = select(func.set_config("synchronous_commit", "off", True)).scalar_subquery()
        statement = statement.where(relax == "off")
    return statement.values(**values)


# Built once: building an UPDATE each time cost more than SQLite's running it.
_DONE_MARKS = {
    (in_state, relaxed): _done_mark(in_state=in_state, relaxed=relaxed)
    for in_state in (False, True)
    for relaxed in (False, True)
}


def _autocommit(engine: Engine) -> Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class _DoneMarks:
    """The connection a batch marks work done over (see :meth:`Ledger.batch`): opened
    at the first mark, and again when the server dropped it (a restart, a proxy)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def record(self, statement: Executable, params: dict) -> None:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = _autocommit(self.engine)
            try:
                self.conn.execute(statement, params)
                self.conn.commit()
                return
            except DBAPIError as error:
                self.close()
                # A mark is idempotent: setting it again on a new connection is safe.
                if attempt == 2 or not error.connection_invalidated:
                    raise

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
