"""The xAI provider against a respx stand-in for the Management API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest
import respx

from providers.hookspecs import hookimpl
from providers.http import RetryPolicy, send_with_retries
from providers.manager import load_providers, plugin_manager
from providers.types import (
    CheckResult,
    CostFetch,
    CostRow,
    Provider,
    ProviderError,
    Reason,
    ResultTruncated,
)
from providers.xai.provider import DEFAULT_BASE_URL, XaiProvider, model_id
from tests.providers.conftest import RecordingSleep

pytestmark = pytest.mark.anyio

BASE = "https://management-api.test"
TEAM = "65c1e471-205f-4566-9c5a-07198bcdf4ce"
OTHER_TEAM = "0b6f2a1e-93a4-4c0e-8d7e-5a1f3c2b9d10"
KEY = "xai-mgmt-Sup3rS3cretValue0123456789beef"
CREDS = {"team_id": TEAM, "management_key": KEY}
USAGE = f"/v1/billing/teams/{TEAM}/usage"
VALIDATION = "/auth/management-keys/validation"
INVOICE = f"/v1/billing/teams/{TEAM}/postpaid/invoice/preview"
LIMITS = f"/v1/billing/teams/{TEAM}/postpaid/spending-limits"
INVOICES = f"/v1/billing/teams/{TEAM}/invoices"
OCT_1, OCT_3 = date(2026, 10, 1), date(2026, 10, 3)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def provider(sleep: RecordingSleep) -> XaiProvider:
    return XaiProvider(base_url=BASE, sleep=sleep)


@pytest.fixture
def xai():
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


def point(day: str, value: object) -> dict:
    return {"timestamp": f"{day}T00:00:00Z", "values": [value]}


def series(label: str, *points: dict, key: str | None = None, key_label: str | None = None):
    group, labels = [label], [label]
    if key is not None:
        group.append(key)
        labels.append(key_label if key_label is not None else key)
    return {"group": group, "groupLabels": labels, "dataPoints": list(points)}


def usage(*all_series: dict, **extra) -> httpx.Response:
    return httpx.Response(200, json={"timeSeries": list(all_series), **extra})


def sent_body(route: respx.Route, index: int = -1) -> dict:
    return json.loads(route.calls[index].request.content)


def assert_no_key(*things: object) -> None:
    for thing in things:
        assert KEY not in str(thing)
        assert KEY not in repr(thing)


# -- the usage request --------------------------------------------------------


async def test_usage_request_has_the_documented_body_and_headers(provider, xai, http):
    route = xai.post(USAGE).mock(return_value=usage())

    await provider.fetch_daily_costs(http, CREDS, OCT_1, date(2026, 11, 1))

    request = route.calls.last.request
    assert request.url == f"{BASE}{USAGE}"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert sent_body(route) == {
        "analyticsRequest": {
            "timeRange": {
                "startTime": "2026-10-01 00:00:00",
                "endTime": "2026-11-01 00:00:00",
                "timezone": "Etc/GMT",
            },
            "timeUnit": "TIME_UNIT_DAY",
            "values": [{"name": "usd", "aggregation": "AGGREGATION_SUM"}],
            "groupBy": ["description", "api_key_id"],
            "filters": [],
        }
    }


async def test_without_by_key_groups_by_description_only(provider, xai, http):
    route = xai.post(USAGE).mock(return_value=usage())

    fetched = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    assert sent_body(route)["analyticsRequest"]["groupBy"] == ["description"]
    assert fetched == CostFetch(rows=(), by_key=False)


@pytest.mark.parametrize(
    ("label", "model"),
    [
        ("Chat grok-4-0709", "grok-4-0709"),
        ("Chat grok-4-fast-non-reasoning", "grok-4-fast-non-reasoning"),
        ("Chat grok-code-fast-1", "grok-code-fast-1"),
        ("grok-2-image-1212", "grok-2-image-1212"),
        ("Image grok-2-image-1212", "grok-2-image-1212"),
        ("Embedding v1-large", "v1-large"),
        ("Function grok-3-mini", "grok-3-mini"),
        ("API grok-4.1-fast", "grok-4.1-fast"),
        ("Web search", "Web search"),
        ("Chat with friends", "Chat with friends"),
        ("chat grok-4-0709", "chat grok-4-0709"),
        ("Live Search sources", "Live Search sources"),
        ("grok-9-brand-new", "grok-9-brand-new"),
    ],
)
def test_labels_become_model_ids_and_unknown_labels_are_kept(label, model):
    assert model_id(label) == model


async def test_rows_are_per_day_model_and_key(provider, xai, http):
    xai.post(USAGE).mock(
        return_value=usage(
            series("Chat grok-4-0709", point("2026-10-01", 1.5), key="k1", key_label="ci-bot"),
            series("Chat grok-4-0709", point("2026-10-01", 2), key="k2", key_label=""),
            series("Web search", point("2026-10-02", 0.25), key="k1", key_label="ci-bot"),
        )
    )

    fetched = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert fetched.by_key is True
    assert fetched.rows == (
        CostRow(OCT_1, "grok-4-0709", Decimal("1.5"), "k1", "ci-bot"),
        CostRow(OCT_1, "grok-4-0709", Decimal("2"), "k2", "k2"),
        CostRow(date(2026, 10, 2), "Web search", Decimal("0.25"), "k1", "ci-bot"),
    )


async def test_costs_stay_exact_decimals(provider, xai, http):
    raw = (
        b'{"timeSeries": [{"group": ["Chat grok-4-0709"], "groupLabels": ["Chat grok-4-0709"],'
        b' "dataPoints": [{"timestamp": "2026-10-01T00:00:00Z", "values": [0.75973725]}]},'
        b' {"group": ["Chat grok-3-mini"], "groupLabels": ["Chat grok-3-mini"],'
        b' "dataPoints": [{"timestamp": "2026-10-01T00:00:00Z", "values": [0.1]}]},'
        b' {"group": ["Function grok-3-mini"], "groupLabels": ["Function grok-3-mini"],'
        b' "dataPoints": [{"timestamp": "2026-10-01T00:00:00Z", "values": [0.2]}]},'
        b' {"group": ["grok-2-image-1212"], "groupLabels": ["grok-2-image-1212"],'
        b' "dataPoints": [{"timestamp": "2026-10-01T00:00:00Z", "values": [3]}]}]}'
    )
    xai.post(USAGE).mock(return_value=httpx.Response(200, content=raw))

    rows = (await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)).rows

    costs = {row.model: row.cost_usd for row in rows}
    assert costs == {
        "grok-4-0709": Decimal("0.75973725"),
        "grok-3-mini": Decimal("0.3"),  # 0.1 + 0.2, summed without float error
        "grok-2-image-1212": Decimal("3"),
    }
    assert all(type(cost) is Decimal for cost in costs.values())


async def test_proto3_omissions_read_as_defaults(provider, xai, http):
    xai.post(USAGE).mock(
        return_value=httpx.Response(
            200,
            json={
                "timeSeries": [
                    {"group": ["Chat grok-4-0709"], "dataPoints": [point("2026-10-01", 1)]},
                    {"groupLabels": ["Chat grok-3-mini"]},
                    {
                        "group": ["Chat grok-code-fast-1"],
                        "dataPoints": [{"timestamp": "2026-10-01T00:00:00Z"}],
                    },
                    {"group": ["Chat grok-code-fast-1"], "dataPoints": [point("2026-10-02", None)]},
                    {"dataPoints": [point("2026-10-02", 4)]},
                ]
            },
        )
    )

    rows = (await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)).rows

    assert rows == (
        CostRow(OCT_1, "grok-4-0709", Decimal(1)),
        CostRow(date(2026, 10, 2), "unknown", Decimal(4)),
    )


async def test_an_empty_answer_is_no_rows(provider, xai, http):
    xai.post(USAGE).mock(return_value=httpx.Response(200, json={}))

    assert await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3) == CostFetch((), True)


async def test_zero_days_and_days_outside_the_range_are_dropped(provider, xai, http):
    xai.post(USAGE).mock(
        return_value=usage(
            series(
                "Chat grok-4-0709",
                point("2026-09-30", 9),
                point("2026-10-01", 0),
                point("2026-10-02", 0.5),
                point("2026-10-03", 7),
            )
        )
    )

    rows = (await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)).rows

    assert rows == (CostRow(date(2026, 10, 2), "grok-4-0709", Decimal("0.5")),)


async def test_timestamps_with_offsets_count_on_their_utc_day(provider, xai, http):
    xai.post(USAGE).mock(
        return_value=usage(
            series(
                "Chat grok-4-0709",
                {"timestamp": "2026-10-01T20:00:00-05:00", "values": [1]},  # 01:00Z on the 2nd
                {"timestamp": "2026-10-01T23:30:00.123456789+00:00", "values": [2]},
            )
        )
    )

    rows = (await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)).rows

    assert [(row.day, row.cost_usd) for row in rows] == [
        (OCT_1, Decimal(2)),
        (date(2026, 10, 2), Decimal(1)),
    ]


async def test_duplicate_day_model_key_rows_are_summed(provider, xai, http):
    xai.post(USAGE).mock(
        return_value=usage(
            series("Chat grok-4-0709", point("2026-10-01", 1.25), key="k1"),
            series("grok-4-0709", point("2026-10-01", 0.75), key="k1"),
            series("API grok-4-0709", point("2026-10-01", 1), key="k2"),
        )
    )

    rows = (await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)).rows

    assert rows == (
        CostRow(OCT_1, "grok-4-0709", Decimal("2.00"), "k1", "k1"),
        CostRow(OCT_1, "grok-4-0709", Decimal(1), "k2", "k2"),
    )


async def test_a_cut_off_result_is_never_returned(provider, xai, http):
    xai.post(USAGE).mock(
        return_value=usage(series("Chat grok-4-0709", point("2026-10-01", 1)), limitReached=True)
    )

    with pytest.raises(ResultTruncated) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)
    assert caught.value.reason is Reason.TRUNCATED


async def test_a_refused_key_breakdown_falls_back_to_per_model_rows(provider, xai, http):
    route = xai.post(USAGE).mock(
        side_effect=[
            httpx.Response(400, json={"code": 3, "message": "unknown group by field api_key_id"}),
            usage(series("Chat grok-4-0709", point("2026-10-01", 1))),
        ]
    )

    fetched = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert route.call_count == 2
    assert sent_body(route, 0)["analyticsRequest"]["groupBy"] == ["description", "api_key_id"]
    assert sent_body(route, 1)["analyticsRequest"]["groupBy"] == ["description"]
    assert fetched == CostFetch(rows=(CostRow(OCT_1, "grok-4-0709", Decimal(1)),), by_key=False)


async def test_a_per_key_answer_cut_off_is_asked_again_per_model(provider, xai, http):
    """Keys multiply the series: a team with many keys is cut off per key, not per model."""
    keyed = [series("Chat grok-4-0709", point("2026-10-01", 1), key=f"k{i}") for i in range(9)]
    route = xai.post(USAGE).mock(
        side_effect=[
            usage(*keyed, limitReached=True),
            usage(series("Chat grok-4-0709", point("2026-10-01", "12.5"))),
        ]
    )

    fetched = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert [sent_body(route, i)["analyticsRequest"]["groupBy"] for i in range(2)] == [
        ["description", "api_key_id"],
        ["description"],
    ]
    assert fetched == CostFetch(
        rows=(CostRow(OCT_1, "grok-4-0709", Decimal("12.5")),), by_key=False
    )


async def test_cut_off_even_per_model_is_truncated_after_two_calls(provider, xai, http):
    route = xai.post(USAGE).mock(return_value=usage(limitReached=True))

    with pytest.raises(ResultTruncated):
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)
    assert route.call_count == 2


async def test_a_refused_per_key_query_is_asked_for_again_next_time(provider, xai, http):
    """A 400 on the per-key grouping is not remembered: the next fetch tries it again."""
    route = xai.post(USAGE).mock(
        side_effect=[
            httpx.Response(400, json={"code": 3, "message": "try again"}),
            usage(series("Chat grok-4-0709", point("2026-10-01", 1))),
            usage(series("Chat grok-4-0709", point("2026-10-01", 1), key="k1", key_label="ci")),
        ]
    )

    first = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)
    second = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert (first.by_key, second.by_key) == (False, True)
    assert second.rows == (CostRow(OCT_1, "grok-4-0709", Decimal(1), "k1", "ci"),)
    assert sent_body(route, 2)["analyticsRequest"]["groupBy"] == ["description", "api_key_id"]


async def test_a_400_without_the_key_breakdown_is_a_bad_request(provider, xai, http):
    route = xai.post(USAGE).mock(
        return_value=httpx.Response(400, json={"code": 3, "message": "invalid time range"})
    )

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert route.call_count == 2  # one fallback, then give up
    assert caught.value.reason is Reason.BAD_REQUEST
    assert "invalid time range" in caught.value.message


async def test_windows_longer_than_31_days_are_refused_before_any_call(provider, xai, http):
    route = xai.post(USAGE).mock(return_value=usage())

    with pytest.raises(ValueError):
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_1 + timedelta(days=32))
    with pytest.raises(ValueError):
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_1)
    assert route.call_count == 0

    await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_1 + timedelta(days=31))
    assert route.call_count == 1


@pytest.mark.parametrize(
    "bad",
    [
        httpx.Response(200, text="<html>Bad gateway</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"timeSeries": [series("x", point("2026-10-01", "lots"))]}),
        httpx.Response(200, json={"timeSeries": [{"dataPoints": [{"timestamp": "yesterday"}]}]}),
    ],
)
async def test_unreadable_answers_are_bad_responses(provider, xai, http, bad):
    xai.post(USAGE).mock(return_value=bad)

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)
    assert caught.value.reason is Reason.BAD_RESPONSE


# -- error mapping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "reason", "field", "says"),
    [
        (401, {"code": 16, "message": "unauthenticated"}, Reason.INVALID_KEY, "management_key",
         "not a regular API key"),
        (401, None, Reason.INVALID_KEY, "management_key", "revoked"),
        (403, {"code": 7, "message": "team mismatch"}, Reason.TEAM_MISMATCH, "team_id", TEAM),
        (403, {"code": 7, "message": "key is not valid for this Team"}, Reason.TEAM_MISMATCH,
         "team_id", TEAM),
        (403, {"code": 7, "message": "missing ACL billing:read"}, Reason.MISSING_SCOPE,
         "management_key", "Billing: Read Only"),
        (403, "<html><body>Forbidden</body></html>", Reason.MISSING_SCOPE, "management_key",
         "Team Admin"),
        (404, {"code": 5, "message": "not found"}, Reason.TEAM_NOT_FOUND, "team_id",
         "console.x.ai > your team > Settings"),
        (404, "", Reason.TEAM_NOT_FOUND, "team_id", "deleted"),
        (429, {"code": 8, "message": "slow down"}, Reason.RATE_LIMITED, None, "rate limiting"),
        (500, "", Reason.SERVER_ERROR, None, "HTTP 500"),
        (502, "<html>Bad Gateway</html>", Reason.SERVER_ERROR, None, "HTTP 502"),
        (503, {"code": 14, "message": "unavailable"}, Reason.SERVER_ERROR, None, "unavailable"),
        (504, None, Reason.SERVER_ERROR, None, "HTTP 504"),
        (400, {"code": 3, "message": "bad timezone"}, Reason.BAD_REQUEST, None, "bad timezone"),
        (418, {"message": 42}, Reason.BAD_RESPONSE, None, "418"),
    ],
)  # fmt: skip
async def test_statuses_map_to_reasons(provider, xai, http, status, body, reason, field, says):
    content = json.dumps(body) if isinstance(body, dict) else (body or "")
    xai.post(USAGE).mock(return_value=httpx.Response(status, text=content))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    error = caught.value
    assert (error.reason, error.field) == (reason, field)
    assert says in error.message
    assert_no_key(error)


@pytest.mark.parametrize(
    ("status", "said", "reason", "field", "says"),
    [
        (401, "management key has been revoked", Reason.INVALID_KEY, "management_key",
         "revoked"),
        (401, "api key not found", Reason.INVALID_KEY, "management_key", "not a key xAI knows"),
        (403, "request from IP 203.0.113.9 is not in the key's allowed IP ranges",
         Reason.IP_NOT_ALLOWED, "management_key", "limited to other IP ranges"),
        (401, "source ip address not allowed", Reason.IP_NOT_ALLOWED, "management_key",
         "allowed IP ranges"),
        (403, "this endpoint requires a management key", Reason.INFERENCE_KEY,
         "management_key", "regular API key"),
        (401, "inference API keys cannot call the management API", Reason.INFERENCE_KEY,
         "management_key", "regular API key"),
        (403, "missing permission: billing read", Reason.MISSING_SCOPE, "management_key",
         "Billing: Read Only"),
        (403, "team mismatch", Reason.TEAM_MISMATCH, "team_id", "does not belong"),
        (404, "team has been deleted", Reason.TEAM_DELETED, "team_id", "was deleted"),
        (404, "team not found", Reason.TEAM_NOT_FOUND, "team_id", "belongs to another team"),
    ],
)  # fmt: skip
async def test_refusals_say_which_case_it_is_and_pass_on_xais_words(
    provider, xai, http, status, said, reason, field, says
):
    code = {401: 16, 403: 7, 404: 5}[status]
    xai.post(USAGE).mock(return_value=httpx.Response(status, json={"code": code, "message": said}))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    error = caught.value
    assert (error.reason, error.field) == (reason, field)
    assert error.needs_person
    assert says in error.message
    assert f"(xAI said: {said})" in error.message


async def test_any_key_like_secret_is_scrubbed_from_echoed_messages(provider, xai, http):
    other = "xai-Another0Secret0Key0abcdef123456"
    echo = {"code": 16, "message": f"key {other} was revoked"}
    xai.post(USAGE).mock(return_value=httpx.Response(401, json=echo))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    assert other not in caught.value.message
    assert "key [redacted] was revoked" in caught.value.message


async def test_the_key_is_scrubbed_from_echoed_error_messages(provider, xai, http):
    echo = {"code": 3, "message": f"bad request for Bearer {KEY} on team {TEAM}"}
    xai.post(USAGE).mock(return_value=httpx.Response(400, json=echo))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    assert "[redacted]" in caught.value.message
    assert_no_key(caught.value, caught.value.args)


async def test_rate_limits_carry_the_wait_when_known(provider, xai, http):
    xai.post(USAGE).mock(return_value=httpx.Response(429, headers={"Retry-After": "3600"}))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    assert caught.value.reason is Reason.RATE_LIMITED
    assert caught.value.retry_after == 3600
    assert "3600 seconds" in caught.value.message


# -- retries ------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_says(provider, xai, http, sleep):
    route = xai.post(USAGE).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), usage()]
    )

    await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert route.call_count == 2
    assert sleep.delays == [7.0]


async def test_429_honours_an_http_date_retry_after(provider, xai, http, sleep):
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    xai.post(USAGE).mock(side_effect=[httpx.Response(429, headers={"Retry-After": later}), usage()])

    await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    [delay] = sleep.delays
    assert 27 <= delay <= 30


async def test_429_without_retry_after_backs_off_exponentially(xai, http, sleep):
    policy = RetryPolicy(deadline=60, base_delay=0.5, max_delay=2)
    provider = XaiProvider(base_url=BASE, retry=policy, sleep=sleep)
    xai.post(USAGE).mock(side_effect=[httpx.Response(429)] * 4 + [usage()])

    await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    caps = [0.5, 1, 2, 2]  # base * 2**attempt, capped at max_delay; full jitter below it
    assert len(sleep.delays) == 4
    assert all(0 <= delay <= cap for delay, cap in zip(sleep.delays, caps, strict=True))


async def test_a_503_then_200_succeeds(provider, xai, http, sleep):
    route = xai.post(USAGE).mock(
        side_effect=[
            httpx.Response(503),
            usage(series("Chat grok-4-0709", point("2026-10-01", 1))),
        ]
    )

    fetched = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert route.call_count == 2
    assert len(sleep.delays) == 1
    assert fetched.rows[0].cost_usd == Decimal(1)


class TruncatedBody(httpx.AsyncByteStream):
    """A body that stops half-way, as when the peer drops the connection."""

    async def __aiter__(self):
        yield b'{"timeSeries": [{"group": ["Chat grok'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


async def test_a_truncated_body_is_retried(provider, xai, http, sleep):
    route = xai.post(USAGE).mock(
        side_effect=[
            httpx.Response(200, stream=TruncatedBody()),
            usage(series("Chat grok-4-0709", point("2026-10-01", 1))),
        ]
    )

    fetched = await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert route.call_count == 2
    assert fetched.rows[0].model == "grok-4-0709"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("reset"),
    ],
)
async def test_transport_failures_are_retried_then_unreachable(xai, http, sleep, failure):
    provider = XaiProvider(base_url=BASE, retry=RetryPolicy(deadline=10), sleep=sleep)
    route = xai.post(USAGE).mock(side_effect=failure)

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    error = caught.value
    assert error.reason is Reason.UNREACHABLE
    assert BASE in error.message and "XAI_MANAGEMENT_API_URL" in error.message
    assert route.call_count == len(sleep.delays) + 1 > 1
    assert_no_key(error)
    assert error.__cause__ is None  # the httpx exception holds the request, and the key


async def test_a_connect_error_then_success_recovers(provider, xai, http, sleep):
    xai.post(USAGE).mock(side_effect=[httpx.ConnectError("refused"), usage()])

    assert (await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)).rows == ()
    assert len(sleep.delays) == 1


async def test_retries_stop_before_the_deadline(xai, http, sleep):
    policy = RetryPolicy(deadline=5, base_delay=1, max_delay=4)
    provider = XaiProvider(base_url=BASE, retry=policy, sleep=sleep)
    route = xai.post(USAGE).mock(return_value=httpx.Response(503))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert caught.value.reason is Reason.SERVER_ERROR
    assert sum(sleep.delays) <= 5
    assert route.call_count == len(sleep.delays) + 1


async def test_a_retry_after_past_the_deadline_is_not_waited_for(provider, xai, http, sleep):
    route = xai.post(USAGE).mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)

    assert (caught.value.reason, caught.value.retry_after) == (Reason.RATE_LIMITED, 120)
    assert sleep.delays == []
    assert route.call_count == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(provider, xai, http, sleep, status):
    route = xai.post(USAGE).mock(return_value=httpx.Response(status))

    with pytest.raises(ProviderError):
        await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3, by_key=False)

    assert route.call_count == 1
    assert sleep.delays == []


async def test_send_with_retries_returns_the_last_retryable_response(xai, http, sleep):
    xai.get("/x").mock(return_value=httpx.Response(502, text="still down"))

    response = await send_with_retries(
        http, "GET", f"{BASE}/x", policy=RetryPolicy(deadline=3), sleep=sleep
    )

    assert response.status_code == 502
    assert response.text == "still down"


async def test_send_with_retries_reraises_the_last_transport_error(xai, http, sleep):
    xai.get("/x").mock(side_effect=httpx.ConnectTimeout("slow"))

    with pytest.raises(httpx.ConnectTimeout):
        await send_with_retries(
            http, "GET", f"{BASE}/x", policy=RetryPolicy(deadline=3), sleep=sleep
        )
    assert sum(sleep.delays) <= 3


# -- check_credentials --------------------------------------------------------


def validation(**info) -> httpx.Response:
    return httpx.Response(200, json=info)


async def test_a_good_key_passes_with_its_name(provider, xai, http):
    xai.get(VALIDATION).mock(
        return_value=validation(scope="SCOPE_TEAM", scopeId=TEAM, name="usage-bot")
    )
    route = xai.post(USAGE).mock(return_value=usage())

    result = await provider.check_credentials(http, CREDS)

    assert result == CheckResult(key_name="usage-bot", account_id=TEAM)  # the team is the account
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    body = sent_body(route)["analyticsRequest"]
    assert body["timeRange"]["startTime"] == f"{yesterday} 00:00:00"
    assert body["timeRange"]["endTime"] == f"{yesterday + timedelta(days=1)} 00:00:00"
    assert body["groupBy"] == ["description"]
    assert_no_key(result)


async def test_a_rejected_key_is_invalid(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=httpx.Response(401, json={"code": 16}))
    route = xai.post(USAGE).mock(return_value=usage())

    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, CREDS)

    assert (caught.value.reason, caught.value.field) == (Reason.INVALID_KEY, "management_key")
    assert route.call_count == 0


async def test_an_inference_key_is_named_as_such(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=httpx.Response(403, json={"code": 7}))

    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, CREDS)

    assert caught.value.reason is Reason.INFERENCE_KEY
    assert "Management key" in caught.value.message
    assert caught.value.needs_person


async def test_a_bare_403_at_the_key_check_names_both_likely_causes(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=httpx.Response(403, text="<html>Forbidden</html>"))

    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, CREDS)

    assert caught.value.reason is Reason.INFERENCE_KEY
    assert "other IP ranges" in caught.value.message


@pytest.mark.parametrize(
    ("status", "said", "reason"),
    [
        (403, "client IP 198.51.100.7 is not allowed for this key", Reason.IP_NOT_ALLOWED),
        (401, "management key revoked", Reason.INVALID_KEY),
        (403, "this endpoint requires a management key", Reason.INFERENCE_KEY),
    ],
)
async def test_a_refused_key_check_is_read_from_what_xai_said(
    provider, xai, http, status, said, reason
):
    xai.get(VALIDATION).mock(return_value=httpx.Response(status, json={"code": 7, "message": said}))
    route = xai.post(USAGE).mock(return_value=usage())

    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, CREDS)

    assert caught.value.reason is reason
    assert said in caught.value.message
    assert "other IP ranges" not in caught.value.message or reason is Reason.IP_NOT_ALLOWED
    assert route.call_count == 0


@pytest.mark.parametrize(
    "info",
    [
        {"scope": "SCOPE_TEAM", "scopeId": OTHER_TEAM},
        {"scope": "SCOPE_TEAM", "teamId": OTHER_TEAM},  # the deprecated field
        {"teamId": OTHER_TEAM},  # scope omitted at its default
    ],
)
async def test_a_key_from_another_team_is_a_mismatch(provider, xai, http, info):
    xai.get(VALIDATION).mock(return_value=validation(**info))
    route = xai.post(USAGE).mock(return_value=usage())

    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, CREDS)

    assert (caught.value.reason, caught.value.field) == (Reason.TEAM_MISMATCH, "team_id")
    assert OTHER_TEAM in caught.value.message
    assert route.call_count == 0


async def test_team_ids_compare_without_case(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=validation(scope="SCOPE_TEAM", scopeId=TEAM.upper()))
    xai.post(USAGE).mock(return_value=usage())

    assert await provider.check_credentials(http, CREDS) == CheckResult(account_id=TEAM)


async def test_an_organisation_key_is_checked_by_usage(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=validation(scope="SCOPE_ORGANIZATION", scopeId="org-1"))
    route = xai.post(USAGE).mock(return_value=usage())

    await provider.check_credentials(http, CREDS)

    assert route.call_count == 1


async def test_a_missing_validation_endpoint_is_skipped(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=httpx.Response(404))
    route = xai.post(USAGE).mock(return_value=usage())

    result = await provider.check_credentials(http, CREDS)

    assert route.call_count == 1
    assert result.key_name == ""
    assert len(result.notes) == 1


async def test_usage_errors_fail_the_check(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=validation(scope="SCOPE_TEAM", scopeId=TEAM))
    xai.post(USAGE).mock(return_value=httpx.Response(403, json={"code": 7, "message": "denied"}))

    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, CREDS)

    assert caught.value.reason is Reason.MISSING_SCOPE


async def test_a_busy_day_does_not_fail_the_check(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=validation(scope="SCOPE_TEAM", scopeId=TEAM))
    xai.post(USAGE).mock(return_value=usage(limitReached=True))

    assert await provider.check_credentials(http, CREDS) == CheckResult(account_id=TEAM)


@pytest.mark.parametrize(
    "team_id",
    ["", "65c1e471-205f-4566-9c5a", "65c1e471205f45669c5a07198bcdf4ce", f"{TEAM}/../../x", "team"],
)
async def test_a_malformed_team_id_fails_without_any_call(provider, xai, http, team_id):
    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, {"team_id": team_id, "management_key": KEY})

    assert (caught.value.reason, caught.value.field) == (Reason.TEAM_ID_MALFORMED, "team_id")
    assert "65c1e471-205f-4566-9c5a-07198bcdf4ce" in caught.value.message
    assert len(xai.calls) == 0


@pytest.mark.parametrize(
    "key", ["", "xai-short", "xai-mgmt with a space inside it", "xai-mgmt-abc\ndefghijklmnop"]
)
async def test_a_malformed_key_fails_without_any_call_or_echo(provider, xai, http, key):
    with pytest.raises(ProviderError) as caught:
        await provider.check_credentials(http, {"team_id": TEAM, "management_key": key})

    error = caught.value
    assert (error.reason, error.field) == (Reason.INVALID_KEY, "management_key")
    assert not key or key not in error.message
    assert len(xai.calls) == 0


async def test_surrounding_whitespace_is_trimmed(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=httpx.Response(404))
    route = xai.post(USAGE).mock(return_value=usage())

    await provider.check_credentials(http, {"team_id": f" {TEAM}\n", "management_key": f"{KEY} "})

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {KEY}"


# -- fetch_billing --------------------------------------------------------------


def invoice_preview(used: str = "-1325") -> dict:
    return {
        "coreInvoice": {
            "lines": [
                # Line amounts are a bare int64 in billing.proto; older answers wrapped them.
                {"description": "grok-4-0709", "amount": "1250", "unitPrice": "375"},
                {"description": "grok-3-mini", "amount": {"val": "75"}},
                {"description": "free line"},
            ],
            "prepaidCredits": {"val": "-5000"},
            "prepaidCreditsUsed": {"val": used},
        },
        "effectiveSpendingLimit": "10000",
        "billingCycle": {"year": 2026, "month": 10},
    }


LIMITS_BODY = {"spendingLimits": {"softSl": {"val": "15000"}, "effectiveSl": {"val": "20000"}}}


@pytest.mark.parametrize("used", ["-1325", "1325"])
async def test_billing_figures_come_from_invoice_and_limits(provider, xai, http, used):
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=invoice_preview(used)))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json=LIMITS_BODY))
    before = datetime.now(UTC)

    snapshot = await provider.fetch_billing(http, CREDS)

    assert snapshot.month_to_date_usd == Decimal("13.25")
    assert snapshot.prepaid_credit_usd == Decimal("36.75")
    assert snapshot.spending_limit_usd == Decimal("200")
    assert snapshot.invoiced_usd == Decimal(0)  # all of it paid from prepaid credit
    assert before <= snapshot.as_of <= datetime.now(UTC)
    assert_no_key(snapshot)


async def test_billing_calls_run_concurrently(provider, xai, http):
    limits_asked = asyncio.Event()

    async def slow_invoice(request):
        await asyncio.wait_for(limits_asked.wait(), timeout=1)
        return httpx.Response(200, json=invoice_preview())

    def limits(request):
        limits_asked.set()
        return httpx.Response(200, json=LIMITS_BODY)

    xai.get(INVOICE).mock(side_effect=slow_invoice)
    xai.get(LIMITS).mock(side_effect=limits)

    snapshot = await provider.fetch_billing(http, CREDS)

    assert snapshot.spending_limit_usd == Decimal("200")


async def test_used_credit_beyond_the_prepaid_amount_leaves_zero(provider, xai, http):
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=invoice_preview("-9000")))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json=LIMITS_BODY))

    assert (await provider.fetch_billing(http, CREDS)).prepaid_credit_usd == Decimal(0)


async def test_spend_beyond_the_used_prepaid_credit_is_invoiced(provider, xai, http):
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=invoice_preview("-325")))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json=LIMITS_BODY))

    snapshot = await provider.fetch_billing(http, CREDS)

    assert snapshot.invoiced_usd == Decimal("10.00")  # $13.25 so far, $3.25 from credit


async def test_missing_billing_fields_stay_unknown(provider, xai, http):
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json={}))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json={"spendingLimits": {}}))

    snapshot = await provider.fetch_billing(http, CREDS)

    assert snapshot.month_to_date_usd == Decimal(0)  # no lines yet this cycle
    assert snapshot.prepaid_credit_usd is None
    assert snapshot.spending_limit_usd is None


async def test_the_invoice_limit_is_used_when_spending_limits_are_hidden(provider, xai, http):
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=invoice_preview()))
    xai.get(LIMITS).mock(return_value=httpx.Response(404))

    snapshot = await provider.fetch_billing(http, CREDS)

    assert snapshot.spending_limit_usd == Decimal("100")
    assert snapshot.month_to_date_usd == Decimal("13.25")


async def test_a_forbidden_invoice_leaves_its_fields_empty(provider, xai, http):
    xai.get(INVOICE).mock(return_value=httpx.Response(403, json={"code": 7}))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json=LIMITS_BODY))

    snapshot = await provider.fetch_billing(http, CREDS)

    assert (snapshot.month_to_date_usd, snapshot.prepaid_credit_usd) == (None, None)
    assert snapshot.spending_limit_usd == Decimal("200")


async def test_billing_with_a_rejected_key_is_invalid(provider, xai, http):
    xai.get(INVOICE).mock(return_value=httpx.Response(401))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json=LIMITS_BODY))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_billing(http, CREDS)

    assert caught.value.reason is Reason.INVALID_KEY


async def test_billing_that_keeps_failing_raises(xai, http, sleep):
    provider = XaiProvider(base_url=BASE, retry=RetryPolicy(deadline=5), sleep=sleep)
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=invoice_preview()))
    xai.get(LIMITS).mock(return_value=httpx.Response(503))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_billing(http, CREDS)

    assert caught.value.reason is Reason.SERVER_ERROR


def preview_with(**core) -> dict:
    return {"coreInvoice": core, "effectiveSpendingLimit": "10000"}


@pytest.mark.parametrize(
    ("core", "bill", "before_tax", "tax"),
    [
        # billing.proto's shapes: a Cent message with corrections, bare int64 strings
        (
            {
                "totalWithCorr": {"val": "11900"},
                "amountBeforeVat": "10000",
                "vatCost": "2000",
                "amountAfterVat": "12000",
            },
            "119",
            "100",
            "20",
        ),
        # a zero VAT is left out (proto3); the before-tax figure may be named subtotal
        ({"subtotal": "10000", "amountAfterVat": "10000"}, "100", "100", "0"),
        # a total with corrections at zero is an empty message, not a missing one
        ({"totalWithCorr": {}, "lines": [{"amount": "500"}]}, "0", None, None),
        # a total that is not a number is not stated: the next one is taken
        ({"totalWithCorr": {"val": "n/a"}, "amountAfterVat": "4200"}, "42", None, None),
    ],
)
async def test_the_bill_is_the_invoices_own_total(provider, xai, http, core, bill, before_tax, tax):
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=preview_with(**core)))
    xai.get(LIMITS).mock(return_value=httpx.Response(404))

    snapshot = await provider.fetch_billing(http, CREDS)

    assert snapshot.bill_source == "totals"
    assert snapshot.month_to_date_usd == Decimal(bill)
    assert snapshot.subtotal_usd == (Decimal(before_tax) if before_tax else None)
    assert snapshot.tax_usd == (Decimal(tax) if tax else None)


async def test_prepaid_credit_used_reads_the_same_either_sign(provider, xai, http):
    core = {"totalWithCorr": {"val": "30000"}, "prepaidCredits": {"val": "-10000"}}
    for used in ("-10000", "10000"):
        body = preview_with(**core, prepaidCreditsUsed={"val": used})
        xai.get(INVOICE).mock(return_value=httpx.Response(200, json=body))
        xai.get(LIMITS).mock(return_value=httpx.Response(404))

        snapshot = await provider.fetch_billing(http, CREDS)

        assert (snapshot.prepaid_total_usd, snapshot.prepaid_used_usd) == (100, 100)
        assert (snapshot.prepaid_credit_usd, snapshot.invoiced_usd) == (0, 200)


def invoice_bundle(month: int, status: object = "PAID", **amounts) -> dict:
    return {
        "invoiceNumber": f"INV-{month}",
        "invoiceStatus": status,
        "monthly": {"billingCycle": {"year": 2026, "month": month}},
        **(amounts or {"subtotal": "10000", "tax": "1000", "total": "11000"}),
    }


async def test_the_invoice_list_may_come_bare_and_statuses_as_numbers(provider, xai, http):
    listed = [invoice_bundle(9, 1), invoice_bundle(8, 3), {"prepaid": {}, "total": "5000"}]
    route = xai.get(INVOICES).mock(return_value=httpx.Response(200, json=listed))

    found = await provider.fetch_invoices(http, CREDS, date(2026, 8, 1))

    assert route.calls.last.request.url.params["since.year"] == "2026"
    assert route.calls.last.request.url.params["since.month"] == "8"
    assert [(i.month, i.status) for i in found] == [
        (date(2026, 9, 1), "pending"),
        (date(2026, 8, 1), "will_never_be_charged"),
    ]
    assert (found[0].subtotal_usd, found[0].tax_usd, found[0].total_usd) == (100, 10, 110)


async def test_a_month_listed_twice_keeps_the_invoice_that_stands(provider, xai, http):
    listed = {"invoices": [invoice_bundle(9, "WILL_NEVER_BE_CHARGED"), invoice_bundle(9, "PAID")]}
    xai.get(INVOICES).mock(return_value=httpx.Response(200, json=listed))

    (september,) = await provider.fetch_invoices(http, CREDS, date(2026, 9, 1))

    assert september.status == "paid"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (invoice_bundle(9, None), "it states no status"),
        (invoice_bundle(9, "REFUNDED"), "its status 'REFUNDED' is not one"),
        (
            invoice_bundle(9, lines=[{"amount": "700"}]),  # no amounts at all, though lines
            "it states no total, though its lines add up to $7.00",
        ),
        (invoice_bundle(9, total="7.5 USD"), "its total is not an amount in cents ('7.5 USD')"),
        (invoice_bundle(9, total="1234.56"), "its total is not an amount in cents ('1234.56')"),
        ("INV-9", "not an object ('INV-9')"),
    ],
)
async def test_an_invoice_that_cannot_be_read_says_why(provider, xai, http, entry, says):
    xai.get(INVOICES).mock(return_value=httpx.Response(200, json={"invoices": [entry]}))

    (invoice,) = await provider.fetch_invoices(http, CREDS, date(2026, 9, 1))

    assert invoice.status == "unreadable" and says in invoice.problem
    assert (invoice.total_usd, invoice.subtotal_usd, invoice.tax_usd) == (None, None, None)


async def test_an_invoice_of_nothing_is_zero_as_proto3_writes_it(provider, xai, http):
    bundle = {"invoiceStatus": "PAID", "monthly": {"billingCycle": {"year": 2026, "month": 9}}}
    xai.get(INVOICES).mock(return_value=httpx.Response(200, json={"invoices": [bundle]}))

    (invoice,) = await provider.fetch_invoices(http, CREDS, date(2026, 9, 1))

    assert (invoice.status, invoice.total_usd, invoice.tax_usd) == ("paid", 0, 0)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"invoices": "none"}, 'its "invoices" is not a list'),
        ({"items": [invoice_bundle(9)]}, "it has no invoices field, only items"),
        ("<html>", "it is not JSON"),
    ],
)
async def test_an_invoice_list_of_another_shape_is_refused_by_name(provider, xai, http, body, says):
    content = body if isinstance(body, str) else json.dumps(body)
    xai.get(INVOICES).mock(return_value=httpx.Response(200, content=content))

    with pytest.raises(ProviderError) as caught:
        await provider.fetch_invoices(http, CREDS, date(2026, 9, 1))

    assert caught.value.reason is Reason.BAD_RESPONSE and says in caught.value.message


async def test_no_invoices_is_an_empty_list_and_a_refusal_is_none(provider, xai, http):
    xai.get(INVOICES).mock(return_value=httpx.Response(200, json={}))
    assert await provider.fetch_invoices(http, CREDS, date(2026, 9, 1)) == ()
    xai.get(INVOICES).mock(return_value=httpx.Response(403, json={"code": 7}))
    assert await provider.fetch_invoices(http, CREDS, date(2026, 9, 1)) is None
    xai.get(INVOICES).mock(return_value=httpx.Response(401))
    with pytest.raises(ProviderError) as caught:
        await provider.fetch_invoices(http, CREDS, date(2026, 9, 1))
    assert caught.value.reason is Reason.INVALID_KEY


async def test_only_read_endpoints_are_called(provider, xai, http):
    xai.get(VALIDATION).mock(return_value=validation(scope="SCOPE_TEAM", scopeId=TEAM))
    xai.post(USAGE).mock(return_value=usage())
    xai.get(INVOICE).mock(return_value=httpx.Response(200, json=invoice_preview()))
    xai.get(LIMITS).mock(return_value=httpx.Response(200, json=LIMITS_BODY))
    xai.get(INVOICES).mock(return_value=httpx.Response(200, json={}))

    await provider.check_credentials(http, CREDS)
    await provider.fetch_daily_costs(http, CREDS, OCT_1, OCT_3)
    await provider.fetch_billing(http, CREDS)
    await provider.fetch_invoices(http, CREDS, OCT_1)

    called = {(call.request.method, call.request.url.path) for call in xai.calls}
    assert called == {
        ("GET", VALIDATION),
        ("POST", USAGE),
        ("GET", INVOICE),
        ("GET", LIMITS),
        ("GET", INVOICES),
    }


# -- the provider's face ------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("xai-abcdefghijklmnopqrstbeef", "xai-…beef"),
        ("abcdefghijklmnopqrstuvwxyz", "abcd…wxyz"),
        ("management-abcdefghijklmnop", "mana…mnop"),
        ("ab-cdefghijklmnop", "ab-…mnop"),
        ("xai-12345678", "xai-…5678"),
        ("xai-1234567", "…"),
        ("", "…"),
    ],
)
def test_mask_shows_only_a_prefix_and_the_last_four(provider, key, masked):
    assert provider.mask({"team_id": TEAM, "management_key": key}) == masked


def test_the_provider_describes_itself(provider):
    assert isinstance(provider, Provider)
    assert (provider.name, provider.display_name, provider.max_window_days) == ("xai", "xAI", 31)
    assert provider.default_label(CREDS) == "Production — xAI"
    team, key = provider.credential_fields
    assert (team.name, team.label, team.secret, team.env_var) == ("team_id", "Team ID", False, None)
    assert team.placeholder == "65c1e471-205f-4566-9c5a-07198bcdf4ce"
    assert team.validate(TEAM) is None
    assert "console.x.ai" in team.validate("my-team")
    assert (key.name, key.label, key.secret, key.env_var) == (
        "management_key",
        "Management key",
        True,
        "XAI_MANAGEMENT_KEY",
    )
    assert key.validate(KEY) is None
    assert_no_key(provider)


def test_the_built_in_plugin_registers_xai_with_the_configured_url():
    registry = load_providers(
        {"XAI_MANAGEMENT_API_URL": "http://x"}, pm=plugin_manager(load_entry_points=False)
    )

    xai_provider = registry.get("xai")
    assert isinstance(xai_provider, XaiProvider)
    assert xai_provider.base_url == "http://x"


def test_without_configuration_the_real_service_is_used():
    registry = load_providers({}, pm=plugin_manager(load_entry_points=False))

    assert registry.get("xai").base_url == DEFAULT_BASE_URL


class FakeProvider(XaiProvider):
    name = "fake"
    display_name = "Fake"


class FakePlugin:
    @hookimpl
    def register_providers(self, register):
        register(FakeProvider(base_url="http://fake"))


def test_a_registered_plugin_provides_its_provider():
    pm = plugin_manager(load_entry_points=False)
    plugin = FakePlugin()
    pm.register(plugin, name="fake-plugin")
    try:
        registry = load_providers({}, pm=pm)
        assert [provider.name for provider in registry] == ["fake", "xai"]
    finally:
        pm.unregister(plugin)
