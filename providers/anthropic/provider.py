"""The Anthropic provider: an organization's costs from Anthropic's Admin API cost report.

Read-only by design: it calls ``GET /v1/organizations/me`` and
``GET /v1/organizations/cost_report`` and nothing that writes. Amounts are
decimal strings in **cents** (``"123.45"`` is $1.2345), divided by 100
exactly. Grouped by ``description``, each result names its ``model`` and
``token_type`` (Anthropic's counterpart of a unit type); a cost with no model
(code execution) is kept under its description (see
``openai-anthropic-admin-apis.md``).

What the cost report cannot give, and this provider therefore never claims:
costs per API key (it groups by workspace and description only, so
:attr:`CostFetch.by_key` is always False), and Priority Tier costs, which
are left out of it: a report must say so (:attr:`AnthropicProvider.caveats`).

**Which organization a key reads.** ``/v1/organizations/me`` answers an Admin
key with its organization's id (a UUID) and name, which are the account
identity and its display name: the same for every Admin key of the
organization, different for any other. A service that does not have the
endpoint (a proxy, an old API) leaves the identity empty, with a note.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import httpx

from providers import cost_reports
from providers.anthropic import prices
from providers.cost_reports import DailyTotals, Unreadable
from providers.http import HttpProvider, json_body
from providers.keys import NOT_ADMIN_KEY, AdminKey
from providers.types import (
    CheckResult,
    CostFetch,
    Credentials,
    PriceTable,
    ProviderError,
    Reason,
    UnitCostRow,
    UsageKind,
    check_window,
)

if TYPE_CHECKING:
    from providers.anthropic.sandbox import AnthropicStandIn

DEFAULT_BASE_URL = "https://api.anthropic.com"
BASE_URL_SETTING = "ANTHROPIC_API_URL"
COST_PATH = "/v1/organizations/cost_report"
ORGANIZATION_PATH = "/v1/organizations/me"
API_VERSION = "2023-06-01"
MAX_WINDOW_DAYS = 31
"""The most daily buckets one page of the cost report may hold."""
SERVICE = "Anthropic"
CENTS = 100

_KEY_PAGE = "the Claude Console > Settings > Admin keys"
_KEY_LIKE = re.compile(r"sk-ant-[A-Za-z0-9_*-]{8,}")
ADMIN_KEY = AdminKey(
    service=SERVICE,
    name="Admin key",
    called="an Anthropic Admin key",
    prefix="sk-ant-admin",
    min_length=24,
    creator="an organization admin",
    key_page=_KEY_PAGE,
    cannot="cannot read the organization's cost report",
    other_kinds=(
        ("sk-ant-api", "a regular API key (sk-ant-api…)"),
        ("sk-ant-", "an Anthropic key that is not an Admin key"),
        ("sk-", "not an Anthropic key (it looks like an OpenAI key)"),
    ),
)
ADMIN_KEY_FIELD = ADMIN_KEY.credential_field(
    help=(
        f"An Admin key (sk-ant-admin…) from {_KEY_PAGE}: only organization admins can create "
        "one. A regular API key (sk-ant-api…) cannot read costs."
    ),
    env_var="ANTHROPIC_ADMIN_KEY",
)


@cache
def user_agent() -> str:
    """How requests name the app, as Anthropic asks of Admin API clients."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("xai-usage")
    except PackageNotFoundError:
        release = "dev"
    return f"xai-usage/{release} (cost reports)"


class AnthropicProvider(HttpProvider):
    """Anthropic's Admin API cost report as a :class:`providers.types.Provider`."""

    name = "anthropic"
    display_name = "Anthropic"
    service = SERVICE
    api_name = "Anthropic's API"
    default_base_url = DEFAULT_BASE_URL
    base_url_setting = BASE_URL_SETTING
    credential_fields = (ADMIN_KEY_FIELD,)
    max_window_days = MAX_WINDOW_DAYS
    # No maximum look-back is documented. 90 days is what the host keeps and what the
    # stand-in and the tests prove; a longer reach would be a guess about data that
    # may not be there, and a day fetched empty would read as "no spend".
    max_backfill_days = 90
    # Anthropic says cost data usually appears within about five minutes. "Usually" is
    # not a bound and late corrections are not documented, so a day is given a few
    # hours to settle, well inside the host's trailing re-sync.
    settle_hours = 6
    caveats = (
        "Anthropic's cost report leaves out Priority Tier costs: an organization on Priority "
        "Tier spends more than these figures show.",
    )
    key_page = _KEY_PAGE
    no_spend_hint = (
        "the key may be another organization's: an Admin key reads only its own "
        "organization, so check it was made in the organization you meant."
    )
    stand_in_setting = BASE_URL_SETTING

    def mask(self, credentials: Credentials) -> str:
        return ADMIN_KEY.mask(credentials)

    def default_label(self, credentials: Credentials) -> str:
        return "Production — Anthropic"

    async def check_credentials(
        self, http: httpx.AsyncClient, credentials: Credentials
    ) -> CheckResult:
        """The organization the key is an Admin key of, then one day of its cost report."""
        key = ADMIN_KEY.read(credentials)
        account_id, account_name, notes = await self._organization(http, key)
        today = datetime.now(UTC).date()
        await self.fetch_daily_costs(http, credentials, today - timedelta(days=1), today)
        return CheckResult(account_id=account_id, account_name=account_name, notes=notes)

    async def fetch_daily_costs(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        start: date,
        end: date,
        *,
        by_key: bool = True,
    ) -> CostFetch:
        """Costs per UTC day and model for [start, end). Never per API key: the cost
        report cannot be grouped by key, whatever ``by_key`` asks."""
        totals = await self._costs(http, credentials, start, end, _model_only)
        return CostFetch(rows=totals.cost_rows(), by_key=False)

    async def fetch_unit_costs(
        self, http: httpx.AsyncClient, credentials: Credentials, start: date, end: date
    ) -> tuple[UnitCostRow, ...] | None:
        """Cost per UTC day, model and ``token_type`` (``UnitCostProvider``): the same
        answer as the costs, read one field further; None on a 400."""
        try:
            totals = await self._costs(http, credentials, start, end, unit_type)
        except ProviderError as error:
            if error.reason == Reason.BAD_REQUEST:
                return None
            raise
        return totals.unit_cost_rows()

    def usage_kind(self, unit_type: str) -> UsageKind | str:
        """Which kind of usage a ``token_type`` (or cost type) is (``UsageKindProvider``)."""
        return prices.usage_kind(unit_type)

    def list_prices(self) -> PriceTable:
        """Anthropic's list prices from ``prices.toml`` (``PriceListProvider``)."""
        return prices.price_table()

    async def fetch_billing(self, http: httpx.AsyncClient, credentials: Credentials) -> None:
        """Anthropic's Admin API has no billing figures beyond the cost report."""
        return None

    def stand_in(self, *, host: str, port: int, latency: float = 0.0) -> AnthropicStandIn:
        """The local stand-in for Anthropic's Admin API (``StandInProvider``)."""
        from providers.anthropic.sandbox import AnthropicStandIn

        return AnthropicStandIn(host=host, port=port, latency=latency)

    # -- plumbing --------------------------------------------------------------

    async def _costs(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        start: date,
        end: date,
        second: Callable[[Mapping[str, Any]], str],
    ) -> DailyTotals:
        """The cost report of [start, end) grouped by description, summed per
        (day, model, ``second(result)``)."""
        check_window(start, end, MAX_WINDOW_DAYS)
        key = ADMIN_KEY.read(credentials)
        query = [
            ("starting_at", _rfc3339(start)),
            ("ending_at", _rfc3339(end)),
            ("bucket_width", "1d"),
            ("group_by[]", "description"),
            ("limit", str((end - start).days)),
        ]

        async def page(cursor: str | None) -> Mapping[str, Any]:
            return await self._get_object(
                http, COST_PATH, key, query + ([("page", cursor)] if cursor else [])
            )

        totals = DailyTotals()
        try:
            pages = await cost_reports.follow_pages(page)
            for day, result in cost_reports.results_in_window(pages, start, end, _bucket_day):
                cost_reports.refuse_other_currency(result.get("currency"), day, SERVICE)
                cost = cost_reports.amount(result.get("amount"), per_dollar=CENTS)
                totals.add(day, model_id(result), second(result), cost)
        except Unreadable as problem:
            raise self.unreadable(str(problem)) from None
        return totals

    async def _organization(
        self, http: httpx.AsyncClient, key: str
    ) -> tuple[str, str, tuple[str, ...]]:
        """(id, name, notes) of the key's organization; an empty id, with a note, where
        the service has no such endpoint."""
        response = await self._get(http, ORGANIZATION_PATH, key, [])
        if response.status_code == 404:
            return (
                "",
                "",
                (
                    "Anthropic's API here does not say which organization this key reads, so "
                    "xai-usage cannot stop the same one being connected twice.",
                ),
            )
        if not response.is_success:
            raise self._error(response, key, ORGANIZATION_PATH)
        info = json_body(response)
        if not isinstance(info, dict) or not isinstance(info.get("id"), str) or not info["id"]:
            raise self.unreadable("the organization has no id")
        return info["id"], str(info.get("name") or ""), ()

    async def _get_object(
        self, http: httpx.AsyncClient, path: str, key: str, query: list[tuple[str, str]]
    ) -> Mapping[str, Any]:
        response = await self._get(http, path, key, query)
        if not response.is_success:
            raise self._error(response, key, path)
        return self.json_object(response)

    async def _get(
        self, http: httpx.AsyncClient, path: str, key: str, query: list[tuple[str, str]]
    ) -> httpx.Response:
        headers = {
            "x-api-key": key,
            "anthropic-version": API_VERSION,
            "User-Agent": user_agent(),
            "Accept": "application/json",
        }
        return await self.send(http, "GET", path, headers=headers, query=query)

    def _error(self, response: httpx.Response, key: str, path: str) -> ProviderError:
        """Map an error status (after retries) to a reason and a message a person can act on."""
        said, kind = cost_reports.error_words(response, key, _KEY_LIKE, "type")
        if response.status_code in (401, 403):
            reason = _refusal_reason(response.status_code, said, kind)
            return ADMIN_KEY.refused(reason, _REFUSALS[reason] + self.said(said))
        return self.status_error(response, said, path)


# -- refusals: which case it is, from what Anthropic answered ---------------------

# Anthropic's error types say "authentication" (401) or "permission" (403); the
# words say more, most specific first, and follow the message either way.
_HINTS = (
    (re.compile(r"admin (api )?key|not an admin|requires an admin"), NOT_ADMIN_KEY),
    (re.compile(r"invalid x-api-key|revoked|disabled|expired|deleted"), Reason.INVALID_KEY),
    (re.compile(r"permission|not allowed|forbidden"), Reason.MISSING_SCOPE),
)
_REFUSALS = {
    NOT_ADMIN_KEY: (
        "Anthropic did not accept this as an Admin key. Reading an organization's cost report "
        f"takes an Admin key (sk-ant-admin…), which only organization admins can create, in "
        f"{_KEY_PAGE}; a regular API key (sk-ant-api…) cannot read it."
    ),
    Reason.INVALID_KEY: (
        "Anthropic rejected the Admin key: it was disabled or deleted, or it is not a key "
        "Anthropic knows. Check that you copied the whole key; if it was disabled, an "
        f"organization admin can create a new Admin key in {_KEY_PAGE}."
    ),
    Reason.MISSING_SCOPE: (
        "Anthropic refused to show this organization's cost report to this key. Ask an "
        f"organization admin for an Admin key that may read it ({_KEY_PAGE}), and use that "
        "instead."
    ),
}


def _refusal_reason(status: int, said: str, kind: str) -> Reason | str:
    """Which refusal a 401 or 403 is: from Anthropic's words, else its error type and status."""
    text = said.lower()
    reason = next((reason for hint, reason in _HINTS if hint.search(text)), None)
    if reason is None:
        authentication = status == 401 or kind == "authentication_error"
        reason = Reason.INVALID_KEY if authentication else Reason.MISSING_SCOPE
    return reason


# -- requests and results -----------------------------------------------------


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _bucket_day(bucket: Mapping[str, Any]) -> date:
    """The UTC day a bucket's RFC 3339 ``starting_at`` falls on."""
    value = bucket.get("starting_at")
    try:
        moment = datetime.fromisoformat(str(value).replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise Unreadable(f"a bucket's starting_at is not RFC 3339: {str(value)[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def model_id(result: Mapping[str, Any]) -> str:
    """A result's model; a cost with no model (code execution) under its description."""
    return _text(result.get("model")) or _text(result.get("description")) or "unknown"


def unit_type(result: Mapping[str, Any]) -> str:
    """A result's kind of usage: its ``token_type``, else its ``cost_type`` (web search,
    code execution), else its description."""
    return (
        _text(result.get("token_type"))
        or _text(result.get("cost_type"))
        or _text(result.get("description"))
        or "unknown"
    )


def _model_only(result: Mapping[str, Any]) -> str:
    return ""
