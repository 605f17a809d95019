"""The OpenAI and Anthropic stand-ins speak their services' wire formats, refuse what the
services refuse, page for real, and serve exactly what their oracles say."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from providers.anthropic.sandbox import COSTS, AnthropicStandIn
from providers.anthropic.sandbox import DEMO_KEY as ANTHROPIC_KEY
from providers.anthropic.sandbox import DEMO_ORG as ANTHROPIC_ORG
from providers.openai.sandbox import DEMO_KEY as OPENAI_KEY
from providers.openai.sandbox import DEMO_ORG as OPENAI_ORG
from providers.openai.sandbox import LINE_ITEMS, OpenAIStandIn

NOW = datetime(2026, 10, 15, 13, 30, tzinfo=UTC)
TODAY = NOW.date()
OCT_1 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
DAY = 86400


def decimal_json(response: httpx.Response):
    return json.loads(response.text, parse_float=Decimal)


# -- OpenAI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai():
    with OpenAIStandIn(clock=lambda: NOW) as running:
        running.add_key("sk-proj-a0project0key000000000000000001", OPENAI_ORG, kind="project")
        running.add_key("sk-admin-no0scope0key0000000000000002", OPENAI_ORG, can_read_costs=False)
        yield running


def costs(stand_in: OpenAIStandIn, params, key: str = OPENAI_KEY) -> httpx.Response:
    return httpx.get(
        f"{stand_in.url}/v1/organization/costs",
        params=params,
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"start_time": OCT_1, "days": 3}, "Unknown parameter: 'days'"),
        ({}, "Missing required parameter: 'start_time'"),
        ({"start_time": OCT_1 + 3600}, "whole UTC days"),
        ({"start_time": "2026-10-01"}, "expected Unix seconds"),
        ({"start_time": OCT_1, "end_time": OCT_1}, "after start_time"),
        ({"start_time": OCT_1, "bucket_width": "1h"}, "costs support 1d"),
        ({"start_time": OCT_1, "limit": 0}, "from 1 to 180"),
        ({"start_time": OCT_1, "limit": 181}, "from 1 to 180"),
        ({"start_time": OCT_1, "limit": "7.5"}, "from 1 to 180"),
        ({"start_time": OCT_1, "group_by": "model"}, "Invalid 'group_by': 'model'"),
        ({"start_time": OCT_1, "group_by": ["line_item", "line_item"]}, "named twice"),
        ({"start_time": [OCT_1, OCT_1]}, "given 2 times"),
        ({"start_time": OCT_1, "page": "page_garbage"}, "not a cursor this API gave"),
    ],
)
def test_openai_refuses_what_openai_refuses_in_its_error_shape(openai, params, says) -> None:
    response = costs(openai, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert says in error["message"] and error["type"] == "invalid_request_error"


def test_openai_pages_for_real_and_a_cursor_belongs_to_its_query(openai) -> None:
    query = {"start_time": OCT_1, "end_time": OCT_1 + 10 * DAY, "limit": 10}
    first = costs(openai, query).json()
    assert len(first["data"]) == 7 and first["has_more"] is True  # short pages: 7 at most
    second = costs(openai, {**query, "page": first["next_page"]}).json()
    assert len(second["data"]) == 3 and second["has_more"] is False
    assert second["next_page"] is None
    starts = [b["start_time"] for b in first["data"] + second["data"]]
    assert starts == [OCT_1 + i * DAY for i in range(10)]
    # The same cursor with another query is refused, as a real cursor would be.
    other = costs(openai, {**query, "group_by": "line_item", "page": first["next_page"]})
    assert other.status_code == 400 and "another query" in other.json()["error"]["message"]


def test_openai_serves_no_day_after_today(openai) -> None:
    start = int(datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC).timestamp())
    page = costs(openai, {"start_time": start, "end_time": start + 5 * DAY, "limit": 5}).json()
    assert [b["start_time"] for b in page["data"]] == [start]  # today only, partial


def test_openai_serves_exactly_its_oracle_with_small_amounts_in_exponent_form(openai) -> None:
    day = date(2026, 10, 6)
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())
    response = costs(
        openai,
        {"start_time": start, "end_time": start + DAY, "group_by": ["line_item", "api_key_id"]},
    )
    results = decimal_json(response)["data"][0]["results"]
    served = {(r["line_item"], r["api_key_id"] or ""): r["amount"]["value"] for r in results}
    expected = {}
    for item in LINE_ITEMS:
        for key_id in [*openai.api_key_ids(OPENAI_ORG), ""]:
            if cost := openai.line_item_cost(OPENAI_ORG, item.text, day, key_id):
                expected[(item.text, key_id)] = cost
    assert served == expected
    assert {r["amount"]["currency"] for r in results} == {"usd"}
    assert "e-05" in response.text or "e-06" in response.text  # as a float-writing service


def test_openai_groups_by_nothing_into_one_result_a_day(openai) -> None:
    day = date(2026, 10, 6)
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())
    (result,) = decimal_json(costs(openai, {"start_time": start, "end_time": start + DAY}))["data"][
        0
    ]["results"]
    assert result["line_item"] is None and result["api_key_id"] is None
    total = sum((openai.line_item_cost(OPENAI_ORG, i.text, day) for i in LINE_ITEMS), Decimal(0))
    assert result["amount"]["value"] == total


@pytest.mark.parametrize(
    ("key", "status", "says"),
    [
        (None, 401, "You didn't provide an API key"),
        ("sk-admin-unknown0key000000000000000009", 401, "Incorrect API key provided: sk-adm"),
        ("sk-proj-a0project0key000000000000000001", 403, "requires an admin API key"),
        ("sk-admin-no0scope0key0000000000000002", 403, "Missing scopes: api.usage.read"),
    ],
)
def test_openai_refuses_keys_as_openai_does(openai, key, status, says) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(
        f"{openai.url}/v1/organization/costs", params={"start_time": OCT_1}, headers=headers
    )
    assert response.status_code == status and says in response.json()["error"]["message"]
    if key:
        assert key not in response.text  # an unknown key is echoed masked, never whole


def test_openai_faults_answer_as_openai_does(openai) -> None:
    openai.add_fault("costs", status=429, retry_after=3, times=1)
    openai.add_fault("costs", status=500, times=1)
    limited = costs(openai, {"start_time": OCT_1})
    failed = costs(openai, {"start_time": OCT_1})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert (failed.status_code, failed.json()["error"]["type"]) == (500, "server_error")
    assert costs(openai, {"start_time": OCT_1}).status_code == 200  # spent


def test_openai_refuses_writes_and_unknown_paths(openai) -> None:
    auth = {"Authorization": f"Bearer {OPENAI_KEY}"}
    assert httpx.post(f"{openai.url}/v1/organization/costs", headers=auth).status_code == 405
    assert httpx.get(f"{openai.url}/v1/organization/usage", headers=auth).status_code == 404


def test_openai_lists_projects_newest_first_in_pages(openai) -> None:
    openai.add_organization("org-many", extra_projects=8)
    openai.add_key("sk-admin-many0projects0key000000000010", "org-many")
    auth = {"Authorization": "Bearer sk-admin-many0projects0key000000000010"}
    url = f"{openai.url}/v1/organization/projects"
    first = httpx.get(url, params={"limit": 100, "include_archived": "true"}, headers=auth).json()
    after = {"limit": 100, "include_archived": "true", "after": first["last_id"]}
    second = httpx.get(url, params=after, headers=auth).json()
    projects = first["data"] + second["data"]
    assert (len(projects), first["has_more"], second["has_more"]) == (11, True, False)
    assert projects[-1]["name"] == "Default project"  # the oldest, listed last
    assert projects[-1]["id"] == openai.identity("org-many")
    active = httpx.get(url, params={"limit": 100}, headers=auth).json()
    assert "Staging" not in {p["name"] for p in active["data"]}  # archived: only when asked


# -- Anthropic ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def anthropic():
    with AnthropicStandIn(clock=lambda: NOW) as running:
        running.add_key("sk-ant-api03-a0regular0key0000000000000001", ANTHROPIC_ORG, kind="api")
        yield running


def report(stand_in, params, *, key: str | None = ANTHROPIC_KEY, version="2023-06-01"):
    headers = {}
    if key:
        headers["x-api-key"] = key
    if version:
        headers["anthropic-version"] = version
    return httpx.get(f"{stand_in.url}/v1/organizations/cost_report", params=params, headers=headers)


START = "2026-10-01T00:00:00Z"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"starting_at": START, "group_by": "description"}, "Unknown parameter: 'group_by'"),
        ({}, "starting_at: field required"),
        ({"starting_at": "2026-10-01"}, "has no time zone offset"),
        ({"starting_at": "yesterday"}, "is not an RFC 3339 date-time"),
        ({"starting_at": START, "ending_at": "2026-09-30T00:00:00Z"}, "must be after"),
        ({"starting_at": START, "bucket_width": "1h"}, "is not supported"),
        ({"starting_at": START, "limit": 32}, "from 1 to 31"),
        ({"starting_at": START, "group_by[]": "api_key_id"}, "is not one of"),
        ({"starting_at": START, "page": "page_bm9wZQ=="}, "not a cursor this API gave"),
    ],
)
def test_anthropic_refuses_what_anthropic_refuses_in_its_error_shape(anthropic, params, says):
    response = report(anthropic, params)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert says in body["error"]["message"] and body["request_id"].startswith("req_")


@pytest.mark.parametrize(
    ("key", "version", "status", "kind"),
    [
        (ANTHROPIC_KEY, None, 400, "invalid_request_error"),
        (ANTHROPIC_KEY, "2024-01-01", 400, "invalid_request_error"),
        (None, "2023-06-01", 401, "authentication_error"),
        ("sk-ant-admin01-unknown000000000000000009", "2023-06-01", 401, "authentication_error"),
        ("sk-ant-api03-a0regular0key0000000000000001", "2023-06-01", 403, "permission_error"),
    ],
)
def test_anthropic_refuses_headers_and_keys_as_anthropic_does(
    anthropic, key, version, status, kind
):
    response = report(anthropic, {"starting_at": START}, key=key, version=version)
    assert (response.status_code, response.json()["error"]["type"]) == (status, kind)


def test_anthropic_snaps_times_to_utc_days_and_pages_for_real(anthropic) -> None:
    query = {"starting_at": "2026-10-01T09:15:00+02:00", "ending_at": "2026-10-11T00:00:00Z"}
    first = report(anthropic, {**query, "limit": 31}).json()
    second = report(anthropic, {**query, "limit": 31, "page": first["next_page"]}).json()
    starts = [b["starting_at"] for b in first["data"] + second["data"]]
    assert starts == [f"2026-10-{d:02d}T00:00:00Z" for d in range(1, 11)]
    assert (len(first["data"]), first["has_more"], second["has_more"]) == (7, True, False)


def test_anthropic_serves_cents_with_fractions_exactly_as_its_oracle(anthropic) -> None:
    day = date(2026, 10, 6)
    query = {"starting_at": f"{day}T00:00:00Z", "ending_at": f"{day + timedelta(1)}T00:00:00Z"}
    (bucket,) = report(anthropic, {**query, "group_by[]": "description"}).json()["data"]
    served = {r["description"]: r["amount"] for r in bucket["results"]}
    assert all(isinstance(amount, str) for amount in served.values())  # decimal strings
    assert any("." in amount and len(amount.split(".")[1]) > 2 for amount in served.values())
    expected = {
        line.description: cents
        for line in COSTS
        if (cents := anthropic.cents(ANTHROPIC_ORG, line.description, day))
    }
    assert {d: Decimal(a) for d, a in served.items()} == expected
    code = next(r for r in bucket["results"] if r["description"] == "Code Execution Usage")
    assert code["model"] is None and code["cost_type"] == "code_execution"
    # Grouped by workspace too: the parts add up to the same cents.
    both = report(anthropic, {**query, "group_by[]": ["description", "workspace_id"]}).json()
    parts: dict[str, Decimal] = {}
    for result in both["data"][0]["results"]:
        parts[result["description"]] = parts.get(result["description"], Decimal(0)) + Decimal(
            result["amount"]
        )
    assert parts == expected
    assert {r["workspace_id"] for r in both["data"][0]["results"]} >= {None}


def test_anthropic_answers_who_the_organization_is(anthropic) -> None:
    response = httpx.get(
        f"{anthropic.url}/v1/organizations/me",
        headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.json() == {"id": ANTHROPIC_ORG, "type": "organization", "name": "Demo Org"}


def test_anthropic_overloaded_answers_529_in_its_shape(anthropic) -> None:
    anthropic.add_fault("cost_report", status=529, times=1)
    response = report(anthropic, {"starting_at": START})
    assert response.status_code == 529
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_neither_stand_in_records_a_key(openai, anthropic) -> None:
    report(anthropic, {"starting_at": START})
    costs(openai, {"start_time": OCT_1})
    for stand_in, key in ((openai, OPENAI_KEY), (anthropic, ANTHROPIC_KEY)):
        assert stand_in.requests and key not in repr(stand_in.requests)


def test_a_stand_in_names_the_credentials_that_connect_to_it() -> None:
    assert OpenAIStandIn().demo_credentials == {"admin_key": OPENAI_KEY}
    assert AnthropicStandIn().demo_credentials == {"admin_key": ANTHROPIC_KEY}
    assert OpenAIStandIn(demo=False).demo_credentials == {}
    with pytest.raises(ValueError, match="add_organization first"):
        OpenAIStandIn(demo=False).add_key("sk-admin-x", "org-nowhere")
    with pytest.raises(ValueError):
        AnthropicStandIn().add_organization("not-a-uuid")
