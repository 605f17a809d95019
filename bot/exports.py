"""Exports of a period: the detail rows as CSV or JSON, and a PDF for finance.

Detail rows are one per UTC day, connection, model and API key (where the
provider breaks costs down by key), summed in SQL from the same store the reports
read, so their total equals the report's to the nano-dollar. Days a
connection never fetched are rows too, with ``fetched`` false and no cost,
so nobody mistakes a missing day for a free one.

matplotlib is imported only when a PDF is made.
"""

from __future__ import annotations

import io
import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import figures, formatting, profiles
from bot.costs import cost_query
from bot.csvfile import csv_text
from bot.figures import Forecast
from bot.reports import Report, build_report, nothing_connected
from storage.models import ApiKeyName, Connection
from storage.reader import SessionReader

CURRENCY = "USD"
CSV_COLUMNS = (
    "day",
    "connection",
    "model",
    "api_key_id",
    "api_key_name",
    "cost_usd",
    "currency",
    "fetched",
    "provider",
)
FORMATS = ("csv", "json", "pdf")


@dataclass(frozen=True)
class DetailRow:
    day: date
    connection: str
    model: str
    api_key_id: str
    api_key_name: str
    cost_usd: Decimal | None  # None: this connection did not fetch this day
    fetched: bool = True
    provider: str = ""
    """The connection's provider, by its display name ("xAI", "OpenAI")."""


@dataclass(frozen=True)
class Export:
    report: Report
    rows: tuple[DetailRow, ...]

    @property
    def total_usd(self) -> Decimal:
        return sum((r.cost_usd for r in self.rows if r.cost_usd is not None), Decimal(0))


def build_export(
    session: Session, workspace_id: int, report: Report, *, connection_id: int | None = None
) -> Export:
    period = report.period
    query = cost_query(
        workspace_id,
        period.start,
        period.end,
        ["day", "connection_id", "model", "api_key_id"],
        connection_id=connection_id,
        model_pattern=report.model_pattern,
    )
    labels, providers = {}, {}
    for cid, label, provider in session.execute(
        select(Connection.id, Connection.label, Connection.provider).where(
            Connection.workspace_id == workspace_id
        )
    ):
        labels[cid], providers[cid] = label, provider
    words = profiles.read(SessionReader(session), providers.values())
    shown = {cid: words.get(name).display_name for cid, name in providers.items()}
    names = {
        (n.connection_id, n.api_key_id): n.name
        for n in session.scalars(
            select(ApiKeyName).join(Connection).where(Connection.workspace_id == workspace_id)
        )
    }
    rows = [
        DetailRow(
            day,
            labels.get(cid, str(cid)),
            model,
            key_id or "",
            names.get((cid, key_id), "") if key_id else "",
            cost or Decimal(0),
            provider=shown.get(cid, ""),
        )
        for day, cid, model, key_id, cost in session.execute(query)
    ]
    rows += unfetched_rows(report, shown)
    rows.sort(key=lambda r: (r.day, r.connection, r.model, r.api_key_id))
    return Export(report, tuple(rows))


def unfetched_rows(report: Report, providers: dict[int, str] | None = None) -> list[DetailRow]:
    """A row per day and connection the report says was not fetched (coverage's hook)."""
    rows = []
    for span in report.uncovered:
        provider = (providers or {}).get(span.connection_id, "")
        day = span.start
        while day <= span.end:
            rows.append(
                DetailRow(day, span.connection, "", "", "", None, fetched=False, provider=provider)
            )
            day += timedelta(days=1)
    return rows


def _amount(value: Decimal | None) -> str:
    return "" if value is None else formatting.decimal_text(value)


def export_csv(export: Export) -> str:
    return csv_text(
        CSV_COLUMNS,
        (
            (
                r.day.isoformat(),
                r.connection,
                r.model,
                r.api_key_id,
                r.api_key_name,
                _amount(r.cost_usd),
                CURRENCY,
                "true" if r.fetched else "false",
                r.provider,
            )
            for r in export.rows
        ),
        figures=("day", "cost_usd", "currency", "fetched"),
    )


def export_json(export: Export) -> str:
    report = export.report
    return json.dumps(
        {
            "start": report.period.start.isoformat(),
            "end": report.period.end.isoformat(),
            "currency": CURRENCY,
            "total_usd": _amount(report.total.amount),
            "as_of": report.as_of.isoformat() if report.as_of else None,
            "partial": report.partial,
            "final": report.total.final,
            "provisional_days": [d.isoformat() for d in report.total.coverage.provisional_days],
            "group_by": report.group_by,
            "groups": [
                {"key": g.key, "label": g.label, "cost_usd": _amount(g.cost_usd)}
                for g in report.rows
            ],
            "rows": [
                {
                    "day": r.day.isoformat(),
                    "connection": r.connection,
                    "model": r.model,
                    "api_key_id": r.api_key_id,
                    "api_key_name": r.api_key_name,
                    "cost_usd": _amount(r.cost_usd) or None,
                    "currency": CURRENCY,
                    "fetched": r.fetched,
                    "provider": r.provider,
                }
                for r in export.rows
            ],
        },
        indent=2,
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class PdfFacts:
    """What the PDF's first page says besides the report itself."""

    workspace: str
    generated_at: datetime
    forecast: Forecast | None = None
    forecast_month: str = ""
    budget_usd: Decimal | None = None
    prepaid: str | None = None
    """Each team's prepaid credit left, in words (bot.digests.prepaid_words)."""
    by_model: Report | None = None
    by_key: Report | None = None
    by_connection: Report | None = None


def pdf_facts(
    session: Session,
    workspace_id: int,
    workspace: str,
    report: Report,
    *,
    connection: Connection | None,
    now: datetime,
) -> PdfFacts:
    """The tables by model, key and connection, and the forecast where the period reaches
    the current month (status's and the Home tab's: bot.figures)."""
    from bot.digests import build_digest, prepaid_words
    from bot.reports import status_book

    def by(group: str) -> Report:
        return build_report(
            session,
            workspace_id,
            report.period,
            group,
            connection=connection,
            model_pattern=report.model_pattern,
            now=now,
        )

    today = now.astimezone(UTC).date()
    forecast = budget = credit = None
    month = ""
    if report.empty:  # nothing to forecast, no table to fill: the page says how to connect
        return PdfFacts(workspace=workspace, generated_at=now)
    if report.period.end >= today.replace(day=1) and not report.model_pattern:
        scope = connection.id if connection else None
        digest = build_digest(session, workspace_id, "day", today, connection_id=scope, now=now)
        budget, credit = digest.budget_usd, prepaid_words(digest.prepaid)
        forecast = status_book(session, workspace_id, now).forecast(scope)
        month = formatting.month_label(forecast.through)
    return PdfFacts(
        workspace=workspace,
        generated_at=now,
        forecast=forecast,
        forecast_month=month,
        budget_usd=budget,
        prepaid=credit,
        by_model=by("model"),
        by_key=by("key"),
        by_connection=by("connection"),
    )


TABLE_ROWS = 12
PDF_NOTE_WIDTH = 110
"""Characters a note's line holds on the first page, at its size."""


def export_pdf(export: Export, facts: PdfFacts, chart) -> bytes:
    """Two A4 pages of real (selectable) text: the header, total, forecast and trend chart,
    then the tables by model, API key and connection."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import PdfPages

    out = io.BytesIO()
    # Type 3 fonts (only the glyphs used) keep the text real, selectable and searchable;
    # Type 42 reads the same but its font subsetting took three quarters of the time.
    with rc_context({"pdf.fonttype": 3}), PdfPages(out) as pdf:
        for page in pdf_pages(export, facts, chart):
            pdf.savefig(page)
        info = pdf.infodict()
        info["Title"] = f"{export.report.scope_name} spend, {export.report.period.title}"
        info["Creator"] = "xai-usage"
    return out.getvalue()


def pdf_pages(export: Export, facts: PdfFacts, chart) -> list:
    """The PDF's pages as matplotlib figures (a test or a person can also save them as PNG)."""
    from matplotlib.figure import Figure

    from bot.charts import MUTED_COLOUR, TEXT_COLOUR, draw, text

    report = export.report
    pages = []
    page = Figure(figsize=(8.27, 11.69), facecolor="white")
    if report.empty:  # one page: what to do first, never a $0.00
        page.text(0.08, 0.95, f"{report.scope_name} spend · {facts.workspace}", fontsize=18)
        page.text(0.08, 0.91, f"{report.period.title} ({_span(report)}, UTC days)", fontsize=13)
        for i, line in enumerate(textwrap.wrap(nothing_connected("xai-usage"), PDF_NOTE_WIDTH)):
            page.text(0.08, 0.86 - 0.02 * i, line, fontsize=9, color=TEXT_COLOUR)
        return [page]
    lines = [
        (f"{report.scope_name} spend · {facts.workspace}", 18, "bold", TEXT_COLOUR),
        (f"{report.period.title} ({_span(report)}, UTC days)", 13, "normal", TEXT_COLOUR),
        (
            f"Generated {facts.generated_at:%Y-%m-%d %H:%M} UTC · as of "
            f"{formatting.clock(report.as_of)}" + (" · today is partial" if report.partial else ""),
            10,
            "normal",
            MUTED_COLOUR,
        ),
        (f"Total {figures.figure_words(report.total)}", 16, "bold", TEXT_COLOUR),
    ]
    settling = figures.settle_words(report.total.coverage)
    if settling:
        lines.append((settling, 9, "normal", MUTED_COLOUR))
    if report.uncovered:
        missing = ", ".join(f"“{m}”" for m in report.total.coverage.missing_labels[:3])
        lines.append(
            (f"Days not fetched for {missing}: not counted as $0.00", 9, "normal", MUTED_COLOUR)
        )
    if facts.forecast is not None:
        lines.append(
            (
                f"Month-end forecast for {facts.forecast_month}, {figures.PACE}: "
                f"{figures.forecast_words(facts.forecast)}",
                11,
                "normal",
                TEXT_COLOUR,
            )
        )
    if facts.budget_usd is not None:
        lines.append(
            (f"Monthly budget {formatting.money(facts.budget_usd)}", 11, "normal", TEXT_COLOUR)
        )
    if facts.prepaid is not None:
        lines.append((facts.prepaid, 11, "normal", TEXT_COLOUR))
    if report.model_pattern:
        lines.append((f"Models matching “{report.model_pattern}”", 10, "normal", MUTED_COLOUR))
    if report.invoices:
        from bot.reports import reconciliation_words

        lines.append((f"Invoices for {report.period.start:%B %Y}", 11, "bold", TEXT_COLOUR))
        for label, r in report.invoices[:4]:
            line, why = reconciliation_words(r)
            lines.append((formatting.clip(f"{label}: {line}", 120), 8, "normal", TEXT_COLOUR))
            if why:
                could = formatting.clip(f"Could be: {'; '.join(why)}", 120)
                lines.append((could, 8, "normal", MUTED_COLOUR))
    y = 0.95
    for words, size, weight, colour in lines:
        text(page, 0.08, y, words, fontsize=size, fontweight=weight, color=colour)
        y -= 0.022 if size < 10 else 0.03 if size < 14 else 0.04
    # The chart sits below the last line, as tall as what is left above the notes allows.
    top = min(0.66, y - 0.04)
    draw(chart, page, (0.1, 0.36, 0.6, max(top - 0.36, 0.18)))
    notes = [f"Problem: {p}" for p in report.problems]
    for caveat in report.caveats:  # what the providers' figures leave out, in their words
        notes += textwrap.wrap(f"Note: {caveat}", PDF_NOTE_WIDTH, subsequent_indent="  ")
    for i, note in enumerate(notes[:8]):
        text(page, 0.08, 0.28 - 0.02 * i, note, fontsize=8, color=MUTED_COLOUR)
    pages.append(page)

    page = Figure(figsize=(8.27, 11.69), facecolor="white")
    y = 0.95
    for title, table in (
        ("By model", facts.by_model),
        ("By API key", facts.by_key),
        ("By connection", facts.by_connection),
    ):
        if table is None:
            continue
        text(page, 0.08, y, title, fontsize=13, fontweight="bold", color=TEXT_COLOUR)
        y -= 0.028
        cells = table.table()
        rows = list(table.rows)
        for cell in cells[:TABLE_ROWS]:
            text(page, 0.1, y, formatting.fit(cell.label, 52), fontsize=9.5, color=TEXT_COLOUR)
            text(page, 0.78, y, cell.cost, fontsize=9.5, ha="right")
            text(page, 0.9, y, cell.share_text, fontsize=9.5, ha="right")
            y -= 0.02
        if len(cells) > TABLE_ROWS:
            rest = cells[TABLE_ROWS:]
            cents = sum((c.cents for c in rest if c.cents is not None), Decimal(0))
            share = sum((c.share for c in rest if c.share is not None), Decimal(0))
            text(page, 0.1, y, f"{len(rest)} more", fontsize=9.5, color=MUTED_COLOUR)
            text(page, 0.78, y, formatting.money(cents), fontsize=9.5, ha="right")
            text(page, 0.9, y, figures.share_words(share), fontsize=9.5, ha="right")
            y -= 0.02
        if not rows:
            text(page, 0.1, y, "No spend in this period.", fontsize=9.5, color=MUTED_COLOUR)
            y -= 0.02
        text(page, 0.1, y, "Total", fontsize=9.5, fontweight="bold")
        text(
            page,
            0.78,
            y,
            figures.figure_words(table.total),
            fontsize=9.5,
            ha="right",
            weight="bold",
        )
        y -= 0.045
    pages.append(page)
    return pages


def _span(report: Report) -> str:
    return formatting.day_span(report.period.start, report.period.end)


def period_command(command):
    """``export PERIOD`` as the report command it names (``FROM TO`` is a range)."""
    from bot.grammar import REPORTS, Command, UsageError, parse_day

    usage = "export PERIOD|FROM TO [--by …] [--connection L] [--model P] [--format csv|json|pdf]"
    args = command.args
    if len(args) == 2:
        start, end = parse_day(args[0], usage), parse_day(args[1], usage)
        if start > end:
            raise UsageError(f"FROM ({args[0]}) is after TO ({args[1]}).", usage)
        return Command("range", args, command.options)
    name = args[0].lower()
    if name == "range" or name not in REPORTS:
        raise UsageError(
            f"“{args[0]}” is not a period: use today, yesterday, week, month, last-month, "
            "or two days FROM TO (YYYY-MM-DD).",
            usage,
        )
    return Command(name, (), command.options)


@dataclass(frozen=True)
class ExportFile:
    data: bytes
    filename: str
    title: str
    total_usd: Decimal
    empty: bool = False
    """Nothing is connected: Slack says how to connect rather than send a file of nothing."""


def export_file(
    session: Session, workspace_id: int, workspace: str, command, now: datetime
) -> ExportFile:
    """``export PERIOD …`` as a file, the same for the terminal and Slack."""
    from bot.grammar import UsageError
    from bot.reports import resolve_period
    from storage.repo import find_connection

    fmt = command.get("format", "csv")
    if fmt not in FORMATS:
        raise UsageError(f"`export` writes csv, json or pdf; got --format {fmt}.")
    period_of = period_command(command)
    connection = (
        find_connection(session, workspace_id, command.get("connection"))
        if command.get("connection")
        else None
    )
    period = resolve_period(period_of, now.astimezone(UTC).date())
    report = build_report(
        session,
        workspace_id,
        period,
        command.get("by", "model"),
        connection=connection,
        model_pattern=command.get("model"),
        now=now,
    )
    connection_id = connection.id if connection else None
    detail = build_export(session, workspace_id, report, connection_id=connection_id)
    if fmt == "pdf":
        from bot.charts import chart_data

        facts = pdf_facts(session, workspace_id, workspace, report, connection=connection, now=now)
        chart = chart_data(session, workspace_id, report, connection_id=connection_id)
        data = export_pdf(detail, facts, chart)
    elif fmt == "json":
        data = (export_json(detail) + "\n").encode()
    else:
        data = export_csv(detail).encode()
    name = f"xai-usage-{period.start.isoformat()}-to-{period.end.isoformat()}.{fmt}"
    return ExportFile(
        data, name, f"{report.scope_name} spend, {period.title}", report.total_usd, report.empty
    )
