"""The OpenAI provider: an organization's costs from OpenAI's Costs API, with an admin key.

Read-only by design: it calls ``GET /v1/organization/costs`` and
``GET /v1/organization/projects`` and nothing that writes. Amounts are JSON
numbers in dollars, read as exact decimals; ``line_item`` is free text
(``"gpt-4o-2024-08-06, input"``, ``"Image models"``), so the model is the
part before the first comma and a line item without one is kept as it is,
and the rest of it is the kind of usage (see ``openai-anthropic-admin-apis.md``).

**Which organization a key reads.** An admin key belongs to one organization,
but no answer an admin key can read carries the organization's id. Its
projects do: a project belongs to one organization for good, projects cannot
be deleted, and the Default project, made with the organization, cannot be
archived. So the account identity (:attr:`CheckResult.account_id`) is the id
of the organization's oldest project, archived ones included (ties broken by
id): the same for every admin key of the organization, different for any
other organization. Its limits: it costs a walk of the project list at each
key check (100 a page); and a restricted admin key that may read costs but
not projects cannot tell its organization, so the check passes with no
identity and a note saying so (the host cannot then tell two such
connections apart).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from providers import cost_reports
from providers.cost_reports import DailyTotals, Unreadable
from providers.http import HttpProvider
from providers.keys import NOT_ADMIN_KEY, AdminKey
from providers.openai import prices
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
    from providers.openai.sandbox import OpenAIStandIn

DEFAULT_BASE_URL = "https://api.openai.com"
BASE_URL_SETTING = "OPENAI_API_URL"
COSTS_PATH = "/v1/organization/costs"
PROJECTS_PATH = "/v1/organization/projects"
MAX_WINDOW_DAYS = 31
"""Days per fetch: the API pages at up to 180 buckets, but a month is as much as one
failed call should have to repeat."""
PROJECTS_PER_PAGE = 100
SERVICE = "OpenAI"

_KEY_PAGE = "platform.openai.com > Settings > Organization > Admin keys"
# Whatever looks like an OpenAI secret in an echoed message, not only the key sent.
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_*-]{8,}")
ADMIN_KEY = AdminKey(
    service=SERVICE,
    name="admin key",
    called="an OpenAI admin key",
    prefix="sk-admin-",
    min_length=20,
    creator="an Organization Owner",
    key_page=_KEY_PAGE,
    cannot="can call the models but not read the organization's costs",
    # The first prefix that matches names the key.
    other_kinds=(
        ("sk-proj-", "a project API key (sk-proj-…)"),
        ("sk-svcacct-", "a service account key (sk-svcacct-…)"),
        ("sk-ant-", "an Anthropic key (sk-ant-…)"),
        ("sk-", "a user API key (sk-…)"),
    ),
)
ADMIN_KEY_FIELD = ADMIN_KEY.credential_field(
    help=(
        f"An admin key (sk-admin-…) of the organization, from {_KEY_PAGE}: only Organization "
        "Owners can create one. A project key (sk-proj-…) cannot read costs."
    ),
    env_var="OPENAI_ADMIN_KEY",
)


class OpenAIProvider(HttpProvider):
    """OpenAI's organization Costs API as a :class:`providers.types.Provider`."""

    name = "openai"
    display_name = "OpenAI"
    service = SERVICE
    api_name = "OpenAI's API"
    default_base_url = DEFAULT_BASE_URL
    base_url_setting = BASE_URL_SETTING
    credential_fields = (ADMIN_KEY_FIELD,)
    max_window_days = MAX_WINDOW_DAYS
    # No maximum look-back is documented. 90 days is what the host keeps and what the
    # stand-in and the tests prove; a longer reach would be a guess about data that
    # may not be there, and a day fetched empty would read as "no spend".
    max_backfill_days = 90
    # No settlement window is documented; third parties see costs take 24-48 hours to
    # appear, so a day may still change for two days after it ends.
    settle_hours = 48
    caveats = (
        "OpenAI's line items are free text: a model is read from the text before the first "
        "comma, and a line item without one is shown as it comes.",
    )
    key_page = _KEY_PAGE
    no_spend_hint = (
        "the key may be another organization's: an admin key reads only its own "
        "organization, so check it was made in the organization you meant."
    )
    stand_in_setting = BASE_URL_SETTING

    def mask(self, credentials: Credentials) -> str:
        return ADMIN_KEY.mask(credentials)

    def default_label(self, credentials: Credentials) -> str:
        return "Production — OpenAI"

    async def check_credentials(
        self, http: httpx.AsyncClient, credentials: Credentials
    ) -> CheckResult:
        """One day of costs (the key can read them), then the organization it reads."""
        key = ADMIN_KEY.read(credentials)
        today = datetime.now(UTC).date()
        await self.fetch_daily_costs(
            http, credentials, today - timedelta(days=1), today, by_key=False
        )
        account_id, notes = await self._organization(http, key)
        return CheckResult(account_id=account_id, notes=notes)

    async def fetch_daily_costs(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        start: date,
        end: date,
        *,
        by_key: bool = True,
    ) -> CostFetch:
        """Costs per UTC day and model (and API key, where OpenAI answers) for [start, end)."""
        check_window(start, end, MAX_WINDOW_DAYS)
        key = ADMIN_KEY.read(credentials)
        if by_key:
            # Grouping by api_key_id came to the spec at a time nobody recorded: a 400
            # means "not here" (or "not now"), so this window carries on per model and
            # the next sync asks per key again.
            try:
                pages = await self._cost_pages(http, key, start, end, ("line_item", "api_key_id"))
            except ProviderError as error:
                if error.reason != Reason.BAD_REQUEST:
                    raise
            else:
                totals = self._read(pages, start, end, lambda result, _: _key_id(result))
                return CostFetch(rows=totals.cost_rows(), by_key=True)
        pages = await self._cost_pages(http, key, start, end, ("line_item",))
        totals = self._read(pages, start, end, lambda result, _: "")
        return CostFetch(rows=totals.cost_rows(), by_key=False)

    async def fetch_unit_costs(
        self, http: httpx.AsyncClient, credentials: Credentials, start: date, end: date
    ) -> tuple[UnitCostRow, ...] | None:
        """Cost per UTC day, model and kind of usage (``UnitCostProvider``): the same line
        items as the costs, the kind being the part after the comma; None on a 400."""
        check_window(start, end, MAX_WINDOW_DAYS)
        key = ADMIN_KEY.read(credentials)
        try:
            pages = await self._cost_pages(http, key, start, end, ("line_item",))
        except ProviderError as error:
            if error.reason == Reason.BAD_REQUEST:
                return None
            raise
        return self._read(pages, start, end, lambda _, item: unit_type(item)).unit_cost_rows()

    def usage_kind(self, unit_type: str) -> UsageKind | str:
        """Which kind of usage a line item's kind is (``UsageKindProvider``)."""
        return prices.usage_kind(unit_type)

    def list_prices(self) -> PriceTable:
        """OpenAI's list prices from ``prices.toml`` (``PriceListProvider``)."""
        return prices.price_table()

    async def fetch_billing(self, http: httpx.AsyncClient, credentials: Credentials) -> None:
        """OpenAI's billing figures are not read: the costs are the figures."""
        return None

    def stand_in(self, *, host: str, port: int, latency: float = 0.0) -> OpenAIStandIn:
        """The local stand-in for OpenAI's API (``StandInProvider``)."""
        from providers.openai.sandbox import OpenAIStandIn

        return OpenAIStandIn(host=host, port=port, latency=latency)

    # -- plumbing --------------------------------------------------------------

    async def _cost_pages(
        self,
        http: httpx.AsyncClient,
        key: str,
        start: date,
        end: date,
        group_by: Sequence[str],
    ) -> list[Mapping[str, Any]]:
        """Every page of the daily costs of [start, end), grouped by ``group_by``."""
        query = [
            ("start_time", str(_unix(start))),
            ("end_time", str(_unix(end))),
            ("bucket_width", "1d"),
            ("limit", str((end - start).days)),
            *(("group_by", name) for name in group_by),
        ]
        return await self._pages(http, key, COSTS_PATH, query, "next_page", "page")

    async def _organization(self, http: httpx.AsyncClient, key: str) -> tuple[str, tuple[str, ...]]:
        """The organization's identity (its oldest project's id), or "" and why not.

        Only a key that may not list projects, or a service without the list,
        passes without an identity; any other failure fails the check, since a
        connection without one cannot be told from another organization's.
        """
        query = [("limit", str(PROJECTS_PER_PAGE)), ("include_archived", "true")]
        try:
            pages = await self._pages(http, key, PROJECTS_PATH, query, "last_id", "after")
        except ProviderError as error:
            if error.reason != Reason.MISSING_SCOPE:
                raise
            return "", (
                "This admin key may not list the organization's projects, so xai-usage cannot "
                "tell which organization it reads, nor stop the same one being connected "
                "twice. An admin key with read access to projects can.",
            )
        except _Absent:
            return "", (
                f"OpenAI's API at {self.base_url} did not list the organization's projects "
                "(HTTP 404), so xai-usage cannot tell which organization this key reads, nor "
                "stop the same one being connected twice.",
            )
        projects = []
        for page in pages:
            for project in page.get("data") or ():
                if isinstance(project, dict) and isinstance(project.get("id"), str):
                    projects.append((_number(project.get("created_at")), project["id"]))
        if not projects:
            raise self.unreadable("the organization has no projects, not even its Default one")
        return min(projects)[1], ()

    async def _pages(
        self,
        http: httpx.AsyncClient,
        key: str,
        path: str,
        query: list[tuple[str, str]],
        cursor_field: str,
        cursor_param: str,
    ) -> list[Mapping[str, Any]]:
        async def page(cursor: str | None) -> Mapping[str, Any]:
            more = [(cursor_param, cursor)] if cursor else []
            response = await self._get(http, path, key, query + more)
            if response.status_code == 404 and path == PROJECTS_PATH:
                raise _Absent
            if not response.is_success:
                raise self._error(response, key, path)
            return self.json_object(response)

        try:
            return await cost_reports.follow_pages(page, cursor_field)
        except Unreadable as problem:
            raise self.unreadable(str(problem)) from None

    def _read(
        self,
        pages: list[Mapping[str, Any]],
        start: date,
        end: date,
        second: Callable[[Mapping[str, Any], str], str],
    ) -> DailyTotals:
        """Results summed per (day, model, ``second(result, line_item)``) inside [start, end)."""
        totals = DailyTotals()
        try:
            for day, result in cost_reports.results_in_window(pages, start, end, _bucket_day):
                money = result.get("amount")
                money = money if isinstance(money, dict) else {}
                cost_reports.refuse_other_currency(money.get("currency"), day, SERVICE)
                item = str(result.get("line_item") or "").strip()
                totals.add(
                    day,
                    model_id(item),
                    second(result, item),
                    cost_reports.amount(money.get("value")),
                )
        except Unreadable as problem:
            raise self.unreadable(str(problem)) from None
        return totals

    async def _get(
        self, http: httpx.AsyncClient, path: str, key: str, query: list[tuple[str, str]]
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        return await self.send(http, "GET", path, headers=headers, query=query)

    def _error(self, response: httpx.Response, key: str, path: str) -> ProviderError:
        """Map an error status (after retries) to a reason and a message a person can act on."""
        said, code = cost_reports.error_words(response, key, _KEY_LIKE, "code")
        if response.status_code in (401, 403):
            reason = _refusal_reason(response.status_code, said, code)
            return ADMIN_KEY.refused(reason, _REFUSALS[reason] + self.said(said))
        return self.status_error(response, said, path)


class _Absent(Exception):
    """The service has no project list (a proxy, an older API): no identity to read."""


# -- refusals: which case it is, from what OpenAI answered ------------------------

# OpenAI documents 401 for a bad key and 403 for a missing scope or a key that
# is not an admin key (medium confidence), so the case is read from the words,
# most specific first; OpenAI's own words follow the message either way.
_HINTS = (
    (re.compile(r"missing scopes?|api\.usage\.read"), Reason.MISSING_SCOPE),
    (re.compile(r"admin (api )?key|not an admin|organization owner"), NOT_ADMIN_KEY),
    (re.compile(r"scope|permission"), Reason.MISSING_SCOPE),
    (
        re.compile(r"incorrect api key|invalid api key|revoked|deactivated|expired"),
        Reason.INVALID_KEY,
    ),
)
_REFUSALS = {
    NOT_ADMIN_KEY: (
        "OpenAI did not accept this as an admin key. Reading an organization's costs takes an "
        f"admin key (sk-admin-…), which only an Organization Owner can create, in {_KEY_PAGE}; "
        "a project or user API key cannot read them."
    ),
    Reason.INVALID_KEY: (
        "OpenAI rejected the admin key: it was revoked or deleted, or it is not a key OpenAI "
        "knows. Check that you copied the whole key; if it was revoked, an Organization Owner "
        f"can create a new admin key in {_KEY_PAGE}."
    ),
    Reason.MISSING_SCOPE: (
        "This admin key may not read the organization's costs: it is a restricted key without "
        "read access to usage (api.usage.read). An Organization Owner can create an admin key "
        f"with that permission in {_KEY_PAGE}; use that instead."
    ),
}


def _refusal_reason(status: int, said: str, code: str) -> Reason | str:
    """Which refusal a 401 or 403 is: from OpenAI's words and error code, else its status."""
    text = f"{said} {code}".lower()
    reason = next((reason for hint, reason in _HINTS if hint.search(text)), None)
    if reason is None:
        reason = Reason.INVALID_KEY if status == 401 else Reason.MISSING_SCOPE
    return reason


# -- requests and results -----------------------------------------------------


def _unix(day: date) -> int:
    """The UTC midnight that starts ``day``, in Unix seconds."""
    return int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, ArithmeticError):
        return 0


def _bucket_day(bucket: Mapping[str, Any]) -> date:
    """The UTC day a bucket starts, from its Unix-second ``start_time``."""
    value = bucket.get("start_time")
    try:
        return datetime.fromtimestamp(int(value), UTC).date()
    except (TypeError, ValueError, ArithmeticError, OverflowError, OSError):
        raise Unreadable(
            f"a bucket's start_time is not Unix seconds: {str(value)[:40]!r}"
        ) from None


def _key_id(result: Mapping[str, Any]) -> str:
    key_id = result.get("api_key_id")
    return key_id.strip() if isinstance(key_id, str) else ""


def model_id(line_item: str) -> str:
    """The model of a line item: ``"gpt-4o-2024-08-06, input"`` -> ``"gpt-4o-2024-08-06"``.

    A line item with nothing before a comma, or no comma at all (``"Image
    models"``), is kept as it is: new line items are tracked without an
    allow-list, and never dropped.
    """
    head, comma, _ = line_item.partition(",")
    if comma and head.strip():
        return head.strip()
    return line_item.strip() or "unknown"


def unit_type(line_item: str) -> str:
    """The kind of usage of a line item: ``"gpt-4o, cached input"`` -> ``"cached input"``;
    a line item without a comma is its own kind."""
    head, comma, tail = line_item.partition(",")
    if comma and head.strip() and tail.strip():
        return tail.strip()
    return line_item.strip() or "unknown"
