"""The OpenAI provider against its stand-in over real HTTP: figures, pages, identities, refusals.

respx appears only at the end, for answers the stand-in never gives (a proxy's
HTML, a cursor that comes back, words OpenAI might use).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import respx

from providers.cost_reports import CURRENCY_NOT_USD
from providers.http import RetryPolicy
from providers.openai.provider import NOT_ADMIN_KEY, OpenAIProvider, model_id, unit_type
from providers.openai.sandbox import DEMO_KEY, DEMO_ORG, LINE_ITEMS, OpenAIStandIn
from providers.types import Reason, UsageKind
from tests.providers.conftest import QUICK_RETRY, call, cost_by_model, cost_on, refusal, windows

NOW = datetime(2026, 10, 15, 13, 30, tzinfo=UTC)
TODAY = NOW.date()
OTHER_ORG, OTHER_KEY = "org-other", "sk-admin-other0org0key0000000000000001"
SECOND_KEY = "sk-admin-demo0org0second0key00000000002"


@pytest.fixture
def stand_in():
    with OpenAIStandIn(clock=lambda: NOW) as running:
        running.add_organization(OTHER_ORG)
        running.add_key(OTHER_KEY, OTHER_ORG)
        running.add_key(SECOND_KEY, DEMO_ORG)
        yield running


@pytest.fixture
def provider(stand_in, sleep) -> OpenAIProvider:
    return OpenAIProvider(base_url=stand_in.url, retry=QUICK_RETRY, sleep=sleep)


def creds(key: str = DEMO_KEY) -> dict[str, str]:
    return {"admin_key": key}


def cost_requests(stand_in: OpenAIStandIn):
    return [r for r in stand_in.requests if r.path == "/v1/organization/costs"]


# -- the key check, and which organization a key reads -----------------------------


def test_a_good_admin_key_passes_and_names_its_organization(provider, stand_in) -> None:
    result = call(provider, "check_credentials", creds())

    assert result.account_id == stand_in.identity(DEMO_ORG)
    assert result.account_id.startswith("proj_") and result.notes == ()
    assert [r.path for r in stand_in.requests] == [
        "/v1/organization/costs",
        "/v1/organization/projects",
    ]
    assert all(r.method == "GET" for r in stand_in.requests)  # read-only


def test_two_organizations_are_two_accounts_and_two_keys_of_one_are_one(provider) -> None:
    first = call(provider, "check_credentials", creds()).account_id
    again = call(provider, "check_credentials", creds()).account_id
    second_key = call(provider, "check_credentials", creds(SECOND_KEY)).account_id
    other = call(provider, "check_credentials", creds(OTHER_KEY)).account_id

    assert first == again == second_key
    assert other != first and other


def test_the_identity_is_the_oldest_project_whatever_page_it_is_on(provider, stand_in) -> None:
    stand_in.add_organization("org-big", extra_projects=12)  # 15 projects, listed newest first
    stand_in.add_key("sk-admin-big0org0key000000000000000003", "org-big")

    result = call(provider, "check_credentials", creds("sk-admin-big0org0key000000000000000003"))

    assert result.account_id == stand_in.identity("org-big")
    pages = [r for r in stand_in.requests if r.path == "/v1/organization/projects"]
    assert len(pages) == 3  # 7 + 7 + 1: the Default project is on the last page
    assert [r.query.get("include_archived") for r in pages] == [["true"]] * 3


def test_a_key_that_may_not_list_projects_passes_with_no_identity_and_says_so(
    provider, stand_in
) -> None:
    stand_in.add_key("sk-admin-costs0only0key00000000000004", DEMO_ORG, can_read_org=False)

    result = call(provider, "check_credentials", creds("sk-admin-costs0only0key00000000000004"))

    assert result.account_id == ""
    assert "cannot tell which organization" in result.notes[0]


# -- refusals, each on the key field, with what to do --------------------------------


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("sk-proj-AbCdEf0123456789AbCdEf0123456789", "a project API key"),
        ("sk-svcacct-AbCdEf0123456789AbCdEf01234567", "a service account key"),
        ("sk-AbCdEf0123456789AbCdEf0123456789AbCdEf01", "a user API key"),
        ("sk-ant-admin01-AbCdEf0123456789AbCdEf0123", "an Anthropic key"),
    ],
)
def test_a_key_that_is_not_an_admin_key_is_refused_before_any_request(
    provider, stand_in, key, kind
) -> None:
    error = refusal(provider, "check_credentials", creds(key))

    assert (error.reason, error.field, error.needs_person) == (NOT_ADMIN_KEY, "admin_key", True)
    assert f"That is {kind}" in error.message and "sk-admin-" in error.message
    assert key not in error.message
    assert stand_in.requests == []  # found by its prefix: nothing was sent


def test_the_fields_own_check_says_the_same_before_the_host_sends_anything(provider) -> None:
    (field,) = provider.credential_fields
    assert "project API key" in field.validate("sk-proj-AbCdEf0123456789AbCdEf0123456789")
    assert "start with sk-admin-" in field.validate("not-a-key-at-all-0123456789")
    assert "too short" in field.validate("sk-admin-abc")
    assert field.validate(DEMO_KEY) is None


def test_an_unknown_or_revoked_key_is_named_as_such(provider, stand_in) -> None:
    stand_in.revoke_key(SECOND_KEY)
    for key in (SECOND_KEY, "sk-admin-never0seen0key000000000000005"):
        error = refusal(provider, "check_credentials", creds(key))
        assert (error.reason, error.field, error.needs_person) == (
            Reason.INVALID_KEY,
            "admin_key",
            True,
        )
        assert "revoked or deleted" in error.message
        assert "Incorrect API key provided" in error.message  # OpenAI's own words follow
        assert key not in error.message and key[-4:] not in error.message  # nor its masked form


def test_a_key_without_the_usage_scope_is_told_which(provider, stand_in) -> None:
    stand_in.add_key("sk-admin-no0usage0scope000000000000006", DEMO_ORG, can_read_costs=False)

    error = refusal(provider, "check_credentials", creds("sk-admin-no0usage0scope000000000000006"))

    assert (error.reason, error.field) == (Reason.MISSING_SCOPE, "admin_key")
    assert "api.usage.read" in error.message and error.needs_person


# -- transient failures: retried, and named when they last ---------------------------


def test_a_429_waits_as_long_as_retry_after_asks_then_carries_on(provider, stand_in, sleep):
    stand_in.add_fault("costs", status=429, retry_after=7, times=2)

    fetched = call(provider, "fetch_daily_costs", creds(), TODAY - timedelta(days=3), TODAY)

    assert sleep.delays == [7, 7]
    assert fetched.rows
    assert [r.status for r in cost_requests(stand_in)][:3] == [429, 429, 200]


def test_a_429_that_outlasts_the_deadline_says_when_to_try_again(provider, stand_in) -> None:
    stand_in.add_fault("costs", status=429, retry_after=30, times=0)

    error = refusal(provider, "fetch_daily_costs", creds(), TODAY - timedelta(days=3), TODAY)

    assert (error.reason, error.retry_after, error.needs_person) == (Reason.RATE_LIMITED, 30, False)
    assert "in 30 seconds" in error.message


def test_server_errors_are_retried_then_carry_on(provider, stand_in, sleep) -> None:
    stand_in.add_fault("costs", status=503, times=2)
    stand_in.add_fault("costs", status=500, times=1)

    fetched = call(provider, "fetch_daily_costs", creds(), TODAY - timedelta(days=3), TODAY)

    assert len(sleep.delays) == 3 and fetched.rows


def test_a_server_error_that_lasts_is_a_server_error_not_a_key_problem(stand_in) -> None:
    stand_in.add_fault("any", status=502, times=0)
    impatient = RetryPolicy(deadline=0.3, base_delay=0.01, max_delay=0.02, timeout=1)
    provider = OpenAIProvider(base_url=stand_in.url, retry=impatient)

    error = refusal(provider, "check_credentials", creds())

    assert (error.reason, error.needs_person) == (Reason.SERVER_ERROR, False)
    assert "HTTP 502" in error.message


def test_an_unreachable_service_names_the_setting_to_check() -> None:
    provider = OpenAIProvider(
        base_url="http://127.0.0.1:9", retry=RetryPolicy(deadline=0.2, timeout=0.2)
    )
    error = refusal(provider, "fetch_daily_costs", creds(), TODAY - timedelta(days=1), TODAY)
    assert error.reason == Reason.UNREACHABLE and "OPENAI_API_URL" in error.message


# -- the figures: every page, every nano-dollar ---------------------------------------


def test_a_month_is_read_across_pages(provider, stand_in) -> None:
    start = TODAY - timedelta(days=30)

    fetched = call(provider, "fetch_daily_costs", creds(), start, TODAY + timedelta(days=1))

    requests = cost_requests(stand_in)
    assert len(requests) == 5  # 31 days, 7 buckets a page (the stand-in answers short pages)
    assert "page" not in requests[0].query
    assert all(len(r.query["page"]) == 1 for r in requests[1:])
    assert {r.day for r in fetched.rows} == {start + timedelta(days=i) for i in range(31)}


def test_90_days_by_model_equal_what_openai_served_to_the_nano_dollar(provider, stand_in):
    start, end = TODAY - timedelta(days=89), TODAY + timedelta(days=1)
    rows = [
        row
        for s, e in windows(start, end)
        for row in call(provider, "fetch_daily_costs", creds(), s, e).rows
    ]

    by_model = cost_by_model(rows)
    assert by_model == stand_in.costs_by_model(DEMO_ORG, start, TODAY)
    assert {(r.day, r.model) for r in rows} >= {(TODAY, "gpt-4o-2024-08-06")}  # today, partial
    for day in (start, TODAY - timedelta(days=45), TODAY):
        for model in by_model:
            assert cost_on(rows, day, model) == stand_in.cost(DEMO_ORG, model, day), (day, model)
    # The amounts are not binary fractions: adding them as floats would not give these.
    amounts = [
        stand_in.line_item_cost(DEMO_ORG, item.text, day)
        for item in LINE_ITEMS
        for day in (start + timedelta(days=i) for i in range(90))
    ]
    assert sum(amounts, Decimal(0)) != Decimal(sum(float(a) for a in amounts))


def test_per_key_rows_are_each_keys_share_and_unkeyed_lines_stay_unkeyed(provider, stand_in):
    day = TODAY - timedelta(days=2)

    fetched = call(provider, "fetch_daily_costs", creds(), day, day + timedelta(days=1))

    assert fetched.by_key
    production, staging = stand_in.api_key_ids(DEMO_ORG)
    for key_id in (production, staging):
        served = sum((r.cost_usd for r in fetched.rows if r.api_key_id == key_id), Decimal(0))
        expected = sum(
            (stand_in.line_item_cost(DEMO_ORG, i.text, day, key_id) for i in LINE_ITEMS),
            Decimal(0),
        )
        assert served == expected > 0
    assert {r.api_key_label for r in fetched.rows if r.api_key_id} == {production, staging}
    unkeyed = {r.model for r in fetched.rows if not r.api_key_id}
    modelless = {"Image models", "web search tool calls"}
    assert unkeyed == {m for m in modelless if stand_in.cost(DEMO_ORG, m, day)}
    assert unkeyed  # the day has some: the assertion above is not about an empty set


def test_a_refused_key_breakdown_carries_on_per_model_with_the_same_totals(sleep) -> None:
    with OpenAIStandIn(clock=lambda: NOW, key_breakdown=False) as stand_in:
        provider = OpenAIProvider(base_url=stand_in.url, sleep=sleep)
        start = TODAY - timedelta(days=10)

        fetched = call(provider, "fetch_daily_costs", creds(), start, TODAY)

        assert not fetched.by_key and all(r.api_key_id == "" for r in fetched.rows)
        assert sum((r.cost_usd for r in fetched.rows), Decimal(0)) == sum(
            stand_in.costs_by_model(DEMO_ORG, start, TODAY - timedelta(days=1)).values(),
            Decimal(0),
        )
        statuses = [r.status for r in cost_requests(stand_in)]
        assert statuses[0] == 400 and set(statuses[1:]) == {200}


def test_a_cost_in_another_currency_is_refused_not_added_to_dollars(provider, stand_in) -> None:
    stand_in.add_organization("org-eu", currency="eur")
    stand_in.add_key("sk-admin-euro0org0key0000000000000007", "org-eu")

    error = refusal(
        provider,
        "fetch_daily_costs",
        creds("sk-admin-euro0org0key0000000000000007"),
        TODAY - timedelta(days=3),
        TODAY,
    )

    assert (error.reason, error.needs_person) == (CURRENCY_NOT_USD, True)
    assert "in EUR, not US dollars" in error.message and "nothing was stored" in error.message


def test_unit_costs_are_the_line_items_kinds(provider, stand_in) -> None:
    start = TODAY - timedelta(days=14)

    rows = call(provider, "fetch_unit_costs", creds(), start, TODAY)

    expected = {
        (start + timedelta(days=i), item.model_key, unit_type(item.text)): cost
        for i in range(14)
        for item in LINE_ITEMS
        if (cost := stand_in.line_item_cost(DEMO_ORG, item.text, start + timedelta(days=i)))
    }
    assert {(r.day, r.model, r.unit_type): r.cost_usd for r in rows} == expected
    kinds = {provider.usage_kind(r.unit_type) for r in rows}
    assert kinds == {
        UsageKind.INPUT,
        UsageKind.CACHED_INPUT,
        UsageKind.OUTPUT,
        UsageKind.SEARCH,  # web search tool calls
        "Image models",  # none of the host's kinds: kept in OpenAI's words
    }


@pytest.mark.parametrize(
    ("line_item", "model", "kind"),
    [
        ("gpt-4o-2024-08-06, input", "gpt-4o-2024-08-06", "input"),
        ("gpt-4o-mini-2024-07-18, cached input", "gpt-4o-mini-2024-07-18", "cached input"),
        ("o3-2025-04-16, input (batch)", "o3-2025-04-16", "input (batch)"),
        (
            "ft:gpt-4o-mini:acme::abc, training, hours",
            "ft:gpt-4o-mini:acme::abc",
            "training, hours",
        ),
        ("gpt-4o", "gpt-4o", "gpt-4o"),  # a model alone: no kind to read
        ("Image models", "Image models", "Image models"),  # no model: kept as it is
        (" , input", ", input", ", input"),  # nothing before the comma: kept as it is
        ("", "unknown", "unknown"),
    ],
)
def test_the_model_is_the_line_item_before_its_first_comma(line_item, model, kind) -> None:
    assert (model_id(line_item), unit_type(line_item)) == (model, kind)


def test_only_the_kinds_openai_names_are_read_as_the_hosts(provider) -> None:
    assert provider.usage_kind("cached input") == UsageKind.CACHED_INPUT
    assert provider.usage_kind("Output") == UsageKind.OUTPUT
    assert provider.usage_kind("input (batch)") == "input (batch)"  # another price: not input


def test_a_window_is_one_to_31_days(provider) -> None:
    for end in (TODAY, TODAY + timedelta(days=32)):
        with pytest.raises(ValueError, match="1 to 31 days"):
            call(provider, "fetch_daily_costs", creds(), TODAY, end)


# -- answers the stand-in never gives (respx) ---------------------------------------

BASE = "https://openai.test"
COSTS = f"{BASE}/v1/organization/costs"


def respx_provider() -> OpenAIProvider:
    return OpenAIProvider(base_url=BASE, retry=RetryPolicy(deadline=1, timeout=1))


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (403, {"error": {"message": "This API requires an admin key."}}, NOT_ADMIN_KEY),
        (401, {"error": {"message": "Only organization owners can use admin keys"}}, NOT_ADMIN_KEY),
        (403, {"error": {"message": "Missing scopes: api.usage.read"}}, Reason.MISSING_SCOPE),
        (401, "<html>401</html>", Reason.INVALID_KEY),  # no words: the status decides
        (403, "", Reason.MISSING_SCOPE),
    ],
)
def test_a_refusal_is_read_from_openais_words_then_its_status(status, body, reason) -> None:
    content = json.dumps(body) if isinstance(body, dict) else body
    with respx.mock(assert_all_called=True) as router:
        router.get(url__startswith=COSTS).mock(httpx.Response(status, content=content))
        error = refusal(respx_provider(), "fetch_daily_costs", creds(), TODAY, TODAY + timedelta(1))
    assert (error.reason, error.field) == (reason, "admin_key")


def test_a_page_cursor_that_comes_back_is_not_followed_forever() -> None:
    page = {"object": "page", "data": [], "has_more": True, "next_page": "page_same"}
    with respx.mock() as router:
        route = router.get(url__startswith=COSTS).mock(httpx.Response(200, json=page))
        error = refusal(respx_provider(), "fetch_daily_costs", creds(), TODAY, TODAY + timedelta(1))
    assert error.reason == Reason.BAD_RESPONSE and "never end" in error.message
    assert route.call_count == 2


def test_a_wrong_base_url_is_named_with_the_setting_to_fix() -> None:
    with respx.mock() as router:
        router.get(url__startswith=COSTS).mock(httpx.Response(404, text="<html>no</html>"))
        error = refusal(respx_provider(), "fetch_daily_costs", creds(), TODAY, TODAY + timedelta(1))
    assert error.reason == Reason.BAD_RESPONSE
    assert "OPENAI_API_URL" in error.message and "without /v1" in error.message


def test_an_answer_that_is_not_json_is_unreadable_not_a_crash() -> None:
    with respx.mock() as router:
        router.get(url__startswith=COSTS).mock(httpx.Response(200, text="<html>proxy</html>"))
        error = refusal(respx_provider(), "fetch_daily_costs", creds(), TODAY, TODAY + timedelta(1))
    assert error.reason == Reason.BAD_RESPONSE and "not a JSON object" in error.message


PROJECTS = f"{BASE}/v1/organization/projects"
NO_COSTS = {"object": "page", "data": [], "has_more": False, "next_page": None}


def test_a_service_without_the_project_list_passes_with_a_note() -> None:
    with respx.mock() as router:
        router.get(url__startswith=COSTS).mock(httpx.Response(200, json=NO_COSTS))
        router.get(url__startswith=PROJECTS).mock(httpx.Response(404, text="Not Found"))
        result = call(respx_provider(), "check_credentials", creds())
    assert result.account_id == "" and "did not list" in result.notes[0]


def test_a_garbled_project_list_fails_the_check_rather_than_pass_without_an_identity() -> None:
    with respx.mock() as router:
        router.get(url__startswith=COSTS).mock(httpx.Response(200, json=NO_COSTS))
        router.get(url__startswith=PROJECTS).mock(httpx.Response(200, text="<html>proxy</html>"))
        error = refusal(respx_provider(), "check_credentials", creds())
    assert error.reason == Reason.BAD_RESPONSE and "not a JSON object" in error.message
