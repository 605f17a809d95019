"""The small domain types every provider speaks.

A provider returns these, never ORM rows or raw JSON, and raises
:class:`ProviderError` with a reason code the host can act on: one of the
:class:`Reason` members, or a code of the provider's own.

Everything added after the first provider has a default, so a provider
written before it keeps working: optional attributes are read through
:func:`max_backfill_days`, :func:`settle_hours`, :func:`caveats`, :func:`key_page`
and :func:`no_spend_hint`, optional
capabilities are protocols the host checks with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

import httpx


class Reason(StrEnum):
    """Why a credential check or a fetch failed. Stable: stored and shown."""

    INVALID_KEY = "invalid_key"
    INFERENCE_KEY = "inference_key"
    MISSING_SCOPE = "missing_scope"
    TEAM_ID_MALFORMED = "team_id_malformed"
    TEAM_MISMATCH = "team_mismatch"
    TEAM_NOT_FOUND = "team_not_found"
    TEAM_DELETED = "team_deleted"
    IP_NOT_ALLOWED = "ip_not_allowed"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    SERVER_ERROR = "server_error"
    TRUNCATED = "truncated"
    BAD_RESPONSE = "bad_response"
    BAD_REQUEST = "bad_request"

    @property
    def needs_person(self) -> bool:
        """True when retrying cannot help: someone must fix the credentials."""
        return self in _NEEDS_PERSON


_NEEDS_PERSON = frozenset(
    {
        Reason.INVALID_KEY,
        Reason.INFERENCE_KEY,
        Reason.MISSING_SCOPE,
        Reason.TEAM_ID_MALFORMED,
        Reason.TEAM_MISMATCH,
        Reason.TEAM_NOT_FOUND,
        Reason.TEAM_DELETED,
        Reason.IP_NOT_ALLOWED,
    }
)


class ProviderError(Exception):
    """A failure with a reason code and a message a person can act on.

    ``reason`` is a :class:`Reason` member, or a provider's own code (a short
    ``snake_case`` string such as ``"not_admin_key"``) when none of them says
    what happened; a string equal to a member's value becomes that member.
    ``needs_person`` says whether retrying cannot help: it defaults to the
    member's own answer, and to False for a code of the provider's own.
    ``field`` names the credential field to blame (for a form), when one is.
    The message must never contain a secret.
    """

    def __init__(
        self,
        reason: Reason | str,
        message: str,
        *,
        field: str | None = None,
        retry_after: float | None = None,
        needs_person: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: Reason | str = _known_reason(reason)
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self._needs_person = needs_person

    @property
    def needs_person(self) -> bool:
        """True when retrying cannot help: someone must act (new key, other settings)."""
        if self._needs_person is not None:
            return self._needs_person
        return isinstance(self.reason, Reason) and self.reason.needs_person


def _known_reason(reason: Reason | str) -> Reason | str:
    """A member for a string that is one (codes are stored as text and read back)."""
    try:
        return Reason(reason)
    except ValueError:
        return reason


class ResultTruncated(ProviderError):
    """The service cut the answer off; the caller should split the range."""

    def __init__(self, message: str = "the usage result was cut off (limitReached)") -> None:
        super().__init__(Reason.TRUNCATED, message)


@dataclass(frozen=True)
class CredentialField:
    """One field a provider needs to connect (shown in the modal and the CLI)."""

    name: str
    label: str
    secret: bool = False
    help: str = ""
    placeholder: str = ""
    env_var: str | None = None
    env_aliases: tuple[str, ...] = ()
    """Other variables read when ``env_var`` is unset (names people guess)."""
    validate: Callable[[str], str | None] = field(default=lambda value: None, compare=False)
    """Returns an error message for a malformed value, or None. No network."""
    optional: bool = False
    """May be left empty: the provider then does without it (``validate`` sees only values)."""


@dataclass(frozen=True)
class CostRow:
    """The cost of one model (and API key, where known) on one UTC day."""

    day: date
    model: str
    cost_usd: Decimal
    api_key_id: str = ""
    api_key_label: str = ""


@dataclass(frozen=True)
class CostFetch:
    """What a fetch of a date range returned."""

    rows: tuple[CostRow, ...]
    by_key: bool
    """Whether the rows carry the per-API-key breakdown."""


@dataclass(frozen=True)
class UnitCostRow:
    """The cost of one kind of usage (``unit_type``) of one model on one UTC day.

    ``unit_type`` is the provider's own words ("Prompt text tokens",
    "Reasoning tokens"...): new kinds appear without notice, so they are kept
    as they come and classified where they are shown.
    """

    day: date
    model: str
    unit_type: str
    cost_usd: Decimal


@dataclass(frozen=True)
class InvoiceLine:
    """One line of the current billing cycle's invoice: units of one kind for one model."""

    model: str
    unit_type: str
    num_units: int
    amount_usd: Decimal


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a credential test that passed."""

    team_name: str = ""
    key_name: str = ""
    notes: tuple[str, ...] = ()
    account_id: str = ""
    """Which account (team, organization) the credentials read, as the service names it:
    stable for the account whatever key is used, and different for any other account.
    Empty when the service would not say (a note should then say why)."""
    account_name: str = ""
    """The account's name for people, where the service has one."""


class BillSource(StrEnum):
    """Where a :class:`BillingSnapshot`'s bill so far was read. Stable: stored and shown."""

    TOTALS = "totals"
    """The invoice's own totals, as the provider states them."""
    LINES = "lines"
    """The invoice's lines added up: the provider gave no totals (each line is rounded)."""


@dataclass(frozen=True)
class BillingSnapshot:
    """Live billing figures, where the provider's API has them. USD.

    The bill so far, the prepaid credit used and the invoiced spend all come
    from one source (:attr:`bill_source`): the invoice's own totals when it
    states them, its lines added up only when it does not.
    """

    as_of: datetime
    month_to_date_usd: Decimal | None = None
    """The bill so far for ``billing_cycle``: tax and corrections included where stated."""
    prepaid_credit_usd: Decimal | None = None
    """Prepaid credit left: :attr:`prepaid_total_usd` minus :attr:`prepaid_used_usd`."""
    spending_limit_usd: Decimal | None = None
    invoiced_usd: Decimal | None = None
    """This cycle's spend beyond prepaid credit (the bill so far minus the prepaid credit
    used, never below 0): what a spending limit applies to."""
    billing_cycle: date | None = None
    """The first day of the month ``month_to_date_usd`` is for, where the provider says."""
    lines: tuple[InvoiceLine, ...] = ()
    """The invoice's lines (token counts per model and kind), where the provider has them.
    For the split only: they need not add up to the bill."""
    bill_source: BillSource | None = None
    """Where ``month_to_date_usd`` came from; None when the invoice was not read."""
    subtotal_usd: Decimal | None = None
    """Before tax, where stated: the invoice's figure for the usage itself."""
    tax_usd: Decimal | None = None
    """Tax (VAT) on the bill so far, where stated."""
    total_usd: Decimal | None = None
    """After tax, before corrections, where stated."""
    total_with_corrections_usd: Decimal | None = None
    """After tax and the provider's corrections (credits, adjustments), where stated."""
    prepaid_total_usd: Decimal | None = None
    """The prepaid credit the team had for this cycle, where stated."""
    prepaid_used_usd: Decimal | None = None
    """The part of the bill so far paid from prepaid credit."""


class InvoiceStatus(StrEnum):
    """Where a past month's invoice stands. Stable: stored and shown."""

    PENDING = "pending"
    """Issued, not charged yet: it may still change."""
    PAID = "paid"
    WILL_NEVER_BE_CHARGED = "will_never_be_charged"
    FAILED = "failed"
    """The charge failed; it will be tried again."""
    UNREADABLE = "unreadable"
    """The provider listed it in a form this app cannot read (see ``problem``)."""
    NOT_LISTED = "not_listed"
    """Recorded by the host: the provider listed no invoice for the month when asked."""

    @property
    def final(self) -> bool:
        """Whether the invoice will not change any more, so need not be asked for again."""
        return self in (InvoiceStatus.PAID, InvoiceStatus.WILL_NEVER_BE_CHARGED)


@dataclass(frozen=True)
class PastInvoice:
    """One closed month's invoice, as the provider lists it. USD.

    An invoice that cannot be read is still returned, ``UNREADABLE`` with the
    ``problem`` in words a person can act on, and whatever could be read: never
    a guessed amount.
    """

    month: date | None
    """The first day of the billing month; None when even that could not be read."""
    status: InvoiceStatus
    total_usd: Decimal | None = None
    """What is charged: tax included."""
    subtotal_usd: Decimal | None = None
    """Before tax: the invoice's figure for the usage itself."""
    tax_usd: Decimal | None = None
    lines: tuple[InvoiceLine, ...] = ()
    number: str = ""
    """The provider's invoice number, for a person to look it up."""
    problem: str = ""


Credentials = Mapping[str, str]

DEFAULT_MAX_BACKFILL_DAYS = 90
"""How far back a provider that does not say is asked for costs."""
DEFAULT_SETTLE_HOURS = 48
"""How long a provider that does not say may still change a day after it ends: a guess on
the safe side (a figure re-fetched for nothing costs a request; one left stale is wrong)."""


@runtime_checkable
class Provider(Protocol):
    """What the host expects of a provider object.

    The host owns the HTTP client (pooling, lifetime), decrypts the
    credentials and passes them in; the provider never touches the store or
    the environment. Every method may raise :class:`ProviderError`.

    Optional attributes, read with a default (see the functions below):
    ``max_backfill_days`` (int: how many days back the service keeps costs),
    ``settle_hours`` (int: how many hours after a UTC day ends its figures may
    still change) and ``caveats`` (short sentences every report of this
    provider's figures must state, e.g. what the service leaves out), ``key_page``
    (str: where a person makes and revokes keys, for the host's advice on a refused
    key) and ``no_spend_hint`` (str: what to check when a backfill finds no spend).
    """

    name: str
    display_name: str
    credential_fields: tuple[CredentialField, ...]
    max_window_days: int
    """The largest date range one fetch_daily_costs call may be given."""

    def mask(self, credentials: Credentials) -> str:
        """A display form of the secret, e.g. ``xai-…beef``."""
        ...

    def default_label(self, credentials: Credentials) -> str: ...

    async def check_credentials(
        self, http: httpx.AsyncClient, credentials: Credentials
    ) -> CheckResult: ...

    async def fetch_daily_costs(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        start: date,
        end: date,
        *,
        by_key: bool = True,
    ) -> CostFetch:
        """Costs for UTC days ``start`` (inclusive) to ``end`` (exclusive).

        With ``by_key`` the provider tries the per-API-key breakdown and falls
        back to per-model rows (``CostFetch.by_key`` False) if it is refused or
        cut off (keys multiply the groups). Raises :class:`ResultTruncated` only
        if the answer was cut off without the breakdown too: the host then
        splits the range.
        """
        ...

    async def fetch_billing(
        self, http: httpx.AsyncClient, credentials: Credentials
    ) -> BillingSnapshot | None: ...


def check_window(start: date, end: date, max_days: int, *, what: str = "cost") -> None:
    """Refuse a fetch of other than 1 to ``max_days`` (``max_window_days``) UTC days
    ``[start, end)``: the host never asks for one, so it is a bug, a ``ValueError``.
    ``what`` is what the provider's API calls the figures ("cost", "usage")."""
    if not 0 < (end - start).days <= max_days:
        raise ValueError(f"a {what} window must span 1 to {max_days} days, got {start} to {end}")


def max_backfill_days(provider: object) -> int:
    """How many UTC days back (today included) ``provider``'s costs can be fetched."""
    return int(getattr(provider, "max_backfill_days", DEFAULT_MAX_BACKFILL_DAYS))


def settle_hours(provider: object) -> int:
    """How many hours after a UTC day ends ``provider`` may still change its figures."""
    return int(getattr(provider, "settle_hours", DEFAULT_SETTLE_HOURS))


def caveats(provider: object) -> tuple[str, ...]:
    """What a report of ``provider``'s figures must say about them (none by default)."""
    return tuple(getattr(provider, "caveats", ()))


def key_page(provider: object) -> str:
    """Where a person makes and revokes ``provider``'s keys, in words or a URL ("" when
    unsaid): the host's advice on a refused key names it."""
    return str(getattr(provider, "key_page", "") or "")


def no_spend_hint(provider: object) -> str:
    """What to check when a first backfill finds no spend at all ("" when unsaid)."""
    return str(getattr(provider, "no_spend_hint", "") or "")


@runtime_checkable
class UnitCostProvider(Protocol):
    """An optional capability: cost split by kind of usage (input, output, images...).

    The host asks for it only where a provider has the method, and a failure
    never fails a sync: it is an insight, not the bill.
    """

    async def fetch_unit_costs(
        self, http: httpx.AsyncClient, credentials: Credentials, start: date, end: date
    ) -> tuple[UnitCostRow, ...] | None:
        """Costs per UTC day, model and unit type for ``[start, end)`` (at most
        ``max_window_days``); None when the service does not answer this grouping
        (refused or cut off): the caller then knows those days' kinds are unknown."""
        ...


@runtime_checkable
class InvoiceHistoryProvider(Protocol):
    """An optional capability: the invoices of closed months, to set beside the usage series.

    The host asks for it beside billing, only for the last few closed months not yet
    stored as final, and a failure never fails a sync.
    """

    async def fetch_invoices(
        self, http: httpx.AsyncClient, credentials: Credentials, since: date
    ) -> tuple[PastInvoice, ...] | None:
        """The monthly invoices from the month of ``since`` on, one per month at most
        (prepaid top-ups and other invoices that are no month's bill left out); None
        when this key or account may not see them."""
        ...


# -- kinds of usage and list prices: the host's vocabulary ---------------------------


class UsageKind(StrEnum):
    """The kinds of usage the host shows and prices, whatever a provider calls them.

    A provider's unit types ("Prompt text tokens", "input_tokens"...) are read
    as these by :class:`UsageKindProvider`; one that is none of them stays its
    own kind, shown in the provider's words.
    """

    INPUT = "input"
    CACHED_INPUT = "cached_input"
    OUTPUT = "output"
    REASONING = "reasoning"
    IMAGES = "images"
    SEARCH = "search"


KIND_LABELS: Mapping[str, str] = {
    UsageKind.INPUT: "input tokens",
    UsageKind.CACHED_INPUT: "cached input tokens",
    UsageKind.OUTPUT: "output tokens",
    UsageKind.REASONING: "reasoning tokens",
    UsageKind.IMAGES: "images",
    UsageKind.SEARCH: "search",
}


def kind_label(kind: str) -> str:
    """How a kind is shown: its label, or a unit type no provider read, as it came."""
    return KIND_LABELS.get(kind, kind)


@dataclass(frozen=True)
class ModelPrice:
    """One model's list prices, and the cheaper sibling that does the same work, if any."""

    model: str
    per_unit: Mapping[str, Decimal]
    """USD per single unit (one token, one image, one search source), by :class:`UsageKind`.
    A kind missing here has no known price: a mix that uses it gets no hint."""
    cheaper: str | None = None
    """Another model of the same table that does the same kind of work for less."""
    unsure: bool = False
    """A price here was not confirmed at the table's source: hints built on it are approximate."""

    def price(self, kind: str) -> Decimal | None:
        """USD per single unit of ``kind``, or None when unknown."""
        return self.per_unit.get(kind)


@dataclass(frozen=True)
class PriceTable:
    """A provider's list prices, as of a day, with where they were read."""

    as_of: date
    source: str
    """Where a person can check them (a URL)."""
    models: Mapping[str, ModelPrice]
    """By model id as the provider's cost rows name it, and by alias."""

    def get(self, model: str) -> ModelPrice | None:
        return self.models.get(model)


@runtime_checkable
class UsageKindProvider(Protocol):
    """An optional capability: which of the host's kinds each of the provider's unit types is.

    Without it a provider's unit types are shown as they come (the host cannot
    label or price what it cannot name).
    """

    def usage_kind(self, unit_type: str) -> UsageKind | str:
        """The :class:`UsageKind` of a :attr:`UnitCostRow.unit_type` or
        :attr:`InvoiceLine.unit_type`, or ``unit_type`` itself when it is none of
        them: never dropped, never guessed. No network; called per stored row."""
        ...


@runtime_checkable
class PriceListProvider(UsageKindProvider, Protocol):
    """An optional capability: the provider's list prices, for cheaper-model hints.

    Prices are per kind of usage, so a provider with a price list also reads
    its unit types as kinds (:class:`UsageKindProvider`). Hints are insights,
    never the bill: the provider's own cost figures always are.
    """

    def list_prices(self) -> PriceTable:
        """The list prices (no network; read once and kept is fine). Raises
        ``ValueError`` with a message saying what is wrong when they cannot be
        read: the host then shows no hints for this provider, and says why."""
        ...


# -- a local stand-in for the provider's API ----------------------------------------


class LocalStandIn(Protocol):
    """A stand-in for a provider's API served on this machine, with synthetic data.

    ``url`` is known once started; ``demo_credentials`` (by credential field
    name) connect to it. ``start`` returns the stand-in itself, and raises
    ``OSError`` when the port cannot be had.
    """

    url: str

    @property
    def demo_credentials(self) -> Mapping[str, str]: ...

    def start(self) -> LocalStandIn: ...

    def stop(self) -> None: ...


@runtime_checkable
class StandInProvider(Protocol):
    """An optional capability: a local stand-in for the provider's API (``xai-usage
    sandbox --provider NAME``), to try the product without an account.

    ``stand_in_setting`` is the configuration name (an environment variable the
    host passes in ``config``) that points the provider at a base URL: the host
    tells the person to set it to the stand-in's URL.
    """

    stand_in_setting: str

    def stand_in(self, *, host: str, port: int, latency: float = 0.0) -> LocalStandIn:
        """A stand-in listening on ``host``:``port`` (0: any free port), adding ``latency``
        seconds to each answer; not started yet. Standard library only: a product
        command must not need test dependencies."""
        ...
