"""The Anthropic provider against its stand-in over real HTTP: cents, pages, identities, refusals.

respx appears only at the end, for answers the stand-in never gives.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import respx

from providers.anthropic.provider import NOT_ADMIN_KEY, AnthropicProvider, model_id, unit_type
from providers.anthropic.sandbox import COSTS, DEMO_KEY, DEMO_ORG, AnthropicStandIn
from providers.cost_reports import CURRENCY_NOT_USD
from providers.http import RetryPolicy
from providers.types import Reason, UsageKind, caveats
from tests.providers.conftest import QUICK_RETRY, call, cost_by_model, cost_on, refusal, windows

NOW = datetime(2026, 10, 15, 13, 30, tzinfo=UTC)
TODAY = NOW.date()
OTHER_ORG = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
OTHER_KEY = "sk-ant-admin01-other0org0key000000000000001"
SECOND_KEY = "sk-ant-admin01-demo0org0second0key0000000002"


@pytest.fixture
def stand_in():
    with AnthropicStandIn(clock=lambda: NOW) as running:
        running.add_organization(OTHER_ORG, name="Other Co")
        running.add_key(OTHER_KEY, OTHER_ORG)
        running.add_key(SECOND_KEY, DEMO_ORG)
        yield running


@pytest.fixture
def provider(stand_in, sleep) -> AnthropicProvider:
    return AnthropicProvider(base_url=stand_in.url, retry=QUICK_RETRY, sleep=sleep)


def creds(key: str = DEMO_KEY) -> dict[str, str]:
    return {"admin_key": key}


def report_requests(stand_in: AnthropicStandIn):
    return [r for r in stand_in.requests if r.path == "/v1/organizations/cost_report"]


# -- the key check, and which organization a key reads -----------------------------


def test_a_good_admin_key_passes_with_its_organizations_id_and_name(provider, stand_in):
    result = call(provider, "check_credentials", creds())

    assert (result.account_id, result.account_name, result.notes) == (DEMO_ORG, "Demo Org", ())
    assert [r.path for r in stand_in.requests] == [
        "/v1/organizations/me",
        "/v1/organizations/cost_report",
    ]
    assert all(r.method == "GET" for r in stand_in.requests)  # read-only
    # Anthropic asks Admin API clients to name themselves.
    assert {r.user_agent.split("/")[0] for r in stand_in.requests} == {"xai-usage"}


def test_two_organizations_are_two_accounts_and_two_keys_of_one_are_one(provider) -> None:
    first = call(provider, "check_credentials", creds()).account_id
    again = call(provider, "check_credentials", creds()).account_id
    second_key = call(provider, "check_credentials", creds(SECOND_KEY)).account_id
    other = call(provider, "check_credentials", creds(OTHER_KEY))

    assert first == again == second_key == DEMO_ORG
    assert (other.account_id, other.account_name) == (OTHER_ORG, "Other Co")


# -- refusals, each on the key field, with what to do --------------------------------


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("sk-ant-api03-AbCdEf0123456789AbCdEf0123456789", "a regular API key (sk-ant-api…)"),
        ("sk-ant-oat01-AbCdEf0123456789AbCdEf0123456789", "not an Admin key"),
        ("sk-admin-AbCdEf0123456789AbCdEf0123456789", "not an Anthropic key"),
    ],
)
def test_a_key_that_is_not_an_admin_key_is_refused_before_any_request(
    provider, stand_in, key, says
) -> None:
    error = refusal(provider, "check_credentials", creds(key))

    assert (error.reason, error.field, error.needs_person) == (NOT_ADMIN_KEY, "admin_key", True)
    assert says in error.message and "sk-ant-admin" in error.message
    assert key not in error.message
    assert stand_in.requests == []


def test_a_regular_key_that_gets_past_its_prefix_is_refused_by_anthropic_as_one(
    provider, stand_in
) -> None:
    # A regular key registered under an admin-looking prefix: the service's answer decides.
    disguised = "sk-ant-admin01-really0a0regular0key00000003"
    stand_in.add_key(disguised, DEMO_ORG, kind="api")

    error = refusal(provider, "check_credentials", creds(disguised))

    assert (error.reason, error.field) == (NOT_ADMIN_KEY, "admin_key")
    assert "Anthropic said: This endpoint requires an Admin API key" in error.message


def test_an_unknown_or_disabled_key_is_named_as_such(provider, stand_in) -> None:
    stand_in.revoke_key(SECOND_KEY)
    for key in (SECOND_KEY, "sk-ant-admin01-never0seen0key0000000000004"):
        error = refusal(provider, "check_credentials", creds(key))
        assert (error.reason, error.field, error.needs_person) == (
            Reason.INVALID_KEY,
            "admin_key",
            True,
        )
        assert "disabled or deleted" in error.message and "invalid x-api-key" in error.message
        assert key not in error.message


def test_a_key_that_may_not_read_the_cost_report_is_told_so(provider, stand_in) -> None:
    stand_in.add_key("sk-ant-admin01-no0costs0key000000000000005", DEMO_ORG, can_read_costs=False)

    error = refusal(
        provider, "check_credentials", creds("sk-ant-admin01-no0costs0key000000000000005")
    )

    assert (error.reason, error.field) == (Reason.MISSING_SCOPE, "admin_key")
    assert "cost report" in error.message and error.needs_person


# -- transient failures --------------------------------------------------------------


def test_a_429_waits_as_long_as_retry_after_asks(provider, stand_in, sleep) -> None:
    stand_in.add_fault("cost_report", status=429, retry_after=11, times=1)

    fetched = call(provider, "fetch_daily_costs", creds(), TODAY - timedelta(days=3), TODAY)

    assert sleep.delays == [11] and fetched.rows


def test_overloaded_and_server_errors_are_retried(provider, stand_in, sleep) -> None:
    stand_in.add_fault("cost_report", status=529, times=2)
    stand_in.add_fault("me", status=500, times=1)

    result = call(provider, "check_credentials", creds())

    assert result.account_id == DEMO_ORG and len(sleep.delays) == 3
    assert [r.status for r in stand_in.requests] == [500, 200, 529, 529, 200]


def test_an_overload_that_lasts_is_a_server_error(stand_in) -> None:
    stand_in.add_fault("any", status=529, times=0)
    impatient = RetryPolicy(deadline=0.3, base_delay=0.01, max_delay=0.02, timeout=1)

    error = refusal(
        AnthropicProvider(base_url=stand_in.url, retry=impatient), "check_credentials", creds()
    )

    assert (error.reason, error.needs_person) == (Reason.SERVER_ERROR, False)
    assert "HTTP 529 (overloaded)" in error.message and "Overloaded" in error.message


def test_a_429_that_outlasts_the_deadline_says_when_to_try_again(provider, stand_in) -> None:
    stand_in.add_fault("cost_report", status=429, retry_after=45, times=0)

    error = refusal(provider, "fetch_daily_costs", creds(), TODAY - timedelta(days=1), TODAY)

    assert (error.reason, error.retry_after) == (Reason.RATE_LIMITED, 45)


# -- the figures: cents to dollars, every page ----------------------------------------


def test_90_days_by_model_equal_what_anthropic_served_to_the_cent_fraction(provider, stand_in):
    start, end = TODAY - timedelta(days=89), TODAY + timedelta(days=1)
    rows = []
    for window, stop in windows(start, end):
        fetched = call(provider, "fetch_daily_costs", creds(), window, stop)
        assert not fetched.by_key  # the cost report has no per-key costs, ever
        rows += fetched.rows

    by_model = cost_by_model(rows)
    assert by_model == stand_in.costs_by_model(DEMO_ORG, start, TODAY)
    assert "Code Execution Usage" in by_model  # no model: under its description
    for day in (start, TODAY - timedelta(days=40), TODAY):
        for model in by_model:
            assert cost_on(rows, day, model) == stand_in.cost(DEMO_ORG, model, day), (day, model)
    # Cents with fractions of a cent: dollars with seven decimals, kept exactly.
    assert any(r.cost_usd.as_tuple().exponent == -7 for r in rows)
    # 31 + 31 + 28 days at 7 buckets a page: 5 + 5 + 4 pages.
    assert len(report_requests(stand_in)) == 14
    assert all(r.query["group_by[]"] == ["description"] for r in report_requests(stand_in))


def test_the_cents_are_divided_by_100_not_read_as_dollars(provider, stand_in) -> None:
    day = TODAY - timedelta(days=1)

    fetched = call(provider, "fetch_daily_costs", creds(), day, TODAY)

    cents = sum((stand_in.cents(DEMO_ORG, line.description, day) for line in COSTS), Decimal(0))
    assert sum((r.cost_usd for r in fetched.rows), Decimal(0)) * 100 == cents


def test_unit_costs_are_each_models_token_types(provider, stand_in) -> None:
    start = TODAY - timedelta(days=14)

    rows = call(provider, "fetch_unit_costs", creds(), start, TODAY)

    expected = {}
    for i in range(14):
        day = start + timedelta(days=i)
        for line in COSTS:
            cost = stand_in.unit_cost(DEMO_ORG, line.model_key, line.unit_type, day)
            if cost:
                expected[(day, line.model_key, line.unit_type)] = cost
    assert {(r.day, r.model, r.unit_type): r.cost_usd for r in rows} == expected
    kinds = {provider.usage_kind(r.unit_type) for r in rows}
    assert kinds == {
        UsageKind.INPUT,
        UsageKind.CACHED_INPUT,
        UsageKind.OUTPUT,
        UsageKind.SEARCH,
        "5-minute cache write tokens",  # its own price: not input
        "code execution",
    }


def test_a_cost_in_another_currency_is_refused(provider, stand_in) -> None:
    euro = "1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a"
    stand_in.add_organization(euro, currency="EUR")
    stand_in.add_key("sk-ant-admin01-euro0org0key0000000000000006", euro)

    error = refusal(
        provider,
        "fetch_daily_costs",
        creds("sk-ant-admin01-euro0org0key0000000000000006"),
        TODAY - timedelta(days=2),
        TODAY,
    )

    assert (error.reason, error.needs_person) == (CURRENCY_NOT_USD, True)
    assert "in EUR, not US dollars" in error.message


def test_a_report_must_say_that_priority_tier_is_missing(provider) -> None:
    assert any("Priority Tier" in sentence for sentence in caveats(provider))


@pytest.mark.parametrize(
    ("result", "model", "kind"),
    [
        (
            {"model": "claude-sonnet-4-20250514", "token_type": "output_tokens",
             "cost_type": "tokens", "description": "Claude Sonnet 4 Usage - Output Tokens"},
            "claude-sonnet-4-20250514",
            "output_tokens",
        ),
        (
            {"model": None, "token_type": None, "cost_type": "code_execution",
             "description": "Code Execution Usage"},
            "Code Execution Usage",
            "code_execution",
        ),
        ({"model": None, "description": None}, "unknown", "unknown"),
    ],
)  # fmt: skip
def test_the_model_is_the_results_model_else_its_description(result, model, kind) -> None:
    assert (model_id(result), unit_type(result)) == (model, kind)


# -- answers the stand-in never gives (respx) ---------------------------------------

BASE = "https://anthropic.test"
REPORT = f"{BASE}/v1/organizations/cost_report"


def respx_provider() -> AnthropicProvider:
    return AnthropicProvider(base_url=BASE, retry=RetryPolicy(deadline=1, timeout=1))


@pytest.mark.parametrize(
    ("status", "kind", "message", "reason"),
    [
        (401, "authentication_error", "", Reason.INVALID_KEY),
        (403, "permission_error", "", Reason.MISSING_SCOPE),
        (403, "permission_error", "Not an admin key", NOT_ADMIN_KEY),
        (401, "authentication_error", "This key was disabled", Reason.INVALID_KEY),
    ],
)
def test_a_refusal_is_read_from_anthropics_words_then_its_type(status, kind, message, reason):
    body = {"type": "error", "error": {"type": kind, "message": message}}
    with respx.mock() as router:
        router.get(url__startswith=REPORT).mock(httpx.Response(status, json=body))
        error = refusal(respx_provider(), "fetch_daily_costs", creds(), TODAY, TODAY + timedelta(1))
    assert (error.reason, error.field) == (reason, "admin_key")


def test_an_amount_that_is_not_a_number_is_unreadable() -> None:
    bucket = {
        "starting_at": f"{TODAY}T00:00:00Z",
        "results": [{"amount": "12,5", "currency": "USD"}],
    }
    page = {"data": [bucket], "has_more": False, "next_page": None}
    with respx.mock() as router:
        router.get(url__startswith=REPORT).mock(httpx.Response(200, content=json.dumps(page)))
        error = refusal(respx_provider(), "fetch_daily_costs", creds(), TODAY, TODAY + timedelta(1))
    assert error.reason == Reason.BAD_RESPONSE and "'12,5'" in error.message


def test_a_service_without_the_organization_endpoint_passes_with_a_note() -> None:
    empty = {"data": [], "has_more": False, "next_page": None}
    with respx.mock() as router:
        router.get(f"{BASE}/v1/organizations/me").mock(httpx.Response(404))
        router.get(url__startswith=REPORT).mock(httpx.Response(200, json=empty))
        result = call(respx_provider(), "check_credentials", creds())
    assert result.account_id == "" and "cannot stop the same one" in result.notes[0]


def test_days_are_read_from_rfc3339_with_any_offset(stand_in) -> None:
    day = date(2026, 10, 1)
    bucket = {
        "starting_at": "2026-10-01T02:00:00+02:00",  # midnight UTC, written in another zone
        "results": [{"amount": "250", "currency": "USD", "model": "m"}],
    }
    page = {"data": [bucket], "has_more": False, "next_page": None}
    with respx.mock() as router:
        router.get(url__startswith=REPORT).mock(httpx.Response(200, json=page))
        fetched = call(respx_provider(), "fetch_daily_costs", creds(), day, day + timedelta(1))
    assert [(r.day, r.model, r.cost_usd) for r in fetched.rows] == [(day, "m", Decimal("2.5"))]
