"""The sync engine: connect, backfill, daily and forced syncs.

The engine, not the provider, owns date windows, concurrency, storage and
what a failure does to a connection. Network work runs concurrently on the
event loop; writes go through one writer thread so a slow commit never
stalls the fetches, and each connection's window is replaced in one
transaction (no duplicates, nothing partial on failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import ssl
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache, partial
from typing import Any, TypeVar

import certifi
import httpx
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.figures import day_end
from bot.numbers import whole_number
from bot.profiles import Profile
from bot.profiles import record as record_profiles
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


class _Writer:
    """One thread that stores syncs, committing whatever is queued together.

    A commit per connection is what a daily sync of hundreds of connections
    would otherwise wait on. If a batch fails, its syncs are stored again one
    transaction each, so one bad connection never costs the others, and a
    connection's window is still all-or-nothing.
    """

    MAX_BATCH = 50

    def __init__(
        self, store: Callable[[Session, _Attempt], None], transaction: Callable[[], Any]
    ) -> None:
        self._store = store
        self._transaction = transaction
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
    for a connection's whole burst (a 90-day backfill is seven requests at
    once: three windows, two billing GETs, past invoices, the split by unit
    type), so the shared gate, not a pool, decides who waits.
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
        settle_hours: int | None = None,
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
        async with HttpClients(1) as clients:
            try:
                check = await provider.check_credentials(clients.pick(0), clean)
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
    ) -> list[SyncResult]:
        ids = list(connection_ids)
        with self.db.session() as session:
            loaded = {
                c.id: c for c in session.scalars(select(Connection).where(Connection.id.in_(ids)))
            }
            invoices_due = self._invoices_due(session, ids)
        missing = [i for i in ids if i not in loaded]
        if missing:
            raise LookupError(f"no connection with id {missing[0]}")
        self.record_profiles(c.provider for c in loaded.values())
        limit = asyncio.Semaphore(self.concurrency)
        done = 0
        writer = _Writer(partial(self._record, trigger=trigger), self.db.transaction)
        try:
            async with HttpClients(self.concurrency) as clients:

                async def one(index: int, connection: Connection) -> SyncResult:
                    nonlocal done
                    async with limit:  # held for the network part only
                        attempt = await self._fetch_one(
                            clients.pick(index),
                            connection,
                            days,
                            force,
                            invoices_due.get(connection.id, ()),
                        )
                    result = await self._store_one(writer, attempt)
                    done += 1
                    if progress:
                        progress(result, done, len(ids))
                    return result

                return list(await asyncio.gather(*(one(n, loaded[i]) for n, i in enumerate(ids))))
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

    def _record(self, session: Session, attempt: _Attempt, totals: dict, trigger: str) -> None:
        """Store one sync's outcome (on the writer, inside its transaction).

        A handful of set-based statements per sync: this runs once per
        connection per day, hundreds of times in a row.
        """
        connection, result, fetched = attempt.connection, attempt.result, attempt.fetched
        now = self.clock()
        if fetched is None:
            needs_person = result.needs_person
            status = {
                "status": ConnectionStatus.ERROR if needs_person else ConnectionStatus.FAILING,
                "status_reason": result.reason or "",
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
            )
        )
        if fetched is not None:
            self._replace_costs(session, connection, result.start, result.end, fetched, totals)
            record_fetched(
                session, connection.id, connection.workspace_id, result.start, result.end
            )
            record_provisional(
                session,
                connection,
                result.start,
                result.end,
                fetched_at=attempt.started,
                settle=self.settle_time(connection.provider),
            )
            _replace_unit_costs(session, connection, fetched.unit_costs)
            _replace_invoice_lines(session, connection, fetched.billing, self.clock())
            _store_invoices(session, connection, fetched.invoices, now)

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
                "bill_source": b.bill_source,
                "subtotal_usd": b.subtotal_usd,
                "tax_usd": b.tax_usd,
                "total_usd": b.total_usd,
                "total_with_corrections_usd": b.total_with_corrections_usd,
                "prepaid_total_usd": b.prepaid_total_usd,
                "prepaid_used_usd": b.prepaid_used_usd,
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


def record_provisional(
    session: Session,
    connection: Connection,
    first: date,
    last: date,
    *,
    fetched_at: datetime,
    settle: timedelta,
) -> None:
    """Mark the days of ``first``..``last`` fetched before they settled; clear the rest.

    In the transaction that stored those days' costs: a day is final exactly
    when the costs stored for it were read after its settle time.
    """
    session.execute(
        delete(ProvisionalDay).where(
            ProvisionalDay.connection_id == connection.id,
            ProvisionalDay.day >= first,
            ProvisionalDay.day <= last,
        )
    )
    marks = []
    day = last
    while day >= first:
        settles_at = day_end(day) + settle
        if settles_at <= fetched_at:
            break  # this day and every one before it were read after they settled
        marks.append(
            {
                "connection_id": connection.id,
                "workspace_id": connection.workspace_id,
                "day": day,
                "fetched_at": fetched_at,
                "settles_at": settles_at,
            }
        )
        day -= timedelta(days=1)
    if marks:
        session.execute(insert(ProvisionalDay), marks)


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
