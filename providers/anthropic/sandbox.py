"""A local stand-in for Anthropic's Admin API cost report, served over real HTTP.

It ships with the product (``xai-usage sandbox --provider anthropic``) and
backs the tests, so it speaks what the real service speaks (see
``openai-anthropic-admin-apis.md``): ``x-api-key`` and ``anthropic-version``
headers, RFC 3339 times snapped to UTC days, daily buckets paged with
``page``/``next_page``/``has_more``, amounts as decimal strings in **cents**
with fractions of a cent, results grouped by ``description`` carrying
``model`` and ``token_type``, and ``{"type": "error", ...}`` bodies (529 when
overloaded). It refuses what the service refuses: unknown parameters, times
without a zone, a ``limit`` out of 1-31, a cursor from another query.

The figures are synthetic but deterministic (a hash of organization,
description and day), and the stand-in answers for them:
:meth:`AnthropicStandIn.cost` and friends give exactly what it serves.

Where the real service's words are not known (what a regular API key is told,
or a key that may not read costs), the stand-in's are marked as its own.

Standard library only: a product command must not need test dependencies.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import Message
from typing import Any

from providers.cost_standin import (
    ApiError,
    CostStandIn,
    Fault,
    JsonAnswer,
    Query,
    as_served,
    midnight,
    stable_id,
    unit,
)

__all__ = ["COSTS", "DEMO_KEY", "DEMO_ORG", "AnthropicStandIn"]

log = logging.getLogger(__name__)

DEMO_ORG = "6f1c2a9e-4b3d-4e8f-9a0b-1c2d3e4f5a6b"
DEMO_KEY = "sk-ant-admin01-demo0anthropic0standin0key0000beef"
API_VERSION = "2023-06-01"

_CENT_GRID = Decimal("0.00001")
"""Amounts carry five decimals of a cent: ``"123.78912"``."""
_WEEKEND = Decimal("0.4")
_WORKSPACE_SHARE = Decimal("0.3")
_MAX_LIMIT = 31


@dataclass(frozen=True)
class CostLine:
    """One kind of cost the report itemises, as grouping by description shows it."""

    description: str
    model: str | None
    cost_type: str
    token_type: str | None
    base_cents: Decimal
    """A typical weekday at scale 1, in cents."""
    context_window: str | None = "0-200k"
    service_tier: str | None = "standard"

    @property
    def model_key(self) -> str:
        """What a report groups it under: the model, or the description without one."""
        return self.model or self.description

    @property
    def unit_type(self) -> str:
        return self.token_type or self.cost_type


_SONNET, _HAIKU, _OPUS = (
    "claude-sonnet-4-20250514",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-1-20250805",
)
COSTS = (
    CostLine("Claude Sonnet 4 Usage - Input Tokens", _SONNET, "tokens",
             "uncached_input_tokens", Decimal(610)),
    CostLine("Claude Sonnet 4 Usage - Input Tokens, Long Context", _SONNET, "tokens",
             "uncached_input_tokens", Decimal(95), context_window="200k-1M"),
    CostLine("Claude Sonnet 4 Usage - Cache Read", _SONNET, "tokens",
             "cache_read_input_tokens", Decimal(42)),
    CostLine("Claude Sonnet 4 Usage - Cache Write (5m)", _SONNET, "tokens",
             "cache_creation.ephemeral_5m_input_tokens", Decimal(77)),
    CostLine("Claude Sonnet 4 Usage - Output Tokens", _SONNET, "tokens",
             "output_tokens", Decimal(1340)),
    CostLine("Claude Haiku 4.5 Usage - Input Tokens", _HAIKU, "tokens",
             "uncached_input_tokens", Decimal(88)),
    CostLine("Claude Haiku 4.5 Usage - Output Tokens", _HAIKU, "tokens",
             "output_tokens", Decimal(131)),
    CostLine("Claude Haiku 4.5 Usage - Output Tokens, Batch", _HAIKU, "tokens",
             "output_tokens", Decimal(19), service_tier="batch"),
    CostLine("Claude Opus 4.1 Usage - Input Tokens", _OPUS, "tokens",
             "uncached_input_tokens", Decimal(260)),
    CostLine("Claude Opus 4.1 Usage - Output Tokens", _OPUS, "tokens",
             "output_tokens", Decimal(720)),
    CostLine("Web Search Usage", _SONNET, "web_search", None, Decimal(35),
             context_window=None, service_tier=None),
    # Code execution has no model: a report shows it under its description.
    CostLine("Code Execution Usage", None, "code_execution", None, Decimal(12),
             context_window=None, service_tier=None),
)  # fmt: skip
_BY_DESCRIPTION = {line.description: line for line in COSTS}
GROUP_FIELDS = ("workspace_id", "description")


@dataclass(frozen=True)
class Organization:
    org_id: str
    name: str
    currency: str
    workspace_id: str
    """Its one named workspace; the rest of its spend is the default one (``null``)."""


@functools.lru_cache(maxsize=65536)
def _scale(org_id: str) -> Decimal:
    return Decimal("0.5") + 2 * unit("scale", org_id)


@functools.lru_cache(maxsize=65536)
def _full_day_cents(org_id: str, description: str, day: date) -> Decimal:
    """A whole day's cost of one line, in cents with five decimals."""
    line = _BY_DESCRIPTION[description]
    if line.cost_type == "code_execution" and unit("idle", org_id, day) < Decimal("0.3"):
        return Decimal(0)
    cents = line.base_cents * _scale(org_id)
    cents *= Decimal("0.7") + Decimal("0.6") * unit("jitter", org_id, description, day)
    if day.weekday() >= 5:
        cents *= _WEEKEND
    return cents.quantize(_CENT_GRID)


def _cents_text(cents: Decimal) -> str:
    """``Decimal("12.50000")`` -> ``"12.5"``: a decimal string, never an exponent."""
    return format(cents.normalize(), "f")


class AnthropicStandIn(CostStandIn):
    """Anthropic's organization and cost report endpoints on 127.0.0.1, with oracles."""

    _label = "Anthropic stand-in"
    _thread_name = "anthropic-standin"
    _log = log
    ENDPOINTS = ("cost_report", "me")
    demo_key = DEMO_KEY
    _organizations: dict[str, Organization]

    # configuration

    def add_organization(self, org_id: str, *, name: str = "", currency: str = "USD") -> None:
        """An organization (``org_id`` a UUID, as Anthropic's are) billed in ``currency``."""
        uuid.UUID(org_id)  # a ValueError for anything else
        workspace = f"wrkspc_{stable_id('workspace', org_id)}"
        with self._lock:
            self._organizations[org_id] = Organization(
                org_id, name or f"Organization {org_id[:8]}", currency, workspace
            )

    def _add_demo(self) -> None:
        self.add_organization(DEMO_ORG, name="Demo Org")
        self.add_key(DEMO_KEY, DEMO_ORG)

    # oracles: exactly what is served, as of the stand-in's clock

    def cents(self, org_id: str, description: str, day: date) -> Decimal:
        """One line's cost on ``day`` in cents, as the report writes it."""
        full = _full_day_cents(org_id, description, day)
        return as_served(full, day, self.now(), _CENT_GRID)

    def cost(self, org_id: str, model: str, day: date) -> Decimal:
        """A model's cost on ``day`` in dollars (a cost with no model under its description)."""
        cents = sum(
            (
                self.cents(org_id, line.description, day)
                for line in COSTS
                if line.model_key == model
            ),
            Decimal(0),
        )
        return cents / 100

    def unit_cost(self, org_id: str, model: str, unit_type: str, day: date) -> Decimal:
        """A model's cost of one ``token_type`` (or cost type) on ``day``, in dollars."""
        cents = sum(
            (
                self.cents(org_id, line.description, day)
                for line in COSTS
                if line.model_key == model and line.unit_type == unit_type
            ),
            Decimal(0),
        )
        return cents / 100

    def costs_by_model(self, org_id: str, start: date, end: date) -> dict[str, Decimal]:
        """Each model's dollars over the days ``start`` to ``end``, both included."""
        totals: dict[str, Decimal] = {}
        for offset in range((end - start).days + 1):
            day = start + timedelta(days=offset)
            for line in COSTS:
                cents = self.cents(org_id, line.description, day)
                totals[line.model_key] = totals.get(line.model_key, Decimal(0)) + cents / 100
        return {model: usd for model, usd in totals.items() if usd}

    # routing and answers

    def _route(self, method: str, path: str) -> str:
        endpoint = {
            "/v1/organizations/cost_report": "cost_report",
            "/v1/organizations/me": "me",
        }.get(path.rstrip("/"))
        if endpoint is None:
            raise ApiError(404, f"Not found: {path}", kind="not_found_error")
        if method != "GET":
            raise ApiError(405, f"Method {method} not allowed", kind="invalid_request_error")
        return endpoint

    def _serve(self, endpoint: str, query: str, headers: Message) -> JsonAnswer:
        version = headers.get("anthropic-version")
        if version is None:
            raise ApiError(400, "anthropic-version: header is required")
        if version != API_VERSION:
            raise ApiError(400, f"anthropic-version: unknown version '{version}'")
        key = self._caller(headers.get("x-api-key"))
        organization = self._organizations[key.org_id]
        if endpoint == "me":
            Query(query, ())
            return JsonAnswer(
                200, {"id": organization.org_id, "type": "organization", "name": organization.name}
            )
        if not key.can_read_costs:
            # The stand-in's words: Anthropic's for this case are not documented.
            raise ApiError(
                403,
                "This API key does not have permission to read the organization's cost report.",
                kind="permission_error",
            )
        return self._cost_report(organization, Query(query, _COST_PARAMS, _COST_LISTS))

    def _caller(self, token: str | None):
        if not token:
            raise ApiError(401, "x-api-key header is required", kind="authentication_error")
        key, _revoked = self._key(token.strip())
        if key is None:
            raise ApiError(401, "invalid x-api-key", kind="authentication_error")
        if key.kind != "admin":
            # The stand-in's words: Anthropic's for a regular key here are not documented.
            raise ApiError(
                403,
                "This endpoint requires an Admin API key (sk-ant-admin...); regular API keys "
                "cannot call the Admin API.",
                kind="permission_error",
            )
        return key

    def _cost_report(self, organization: Organization, query: Query) -> JsonAnswer:
        now = self.now()
        start = _snapped(query.one("starting_at"), "starting_at")
        ending = query.one("ending_at")
        end = _snapped(ending, "ending_at", up=True) if ending else now.date() + timedelta(days=1)
        if end <= start:
            raise ApiError(400, "ending_at: must be after starting_at")
        width = query.one("bucket_width") or "1d"
        if width != "1d":
            raise ApiError(400, f"bucket_width: '{width}' is not supported (use '1d')")
        group_by = query.all("group_by[]")
        for name in group_by:
            if name not in GROUP_FIELDS:
                raise ApiError(400, f"group_by[]: '{name}' is not one of workspace_id, description")
        if len(set(group_by)) != len(group_by):
            raise ApiError(400, "group_by[]: a field is named twice")
        page, cursor = self._days_page(query, start, end, now.date(), _MAX_LIMIT)
        buckets = [
            {
                "starting_at": _timestamp(day),
                "ending_at": _timestamp(day + timedelta(days=1)),
                "results": self._results(organization, day, group_by),
            }
            for day in page
        ]
        return JsonAnswer(
            200, {"data": buckets, "has_more": cursor is not None, "next_page": cursor}
        )

    def _results(
        self, organization: Organization, day: date, group_by: list[str]
    ) -> list[dict[str, Any]]:
        by_description = "description" in group_by
        by_workspace = "workspace_id" in group_by
        groups: dict[tuple[str | None, str | None], Decimal] = {}
        for line in COSTS:
            cents = self.cents(organization.org_id, line.description, day)
            named = (cents * _WORKSPACE_SHARE).quantize(_CENT_GRID)
            for workspace, part in ((None, cents - named), (organization.workspace_id, named)):
                group = (
                    workspace if by_workspace else None,
                    line.description if by_description else None,
                )
                groups[group] = groups.get(group, Decimal(0)) + part
        results = []
        for (workspace, description), cents in groups.items():
            if not cents:
                continue
            line = _BY_DESCRIPTION.get(description or "")
            results.append(
                {
                    "amount": _cents_text(cents),
                    "currency": organization.currency,
                    "cost_type": line.cost_type if line else None,
                    "context_window": line.context_window if line else None,
                    "description": description,
                    "model": line.model if line else None,
                    "service_tier": line.service_tier if line else None,
                    "token_type": line.token_type if line else None,
                    "workspace_id": workspace,
                }
            )
        return results

    # errors, in Anthropic's shape

    def _error_answer(self, error: ApiError) -> JsonAnswer:
        kind = error.kind or {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(error.status, "api_error")
        body = {
            "type": "error",
            "error": {"type": kind, "message": error.message},
            "request_id": f"req_{stable_id('request', len(self.requests))}",
        }
        return JsonAnswer(error.status, body, error.headers)

    def _fault_error(self, fault: Fault) -> ApiError:
        headers = () if fault.retry_after is None else (("retry-after", f"{fault.retry_after:g}"),)
        default = {
            429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
            529: ("overloaded_error", "Overloaded"),
        }.get(fault.status, ("api_error", "Internal server error"))
        return ApiError(fault.status, fault.message or default[1], kind=default[0], headers=headers)


_COST_PARAMS = ("starting_at", "ending_at", "bucket_width", "group_by[]", "limit", "page")
_COST_LISTS = ("group_by[]",)


def _snapped(text: str | None, name: str, *, up: bool = False) -> date:
    """An RFC 3339 time as the UTC day its bucket starts (``up``: the day an end reaches)."""
    if text is None:
        raise ApiError(400, f"{name}: field required")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name}: '{text}' is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ApiError(400, f"{name}: '{text}' has no time zone offset")
    moment = moment.astimezone(UTC)
    day = moment.date()
    if up and moment != midnight(day):
        day += timedelta(days=1)
    return day


def _timestamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"
