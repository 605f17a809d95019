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


# -- the figure model ---------------------------------------------------------------------

from datetime import UTC, datetime  # noqa: E402

from bot.figures import (  # noqa: E402
    Figure,
    budget_share_words,
    cents_that_add_up,
    combine_forecasts,
    compare,
    coverage_of,
    figure_words,
    settle_words,
    shares_that_add_up,
    weeks_of,
)

NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)
DEC = (date(2026, 12, 1), date(2026, 12, 7))


def figure(amounts: dict[int, str], spans: dict[int, list], start=DEC[0], end=DEC[1], **kw):
    labels = {c: f"Team {c}" for c in amounts}
    coverage = coverage_of(start, end, NOW, labels, spans, kw.get("provisional"))
    parts = {c: D(a) for c, a in amounts.items()}
    amount = None if coverage.nothing else sum(parts.values(), D(0))
    return Figure(amount, coverage, NOW, parts)


def test_a_figure_says_fetched_days_only_provisional_or_not_fetched() -> None:
    whole = figure({1: "963.98"}, {1: [DEC]})
    assert figure_words(whole) == "$963.98" and whole.running and not whole.final
    partly = figure({1: "540.62", 2: "10"}, {1: [DEC], 2: [(date(2026, 12, 5), DEC[1])]})
    assert figure_words(partly) == "$550.62 (fetched days only)"
    assert [(g.connection, g.start, g.end) for g in partly.coverage.gaps] == [
        ("Team 2", date(2026, 12, 1), date(2026, 12, 4))
    ]
    settling = {1: {date(2026, 12, 6): datetime(2026, 12, 7, 12, tzinfo=UTC)}}
    provisional = figure({1: "5"}, {1: [DEC]}, provisional=settling)
    assert figure_words(provisional) == "$5.00 (provisional)"
    assert settle_words(provisional.coverage) == (
        "Sun 6 Dec 2026 is provisional: the provider may still add to it until 7 Dec 12:00 UTC."
    )
    two_days = {1: {date(2026, 12, d): datetime(2026, 12, 7, 12, tzinfo=UTC) for d in (5, 6)}}
    assert settle_words(figure({1: "5"}, {1: [DEC]}, provisional=two_days).coverage) == (
        "5 Dec–6 Dec 2026 are provisional: the provider may still add to them until 7 Dec "
        "12:00 UTC."
    )
    nothing = figure({1: "0"}, {1: []})
    assert figure_words(nothing) == "not fetched" and nothing.as_json()["usd"] is None
    assert figure({}, {}).amount is None  # no connection: nothing fetched, not $0.00
    closed = figure(
        {1: "7"},
        {1: [(date(2026, 11, 1), date(2026, 11, 30))]},
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
    )
    assert closed.final and figure_words(closed) == "$7.00"


def test_comparisons_are_like_for_like_or_declined_never_against_zero() -> None:
    full = [(date(2026, 11, 1), DEC[1])]
    now = figure({1: "120", 2: "30"}, {1: full, 2: full})
    before_spans = {1: full, 2: [(date(2026, 11, 25), DEC[1])]}  # team 2 missed 24 Nov
    before = figure(
        {1: "100", 2: "1"}, before_spans, start=date(2026, 11, 24), end=date(2026, 11, 30)
    )
    compared = compare(now, before)
    # Team 2's unknown day would have made it +48.5% against $101 of known spend.
    assert (compared.current, compared.previous) == (D(120), D(100))
    assert compared.words() == "+20.0%" and compared.left_out == ("Team 2",)
    assert compared.note() == "compared without “Team 2” (days not fetched)"
    nobody = figure({1: "9"}, {1: []}, start=date(2026, 11, 24), end=date(2026, 11, 30))
    declined = compare(now, nobody)
    assert declined.words() == "no comparison" and declined.change is None
    assert declined.note() == "no comparison: 24 Nov–30 Nov 2026 was not fetched in full"
    assert compare(now, before, per_day=7).previous == D(100) / 7


def test_a_forecast_is_never_below_what_was_spent_and_says_when_it_is_partial() -> None:
    through = date(2026, 12, 6)
    daily = {through - timedelta(days=n): D(1) for n in range(7)}  # 30 Nov to 6 Dec
    quiet = month_end_forecast(daily, through)
    # $6 through the 6th, $1 a day: $31; but $40 was already spent today
    assert month_end_forecast(daily, through, spent=D(40)).total == D(40)
    assert quiet.total == D(31)
    # A connection that fetched 3 of its 7 pace days: its mean is of those three.
    fetched = [date(2026, 12, d) for d in (4, 5, 6)]
    partial = month_end_forecast({d: D(10) for d in fetched}, through, fetched=fetched)
    assert partial.daily_pace == D(10) and not partial.complete
    both = combine_forecasts({1: quiet, 2: partial}, {1: "A", 2: "B", 3: "C"}, D(0), through)
    assert both.total == quiet.total + partial.total and not both.complete
    assert both.left_out == ("C",)  # no pace day fetched: its days to come are unknown


def test_rows_add_up_to_the_total_as_shown_and_shares_to_a_hundred() -> None:
    # Three thirds of $963.98: rounded alone they show $963.99.
    thirds = [D("963.98") / 3] * 3
    cents = cents_that_add_up(thirds)
    assert sum(cents) == D("963.98") and sorted(cents) == [D("321.32"), D("321.33"), D("321.33")]
    shares = shares_that_add_up(thirds)
    assert sum(shares) == D(100) and sorted(shares) == [D("33.3"), D("33.3"), D("33.4")]
    whole = shares_that_add_up([D(1), D(1), D(1)], unit=D(1))
    assert sum(whole) == 100 and sorted(whole) == [33, 33, 34]
    assert shares_that_add_up([D(0), D(0)]) == [None, None]


def test_a_budget_share_of_a_partly_fetched_month_is_at_least() -> None:
    partly = figure({1: "385", 2: "0"}, {1: [DEC], 2: [(date(2026, 12, 6), DEC[1])]})
    assert budget_share_words(partly, D(500)) == "at least 77%"
    assert budget_share_words(figure({1: "960"}, {1: [DEC]}), D(500)) == "192%"


def test_weeks_run_monday_to_sunday_and_a_cut_week_says_so() -> None:
    assert [label for *_, label in weeks_of(date(2026, 11, 8), DEC[1])] == [
        "8 Nov (part)",
        "9 Nov–15 Nov",
        "16 Nov–22 Nov",
        "23 Nov–29 Nov",
        "30 Nov–6 Dec",
        "7 Dec (part)",
    ]
