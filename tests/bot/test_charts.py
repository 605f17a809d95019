"""Charts of reports: the data they draw, the pictures, and the CLI that writes them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.charts import (
    OTHER,
    OTHER_COLOUR,
    PALETTE,
    PIXELS,
    ChartData,
    Series,
    chart_data,
    colours,
    draw,
    palette_slot,
    png_size,
    render_chart,
    unfetched_days,
)
from bot.grammar import Command
from bot.reports import Period, build_report
from tests.fakes.connections import add_connection, connect_demo

ROOT = Path(__file__).parents[2]


def connect(engine, workspace_id: int, days: int = 90, label: str | None = None):
    connected = connect_demo(engine, workspace_id, days, label)
    assert connected.backfill.ok
    return connected


def period(start: date, end: date, name: str = "range") -> Period:
    return Period(name, start, end, f"{start}–{end}")


def test_a_90_day_chart_by_model_adds_up_to_the_report_and_decodes(
    db, engine, workspace_id, clock
) -> None:
    connect(engine, workspace_id)
    today = clock.now.date()
    span = period(today - timedelta(days=89), today)
    with db.session() as session:
        report = build_report(session, workspace_id, span, "model", now=clock.now)
        data = chart_data(session, workspace_id, report)
    assert data.kind == "stacked" and data.bucket == "day" and len(data.buckets) == 90
    assert sum((s.total for s in data.series), Decimal(0)) == report.total_usd
    assert [s.label for s in data.series] == [r.label for r in report.rows][: len(data.series)]
    assert "$" in data.title and f"{report.total_usd:,.2f}" in data.title
    png = render_chart(data, "png")
    assert png_size(png) == PIXELS == (1000, 600)
    from matplotlib.image import imread

    assert imread(io.BytesIO(png)).shape[:2] == (600, 1000)


def test_week_buckets_stack_by_model_and_a_one_day_period_ranks(
    db, engine, workspace_id, clock
) -> None:
    connect(engine, workspace_id, days=30)
    today = clock.now.date()
    with db.session() as session:
        weekly = build_report(
            session, workspace_id, period(today - timedelta(days=27), today), "week", now=clock.now
        )
        weeks = chart_data(session, workspace_id, weekly)
        day = build_report(session, workspace_id, period(today, today), "model", now=clock.now)
        ranked = chart_data(session, workspace_id, day)
    assert weeks.bucket == "week" and len(weeks.buckets) in (4, 5)
    assert all(b.weekday() == 0 for b in weeks.buckets[1:])
    assert sum((s.total for s in weeks.series), Decimal(0)) == weekly.total_usd
    assert ranked.kind == "ranked"
    assert [s.label for s in ranked.series] == [r.label for r in day.rows if r.cost_usd]
    assert png_size(render_chart(ranked)) == PIXELS
    assert render_chart(weeks, "svg").lstrip().startswith(b"<?xml")


def test_unfetched_days_are_gaps_not_zeros(db, engine, workspace_id, clock) -> None:
    connect(engine, workspace_id, days=30)
    today = clock.now.date()
    missing = {today - timedelta(days=3), today - timedelta(days=4)}
    with db.session() as session:
        report = build_report(
            session, workspace_id, period(today - timedelta(days=9), today), "day", now=clock.now
        )
        data = chart_data(session, workspace_id, report, unfetched=missing)
    assert data.gaps == missing
    for series in data.series:
        for start, value in zip(data.buckets, series.values, strict=True):
            assert (value is None) == (start in missing)
    assert png_size(render_chart(data)) == PIXELS


def test_a_day_is_a_gap_only_when_every_connection_missed_it() -> None:
    span = SimpleNamespace
    report = SimpleNamespace(
        connection_labels=("A", "B"),
        uncovered=(
            span(connection="A", start=date(2026, 11, 1), end=date(2026, 11, 3)),
            span(connection="B", start=date(2026, 11, 3), end=date(2026, 11, 4)),
        ),
    )
    assert unfetched_days(report) == {date(2026, 11, 3)}
    assert unfetched_days(SimpleNamespace(connection_labels=("A",), uncovered=())) == frozenset()


def test_a_model_keeps_its_colour_from_chart_to_chart_and_colours_differ_in_one() -> None:
    six = ["grok-4-0709", "grok-4-fast-reasoning", "grok-4-fast-non-reasoning",
           "grok-code-fast-1", "grok-3-mini", "grok-2-image-1212"]  # fmt: skip
    one = colours(six)
    assert len(set(one.values())) == 6 and set(one.values()) <= set(PALETTE)
    assert colours(list(reversed(six))) == one  # ranked by another period's costs
    assert colours([*six, OTHER])[OTHER] == OTHER_COLOUR
    slots = [palette_slot(name) for name in six]
    for name, slot in zip(six, slots, strict=True):
        assert colours([name]) == {name: PALETTE[slot]}  # its own colour, alone
        if slots.count(slot) == 1:  # no clash: the same colour among the six
            assert one[name] == PALETTE[slot]


def test_more_series_than_fit_are_summed_into_other(db, engine, workspace_id, clock) -> None:
    from storage.models import Connection, DailyCost

    connected = connect(engine, workspace_id, days=2)
    day = clock.now.date() - timedelta(days=1)
    with db.transaction() as session:
        for i in range(3):  # more models than fit: five by name, the rest as "other"
            session.add(
                DailyCost(
                    connection_id=connected.connection_id,
                    workspace_id=workspace_id,
                    day=day,
                    model=f"model-{i}",
                    cost=Decimal(i + 1) / 3,
                )
            )
    with db.session() as session:
        connection = session.get(Connection, connected.connection_id)
        report = build_report(
            session, workspace_id, period(day, day + timedelta(1)), "model", connection=connection
        )
        data = chart_data(session, workspace_id, report, connection_id=connection.id)
    assert len(report.rows) >= 7
    labels = [s.label for s in data.series]
    assert labels == [r.label for r in report.rows[:5]] + [OTHER]
    assert sum((s.total for s in data.series), Decimal(0)) == report.total_usd


def test_an_empty_chart_still_draws() -> None:
    data = ChartData("Nothing", "Cost per day", "stacked", "day", (date(2026, 11, 1),), (), 0)
    assert png_size(render_chart(data)) == PIXELS
    with pytest.raises(ValueError):
        render_chart(data, "gif")
    lonely = ChartData("x", "y", "stacked", "day", (date(2026, 11, 1),), (Series("a", (None,)),), 0)
    assert png_size(render_chart(lonely)) == PIXELS


def words(data: ChartData) -> list[str]:
    return [t.get_text() for t in draw(data).texts]


def along(data: ChartData) -> list[str]:
    """The labels along the bottom (the x ticks, hung below the plot), left to right."""
    figure = draw(data)
    ticks = [t for t in figure.texts if t.get_va() == "top" and t.get_ha() == "center"]
    return [t.get_text() for t in sorted(ticks, key=lambda t: t.get_position()[0])]


def test_a_chart_reads_dollars_up_and_days_along_as_days() -> None:
    """The axis text: dollar amounts up the side, days along the bottom read as days
    ("30 Nov", "1 Dec"; not "Nov, 30, Dec, 01"), never hours."""
    two = ChartData(
        "Mon 30 Nov–Tue 1 Dec 2026 · $3.50", "Cost per day by model, UTC days", "stacked",
        "day", (date(2026, 11, 30), date(2026, 12, 1)),
        (Series("grok-4", (Decimal("1.5"), Decimal("2"))),), Decimal("3.5"),
    )  # fmt: skip
    text = words(two)
    assert text[:2] == [two.title, two.subtitle] and "grok-4" in text
    assert {"$0.00", "$1.00", "$2.00"} <= set(text)
    assert along(two) == ["30 Nov", "1 Dec"]
    assert not [t for t in text if ":" in t]  # a two-day chart once labelled 06:00, 12:00…
    days = tuple(date(2026, 9, 4) + timedelta(d) for d in range(90))
    ninety = ChartData(
        "90 days", "Cost per day", "stacked", "day", days,
        (Series("grok-4", (Decimal(120),) * 90),), Decimal(10800),
    )  # fmt: skip
    text = words(ninety)
    assert {"$0", "$100"} <= set(text) and "$100.00" not in text
    ticks = along(ninety)
    assert 4 <= len(ticks) <= 8 and ticks[-1] == "2 Dec"  # the newest day is named
    assert all(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2}", t) for t in ticks), ticks
    new_year = tuple(date(2026, 12, 20) + timedelta(d) for d in range(20))
    ticks = along(
        ChartData("x", "y", "stacked", "day", new_year, (Series("a", (Decimal(1),) * 20),), 0)
    )
    assert any(t.endswith(" 2027") for t in ticks), ticks  # the year, where it turns


def test_weekly_charts_tick_weeks_and_monthly_ones_months() -> None:
    mondays = tuple(date(2026, 11, 2) + timedelta(weeks=n) for n in range(5))
    weeks = ChartData(
        "5 weeks", "Cost per week", "stacked", "week", mondays,
        (Series("grok-4", (Decimal(7),) * 5),), Decimal(35), end=date(2026, 12, 6),
    )  # fmt: skip
    assert along(weeks) == ["2–8 Nov", "9–15 Nov", "16–22 Nov", "23–29 Nov", "30 Nov–6 Dec"]
    months = ChartData(
        "3 months", "Cost per month", "stacked", "month",
        (date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)),
        (Series("grok-4", (Decimal(7),) * 3),), Decimal(21), end=date(2027, 1, 31),
    )  # fmt: skip
    assert along(months) == ["Nov 2026", "Dec 2026", "Jan 2027"]


def test_todays_bar_is_marked_as_so_far_and_said_so_in_the_key() -> None:
    days = (date(2026, 11, 30), date(2026, 12, 1))
    data = ChartData(
        "Last 2 days", "Cost per day", "stacked", "day", days,
        (Series("grok-4", (Decimal(5), Decimal(2))),), Decimal(7), end=days[-1],
        partial=days[-1],
    )  # fmt: skip
    figure = draw(data)
    assert "today so far (partial)" in [t.get_text() for t in figure.texts]
    [veil] = [a for a in figure.artists if type(a).__name__ == "Rectangle"]
    assert veil.get_facecolor()[:3] == (1.0, 1.0, 1.0) and 0 < veil.get_alpha() < 1
    from matplotlib.dates import date2num

    assert veil.get_x() > date2num(days[0]) + 0.5  # over today's bar, not yesterday's
    assert veil.get_height() == 2
    assert "today so far (partial)" not in words(replace(data, partial=None))
    today = ChartData(
        "Today", "Cost by model", "ranked", "day", days[-1:],
        (Series("grok-4", (Decimal(2),)),), Decimal(2), partial=days[-1],
    )  # fmt: skip
    assert any("so far" in t for t in words(today))


def test_one_sans_serif_font_and_names_with_dollars_read_as_written() -> None:
    data = ChartData(
        "Today · $3.50", "Cost by API key", "ranked", "day", (date(2026, 12, 1),),
        (Series("$prod$ key", (Decimal("3"),)), Series("grok $1 $2", (Decimal("0.5"),))),
        Decimal("3.5"),
    )  # fmt: skip
    for chart in (data, replace(data, kind="stacked", subtitle="Cost per day")):
        figure = draw(chart)
        assert {tuple(t.get_fontfamily()) for t in figure.texts} == {("sans-serif",)}
        assert not [t for t in figure.texts if t.get_parse_math()]  # "$…$" is never maths
    assert "$prod$ key" in words(data) and "$3.00" in words(data)


def test_an_svg_chart_has_real_text() -> None:
    svg = render_chart(
        ChartData("Today · $3.50", "Cost by model", "ranked", "day", (date(2026, 12, 1),),
                  (Series("grok-4", (Decimal("3.5"),)),), Decimal("3.5")),
        "svg",
    ).decode()  # fmt: skip
    assert "<text" in svg and "Today · $3.50" in svg and "grok-4" in svg
    assert "sans-serif" in svg and "serif;" not in svg.replace("sans-serif", "")


def test_ranked_bars_name_each_series_and_its_amount() -> None:
    ranked = ChartData(
        "Today", "Cost by model", "ranked", "day", (date(2026, 12, 1),),
        (Series("grok-4", (Decimal("19.82"),)), Series("grok-3-mini", (Decimal("0.5"),))),
        Decimal("20.32"),
    )  # fmt: skip
    text = words(ranked)
    assert {"grok-4", "grok-3-mini", "$19.82", "$0.50", "$0"} <= set(text)
    gap = ChartData("Today", "Cost", "ranked", "day", (date(2026, 12, 1),), (), Decimal(0),
                    frozenset({date(2026, 12, 1)}))  # fmt: skip
    assert "This day was not fetched" in words(gap)


# -- the terminal --------------------------------------------------------------------


def test_the_cli_draws_a_report_into_a_file(db, engine, workspace_id, cli, tmp_path):
    connect(engine, workspace_id, days=30)
    target = tmp_path / "month.png"
    code, _, err = cli(
        "range", "2026-11-01", "2026-11-21", "--by", "model", "-o",
        str(target), "--format", "png",
    )  # fmt: skip
    assert code == 0, err
    assert png_size(target.read_bytes()) == PIXELS
    assert target.stat().st_mode & 0o777 == 0o600  # cost data: readable only by its owner


def something_connected(db, workspace_id: int) -> None:
    """A connection sealed with this store's key: with none, a chart says how to connect."""
    with db.transaction() as session:
        connection = add_connection(session, workspace_id, "Production")
        connection.credentials_key_id = db.keyring.primary_key_id


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("month", "--format", "png"), "add -o FILE"),
        (("month", "--format", "pdf"), "xai-usage export month --format pdf"),
        (("month", "--format", "svg", "-o", "{tmp}/no such folder/x.svg"), "cannot write"),
    ],
)
def test_a_chart_without_a_usable_file_is_one_clear_line(
    db, workspace_id, cli, tmp_path, args, says
) -> None:
    something_connected(db, workspace_id)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = cli(*args)
    assert code == 1 and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # the line, and the usage where it helps


def test_a_failed_write_leaves_nothing_half_written(db, workspace_id, cli, tmp_path):
    something_connected(db, workspace_id)
    target = tmp_path / "out" / "chart.png"
    target.mkdir(parents=True)  # a folder where the file should go: the final rename fails
    (target / "keep.txt").write_text("mine")
    code, _, err = cli("month", "--format", "png", "-o", str(target))
    assert code == 1 and "cannot write" in err and "Traceback" not in err
    assert sorted(p.name for p in target.parent.iterdir()) == ["chart.png"]  # no partial file
    assert (target / "keep.txt").read_text() == "mine"


def test_today_and_the_slack_app_do_not_import_matplotlib(tmp_path) -> None:
    """Commands that do not draw (and the Slack ack) must not pay matplotlib's import time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    env.update(XAI_USAGE_DATA_DIR=str(tmp_path), XAI_USAGE_NO_PLUGINS="1")
    probe = (
        "import sys, io; from bot.cli import main, Console; "
        "code = main(['today'], console=Console(io.StringIO(), io.StringIO())); "
        "import bot.slack.app, bot.slack.listeners.commands; "  # the Slack ack path too
        "print(code, 'matplotlib' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.stdout.split() == ["0", "False"], done.stderr


def test_grammar_reads_dash_o_as_output() -> None:
    from bot.grammar import parse

    assert parse(["week", "--format", "png", "-o", "w.png"]) == Command(
        "week", (), {"format": "png", "output": "w.png"}
    )
