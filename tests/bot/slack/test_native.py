"""Native tables and charts within Slack's limits, from the figures' own cells and data."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot.charts import OTHER, ChartData, Series
from bot.slack import limits
from bot.slack.native import (
    Table,
    chart_block,
    chart_note,
    chart_title,
    code_table,
    degrade,
    table_block,
)
from tests.fakes.slack_api import _BlockKit

D = Decimal


def checked(*blocks: dict) -> list[str]:
    """What the Slack stand-in finds wrong with a message of ``blocks`` (nothing, we hope)."""
    check = _BlockKit("invalid_blocks")
    check.message({"text": "t", "blocks": list(blocks)})
    return [p.describe() for p in check.problems]


def days(start: date, count: int) -> tuple[date, ...]:
    return tuple(start + timedelta(days=n) for n in range(count))


def stacked(buckets, series, *, title="Last 90 days · $1,234.56", split="model", gaps=()):
    return ChartData(
        title, "Cost per day by model, UTC days", "stacked", "day", tuple(buckets),
        tuple(series), D(0), frozenset(gaps), buckets[-1], split,
    )  # fmt: skip


def test_a_table_is_slacks_table_block_and_its_fallback_fits_a_phone():
    table = Table(
        header=("API key", "Cost", "Share"),
        rows=(
            ("Production — xAI: Prod key", "$1,234.56", "60.0%"),
            ("Production — xAI: Test key", "$823.04*", "40.0%"),
        ),
        align=("left", "right", "right"),
        total=("Total", "$2,057.60*", "100.0%"),
    )
    block = table_block(table)
    assert checked(block) == []
    assert block["column_settings"][1:] == [{"align": "right"}, {"align": "right"}]
    lines = code_table(table).splitlines()
    assert max(len(line) for line in lines) <= 40
    # Cut in the middle, so two keys of one connection stay apart.
    assert lines[1].startswith("Produc") and "…" in lines[1] and "Prod key" in lines[1]
    assert lines[2].startswith("Produc") and "Test key" in lines[2]
    assert lines[1].endswith("$1,234.56   60.0%") and lines[3] == "─" * len(lines[3])
    with pytest.raises(ValueError):
        table_block(Table(("a",), tuple(("x",) for _ in range(99)), ("left",), ("t",)))
    with pytest.raises(ValueError):
        Table(("a", "b"), (("x",),), ("left", "right"))


def test_a_narrow_fallback_drops_columns_from_the_right_before_the_label_gets_unreadable():
    table = Table(
        header=("Connection", "Status", "Month to date", "Forecast"),
        rows=(("Research team", "failing", "$12,345.67*", "$45,678.90*"),),
        align=("left", "left", "right", "right"),
        narrow=(0, 1, 2, 3),
    )
    lines = code_table(table).splitlines()
    assert max(len(line) for line in lines) <= 40
    assert "Forecast" not in lines[0] and "Month to date" in lines[0]


def test_ninety_days_by_model_become_weeks_within_slacks_points():
    start = date(2026, 9, 9)
    series = [Series(f"grok-model-{n}", (D("1.25"),) * 90) for n in range(5)]
    series.append(Series(OTHER, (D("0.5"),) * 90))
    block = chart_block(stacked(days(start, 90), series))
    assert checked(block) == []
    chart = block["chart"]
    assert chart["type"] == "bar" and chart["axis_config"]["x_label"].startswith("Week")
    categories = chart["axis_config"]["categories"]
    assert len(categories) == 14 and categories[0] == "9 Sep–13 Sep (part)"
    assert categories[1] == "14 Sep–20 Sep"
    first = chart["series"][0]["data"]
    assert first[0]["value"] == 6.25 and first[1]["value"] == 8.75  # 5 and 7 days of $1.25
    assert [s["name"] for s in chart["series"]][-1] == OTHER


def test_a_month_of_days_is_drawn_day_by_day_up_to_twenty_and_years_as_months():
    block = chart_block(stacked(days(date(2026, 11, 1), 20), [Series("grok-4", (D(1),) * 20)]))
    assert block["chart"]["axis_config"]["categories"][:2] == ["1 Nov", "2 Nov"]
    two_years = stacked(days(date(2025, 1, 1), 730), [Series("grok-4", (D(1),) * 730)])
    block = chart_block(two_years)
    assert checked(block) == []
    assert block["chart"]["axis_config"]["categories"][0] == "May 2025"  # the newest 20 months
    assert "newest 20 months" in chart_note(two_years)


def test_days_nobody_fetched_are_left_out_never_drawn_as_zero():
    buckets = days(date(2026, 11, 1), 5)
    gap = buckets[1]
    series = [Series("grok-4", (D(1), None, D(2), D(3), D(4)))]
    block = chart_block(stacked(buckets, series, gaps={gap}))
    assert block["chart"]["axis_config"]["categories"] == ["1 Nov", "3 Nov", "4 Nov", "5 Nov"]
    assert "Not fetched, so not drawn (never $0.00): Mon 2 Nov 2026" in chart_note(
        stacked(buckets, series, gaps={gap})
    )
    nothing = stacked(buckets[:1], [Series("grok-4", (None,))], gaps={buckets[0]})
    assert chart_block(nothing) is None


def test_keys_are_a_pie_of_their_shares_tail_folded_and_labels_told_apart():
    names = [f"Production — xAI: {kind} key" for kind in ("Prod", "Test", "Dev", "QA", "CI")]
    series = [Series(name, (D(10 - n), D(1))) for n, name in enumerate(names)]
    series += [Series("Research: batch", (D(1), D(1))), Series(OTHER, (D(2), D(0)))]
    data = stacked(days(date(2026, 11, 1), 2), series, split="key")
    block = chart_block(data)
    assert checked(block) == []
    segments = block["chart"]["segments"]
    assert len(segments) == limits.CHART_SEGMENTS
    labels = [s["label"] for s in segments]
    assert labels[0] != labels[1] and labels[0].endswith("Prod key")
    assert labels[1].endswith("Test key") and labels[0].startswith("Production")
    assert labels[-1] == OTHER and segments[-1]["value"] == 2 + 2  # Research, and "other"
    assert sum(s["value"] for s in segments) == sum(float(s.total) for s in series)


def test_the_title_keeps_the_figures_marks_in_fifty_characters():
    long = "Weekly xAI spend · 19 Oct–25 Oct 2026 · $1,234.56 (fetched days only, provisional)"
    data = stacked(days(date(2026, 10, 19), 7), [Series("grok-4", (D(1),) * 7)], title=long)
    title = chart_title(data)
    assert len(title) <= 50 and title == "$1,234.56 (fetched days only, provisional)"
    week = "Weekly xAI spend · 19 Oct–25 Oct 2026 · $1,234.56 (provisional)"
    short = stacked(days(date(2026, 10, 19), 7), [Series("grok-4", (D(1),) * 7)], title=week)
    assert chart_title(short) == "19 Oct–25 Oct 2026 · $1,234.56 (provisional)"


def test_a_ranked_day_and_a_trend_and_what_a_refusal_leaves():
    ranked = ChartData(
        "Today · $20.32", "Cost by model", "ranked", "day", (date(2026, 12, 1),),
        (Series("grok-4", (D("19.82"),)), Series("grok-3-mini", (D("0.5"),))), D("20.32"),
    )  # fmt: skip
    pie = chart_block(ranked)
    assert pie["chart"]["type"] == "pie" and checked(pie) == []
    trend = ChartData(
        "Last 30 days", "Spend by week", "line", "week", days(date(2026, 11, 2), 5)[::1],
        (Series("Spend", (D(1), D(2), None, D(3), D(4))),), D(10), end=date(2026, 11, 6),
        split="total",
    )  # fmt: skip
    line = chart_block(trend)
    assert line["chart"]["type"] == "line" and checked(line) == []
    message = {
        "text": "Week\n```code```\nnote",
        "blocks": [
            pie,
            {"type": "table", "rows": []},
            {"type": "context", "block_id": "xu-table-note"},
        ],
    }
    fallen = degrade(message, {"table", "data_visualization"})
    assert fallen["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "```code```\nnote"}}
    ]


def test_series_whose_names_differ_in_the_middle_are_told_apart():
    names = ["grok-4-fast-reasoning", "grok-4-fast-non-reasoning"]
    block = chart_block(
        stacked(days(date(2026, 10, 19), 7), [Series(n, (D(1),) * 7) for n in names])
    )
    shown = [s["name"] for s in block["chart"]["series"]]
    assert len(set(shown)) == 2 and not any(name[-1].isdigit() for name in shown)
    assert shown[1].endswith("n-reasoning") and checked(block) == []
