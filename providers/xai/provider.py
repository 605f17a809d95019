"""The xAI provider: costs and billing from xAI's Management API.

Read-only by design: it only calls the validation, usage, invoice preview,
spending-limit and invoice list endpoints below, never a write endpoint. The shapes follow
xAI's protobuf definitions; proto3 JSON may omit any field at its default, so
every field is read with a default. Error bodies are gRPC-gateway style
(``{"code": 7, "message": "..."}``) but may be anything, HTML included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpx

from providers.http import HttpProvider, json_body, scrubbed
from providers.keys import pasted_key_problem
from providers.types import (
    BillingSnapshot,
    BillSource,
    CheckResult,
    CostFetch,
    CostRow,
    CredentialField,
    Credentials,
    InvoiceLine,
    InvoiceStatus,
    PastInvoice,
    PriceTable,
    ProviderError,
    Reason,
    ResultTruncated,
    UnitCostRow,
    UsageKind,
    check_window,
)
from providers.xai import prices

if TYPE_CHECKING:
    from providers.xai.sandbox import Sandbox

DEFAULT_BASE_URL = "https://management-api.x.ai"
BASE_URL_SETTING = "XAI_MANAGEMENT_API_URL"
EXAMPLE_TEAM_ID = "65c1e471-205f-4566-9c5a-07198bcdf4ce"
MAX_WINDOW_DAYS = 31

_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
# "Chat grok-4-0709" -> "grok-4-0709"; "Web search" and other lines stay as they are.
_MODEL_LABEL = re.compile(
    r"(?:Chat|Image|Embedding|Function|API) ([a-z0-9][a-z0-9.]*(?:[-_:][a-z0-9.]+)+)"
)
# Whatever looks like an xAI secret in an echoed message, not only the key sent.
_KEY_LIKE = re.compile(r"xai-[A-Za-z0-9_-]{12,}")
_KEY_PAGE = "console.x.ai > Settings > Management Keys"
_TEAM_PAGE = "console.x.ai > your team > Settings"


def _validate_team_id(value: str) -> str | None:
    if _UUID.fullmatch(value):
        return None
    return (
        f"That is not a Team ID. A Team ID is a UUID such as {EXAMPLE_TEAM_ID}: "
        f"copy the whole value from {_TEAM_PAGE}."
    )


def _validate_management_key(value: str) -> str | None:
    # Never echo the value: it is a secret even when malformed.
    if not value:
        return (
            f"Paste a Management key. Create one in {_KEY_PAGE} "
            "with only the Billing: Read Only scope."
        )
    return pasted_key_problem(
        value, name="management key", service="xAI", min_length=20, key_page=_KEY_PAGE
    )


TEAM_ID_FIELD = CredentialField(
    name="team_id",
    label="Team ID",
    help=f"A UUID, shown in {_TEAM_PAGE}.",
    placeholder=EXAMPLE_TEAM_ID,
    validate=_validate_team_id,
)
MANAGEMENT_KEY_FIELD = CredentialField(
    name="management_key",
    label="Management key",
    secret=True,
    help=(
        f"Create it in {_KEY_PAGE} with only the Billing: Read Only scope. "
        "A regular API key (for chat completions) will not work."
    ),
    env_var="XAI_MANAGEMENT_KEY",
    env_aliases=("XAI_MANAGEMENT_API_KEY",),
    validate=_validate_management_key,
)


class XaiProvider(HttpProvider):
    """xAI's Management API as a :class:`providers.types.Provider`."""

    name = "xai"
    display_name = "xAI"
    service = "xAI"
    api_name = "xAI's Management API"
    default_base_url = DEFAULT_BASE_URL
    base_url_setting = BASE_URL_SETTING
    credential_fields = (TEAM_ID_FIELD, MANAGEMENT_KEY_FIELD)
    max_window_days = MAX_WINDOW_DAYS
    max_backfill_days = 90  # how long xAI keeps usage
    # A day's usage keeps changing for hours after it ends (late-billed requests).
    settle_hours = 12
    key_page = _KEY_PAGE
    no_spend_hint = (
        "the Team ID may be another team's: a key reads only its own team "
        f"(check the Team ID in {_TEAM_PAGE})."
    )
    stand_in_setting = BASE_URL_SETTING

    def mask(self, credentials: Credentials) -> str:
        key = str(credentials.get("management_key") or "").strip()
        if len(key) < 12:
            return "…"
        dash = key.find("-")
        prefix = key[: dash + 1] if 0 <= dash < 5 else key[:4]
        return f"{prefix}…{key[-4:]}"

    def default_label(self, credentials: Credentials) -> str:
        return "Production — xAI"

    async def check_credentials(
        self, http: httpx.AsyncClient, credentials: Credentials
    ) -> CheckResult:
        """Validate the fields, ask xAI about the key, then run a one-day usage query."""
        team_id, key = _read_credentials(credentials)
        notes: list[str] = []
        key_name = ""
        response = await self._call(http, "GET", "/auth/management-keys/validation", key)
        if response.status_code == 404:
            notes.append("xAI's key validation endpoint is unavailable; checked usage only.")
        elif not response.is_success:
            raise self._error(response, team_id, key, validating=True)
        else:
            info = _json_object(response, self.base_url)
            key_name = str(info.get("name") or "")
            key_team = _key_team(info)
            if key_team and key_team.lower() != team_id.lower():
                raise ProviderError(
                    Reason.TEAM_MISMATCH,
                    f"This management key belongs to team {key_team}, not {team_id}. Use the "
                    f"Team ID of the key's team ({_TEAM_PAGE}), or create a key in team "
                    f"{team_id}.",
                    field="team_id",
                )

        today = datetime.now(UTC).date()
        # A cut-off answer still proves the key can read usage: not a credential problem.
        with contextlib.suppress(ResultTruncated):
            await self.fetch_daily_costs(
                http, credentials, today - timedelta(days=1), today, by_key=False
            )
        # The Team ID is the account: the check proved the key reads that team.
        return CheckResult(key_name=key_name, notes=tuple(notes), account_id=team_id)

    async def fetch_daily_costs(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        start: date,
        end: date,
        *,
        by_key: bool = True,
    ) -> CostFetch:
        """Costs per UTC day and model (and API key, if xAI allows) for [start, end)."""
        check_window(start, end, MAX_WINDOW_DAYS, what="usage")
        team_id, key = _read_credentials(credentials)
        path = f"/v1/billing/teams/{team_id}/usage"
        if by_key:
            body = _usage_body(start, end, ["description", "api_key_id"])
            response = await self._call(http, "POST", path, key, body)
            # Grouping by api_key_id is undocumented, so a 400 may mean "not here" or
            # "not now"; and keys multiply the series, so a team with many keys can be
            # cut off (limitReached) where one series per model is not. Either way this
            # window carries on per model; the caller asks per key again next time.
            if response.status_code != 400:
                if not response.is_success:
                    raise self._error(response, team_id, key)
                with contextlib.suppress(ResultTruncated):
                    rows = _parse_usage(response, start, end, self.base_url)
                    return CostFetch(rows=rows, by_key=True)
        response = await self._call(
            http, "POST", path, key, _usage_body(start, end, ["description"])
        )
        if not response.is_success:
            raise self._error(response, team_id, key)
        return CostFetch(rows=_parse_usage(response, start, end, self.base_url), by_key=False)

    async def fetch_unit_costs(
        self, http: httpx.AsyncClient, credentials: Credentials, start: date, end: date
    ) -> tuple[UnitCostRow, ...] | None:
        """Cost per UTC day, model and kind of usage for [start, end); None if xAI won't say.

        Grouping by ``unit_type`` is undocumented (best effort, like
        ``api_key_id``): a 400 or a cut-off answer means "not available here",
        never a failed sync.
        """
        check_window(start, end, MAX_WINDOW_DAYS, what="usage")
        team_id, key = _read_credentials(credentials)
        body = _usage_body(start, end, ["description", "unit_type"])
        response = await self._call(http, "POST", f"/v1/billing/teams/{team_id}/usage", key, body)
        if response.status_code == 400:
            return None
        if not response.is_success:
            raise self._error(response, team_id, key)
        try:
            return _parse_unit_costs(response, start, end, self.base_url)
        except ResultTruncated:
            return None

    def usage_kind(self, unit_type: str) -> UsageKind | str:
        """Which kind of usage one of xAI's unit types is (``UsageKindProvider``)."""
        return prices.usage_kind(unit_type)

    def list_prices(self) -> PriceTable:
        """xAI's list prices from ``prices.toml`` (``PriceListProvider``); a malformed
        file raises :class:`prices.PriceFileError`, a ``ValueError`` saying where."""
        return prices.price_table()

    def stand_in(self, *, host: str, port: int, latency: float = 0.0) -> Sandbox:
        """The local stand-in for the Management API (``StandInProvider``)."""
        from providers.xai.sandbox import Sandbox

        return Sandbox(host=host, port=port, latency=latency)

    async def fetch_billing(
        self, http: httpx.AsyncClient, credentials: Credentials
    ) -> BillingSnapshot:
        """Month to date, prepaid credit left and spending limit; None where unavailable."""
        team_id, key = _read_credentials(credentials)
        base = f"/v1/billing/teams/{team_id}/postpaid"
        results = await asyncio.gather(
            self._optional_get(http, f"{base}/invoice/preview", team_id, key),
            self._optional_get(http, f"{base}/spending-limits", team_id, key),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        invoice, limits = results
        return _billing_snapshot(invoice, limits)

    async def fetch_invoices(
        self, http: httpx.AsyncClient, credentials: Credentials, since: date
    ) -> tuple[PastInvoice, ...] | None:
        """The monthly invoices from ``since``'s month on (``InvoiceHistoryProvider``);
        None when this key or team may not see them."""
        team_id, key = _read_credentials(credentials)
        path = f"/v1/billing/teams/{team_id}/invoices"
        query = f"since.year={since.year}&since.month={since.month}"
        response = await self._call(http, "GET", f"{path}?{query}", key)
        if response.status_code in (403, 404):
            return None
        if not response.is_success:
            raise self._error(response, team_id, key)
        return _past_invoices(_invoice_entries(response, self.base_url))

    # -- plumbing --------------------------------------------------------------

    async def _call(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        key: str,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return await self.send(http, method, path, headers=headers, json=body)

    async def _optional_get(
        self, http: httpx.AsyncClient, path: str, team_id: str, key: str
    ) -> dict[str, Any] | None:
        """A billing endpoint's JSON, or None if this key or team may not see it."""
        response = await self._call(http, "GET", path, key)
        if response.status_code in (403, 404):
            return None
        if not response.is_success:
            raise self._error(response, team_id, key)
        return _json_object(response, self.base_url)

    def _error(
        self, response: httpx.Response, team_id: str, key: str, *, validating: bool = False
    ) -> ProviderError:
        """Map an error status (after retries) to a reason and a message a person can act on.

        ``validating``: the answer came from the key validation endpoint, where a
        refusal says something about the key itself rather than the team.
        """
        status = response.status_code
        code, said = _error_details(response, key)
        said_suffix = self.said(said)
        if status in (401, 403, 404):
            reason, guessed = _refusal_reason(status, code, said, validating)
            return _refusal(reason, team_id, said_suffix, guessed=guessed)
        if status == 429:
            return self.rate_limited(response)
        if status >= 500:
            # server_failed's words but for a 529, which xAI's have never called overloaded.
            return ProviderError(
                Reason.SERVER_ERROR,
                f"xAI's Management API kept failing (HTTP {status}) after retries. This is "
                f"usually temporary: try again in a few minutes.{said_suffix}",
            )
        if status == 400:
            return self.bad_request(said)
        return ProviderError(
            Reason.BAD_RESPONSE,
            f"xAI's Management API at {self.base_url} answered with unexpected HTTP "
            f"{status}.{said_suffix}",
        )


# -- refusals: which case it is, from what xAI answered --------------------------

# xAI documents no error catalogue, so the case is read from the status, the
# gRPC code and the words of the message, most specific first; the message is
# passed on either way, so a case this misreads still shows xAI's own words.
_IP_HINT = re.compile(
    r"\bip\b|ip address|ip range|cidr|allow ?list|whitelist|source address|client address"
)
_INFERENCE_HINT = re.compile(
    r"inference|requires? a management key|not a management key|regular api key"
    r"|management key required"
)
_MISMATCH_HINT = re.compile(
    r"mismatch|(another|other|different|wrong) team|does(n't| not) belong"
    r"|not (valid|allowed|authori[sz]ed) for (this|the) team|not a member"
)
_TEAM_GONE_HINT = re.compile(r"team.*(deleted|removed|no longer)|(deleted|removed).*team")
_KEY_GONE_HINT = re.compile(r"revoked|expired|disabled|key.*not found|unknown.*key|invalid.*key")
_SCOPE_HINT = re.compile(r"permission|scope|\bacls?\b|billing[ :_.-]*read|admin")
# What a refusal's message says, first match wins: the order is the precedence.
_HINTS = (
    (_IP_HINT, Reason.IP_NOT_ALLOWED),
    (_INFERENCE_HINT, Reason.INFERENCE_KEY),
    (_MISMATCH_HINT, Reason.TEAM_MISMATCH),
    (_TEAM_GONE_HINT, Reason.TEAM_DELETED),
    (_KEY_GONE_HINT, Reason.INVALID_KEY),
    (_SCOPE_HINT, Reason.MISSING_SCOPE),
)


def _refusal_reason(
    status: int, code: int | None, said: str, validating: bool
) -> tuple[Reason, bool]:
    """The case behind a 401, 403 or 404, and whether it is a guess (the message said nothing)."""
    text = said.lower()
    for hint, reason in _HINTS:
        if hint.search(text):
            return reason, False
    if status == 403 and code == 7 and "team" in text:  # PERMISSION_DENIED about the team
        return Reason.TEAM_MISMATCH, False
    if status == 401:
        return Reason.INVALID_KEY, True
    if status == 404:
        return Reason.TEAM_NOT_FOUND, True
    # A bare 403: at the key check it is most often a regular API key; on a
    # team's billing, a key that may not read billing.
    return (Reason.INFERENCE_KEY if validating else Reason.MISSING_SCOPE), True


def _refusal(reason: Reason, team_id: str, said: str, *, guessed: bool) -> ProviderError:
    """The message for each refusal, in the words of the xAI Console, with xAI's own after."""
    ip_too = (
        " If it is a Management key, check that it is not limited to other IP ranges."
        if guessed
        else ""
    )
    messages = {
        Reason.INFERENCE_KEY: (
            "xAI did not accept this as a management key. It looks like a regular API key "
            "(the kind used for chat completions), which cannot read billing. Create a "
            f"Management key in {_KEY_PAGE} with only the Billing: Read Only scope, and "
            f"paste that instead.{ip_too}",
            "management_key",
        ),
        Reason.INVALID_KEY: (
            "xAI rejected the management key: it was revoked or deleted, or it is not a "
            f"key xAI knows. Check that it is a Management API key ({_KEY_PAGE}), not a regular "
            "API key used for chat completions; if it was revoked, create a new one with "
            f"only Billing: Read Only and use that instead.{ip_too}",
            "management_key",
        ),
        Reason.IP_NOT_ALLOWED: (
            "xAI refused this management key from this machine's IP address: the key is "
            "limited to other IP ranges. Add this machine's public address to the key's "
            f"allowed IP ranges in {_KEY_PAGE}, or create a key without that restriction.",
            "management_key",
        ),
        Reason.MISSING_SCOPE: (
            f"xAI refused to show team {team_id}'s billing to this key. It needs the "
            "Billing: Read Only scope, and only Team Admins can create Management keys and "
            "read billing. Ask a Team Admin to create a new key with that scope in "
            f"{_KEY_PAGE}, and use that instead.{ip_too}",
            "management_key",
        ),
        Reason.TEAM_MISMATCH: (
            f"This management key does not belong to team {team_id}. Use the Team ID of the "
            f"team the key was created in ({_TEAM_PAGE}), or create a key in that team.",
            "team_id",
        ),
        Reason.TEAM_DELETED: (
            f"xAI says team {team_id} was deleted, or you were removed from it. Check your "
            "team membership in the xAI Console, then connect a team you belong to.",
            "team_id",
        ),
        Reason.TEAM_NOT_FOUND: (
            f"xAI found no team {team_id} for this key. Either the Team ID is wrong (copy "
            f"the full UUID from {_TEAM_PAGE}), or the key belongs to another team, or the "
            "team was deleted or you were removed from it: check your membership in the "
            "xAI Console.",
            "team_id",
        ),
    }
    message, field = messages[reason]
    return ProviderError(reason, message + said, field=field)


# -- requests and responses ----------------------------------------------------


def _read_credentials(credentials: Credentials) -> tuple[str, str]:
    """The stripped (team_id, key), validated before they go near a URL or a header."""
    team_id = str(credentials.get("team_id") or "").strip()
    key = str(credentials.get("management_key") or "").strip()
    if problem := _validate_team_id(team_id):
        raise ProviderError(Reason.TEAM_ID_MALFORMED, problem, field="team_id")
    if problem := _validate_management_key(key):
        raise ProviderError(Reason.INVALID_KEY, problem, field="management_key")
    return team_id, key


def _usage_body(start: date, end: date, group_by: Sequence[str]) -> dict[str, Any]:
    return {
        "analyticsRequest": {
            "timeRange": {
                "startTime": f"{start.isoformat()} 00:00:00",
                "endTime": f"{end.isoformat()} 00:00:00",
                "timezone": "Etc/GMT",  # UTC days, as on invoices
            },
            "timeUnit": "TIME_UNIT_DAY",
            "values": [{"name": "usd", "aggregation": "AGGREGATION_SUM"}],
            "groupBy": list(group_by),
            "filters": [],
        }
    }


def _json_object(response: httpx.Response, base_url: str) -> dict[str, Any]:
    """The body as a JSON object, numbers as Decimal; BAD_RESPONSE if it is not one."""
    payload = json_body(response)
    if not isinstance(payload, dict):
        raise ProviderError(
            Reason.BAD_RESPONSE,
            f"xAI's Management API at {base_url} sent an answer that is not a JSON object "
            f"(HTTP {response.status_code}). If XAI_MANAGEMENT_API_URL points to a proxy, "
            "check it; otherwise try again later.",
        )
    return payload


def _parse_usage(
    response: httpx.Response, start: date, end: date, base_url: str
) -> tuple[CostRow, ...]:
    """Usage series -> rows per (day, model, api key), summed, zero days and strays dropped."""
    return tuple(
        CostRow(day=day, model=model, cost_usd=cost, api_key_id=key_id, api_key_label=label)
        for (day, model, key_id), (cost, label) in _sum_series(response, start, end, base_url)
    )


def _parse_unit_costs(
    response: httpx.Response, start: date, end: date, base_url: str
) -> tuple[UnitCostRow, ...]:
    """Usage series grouped by description and unit_type -> rows per (day, model, kind)."""
    return tuple(
        UnitCostRow(day=day, model=model, unit_type=label, cost_usd=cost)
        for (day, model, _), (cost, label) in _sum_series(response, start, end, base_url)
    )


def _sum_series(
    response: httpx.Response, start: date, end: date, base_url: str
) -> list[tuple[tuple[date, str, str], tuple[Decimal, str]]]:
    """Series grouped by (description, second field) summed per (day, model, raw second
    value), with the second value's readable label; sorted, zero days and strays dropped.

    Every data point of every answer passes here (tens of thousands a daily sync), so
    each point's day is read once per distinct timestamp."""
    payload = _json_object(response, base_url)
    if payload.get("limitReached"):
        raise ResultTruncated()
    totals: dict[tuple[date, str, str], tuple[Decimal, str]] = {}
    days: dict[str, date] = {}
    for series in _list(payload.get("timeSeries")):
        group = [str(value) for value in _list(series.get("group"))]
        labels = [str(value) for value in _list(series.get("groupLabels"))]
        # Index 0 is the description, index 1 the second grouping (groupBy order).
        model = model_id(_at(labels, 0) or _at(group, 0) or "unknown")
        second = _at(group, 1)
        second_label = _at(labels, 1) or second
        for point in _list(series.get("dataPoints")):
            values = point.get("values")
            value = values[0] if type(values) is list and values else ""
            cost = _usd(value, base_url)
            stamp = point.get("timestamp")
            day = days.get(stamp) if type(stamp) is str else None
            if day is None:
                day = _utc_day(stamp, base_url)
                if type(stamp) is str:
                    days[stamp] = day
            if not cost or not start <= day < end:
                continue
            slot = (day, model, second)
            found = totals.get(slot)
            if found is None:
                totals[slot] = (_ZERO + cost, second_label)
            else:
                totals[slot] = (found[0] + cost, found[1])
    return sorted(totals.items())


_ZERO = Decimal(0)


@lru_cache(maxsize=4096)
def model_id(label: str) -> str:
    """The model id in a usage label: ``Chat grok-4-0709`` -> ``grok-4-0709``.

    Labels that do not look like a prefixed model id are kept as they come, so
    new models and non-model lines are tracked without an allow-list.
    """
    match = _MODEL_LABEL.fullmatch(label)
    return match.group(1) if match else label


def _billing_snapshot(
    invoice: dict[str, Any] | None, limits: dict[str, Any] | None
) -> BillingSnapshot:
    figures: dict[str, Any] = {}
    if invoice is not None:
        core = _dict(invoice.get("coreInvoice"))
        figures = _invoice_figures(core)
        figures["lines"] = _invoice_lines(core)
        figures["spending_limit_usd"] = _cents(invoice.get("effectiveSpendingLimit"))
        figures["billing_cycle"] = _billing_cycle(_dict(invoice.get("billingCycle")))
    if limits is not None:
        effective = _cents(_dict(limits.get("spendingLimits")).get("effectiveSl"))
        if effective is not None:
            figures["spending_limit_usd"] = effective
    return BillingSnapshot(as_of=datetime.now(UTC), **figures)


def _invoice_figures(core: dict[str, Any]) -> dict[str, Any]:
    """The bill so far, its tax and the prepaid credit used, from one source.

    The invoice's own totals when it states any (``totalWithCorr`` a Cent
    message, the others bare int64 strings); its lines added up only when it
    states none, as lines rounded to the cent need not add up to the total and
    can be missing while the totals are not. A total that is not a number
    counts as not stated. Proto3 leaves out an int64 at zero, so a missing
    ``vatCost`` beside the amounts before and after VAT is no tax.
    """
    with_corrections = _cents(core.get("totalWithCorr"))
    before = _cents(core.get("amountBeforeVat"))
    if before is None:
        before = _cents(core.get("subtotal"))
    after = _cents(core.get("amountAfterVat"))
    tax = _cents(core.get("vatCost"))
    if tax is None and before is not None and after is not None:
        tax = after - before
    if after is None and before is not None:
        after = before + (tax or Decimal(0))
    bill, source = with_corrections if with_corrections is not None else after, BillSource.TOTALS
    if bill is None:
        source = BillSource.LINES
        bill = sum(
            (_cents(_dict(line).get("amount")) or Decimal(0) for line in _list(core.get("lines"))),
            Decimal(0),
        )
    # The used figure has been seen both negative and positive; proto3 leaves out a
    # Cent message never set, so no figure means none used.
    prepaid = _cents(core.get("prepaidCredits"))
    prepaid = abs(prepaid) if prepaid is not None else None
    used = abs(_cents(core.get("prepaidCreditsUsed")) or Decimal(0))
    return {
        "month_to_date_usd": bill,
        "bill_source": source,
        "subtotal_usd": before,
        "tax_usd": tax,
        "total_usd": after,
        "total_with_corrections_usd": with_corrections,
        "prepaid_total_usd": prepaid,
        "prepaid_used_usd": used,
        "prepaid_credit_usd": max(Decimal(0), prepaid - used) if prepaid is not None else None,
        # Prepaid credit pays first; the spending limit applies to the rest.
        "invoiced_usd": max(Decimal(0), bill - used),
    }


# -- past invoices: the list's envelope is not documented, so it is read defensively --

_INVOICE_STATUSES: dict[object, InvoiceStatus] = {
    "PENDING": InvoiceStatus.PENDING,
    "PAID": InvoiceStatus.PAID,
    "WILL_NEVER_BE_CHARGED": InvoiceStatus.WILL_NEVER_BE_CHARGED,
    "FAILED": InvoiceStatus.FAILED,
}
# proto3 JSON may write an enum as its number (billing.proto's InvoiceBundle.Status).
_INVOICE_STATUSES.update(dict(enumerate(list(_INVOICE_STATUSES.values()), start=1)))
# When xAI lists a month twice (a voided invoice and its reissue, say), the one that
# stands: the charged one, then the one still to be charged.
_STANDING = (
    InvoiceStatus.PAID,
    InvoiceStatus.PENDING,
    InvoiceStatus.FAILED,
    InvoiceStatus.WILL_NEVER_BE_CHARGED,
    InvoiceStatus.UNREADABLE,
)
# InvoiceBundle's other flavours: prepaid top-ups and subscriptions are no month's bill.
_NOT_A_MONTH = ("prepaid", "subscriptions")


def _invoice_entries(response: httpx.Response, base_url: str) -> list[Any]:
    """The entries of an invoice list: ``{"invoices": [...]}`` (ListInvoicesResp), or a
    bare list; an empty object is no invoices (proto3). Any other shape is refused
    by name rather than searched for something that looks like invoices."""
    payload = json_body(response)
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        entries = payload.get("invoices", [])
        if isinstance(entries, list) and (entries or not payload.keys() - {"invoices"}):
            return entries
        if not isinstance(entries, list):
            what = f'its "invoices" is not a list ({type(entries).__name__})'
        else:
            what = f"it has no invoices field, only {', '.join(sorted(payload))[:120]}"
    else:
        what = "it is not JSON"
    raise ProviderError(
        Reason.BAD_RESPONSE,
        f"xAI's Management API at {base_url} sent an invoice list this app cannot read: "
        f"{what}. The past invoices are left out until it can.",
    )


def _past_invoices(entries: list[Any]) -> tuple[PastInvoice, ...]:
    """One invoice per month, in the order listed; unreadable ones kept, said so."""
    found: list[PastInvoice] = []
    by_month: dict[date, int] = {}
    for entry in entries:
        invoice = _past_invoice(entry)
        if invoice is None:
            continue
        if invoice.month is None or invoice.month not in by_month:
            if invoice.month is not None:
                by_month[invoice.month] = len(found)
            found.append(invoice)
            continue
        index = by_month[invoice.month]
        if _STANDING.index(invoice.status) < _STANDING.index(found[index].status):
            found[index] = invoice
    return tuple(found)


def _past_invoice(entry: Any) -> PastInvoice | None:
    """One InvoiceBundle; None when it is no month's bill (a prepaid top-up)."""
    if not isinstance(entry, dict):
        return PastInvoice(
            None,
            InvoiceStatus.UNREADABLE,
            problem=f"xAI listed an invoice that is not an object ({str(entry)[:40]!r}).",
        )
    if "monthly" not in entry and any(flavour in entry for flavour in _NOT_A_MONTH):
        return None
    number = str(entry.get("invoiceNumber") or entry.get("invoiceId") or "")
    cycle = _dict(_dict(entry.get("monthly")).get("billingCycle")) or _dict(
        entry.get("billingCycle")
    )
    month = _billing_cycle(cycle)
    problems = [] if month is not None else ["it names no billing month"]
    raw_status = entry.get("invoiceStatus")
    status = _INVOICE_STATUSES.get(raw_status) if isinstance(raw_status, str | Decimal) else None
    if status is None:
        problems.append(
            f"its status {str(raw_status)[:40]!r} is not one this app knows"
            if raw_status is not None
            else "it states no status"
        )
    amounts: dict[str, Decimal | None] = {}
    for name in ("subtotal", "tax", "total"):
        raw = entry.get(name)
        amount = _cents(raw)
        # Whole cents (int64): "1234.56" may be dollars or cents, so it is neither.
        amounts[name] = amount if amount is None or amount == round(amount, 2) else None
        if raw is not None and amounts[name] is None:
            problems.append(f"its {name} is not an amount in cents ({str(raw)[:40]!r})")
    subtotal, tax, total = amounts["subtotal"], amounts["tax"], amounts["total"]
    # proto3 leaves out an int64 at zero: a missing amount is $0 where the others agree.
    if not problems:
        listed = sum(
            (_cents(_dict(line).get("amount")) or Decimal(0) for line in _list(entry.get("lines"))),
            Decimal(0),
        )
        if total is None and subtotal is None and listed:
            problems.append(f"it states no total, though its lines add up to ${listed:,.2f}")
        tax = tax if tax is not None else Decimal(0)
        subtotal = subtotal if subtotal is not None else (total or Decimal(0)) - tax
        total = total if total is not None else subtotal + tax
    if problems:
        listed_as = f"invoice {number}" if number else "an invoice"
        return PastInvoice(
            month,
            InvoiceStatus.UNREADABLE,
            number=number,
            problem=f"xAI listed {listed_as} this app cannot read: {'; '.join(problems)}. "
            "Its figures are left out; see it in the xAI Console.",
        )
    return PastInvoice(
        month,
        status,  # type: ignore[arg-type]  # no problems: it was read
        total_usd=total,
        subtotal_usd=subtotal,
        tax_usd=tax,
        lines=_invoice_lines(entry),
        number=number,
    )


def _invoice_lines(core: dict[str, Any]) -> tuple[InvoiceLine, ...]:
    """The invoice's lines with a unit type and a unit count (token counts), summed per
    (model, unit type); lines without them (credits, adjustments) are left out."""
    totals: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for raw in _list(core.get("lines")):
        line = _dict(raw)
        unit_type = str(line.get("unitType") or "").strip()
        try:
            units = int(Decimal(str(line.get("numUnits") or "0")))
        except (InvalidOperation, ValueError):
            continue
        if not unit_type or units <= 0:
            continue
        model = model_id(str(line.get("description") or "unknown"))
        count, amount = totals.get((model, unit_type), (0, Decimal(0)))
        totals[(model, unit_type)] = (
            count + units,
            amount + (_cents(line.get("amount")) or Decimal(0)),
        )
    return tuple(
        InvoiceLine(model=model, unit_type=unit_type, num_units=units, amount_usd=amount)
        for (model, unit_type), (units, amount) in sorted(totals.items())
    )


def _billing_cycle(cycle: dict[str, Any]) -> date | None:
    """``{year, month}`` as the month's first day; None when missing or malformed."""
    try:
        return date(int(cycle["year"]), int(cycle["month"]), 1)
    except (KeyError, TypeError, ValueError):
        return None


def _key_team(info: dict[str, Any]) -> str:
    """The team a key belongs to, per the validation endpoint ("" if org-wide or unknown)."""
    scope = info.get("scope")
    if scope == "SCOPE_TEAM":
        return str(info.get("scopeId") or info.get("teamId") or "")
    if not scope:  # proto3 omits a default enum; the deprecated teamId may still be there
        return str(info.get("teamId") or "")
    return ""


def _error_details(response: httpx.Response, key: str) -> tuple[int | None, str]:
    """(gRPC code, message) from an error body of any shape, with the key scrubbed."""
    try:
        payload = json.loads(response.content)
    except ValueError:  # HTML from a proxy, an empty body...
        return None, ""
    if not isinstance(payload, dict):
        return None, ""
    code = payload.get("code")
    message = scrubbed(payload.get("message") or payload.get("error") or "", key, _KEY_LIKE)
    return (code if isinstance(code, int) else None), message


# -- small readers for proto3 JSON --------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _at(items: Sequence[Any], index: int) -> Any:
    return items[index] if index < len(items) else ""


def _usd(value: Any, base_url: str) -> Decimal:
    """A usage value in dollars; missing means zero."""
    if type(value) is Decimal and value.is_finite():  # as the JSON gives it, most often
        return value
    if value in (None, ""):
        return Decimal(0)
    try:
        amount = Decimal(str(value)) if isinstance(value, str) else value
    except InvalidOperation:
        amount = None
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise _bad_response(f"a usage value is not a number: {str(value)[:40]!r}", base_url)
    return amount


def _utc_day(value: Any, base_url: str) -> date:
    """The UTC calendar day of an RFC 3339 timestamp (``Z`` or an offset)."""
    try:
        moment = datetime.fromisoformat(str(value).upper())
    except ValueError:
        raise _bad_response(f"a timestamp is not RFC 3339: {str(value)[:40]!r}", base_url) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def _cents(value: Any) -> Decimal | None:
    """``{"val": "123"}`` (or a bare "123") cents -> Decimal dollars; None if absent or odd."""
    if isinstance(value, dict):
        value = value.get("val", "0")  # proto3 omits a zero val
    if value is None or isinstance(value, bool):
        return None
    try:
        cents = Decimal(str(value))
    except InvalidOperation:
        return None
    return cents / 100 if cents.is_finite() else None


def _bad_response(what: str, base_url: str) -> ProviderError:
    return ProviderError(
        Reason.BAD_RESPONSE,
        f"xAI's Management API at {base_url} sent a usage answer this app cannot read: {what}.",
    )
