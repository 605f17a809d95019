"""The sync engine: connect, backfill, daily and forced syncs.

The engine, not the provider, owns date windows, concurrency, storage and
what a failure does to a connection. Network work runs concurrently on the
event loop; writes go through one writer thread so a slow commit never
stalls the fetches, and each connection's window is replaced in one
transaction (no duplicates, nothing partial on failure).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import ssl
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache, partial
from typing import Any

import certifi
import httpx
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.config import MAX_BACKFILL_DAYS
from bot.ledger import process_name
from providers.manager import ProviderRegistry
from providers.types import (
    BillingSnapshot,
    CheckResult,
    CostFetch,
    CostRow,
    Provider,
    ProviderError,
    Reason,
    ResultTruncated,
    UnitCostProvider,
    UnitCostRow,
)
from storage.crypto import DecryptionError
from storage.db import Database, upsert
from storage.models import (
    ApiKeyName,
    BillingState,
    Connection,
    ConnectionStatus,
    DailyCost,
    FetchedSpan,
    InvoiceLineUnits,
    ModelSeen,
    SyncRun,
    UnitCost,
    UnitCostSpan,
    WorkspaceDailyTotal,
    account_key,
)
from storage.repo import connections as list_connections
from storage.repo import unique_label

log = logging.getLogger(__name__)


class ConnectError(Exception):
    """Connecting failed; nothing was saved. ``field`` names the input to fix."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        reason: str = "",
        existing: str | None = None,
        account: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason
        self.existing = existing
        """With reason ``already_connected``: the label of the connection there is..."""
        self.account = account
        """...and the account (Team ID) it reads."""


ALREADY_CONNECTED = "already_connected"


def already_connected(label: str, account: str, command: str = "xai-usage") -> str:
    """The refusal to connect an account twice, with the command that gives it a new key."""
    return (
        f"Team {account} is already connected here as “{label}”: a second connection "
        "would count its spend twice. To give it a new key, run "
        f'`{command} update-key "{label}"`.'
    )


@dataclass(frozen=True)
class SyncResult:
    connection_id: int
    label: str
    start: date
    end: date  # inclusive
    ok: bool
    rows: int = 0
    total_usd: Decimal = Decimal(0)
    reason: str | None = None
    message: str | None = None
    skipped: bool = False
    by_key: bool = False

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Connected:
    connection_id: int
    label: str
    mask: str
    check: CheckResult
    backfill: SyncResult


@dataclass(frozen=True)
class KeyUpdated:
    connection_id: int
    label: str
    mask: str
    check: CheckResult
    sync: SyncResult


def day_windows(start: date, end: date, max_days: int) -> list[tuple[date, date]]:
    """Split ``[start, end)`` into consecutive windows of at most ``max_days``."""
    windows = []
    while start < end:
        stop = min(start + timedelta(days=max_days), end)
        windows.append((start, stop))
        start = stop
    return windows


UNIT_COST_DAYS = 15
"""Costs by kind of usage are fetched for a sync's last finished days only (insights
look at the last week): one extra request a sync, not one per backfill window."""


@dataclass
class _Fetched:
    rows: list[CostRow]
    by_key: bool
    billing: BillingSnapshot | None = None
    key_names: dict[str, str] = field(default_factory=dict)
    unit_costs: _UnitCosts | None = None
    """None: the provider did not say this time (no capability, refused, failed)."""


@dataclass(frozen=True)
class _UnitCosts:
    """Costs by unit type for UTC days ``start``..``end`` (inclusive), complete."""

    start: date
    end: date
    rows: tuple[UnitCostRow, ...]


@dataclass
class _Attempt:
    """One connection's sync between its fetch and its storage."""

    connection: Connection
    start: date
    end: date
    started: datetime
    result: SyncResult | None = None
    fetched: _Fetched | None = None
    duration_ms: int = 0

    def failed(
        self, reason: str | None, message: str | None, *, skipped: bool = False
    ) -> SyncResult:
        c = self.connection
        return SyncResult(
            c.id,
            c.label,
            self.start,
            self.end,
            ok=False,
            reason=reason,
            message=message,
            skipped=skipped,
        )


Stored = Callable[[Session, list["SyncResult"]], None]
"""Called in the transaction that stores these syncs, to record something with them
(the daily sync marks each connection's share done: bot.jobs)."""

NextConnections = Callable[[int], Awaitable[list[Connection]]]
"""Up to ``n`` more connections to sync; none when there are no more."""


class _Writer:
    """One thread that stores syncs, committing whatever is queued together.

    A commit per connection is what a daily sync of hundreds of connections
    would otherwise wait on. If a batch fails, its syncs are stored again one
    transaction each, so one bad connection never costs the others, and a
    connection's window is still all-or-nothing.
    """

    MAX_BATCH = 50

    def __init__(
        self,
        store: Callable[[Session, _Attempt], None],
        transaction: Callable[[], Any],
        stored: Stored | None = None,
    ) -> None:
        self._store = store
        self._transaction = transaction
        self._stored = stored
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="xai-usage-writer", daemon=True)
        self._thread.start()

    async def write(self, attempt: _Attempt) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.put((attempt, loop, done))
        await done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    extra = self._queue.get_nowait()
                except queue.Empty:
                    break
                if extra is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(extra)
            self._write(batch)

    def _write(self, batch: list) -> None:
        # Rows are locked in one order in every transaction (connections by id,
        # rollup rows by workspace, day and model), so concurrent writers, in
        # this process or another, wait for each other instead of deadlocking.
        batch.sort(key=lambda item: item[0].connection.id)
        try:
            with self._transaction() as session:
                totals: dict[tuple[int, date, str], Decimal] = defaultdict(Decimal)
                for attempt, _, _ in batch:
                    self._store(session, attempt, totals)
                adjust_totals(session, totals)
                if self._stored is not None:
                    self._stored(session, [attempt.result for attempt, _, _ in batch])
        except Exception:
            if len(batch) > 1:
                for item in batch:
                    self._write([item])
                return
            _, loop, done = batch[0]
            error = sys.exc_info()[1]
            loop.call_soon_threadsafe(_settle, done, error)
            return
        for _, loop, done in batch:
            loop.call_soon_threadsafe(_settle, done, None)


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    if not done.done():
        done.set_exception(error) if error else done.set_result(None)


@cache
def _tls_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs tens of ms per client otherwise."""
    return ssl.create_default_context(cafile=certifi.where())


class _GatedClient(httpx.AsyncClient):
    """A client whose requests take a slot in a gate shared by all clients."""

    def __init__(self, gate: asyncio.Semaphore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = gate

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        async with self._gate:  # held until the body is read (no streaming here)
            return await super().send(request, **kwargs)


class HttpClients:
    """At most ``concurrency`` requests in flight, over small pooled clients.

    httpcore's pool does work proportional to its connection count on every
    request: one pool of 32 connections costs several ms of CPU a request,
    eight pools of a few connections well under one. Each client has room
    for a connection's whole burst (a 90-day backfill is six requests at
    once: three windows, two billing GETs, the split by unit type), so the
    shared gate, not a pool, decides who waits.
    """

    CONNECTIONS_PER_CLIENT = 8
    REQUESTS_PER_CLIENT = 4

    def __init__(self, concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)
        count = max(1, math.ceil(concurrency / self.REQUESTS_PER_CLIENT))
        size = self.CONNECTIONS_PER_CLIENT
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.clients = [
            _GatedClient(
                gate, limits=limits, timeout=httpx.Timeout(20.0, pool=None), verify=_tls_context()
            )
            for _ in range(count)
        ]

    def pick(self, index: int) -> httpx.AsyncClient:
        return self.clients[index % len(self.clients)]

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))


class SyncEngine:
    def __init__(
        self,
        db: Database,
        providers: ProviderRegistry,
        *,
        concurrency: int = 32,
        trailing_days: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        worker: str | None = None,
    ) -> None:
        self.db = db
        self.providers = providers
        self.concurrency = concurrency
        self.trailing_days = trailing_days
        self.clock = clock
        self.worker = worker or process_name()
        """Who runs the syncs (``host:pid``), recorded with each: replicas share the work."""

    # -- connect ----------------------------------------------------------------

    def validate_fields(self, provider: Provider, credentials: Mapping[str, str]) -> dict[str, str]:
        """Trimmed credentials, or ConnectError on the first malformed field."""
        clean = {}
        for spec in provider.credential_fields:
            value = (credentials.get(spec.name) or "").strip()
            problem = spec.validate(value) if value else f"{spec.label} is required."
            if problem:
                raise ConnectError(problem, field=spec.name, reason="invalid_input")
            clean[spec.name] = value
        return clean

    async def check(self, provider_name: str, credentials: Mapping[str, str]) -> CheckResult:
        provider = self.providers.get(provider_name)
        clean = self.validate_fields(provider, credentials)
        async with HttpClients(1) as clients:
            try:
                return await provider.check_credentials(clients.pick(0), clean)
            except ProviderError as error:
                raise ConnectError(error.message, field=error.field, reason=error.reason) from None

    async def connect(
        self,
        workspace_id: int,
        provider_name: str,
        credentials: Mapping[str, str],
        *,
        label: str | None = None,
        backfill_days: int = MAX_BACKFILL_DAYS,
        created_by: str = "",
        check: CheckResult | None = None,
    ) -> Connected:
        """Test, save, backfill. Nothing is saved unless the test passes.

        ``check`` is a test that already passed moments ago (the Slack modal
        tests before it closes), so it is not repeated.
        """
        if not 1 <= backfill_days <= MAX_BACKFILL_DAYS:
            raise ConnectError(
                f"Backfill days must be between 1 and {MAX_BACKFILL_DAYS}, got {backfill_days}.",
                field="backfill_days",
                reason="invalid_input",
            )
        provider = self.providers.get(provider_name)
        clean = self.validate_fields(provider, credentials)
        label = (label or "").strip()
        account_ref = " ".join(clean[f.name] for f in provider.credential_fields if not f.secret)
        self.refuse_connected(workspace_id, provider.name, account_ref)
        with self.db.session() as session:
            taken = {c.label.lower() for c in list_connections(session, workspace_id)}
            if label and label.lower() in taken:
                raise ConnectError(
                    f"A connection labelled “{label}” already exists. Pick another label, "
                    "or disconnect the old one first.",
                    field="label",
                    reason="label_taken",
                )
        check = check or await self.check(provider_name, clean)
        mask = provider.mask(clean)
        try:
            connection_id, label = self._save(
                workspace_id, provider, clean, label, mask, backfill_days, created_by
            )
        except IntegrityError:
            # Connected by someone else while this key was being tested.
            self.refuse_connected(workspace_id, provider.name, account_ref)
            raise
        log.info("connected %s (%s) as connection %s", label, mask, connection_id)
        backfill = await self.sync_connection(
            connection_id, trigger="backfill", days=backfill_days, force=True
        )
        return Connected(connection_id, label, mask, check, backfill)

    def refuse_connected(self, workspace_id: int, provider_name: str, account_ref: str) -> None:
        """ConnectError naming the connection of this account, if there is one."""
        with self.db.session() as session:
            existing = session.scalar(
                select(Connection.label).where(
                    Connection.workspace_id == workspace_id,
                    Connection.provider == provider_name,
                    Connection.account_key == account_key(account_ref),
                )
            )
        if existing is not None:
            raise ConnectError(
                already_connected(existing, account_ref),
                field="team_id",
                reason=ALREADY_CONNECTED,
                existing=existing,
                account=account_ref,
            )

    def _save(
        self,
        workspace_id: int,
        provider: Provider,
        clean: dict[str, str],
        label: str,
        mask: str,
        backfill_days: int,
        created_by: str,
    ) -> tuple[int, str]:
        with self.db.transaction() as session:
            label = label or unique_label(session, workspace_id, provider.default_label(clean))
            public = " ".join(clean[f.name] for f in provider.credential_fields if not f.secret)
            connection = Connection(
                workspace_id=workspace_id,
                provider=provider.name,
                label=label,
                account_ref=public,
                account_key=account_key(public),
                secret_mask=mask,
                backfill_days=backfill_days,
                created_by=created_by,
                credentials_changed_at=self.clock(),
                credentials_sealed="",
                credentials_key_id=self.db.keyring.primary_key_id,
            )
            session.add(connection)
            session.flush()  # assigns uid, which the ciphertext is bound to
            connection.credentials_sealed = self.db.keyring.seal_json(
                clean, connection.credentials_aad
            )
            return connection.id, label

    async def update_key(
        self,
        connection_id: int,
        secrets: Mapping[str, str],
        *,
        check: CheckResult | None = None,
    ) -> KeyUpdated:
        """Give a connection a new key: tested first, then sealed; its data stays.

        The account (the Team ID) cannot change here: a key of another team is
        refused, since its costs would be stored as this connection's. On
        success the error state is cleared and a sync runs at once.
        """
        connection, provider, credentials = self.new_credentials(connection_id, secrets)
        if check is None:
            check = await self.check_update(connection, credentials)
        mask = provider.mask(credentials)
        with self.db.transaction() as session:
            row = session.get(Connection, connection_id, with_for_update=True)
            if row is None:
                raise ConnectError(
                    f"“{connection.label}” was disconnected meanwhile; nothing was saved.",
                    reason="gone",
                )
            row.credentials_sealed = self.db.keyring.seal_json(credentials, row.credentials_aad)
            row.credentials_key_id = self.db.keyring.primary_key_id
            row.credentials_changed_at = self.clock()
            row.secret_mask = mask
            row.status = ConnectionStatus.PENDING
            row.status_reason = None
            row.status_message = None
            row.error_since = None
        log.info("new key for connection %s (%s)", connection_id, mask)
        synced = await self.sync_connection(connection_id, trigger="force", force=True)
        return KeyUpdated(connection_id, connection.label, mask, check, synced)

    def new_credentials(
        self, connection_id: int, secrets: Mapping[str, str]
    ) -> tuple[Connection, Provider, dict[str, str]]:
        """The connection's account fields with the new secret ones, validated."""
        with self.db.session() as session:
            connection = session.get(Connection, connection_id)
        if connection is None:
            raise ConnectError(f"No connection with id {connection_id}.", reason="gone")
        provider = self.providers.get(connection.provider)
        public_fields = [f for f in provider.credential_fields if not f.secret]
        # The account fields come from the plain column, so a key can be replaced
        # even when the stored one no longer decrypts.
        values = connection.account_ref.split(" ")
        credentials = {f.name: v for f, v in zip(public_fields, values, strict=False)}
        for spec in provider.credential_fields:
            if spec.secret:
                credentials[spec.name] = secrets.get(spec.name) or ""
        return connection, provider, self.validate_fields(provider, credentials)

    async def check_update(
        self, connection: Connection, credentials: Mapping[str, str]
    ) -> CheckResult:
        """Test a replacement key; every problem is the key's (the account is fixed)."""
        try:
            return await self.check(connection.provider, credentials)
        except ConnectError as error:
            fields = self.providers.get(connection.provider).credential_fields
            message = error.message
            if error.reason == Reason.TEAM_MISMATCH:
                message = (
                    f"This key is not a key of team {connection.account_ref}, the team "
                    f"“{connection.label}” reads. Create a key in that team "
                    "(console.x.ai > Settings > Management Keys, Billing: Read Only), "
                    "or connect the other team separately."
                )
            secret = next(f.name for f in fields if f.secret)
            raise ConnectError(message, field=secret, reason=error.reason) from None

    def disconnect(self, connection_id: int) -> None:
        """Delete the connection, its credentials and all its data."""
        with self.db.transaction() as session:
            workspace_id = session.scalar(
                select(Connection.workspace_id).where(Connection.id == connection_id)
            )
            if workspace_id is not None:
                removed = session.execute(
                    _totals_by_day_and_model(DailyCost.connection_id == connection_id)
                )
                adjust_totals(session, {(workspace_id, d, m): -c for d, m, c in removed})
            for table in (
                DailyCost,
                FetchedSpan,
                ApiKeyName,
                ModelSeen,
                BillingState,
                SyncRun,
                UnitCost,
                UnitCostSpan,
                InvoiceLineUnits,
            ):
                session.execute(delete(table).where(table.connection_id == connection_id))
            session.execute(delete(Connection).where(Connection.id == connection_id))

    # -- sync -------------------------------------------------------------------

    def today(self) -> date:
        return self.clock().astimezone(UTC).date()

    def window_for(self, connection: Connection, days: int | None) -> tuple[date, date]:
        """The UTC days to (re)fetch, ``[start, end]`` inclusive.

        A daily sync re-fetches the trailing days (a day keeps changing for
        hours after it ends) and, after downtime, every day since the last
        success, up to the backfill limit.
        """
        today = self.today()
        if days is None:
            days = self.trailing_days
            if connection.last_success_at is None:
                days = connection.backfill_days
            else:
                since = (today - connection.last_success_at.date()).days + 1
                days = max(days, min(since, MAX_BACKFILL_DAYS))
        days = max(1, min(days, MAX_BACKFILL_DAYS))
        return today - timedelta(days=days - 1), today

    async def sync_connection(
        self,
        connection_id: int,
        *,
        trigger: str = "force",
        days: int | None = None,
        force: bool = True,
    ) -> SyncResult:
        results = await self.sync_many([connection_id], trigger=trigger, days=days, force=force)
        return results[0]

    async def sync_all(
        self,
        workspace_id: int | None = None,
        *,
        trigger: str = "daily",
        days: int | None = None,
        force: bool = False,
        progress: Callable[[SyncResult, int, int], None] | None = None,
    ) -> list[SyncResult]:
        with self.db.session() as session:
            query = select(Connection.id).order_by(Connection.id)
            if workspace_id is not None:
                query = query.where(Connection.workspace_id == workspace_id)
            ids = list(session.scalars(query))
        return await self.sync_many(ids, trigger=trigger, days=days, force=force, progress=progress)

    async def sync_many(
        self,
        connection_ids: Iterable[int],
        *,
        trigger: str,
        days: int | None = None,
        force: bool = False,
        progress: Callable[[SyncResult, int, int], None] | None = None,
        stored: Stored | None = None,
    ) -> list[SyncResult]:
        """Sync these connections; their results in the same order."""
        ids = list(connection_ids)
        loaded = self._load(ids)
        missing = [i for i in ids if i not in loaded]
        if missing:
            raise LookupError(f"no connection with id {missing[0]}")
        rest = [loaded[i] for i in ids]

        async def everything(_: int) -> list[Connection]:
            handed, rest[:] = rest[:], []
            return handed

        return await self._sync(
            everything, trigger, days, force, stored, progress=progress, total=len(ids)
        )

    async def sync_claimed(
        self,
        claim: Callable[[int], Sequence[int]],
        *,
        trigger: str,
        days: int | None = None,
        force: bool = False,
        stored: Stored | None = None,
    ) -> list[SyncResult]:
        """Sync connections as ``claim(n)`` hands them out, until it hands out none.

        ``claim`` returns up to ``n`` more connection ids this process now owns
        (work shared between processes: ``bot.jobs`` claims the daily sync a few
        dozen connections at a time). It is called, in a thread, while the last
        ones it handed out are still in flight, so the network never waits for
        it. An id whose connection is gone by then is left out of the results.
        """

        def claimed(n: int) -> list[Connection]:
            while ids := list(claim(n)):
                loaded = self._load(ids)
                if connections := [loaded[i] for i in ids if i in loaded]:
                    return connections
            return []

        async def more(n: int) -> list[Connection]:
            return await asyncio.to_thread(claimed, n)

        return await self._sync(more, trigger, days, force, stored)

    def _load(self, ids: list[int]) -> dict[int, Connection]:
        with self.db.session() as session:
            return {
                c.id: c for c in session.scalars(select(Connection).where(Connection.id.in_(ids)))
            }

    async def _sync(
        self,
        more: NextConnections,
        trigger: str,
        days: int | None,
        force: bool,
        stored: Stored | None,
        *,
        progress: Callable[[SyncResult, int, int], None] | None = None,
        total: int = 0,
    ) -> list[SyncResult]:
        """Keep ``concurrency`` connections fetching, storing each as it is fetched.

        A connection holds its slot for the network part only; storing is the
        writer thread's, so the next fetch starts meanwhile.
        """
        slots = asyncio.Semaphore(self.concurrency)
        done = 0
        writer = _Writer(partial(self._record, trigger=trigger), self.db.transaction, stored)
        try:
            async with HttpClients(self.concurrency) as clients:

                async def one(index: int, connection: Connection) -> SyncResult:
                    nonlocal done
                    try:
                        attempt = await self._fetch_one(
                            clients.pick(index), connection, days, force
                        )
                    finally:
                        slots.release()
                    result = await self._store_one(writer, attempt)
                    done += 1
                    if progress:
                        progress(result, done, total)
                    return result

                syncs: list[asyncio.Task[SyncResult]] = []
                while connections := await more(self.concurrency):
                    for connection in connections:
                        await slots.acquire()
                        syncs.append(asyncio.create_task(one(len(syncs), connection)))
                return list(await asyncio.gather(*syncs))
        finally:
            writer.close()

    async def _fetch_one(
        self,
        http: httpx.AsyncClient,
        connection: Connection,
        days: int | None,
        force: bool,
    ) -> _Attempt:
        """The network half of a sync: what to store, or why it failed."""
        start, end = self.window_for(connection, days)
        attempt = _Attempt(connection, start, end, self.clock())
        if connection.status == ConnectionStatus.ERROR and not force:
            attempt.result = attempt.failed(
                connection.status_reason, connection.status_message, skipped=True
            )
            return attempt
        began = time.perf_counter()
        try:
            provider = self.providers.get(connection.provider)
            credentials = self.db.keyring.open_json(
                connection.credentials_sealed, connection.credentials_aad
            )
            fetched = await self._fetch(
                http, provider, credentials, connection, start, end + timedelta(days=1)
            )
        except ProviderError as error:
            attempt.result = attempt.failed(str(error.reason), error.message)
        except DecryptionError as error:  # expected, and its reason says it all: no traceback
            reason = "credentials_unreadable"
            log.warning("sync of connection %s failed: credentials unreadable", connection.id)
            attempt.result = attempt.failed(reason, _internal_message(reason, error))
        except Exception as error:  # a bug must not stop the others
            log.exception("sync of connection %s failed", connection.id)
            attempt.result = attempt.failed("internal", _internal_message("internal", error))
        else:
            attempt.fetched = fetched
            attempt.result = SyncResult(
                connection.id,
                connection.label,
                start,
                end,
                ok=True,
                rows=len(fetched.rows),
                total_usd=sum((r.cost_usd for r in fetched.rows), Decimal(0)),
                by_key=fetched.by_key,
            )
        attempt.duration_ms = int((time.perf_counter() - began) * 1000)
        return attempt

    async def _store_one(self, writer: _Writer, attempt: _Attempt) -> SyncResult:
        """The storage half, on the writer thread; a skipped sync stores nothing."""
        if attempt.result.skipped:
            return attempt.result
        try:
            await writer.write(attempt)
        except Exception as error:
            log.exception("storing the sync of connection %s failed", attempt.connection.id)
            attempt.fetched = None
            attempt.result = attempt.failed(
                "store_failed",
                f"Fetched the costs but could not store them: {type(error).__name__}. "
                "Nothing was changed; the next sync retries.",
            )
            await writer.write(attempt)
        return attempt.result

    async def _fetch(
        self,
        http: httpx.AsyncClient,
        provider: Provider,
        credentials: Mapping[str, str],
        connection: Connection,
        start: date,
        end: date,
    ) -> _Fetched:
        # Always ask for the per-key breakdown: a refusal may be a passing 400 or a
        # busy period, and the provider falls back per window at the cost of one
        # quick request. ``key_breakdown`` records what the last sync got.
        by_key = True
        windows = day_windows(start, end, provider.max_window_days)
        # Costs, billing figures and costs by unit type, all at once (asking for the split
        # after the costs made a backfill one round trip longer). Every request has ended
        # when this returns, failed or not: nothing runs on past the connection's slot and
        # HTTP client, and no error goes unread.
        *costs, billing, unit_costs = await asyncio.gather(
            *(self._fetch_split(http, provider, credentials, s, e, by_key) for s, e in windows),
            self._billing(http, provider, credentials),
            self._unit_costs(http, provider, credentials, start, end),
            return_exceptions=True,
        )
        # The costs decide: their failure fails the sync. Billing and the split turn their
        # own failures into None, so what they raise here is a bug, and fails it too.
        errors = [r for r in (*costs, billing, unit_costs) if isinstance(r, BaseException)]
        if errors:
            for other in errors[1:]:  # more of the same reason need no word; a bug does
                if not isinstance(other, ProviderError):
                    log.error(
                        "sync of connection %s failed (%s) and also raised this",
                        connection.id,
                        type(errors[0]).__name__,
                        exc_info=other,
                    )
            raise errors[0]
        keyed = all(c.by_key for c in costs)
        rows: list[CostRow] = [row for fetch in costs for row in fetch.rows]
        if by_key and not keyed:
            rows = _without_keys(rows)
        names = {r.api_key_id: r.api_key_label for r in rows if r.api_key_id}
        return _Fetched(rows, keyed, billing, names, unit_costs)

    async def _unit_costs(
        self,
        http: httpx.AsyncClient,
        provider: Provider,
        credentials: Mapping[str, str],
        start: date,
        end: date,
    ) -> _UnitCosts | None:
        """The last days' costs by kind of usage, where the provider answers: a bonus like
        billing figures, so a refusal or a failure never fails the sync."""
        if not isinstance(provider, UnitCostProvider):
            return None
        # Finished days only: insights never read today (partial), so a refresh of
        # today alone (`today` in Slack) costs no extra request.
        end = min(end, self.clock().astimezone(UTC).date())
        start = max(start, end - timedelta(days=min(UNIT_COST_DAYS, provider.max_window_days)))
        if start >= end:
            return None
        try:
            rows = await provider.fetch_unit_costs(http, credentials, start, end)
        except ProviderError as error:
            log.info("costs by unit type unavailable: %s", error.reason)
            return None
        if rows is None:
            return None
        return _UnitCosts(start, end - timedelta(days=1), tuple(rows))

    async def _fetch_split(
        self,
        http: httpx.AsyncClient,
        provider: Provider,
        credentials: Mapping[str, str],
        start: date,
        end: date,
        by_key: bool,
    ) -> CostFetch:
        """Fetch a window; a cut-off answer is split in halves, never stored.

        The provider has already tried without the per-key breakdown before
        giving up; the halves try it again, as a shorter range may fit it.
        """
        try:
            return await provider.fetch_daily_costs(http, credentials, start, end, by_key=by_key)
        except ResultTruncated:
            span = (end - start).days
            if span <= 1:
                raise ProviderError(
                    Reason.TRUNCATED,
                    f"The provider cut off the costs for {start.isoformat()} even for a single "
                    "day (too many groups). Nothing was stored for that sync.",
                ) from None
            middle = start + timedelta(days=span // 2)
            first, second = await asyncio.gather(
                self._fetch_split(http, provider, credentials, start, middle, by_key),
                self._fetch_split(http, provider, credentials, middle, end, by_key),
            )
            keyed = first.by_key and second.by_key
            rows = first.rows + second.rows
            return CostFetch(rows if keyed or not by_key else tuple(_without_keys(rows)), keyed)

    async def _billing(
        self, http: httpx.AsyncClient, provider: Provider, credentials: Mapping[str, str]
    ) -> BillingSnapshot | None:
        """Live billing figures are a bonus: their failure never fails a sync."""
        try:
            return await provider.fetch_billing(http, credentials)
        except ProviderError as error:
            log.info("billing figures unavailable: %s", error.reason)
            return None

    def _record(self, session: Session, attempt: _Attempt, totals: dict, trigger: str) -> None:
        """Store one sync's outcome (on the writer, inside its transaction).

        A handful of set-based statements per sync: this runs once per
        connection per day, hundreds of times in a row.
        """
        connection, result, fetched = attempt.connection, attempt.result, attempt.fetched
        now = self.clock()
        if fetched is None:
            reason = result.reason or ""
            needs_person = reason in NEEDS_PERSON
            status = {
                "status": ConnectionStatus.ERROR if needs_person else ConnectionStatus.FAILING,
                "status_reason": reason,
                "status_message": result.message,
            }
            if needs_person:  # the start of an incident, kept while it lasts
                status["error_since"] = case(
                    (Connection.status == ConnectionStatus.ERROR, Connection.error_since),
                    else_=now,
                )
        else:
            status = {
                "status": ConnectionStatus.OK,
                "status_reason": None,
                "status_message": None,
                "last_success_at": now,
                "key_breakdown": fetched.by_key,
                "error_since": None,
            }
        updated = session.execute(
            update(Connection)
            .where(Connection.id == connection.id)
            .values(last_attempt_at=now, **status)
        )
        if updated.rowcount == 0:  # disconnected while the sync ran
            return
        session.execute(
            insert(SyncRun).values(
                connection_id=connection.id,
                trigger=trigger,
                window_start=result.start,
                window_end=result.end,
                started_at=attempt.started,
                finished_at=now,
                outcome="ok" if result.ok else "error",
                reason=result.reason,
                message=result.message,
                rows=result.rows,
                total_usd=result.total_usd if result.ok else None,
                duration_ms=attempt.duration_ms,
                worker=self.worker,
            )
        )
        if fetched is not None:
            self._replace_costs(session, connection, result.start, result.end, fetched, totals)
            record_fetched(
                session, connection.id, connection.workspace_id, result.start, result.end
            )
            _replace_unit_costs(session, connection, fetched.unit_costs)
            _replace_invoice_lines(session, connection, fetched.billing, self.clock())

    def _replace_costs(
        self,
        session: Session,
        connection: Connection,
        start: date,
        end: date,
        fetched: _Fetched,
        totals: dict,
    ) -> None:
        """Replace the window's rows; the rollup's differences go into ``totals``."""
        window = (
            DailyCost.connection_id == connection.id,
            DailyCost.day >= start,
            DailyCost.day <= end,
        )
        deltas: dict[tuple[date, str], Decimal] = {}
        for row in fetched.rows:
            deltas[(row.day, row.model)] = deltas.get((row.day, row.model), 0) + row.cost_usd
        for day, model, old in session.execute(_totals_by_day_and_model(*window)):
            deltas[(day, model)] = deltas.get((day, model), 0) - old
        for (day, model), delta in deltas.items():
            totals[(connection.workspace_id, day, model)] += delta
        session.execute(delete(DailyCost).where(*window))
        if not fetched.rows:
            return
        session.execute(
            insert(DailyCost),
            [
                {
                    "connection_id": connection.id,
                    "workspace_id": connection.workspace_id,
                    "day": row.day,
                    "model": row.model,
                    "api_key_id": row.api_key_id,
                    "cost": row.cost_usd,
                }
                for row in fetched.rows
            ],
        )
        first_days: dict[str, date] = {}
        for row in fetched.rows:
            first_days[row.model] = min(row.day, first_days.get(row.model, row.day))
        seen = upsert(session, ModelSeen)
        session.execute(
            seen.on_conflict_do_update(
                index_elements=["connection_id", "model"],
                set_={
                    "first_day": case(
                        (seen.excluded.first_day < ModelSeen.first_day, seen.excluded.first_day),
                        else_=ModelSeen.first_day,
                    )
                },
            ),
            [
                {
                    "connection_id": connection.id,
                    "model": model,
                    "first_day": day,
                    "first_seen_at": self.clock(),
                }
                for model, day in first_days.items()
            ],
        )
        if fetched.key_names:
            names = upsert(session, ApiKeyName)
            session.execute(
                names.on_conflict_do_update(
                    index_elements=["connection_id", "api_key_id"],
                    set_={"name": names.excluded.name},
                ),
                [
                    {"connection_id": connection.id, "api_key_id": key, "name": name}
                    for key, name in fetched.key_names.items()
                ],
            )
        if fetched.billing is not None:
            b = fetched.billing
            figures = {
                # The sync's clock: the invoice is compared with costs fetched at that time.
                "as_of": self.clock(),
                "invoice_month": b.billing_cycle,
                "month_to_date_usd": b.month_to_date_usd,
                "prepaid_credit_usd": b.prepaid_credit_usd,
                "spending_limit_usd": b.spending_limit_usd,
                "invoiced_usd": b.invoiced_usd,
            }
            billing = upsert(session, BillingState).values(connection_id=connection.id, **figures)
            session.execute(
                billing.on_conflict_do_update(index_elements=["connection_id"], set_=figures)
            )


def _totals_by_day_and_model(*where: Any) -> Any:
    return (
        select(DailyCost.day, DailyCost.model, func.sum(DailyCost.cost))
        .where(*where)
        .group_by(DailyCost.day, DailyCost.model)
    )


def _replace_unit_costs(
    session: Session, connection: Connection, fetched: _UnitCosts | None
) -> None:
    """Replace the days' costs by unit type and note them fetched (in the sync's transaction)."""
    if fetched is None:
        return
    session.execute(
        delete(UnitCost).where(
            UnitCost.connection_id == connection.id,
            UnitCost.day >= fetched.start,
            UnitCost.day <= fetched.end,
        )
    )
    if fetched.rows:
        session.execute(
            insert(UnitCost),
            [
                {
                    "connection_id": connection.id,
                    "workspace_id": connection.workspace_id,
                    "day": row.day,
                    "model": row.model,
                    "unit_type": row.unit_type,
                    "cost": row.cost_usd,
                }
                for row in fetched.rows
            ],
        )
    record_fetched(
        session, connection.id, connection.workspace_id, fetched.start, fetched.end, UnitCostSpan
    )


def _replace_invoice_lines(
    session: Session, connection: Connection, billing: BillingSnapshot | None, now: datetime
) -> None:
    """The invoice preview's unit counts, replaced whenever the invoice was read."""
    if billing is None:
        return
    session.execute(delete(InvoiceLineUnits).where(InvoiceLineUnits.connection_id == connection.id))
    if billing.lines:
        session.execute(
            insert(InvoiceLineUnits),
            [
                {
                    "connection_id": connection.id,
                    "model": line.model,
                    "unit_type": line.unit_type,
                    "invoice_month": billing.billing_cycle,
                    "num_units": line.num_units,
                    "amount_usd": line.amount_usd,
                    "as_of": now,
                }
                for line in billing.lines
            ],
        )


def record_fetched(
    session: Session,
    connection_id: int,
    workspace_id: int,
    first: date,
    last: date,
    span: type[FetchedSpan] | type[UnitCostSpan] = FetchedSpan,
) -> None:
    """Note that ``first``..``last`` were fetched completely, merged with what touches it.

    ``span`` is the table of what was fetched: the costs (``FetchedSpan``) or
    their split by unit type (``UnitCostSpan``).

    Called in the transaction that stored those days' costs, after the
    connection's row was updated: that row lock orders concurrent writers of
    one connection, so the read-merge-write below never races.
    """
    touching = (
        span.connection_id == connection_id,
        span.first_day <= last + timedelta(days=1),
        span.last_day >= first - timedelta(days=1),
    )
    for old_first, old_last in session.execute(
        select(span.first_day, span.last_day).where(*touching)
    ):
        first, last = min(first, old_first), max(last, old_last)
    session.execute(delete(span).where(*touching))
    session.execute(
        insert(span).values(
            connection_id=connection_id, workspace_id=workspace_id, first_day=first, last_day=last
        )
    )


def adjust_totals(session: Session, changes: Mapping[tuple[int, date, str], Decimal]) -> None:
    """Add differences to the workspace rollup, keyed (workspace, day, model).

    Atomic under concurrent writers, and applied in sorted order so two
    transactions never lock the same rows in opposite orders.
    """
    rows = [
        {"workspace_id": workspace_id, "day": day, "model": model, "cost": delta}
        for (workspace_id, day, model), delta in sorted(changes.items())
        if delta
    ]
    if not rows:
        return
    totals = upsert(session, WorkspaceDailyTotal)
    session.execute(
        totals.on_conflict_do_update(
            index_elements=["workspace_id", "day", "model"],
            set_={"cost": WorkspaceDailyTotal.cost + totals.excluded.cost},
        ),
        rows,
    )


NEEDS_PERSON = frozenset({r.value for r in Reason if r.needs_person} | {"credentials_unreadable"})


def _without_keys(rows: Iterable[CostRow]) -> list[CostRow]:
    """Collapse per-key rows to per-model rows (when some window lacked keys)."""
    totals: dict[tuple[date, str], Decimal] = {}
    for row in rows:
        totals[(row.day, row.model)] = totals.get((row.day, row.model), Decimal(0)) + row.cost_usd
    return [CostRow(day, model, cost) for (day, model), cost in sorted(totals.items())]


def _internal_message(reason: str, error: Exception) -> str:
    if reason == "credentials_unreadable":
        return (
            "The stored credentials could not be decrypted: they were tampered with, or the "
            "encryption key changed. Check XAI_USAGE_ENCRYPTION_KEY, or give it its key again "
            "with update-key."
        )
    return f"Internal error ({type(error).__name__}); see the logs. The next sync retries."
