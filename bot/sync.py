"""The sync engine: connect, backfill, daily and forced syncs.

The engine, not the provider, owns date windows, concurrency, storage and
what a failure does to a connection. Network work runs concurrently on the
event loop; writes go through one writer thread so a slow commit never
stalls the fetches, and each connection's window is replaced in one
transaction (no duplicates, nothing partial on failure).
"""

from __future__ import annotations

import asyncio
import gc
import json
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
from functools import cache, lru_cache, partial
from typing import Any, TypeVar

import certifi
import httpx
from sqlalchemy import (
    ARRAY,
    Integer,
    Table,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import Date, DateTime, NullType

from bot.figures import day_end
from bot.ledger import process_name
from bot.numbers import whole_number
from bot.profiles import Profile
from bot.profiles import record as record_profiles
from bot.transport import LeanTransport, proxy_configured
from providers.manager import ProviderRegistry
from providers.types import (
    BillingSnapshot,
    CheckResult,
    CostFetch,
    CostRow,
    InvoiceHistoryProvider,
    InvoiceStatus,
    PastInvoice,
    Provider,
    ProviderError,
    Reason,
    ResultTruncated,
    UnitCostProvider,
    UnitCostRow,
    max_backfill_days,
    settle_hours,
)
from storage.crypto import DecryptionError
from storage.db import Database, missing_keys_warning, upsert
from storage.models import (
    ApiKeyName,
    BillingState,
    Connection,
    ConnectionStatus,
    DailyCost,
    FetchedSpan,
    Invoice,
    InvoiceLineUnits,
    ModelSeen,
    ProvisionalDay,
    SyncRun,
    UnitCost,
    UnitCostSpan,
    WorkspaceDailyTotal,
    account_key,
)
from storage.reader import usd
from storage.repo import connections as list_connections
from storage.repo import unique_label

log = logging.getLogger(__name__)


class ConnectError(Exception):
    """Connecting failed; nothing was saved. ``field`` names the input to fix: a
    credential field the provider declares, or ``label`` or ``backfill_days``."""

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
        """...and the account it reads, as its provider names it."""


ALREADY_CONNECTED = "already_connected"
INVALID_INPUT = "invalid_input"
BACKFILL_FIELD = "backfill_days"
LABEL_FIELD = "label"


def already_connected(label: str, account: str, command: str = "xai-usage") -> str:
    """The refusal to connect an account twice, with the command that gives it a new key."""
    return (
        f"That account ({account}) is already connected here as “{label}”: a second "
        "connection would count its spend twice. To give it a new key, run "
        f"`{command} update-key {_quoted_label(label)}`."
    )


def _quoted_label(label: str) -> str:
    from bot.grammar import quoted

    return quoted(label)


# -- what a provider declares, read the same way on every surface ---------------


def field_problems(
    provider: Provider, credentials: Mapping[str, str], *, only_given: bool = False
) -> dict[str, str]:
    """Each declared field's problem, by field name, checked by the provider's own
    ``validate`` (no network): a required field left empty, a malformed value.
    With ``only_given``, fields absent from ``credentials`` are not judged."""
    problems = {}
    for spec in provider.credential_fields:
        if only_given and spec.name not in credentials:
            continue
        value = (credentials.get(spec.name) or "").strip()
        if not value:
            if not spec.optional:
                problems[spec.name] = f"{spec.label} is required."
            continue
        if problem := spec.validate(value):
            problems[spec.name] = problem
    return problems


def given_fields(provider: Provider, credentials: Mapping[str, str]) -> dict[str, str]:
    """The declared fields that have a value, trimmed (an optional one left empty is left
    out: the provider then does without it)."""
    given = {}
    for spec in provider.credential_fields:
        value = (credentials.get(spec.name) or "").strip()
        if value:
            given[spec.name] = value
    return given


def account_of(provider: Provider, credentials: Mapping[str, str], check: CheckResult) -> str:
    """Which account checked credentials read: the provider's word for it
    (``CheckResult.account_id``), else its non-secret fields joined; "" when neither
    says (a key-only provider that could not tell)."""
    if check.account_id.strip():
        return check.account_id.strip()
    public = (credentials.get(f.name, "") for f in provider.credential_fields if not f.secret)
    return " ".join(value.strip() for value in public if value.strip())


def account_field(provider: Provider, credentials: Mapping[str, str], account: str) -> str:
    """The field a refusal of ``account`` belongs on: the non-secret field that names it,
    where one does (a Team ID), else the secret (the key is what reads the account)."""
    for spec in provider.credential_fields:
        if not spec.secret and account_key(credentials.get(spec.name, "")) == account_key(account):
            return spec.name
    return next((f.name for f in provider.credential_fields if f.secret), "")


def account_words(name: str, account: str) -> str:
    """An account as people read it: "Acme (org-123)", its id alone, or its name alone."""
    name, account = name.strip(), account.strip()
    if name and account and name != account:
        return f"{name} ({account})"
    return name or account


def stored_fields(provider: Provider, connection: Connection) -> dict[str, str]:
    """A connection's non-secret credential fields, from their plain column (or, for a
    connection made before it, from ``account_ref``, which held them joined)."""
    if connection.account_fields is not None:
        try:
            stored = json.loads(connection.account_fields)
        except ValueError:
            stored = {}
        return {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}
    public = [f for f in provider.credential_fields if not f.secret]
    values = (connection.account_ref or "").split(" ")
    return {f.name: v for f, v in zip(public, values, strict=False) if v}


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
    needs_person: bool = False
    """A failure retrying cannot mend (``ProviderError.needs_person``): the connection
    turns to error until someone gives it a new key."""

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
    account: str = ""
    """The account it reads, as shown (its name and id, where the provider gave them)."""


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


INVOICE_MONTHS = 3
"""Past invoices are asked for the last few closed months only: the ones a monthly
digest, ``last-month`` or a closed month's PDF set beside the usage series."""
INVOICE_RECHECK = timedelta(hours=6)
"""A month whose invoice is not final yet (pending, failed, unreadable, not issued) is
asked for again at most this often, however often syncs run."""


@dataclass
class _Fetched:
    rows: list[CostRow]
    by_key: bool
    billing: BillingSnapshot | None = None
    key_names: dict[str, str] = field(default_factory=dict)
    unit_costs: _UnitCosts | None = None
    """None: the provider did not say this time (no capability, refused, failed)."""
    invoices: _Invoices | None = None
    """None: not asked this time (nothing due), or the provider did not say."""


@dataclass(frozen=True)
class _UnitCosts:
    """Costs by unit type for UTC days ``start``..``end`` (inclusive), complete."""

    start: date
    end: date
    rows: tuple[UnitCostRow, ...]


@dataclass(frozen=True)
class _Invoices:
    """What the provider listed for the closed ``months`` asked for."""

    months: tuple[date, ...]
    found: tuple[PastInvoice, ...]


_FINAL_INVOICES = frozenset(s.value for s in InvoiceStatus if s.final)


def invoice_months_due(stored: Mapping[date, tuple[str, datetime]], now: datetime) -> list[date]:
    """The last :data:`INVOICE_MONTHS` closed months whose invoice is worth asking for.

    ``stored`` is what is kept per month: (status, when read). A final invoice
    is never asked for again, another one once :data:`INVOICE_RECHECK` has
    passed; a month listed with no invoice stays so once a newer month has
    closed (a month's invoice comes in the days after it ends).
    """
    month = now.astimezone(UTC).date().replace(day=1)
    closed = []
    for _ in range(INVOICE_MONTHS):
        month = (month - timedelta(days=1)).replace(day=1)
        closed.append(month)
    due = []
    for month in closed:
        if month not in stored:
            due.append(month)
            continue
        status, as_of = stored[month]
        if status in _FINAL_INVOICES:
            continue
        if status == InvoiceStatus.NOT_LISTED and month != closed[0]:
            continue
        if now - as_of >= INVOICE_RECHECK:
            due.append(month)
    return due


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
    cid: int = field(init=False)
    workspace_id: int = field(init=False)
    """The connection's ids as plain numbers: read for each stored row, where the ORM's
    attributes cost a lookup each."""

    def __post_init__(self) -> None:
        self.cid = self.connection.id
        self.workspace_id = self.connection.workspace_id

    def failed(
        self,
        reason: str | None,
        message: str | None,
        *,
        skipped: bool = False,
        needs_person: bool = False,
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
            needs_person=needs_person,
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
    GATHER_SECONDS = 0.02
    """How long a batch waits for more syncs to join it: a statement's cost is mostly
    per statement, not per row, so a daily sync's batches of one or two connections
    cost several times what batches of ten do. A lone sync waits this once."""

    def __init__(
        self,
        store: Callable[[Session, list[_Attempt]], None],
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
            gather_until = time.monotonic() + self.GATHER_SECONDS
            while len(batch) < self.MAX_BATCH:
                try:
                    extra = self._queue.get(timeout=max(0.0, gather_until - time.monotonic()))
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
        if len({attempt.connection.id for attempt, _, _ in batch}) < len(batch):
            for item in batch:  # one connection twice: each sync replaces the other's days
                self._write([item])
            return
        try:
            with self._transaction() as session:
                self._store(session, [attempt for attempt, _, _ in batch])
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


YOUNG_OBJECTS = 20_000
"""How many more objects than were freed make a young collection while a sync runs,
where Python's default is 700."""


class _FewerCollections:
    """While syncs run, the cyclic collector looks at young objects less often.

    A sync makes hundreds of containers a request (JSON answers, rows, httpx's
    responses, tasks), and with Python's defaults it set off dozens of collections of
    the older generations, each walking every object of the process: about a tenth of
    a daily sync's CPU (0.35 s of a 500-connection sync here), a third of which this
    saves. (Freezing what existed before saved little more, and kept garbage from
    before the sync, database connections included, until the next full collection.)
    Process-wide, so the first sync in sets it and the last one out puts it back."""

    _lock = threading.Lock()
    _running = 0
    _before: tuple[int, int, int] = (700, 10, 10)

    def __enter__(self) -> None:
        cls = type(self)
        with cls._lock:
            cls._running += 1
            if cls._running == 1:
                cls._before = young, *older = gc.get_threshold()
                gc.set_threshold(max(young, YOUNG_OBJECTS), *older)

    def __exit__(self, *exc: object) -> None:
        cls = type(self)
        with cls._lock:
            cls._running -= 1
            if cls._running == 0:
                gc.set_threshold(*cls._before)


@cache
def _tls_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs tens of ms per client otherwise."""
    return ssl.create_default_context(cafile=certifi.where())


class HttpPool(httpx.AsyncClient):
    """One client for every request of a sync: at most ``concurrency`` in flight, over
    small pools in which no request ever queues.

    httpcore's pool scans its connections, and every request queued against them,
    each time a request starts or ends: one pool of 64 connections used 8.8 ms of
    CPU a request, and several pools still cost more as their queues grew. Here a
    request first takes a slot in the gate, then a shard with a free connection
    slot (the one freed last, whose connection is still open) and is sent there:
    a shard never holds more requests than connections, so its queue stays empty
    and its scans cover :attr:`SHARD_SIZE` connections at most. Requests are read
    whole before their slot is given back (nothing here streams).

    Each shard is a :class:`~bot.transport.LeanTransport`, or, where the environment
    names a proxy, an httpx client that honours it. A request that asks for an auth
    flow or for redirects to be followed goes through this client's own.
    """

    SHARD_SIZE = 4

    def __init__(self, concurrency: int, *, verify: ssl.SSLContext | None = None) -> None:
        context = verify or _tls_context()
        super().__init__(verify=context)
        self._gate = asyncio.Semaphore(concurrency)
        size = self.SHARD_SIZE
        shards = max(1, math.ceil(concurrency / size))
        if proxy_configured():
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            self._shards: list[httpx.AsyncClient | LeanTransport] = [
                httpx.AsyncClient(limits=limits, verify=context) for _ in range(shards)
            ]
        else:
            self._shards = [LeanTransport(context, size) for _ in range(shards)]
        self._free = [shard for shard in reversed(self._shards) for _ in range(size)]

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        plain = auth in (httpx.USE_CLIENT_DEFAULT, None) and follow_redirects in (
            httpx.USE_CLIENT_DEFAULT,
            False,
        )
        async with self._gate:
            if stream or not plain:
                return await super().send(
                    request, stream=stream, auth=auth, follow_redirects=follow_redirects
                )
            shard = self._free.pop()
            try:
                if isinstance(shard, LeanTransport):
                    return await shard.handle_async_request(request)
                return await shard.send(request)
            finally:
                self._free.append(shard)

    async def aclose(self) -> None:
        await self._close_shards()
        await super().aclose()

    async def __aexit__(self, *exc: Any) -> None:
        # httpx's own __aexit__ closes only its transport, never calling aclose: the
        # shards' connections would stay open until collected.
        await self._close_shards()
        await super().__aexit__(*exc)

    async def _close_shards(self) -> None:
        await asyncio.gather(*(shard.aclose() for shard in self._shards))


class SyncEngine:
    def __init__(
        self,
        db: Database,
        providers: ProviderRegistry,
        *,
        concurrency: int = 32,
        trailing_days: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        settle_hours: int | None = None,
        worker: str | None = None,
    ) -> None:
        self.db = db
        self.providers = providers
        self.concurrency = concurrency
        self.trailing_days = trailing_days
        self.clock = clock
        self.settle_hours = settle_hours
        """XAI_USAGE_SETTLE_HOURS: every provider's days settle this long after they end
        (None: as long as each provider declares, ``providers.types.settle_hours``)."""
        self._profiled: set[str] = set()
        """Providers whose profile this engine has recorded (:meth:`record_profiles`)."""
        self.worker = worker or process_name()
        """Who runs the syncs (``host:pid``), recorded with each: replicas share the work."""
        self._due: dict[int, tuple[date, ...]] = {}
        """Closed months whose invoice each connection being synced asks for."""
        self._due_lock = threading.Lock()

    def settle_time(self, provider_name: str) -> timedelta:
        """How long after a UTC day ends a sync must read it for its figure to be final."""
        if self.settle_hours is not None:
            return timedelta(hours=self.settle_hours)
        return timedelta(hours=settle_hours(self._loaded(provider_name)))

    def reach(self, provider_name: str) -> int:
        """How many UTC days back (today included) a provider's costs can be fetched."""
        return max_backfill_days(self._loaded(provider_name))

    def _loaded(self, provider_name: str) -> object:
        """The provider, or None when it is not loaded (the contract's defaults then)."""
        try:
            return self.providers.get(provider_name)
        except LookupError:
            return None

    def record_profiles(self, names: Iterable[str]) -> None:
        """Keep what the loaded providers among ``names`` say of themselves in the store
        (:mod:`bot.profiles`), once per engine: reports word their figures from it."""
        fresh = []
        for name in sorted(set(names) - self._profiled):
            provider = self._loaded(name)
            if provider is not None:
                fresh.append(Profile.of(provider))
        if not fresh:
            return
        with self.db.transaction() as session:
            record_profiles(session, fresh, self.clock())
        self._profiled.update(p.name for p in fresh)

    # -- connect ----------------------------------------------------------------

    def validate_fields(self, provider: Provider, credentials: Mapping[str, str]) -> dict[str, str]:
        """Trimmed credentials, or ConnectError on the first malformed field."""
        problems = field_problems(provider, credentials)
        if problems:
            name, problem = next(iter(problems.items()))
            raise ConnectError(problem, field=name, reason=INVALID_INPUT)
        return given_fields(provider, credentials)

    def problems(
        self,
        workspace_id: int,
        provider_name: str,
        credentials: Mapping[str, str],
        *,
        label: str = "",
        backfill_days: int | str | None = None,
    ) -> dict[str, str]:
        """Every problem with a connect request found without the network, by field
        (a credential field, ``label``, ``backfill_days``), each in words to act on.

        The Slack form shows them all at once; :meth:`connect` raises the first. A
        field absent from ``credentials`` is not judged (a command that pre-fills a
        form judges only what it says); an empty one is.
        """
        provider = self.providers.get(provider_name)
        errors = field_problems(provider, credentials, only_given=True)
        try:
            self.refuse_named(workspace_id, provider, credentials)
        except ConnectError as error:
            errors.setdefault(error.field or LABEL_FIELD, error.message)
        if problem := self.backfill_problem(provider, backfill_days):
            errors[BACKFILL_FIELD] = problem
        if problem := self.label_problem(workspace_id, label):
            errors[LABEL_FIELD] = problem
        return errors

    def backfill_problem(self, provider: Provider, days: int | str | None) -> str | None:
        reach = max_backfill_days(provider)
        if days is None or days == "":
            return None
        number = whole_number(str(days).strip())
        if number is not None and 1 <= number <= reach:
            return None
        return (
            f"A whole number of days from 1 to {reach}: {provider.display_name} keeps "
            f"{reach} days of costs."
        )

    def label_problem(self, workspace_id: int, label: str) -> str | None:
        from bot.grammar import label_problem

        label = (label or "").strip()
        if not label:
            return None
        if problem := label_problem(label):  # Slack enforces max_length only in its own client
            return problem
        with self.db.session() as session:
            taken = {c.label.lower() for c in list_connections(session, workspace_id)}
        if label.lower() in taken:
            return (
                f"A connection labelled “{label}” already exists. Pick another label, "
                "or disconnect the old one first."
            )
        return None

    async def check(
        self,
        provider_name: str,
        credentials: Mapping[str, str],
        *,
        workspace_id: int | None = None,
    ) -> CheckResult:
        """Test the credentials with the provider; ConnectError on the field to blame.

        With ``workspace_id``, an account already connected there is refused too:
        only the check says which account a key reads.
        """
        provider = self.providers.get(provider_name)
        clean = self.validate_fields(provider, credentials)
        async with HttpPool(1) as http:
            try:
                check = await provider.check_credentials(http, clean)
            except ProviderError as error:
                raise ConnectError(
                    error.message, field=error.field, reason=str(error.reason)
                ) from None
        if workspace_id is not None:
            self.refuse_connected(workspace_id, provider, clean, check)
        return check

    async def connect(
        self,
        workspace_id: int,
        provider_name: str,
        credentials: Mapping[str, str],
        *,
        label: str | None = None,
        backfill_days: int | None = None,
        created_by: str = "",
        check: CheckResult | None = None,
    ) -> Connected:
        """Test, save, backfill: the one way a connection is made, from any surface.

        Nothing is saved unless the test passes. ``backfill_days`` defaults to as
        far back as the provider keeps costs. ``check`` is a test that already
        passed moments ago (the Slack form tests before it closes), so it is not
        repeated.
        """
        provider = self.providers.get(provider_name)
        if backfill_days is None:
            backfill_days = max_backfill_days(provider)
        if problem := self.backfill_problem(provider, backfill_days):
            raise ConnectError(problem, field=BACKFILL_FIELD, reason=INVALID_INPUT)
        clean = self.validate_fields(provider, credentials)
        label = (label or "").strip()
        if problem := self.label_problem(workspace_id, label):
            raise ConnectError(problem, field=LABEL_FIELD, reason="label_taken")
        self.record_profiles([provider.name])
        self.refuse_named(workspace_id, provider, clean)  # before any request, where it can
        check = check or await self.check(provider_name, clean)
        account = self.refuse_connected(workspace_id, provider, clean, check)
        mask = provider.mask(clean)
        try:
            connection_id, label = self._save(
                workspace_id,
                provider,
                clean,
                check,
                account,
                label,
                mask,
                backfill_days,
                created_by,
            )
        except IntegrityError:
            # Connected by someone else while this key was being tested.
            self.refuse_connected(workspace_id, provider, clean, check)
            raise
        log.info("connected %s (%s) as connection %s", label, mask, connection_id)
        backfill = await self.sync_connection(
            connection_id, trigger="backfill", days=backfill_days, force=True
        )
        shown = account_words(check.account_name, account)
        return Connected(connection_id, label, mask, check, backfill, shown)

    def refuse_named(
        self, workspace_id: int, provider: Provider, credentials: Mapping[str, str]
    ) -> None:
        """ConnectError when a non-secret field names an account already connected here
        (a Team ID that is the account's id): told before any key is read or tested.
        Only the check says which account a key reads; this catches what fields say."""
        named = {
            account_key(value): spec.name
            for spec in provider.credential_fields
            if not spec.secret and (value := (credentials.get(spec.name) or "").strip())
        }
        if not named:
            return
        with self.db.session() as session:
            found = session.execute(
                select(Connection.label, Connection.account_ref, Connection.account_name).where(
                    Connection.workspace_id == workspace_id,
                    Connection.provider == provider.name,
                    Connection.account_key.in_(list(named)),
                )
            ).first()
        if found is not None:
            label, account, name = found
            shown = account_words(name, account)
            raise ConnectError(
                already_connected(label, shown),
                field=named[account_key(account)],
                reason=ALREADY_CONNECTED,
                existing=label,
                account=shown,
            )

    def refuse_connected(
        self,
        workspace_id: int,
        provider: Provider,
        credentials: Mapping[str, str],
        check: CheckResult,
    ) -> str:
        """The account the checked credentials read, as its provider names it; a
        ConnectError naming the connection of that account, if there is one."""
        account = account_of(provider, credentials, check)
        if not account:
            return ""  # the provider cannot say: such connections cannot be told apart
        with self.db.session() as session:
            existing = session.scalar(
                select(Connection.label).where(
                    Connection.workspace_id == workspace_id,
                    Connection.provider == provider.name,
                    Connection.account_key == account_key(account),
                )
            )
        if existing is not None:
            raise ConnectError(
                already_connected(existing, account_words(check.account_name, account)),
                field=account_field(provider, credentials, account),
                reason=ALREADY_CONNECTED,
                existing=existing,
                account=account_words(check.account_name, account),
            )
        return account

    def _save(
        self,
        workspace_id: int,
        provider: Provider,
        clean: dict[str, str],
        check: CheckResult,
        account: str,
        label: str,
        mask: str,
        backfill_days: int,
        created_by: str,
    ) -> tuple[int, str]:
        public = {
            f.name: clean[f.name]
            for f in provider.credential_fields
            if not f.secret and f.name in clean  # an optional field left empty is not kept
        }
        with self.db.transaction() as session:
            label = label or unique_label(session, workspace_id, provider.default_label(clean))
            connection = Connection(
                workspace_id=workspace_id,
                provider=provider.name,
                label=label,
                account_ref=account,
                account_key=account_key(account) if account else None,
                account_name=check.account_name.strip()[:200],
                account_fields=json.dumps(public),
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

        The account cannot change here: a key of another account is refused,
        since its costs would be stored as this connection's. On success the
        error state is cleared and a sync runs at once.
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
            if check.account_name.strip():
                row.account_name = check.account_name.strip()[:200]
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
        # The account fields come from a plain column, so a key can be replaced
        # even when the stored one no longer decrypts.
        credentials = stored_fields(provider, connection)
        for spec in provider.credential_fields:
            if spec.secret:
                credentials[spec.name] = secrets.get(spec.name) or ""
        return connection, provider, self.validate_fields(provider, credentials)

    async def check_update(
        self, connection: Connection, credentials: Mapping[str, str]
    ) -> CheckResult:
        """Test a replacement key; every problem is the key's (the account is fixed)."""
        provider = self.providers.get(connection.provider)
        secret = next(f.name for f in provider.credential_fields if f.secret)
        try:
            check = await self.check(connection.provider, credentials)
        except ConnectError as error:
            message = error.message
            if error.field and error.field != secret:
                message += (
                    f" “{connection.label}” reads {connection.account_ref or 'its account'}, "
                    "which a new key cannot change: give it a key of that account, or "
                    "connect the other account separately."
                )
            raise ConnectError(message, field=secret, reason=error.reason) from None
        account = account_of(provider, credentials, check)
        if account and connection.account_key and account_key(account) != connection.account_key:
            raise ConnectError(
                f"This key reads {account_words(check.account_name, account)}, not "
                f"{connection.account_ref}, the account “{connection.label}” reads: its costs "
                "would be stored as that connection's. Give it a key of its own account, or "
                "connect the other account separately.",
                field=secret,
                reason="account_mismatch",
            )
        return check

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
                Invoice,
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
        success; never further back than the provider keeps costs.
        """
        today = self.today()
        if days is None:
            days = self.trailing_days
            if connection.last_success_at is None:
                days = connection.backfill_days
            else:
                since = (today - connection.last_success_at.date()).days + 1
                days = max(days, since)
        days = max(1, min(days, self.reach(connection.provider)))
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
        """The connections to sync, with the closed months whose invoice each now asks for
        (kept for :meth:`_invoices_for`); their providers' profiles recorded."""
        with self.db.session() as session:
            loaded = {
                c.id: c for c in session.scalars(select(Connection).where(Connection.id.in_(ids)))
            }
            due = self._invoices_due(session, list(loaded))
        with self._due_lock:
            self._due.update({cid: tuple(months) for cid, months in due.items()})
        self.record_profiles(c.provider for c in loaded.values())
        return loaded

    def _invoices_for(self, connection_id: int) -> tuple[date, ...]:
        with self._due_lock:
            return self._due.pop(connection_id, ())

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
            with _FewerCollections():
                async with HttpPool(self.concurrency) as http:

                    async def one(connection: Connection) -> SyncResult:
                        nonlocal done
                        try:
                            attempt = await self._fetch_one(
                                http, connection, days, force, self._invoices_for(connection.id)
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
                            syncs.append(asyncio.create_task(one(connection)))
                    return list(await asyncio.gather(*syncs))
        finally:
            writer.close()

    def _invoices_due(self, session: Session, ids: list[int]) -> dict[int, list[date]]:
        """Per connection, the closed months whose invoice a sync now asks for."""
        now = self.clock()
        oldest = now.astimezone(UTC).date().replace(day=1) - timedelta(days=31 * INVOICE_MONTHS)
        stored: dict[int, dict[date, tuple[str, datetime]]] = {cid: {} for cid in ids}
        for cid, month, status, as_of in session.execute(
            select(Invoice.connection_id, Invoice.month, Invoice.status, Invoice.as_of).where(
                Invoice.connection_id.in_(ids), Invoice.month >= oldest
            )
        ):
            stored[cid][month] = (status, as_of)
        return {cid: invoice_months_due(months, now) for cid, months in stored.items()}

    async def _fetch_one(
        self,
        http: httpx.AsyncClient,
        connection: Connection,
        days: int | None,
        force: bool,
        invoice_months: Iterable[date] = (),
    ) -> _Attempt:
        """The network half of a sync: what to store, or why it failed."""
        start, end = self.window_for(connection, days)
        attempt = _Attempt(connection, start, end, self.clock())
        if (
            connection.status == ConnectionStatus.ERROR
            and not force
            and not self._readable_again(connection)
        ):
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
                http,
                provider,
                credentials,
                connection,
                start,
                end + timedelta(days=1),
                tuple(invoice_months),
            )
        except ProviderError as error:
            attempt.result = attempt.failed(
                str(error.reason), error.message, needs_person=error.needs_person
            )
        except DecryptionError as error:  # expected, and its reason says it all: no traceback
            if error.key_id is not None and error.key_id not in self.db.keyring.key_ids:
                # This process lacks the key (rotated while it runs): the credential is
                # fine, so the connection is left as it is and nobody is alerted.
                if error.key_id not in self.db.missing_key_ids():  # a look a moment old
                    self.db.missing_key_ids(max_age=0)  # the operator is told, once
                attempt.result = attempt.failed(
                    KEY_MISSING, missing_keys_warning([error.key_id]), skipped=True
                )
                return attempt
            reason = "credentials_unreadable"
            log.warning("sync of connection %s failed: credentials unreadable", connection.id)
            attempt.result = attempt.failed(
                reason, _internal_message(reason, error), needs_person=True
            )
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

    def _readable_again(self, connection: Connection) -> bool:
        """A connection failed for credentials it could not open that opens now: its key
        was missing then (a rotation an older version took for a broken credential)."""
        if connection.status_reason != "credentials_unreadable":
            return False
        try:
            self.db.keyring.open_json(connection.credentials_sealed, connection.credentials_aad)
        except DecryptionError:
            return False
        return True

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
        invoice_months: tuple[date, ...] = (),
    ) -> _Fetched:
        # Always ask for the per-key breakdown: a refusal may be a passing 400 or a
        # busy period, and the provider falls back per window at the cost of one
        # quick request. ``key_breakdown`` records what the last sync got.
        by_key = True
        windows = day_windows(start, end, provider.max_window_days)
        # Costs, billing figures, costs by unit type and past invoices, all at once (asking
        # for the split after the costs made a backfill one round trip longer). Every
        # request has ended when this returns, failed or not: nothing runs on past the
        # connection's slot and HTTP client, and no error goes unread.
        *costs, billing, unit_costs, invoices = await asyncio.gather(
            *(self._fetch_split(http, provider, credentials, s, e, by_key) for s, e in windows),
            self._billing(http, provider, credentials),
            self._unit_costs(http, provider, credentials, start, end),
            self._invoices(http, provider, credentials, invoice_months),
            return_exceptions=True,
        )
        # The costs decide: their failure fails the sync. Billing, the split and invoices
        # turn their own failures into None, so what they raise here is a bug, and fails it.
        extras = (billing, unit_costs, invoices)
        errors = [r for r in (*costs, *extras) if isinstance(r, BaseException)]
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
        return _Fetched(rows, keyed, billing, names, unit_costs, invoices)

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
            first, second = await _together(
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

    async def _invoices(
        self,
        http: httpx.AsyncClient,
        provider: Provider,
        credentials: Mapping[str, str],
        months: tuple[date, ...],
    ) -> _Invoices | None:
        """Past invoices for the closed months due, where the provider lists them: a bonus
        like billing figures, so a refusal or a failure never fails the sync."""
        if not months or not isinstance(provider, InvoiceHistoryProvider):
            return None
        try:
            found = await provider.fetch_invoices(http, credentials, min(months))
        except ProviderError as error:
            log.info("past invoices unavailable: %s", error.reason)
            return None
        return None if found is None else _Invoices(months, tuple(found))

    def _record(self, session: Session, attempts: list[_Attempt], trigger: str) -> None:
        """Store a batch of syncs' outcomes (on the writer, inside its transaction).

        A fixed number of set-based statements for the whole batch, each run once
        over every connection's rows: a daily sync of hundreds of connections
        costs a few dozen statements, not a dozen per connection.
        """
        now = self.clock()
        ids = [attempt.connection.id for attempt in attempts]
        # Locked in id order, as every writer locks them; gone ones (disconnected
        # while their sync ran) store nothing.
        present = set(
            session.scalars(
                select(Connection.id)
                .where(Connection.id.in_(ids))
                .order_by(Connection.id)
                .with_for_update()
            )
        )
        attempts = [a for a in attempts if a.cid in present]
        if not attempts:
            return
        synced = [a for a in attempts if a.fetched is not None]
        for attempt in attempts:
            if attempt.fetched is None:
                _record_failure(session, attempt, now)
        for by_key in sorted({a.fetched.by_key for a in synced}):
            session.execute(
                _SYNCED.where(
                    _CONNECTIONS.id.in_([a.cid for a in synced if a.fetched.by_key == by_key])
                ),
                {"now": now, "by_key": by_key},
            )
        _insert_rows(
            session,
            SyncRun.__table__,
            _SYNC_RUN_COLUMNS,
            [
                (
                    a.cid,
                    trigger,
                    a.result.start,
                    a.result.end,
                    a.started,
                    now,
                    "ok" if a.result.ok else "error",
                    a.result.reason,
                    a.result.message,
                    a.result.rows,
                    a.result.total_usd if a.result.ok else None,
                    a.duration_ms,
                    self.worker,
                )
                for a in attempts
            ],
        )
        if synced:
            _replace_costs(session, synced, now)
            record_fetched_many(
                session,
                [(a.cid, a.workspace_id, a.start, a.end) for a in synced],
            )
            _replace_unit_costs(session, synced)
            _replace_billing(session, synced, now)
            record_provisional_many(
                session,
                [(a.connection, a.start, a.end, a.started) for a in synced],
                {a.connection.provider: self.settle_time(a.connection.provider) for a in synced},
            )
            for a in synced:
                if a.fetched.invoices is not None:
                    _store_invoices(session, a.connection, a.fetched.invoices, now)


def _record_failure(session: Session, attempt: _Attempt, now: datetime) -> None:
    """A failed sync's mark on its connection: rare, so a statement of its own."""
    result = attempt.result
    reason = result.reason or ""
    needs_person = result.needs_person
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
    session.execute(
        update(Connection)
        .where(Connection.id == attempt.connection.id)
        .values(last_attempt_at=now, **status)
        .execution_options(synchronize_session=False)
    )


_SYNC_RUN_COLUMNS = (
    "connection_id",
    "trigger",
    "window_start",
    "window_end",
    "started_at",
    "finished_at",
    "outcome",
    "reason",
    "message",
    "rows",
    "total_usd",
    "duration_ms",
    "worker",
)
_CONNECTIONS = Connection.__table__.c
_SYNCED = update(Connection.__table__).values(
    status=ConnectionStatus.OK,
    status_reason=None,
    status_message=None,
    last_attempt_at=bindparam("now"),
    last_success_at=bindparam("now"),
    key_breakdown=bindparam("by_key"),
    error_since=None,
)
"""A good sync's mark on its connections (those it is given ``where``): one statement
for all whose key breakdown is alike."""


def _replace_costs(session: Session, synced: list[_Attempt], now: datetime) -> None:
    """Make each window's rows what was fetched, and move the workspace rollup by the
    difference."""
    workspaces = {a.cid: a.workspace_id for a in synced}
    moved = _replace_window(
        session,
        DailyCost.__table__,
        "api_key_id",
        [(a.cid, a.workspace_id, a.start, a.end) for a in synced],
        [(a.cid, r.day, r.model, r.api_key_id, r.cost_usd) for a in synced for r in a.fetched.rows],
    )
    totals: dict[tuple[int, date, str], int] = defaultdict(int)
    for (connection_id, day, model), nano in moved.items():
        totals[(workspaces[connection_id], day, model)] += nano
    adjust_totals(session, {slot: usd(nano) for slot, nano in totals.items() if nano})
    _note_models_and_keys(session, synced, now)


def _note_models_and_keys(session: Session, synced: list[_Attempt], now: datetime) -> None:
    """The first day each model was seen, and API keys' names: written only where they
    are new or changed (on a daily sync, almost never), after one read of both."""
    ids = [a.cid for a in synced]
    seen, named = ModelSeen.__table__.c, ApiKeyName.__table__.c  # tables: no ORM per row
    known_days = {
        (cid, model): day
        for cid, model, day in session.execute(
            select(seen.connection_id, seen.model, seen.first_day).where(
                seen.connection_id.in_(ids)
            )
        )
    }
    known_names = {
        (cid, key): name
        for cid, key, name in session.execute(
            select(named.connection_id, named.api_key_id, named.name).where(
                named.connection_id.in_(ids)
            )
        )
    }
    first_days: dict[tuple[int, str], date] = {}
    for a in synced:
        for row in a.fetched.rows:
            slot = (a.cid, row.model)
            first_days[slot] = min(row.day, first_days.get(slot, row.day))
    earlier = [
        {"connection_id": cid, "model": model, "first_day": day, "first_seen_at": now}
        for (cid, model), day in sorted(first_days.items())
        if (cid, model) not in known_days or day < known_days[(cid, model)]
    ]
    if earlier:
        first = upsert(session, ModelSeen.__table__)
        session.execute(
            first.on_conflict_do_update(
                index_elements=["connection_id", "model"],
                set_={
                    "first_day": case(
                        (first.excluded.first_day < seen.first_day, first.excluded.first_day),
                        else_=seen.first_day,
                    )
                },
            ),
            earlier,
        )
    renamed = [
        {"connection_id": a.cid, "api_key_id": key, "name": name}
        for a in synced
        for key, name in sorted(a.fetched.key_names.items())
        if known_names.get((a.cid, key)) != name
    ]
    if renamed:
        names = upsert(session, ApiKeyName.__table__)
        session.execute(
            names.on_conflict_do_update(
                index_elements=["connection_id", "api_key_id"],
                set_={"name": names.excluded.name},
            ),
            renamed,
        )


def _replace_billing(session: Session, synced: list[_Attempt], now: datetime) -> None:
    """Billing figures, and the invoice preview's unit counts, where the invoice was read."""
    billed = [a for a in synced if a.fetched.billing is not None]
    if not billed:
        return
    # Every column is the sync's: replaced whole, one DELETE and one bulk insert.
    ids = [a.cid for a in billed]
    states, lines = BillingState.__table__, InvoiceLineUnits.__table__
    session.execute(delete(states).where(states.c.connection_id.in_(ids)))
    session.execute(delete(lines).where(lines.c.connection_id.in_(ids)))
    _insert_rows(
        session,
        states,
        (
            "connection_id",
            "as_of",
            "invoice_month",
            "month_to_date_usd",
            "prepaid_credit_usd",
            "spending_limit_usd",
            "invoiced_usd",
            "bill_source",
            "subtotal_usd",
            "tax_usd",
            "total_usd",
            "total_with_corrections_usd",
            "prepaid_total_usd",
            "prepaid_used_usd",
        ),
        [
            (
                a.cid,
                now,  # the sync's clock: the invoice is compared with costs fetched then
                b.billing_cycle,
                b.month_to_date_usd,
                b.prepaid_credit_usd,
                b.spending_limit_usd,
                b.invoiced_usd,
                b.bill_source,
                b.subtotal_usd,
                b.tax_usd,
                b.total_usd,
                b.total_with_corrections_usd,
                b.prepaid_total_usd,
                b.prepaid_used_usd,
            )
            for a in billed
            if (b := a.fetched.billing) is not None
        ],
    )
    _insert_rows(
        session,
        lines,
        (
            "connection_id",
            "model",
            "unit_type",
            "invoice_month",
            "num_units",
            "amount_usd",
            "as_of",
        ),
        [
            (
                a.cid,
                line.model,
                line.unit_type,
                a.fetched.billing.billing_cycle,
                line.num_units,
                line.amount_usd,
                now,
            )
            for a in billed
            for line in a.fetched.billing.lines
        ],
    )


def _insert_rows(
    session: Session, table: Table, columns: tuple[str, ...], rows: list, *, as_stored: bool = False
) -> None:
    """Many rows into ``table`` at once: COPY on PostgreSQL, one prepared INSERT run over
    every row on SQLite.

    Each value is converted by its column's type exactly as SQLAlchemy converts it
    (nano-dollars, SQLite's text dates), but without SQLAlchemy's work per row, which
    was most of the writer's time: tens of thousands of rows a daily sync. Rows
    ``as_stored`` were converted already (as :func:`_replace_window` does).
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if as_stored:
        values = rows
    else:
        convert = _converters(table, columns, dialect)
        values = [
            tuple(c(v) if c else v for c, v in zip(convert, row, strict=True)) for row in rows
        ]
    names = ", ".join(columns)
    if dialect.name == "postgresql":
        cursor = connection.connection.dbapi_connection.cursor()
        with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)


@cache
def _converters(table: Table, columns: tuple[str, ...], dialect: Any) -> tuple:
    """Each column's conversion; a day's or a time's remembered, since a batch's rows
    share a few (SQLite's are formatted in Python, a few microseconds each)."""
    converters = []
    for name in columns:
        convert = _converter(table.c[name], dialect)
        kind = table.c[name].type
        if convert is not None and isinstance(getattr(kind, "impl", kind), Date | DateTime):
            convert = lru_cache(maxsize=256)(convert)
        converters.append(convert)
    return tuple(converters)


def _converter(column: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """What the dialect's own type for ``column`` does to a value bound to it."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _totals_by_day_and_model(*where: Any, by_connection: bool = False) -> Any:
    keys = (DailyCost.connection_id,) if by_connection else ()
    return (
        select(*keys, DailyCost.day, DailyCost.model, func.sum(DailyCost.cost))
        .where(*where)
        .group_by(*keys, DailyCost.day, DailyCost.model)
    )


def _replace_unit_costs(session: Session, synced: list[_Attempt]) -> None:
    """Make the days' costs by unit type what was fetched and note them fetched, where
    they came."""
    split = [(a, a.fetched.unit_costs) for a in synced if a.fetched.unit_costs is not None]
    if not split:
        return
    _replace_window(
        session,
        UnitCost.__table__,
        "unit_type",
        [(a.cid, a.workspace_id, u.start, u.end) for a, u in split],
        [(a.cid, r.day, r.model, r.unit_type, r.cost_usd) for a, u in split for r in u.rows],
    )
    record_fetched_many(
        session,
        [(a.cid, a.workspace_id, u.start, u.end) for a, u in split],
        UnitCostSpan,
    )


_AT_KEY = ("at_cid", "at_day", "at_model", "at_second")
"""Bound names for a row's key: unlike the columns', which an UPDATE's SET would claim."""


def _replace_window(
    session: Session,
    table: Table,
    kind: str,
    windows: list[tuple[int, int, date, date]],
    rows: list[tuple[int, date, str, str, Decimal]],
) -> dict[tuple[int, date, str], int]:
    """Make the rows of each ``(connection, workspace, first, last)`` window exactly
    ``rows`` (connection, day, model, ``kind``, cost); how much each (connection, day,
    model) moved, in nano-dollars, as stored: the rollup's difference, exactly.

    A daily sync fetches again days it already has (they settle for hours), and most
    of their figures have not moved: reading the windows once and writing only the
    rows that changed, appeared or went away costs a fraction of deleting and
    inserting them all. Rows are compared as the driver holds them (a day as SQLite's
    text, a cost in nano-dollars), each fetched row converted once, for the comparison
    and the insert alike.
    """
    c = table.c
    span = {cid: (first, last) for cid, _, first, last in windows}
    workspace = {cid: ws for cid, ws, _, _ in windows}
    has_id = "id" in c  # daily_costs has one; unit_costs' key is its primary key
    dialect = session.connection().dialect
    stored_day = _converter(c.day, dialect) or _same
    nano = c.cost.type.process_bind_param
    old: dict[tuple[int, Any, str, str], int] = {}
    ids: dict[tuple[int, Any, str, str], int] = {}
    bounds = {cid: (stored_day(first), stored_day(last)) for cid, (first, last) in span.items()}
    raw = NullType()  # as the driver gives it: no conversion for each row
    for cid, day, model, second, cost, *row_id in session.execute(
        select(
            c.connection_id,
            type_coerce(c.day, raw),
            c.model,
            c[kind],
            type_coerce(c.cost, raw),
            *([c.id] if has_id else []),
        ).where(
            c.connection_id.in_(sorted(span)),
            c.day >= min(first for first, _ in span.values()),
            c.day <= max(last for _, last in span.values()),
        )
    ).all():
        first, last = bounds[cid]
        if first <= day <= last:
            old[(cid, day, model, second)] = cost
            if row_id:
                ids[(cid, day, model, second)] = row_id[0]
    as_stored = {day: stored_day(day) for day in {row[1] for row in rows}}
    new = {
        (cid, as_stored[day], model, second): nano(cost, None)
        for cid, day, model, second, cost in rows
    }
    # Rows gone, and rows whose figure moved, are deleted; moved and new ones inserted.
    stale = [k for k, cost in old.items() if new.get(k) != cost]
    if has_id:
        gone = [ids[k] for k in stale]
        if dialect.name == "postgresql" and gone:  # one array, not a parameter an id
            session.execute(
                delete(table).where(c.id == any_(bindparam("gone", gone, type_=ARRAY(Integer))))
            )
        elif gone:
            for start in range(0, len(gone), 10_000):  # under SQLite's limit on parameters
                session.execute(delete(table).where(c.id.in_(gone[start : start + 10_000])))
    elif stale:
        raw_day = type_coerce(bindparam("at_day"), raw)
        session.execute(
            delete(table).where(
                c.connection_id == bindparam("at_cid"),
                c.day == raw_day,
                c.model == bindparam("at_model"),
                c[kind] == bindparam("at_second"),
            ),
            [dict(zip(_AT_KEY, k, strict=True)) for k in stale],
        )
    fresh = set(stale)
    written = [(key, cost) for key, cost in new.items() if key in fresh or key not in old]
    _insert_rows(
        session,
        table,
        ("connection_id", "workspace_id", "day", "model", kind, "cost"),
        [
            (cid, workspace[cid], day, model, second, cost)
            for (cid, day, model, second), cost in written
        ],
        as_stored=True,
    )
    # Only the rows replaced, gone or new move a total: the rest are as they were.
    moved: dict[tuple[int, Any, str], int] = defaultdict(int)
    for cid, day, model, second in stale:
        moved[(cid, day, model)] -= old[(cid, day, model, second)]
    for (cid, day, model, _), cost in written:
        moved[(cid, day, model)] += cost
    as_date = {day: _as_date(day) for _, day, _ in moved}
    return {(cid, as_date[day], model): nano for (cid, day, model), nano in moved.items()}


def _same(value: Any) -> Any:
    return value


def _as_date(stored: Any) -> date:
    """A day as the driver gave it back (SQLite's ISO text, or a date) as a date."""
    return stored if isinstance(stored, date) else date.fromisoformat(stored)


def _store_invoices(
    session: Session, connection: Connection, fetched: _Invoices | None, now: datetime
) -> None:
    """One row per month asked for: its invoice as listed, or that none was listed."""
    if fetched is None:
        return
    listed = {i.month: i for i in fetched.found if i.month is not None}
    # An invoice that names no month cannot be placed: the months left without one say
    # so, since it may be theirs.
    stray = " ".join(i.problem for i in fetched.found if i.month is None)
    rows = []
    for month in fetched.months:
        invoice = listed.get(month)
        if invoice is None:
            invoice = PastInvoice(month, InvoiceStatus.NOT_LISTED, problem=stray)
        rows.append(
            {
                "connection_id": connection.id,
                "month": month,
                "status": invoice.status.value,
                "total_usd": invoice.total_usd,
                "subtotal_usd": invoice.subtotal_usd,
                "tax_usd": invoice.tax_usd,
                "number": invoice.number[:200],
                "problem": invoice.problem or None,
                "as_of": now,
            }
        )
    if not rows:
        return
    stored = upsert(session, Invoice)
    columns = ("status", "total_usd", "subtotal_usd", "tax_usd", "number", "problem", "as_of")
    session.execute(
        stored.on_conflict_do_update(
            index_elements=["connection_id", "month"],
            set_={name: stored.excluded[name] for name in columns},
        ),
        rows,
    )


def record_fetched(
    session: Session,
    connection_id: int,
    workspace_id: int,
    first: date,
    last: date,
    span: type[FetchedSpan] | type[UnitCostSpan] = FetchedSpan,
) -> None:
    """Note that ``first``..``last`` were fetched completely, merged with what touches it."""
    record_fetched_many(session, [(connection_id, workspace_id, first, last)], span)


def record_fetched_many(
    session: Session,
    spans: list[tuple[int, int, date, date]],
    span: type[FetchedSpan] | type[UnitCostSpan] = FetchedSpan,
) -> None:
    """Note each ``(connection, workspace, first, last)`` as fetched completely, merged with
    the spans that touch it, in three statements however many there are.

    ``span`` is the table of what was fetched: the costs (``FetchedSpan``) or
    their split by unit type (``UnitCostSpan``).

    Called in the transaction that stored those days' costs, after the
    connections' rows were locked: that lock orders concurrent writers of one
    connection, so the read-merge-write below never races.
    """
    if not spans:
        return
    table = span.__table__
    known: dict[int, list[tuple[date, date]]] = defaultdict(list)
    for connection_id, old_first, old_last in session.execute(
        select(table.c.connection_id, table.c.first_day, table.c.last_day).where(
            table.c.connection_id.in_(sorted({s[0] for s in spans}))
        )
    ):
        known[connection_id].append((old_first, old_last))
    gone: list[dict] = []
    merged: dict[tuple[int, date], dict] = {}
    for connection_id, workspace_id, first, last in spans:
        keep = []
        for old_first, old_last in known[connection_id]:
            if old_first <= first and last <= old_last:  # already known: nothing to write
                first, last = old_first, old_last
                break
        else:
            for old_first, old_last in known[connection_id]:
                if old_first <= last + timedelta(days=1) and old_last >= first - timedelta(days=1):
                    first, last = min(first, old_first), max(last, old_last)
                    if (connection_id, old_first) in merged:  # merged earlier in this batch
                        merged.pop((connection_id, old_first))
                    else:
                        gone.append({"cid": connection_id, "first": old_first})
                else:
                    keep.append((old_first, old_last))
            known[connection_id] = [*keep, (first, last)]
            merged[(connection_id, first)] = {
                "connection_id": connection_id,
                "workspace_id": workspace_id,
                "first_day": first,
                "last_day": last,
            }
    if gone:
        session.execute(
            delete(table).where(
                table.c.connection_id == bindparam("cid"), table.c.first_day == bindparam("first")
            ),
            gone,
        )
    if merged:
        session.execute(insert(table), list(merged.values()))


def record_provisional_many(
    session: Session,
    windows: Sequence[tuple[Connection, date, date, datetime]],
    settle: Mapping[str, timedelta],
) -> None:
    """Mark the days of each (connection, first, last, fetched at) fetched before they
    settled (``settle``, by provider); clear the window's other marks. Two statements
    for the whole batch (one more for each other window, where they differ).

    In the transaction that stored those days' costs: a day is final exactly
    when the costs stored for it were read after its settle time.
    """
    if not windows:
        return
    table = ProvisionalDay.__table__
    alike: dict[tuple[date, date], list[int]] = defaultdict(list)  # a daily sync's: one
    for connection, first, last, _ in windows:
        alike[(first, last)].append(connection.id)
    for (first, last), ids in sorted(alike.items()):
        session.execute(
            delete(table).where(
                table.c.connection_id.in_(sorted(ids)), table.c.day >= first, table.c.day <= last
            )
        )
    marks = []
    for connection, first, last, fetched_at in windows:
        day = last
        while day >= first:
            settles_at = day_end(day) + settle[connection.provider]
            if settles_at <= fetched_at:
                break  # this day and every one before it were read after they settled
            marks.append((connection.id, connection.workspace_id, day, fetched_at, settles_at))
            day -= timedelta(days=1)
    _insert_rows(
        session,
        table,
        ("connection_id", "workspace_id", "day", "fetched_at", "settles_at"),
        marks,
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
    totals = upsert(session, WorkspaceDailyTotal.__table__)  # the table: no ORM work per row
    session.execute(
        totals.on_conflict_do_update(
            index_elements=["workspace_id", "day", "model"],
            set_={"cost": totals.table.c.cost + totals.excluded.cost},
        ),
        rows,
    )


T = TypeVar("T")
KEY_MISSING = "key_missing"
"""A sync this process skipped: the credential is sealed with a key it lacks."""


def _without_keys(rows: Iterable[CostRow]) -> list[CostRow]:
    """Collapse per-key rows to per-model rows (when some window lacked keys)."""
    totals: dict[tuple[date, str], Decimal] = {}
    for row in rows:
        totals[(row.day, row.model)] = totals.get((row.day, row.model), Decimal(0)) + row.cost_usd
    return [CostRow(day, model, cost) for (day, model), cost in sorted(totals.items())]


async def _together(*steps: Awaitable[T]) -> list[T]:
    """Run ``steps`` at once; their results in order. The first to fail ends the others
    and is raised once they have ended: nothing runs on past the caller (a plain gather
    left a half of a split window running, whose next request then met a closed client
    while asyncio.run() shut down, a traceback after the sync's one-line failure)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _internal_message(reason: str, error: Exception) -> str:
    if reason == "credentials_unreadable":
        return (
            "The stored credentials could not be decrypted: they were tampered with, or the "
            "encryption key changed. Check XAI_USAGE_ENCRYPTION_KEY, or give it its key again "
            "with update-key."
        )
    return f"Internal error ({type(error).__name__}); see the logs. The next sync retries."
