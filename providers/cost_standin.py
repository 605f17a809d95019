"""What the stand-ins for OpenAI's and Anthropic's admin APIs share.

Both services answer an organization's admin key with daily cost buckets cut
into pages, so their stand-ins (``providers/openai/sandbox.py``,
``providers/anthropic/sandbox.py``) share the mechanics, kept here once, on top
of what every API's stand-in has (:class:`providers.standin.ApiStandIn`: keys,
faults, a clock, a record): organizations and the keys that read them (revoked,
of the wrong kind, or without a permission), faults injected on purpose (429
with ``Retry-After``, 5xx), page cursors bound to the query they page (a cursor
sent with another query is refused, as the real services refuse it), strict
query parsing, a record of every request (never its key), and deterministic
synthetic figures, served as of the clock. Each stand-in says how its service
words things: routes, payloads, errors.

Standard library only: a product command must not need test dependencies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import Message
from typing import Any, ClassVar, Unpack
from urllib.parse import parse_qs

from providers.standin import ApiStandIn, StandInOptions

__all__ = [
    "ApiError",
    "CostStandIn",
    "Fault",
    "JsonAnswer",
    "RecordedRequest",
    "StandInKey",
    "day_fraction",
    "unit",
]


def unit(*parts: object) -> Decimal:
    """A stable pseudo-random number in [0, 1): the same inputs, the same figures."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return Decimal(int(digest[:14], 16)) / Decimal(16**14)


def stable_id(*parts: object, length: int = 24) -> str:
    """A stable identifier made of letters and digits, for synthetic ids."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:length]


def day_fraction(now: datetime) -> Decimal:
    """How much of ``now``'s UTC day has passed, exactly, in [0, 1)."""
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    elapsed = now - midnight
    micros = (elapsed.days * 86400 + elapsed.seconds) * 1_000_000 + elapsed.microseconds
    return Decimal(micros) / Decimal(86400 * 1_000_000)


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it. Never holds the key.

    ``target`` is the path with its query string; ``user_agent`` is what the
    client called itself (services ask clients to name themselves).
    """

    method: str
    target: str
    status: int
    user_agent: str = ""
    arrived: float = 0.0
    answered: float = 0.0

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.target.partition("?")[2], keep_blank_values=True)


@dataclass
class StandInKey:
    """A key the stand-in knows: whose it is, what kind, what it may read."""

    key: str
    org_id: str
    kind: str
    """``admin``, or the service's word for another kind (a project key, an API key)."""
    can_read_costs: bool = True
    can_read_org: bool = True
    """May read who the organization is (its projects, its name)."""


@dataclass(eq=False)
class Fault:
    """The next ``remaining`` requests to ``endpoint`` fail with ``status`` (None: forever)."""

    endpoint: str
    status: int
    retry_after: float | None
    message: str | None
    remaining: int | None


@dataclass
class JsonAnswer:
    """An answer: a status, a JSON payload (Decimals written by the stand-in's rule), headers."""

    status: int
    payload: Any
    headers: tuple[tuple[str, str], ...] = ()
    number: Callable[[Decimal], str] = str

    def encode(self) -> bytes:
        return _json_text(self.payload, self.number).encode()


def _json_text(value: Any, number: Callable[[Decimal], str]) -> str:
    """JSON with each Decimal written digit for digit: the standard writer goes through float."""
    if isinstance(value, Decimal):
        return number(value)
    if isinstance(value, bool) or value is None or isinstance(value, int | str | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_json_text(v, number)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_text(v, number) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class ApiError(Exception):
    """An error answer, raised from deep inside a handler; the stand-in words its body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "",
        param: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        """The service's error type or code, where it has one."""
        self.param = param
        self.headers = headers


class Query:
    """A query string read strictly: unknown names and repeated single values refused."""

    def __init__(self, raw: str, allowed: Sequence[str], repeatable: Sequence[str] = ()) -> None:
        try:
            self.values = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw))
        except ValueError:
            raise ApiError(400, "The query string cannot be read.") from None
        for name, values in self.values.items():
            if name not in allowed:
                raise ApiError(400, f"Unknown parameter: '{name}'.", param=name)
            if len(values) > 1 and name not in repeatable:
                raise ApiError(400, f"'{name}' was given {len(values)} times.", param=name)
        self._raw = raw

    def one(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name, ()))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.one(name)
        if text is None:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            raise ApiError(
                400,
                f"Invalid '{name}': expected an integer from {low} to {high}, got '{text}'.",
                param=name,
            )
        return int(text)

    def fingerprint(self, without: str) -> str:
        """What a page cursor is bound to: every parameter but the cursor itself."""
        kept = sorted((k, v) for k, vs in self.values.items() if k != without for v in vs)
        return hashlib.sha256(repr(kept).encode()).hexdigest()[:16]


def encode_cursor(offset: int, fingerprint: str) -> str:
    return "page_" + base64.urlsafe_b64encode(f"{offset}:{fingerprint}".encode()).decode()


def decode_cursor(cursor: str, fingerprint: str, param: str) -> int:
    """The offset a cursor stands for, refused when garbled or from another query."""
    try:
        text = base64.urlsafe_b64decode(cursor.removeprefix("page_").encode()).decode()
        offset, bound = text.split(":")
        position = int(offset)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400, f"Invalid '{param}': not a cursor this API gave.", param=param
        ) from None
    if bound != fingerprint or position < 0:
        raise ApiError(
            400,
            f"Invalid '{param}': the cursor belongs to another query (send the same "
            "parameters with it).",
            param=param,
        )
    return position


class CostStandInOptions(StandInOptions, total=False):
    """What a cost API's stand-in takes besides where it serves (see :class:`CostStandIn`)."""

    page_size: int
    demo: bool


class CostStandIn(ApiStandIn[StandInKey, Fault]):
    """A cost API's stand-in: organizations, keys, faults, pages and a record of requests.

    A subclass routes (``_route``), answers (``_serve``), words its errors
    (``_error_answer``, ``_fault_error``), adds organizations its own way
    (``add_organization``) and the demo one (``_add_demo``, with :attr:`demo_key`);
    requests run through :meth:`_respond` here: latency, the route, a fault if one
    is due, then the answer, and the record.
    """

    ENDPOINTS: ClassVar[tuple[str, ...]]
    """The endpoint names faults can target, besides ``any``."""
    demo_key: ClassVar[str]
    """The demo organization's admin key: what :attr:`demo_credentials` connect with."""
    requests: list[RecordedRequest]

    def __init__(
        self, *, page_size: int = 7, demo: bool = True, **options: Unpack[StandInOptions]
    ) -> None:
        """``page_size``: see :attr:`page_size`; ``demo``: with the demo organization and key."""
        super().__init__(**options)
        if page_size < 1:
            raise ValueError("page_size must be 1 or more")
        self.page_size = page_size
        """The most items one page holds, whatever ``limit`` asks for (a service may
        answer short pages): small, so every client crosses pages."""
        self._organizations: dict[str, Any] = {}
        if demo:
            self._add_demo()

    @property
    def demo_credentials(self) -> dict[str, str]:
        """What connects to the demo organization (``LocalStandIn``); none without its key."""
        return {"admin_key": self.demo_key} if self.demo_key in self._keys else {}

    # configuration

    def add_key(
        self,
        key: str,
        org_id: str,
        *,
        kind: str = "admin",
        can_read_costs: bool = True,
        can_read_org: bool = True,
    ) -> None:
        """Register a key; adding a known key again replaces it (and un-revokes it)."""
        if not key or not org_id:
            raise ValueError("key and org_id are required")
        if org_id not in self._organizations:
            raise ValueError(f"no organization {org_id!r}: add_organization first")
        self._store_key(key, StandInKey(key, org_id, kind, can_read_costs, can_read_org))

    def add_fault(
        self,
        endpoint: str = "any",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        times: int = 1,
        message: str | None = None,
    ) -> None:
        """Make the next ``times`` requests to ``endpoint`` fail (0: until cleared).

        ``status`` defaults to 429 when ``retry_after`` is given, 503 otherwise.
        Faults apply in the order they were added; one request spends one fault.
        """
        if endpoint not in ("any", *self.ENDPOINTS):
            raise ValueError(f"endpoint must be one of any, {', '.join(self.ENDPOINTS)}")
        if status is None:
            status = 429 if retry_after is not None else 503
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status")
        if times < 0:
            raise ValueError("times must be 0 (forever) or more")
        self._add_fault(Fault(endpoint, status, retry_after, message, times or None))

    # what a subclass says

    def _add_demo(self) -> None:
        """Add the demo organization and its key, :attr:`demo_key` (``demo=True``)."""
        raise NotImplementedError

    def _route(self, method: str, path: str) -> str:
        """The endpoint name of a request, or an ApiError (404, 405)."""
        raise NotImplementedError

    def _serve(self, endpoint: str, query: str, headers: Message) -> JsonAnswer:
        """The answer to a request past faults; may raise ApiError."""
        raise NotImplementedError

    def _error_answer(self, error: ApiError) -> JsonAnswer:
        """An error in the service's own shape."""
        raise NotImplementedError

    def _fault_error(self, fault: Fault) -> ApiError:
        """The error an injected fault answers with, in the service's words."""
        raise NotImplementedError

    # shared by subclasses

    def _page(
        self, items: Sequence[Any], query: Query, limit: int, cursor_param: str
    ) -> tuple[list[Any], str | None]:
        """One page of ``items`` and the cursor of the next (None at the end)."""
        fingerprint = query.fingerprint(without=cursor_param)
        cursor = query.one(cursor_param)
        offset = decode_cursor(cursor, fingerprint, cursor_param) if cursor else 0
        size = min(limit, self.page_size)
        page = list(items[offset : offset + size])
        more = offset + size < len(items)
        return page, encode_cursor(offset + size, fingerprint) if more else None

    def _days_page(
        self, query: Query, start: date, end: date, today: date, max_limit: int
    ) -> tuple[list[date], str | None]:
        """One page of the days of [start, end) the cost API has buckets for (none after
        ``today``), at most the query's ``limit`` (1 to ``max_limit``, 7 when not given),
        and the cursor of the next page, sent back as ``page``."""
        limit = query.integer("limit", 7, 1, max_limit)
        return self._page(served_days(start, end, today), query, limit, "page")

    # request handling (called from server threads)

    def _respond(
        self, method: str, target: str, headers: Message, raw_body: bytes
    ) -> JsonAnswer | None:
        arrived = time.monotonic()
        if not self._wait_latency():
            return None
        path, _, query = target.partition("?")
        try:
            endpoint = self._route(method, path)
            fault = self._take_fault(endpoint)
            if fault is not None:
                raise self._fault_error(fault)
            answer = self._serve(endpoint, query, headers)
        except ApiError as error:
            answer = self._error_answer(error)
        self._record(
            RecordedRequest(
                method,
                target,
                answer.status,
                headers.get("User-Agent", ""),
                arrived,
                time.monotonic(),
            )
        )
        return answer

    def _unreadable(self, problem: str) -> JsonAnswer:
        return self._error_answer(ApiError(400, problem))

    def _failed(self, method: str, target: str) -> JsonAnswer:
        self._log.exception("%s failed to answer %s %s", self._label, method, target)
        return self._error_answer(ApiError(500, "internal error", kind="api_error"))


def as_served(full: Decimal, day: date, now: datetime, grid: Decimal) -> Decimal:
    """A day's figure as a cost API serves it at ``now``: nothing for a day to come, the
    part of the day gone by (to ``grid``) for today, all of it for a day that is over."""
    today = now.date()
    if day > today:
        return Decimal(0)
    if day == today:
        return (full * day_fraction(now)).quantize(grid)
    return full


def served_days(start: date, end: date, today: date) -> list[date]:
    """The days of [start, end) a cost API has buckets for: none after today."""
    last = min(end, today + timedelta(days=1))
    return [start + timedelta(days=i) for i in range(max(0, (last - start).days))]
