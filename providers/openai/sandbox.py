"""A local stand-in for OpenAI's organization Costs API, served over real HTTP.

It ships with the product (``xai-usage sandbox --provider openai``) and backs
the tests, so it speaks what the real service speaks (see
``openai-anthropic-admin-apis.md``): Bearer admin keys, Unix-second times,
daily buckets paged with ``page``/``next_page``/``has_more``, amounts as JSON
numbers in dollars (small ones in exponent form, as a float-writing service
sends them), free-text line items, and ``{"error": {...}}`` bodies. It refuses
what the service refuses: unknown parameters, times that are not whole UTC
days, a ``limit`` out of 1-180, a cursor from another query.

The figures are synthetic but deterministic (a hash of organization, line
item, key and day), and the stand-in answers for them: :meth:`OpenAIStandIn.cost`
and friends give exactly what it serves, to the nano-dollar.

Where the real service's words are not known (what a project key is told,
which scope reading projects needs), the stand-in's are marked as its own.

Standard library only: a product command must not need test dependencies.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import Message
from typing import Any, Unpack

from providers.cost_standin import (
    ApiError,
    CostStandIn,
    CostStandInOptions,
    Fault,
    JsonAnswer,
    Query,
    as_served,
    midnight,
    stable_id,
    unit,
)

__all__ = ["DEMO_KEY", "DEMO_ORG", "LINE_ITEMS", "OpenAIStandIn"]

log = logging.getLogger(__name__)

DEMO_ORG = "org-demo"
DEMO_KEY = "sk-admin-demo0openai0standin0key0000beef"

_NANO = Decimal("0.000000001")
_WEEKEND = Decimal("0.4")
_STAGING_SHARE = Decimal("0.25")
_MAX_LIMIT = 180


@dataclass(frozen=True)
class LineItem:
    """One line of OpenAI's costs: a model's kind of usage, or a line with no model."""

    model: str | None
    kind: str
    base_usd: Decimal
    """A typical weekday at scale 1."""

    @property
    def text(self) -> str:
        """As OpenAI writes it: ``"gpt-4o-2024-08-06, input"``, or the kind alone."""
        return f"{self.model}, {self.kind}" if self.model else self.kind

    @property
    def model_key(self) -> str:
        """What a report groups it under: the model, or the line item itself."""
        return self.model or self.kind


LINE_ITEMS = (
    LineItem("gpt-4o-2024-08-06", "input", Decimal("6.4")),
    LineItem("gpt-4o-2024-08-06", "cached input", Decimal("0.9")),
    LineItem("gpt-4o-2024-08-06", "output", Decimal("11.3")),
    LineItem("gpt-4o-mini-2024-07-18", "input", Decimal("0.42")),
    # A few cents a month: its daily amounts go on the wire in exponent form.
    LineItem("gpt-4o-mini-2024-07-18", "cached input", Decimal("0.00007")),
    LineItem("gpt-4o-mini-2024-07-18", "output", Decimal("0.95")),
    LineItem("o3-2025-04-16", "input", Decimal("2.1")),
    LineItem("o3-2025-04-16", "output", Decimal("7.7")),
    LineItem(None, "Image models", Decimal("1.8")),
    LineItem(None, "web search tool calls", Decimal("0.35")),
)
_BY_TEXT = {item.text: item for item in LINE_ITEMS}
GROUP_FIELDS = ("project_id", "line_item", "api_key_id")


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: int
    archived_at: int | None = None


@dataclass
class Organization:
    """A synthetic organization: its projects (the Default one first made) and API keys."""

    org_id: str
    currency: str
    projects: list[Project] = field(default_factory=list)
    api_keys: list[tuple[str, str]] = field(default_factory=list)
    """(api key id, project id): the keys usage splits across, production first."""

    @property
    def default_project(self) -> Project:
        return min(self.projects, key=lambda p: (p.created_at, p.id))


def _organization(org_id: str, currency: str, extra_projects: int) -> Organization:
    born = int(midnight(date(2023, 1, 1)).timestamp()) + int(86400 * 400 * unit("born", org_id))
    default = Project(f"proj_{stable_id('default', org_id)}", "Default project", born)
    production = Project(f"proj_{stable_id('prod', org_id)}", "Production", born + 86400 * 30)
    staging = Project(
        f"proj_{stable_id('staging', org_id)}",
        "Staging",
        born + 86400 * 60,
        archived_at=born + 86400 * 300,
    )
    more = [
        Project(f"proj_{stable_id('extra', org_id, i)}", f"Team {i}", born + 86400 * (90 + i))
        for i in range(1, extra_projects + 1)
    ]
    keys = [
        (f"key_{stable_id('key', org_id, 'production', length=16)}", production.id),
        (f"key_{stable_id('key', org_id, 'staging', length=16)}", staging.id),
    ]
    # Listed newest first, the Default project last: the oldest is not the first seen.
    projects = sorted([default, production, staging, *more], key=lambda p: -p.created_at)
    return Organization(org_id, currency, projects, keys)


@functools.lru_cache(maxsize=65536)
def _scale(org_id: str) -> Decimal:
    """Organizations differ in size, so their spend is not the same curve."""
    return Decimal("0.5") + 2 * unit("scale", org_id)


@functools.lru_cache(maxsize=65536)
def _full_day(org_id: str, text: str, day: date) -> Decimal:
    """A whole day's cost of one line item, in nano-dollars' precision."""
    item = _BY_TEXT[text]
    if item.kind == "Image models" and unit("image-idle", org_id, day) < Decimal("0.2"):
        return Decimal(0)
    amount = item.base_usd * _scale(org_id)
    amount *= Decimal("0.7") + Decimal("0.6") * unit("jitter", org_id, text, day)
    if day.weekday() >= 5:
        amount *= _WEEKEND
    return amount.quantize(_NANO)


def _wire_number(value: Decimal) -> str:
    """Dollars as a float-writing service writes them: ``3.4e-05`` below 1e-4."""
    if value == 0:
        return "0.0"
    if abs(value) < Decimal("0.0001"):
        mantissa, _, exponent = f"{value.normalize():e}".partition("e")
        return f"{mantissa}e-{abs(int(exponent)):02d}"
    return format(value.normalize(), "f")


class OpenAIStandIn(CostStandIn):
    """OpenAI's Costs and Projects endpoints on 127.0.0.1, with faults and oracles."""

    _label = "OpenAI stand-in"
    _thread_name = "openai-standin"
    _log = log
    ENDPOINTS = ("costs", "projects")
    demo_key = DEMO_KEY
    _organizations: dict[str, Organization]

    def __init__(
        self, *, key_breakdown: bool = True, **options: Unpack[CostStandInOptions]
    ) -> None:
        super().__init__(**options)
        self.key_breakdown = key_breakdown
        """Whether costs may be grouped by ``api_key_id`` (False answers 400, as an
        older API would)."""

    # configuration

    def add_organization(
        self, org_id: str, *, currency: str = "usd", extra_projects: int = 0
    ) -> None:
        """An organization with a Default, a Production and an archived Staging project,
        and ``extra_projects`` more; its costs are billed in ``currency``."""
        with self._lock:
            self._organizations[org_id] = _organization(org_id, currency, extra_projects)

    def _add_demo(self) -> None:
        self.add_organization(DEMO_ORG)
        self.add_key(DEMO_KEY, DEMO_ORG)

    # oracles: exactly what is served, as of the stand-in's clock

    def identity(self, org_id: str) -> str:
        """The organization's oldest project id: what a provider should call the account."""
        return self._organizations[org_id].default_project.id

    def api_key_ids(self, org_id: str) -> list[str]:
        return [key_id for key_id, _ in self._organizations[org_id].api_keys]

    def line_item_cost(
        self, org_id: str, line_item: str, day: date, api_key_id: str | None = None
    ) -> Decimal:
        """One line item's cost on ``day``, or one API key's share of it (``""``: the part
        no key made, which is the whole of a line item without a model)."""
        total = self._day_cost(org_id, line_item, day)
        if api_key_id is None:
            return total
        return self._shares(org_id, line_item, total).get(api_key_id, Decimal(0))

    def cost(self, org_id: str, model: str, day: date) -> Decimal:
        """A model's cost on ``day`` (a line item without a model is its own)."""
        return sum(
            (
                self._day_cost(org_id, item.text, day)
                for item in LINE_ITEMS
                if item.model_key == model
            ),
            Decimal(0),
        )

    def costs_by_model(self, org_id: str, start: date, end: date) -> dict[str, Decimal]:
        """Each model's cost over the days ``start`` to ``end``, both included; zeros left out."""
        totals: dict[str, Decimal] = {}
        for offset in range((end - start).days + 1):
            day = start + timedelta(days=offset)
            for item in LINE_ITEMS:
                totals[item.model_key] = totals.get(item.model_key, Decimal(0)) + (
                    self._day_cost(org_id, item.text, day)
                )
        return {model: usd for model, usd in totals.items() if usd}

    def _day_cost(self, org_id: str, text: str, day: date) -> Decimal:
        organization = self._organizations[org_id]
        return as_served(_full_day(organization.org_id, text, day), day, self.now(), _NANO)

    def _shares(self, org_id: str, text: str, total: Decimal) -> dict[str, Decimal]:
        """How a line item's cost splits across API keys ("" for none); the parts add up."""
        if _BY_TEXT[text].model is None:
            return {"": total}
        production, staging = self.api_key_ids(org_id)
        share = (total * _STAGING_SHARE).quantize(_NANO)
        return {production: total - share, staging: share}

    # routing and answers

    def _route(self, method: str, path: str) -> str:
        endpoint = {
            "/v1/organization/costs": "costs",
            "/v1/organization/projects": "projects",
        }.get(path.rstrip("/"))
        if endpoint is None:
            raise ApiError(404, f"Invalid URL (GET {path})", kind="invalid_request_error")
        if method != "GET":
            raise ApiError(405, f"Invalid method for URL ({method} {path})")
        return endpoint

    def _serve(self, endpoint: str, query: str, headers: Message) -> JsonAnswer:
        key = self._caller(headers.get("Authorization"))
        organization = self._organizations[key.org_id]
        if endpoint == "projects":
            if not key.can_read_org:
                # The stand-in's own scope name: which one OpenAI asks for is not known.
                raise _missing_scope("api.management.read")
            return self._projects(organization, Query(query, _PROJECT_PARAMS))
        if not key.can_read_costs:
            raise _missing_scope("api.usage.read")
        return self._costs(organization, Query(query, _COST_PARAMS, repeatable=_COST_LISTS))

    def _caller(self, authorization: str | None):
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        token = token.strip()
        key, _revoked = self._key(token)
        if key is None:  # OpenAI says the same of a revoked key as of an unknown one
            raise ApiError(
                401,
                f"Incorrect API key provided: {_masked(token)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                kind="invalid_api_key",
            )
        if key.kind != "admin":
            # The stand-in's words: OpenAI's for this case are not documented.
            raise ApiError(
                403,
                "You have insufficient permissions for this operation. This endpoint requires "
                "an admin API key; project, service account and user keys cannot call it.",
                kind="insufficient_permissions",
            )
        return key

    def _projects(self, organization: Organization, query: Query) -> JsonAnswer:
        limit = query.integer("limit", 20, 1, 100)
        archived = query.one("include_archived") or "false"
        if archived not in ("true", "false"):
            raise ApiError(400, "Invalid 'include_archived': expected true or false.")
        projects = [p for p in organization.projects if archived == "true" or p.archived_at is None]
        offset = 0
        if after := query.one("after"):
            ids = [p.id for p in projects]
            if after not in ids:
                raise ApiError(400, f"Invalid 'after': no project {after}.", param="after")
            offset = ids.index(after) + 1
        page = projects[offset : offset + min(limit, self.page_size)]
        data = [
            {
                "id": p.id,
                "object": "organization.project",
                "name": p.name,
                "created_at": p.created_at,
                "archived_at": p.archived_at,
                "status": "archived" if p.archived_at else "active",
            }
            for p in page
        ]
        return JsonAnswer(
            200,
            {
                "object": "list",
                "data": data,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": offset + len(page) < len(projects),
            },
        )

    def _costs(self, organization: Organization, query: Query) -> JsonAnswer:
        now = self.now()
        start = _whole_day(query.one("start_time"), "start_time", required=True)
        end_text = query.one("end_time")
        end = _whole_day(end_text, "end_time") if end_text else now.date() + timedelta(days=1)
        if end <= start:
            raise ApiError(
                400, "Invalid 'end_time': it must be after start_time.", param="end_time"
            )
        width = query.one("bucket_width") or "1d"
        if width != "1d":
            # The real API also has 1m and 1h for usage; its costs come in days only.
            raise ApiError(
                400, f"Invalid 'bucket_width': '{width}' (costs support 1d).", param="bucket_width"
            )
        group_by = query.all("group_by")
        for name in group_by:
            if name not in GROUP_FIELDS:
                raise ApiError(400, f"Invalid 'group_by': '{name}'.", param="group_by")
            if name == "api_key_id" and not self.key_breakdown:
                raise ApiError(400, "Invalid 'group_by': 'api_key_id'.", param="group_by")
        if len(set(group_by)) != len(group_by):
            raise ApiError(400, "Invalid 'group_by': a field is named twice.", param="group_by")
        page, cursor = self._days_page(query, start, end, now.date(), _MAX_LIMIT)
        buckets = [
            {
                "object": "bucket",
                "start_time": int(midnight(day).timestamp()),
                "end_time": int(midnight(day + timedelta(days=1)).timestamp()),
                "results": self._results(organization, day, group_by, query),
            }
            for day in page
        ]
        return JsonAnswer(
            200,
            {
                "object": "page",
                "data": buckets,
                "has_more": cursor is not None,
                "next_page": cursor,
            },
            number=_wire_number,
        )

    def _results(
        self, organization: Organization, day: date, group_by: list[str], query: Query
    ) -> list[dict[str, Any]]:
        """One result per group with a cost; a day without any has none."""
        project_of = dict(organization.api_keys)
        wanted_projects = set(query.all("project_ids")) or None
        wanted_keys = set(query.all("api_key_ids")) or None
        groups: dict[tuple[str | None, ...], Decimal] = {}
        for item in LINE_ITEMS:
            total = self._day_cost(organization.org_id, item.text, day)
            for key_id, share in self._shares(organization.org_id, item.text, total).items():
                project = project_of.get(key_id, organization.default_project.id)
                if wanted_projects is not None and project not in wanted_projects:
                    continue
                if wanted_keys is not None and key_id not in wanted_keys:
                    continue
                values = {"project_id": project, "line_item": item.text, "api_key_id": key_id}
                group = tuple(values[name] or None for name in GROUP_FIELDS if name in group_by)
                groups[group] = groups.get(group, Decimal(0)) + share
        results = []
        for group, usd in groups.items():
            if not usd:
                continue
            named = dict(zip([n for n in GROUP_FIELDS if n in group_by], group, strict=True))
            results.append(
                {
                    "object": "organization.costs.result",
                    "amount": {"value": usd, "currency": organization.currency},
                    "line_item": named.get("line_item"),
                    "project_id": named.get("project_id"),
                    "api_key_id": named.get("api_key_id"),
                }
            )
        return results

    # errors, in OpenAI's shape

    def _error_answer(self, error: ApiError) -> JsonAnswer:
        kind = error.kind or {429: "requests", 500: "server_error"}.get(
            error.status, "invalid_request_error"
        )
        body = {
            "error": {
                "message": error.message,
                "type": "server_error" if error.status >= 500 else "invalid_request_error",
                "param": error.param,
                "code": None if kind in ("invalid_request_error", "server_error") else kind,
            }
        }
        return JsonAnswer(error.status, body, error.headers)

    def _fault_error(self, fault: Fault) -> ApiError:
        headers = () if fault.retry_after is None else (("Retry-After", f"{fault.retry_after:g}"),)
        if fault.status == 429:
            message = fault.message or (
                "Rate limit reached for requests to the organization's costs. Please try again "
                "in a few seconds."
            )
            return ApiError(429, message, kind="rate_limit_exceeded", headers=headers)
        message = fault.message or (
            "The server had an error while processing your request. Sorry about that!"
        )
        return ApiError(fault.status, message, headers=headers)


_COST_PARAMS = (
    "start_time",
    "end_time",
    "bucket_width",
    "group_by",
    "project_ids",
    "api_key_ids",
    "limit",
    "page",
)
_COST_LISTS = ("group_by", "project_ids", "api_key_ids")
_PROJECT_PARAMS = ("limit", "after", "include_archived")


def _missing_scope(scope: str) -> ApiError:
    return ApiError(
        403,
        f"You have insufficient permissions for this operation. Missing scopes: {scope}. "
        "Check that you have the correct role in your organization (Owner), and if you're "
        "using a restricted API key, that it has the necessary scopes.",
        kind="insufficient_permissions",
    )


def _masked(token: str) -> str:
    return f"{token[:6]}{'*' * max(0, len(token) - 10)}{token[-4:]}"


def _whole_day(text: str | None, name: str, *, required: bool = False) -> date:
    """A Unix-second time at a UTC midnight, as a day; 400 for anything else."""
    if text is None:
        if required:
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
        raise AssertionError("unreachable")
    try:
        moment = datetime.fromtimestamp(int(text), UTC) if text.isdigit() else None
    except (OverflowError, OSError, ValueError):
        moment = None
    if moment is None:
        raise ApiError(400, f"Invalid '{name}': expected Unix seconds, got '{text}'.", param=name)
    if moment != midnight(moment.date()):
        raise ApiError(
            400,
            f"Invalid '{name}': the stand-in serves whole UTC days (a midnight), got {text}.",
            param=name,
        )
    return moment.date()
