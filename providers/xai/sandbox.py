"""A local stand-in for the xAI Management API, served over real HTTP.

It ships with the product (``xai-usage sandbox``, ``xai-usage demo``) and
backs the end-to-end tests and benchmarks, so it speaks the wire format the
real service speaks (see ``xai-management-api.md``): gRPC-gateway error
bodies, proto3 JSON that leaves out default fields, dense daily points and
exact eight-decimal dollar amounts. The figures are synthetic but
deterministic (a hash of team, label, day and the clock), so a test can ask
:meth:`Sandbox.cost` for exactly what the server serves.

Standard library only: a product command must not need test dependencies.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.message import Message
from typing import Any, Unpack
from urllib.parse import parse_qs

from providers.cost_standin import unit as _unit
from providers.standin import Answer, ApiStandIn, StandInHandler, StandInOptions

__all__ = [
    "DEMO_KEY",
    "DEMO_TEAM_ID",
    "INVOICE_SHAPES",
    "INVOICE_STATUSES",
    "MODELS",
    "Bill",
    "RecordedRequest",
    "Sandbox",
    "serve_forever",
]

log = logging.getLogger(__name__)

DEMO_TEAM_ID = "65c1e471-205f-4566-9c5a-07198bcdf4ce"
DEMO_KEY = "xai-mgmt-demo-4b1f2e9c7d6a5b3e8f0a1c2d3e4fbeef"

IMAGE_LABEL = "grok-2-image-1212"
MODELS = (
    "Chat grok-4-0709",
    "Chat grok-4-fast-reasoning",
    "Chat grok-4-fast-non-reasoning",
    "Chat grok-code-fast-1",
    "Chat grok-3-mini",
    IMAGE_LABEL,
)

ENDPOINTS = ("usage", "validation", "invoice", "limits", "balance", "invoices", "any")
INVOICE_SHAPES = ("lines", "full", "totals")
"""What the invoice preview carries: its lines only (the stand-in's first shape), lines and
its own totals (as billing.proto has it), or its totals without lines (seen live)."""
INVOICE_STATUSES = ("PENDING", "PAID", "WILL_NEVER_BE_CHARGED", "FAILED")
MALFORMED_INVOICES = ("total", "cycle")
"""How a past invoice can be served broken: its total not a number, or no billing cycle."""
FAULT_KINDS = ("status", "hang", "truncate", "limit_reached")
HANG_SECONDS = 30.0

_Q8 = Decimal("0.00000001")
_BILLING_READ_ACL = "team:billing:read"
_PREPAID_CENTS = 20000
_SPENDING_LIMIT_CENTS = 100000
_HARD_LIMIT_CENTS = 150000
_LATE_MODEL = "Chat grok-code-fast-1"
_LATE_MODEL_DAYS = 20
_SPIKE_MODEL = "Chat grok-4-0709"
_SPIKE_DAYS_AGO = 10
_SPIKE_FACTOR = Decimal(6)
_WEEKEND_FACTOR = Decimal("0.4")
_STAGING_SHARE = Decimal("0.25")
_IMAGE_PRICE = Decimal("0.07")
_INVOICE_HISTORY_MONTHS = 12
_CONTROL_PREFIX = "/__sandbox__/"


@dataclass(frozen=True)
class _ModelSpec:
    """How a label's synthetic spend is shaped."""

    base_usd: Decimal
    """Typical weekday spend of a team at scale 1 (images: the most images a day)."""


_SPECS: dict[str, _ModelSpec] = {
    "Chat grok-4-0709": _ModelSpec(Decimal(12)),
    "Chat grok-4-fast-reasoning": _ModelSpec(Decimal("4.5")),
    "Chat grok-4-fast-non-reasoning": _ModelSpec(Decimal("2.8")),
    "Chat grok-code-fast-1": _ModelSpec(Decimal(7)),
    "Chat grok-3-mini": _ModelSpec(Decimal("1.6")),
    IMAGE_LABEL: _ModelSpec(Decimal(30)),
}

# Kinds of usage, as xAI's invoice lines name them (``unitType``), and what each
# costs per unit in 1/1_000_000 US cents (USD per 1M tokens x 100): the list
# prices in xai-management-api.md. Reasoning tokens are billed as output.
PROMPT = "Prompt text tokens"
CACHED = "Cached prompt text tokens"
COMPLETION = "Completion tokens"
REASONING = "Reasoning tokens"
IMAGES = "Images"
UNIT_TYPES = (PROMPT, CACHED, COMPLETION, REASONING, IMAGES)

_UNIT_PRICES: dict[str, dict[str, int]] = {
    "Chat grok-4-0709": {PROMPT: 300, CACHED: 75, COMPLETION: 1500, REASONING: 1500},
    "Chat grok-4-fast-reasoning": {PROMPT: 20, CACHED: 5, COMPLETION: 50, REASONING: 50},
    "Chat grok-4-fast-non-reasoning": {PROMPT: 20, CACHED: 5, COMPLETION: 50},
    "Chat grok-code-fast-1": {PROMPT: 20, CACHED: 2, COMPLETION: 150, REASONING: 150},
    "Chat grok-3-mini": {PROMPT: 30, CACHED: 8, COMPLETION: 50, REASONING: 50},
    IMAGE_LABEL: {IMAGES: 7_000_000},
}
# How each model's day of spend splits across its kinds (the first kind takes the
# rest, so the parts add up to the day's cost to the last digit).
_UNIT_MIX: dict[str, tuple[tuple[str, Decimal], ...]] = {
    "Chat grok-4-0709": (
        (PROMPT, Decimal("0.35")),
        (CACHED, Decimal("0.05")),
        (COMPLETION, Decimal("0.35")),
        (REASONING, Decimal("0.25")),
    ),
    "Chat grok-4-fast-reasoning": (
        (PROMPT, Decimal("0.4")),
        (CACHED, Decimal("0.1")),
        (COMPLETION, Decimal("0.2")),
        (REASONING, Decimal("0.3")),
    ),
    "Chat grok-4-fast-non-reasoning": (
        (PROMPT, Decimal("0.5")),
        (CACHED, Decimal("0.1")),
        (COMPLETION, Decimal("0.4")),
    ),
    "Chat grok-code-fast-1": (
        (PROMPT, Decimal("0.3")),
        (CACHED, Decimal("0.1")),
        (COMPLETION, Decimal("0.4")),
        (REASONING, Decimal("0.2")),
    ),
    "Chat grok-3-mini": (
        (PROMPT, Decimal("0.5")),
        (CACHED, Decimal("0.05")),
        (COMPLETION, Decimal("0.3")),
        (REASONING, Decimal("0.15")),
    ),
    IMAGE_LABEL: ((IMAGES, Decimal(1)),),
}


def _unit_share(label: str, total: Decimal, unit_type: str) -> Decimal:
    """The part of a model's day that is ``unit_type``; the parts add up to ``total``."""
    return _unit_parts(label, total).get(unit_type, _NOTHING)


@functools.lru_cache(maxsize=65536)
def _unit_parts(label: str, total: Decimal) -> dict[str, Decimal]:
    """A model's day split by unit type, worked out once for each figure (every invoice
    preview asks again for each day of the month so far, and each unit type)."""
    mix = _UNIT_MIX.get(label, ())
    parts = {kind: (total * share).quantize(_Q8) for kind, share in mix[1:]}
    if mix:
        parts[mix[0][0]] = total - sum(parts.values(), Decimal(0))
    return parts


_NOTHING = Decimal(0)


_GRPC_CODES = {
    400: 3,
    401: 16,
    403: 7,
    404: 5,
    405: 12,
    409: 10,
    429: 8,
    499: 1,
    500: 13,
    501: 12,
    503: 14,
    504: 4,
}
_DEFAULT_MESSAGES = {
    429: "rate limit exceeded",
    500: "internal error",
    502: "bad gateway",
    503: "service unavailable",
    504: "deadline exceeded",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the sandbox saw it. Never holds headers, so never the key.

    ``path`` includes the query string; ``status`` is 0 when the sandbox
    stopped before answering (a hang cut short). ``arrived`` and ``answered``
    are ``time.monotonic()`` readings: whether two requests overlapped, that is
    were sent at once, is ``a.arrived < b.answered and b.arrived < a.answered``.
    """

    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    arrived: float = 0.0
    answered: float = 0.0


@dataclass(frozen=True)
class Bill:
    """A month's invoice as the stand-in states it, in USD: the oracle for billing tests."""

    usage: Decimal
    """The exact sum of the month's served costs (what the usage series adds up to)."""
    lines: Decimal
    """The invoice lines added up, each rounded to the cent on its own."""
    subtotal: Decimal
    """Before tax (``amountBeforeVat``, a past invoice's ``subtotal``): the usage rounded once."""
    tax: Decimal
    total: Decimal
    """After tax (``amountAfterVat``, a past invoice's ``total``)."""
    total_with_corrections: Decimal
    """``totalWithCorr``: the total plus the corrections knob."""
    prepaid: Decimal
    prepaid_used: Decimal
    stated: Decimal
    """What the answer gives as the bill: the total with corrections, or with the "lines"
    shape (no totals) the lines added up."""

    @property
    def invoiced(self) -> Decimal:
        """The spend beyond prepaid credit: what the spending limit caps."""
        return max(Decimal(0), self.stated - self.prepaid_used)


@dataclass
class _Key:
    key: str
    team_id: str
    name: str
    kind: str
    billing_read: bool
    scope: str
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """The ranges a key may be used from; empty means anywhere."""


@dataclass(eq=False)
class _Fault:
    endpoint: str
    kind: str
    status: int | None
    retry_after: float | None
    message: str | None
    remaining: int | None
    """Requests left before the fault is spent; None means forever."""
    group_by: frozenset[str] | None = None
    """Usage requests grouped by exactly these fields only; None means any request."""


@dataclass
class _Answer:
    """What to send back; serialised late so a fault can still amend the payload."""

    status: int
    payload: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    truncate: bool = False

    def encode(self) -> bytes:
        return _dumps(self.payload).encode()


class _ApiError(Exception):
    """An error answer in gRPC-gateway form, raised from deep inside a handler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def answer(self) -> _Answer:
        return _error_answer(self.status, self.message)


@dataclass(frozen=True)
class _UsageQuery:
    start: date
    days: int
    per_day: bool
    group_by: tuple[str, ...]
    key_filter: frozenset[str] | None
    """The api_key_id filters ANDed together; None when there were none."""


def _grpc_code(status: int) -> int:
    return _GRPC_CODES.get(status, 2)


def _error_answer(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Answer:
    return _Answer(status, {"code": _grpc_code(status), "message": message}, headers)


# --- JSON: Decimals must reach the wire digit for digit, never via float ------


def _decimal_text(value: Decimal) -> str:
    """Up to eight decimals, no exponent, no trailing zeros, a zero as ``0``."""
    quantized = value.quantize(_Q8)
    if quantized == 0:
        return "0"
    return format(quantized.normalize(), "f")


_json_string = json.encoder.encode_basestring_ascii
"""A string as ``json.dumps`` writes it, without its call's overhead."""


def _dumps(value: Any) -> str:
    """A tiny JSON writer: the standard one can only write a Decimal through float.

    Every answer passes here: the shapes answers are made of are asked for first, and
    by concrete types (a check against ``Mapping`` is slower, and rare)."""
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, dict):
        return (
            "{" + ",".join([_json_string(str(k)) + ":" + _dumps(v) for k, v in value.items()]) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join([_dumps(v) for v in value]) + "]"
    if isinstance(value, int) or value is None:  # bool is an int
        return json.dumps(value)
    if isinstance(value, Mapping):
        return _dumps(dict(value))
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --- synthetic data -----------------------------------------------------------


def _stable_uuid(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@functools.lru_cache(maxsize=65536)
def _team_scale(team_id: str) -> Decimal:
    """Teams differ in size, so their spend is not the same curve."""
    return Decimal("0.5") + 2 * _unit("scale", team_id)


@functools.lru_cache(maxsize=65536)
def _full_day_cost(team_id: str, label: str, day: date, today: date) -> Decimal:
    """The whole-day USD cost of a past or current day, before today's partial cut."""
    if label == _LATE_MODEL and day < today - timedelta(days=_LATE_MODEL_DAYS):
        return Decimal(0)
    weekend = day.weekday() >= 5
    if label == IMAGE_LABEL:
        return _image_cost(team_id, day, weekend)
    amount = _SPECS[label].base_usd * _team_scale(team_id)
    amount *= Decimal("0.7") + Decimal("0.6") * _unit("jitter", team_id, label, day)
    if weekend:
        amount *= _WEEKEND_FACTOR
    if label == _SPIKE_MODEL and day == today - timedelta(days=_SPIKE_DAYS_AGO):
        amount *= _SPIKE_FACTOR
    return amount.quantize(_Q8)


def _image_cost(team_id: str, day: date, weekend: bool) -> Decimal:
    """Images are bought whole and not every day, which gives the zero days."""
    if weekend or _unit("image-idle", team_id, day) < Decimal("0.2"):
        return Decimal(0)
    ceiling = _SPECS[IMAGE_LABEL].base_usd * _team_scale(team_id)
    count = 1 + int(ceiling * _unit("images", team_id, day))
    return count * _IMAGE_PRICE


def _served_fraction(day: date, now: datetime, settle_hours: float) -> Decimal:
    """How much of a day's cost xAI has served by ``now``: it grows evenly from the
    day's start until ``settle_hours`` after its end (with 0, until midnight)."""
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    elapsed = now - midnight
    micros = (elapsed.days * 86400 + elapsed.seconds) * 1_000_000 + elapsed.microseconds
    span = int((86400 + settle_hours * 3600) * 1_000_000)
    return min(Decimal(1), Decimal(micros) / Decimal(span))


def _day_cost(
    team_id: str,
    label: str,
    day: date,
    now: datetime,
    anchor: date | None = None,
    settle_hours: float = 0.0,
) -> Decimal:
    """What has been billed for the day as of ``now``: nothing yet in the future.

    The late model and the spike are placed relative to ``anchor`` when given
    (so history stays put while a test moves the clock), else to today. A day
    is served in part until it has settled (:func:`_served_fraction`).
    """
    today = now.date()
    if day > today or label not in _SPECS:
        return Decimal(0)
    full = _full_day_cost(team_id, label, day, anchor or today)
    if day == today or (settle_hours and now < _settled_at(day, settle_hours)):
        return (full * _served_fraction(day, now, settle_hours)).quantize(_Q8)
    return full


def _settled_at(day: date, settle_hours: float) -> datetime:
    """When a day's served cost stops growing: its end, plus the settle time."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return end + timedelta(hours=settle_hours)


@functools.lru_cache(maxsize=65536)
def _key_names(count: int) -> tuple[str, ...]:
    return ("production", "staging", *(f"service-{i}" for i in range(3, count + 1)))[:count]


@functools.lru_cache(maxsize=65536)
def _key_ids(team_id: str, count: int = 2) -> tuple[str, ...]:
    return tuple(_stable_uuid("key", team_id, name) for name in _key_names(count))


def _key_share(total: Decimal, key_ids: tuple[str, ...], api_key_id: str) -> Decimal:
    """Split so the shares add up to the model total to the last digit.

    The first key (production) takes what the others leave; the others share
    a quarter between them.
    """
    if api_key_id not in key_ids:
        return Decimal(0)
    others = len(key_ids) - 1
    share = (total * _STAGING_SHARE / others).quantize(_Q8) if others else Decimal(0)
    return total - share * others if api_key_id == key_ids[0] else share


def _mask(key: str) -> str:
    return f"{key[:4]}…{key[-4:]}"


def _day_timestamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _month_days(year: int, month: int, last: date | None = None) -> list[date]:
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    end = following if last is None else min(following, last + timedelta(days=1))
    return [first + timedelta(days=i) for i in range((end - first).days)]


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year, month - 1) if month > 1 else (year - 1, 12)


def _cents(usd: Decimal) -> int:
    return int((usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- usage request validation -----------------------------------------------

_TIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_REQUEST_FIELDS = frozenset({"analyticsRequest", "teamId"})
_ANALYTICS_FIELDS = frozenset({"timeRange", "timeUnit", "values", "groupBy", "filters"})
_TIME_RANGE_FIELDS = frozenset({"startTime", "endTime", "timezone"})
_TIME_UNITS = {"TIME_UNIT_DAY": True, "TIME_UNIT_NONE": False}
_EXPECTED_VALUES = [{"name": "usd", "aggregation": "AGGREGATION_SUM"}]
_GROUP_FIELDS = ("description", "api_key_id", "unit_type")
_KEY_FILTER_PREFIX = "api_key_id:"


def _bad(message: str) -> _ApiError:
    return _ApiError(400, message)


def _require_fields(obj: object, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(f"{where}: expected an object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _bad(f'{where}: unknown field "{unknown[0]}"')
    return obj


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str) or not _TIME_FORMAT.match(value):
        raise _bad(f"timeRange.{name}: expected YYYY-MM-DD HH:MM:SS, got {value!r}")
    try:
        parsed = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise _bad(f"timeRange.{name}: {exc}") from exc
    if parsed.time() != datetime.min.time():
        raise _bad(f"timeRange.{name}: the sandbox serves whole days only (00:00:00)")
    return parsed


def _parse_time_range(obj: object) -> tuple[date, int]:
    time_range = _require_fields(obj, _TIME_RANGE_FIELDS, "timeRange")
    timezone = time_range.get("timezone")
    if timezone != "Etc/GMT":
        raise _bad(f"timeRange.timezone: the sandbox supports Etc/GMT only, got {timezone!r}")
    start = _parse_time(time_range.get("startTime"), "startTime")
    end = _parse_time(time_range.get("endTime"), "endTime")
    if end <= start:
        raise _bad("timeRange: endTime must be after startTime")
    return start.date(), (end - start).days


def _parse_group_by(value: object, key_breakdown: bool, unit_types: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad("groupBy: expected a list of strings")
    for name in value:
        if name not in _GROUP_FIELDS:
            raise _bad(f'groupBy: unknown field "{name}"')
        if name == "api_key_id" and not key_breakdown:
            raise _bad('groupBy: unsupported field "api_key_id"')
        if name == "unit_type" and not unit_types:
            raise _bad('groupBy: unsupported field "unit_type"')
    if len(set(value)) != len(value):
        raise _bad("groupBy: duplicate field")
    return tuple(value)


def _parse_filters(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad("filters: expected a list of strings")
    key_filter: frozenset[str] | None = None
    for item in value:
        if item.startswith(_KEY_FILTER_PREFIX):
            wanted = frozenset({item.removeprefix(_KEY_FILTER_PREFIX)})
            key_filter = wanted if key_filter is None else key_filter & wanted
    return key_filter


def _parse_usage(raw_body: bytes, key_breakdown: bool, unit_types: bool = True) -> _UsageQuery:
    """Refuse anything the real service would refuse, and what the sandbox cannot serve."""
    try:
        body = json.loads(raw_body or b"null")
    except ValueError as exc:
        raise _bad(f"invalid JSON body: {exc}") from exc
    request = _require_fields(body, _REQUEST_FIELDS, "body")
    analytics = _require_fields(
        request.get("analyticsRequest"), _ANALYTICS_FIELDS, "analyticsRequest"
    )
    start, days = _parse_time_range(analytics.get("timeRange"))
    unit = analytics.get("timeUnit")
    if unit not in _TIME_UNITS:
        raise _bad(f"timeUnit: the sandbox supports TIME_UNIT_DAY and TIME_UNIT_NONE, got {unit!r}")
    if analytics.get("values") != _EXPECTED_VALUES:
        raise _bad('values: expected [{"name": "usd", "aggregation": "AGGREGATION_SUM"}]')
    return _UsageQuery(
        start=start,
        days=days,
        per_day=_TIME_UNITS[unit],
        group_by=_parse_group_by(analytics.get("groupBy"), key_breakdown, unit_types),
        key_filter=_parse_filters(analytics.get("filters")),
    )


# --- routing ------------------------------------------------------------------

_VALIDATION_PATH = "/auth/management-keys/validation"
_TEAM_PATH = re.compile(r"^/v1/billing/teams/(?P<team>[^/]+)/(?P<rest>.+?)/?$")
_TEAM_ENDPOINTS = {
    "usage": ("usage", "POST"),
    "postpaid/invoice/preview": ("invoice", "GET"),
    "postpaid/spending-limits": ("limits", "GET"),
    "prepaid/balance": ("balance", "GET"),
    "invoices": ("invoices", "GET"),
}
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_GUARDED_PREFIXES = ("/v1/billing/", "/auth/")


def _route(method: str, path: str) -> tuple[str, str]:
    """The endpoint name and team id for a path; write calls are refused outright."""
    if path == _VALIDATION_PATH:
        endpoint, allowed, team_id = "validation", "GET", ""
    else:
        match = _TEAM_PATH.match(path)
        known = _TEAM_ENDPOINTS.get(match["rest"]) if match else None
        if match is None or known is None:
            if method in _WRITE_METHODS and path.startswith(_GUARDED_PREFIXES):
                raise _ApiError(405, "Method Not Allowed")
            raise _ApiError(404, "Not Found")
        (endpoint, allowed), team_id = known, match["team"]
    if method != allowed:
        raise _ApiError(405, "Method Not Allowed")
    return endpoint, team_id


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


# --- the sandbox ----------------------------------------------------------------


class _Handler(StandInHandler):
    """Adds what only the xAI stand-in needs: PATCH, and answers cut short on purpose."""

    def _handle(self, method: str) -> None:
        """Note who is asking, for keys limited to IP ranges (one thread per connection)."""
        self.server.stand_in._client.ip = self.client_address[0]  # type: ignore[attr-defined]
        super()._handle(method)

    def do_PATCH(self) -> None:
        """The real API refuses writes with 405, so PATCH must reach the router."""
        self._handle("PATCH")

    def _write_body(self, answer: Answer, data: bytes) -> None:
        """A truncate fault sends half the promised bytes, then hangs up."""
        if not (isinstance(answer, _Answer) and answer.truncate):
            super()._write_body(answer, data)
            return
        self.wfile.write(data[: max(1, len(data) // 2)])
        self.wfile.flush()
        self.close_connection = True


class Sandbox(ApiStandIn[_Key, _Fault]):
    """The xAI Management API on 127.0.0.1, with knobs for faults and test oracles."""

    _label = "sandbox"
    _thread_name = "xai-sandbox"
    _log = log
    _handler = _Handler
    requests: list[RecordedRequest]

    def __init__(
        self,
        *,
        max_range_days: int = 62,
        anchor: date | None = None,
        key_breakdown: bool = True,
        demo: bool = True,
        api_key_count: int = 2,
        max_groups: int | None = None,
        unit_types: bool = True,
        settle_hours: float = 0.0,
        invoice_shape: str = "lines",
        correction_cents: int = 0,
        vat_percent: Decimal | int | str = 0,
        prepaid_cents: int = _PREPAID_CENTS,
        top_up_invoices: bool = False,
        **options: Unpack[StandInOptions],
    ) -> None:
        super().__init__(**options)
        if api_key_count < 1:
            raise ValueError("api_key_count must be 1 or more")
        if settle_hours < 0:
            raise ValueError("settle_hours must be 0 or more")
        if invoice_shape not in INVOICE_SHAPES:
            raise ValueError(f"invoice_shape must be one of {', '.join(INVOICE_SHAPES)}")
        if prepaid_cents < 0 or Decimal(vat_percent) < 0:
            raise ValueError("prepaid_cents and vat_percent must be 0 or more")
        self.settle_hours = settle_hours
        """A finished day's cost keeps growing for this long after it ends (0: it is final
        at midnight); see :meth:`cost` and :meth:`final_cost`."""
        self.invoice_shape = invoice_shape
        self.correction_cents = correction_cents
        """Added to the preview's ``totalWithCorr`` (a credit when negative)."""
        self.vat_percent = Decimal(vat_percent)
        self.prepaid_cents = prepaid_cents
        """The team's prepaid credit: used up once the month's bill passes it."""
        self.top_up_invoices = top_up_invoices
        """Past invoices include a prepaid top-up a month, which is no month's bill."""
        self._past_invoices: dict[tuple[int, int], tuple[str, str | None, bool]] = {}
        self.max_range_days = max_range_days
        self.anchor = anchor
        self.key_breakdown = key_breakdown
        self.unit_types = unit_types
        """Whether usage may be grouped by ``unit_type`` (undocumented: False answers 400)."""
        self.api_key_count = api_key_count
        self.max_groups = max_groups
        """At most this many series per usage answer, then ``limitReached`` (None: no limit)."""
        self._deleted_teams: set[str] = set()
        self._client = threading.local()
        self._open = threading.Event()
        self._open.set()
        if demo:
            self.add_key(DEMO_KEY, DEMO_TEAM_ID, name="xai-usage demo")

    @property
    def demo_credentials(self) -> dict[str, str]:
        """What connects to the demo team (``LocalStandIn``); none without the demo key."""
        with self._lock:
            known = DEMO_KEY in self._keys
        return {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY} if known else {}

    # configuration

    def add_key(
        self,
        key: str,
        team_id: str,
        *,
        name: str = "xai-usage",
        kind: str = "management",
        billing_read: bool = True,
        scope: str = "SCOPE_TEAM",
        allowed_ips: Iterable[str] = (),
    ) -> None:
        """Register a key; adding a known key again replaces it (and un-revokes it).

        ``allowed_ips``: CIDR ranges the key may be used from (none: anywhere);
        requests come from 127.0.0.1, so ``["10.0.0.0/8"]`` makes every call refused.
        """
        if kind not in ("management", "inference"):
            raise ValueError(f"kind must be 'management' or 'inference', not {kind!r}")
        if scope not in ("SCOPE_TEAM", "SCOPE_ORGANIZATION"):
            raise ValueError(f"scope must be SCOPE_TEAM or SCOPE_ORGANIZATION, not {scope!r}")
        if not key or not team_id:
            raise ValueError("key and team_id are required")
        ranges = tuple(ipaddress.ip_network(r, strict=False) for r in allowed_ips)
        self._store_key(key, _Key(key, team_id, name, kind, billing_read, scope, ranges))

    def delete_team(self, team_id: str) -> None:
        with self._lock:
            self._deleted_teams.add(team_id)

    def add_fault(
        self,
        endpoint: str = "any",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str = "status",
        times: int = 1,
        message: str | None = None,
        group_by: Iterable[str] | None = None,
    ) -> None:
        """Make the next ``times`` matching requests misbehave (0: until cleared).

        A ``status`` fault defaults to 429 when ``retry_after`` is given, 503 otherwise.
        Faults apply in the order they were added; one request spends one fault.
        ``group_by`` names one kind of usage request, those grouped by exactly
        these fields in any order (``["description", "api_key_id"]``: the costs
        per key), for a client that sends several kinds at once.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
        grouping = None if group_by is None else _fault_grouping(endpoint, group_by)
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if times < 0:
            raise ValueError("times must be 0 (forever) or more")
        if kind == "status" and status is None:
            status = 429 if retry_after is not None else 503
        self._add_fault(
            _Fault(endpoint, kind, status, retry_after, message, times or None, grouping)
        )

    def hold(self) -> None:
        """API requests wait from now on until :meth:`release` (or the stop): for a test
        that needs several clients' requests in flight at the same moment."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    # oracles

    def cost(
        self, team_id: str, model_label: str, day: date, api_key_id: str | None = None
    ) -> Decimal:
        """Exactly what the server serves for that day now (per the clock), or one key's share."""
        total = _day_cost(team_id, model_label, day, self.now(), self.anchor, self.settle_hours)
        if api_key_id is None:
            return total
        return _key_share(total, _key_ids(team_id, self.api_key_count), api_key_id)

    def final_cost(
        self, team_id: str, model_label: str, day: date, api_key_id: str | None = None
    ) -> Decimal:
        """What the server will serve for that day once it has settled (:meth:`settled_at`)."""
        now = max(self.now(), self.settled_at(day))
        total = _day_cost(team_id, model_label, day, now, self.anchor, self.settle_hours)
        if api_key_id is None:
            return total
        return _key_share(total, _key_ids(team_id, self.api_key_count), api_key_id)

    def settled_at(self, day: date) -> datetime:
        """When ``day``'s served cost stops growing: its end plus ``settle_hours``."""
        return _settled_at(day, self.settle_hours)

    def bill(self, team_id: str) -> Bill:
        """The invoice preview's figures now: the current month to date."""
        now = self.now()
        today = now.date()
        return self._bill(team_id, _month_days(today.year, today.month, today), now)

    def past_bill(self, team_id: str, year: int, month: int) -> Bill:
        """A closed month's invoice, as ``/invoices`` lists it (its corrections: none)."""
        return self._bill(team_id, _month_days(year, month), self.now(), corrections=False)

    def set_invoice(
        self,
        year: int,
        month: int,
        status: str = "PAID",
        *,
        malformed: str | None = None,
        listed: bool = True,
    ) -> None:
        """How a closed month's invoice is listed: its status, or broken (``malformed``:
        "total" not a number, "cycle" missing), or not at all (not issued yet). Every
        month is listed PAID unless set."""
        if status not in INVOICE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(INVOICE_STATUSES)}")
        if malformed is not None and malformed not in MALFORMED_INVOICES:
            raise ValueError(f"malformed must be one of {', '.join(MALFORMED_INVOICES)}")
        with self._lock:
            self._past_invoices[(year, month)] = (status, malformed, listed)

    def unit_cost(self, team_id: str, model_label: str, day: date, unit_type: str) -> Decimal:
        """Exactly what the server serves for one model's kind of usage on that day now."""
        return _unit_share(model_label, self.cost(team_id, model_label, day), unit_type)

    def api_keys(self, team_id: str) -> list[tuple[str, str]]:
        """The team's inference keys, (api_key_id, name), that usage splits across."""
        count = self.api_key_count
        return list(zip(_key_ids(team_id, count), _key_names(count), strict=True))

    # request handling (called from server threads)

    def _respond(
        self, method: str, target: str, headers: Message, raw_body: bytes
    ) -> _Answer | None:
        """The answer to one request, or None to drop the connection unanswered."""
        path, _, query = target.partition("?")
        if path.startswith(_CONTROL_PREFIX):
            return self._control(method, path, raw_body)
        arrived = time.monotonic()
        answer = self._api(method, path, query, headers.get("Authorization"), raw_body)
        self._record_request(method, target, raw_body, answer.status if answer else 0, arrived)
        return answer

    def _unreadable(self, problem: str) -> _Answer:
        return _error_answer(400, problem)

    def _failed(self, method: str, target: str) -> _Answer:
        log.exception("sandbox failed to answer %s %s", method, target.partition("?")[0])
        return _error_answer(500, "internal error")

    def _record_request(
        self, method: str, target: str, raw_body: bytes, status: int, arrived: float
    ) -> None:
        answered = time.monotonic()
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        self._record(RecordedRequest(method, target, body, status, arrived, answered))

    def _api(
        self,
        method: str,
        path: str,
        query: str,
        authorization: str | None,
        raw_body: bytes,
    ) -> _Answer | None:
        if not self._wait_latency():
            return None
        while not self._open.wait(0.05):  # held (see hold())
            if self._stopping.is_set():
                return None
        try:
            endpoint, team_id = _route(method, path)
        except _ApiError as exc:
            return exc.answer()
        fault = self._take_request_fault(endpoint, raw_body)
        if fault is not None and fault.kind == "status":
            return self._fault_answer(fault)
        if fault is not None and fault.kind == "hang" and self._stopping.wait(HANG_SECONDS):
            return None
        answer = self._serve(endpoint, team_id, query, authorization, raw_body)
        if fault is not None and fault.kind == "limit_reached" and answer.status == 200:
            answer.payload["limitReached"] = True
        if fault is not None and fault.kind == "truncate":
            answer.truncate = True
        return answer

    def _take_request_fault(self, endpoint: str, raw_body: bytes) -> _Fault | None:
        """The fault due for this request: one naming a grouping hits only usage requests
        grouped so (the body is read only when such a fault is in the way)."""
        grouping = functools.cache(lambda: _request_grouping(raw_body))
        return self._take_fault(
            endpoint, lambda fault: fault.group_by is None or fault.group_by == grouping()
        )

    @staticmethod
    def _fault_answer(fault: _Fault) -> _Answer:
        status = fault.status or 503
        message = fault.message or _DEFAULT_MESSAGES.get(status, "injected fault")
        headers: tuple[tuple[str, str], ...] = ()
        if fault.retry_after is not None:
            headers = (("Retry-After", f"{fault.retry_after:g}"),)
        return _error_answer(status, message, headers)

    def _serve(
        self,
        endpoint: str,
        team_id: str,
        query: str,
        authorization: str | None,
        raw_body: bytes,
    ) -> _Answer:
        now = self.now()
        try:
            if endpoint == "validation":
                return _Answer(200, self._validation(authorization))
            self._authorize(authorization, team_id)
            if endpoint == "usage":
                usage = _parse_usage(raw_body, self.key_breakdown, self.unit_types)
                return _Answer(200, self._usage(team_id, usage, now))
            if endpoint == "invoice":
                return _Answer(200, self._invoice_preview(team_id, now))
            if endpoint == "limits":
                return _Answer(200, _spending_limits())
            if endpoint == "balance":
                return _Answer(200, {"changes": [], "total": {"val": str(-self.prepaid_cents)}})
            return _Answer(200, self._invoices(team_id, query, now))
        except _ApiError as exc:
            return exc.answer()

    # auth

    def _caller(self, authorization: str | None) -> _Key:
        """The management key behind a request, or the refusal the key itself earns."""
        key, revoked = self._key(_bearer_token(authorization))
        if key is None:
            raise _ApiError(
                401, "management key has been revoked" if revoked else "invalid management key"
            )
        if key.kind != "management":
            raise _ApiError(403, "this endpoint requires a management key")
        if key.allowed_ips:
            client = ipaddress.ip_address(getattr(self._client, "ip", "127.0.0.1"))
            if not any(client in network for network in key.allowed_ips):
                raise _ApiError(
                    403, f"request from IP {client} is not in the key's allowed IP ranges"
                )
        return key

    def _validation(self, authorization: str | None) -> dict[str, Any]:
        key = self._caller(authorization)
        scope_id = key.team_id if key.scope == "SCOPE_TEAM" else _stable_uuid("org", key.team_id)
        created = datetime(2025, 1, 1, 9, tzinfo=UTC) + timedelta(
            days=int(300 * _unit("created", key.key))
        )
        payload: dict[str, Any] = {
            "redactedApiKey": _mask(key.key),
            "teamId": key.team_id,
            "scope": key.scope,
            "scopeId": scope_id,
            "name": key.name,
        }
        if key.billing_read:
            payload["acls"] = [_BILLING_READ_ACL]
        payload["createTime"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        return payload

    def _authorize(self, authorization: str | None, team_id: str) -> None:
        """The order of checks decides which reason a user is told first."""
        key = self._caller(authorization)
        with self._lock:
            deleted = team_id in self._deleted_teams
        if deleted:
            raise _ApiError(404, "team not found")
        if key.team_id != team_id:
            raise _ApiError(403, "team mismatch")
        if not key.billing_read:
            raise _ApiError(403, "missing permission: billing read")

    # payloads

    def _usage(self, team_id: str, query: _UsageQuery, now: datetime) -> dict[str, Any]:
        served = min(query.days, self.max_range_days)
        days = [query.start + timedelta(days=i) for i in range(served)]
        keys = self.api_keys(team_id)
        if query.key_filter is not None:
            keys = [k for k in keys if k[0] in query.key_filter]
        dimensions = {
            "description": [(label, label) for label in MODELS],
            "api_key_id": keys,
            "unit_type": [(unit, unit) for unit in UNIT_TYPES],
        }
        series = []
        for combo in itertools.product(*(dimensions[name] for name in query.group_by)):
            chosen = dict(zip(query.group_by, combo, strict=True))
            one = self._series(team_id, query, chosen, keys, days, now)
            if one is not None:
                series.append(one)
        payload: dict[str, Any] = {}
        cut = self.max_groups is not None and len(series) > self.max_groups
        if cut:
            series = series[: self.max_groups]
        if series:
            payload["timeSeries"] = series
        if query.days > served or cut:
            payload["limitReached"] = True
        return payload

    def _series(
        self,
        team_id: str,
        query: _UsageQuery,
        chosen: dict[str, tuple[str, str]],
        keys: list[tuple[str, str]],
        days: list[date],
        now: datetime,
    ) -> dict[str, Any] | None:
        """One group's dense points; None when it has nothing to show (the service omits it)."""
        labels = [chosen["description"][0]] if "description" in chosen else list(MODELS)
        key_ids: list[str] | None = None
        if "api_key_id" in chosen:
            key_ids = [chosen["api_key_id"][0]]
        elif query.key_filter is not None:
            key_ids = [key_id for key_id, _ in keys]
        unit_type = chosen["unit_type"][0] if "unit_type" in chosen else None
        daily = [self._amount(team_id, labels, key_ids, day, now, unit_type) for day in days]
        if not any(daily):
            return None
        if query.per_day:
            points = list(zip((_day_timestamp(d) for d in days), daily, strict=True))
        else:
            points = [(_day_timestamp(query.start), sum(daily, Decimal(0)))]
        omit_zero = labels == [IMAGE_LABEL] and "description" in chosen
        return {
            "group": [chosen[name][0] for name in query.group_by],
            "groupLabels": [chosen[name][1] for name in query.group_by],
            "dataPoints": [_point(ts, amount, omit_zero) for ts, amount in points],
        }

    def _amount(
        self,
        team_id: str,
        labels: Iterable[str],
        key_ids: list[str] | None,
        day: date,
        now: datetime,
        unit_type: str | None = None,
    ) -> Decimal:
        amount = Decimal(0)
        for label in labels:
            total = _day_cost(team_id, label, day, now, self.anchor, self.settle_hours)
            if unit_type is not None:
                total = _unit_share(label, total, unit_type)
            if key_ids is None:
                amount += total
            else:
                keys = _key_ids(team_id, self.api_key_count)
                amount += sum((_key_share(total, keys, k) for k in key_ids), Decimal(0))
        return amount

    def _bill(
        self, team_id: str, days: list[date], now: datetime, *, corrections: bool = True
    ) -> Bill:
        usage = sum((self._amount(team_id, MODELS, None, day, now) for day in days), Decimal(0))
        lines = self._lines(team_id, days, now)
        lines_usd = Decimal(sum(int(line["amount"]) for line in lines)) / 100
        subtotal = Decimal(_cents(usage)) / 100
        tax = Decimal(_cents(subtotal * self.vat_percent / 100)) / 100
        total = subtotal + tax
        with_corrections = total + (Decimal(self.correction_cents) / 100 if corrections else 0)
        stated = lines_usd if self.invoice_shape == "lines" else with_corrections
        prepaid = Decimal(self.prepaid_cents) / 100
        return Bill(
            usage=usage,
            lines=lines_usd,
            subtotal=subtotal,
            tax=tax,
            total=total,
            total_with_corrections=with_corrections,
            prepaid=prepaid,
            prepaid_used=min(max(stated, Decimal(0)), prepaid),
            stated=stated,
        )

    def _lines(self, team_id: str, days: list[date], now: datetime) -> list[dict[str, Any]]:
        return _invoice_lines(team_id, days, now, self.anchor, self.settle_hours)

    def _invoice_preview(self, team_id: str, now: datetime) -> dict[str, Any]:
        today = now.date()
        days = _month_days(today.year, today.month, today)
        bill = self._bill(team_id, days, now)
        core: dict[str, Any] = {}
        if self.invoice_shape != "totals":
            core["lines"] = self._lines(team_id, days, now)
        if self.invoice_shape != "lines":
            # int64 totals are bare strings, the total with corrections a Cent message;
            # proto3 leaves a zero int64 out (no VAT: no vatCost).
            totals = {
                "amountBeforeVat": _cents(bill.subtotal),
                "vatCost": _cents(bill.tax),
                "amountAfterVat": _cents(bill.total),
            }
            core.update({name: str(cents) for name, cents in totals.items() if cents})
            core["totalWithCorr"] = {"val": str(_cents(bill.total_with_corrections))}
        core["prepaidCredits"] = {"val": str(-self.prepaid_cents)}
        core["prepaidCreditsUsed"] = {"val": str(_cents(bill.prepaid_used))}
        return {
            "coreInvoice": core,
            "effectiveSpendingLimit": str(_SPENDING_LIMIT_CENTS),
            "billingCycle": {"year": today.year, "month": today.month},
        }

    def _invoices(self, team_id: str, query: str, now: datetime) -> dict[str, Any]:
        """Closed months since ``since.year``/``since.month`` (default: the last three)."""
        today = now.date()
        year, month = _previous_month(today.year, today.month)
        since = _parse_since(query, today)
        invoices: list[Any] = []
        for _ in range(_INVOICE_HISTORY_MONTHS):
            if (year, month) < since:
                break
            with self._lock:
                listed = self._past_invoices.get((year, month), ("PAID", None, True))[2]
            if listed:
                invoices.append(self._invoice(team_id, year, month, now))
            if self.top_up_invoices:
                invoices.append(_top_up(team_id, year, month, self.prepaid_cents))
            year, month = _previous_month(year, month)
        return {"invoices": invoices} if invoices else {}

    def _invoice(self, team_id: str, year: int, month: int, now: datetime) -> dict[str, Any]:
        with self._lock:
            status, malformed, _ = self._past_invoices.get((year, month), ("PAID", None, True))
        days = _month_days(year, month)
        bill = self._bill(team_id, days, now, corrections=False)
        issued = days[-1] + timedelta(days=1)
        invoice: dict[str, Any] = {
            "teamId": team_id,
            "invoiceId": _stable_uuid("invoice", team_id, year, month),
            "invoiceNumber": f"INV-{year}{month:02d}-{team_id[:8].upper()}",
            "createTime": _day_timestamp(issued),
            "invoiceStatus": status,
            "lines": self._lines(team_id, days, now),
            "subtotal": str(_cents(bill.subtotal)),
            "tax": str(_cents(bill.tax)),
            "total": str(_cents(bill.total)),
            "monthly": {"billingCycle": {"year": year, "month": month}},
        }
        if not bill.tax:
            del invoice["tax"]  # proto3 leaves a zero int64 out
        if malformed == "total":
            invoice["total"] = invoice["subtotal"] = "twelve dollars"
        elif malformed == "cycle":
            invoice["monthly"] = {}
        return invoice

    # control over HTTP (for a sandbox in another process)

    def _control(self, method: str, path: str, raw_body: bytes) -> _Answer:
        action = (method, path.removeprefix(_CONTROL_PREFIX).rstrip("/"))
        try:
            body = json.loads(raw_body) if raw_body else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return self._control_action(action, body)
        except (ValueError, TypeError) as exc:
            return _error_answer(400, str(exc))

    def _control_action(self, action: tuple[str, str], body: dict[str, Any]) -> _Answer:
        ok = _Answer(200, {"ok": True})
        if action == ("POST", "keys"):
            self.add_key(
                str(body.get("key", "")),
                str(body.get("team_id", "")),
                name=body.get("name", "xai-usage"),
                kind=body.get("kind", "management"),
                billing_read=bool(body.get("billing_read", True)),
                scope=body.get("scope", "SCOPE_TEAM"),
                allowed_ips=body.get("allowed_ips", ()),
            )
            return ok
        if action == ("POST", "revoke"):
            self.revoke_key(str(body.get("key", "")))
            return ok
        if action == ("POST", "delete-team"):
            self.delete_team(str(body.get("team_id", "")))
            return ok
        if action == ("POST", "faults"):
            self.add_fault(**_fault_arguments(body))
            return ok
        if action == ("POST", "invoices"):
            self.set_invoice(
                int(body.get("year", 0)),
                int(body.get("month", 0)),
                str(body.get("status", "PAID")),
                malformed=body.get("malformed"),
                listed=bool(body.get("listed", True)),
            )
            return ok
        if action == ("DELETE", "faults"):
            self.clear_faults()
            return ok
        if action == ("GET", "requests"):
            with self._lock:
                seen = [
                    {"method": r.method, "path": r.path, "status": r.status} for r in self.requests
                ]
            return _Answer(200, {"count": len(seen), "requests": seen})
        return _error_answer(404, "Not Found")


_FAULT_FIELDS = frozenset(
    {"endpoint", "status", "retry_after", "kind", "times", "message", "group_by"}
)


def _fault_grouping(endpoint: str, group_by: Iterable[str]) -> frozenset[str]:
    """The fields a fault's usage request is grouped by, checked as a request's would be."""
    if endpoint != "usage":
        raise ValueError(f"group_by names usage requests only; endpoint is {endpoint!r}")
    fields = None if isinstance(group_by, str) else list(group_by)
    if fields is None or not all(isinstance(name, str) for name in fields):
        raise ValueError('group_by must be a list of field names, e.g. ["description"]')
    for name in fields:
        if name not in _GROUP_FIELDS:
            raise ValueError(
                f"group_by: unknown field {name!r} (one of {', '.join(_GROUP_FIELDS)})"
            )
    if len(set(fields)) != len(fields):
        raise ValueError("group_by: a field is named twice")
    return frozenset(fields)


def _request_grouping(raw_body: bytes) -> frozenset[str] | None:
    """The fields a usage request asks to group by; None when its body cannot say."""
    try:
        body = json.loads(raw_body or b"null")
        group_by = body["analyticsRequest"].get("groupBy", [])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(group_by, list) or not all(isinstance(v, str) for v in group_by):
        return None
    return frozenset(group_by)


def _fault_arguments(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _FAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown fault field {unknown[0]!r}")
    return dict(body)


def _point(timestamp: str, amount: Decimal, omit_zero: bool) -> dict[str, Any]:
    """Proto3 JSON may drop an all-default repeated field: do so for one model."""
    if omit_zero and amount == 0:
        return {"timestamp": timestamp}
    return {"timestamp": timestamp, "values": [amount]}


def _spending_limits() -> dict[str, Any]:
    soft, hard = str(_SPENDING_LIMIT_CENTS), str(_HARD_LIMIT_CENTS)
    return {
        "spendingLimits": {
            "softSl": {"val": soft},
            "effectiveSl": {"val": soft},
            "hardSlAuto": {"val": hard},
            "effectiveHardSl": {"val": hard},
        }
    }


def _invoice_lines(
    team_id: str,
    days: list[date],
    now: datetime,
    anchor: date | None = None,
    settle_hours: float = 0.0,
) -> list[dict[str, Any]]:
    """One line per model and kind of usage, as xAI itemises a bill."""
    if days and now >= _settled_at(days[-1], settle_hours):
        # Settled days no longer move with ``now``: a closed month's lines, asked for by
        # every sync of every test, are worked out once.
        settled = _settled_lines(team_id, tuple(days), anchor or now.date(), settle_hours)
        return [dict(line) for line in settled]
    return _lines_as_of(team_id, days, now, anchor, settle_hours)


@functools.lru_cache(maxsize=256)
def _settled_lines(
    team_id: str, days: tuple[date, ...], anchor: date, settle_hours: float
) -> tuple[dict[str, Any], ...]:
    after = _settled_at(days[-1], settle_hours)
    return tuple(_lines_as_of(team_id, list(days), after, anchor, settle_hours))


def _lines_as_of(
    team_id: str,
    days: list[date],
    now: datetime,
    anchor: date | None,
    settle_hours: float,
) -> list[dict[str, Any]]:
    lines = []
    for label in MODELS:
        daily = [_day_cost(team_id, label, day, now, anchor, settle_hours) for day in days]
        for unit_type, unit_price in _UNIT_PRICES[label].items():
            usd = sum((_unit_share(label, cost, unit_type) for cost in daily), Decimal(0))
            cents = _cents(usd)
            if cents == 0:
                continue
            units = int(usd * 100 * 1_000_000 / unit_price)
            lines.append(
                {
                    "description": label,
                    "unitType": unit_type,
                    "numUnits": str(units),
                    # int64 fields: bare strings in proto3 JSON (only Cent messages have "val")
                    "unitPrice": str(unit_price),
                    "amount": str(cents),
                }
            )
    return lines


def _top_up(team_id: str, year: int, month: int, cents: int) -> dict[str, Any]:
    """A prepaid top-up's invoice: money in advance, not a month's bill."""
    return {
        "teamId": team_id,
        "invoiceId": _stable_uuid("top-up", team_id, year, month),
        "invoiceNumber": f"TOP-{year}{month:02d}-{team_id[:8].upper()}",
        "createTime": _day_timestamp(date(year, month, 2)),
        "invoiceStatus": "PAID",
        "subtotal": str(cents),
        "total": str(cents),
        "prepaid": {},
    }


def _parse_since(query: str, today: date) -> tuple[int, int]:
    params = parse_qs(query)
    if "since.year" not in params and "since.month" not in params:
        year, month = today.year, today.month
        for _ in range(3):
            year, month = _previous_month(year, month)
        return year, month
    try:
        year = int(params["since.year"][0])
        month = int(params.get("since.month", ["1"])[0])
    except (KeyError, ValueError) as exc:
        raise _bad("since: expected since.year and since.month as integers") from exc
    if not 1 <= month <= 12:
        raise _bad("since.month: expected 1 to 12")
    return year, month


def serve_forever(
    host: str, port: int, latency: float, *, ready: Callable[[str], None] | None = None
) -> None:
    """Run a sandbox until Ctrl-C (``xai-usage sandbox``); ``ready`` gets its URL."""
    sandbox = Sandbox(host=host, port=port, latency=latency).start()
    try:
        if ready is not None:
            ready(sandbox.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
