"""Exports: the detail rows (CSV, JSON) and the PDF for finance, against the stand-in's truth."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot import formatting
from bot.charts import chart_data
from bot.exports import (
    CSV_COLUMNS,
    build_export,
    export_csv,
    export_json,
    export_pdf,
    pdf_facts,
    pdf_pages,
)
from bot.reports import Period, build_report
from providers.xai.sandbox import DEMO_TEAM_ID, MODELS
from tests.fakes.connections import connect_demo

EVIL = "=cmd|' /C calc'!A0"


def connect(engine, workspace_id: int, days: int = 30, label: str | None = None):
    connected = connect_demo(engine, workspace_id, days, label)
    assert connected.backfill.ok
    return connected


def truth(sandbox, start: date, end: date) -> Decimal:
    """What the stand-in served for the period, from its own oracle."""
    total, day = Decimal(0), start
    while day <= end:
        total += sum((sandbox.cost(DEMO_TEAM_ID, label, day) for label in MODELS), Decimal(0))
        day += timedelta(days=1)
    return total


def month(clock) -> Period:
    today = clock.now.date()
    return Period("month", today.replace(day=1), today, f"{today:%B %Y} to date")


def test_csv_and_json_hold_the_detail_and_add_up_to_the_report_and_the_truth(
    db, engine, sandbox, workspace_id, clock
) -> None:
    connect(engine, workspace_id)
    period = month(clock)
    with db.session() as session:
        report = build_report(session, workspace_id, period, "model", now=clock.now)
        export = build_export(session, workspace_id, report)
    assert export.total_usd == report.total_usd == truth(sandbox, period.start, period.end)
    rows = list(csv.DictReader(io.StringIO(export_csv(export))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert sum(Decimal(r["cost_usd"]) for r in rows) == report.total_usd
    assert {r["currency"] for r in rows} == {"USD"} and {r["fetched"] for r in rows} == {"true"}
    assert {r["provider"] for r in rows} == {"xAI"}  # each row says whose figure it is
    assert {r["day"] for r in rows} <= {
        (period.start + timedelta(i)).isoformat() for i in range(period.days)
    }
    assert any(r["api_key_id"] for r in rows)  # the stand-in breaks costs down by key
    assert all("e" not in r["cost_usd"].lower() for r in rows)  # no exponents
    data = json.loads(export_json(export))
    assert Decimal(data["total_usd"]) == report.total_usd
    assert sum(Decimal(r["cost_usd"]) for r in data["rows"]) == report.total_usd
    assert sum(Decimal(g["cost_usd"]) for g in data["groups"]) == report.total_usd
    assert data["currency"] == "USD" and data["start"] == period.start.isoformat()


def test_a_label_that_is_a_formula_is_inert_in_csv(db, engine, workspace_id, clock) -> None:
    connect(engine, workspace_id, days=3, label=EVIL)
    with db.session() as session:
        report = build_report(session, workspace_id, month(clock), "model", now=clock.now)
        text = export_csv(build_export(session, workspace_id, report))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["connection"] for r in rows} == {"'" + EVIL}
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r.values())


def test_unfetched_days_are_rows_without_a_cost(db, engine, workspace_id, clock) -> None:
    connect(engine, workspace_id, days=3)
    today = clock.now.date()
    with db.session() as session:
        report = build_report(
            session, workspace_id, Period("range", today - timedelta(5), today, "x"), "model"
        )
        # The backfill fetched the last 3 days: the 3 before are the report's own gap.
        assert [(u.start, u.end) for u in report.uncovered] == [
            (today - timedelta(5), today - timedelta(3))
        ]
        export = build_export(session, workspace_id, report)
    missing = [r for r in export.rows if not r.fetched]
    assert [r.day for r in missing] == [today - timedelta(d) for d in (5, 4, 3)]
    rows = list(csv.DictReader(io.StringIO(export_csv(export))))
    assert [r["cost_usd"] for r in rows if r["fetched"] == "false"] == ["", "", ""]
    assert export.total_usd == report.total_usd


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_pdf_has_real_text_with_the_period_the_total_and_the_tables(
    db, engine, workspace_id, clock
) -> None:
    connect(engine, workspace_id)
    with db.session() as session:
        report = build_report(session, workspace_id, month(clock), "day", now=clock.now)
        export = build_export(session, workspace_id, report)
        facts = pdf_facts(session, workspace_id, "Acme", report, connection=None, now=clock.now)
        chart = chart_data(session, workspace_id, report)
    data = export_pdf(export, facts, chart)
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    assert "November 2026 to date" in text
    assert f"Total {formatting.money(report.total_usd)}" in text
    assert "Acme" in text and "Month-end forecast" in text
    for heading in ("By model", "By API key", "By connection"):
        assert heading in text
    assert "grok-4-0709" in text and "Production — xAI" in text
    # One sans-serif font, and a line with two amounts ("$1 … $2") is words, not maths.
    for page in pdf_pages(export, facts, chart):
        assert {tuple(t.get_fontfamily()) for t in page.texts} == {("sans-serif",)}
        assert not [t.get_text() for t in page.texts if t.get_parse_math()]


# -- the terminal --------------------------------------------------------------------


def test_export_writes_csv_to_stdout_and_json_and_pdf_to_files(
    db, engine, sandbox, workspace_id, cli, tmp_path
) -> None:
    connect(engine, workspace_id)
    start, end = "2026-11-01", "2026-11-20"
    expected = truth(sandbox, date(2026, 11, 1), date(2026, 11, 20))
    code, out, err = cli("export", start, end)
    assert code == 0, err
    assert sum(Decimal(r["cost_usd"]) for r in csv.DictReader(io.StringIO(out))) == expected
    target = tmp_path / "nov.json"
    code, _, err = cli("export", start, end, "--format", "json", "-o",
                       str(target))  # fmt: skip
    assert code == 0, err
    assert Decimal(json.loads(target.read_text())["total_usd"]) == expected
    pdf = tmp_path / "nov.pdf"
    code, _, err = cli("export", start, end, "--format", "pdf", "-o",
                       str(pdf))  # fmt: skip
    assert code == 0, err
    assert formatting.money(expected) in pdf_text(pdf.read_bytes())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("export", "month", "--format", "pdf"), "A PDF needs a file"),
        (("export", "fortnight"), "is not a period"),
        (("export", "2026-11-05", "2026-11-01"), "is after"),
        (("export", "2026-11-01", "nope"), "is not a date"),
        (("export", "week", "--format", "png"), "writes csv, json or pdf"),
    ],
)
def test_export_mistakes_are_one_clear_line(db, cli, tmp_path, args, says) -> None:
    code, out, err = cli(*args)
    assert code == 1 and says in err and "Traceback" not in err and not out
