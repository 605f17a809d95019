"""The xAI stand-in speaks the real wire format, and its oracle matches what it serves."""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.xai.sandbox import (
    DEMO_KEY,
    DEMO_TEAM_ID,
    MODELS,
    UNIT_TYPES,
    Sandbox,
    serve_forever,
)

NOW = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
OTHER_TEAM = "0f6a2d8e-1b3c-4d5e-8f90-a1b2c3d4e5f6"
DELETED_TEAM = "7d3c9b1a-5e4f-4a2b-9c8d-0e1f2a3b4c5d"
IMAGE = "grok-2-image-1212"
USAGE = f"/v1/billing/teams/{DEMO_TEAM_ID}/usage"
VALIDATION = "/auth/management-keys/validation"


def usage_body(
    start: date,
    end: date,
    *,
    group_by: list[str] | None = None,
    filters: list[str] | None = None,
    time_unit: str = "TIME_UNIT_DAY",
    **time_range: str,
) -> dict[str, Any]:
    return {
        "analyticsRequest": {
            "timeRange": {
                "startTime": f"{start} 00:00:00",
                "endTime": f"{end} 00:00:00",
                "timezone": "Etc/GMT",
                **time_range,
            },
            "timeUnit": time_unit,
            "values": [{"name": "usd", "aggregation": "AGGREGATION_SUM"}],
            "groupBy": ["description"] if group_by is None else group_by,
            "filters": filters or [],
        }
    }


def decimal_json(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def point_value(point: dict[str, Any]) -> Decimal:
    """A missing ``values`` is proto3's way of writing zero."""
    return Decimal(point.get("values", [0])[0])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(clock=lambda: NOW) as running:
        yield running


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY), timeout=5) as http:
        yield http


def series_by_group(payload: dict[str, Any]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    return {tuple(s["group"]): s["dataPoints"] for s in payload.get("timeSeries", [])}


# --- usage data -------------------------------------------------------------------


def test_points_are_dense_one_per_day_including_zero_days(client: httpx.Client) -> None:
    start, end = TODAY - timedelta(days=45), TODAY + timedelta(days=5)
    response = client.post(USAGE, json=usage_body(start, end))

    assert response.status_code == 200
    series = series_by_group(decimal_json(response))
    assert set(series) == {(label,) for label in MODELS}
    expected = [f"{start + timedelta(days=i)}T00:00:00Z" for i in range(50)]
    for points in series.values():
        assert [p["timestamp"] for p in points] == expected
    code = series[("Chat grok-code-fast-1",)]
    assert point_value(code[0]) == 0 and "values" in code[0]
    assert point_value(code[-5]) > 0, "today is partial"
    assert all(point_value(p) == 0 for p in code[-4:])
    assert "limitReached" not in response.json()


def test_served_values_are_exactly_the_oracle(sandbox: Sandbox, client: httpx.Client) -> None:
    start = TODAY - timedelta(days=30)
    response = client.post(USAGE, json=usage_body(start, TODAY + timedelta(days=2)))

    for (label,), points in series_by_group(decimal_json(response)).items():
        for offset, point in enumerate(points):
            assert point_value(point) == sandbox.cost(
                DEMO_TEAM_ID, label, start + timedelta(offset)
            )
    numbers = re.findall(r'"values":\[([^\]]*)\]', response.text)
    assert numbers and all(re.fullmatch(r"0|[1-9]\d*(\.\d{1,8})?|0\.\d{1,8}", n) for n in numbers)
    assert "[0]" in response.text


def test_image_zero_days_leave_values_out(sandbox: Sandbox, client: httpx.Client) -> None:
    start = TODAY - timedelta(days=14)
    response = client.post(USAGE, json=usage_body(start, TODAY + timedelta(days=1)))

    image = series_by_group(response.json())[(IMAGE,)]
    bare = [p for p in image if "values" not in p]
    assert bare, "the image model has zero days (weekends at least)"
    for point in bare:
        day = date.fromisoformat(point["timestamp"][:10])
        assert sandbox.cost(DEMO_TEAM_ID, IMAGE, day) == 0


def test_today_is_partial_and_the_future_is_zero() -> None:
    label = "Chat grok-3-mini"
    with Sandbox(clock=lambda: NOW) as at_noon:
        partial = at_noon.cost(DEMO_TEAM_ID, label, TODAY)
        assert at_noon.cost(DEMO_TEAM_ID, label, TODAY + timedelta(days=1)) == 0
    with Sandbox(clock=lambda: NOW + timedelta(days=1)) as tomorrow:
        full = tomorrow.cost(DEMO_TEAM_ID, label, TODAY)

    assert partial == (full / 2).quantize(Decimal("0.00000001"))
    assert 0 < partial < full


def test_synthetic_spend_has_a_shape(sandbox: Sandbox) -> None:
    grok4 = "Chat grok-4-0709"
    spike = sandbox.cost(DEMO_TEAM_ID, grok4, TODAY - timedelta(days=10))
    week_before = sandbox.cost(DEMO_TEAM_ID, grok4, TODAY - timedelta(days=17))
    assert spike > 3 * week_before

    days = [TODAY - timedelta(days=i) for i in range(1, 29)]
    mini = {d: sandbox.cost(DEMO_TEAM_ID, "Chat grok-3-mini", d) for d in days}
    weekend = [v for d, v in mini.items() if d.weekday() >= 5]
    weekday = [v for d, v in mini.items() if d.weekday() < 5]
    assert max(weekend) < min(weekday)

    code = "Chat grok-code-fast-1"
    assert sandbox.cost(DEMO_TEAM_ID, code, TODAY - timedelta(days=21)) == 0
    assert sandbox.cost(DEMO_TEAM_ID, code, TODAY - timedelta(days=20)) > 0

    ours = sandbox.cost(DEMO_TEAM_ID, grok4, TODAY - timedelta(days=1))
    assert ours != sandbox.cost(OTHER_TEAM, grok4, TODAY - timedelta(days=1))


def test_key_shares_add_up_to_the_model_total(sandbox: Sandbox, client: httpx.Client) -> None:
    start = TODAY - timedelta(days=20)
    body = usage_body(start, TODAY + timedelta(days=1), group_by=["description", "api_key_id"])
    payload = decimal_json(client.post(USAGE, json=body))
    keys = dict(sandbox.api_keys(DEMO_TEAM_ID))
    assert sorted(keys.values()) == ["production", "staging"]

    totals: dict[tuple[str, date], Decimal] = {}
    for series in payload["timeSeries"]:
        label, key_id = series["group"]
        assert series["groupLabels"] == [label, keys[key_id]]
        for offset, point in enumerate(series["dataPoints"]):
            day = start + timedelta(offset)
            share = point_value(point)
            assert share == sandbox.cost(DEMO_TEAM_ID, label, day, api_key_id=key_id)
            totals[label, day] = totals.get((label, day), Decimal(0)) + share
    for (label, day), total in totals.items():
        assert total == sandbox.cost(DEMO_TEAM_ID, label, day)


def test_group_by_order_is_respected(sandbox: Sandbox, client: httpx.Client) -> None:
    body = usage_body(TODAY - timedelta(days=3), TODAY, group_by=["api_key_id", "description"])
    payload = client.post(USAGE, json=body).json()
    keys = dict(sandbox.api_keys(DEMO_TEAM_ID))

    for series in payload["timeSeries"]:
        key_id, label = series["group"]
        uuid.UUID(key_id)
        assert label in MODELS
        assert series["groupLabels"] == [keys[key_id], label]


def test_filter_by_key_and_one_bucket_for_the_whole_range(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    staging = sandbox.api_keys(DEMO_TEAM_ID)[1][0]
    start, end = TODAY - timedelta(days=7), TODAY
    body = usage_body(start, end, filters=[f"api_key_id:{staging}"], time_unit="TIME_UNIT_NONE")
    payload = decimal_json(client.post(USAGE, json=body))

    for (label,), points in series_by_group(payload).items():
        assert [p["timestamp"] for p in points] == [f"{start}T00:00:00Z"]
        days = [start + timedelta(i) for i in range(7)]
        expected = sum(sandbox.cost(DEMO_TEAM_ID, label, d, staging) for d in days)
        assert point_value(points[0]) == expected


def test_a_range_with_no_spend_has_no_series(client: httpx.Client) -> None:
    body = usage_body(TODAY + timedelta(days=1), TODAY + timedelta(days=3))
    assert client.post(USAGE, json=body).json() == {}


# --- auth ---------------------------------------------------------------------------


def test_validation_describes_the_key(client: httpx.Client) -> None:
    response = client.get(VALIDATION)

    assert response.status_code == 200
    data = response.json()
    assert data["redactedApiKey"] == "xai-…beef"
    assert data["teamId"] == data["scopeId"] == DEMO_TEAM_ID
    assert data["scope"] == "SCOPE_TEAM"
    assert data["acls"] == ["team:billing:read"]
    assert data["createTime"].endswith("Z")


@pytest.mark.parametrize(
    ("setup", "header", "status", "code"),
    [
        (None, None, 401, 16),
        (None, "Bearer xai-nobody", 401, 16),
        (None, "Basic xyz", 401, 16),
        ("revoked", "Bearer xai-revoked-0001", 401, 16),
        ("inference", "Bearer xai-chat-0002", 403, 7),
    ],
)
def test_validation_refuses_bad_keys(
    sandbox: Sandbox, setup: str | None, header: str | None, status: int, code: int
) -> None:
    if setup == "revoked":
        sandbox.add_key("xai-revoked-0001", DEMO_TEAM_ID)
        sandbox.revoke_key("xai-revoked-0001")
    if setup == "inference":
        sandbox.add_key("xai-chat-0002", DEMO_TEAM_ID, kind="inference")
    headers = {"Authorization": header} if header else {}
    response = httpx.get(sandbox.url + VALIDATION, headers=headers)

    assert response.status_code == status
    assert response.json()["code"] == code


def test_validation_of_a_key_without_billing_scope_has_no_acl(sandbox: Sandbox) -> None:
    sandbox.add_key("xai-noscope-0003", DEMO_TEAM_ID, billing_read=False)
    data = httpx.get(sandbox.url + VALIDATION, headers=bearer("xai-noscope-0003")).json()
    assert "acls" not in data


@pytest.mark.parametrize(
    ("key", "path_team", "status", "answer"),
    [
        ("xai-nobody", DEMO_TEAM_ID, 401, {"code": 16, "message": "invalid management key"}),
        (
            "xai-chat-0002",
            DEMO_TEAM_ID,
            403,
            {"code": 7, "message": "this endpoint requires a management key"},
        ),
        (
            "xai-revoked-0005",
            DEMO_TEAM_ID,
            401,
            {"code": 16, "message": "management key has been revoked"},
        ),
        (
            "xai-office-0006",
            DEMO_TEAM_ID,
            403,
            {
                "code": 7,
                "message": "request from IP 127.0.0.1 is not in the key's allowed IP ranges",
            },
        ),
        (DEMO_KEY, OTHER_TEAM, 403, {"code": 7, "message": "team mismatch"}),
        ("xai-gone-0004", DELETED_TEAM, 404, {"code": 5, "message": "team not found"}),
        (
            "xai-noscope-0003",
            DEMO_TEAM_ID,
            403,
            {"code": 7, "message": "missing permission: billing read"},
        ),
    ],
)
def test_billing_paths_refuse_with_the_reason(
    sandbox: Sandbox, key: str, path_team: str, status: int, answer: dict[str, Any]
) -> None:
    sandbox.add_key("xai-chat-0002", DEMO_TEAM_ID, kind="inference")
    sandbox.add_key("xai-noscope-0003", DEMO_TEAM_ID, billing_read=False)
    sandbox.add_key("xai-gone-0004", DELETED_TEAM)
    sandbox.delete_team(DELETED_TEAM)
    sandbox.add_key("xai-revoked-0005", DEMO_TEAM_ID)
    sandbox.revoke_key("xai-revoked-0005")
    sandbox.add_key("xai-office-0006", DEMO_TEAM_ID, allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    url = f"{sandbox.url}/v1/billing/teams/{path_team}"

    with httpx.Client(headers=bearer(key)) as http:
        for response in (
            http.post(f"{url}/usage", json=usage_body(TODAY, TODAY + timedelta(1))),
            http.get(f"{url}/postpaid/invoice/preview"),
            http.get(f"{url}/postpaid/spending-limits"),
            http.get(f"{url}/prepaid/balance"),
        ):
            assert (response.status_code, response.json()) == (status, answer)


# --- strict request validation -----------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["timeRange"].update(startTime="2026-10-01T00:00:00"),
        lambda r: r["timeRange"].update(endTime="2026-10-02 00:00:00Z"),
        lambda r: r["timeRange"].update(timezone="UTC"),
        lambda r: r["timeRange"].update(endTime=r["timeRange"]["startTime"]),
        lambda r: r.update(groupBy=["model"]),
        lambda r: r.update(groupBy=["description", "description"]),
        lambda r: r.update(timeUnit="TIME_UNIT_HOUR"),
        lambda r: r.update(values=[{"name": "tokens", "aggregation": "AGGREGATION_SUM"}]),
        lambda r: r.update(filters="api_key_id:x"),
        lambda r: r.update(limit=10),
        lambda r: r.pop("timeRange"),
    ],
)
def test_malformed_usage_requests_are_refused(client: httpx.Client, change: Any) -> None:
    body = usage_body(date(2026, 10, 1), date(2026, 10, 5))
    change(body["analyticsRequest"])

    response = client.post(USAGE, json=body)

    assert response.status_code == 400
    assert response.json()["code"] == 3


def test_a_body_that_is_not_json_is_refused(client: httpx.Client) -> None:
    response = client.post(USAGE, content=b"{nope", headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (400, 3)


def test_without_key_breakdown_api_key_id_is_refused() -> None:
    with (
        Sandbox(clock=lambda: NOW, key_breakdown=False) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY)) as http,
    ):
        start = TODAY - timedelta(days=2)
        refused = http.post(USAGE, json=usage_body(start, TODAY, group_by=["api_key_id"]))
        served = http.post(USAGE, json=usage_body(start, TODAY))

    assert (refused.status_code, refused.json()["code"]) == (400, 3)
    assert served.status_code == 200


def test_a_key_limited_to_ip_ranges_works_from_inside_them(sandbox: Sandbox) -> None:
    sandbox.add_key("xai-local-0007", DEMO_TEAM_ID, allowed_ips=["127.0.0.0/8"])
    with httpx.Client(base_url=sandbox.url, headers=bearer("xai-local-0007")) as http:
        assert http.get(VALIDATION).status_code == 200
        assert http.post(USAGE, json=usage_body(TODAY, TODAY + timedelta(1))).status_code == 200


def test_a_revoked_key_added_again_works_again(sandbox: Sandbox) -> None:
    sandbox.add_key("xai-again-0008", DEMO_TEAM_ID)
    sandbox.revoke_key("xai-again-0008")
    refused = httpx.get(sandbox.url + VALIDATION, headers=bearer("xai-again-0008"))
    sandbox.add_key("xai-again-0008", DEMO_TEAM_ID)
    accepted = httpx.get(sandbox.url + VALIDATION, headers=bearer("xai-again-0008"))

    assert refused.json() == {"code": 16, "message": "management key has been revoked"}
    assert accepted.status_code == 200


def test_many_keys_split_each_model_exactly() -> None:
    with (
        Sandbox(clock=lambda: NOW, api_key_count=9) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY)) as http,
    ):
        day = TODAY - timedelta(days=3)
        body = usage_body(day, day + timedelta(1), group_by=["description", "api_key_id"])
        per_key = series_by_group(decimal_json(http.post(USAGE, json=body)))
        keys = sandbox.api_keys(DEMO_TEAM_ID)
        assert len(keys) == len({key_id for key_id, _ in keys}) == 9
        for label in MODELS:
            total = sandbox.cost(DEMO_TEAM_ID, label, day)
            shares = [sandbox.cost(DEMO_TEAM_ID, label, day, key_id) for key_id, _ in keys]
            assert sum(shares) == total and all(share >= 0 for share in shares)
            served = [per_key[(label, key_id)] for key_id, _ in keys if (label, key_id) in per_key]
            assert sum(point_value(points[0]) for points in served) == total


def test_more_groups_than_allowed_are_cut_off() -> None:
    """A day per model and key is 6 x 8 series; per model it is 6: only the first is cut."""
    with (
        Sandbox(clock=lambda: NOW, api_key_count=8, max_groups=20) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY)) as http,
    ):
        day = TODAY - timedelta(days=3)
        keyed = usage_body(day, day + timedelta(1), group_by=["description", "api_key_id"])
        cut = http.post(USAGE, json=keyed).json()
        whole = http.post(USAGE, json=usage_body(day, day + timedelta(1))).json()

    assert cut["limitReached"] is True and len(cut["timeSeries"]) == 20
    assert "limitReached" not in whole and len(whole["timeSeries"]) <= 6


def test_a_range_longer_than_the_limit_is_cut_off() -> None:
    with (
        Sandbox(clock=lambda: NOW, max_range_days=5) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY)) as http,
    ):
        start = TODAY - timedelta(days=20)
        cut = http.post(USAGE, json=usage_body(start, start + timedelta(days=10))).json()
        whole = http.post(USAGE, json=usage_body(start, start + timedelta(days=5))).json()

    assert cut["limitReached"] is True
    assert all(len(s["dataPoints"]) == 5 for s in cut["timeSeries"])
    assert "limitReached" not in whole


# --- faults -------------------------------------------------------------------------


def test_status_fault_with_retry_after_then_spent(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.add_fault("validation", status=429, retry_after=2)

    limited = client.get(VALIDATION)
    after = client.get(VALIDATION)

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json()["code"] == 8
    assert after.status_code == 200


def test_status_fault_counts_down_and_targets_its_endpoint(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    sandbox.add_fault("usage", status=503, times=2)
    body = usage_body(TODAY - timedelta(days=1), TODAY)

    assert client.get(VALIDATION).status_code == 200
    first, second, third = (client.post(USAGE, json=body) for _ in range(3))

    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.json() == {"code": 14, "message": "service unavailable"}
    assert "Retry-After" not in first.headers


def test_a_forever_fault_lasts_until_cleared(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.add_fault(status=500, times=0, message="boom")

    statuses = [client.get(VALIDATION).status_code for _ in range(3)]
    sandbox.clear_faults()

    assert statuses == [500, 500, 500]
    assert client.get(VALIDATION).status_code == 200


def test_hang_times_out_and_stop_cuts_it_short() -> None:
    sandbox = Sandbox().start()
    sandbox.add_fault("validation", kind="hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sandbox.url + VALIDATION, headers=bearer(DEMO_KEY), timeout=0.3)

    began = time.monotonic()
    sandbox.stop()

    assert time.monotonic() - began < 2


def test_truncate_breaks_the_body(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.add_fault("usage", kind="truncate")

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(USAGE, json=usage_body(TODAY - timedelta(days=3), TODAY))
    assert client.get(VALIDATION).status_code == 200


def test_limit_reached_fault_flags_a_normal_answer(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.add_fault("usage", kind="limit_reached")
    body = usage_body(TODAY - timedelta(days=3), TODAY)

    flagged = client.post(USAGE, json=body).json()

    assert flagged["limitReached"] is True
    assert len(flagged["timeSeries"][0]["dataPoints"]) == 3
    assert "limitReached" not in client.post(USAGE, json=body).json()


def test_a_fault_can_name_its_usage_request_by_grouping(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    """A sync asks for costs per key and by unit type at once: a fault meant for one
    must not be spent by the other, whichever arrives first."""
    sandbox.add_fault("usage", group_by=["description", "api_key_id"], status=400, message="no")
    start = TODAY - timedelta(days=3)

    by_kind = client.post(
        USAGE, json=usage_body(start, TODAY, group_by=["description", "unit_type"])
    )
    by_model = client.post(USAGE, json=usage_body(start, TODAY))
    by_key = client.post(
        USAGE, json=usage_body(start, TODAY, group_by=["api_key_id", "description"])
    )
    again = client.post(
        USAGE, json=usage_body(start, TODAY, group_by=["description", "api_key_id"])
    )

    assert [r.status_code for r in (by_kind, by_model, by_key, again)] == [200, 200, 400, 200]
    assert by_key.json()["message"] == "no"  # the order of the fields does not matter

    sandbox.add_fault("usage", group_by=iter(["description", "unit_type"]), status=400)
    by_kind = client.post(
        USAGE, json=usage_body(start, TODAY, group_by=["description", "unit_type"])
    )
    assert by_kind.status_code == 400  # any iterable of names, read once


def test_bad_faults_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.add_fault("usages")
    with pytest.raises(ValueError):
        sandbox.add_fault(kind="explode")
    with pytest.raises(ValueError, match="usage"):
        sandbox.add_fault("invoice", group_by=["description"])  # only usage is grouped
    with pytest.raises(ValueError, match="model"):
        sandbox.add_fault("usage", group_by=["description", "model"])
    with pytest.raises(ValueError, match="list"):
        sandbox.add_fault("usage", group_by="description")
    with pytest.raises(ValueError, match="twice"):
        sandbox.add_fault("usage", group_by=["description", "description"])


# --- other endpoints ----------------------------------------------------------------


def test_invoice_preview_adds_up_the_month_to_date(sandbox: Sandbox, client: httpx.Client) -> None:
    data = client.get(f"/v1/billing/teams/{DEMO_TEAM_ID}/postpaid/invoice/preview").json()

    days = [TODAY.replace(day=d) for d in range(1, TODAY.day + 1)]
    # One line per model and kind of usage, as xAI itemises a bill.
    lines = {(line["description"], line["unitType"]): line for line in data["coreInvoice"]["lines"]}
    assert {unit for _, unit in lines} == set(UNIT_TYPES)
    for label in MODELS:
        usd = sum(sandbox.cost(DEMO_TEAM_ID, label, d) for d in days)
        parts = {unit: line for (model, unit), line in lines.items() if model == label}
        # int64 fields are bare strings in proto3 JSON, as in billing.proto
        amounts = [int(line["amount"]) for line in parts.values()]
        assert abs(sum(amounts) - usd * 100) <= len(amounts) / 2  # each line rounds to a cent
        for unit, line in parts.items():
            share = sum(sandbox.unit_cost(DEMO_TEAM_ID, label, d, unit) for d in days)
            assert line["amount"] == str(round(share * 100))
            assert re.fullmatch(r"[1-9][0-9]*", line["unitPrice"])
            assert int(line["numUnits"]) == int(share * 100 * 1_000_000 / int(line["unitPrice"]))
    total = sum(int(line["amount"]) for line in lines.values())
    assert data["coreInvoice"]["prepaidCreditsUsed"] == {"val": str(min(total, 20000))}
    assert data["coreInvoice"]["prepaidCredits"] == {"val": "-20000"}
    assert data["billingCycle"] == {"year": 2026, "month": 10}
    assert data["effectiveSpendingLimit"] == "100000"


def test_limits_balance_and_past_invoices(client: httpx.Client) -> None:
    team = f"/v1/billing/teams/{DEMO_TEAM_ID}"

    limits = client.get(f"{team}/postpaid/spending-limits").json()["spendingLimits"]
    balance = client.get(f"{team}/prepaid/balance").json()
    invoices = client.get(f"{team}/invoices", params={"since.year": 2026, "since.month": 8})

    assert limits["effectiveSl"] == {"val": "100000"}
    assert limits["effectiveHardSl"] == {"val": "150000"}
    assert balance == {"changes": [], "total": {"val": "-20000"}}
    cycles = [i["monthly"]["billingCycle"] for i in invoices.json()["invoices"]]
    assert cycles == [{"year": 2026, "month": 9}, {"year": 2026, "month": 8}]


def preview(sandbox: Sandbox) -> dict[str, Any]:
    url = f"{sandbox.url}/v1/billing/teams/{DEMO_TEAM_ID}/postpaid/invoice/preview"
    return httpx.get(url, headers=bearer(DEMO_KEY)).json()


def test_a_preview_with_totals_states_its_own_bill_beside_lines_rounded_each() -> None:
    with Sandbox(clock=lambda: NOW, invoice_shape="full", vat_percent=20) as sandbox:
        core = preview(sandbox)["coreInvoice"]
        bill = sandbox.bill(DEMO_TEAM_ID)

    days = [TODAY.replace(day=d) for d in range(1, TODAY.day + 1)]
    usage = sum((sandbox.cost(DEMO_TEAM_ID, m, d) for m in MODELS for d in days), Decimal(0))
    assert bill.usage == usage
    cents = round(usage * 100)
    assert core["amountBeforeVat"] == str(cents)  # the exact usage, rounded once
    assert core["vatCost"] == str(round(cents * Decimal("0.2")))
    assert core["amountAfterVat"] == str(cents + int(core["vatCost"]))
    assert core["totalWithCorr"] == {"val": core["amountAfterVat"]}
    lines = sum(int(line["amount"]) for line in core["lines"])
    assert lines != cents and abs(lines - cents) <= len(core["lines"]) / 2  # each line rounds
    assert bill.stated == bill.total_with_corrections == Decimal(core["amountAfterVat"]) / 100
    assert core["prepaidCreditsUsed"] == {"val": "20000"}  # $200 used up by the 15th
    assert bill.invoiced == bill.stated - 200


def test_a_preview_can_carry_totals_and_no_lines_and_a_correction() -> None:
    with Sandbox(clock=lambda: NOW, invoice_shape="totals", correction_cents=-1234) as sandbox:
        core = preview(sandbox)["coreInvoice"]
        bill = sandbox.bill(DEMO_TEAM_ID)

    assert "lines" not in core and "vatCost" not in core  # proto3 leaves zero out
    assert core["amountAfterVat"] == core["amountBeforeVat"] == str(round(bill.usage * 100))
    assert core["totalWithCorr"] == {"val": str(int(core["amountAfterVat"]) - 1234)}
    assert bill.stated == bill.total - Decimal("12.34")


def test_prepaid_credit_is_used_as_far_as_it_goes() -> None:
    with Sandbox(clock=lambda: NOW, invoice_shape="full", prepaid_cents=10**9) as rich:
        plenty = preview(rich)["coreInvoice"]
        assert rich.bill(DEMO_TEAM_ID).invoiced == 0
    assert plenty["prepaidCreditsUsed"] == plenty["totalWithCorr"]
    assert plenty["prepaidCredits"] == {"val": str(-(10**9))}
    with Sandbox(clock=lambda: NOW, invoice_shape="full", prepaid_cents=5000) as poor:
        used_up = preview(poor)["coreInvoice"]
        bill = poor.bill(DEMO_TEAM_ID)
    assert used_up["prepaidCreditsUsed"] == {"val": "5000"}
    assert bill.invoiced == bill.stated - 50 > 0


def test_past_invoices_carry_their_status_and_can_be_broken() -> None:
    with Sandbox(clock=lambda: NOW, vat_percent=10, top_up_invoices=True) as sandbox:
        sandbox.set_invoice(2026, 9, "PENDING")
        sandbox.set_invoice(2026, 8, "PAID", malformed="total")
        sandbox.set_invoice(2026, 7, "FAILED", malformed="cycle")
        sandbox.set_invoice(2026, 5, listed=False)  # not issued
        url = f"{sandbox.url}/v1/billing/teams/{DEMO_TEAM_ID}/invoices"
        listed = httpx.get(
            url, params={"since.year": 2026, "since.month": 5}, headers=bearer(DEMO_KEY)
        ).json()["invoices"]
        september = sandbox.past_bill(DEMO_TEAM_ID, 2026, 9)

    monthly = [i for i in listed if "monthly" in i]
    assert len(listed) - len(monthly) == 5  # a prepaid top-up each month, not a bill
    assert all("prepaid" in i for i in listed if "monthly" not in i)
    assert [i["invoiceStatus"] for i in monthly] == ["PENDING", "PAID", "FAILED", "PAID"]
    assert monthly[0]["subtotal"] == str(round(september.usage * 100))
    assert int(monthly[0]["total"]) == int(monthly[0]["subtotal"]) + int(monthly[0]["tax"])
    assert Decimal(monthly[0]["total"]) / 100 == september.total
    assert monthly[1]["total"] == "twelve dollars"
    assert monthly[2]["monthly"] == {}
    with pytest.raises(ValueError, match="status must be one of"):
        sandbox.set_invoice(2026, 9, "REFUNDED")
    with pytest.raises(ValueError, match="malformed must be one of"):
        sandbox.set_invoice(2026, 9, malformed="lines")


def test_a_past_invoice_is_set_over_http(sandbox: Sandbox, client: httpx.Client) -> None:
    control = f"{sandbox.url}/__sandbox__/invoices"
    assert httpx.post(control, json={"year": 2026, "month": 9, "status": "PENDING"}).is_success
    refused = httpx.post(control, json={"year": 2026, "month": 9, "status": "LOST"})
    listed = client.get(f"/v1/billing/teams/{DEMO_TEAM_ID}/invoices").json()["invoices"]
    assert listed[0]["invoiceStatus"] == "PENDING" and refused.status_code == 400


def test_a_finished_day_grows_until_it_has_settled() -> None:
    clock = [datetime(2026, 10, 15, 0, 0, tzinfo=UTC)]
    with Sandbox(clock=lambda: clock[0], settle_hours=16) as sandbox:
        day = date(2026, 10, 14)
        final = sandbox.final_cost(DEMO_TEAM_ID, "Chat grok-4-0709", day)
        at_midnight = sandbox.cost(DEMO_TEAM_ID, "Chat grok-4-0709", day)
        clock[0] = datetime(2026, 10, 15, 8, 0, tzinfo=UTC)
        later = sandbox.cost(DEMO_TEAM_ID, "Chat grok-4-0709", day)
        clock[0] = sandbox.settled_at(day)
        settled = sandbox.cost(DEMO_TEAM_ID, "Chat grok-4-0709", day)
        assert sandbox.final_cost(DEMO_TEAM_ID, "Chat grok-4-0709", day) == final

    assert sandbox.settled_at(day) == datetime(2026, 10, 15, 16, 0, tzinfo=UTC)
    assert at_midnight == (final * Decimal("0.6")).quantize(Decimal("0.00000001"))  # 24 of 40 h
    assert at_midnight < later < settled == final
    with Sandbox(clock=lambda: NOW) as settled_at_once:  # the default: final at midnight
        yesterday = TODAY - timedelta(days=1)
        assert settled_at_once.cost(DEMO_TEAM_ID, IMAGE, yesterday) == (
            settled_at_once.final_cost(DEMO_TEAM_ID, IMAGE, yesterday)
        )


@pytest.mark.parametrize(
    "knob",
    [
        {"invoice_shape": "pdf"},
        {"settle_hours": -1},
        {"prepaid_cents": -5},
        {"vat_percent": "-1"},
    ],
)
def test_bad_billing_knobs_are_refused(knob: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Sandbox(**knob)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/postpaid/invoice/preview"),
        ("PUT", "/postpaid/spending-limits"),
        ("POST", "/prepaid/top-up"),
        ("DELETE", "/prepaid/balance"),
        ("PATCH", "/usage"),
        ("GET", "/usage"),
    ],
)
def test_write_methods_are_not_allowed(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, f"/v1/billing/teams/{DEMO_TEAM_ID}{path}", json={})
    assert (response.status_code, response.json()["code"]) == (405, 12)


def test_unknown_paths_are_not_found(client: httpx.Client) -> None:
    response = client.get("/v1/models")
    assert (response.status_code, response.json()) == (404, {"code": 5, "message": "Not Found"})


# --- control, log, transport ----------------------------------------------------------


def test_control_over_http(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as http:
        added = http.post(
            "/__sandbox__/keys",
            json={"key": "xai-remote-0005", "team_id": OTHER_TEAM, "name": "bench"},
        )
        valid = http.get(VALIDATION, headers=bearer("xai-remote-0005")).json()
        http.post("/__sandbox__/faults", json={"endpoint": "validation", "status": 502})
        faulted = http.get(VALIDATION, headers=bearer("xai-remote-0005"))
        http.post("/__sandbox__/faults", json={"status": 500, "times": 0})
        http.delete("/__sandbox__/faults")
        http.post("/__sandbox__/revoke", json={"key": "xai-remote-0005"})
        revoked = http.get(VALIDATION, headers=bearer("xai-remote-0005"))
        bad = http.post("/__sandbox__/faults", json={"kind": "explode"})
        http.post(
            "/__sandbox__/faults",
            json={"endpoint": "usage", "group_by": ["description", "unit_type"], "status": 400},
        )
        day = (TODAY - timedelta(days=1), TODAY)
        by_model = http.post(USAGE, json=usage_body(*day), headers=bearer(DEMO_KEY))
        by_kind = http.post(
            USAGE,
            json=usage_body(*day, group_by=["description", "unit_type"]),
            headers=bearer(DEMO_KEY),
        )
        log = http.get("/__sandbox__/requests").json()

    assert added.json() == {"ok": True}
    assert (valid["teamId"], valid["name"]) == (OTHER_TEAM, "bench")
    assert faulted.status_code == 502
    assert revoked.status_code == 401
    assert bad.status_code == 400
    assert (by_model.status_code, by_kind.status_code) == (200, 400)
    assert log["count"] == 5
    assert [r["status"] for r in log["requests"]] == [200, 502, 401, 200, 400]
    assert "body" not in log["requests"][0]


def test_the_request_log_never_holds_a_key(sandbox: Sandbox, client: httpx.Client) -> None:
    httpx.post(sandbox.url + "/__sandbox__/keys", json={"key": "xai-secret-9999", "team_id": "t"})
    client.get(VALIDATION)
    client.post(USAGE, json=usage_body(TODAY - timedelta(days=1), TODAY))
    httpx.get(sandbox.url + VALIDATION, headers=bearer("xai-secret-9999"))

    recorded = repr(sandbox.requests) + httpx.get(sandbox.url + "/__sandbox__/requests").text
    assert len(sandbox.requests) == 3
    assert sandbox.requests[1].body == usage_body(TODAY - timedelta(days=1), TODAY)
    assert DEMO_KEY not in recorded and "xai-secret-9999" not in recorded
    assert "Bearer" not in recorded


def test_many_concurrent_requests_with_latency_overlap() -> None:
    with (
        Sandbox(clock=lambda: NOW, latency=0.1) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY)) as http,
        ThreadPoolExecutor(max_workers=50) as pool,
    ):
        began = time.monotonic()
        statuses = list(pool.map(lambda _: http.get(VALIDATION).status_code, range(50)))
        elapsed = time.monotonic() - began

    assert statuses == [200] * 50
    assert elapsed < 1.5


def test_the_log_says_when_each_request_arrived_and_was_answered() -> None:
    """So a test can tell requests sent at once from requests sent one after another."""
    with (
        Sandbox(clock=lambda: NOW, latency=0.2) as sandbox,
        httpx.Client(base_url=sandbox.url, headers=bearer(DEMO_KEY)) as http,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        list(pool.map(lambda _: http.get(VALIDATION), range(2)))
        http.get(VALIDATION)
        first, second, third = sandbox.requests

    assert all(r.answered - r.arrived >= 0.2 for r in (first, second, third))
    assert first.arrived < second.answered and second.arrived < first.answered  # overlapped
    assert third.arrived >= max(first.answered, second.answered)  # sent after both answers


def test_connections_are_kept_alive(sandbox: Sandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(sandbox.url.rsplit(":", 1)[1]))
    try:
        connection.request("GET", VALIDATION, headers=bearer(DEMO_KEY))
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", VALIDATION, headers=bearer(DEMO_KEY))
        second = connection.getresponse()
        second.read()
        assert first.status == second.status == 200
        assert connection.sock is sock is not None
    finally:
        connection.close()


def test_serve_forever_announces_its_url_and_stops_on_ctrl_c() -> None:
    seen: list[str] = []

    def ready(url: str) -> None:
        seen.append(url)
        assert httpx.get(url + VALIDATION, headers=bearer(DEMO_KEY)).status_code == 200
        raise KeyboardInterrupt

    serve_forever("127.0.0.1", 0, 0.0, ready=ready)

    with pytest.raises(httpx.ConnectError):
        httpx.get(seen[0] + VALIDATION)
