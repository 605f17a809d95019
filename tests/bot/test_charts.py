"""Charts of reports: the data they draw, the pictures, and the CLI that writes them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
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
from tests.fakes.connections import connect_demo

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


def test_a_chart_reads_dollars_up_and_whole_days_along() -> None:
    """The axis text: dollar amounts up the side, days (never hours) along the bottom."""
    two = ChartData(
        "Mon 30 Nov–Tue 1 Dec 2026 · $3.50", "Cost per day by model, UTC days", "stacked",
        "day", (date(2026, 11, 30), date(2026, 12, 1)),
        (Series("grok-4", (Decimal("1.5"), Decimal("2"))),), Decimal("3.5"),
    )  # fmt: skip
    text = words(two)
    assert text[:2] == [two.title, two.subtitle] and "grok-4" in text
    assert {"$0.00", "$1.00", "$2.00"} <= set(text)
    assert "30" in text and "Dec" in text
    assert not [t for t in text if ":" in t]  # a two-day chart once labelled 06:00, 12:00…
    days = tuple(date(2026, 9, 4) + timedelta(d) for d in range(90))
    ninety = ChartData(
        "90 days", "Cost per day", "stacked", "day", days,
        (Series("grok-4", (Decimal(120),) * 90),), Decimal(10800),
    )  # fmt: skip
    text = words(ninety)
    assert {"Oct", "Nov", "Dec", "$0", "$100"} <= set(text) and "$100.00" not in text


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
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = cli(*args)
    assert code == 1 and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # the line, and the usage where it helps


def test_a_failed_write_leaves_nothing_half_written(db, workspace_id, cli, tmp_path):
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
