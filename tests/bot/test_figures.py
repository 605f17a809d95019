"""One definition for each figure: the month-end forecast, xAI's limit, shares of a budget."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from bot.figures import TeamLimit, month_end_forecast, spending_limit_text
from bot.formatting import percent_reached

D = Decimal


def test_the_forecast_counts_finished_days_at_the_pace_of_the_last_seven() -> None:
    costs = {date(2026, 11, 1) + timedelta(days=n): D(10) for n in range(9)}
    costs[date(2026, 11, 4)] = D(80)  # one dear day inside the window
    forecast = month_end_forecast(costs, date(2026, 11, 9))
    assert forecast.month_to_date == D(160)
    assert forecast.daily_pace == D(140) / 7  # 3-9 Nov
    assert forecast.days_left == 21
    assert forecast.total == D(160) + D(140) / 7 * 21


def test_days_without_spend_count_as_zero_and_a_finished_month_is_its_total() -> None:
    costs = {date(2026, 11, 30): D(70)}
    assert month_end_forecast(costs, date(2026, 11, 30)).total == D(70)
    assert month_end_forecast(costs, date(2026, 12, 1)).total == D(0) + D(70) / 7 * 30


def test_the_limit_is_prepaid_only_or_headroom_on_invoiced_spend() -> None:
    assert spending_limit_text([]) is None
    assert spending_limit_text([TeamLimit(D(0))]).endswith(
        "prepaid only (usage stops when prepaid credit runs out)"
    )
    assert spending_limit_text([TeamLimit(D(500), prepaid_left=D(3))]) == (
        "xAI spending limit: $500.00 a month on invoiced spend, $500.00 headroom"
    )
    assert spending_limit_text([TeamLimit(D(500), invoiced=D(620))]) == (
        "xAI spending limit: $500.00 a month on invoiced spend, $0.00 headroom "
        "(reached: xAI stops serving once prepaid credit is gone)"
    )
    assert spending_limit_text([TeamLimit(D(500), prepaid_left=D(0))]) == (
        "xAI spending limit: $500.00 a month on invoiced spend, after prepaid credit"
    )
    assert spending_limit_text(
        [TeamLimit(D(500), invoiced=D(100)), TeamLimit(D(200), invoiced=D(0)), TeamLimit(D(0))]
    ) == (
        "xAI spending limit (2 teams): $700.00 a month on invoiced spend, $600.00 headroom; "
        "1 more prepaid only"
    )


def test_a_share_under_one_percent_shows_a_decimal_not_zero() -> None:
    assert percent_reached(D("4.2"), D(1000)) == "0.4%"
    assert percent_reached(D("0.01"), D(1000)) == "<0.1%"
    assert percent_reached(D(0), D(1000)) == "0%"
    assert percent_reached(D("999.99"), D(1000)) == "99%"
    assert percent_reached(D(1000), D(1000)) == "100%"
