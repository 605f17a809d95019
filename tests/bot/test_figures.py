"""One definition for each figure: the month-end forecast, a limit, shares of a budget."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from bot.figures import TeamLimit as Limit
from bot.figures import month_end_forecast, spending_limit_lines, spending_limit_text
from bot.formatting import percent_reached


def xai_limit(*args, **fields) -> Limit:
    """A limit as one of xAI's teams has it, named by its provider's display name."""
    return Limit(*args, provider="xAI", **fields)


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
    assert spending_limit_text([xai_limit(D(0))]).endswith(
        "prepaid only (usage stops when prepaid credit runs out)"
    )
    assert spending_limit_text([xai_limit(D(500), prepaid_left=D(3))]) == (
        "xAI spending limit: $500.00 a month on invoiced spend, $500.00 headroom"
    )
    assert spending_limit_text([xai_limit(D(500), invoiced=D(620))]) == (
        "xAI spending limit: $500.00 a month on invoiced spend, $0.00 headroom "
        "(reached: xAI stops serving once prepaid credit is gone)"
    )
    assert spending_limit_text([xai_limit(D(500), prepaid_left=D(0))]) == (
        "xAI spending limit: $500.00 a month on invoiced spend, after prepaid credit"
    )


def test_each_teams_limit_is_shown_on_its_own_never_summed() -> None:
    teams = [
        xai_limit(D(500), invoiced=D(100), label="Production"),
        xai_limit(D(200), invoiced=D(0), label="Staging"),
        xai_limit(D(0), label="Sandbox"),
    ]
    assert spending_limit_lines(teams) == (
        "xAI spending limit for “Production”: $500.00 a month on invoiced spend, $400.00 headroom",
        "xAI spending limit for “Staging”: $200.00 a month on invoiced spend, $200.00 headroom",
        "xAI spending limit for “Sandbox”: prepaid only (usage stops when prepaid credit runs out)",
    )
    assert spending_limit_text(teams) == "; ".join(spending_limit_lines(teams))


def test_a_team_that_ran_out_is_not_hidden_by_one_with_room() -> None:
    # Summed, these read "$5,500.00 a month, $4,880.00 headroom": Production had stopped.
    teams = [
        xai_limit(D(500), prepaid_left=D(0), invoiced=D(620), label="Production"),
        xai_limit(D(5000), prepaid_left=D(80), invoiced=D(0), label="Research"),
        xai_limit(D(0), prepaid_left=D(0), label="Batch"),
    ]
    assert [t.headroom for t in teams] == [D(0), D(5000), D(0)]
    assert spending_limit_lines(teams) == (
        "xAI spending limit for “Production”: $500.00 a month on invoiced spend, $0.00 headroom "
        "(reached: xAI stops serving once prepaid credit is gone)",
        "xAI spending limit for “Research”: $5,000.00 a month on invoiced spend, "
        "$5,000.00 headroom",
        "xAI spending limit for “Batch”: prepaid only, and its prepaid credit is used up "
        "(usage has stopped)",
    )


def test_prepaid_credit_left_is_said_for_a_prepaid_only_team() -> None:
    assert spending_limit_text([xai_limit(D(0), prepaid_left=D("12.5"))]) == (
        "xAI spending limit: prepaid only, $12.50 prepaid credit left "
        "(usage stops when it runs out)"
    )
    unnamed = spending_limit_lines([xai_limit(D(100), invoiced=D(1)), xai_limit(D(0))])
    assert [line.split(":")[0] for line in unnamed] == [
        "xAI spending limit for team 1",
        "xAI spending limit for team 2",
    ]


def test_a_share_under_one_percent_shows_a_decimal_not_zero() -> None:
    assert percent_reached(D("4.2"), D(1000)) == "0.4%"
    assert percent_reached(D("0.01"), D(1000)) == "<0.1%"
    assert percent_reached(D(0), D(1000)) == "0%"
    assert percent_reached(D("999.99"), D(1000)) == "99%"
    assert percent_reached(D(1000), D(1000)) == "100%"


def test_a_limit_of_a_provider_the_store_cannot_name_is_worded_without_a_name() -> None:
    assert spending_limit_text([Limit(D(500), invoiced=D(620))]) == (
        "Spending limit: $500.00 a month on invoiced spend, $0.00 headroom "
        "(reached: the provider stops serving once prepaid credit is gone)"
    )
