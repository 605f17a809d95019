"""Rendering replies from ``templates/``: tables, JSON and CSV.

Replies are data (a :class:`~bot.reports.Report`, a digest, an alert)
rendered by templates; the formatting helpers are registered as filters so
templates never do maths. Here are the terminal's renderings; Slack's are in
``bot.slack``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

import templates
from bot import figures, formatting
from bot.csvfile import csv_text
from bot.grammar import quoted
from bot.reports import Report, ReportRow, nothing_connected

if TYPE_CHECKING:
    from bot.alerts import Alert
    from bot.digests import Digest
    from bot.insights import Insights

GROUP_TITLES = {
    "model": "model",
    "day": "day",
    "week": "week",
    "month": "month",
    "connection": "connection",
    "key": "API key",
}


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(templates.__file__).parent),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        undefined=jinja2.StrictUndefined,
        bytecode_cache=_bytecode_cache(),
    )
    env.globals["pace"] = figures.PACE  # how the month-end forecast is made, in its words
    env.filters.update(
        money=formatting.money,
        delta=formatting.delta,
        sparkline=formatting.sparkline,
        clock=formatting.clock,
        fit=formatting.fit,
        mrkdwn=formatting.mrkdwn,
        clip=formatting.clip,
        cost_cell=formatting.cost_cell,
        day_label=formatting.day_label,
        money_change=formatting.money_change,
        quantity=formatting.quantity,
        figure=figures.figure_words,
        reconciliation=_reconciliation,
        forecast=figures.forecast_words,
        period=figures.period_words,
        quoted=quoted,
    )
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Templates compiled once per user and version, not at every start: a terminal
    report's two templates cost more to compile than the report costs to build.

    Jinja keeps them in a directory of the temporary folder that only this user
    may open (it checks), keyed by each template's source; with no usable
    temporary folder, templates are compiled as before.
    """
    try:
        return jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):
        return None


def _reconciliation(r) -> tuple[str, tuple[str, ...]]:
    from bot.reports import reconciliation_words

    return reconciliation_words(r)


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_json(template: str, **context: Any) -> Any:
    """A template that renders JSON (Block Kit messages and views)."""
    return json.loads(render(template, **context))


def report_table(report: Report) -> str:
    cells = report.table()
    total = figures.figure_words(report.total)
    return render(
        "report.txt.j2",
        report=report,
        cells=cells,
        total=total,
        settling=figures.settle_words(report.total.coverage),
        group_title=GROUP_TITLES[report.group_by],
        nothing_connected=nothing_connected("xai-usage"),
        label_width=max([len(c.label) for c in cells] + [len(report.group_by) + 4, 12]),
        cost_width=max([len(c.cost) for c in cells] + [8]),
    )


def digest_text(digest: Digest) -> str:
    """A digest as the terminal shows it: the same figures as Slack's, in plain text."""
    from bot.digests import digest_view

    return render("digest.txt.j2", **digest_view(digest)).rstrip("\n")


def alert_text(alert: Alert) -> str:
    """An alert as the terminal shows it: its title, fields, fix and note, without buttons."""
    return render("alert.txt.j2", alert=alert).rstrip("\n")


def report_json(report: Report) -> str:
    """The stable shape scripts rely on (README documents it); exact amounts."""
    return json.dumps(
        {
            "start": report.period.start.isoformat(),
            "end": report.period.end.isoformat(),
            "group_by": report.group_by,
            "total_usd": figures.amount_json(report.total.amount),
            "rows": [_json_row(r, report.group_by) for r in report.rows],
            "as_of": report.as_of.isoformat() if report.as_of else None,
            "partial": report.partial,
            "final": report.total.final,
            "provisional_days": [d.isoformat() for d in report.total.coverage.provisional_days],
            "uncovered": [
                {"connection": u.connection, "from": u.start.isoformat(), "to": u.end.isoformat()}
                for u in report.uncovered
            ],
            "data_from": report.data_from.isoformat() if report.data_from else None,
            "caveats": list(report.caveats),
        },
        indent=2,
    )


TIME_GROUPS = frozenset({"day", "week", "month", "connection"})


def _json_row(r: ReportRow, group_by: str) -> dict[str, Any]:
    """A row nobody fetched has ``cost_usd`` null, never "0"; day-like rows say if complete."""
    row: dict[str, Any] = {
        "key": r.key,
        "label": r.label,
        "cost_usd": figures.amount_json(r.cost_usd),
        "share": None if r.share is None else _share_json(r.share),
    }
    if group_by in TIME_GROUPS:
        row["complete"] = r.complete
    return row


def _share_json(share: Decimal) -> str:
    """A share of the total, 0..1, to four places (``0.4850``)."""
    return f"{share.quantize(Decimal('0.0001')):f}"


def report_csv(report: Report) -> str:
    """An unfetched row leaves its cost and share cells empty; names can't be formulas."""
    return csv_text(
        (report.group_by, "label", "cost_usd", "share"),
        (
            (
                r.key,
                r.label,
                figures.amount_json(r.cost_usd),
                None if r.share is None else _share_json(r.share),
            )
            for r in report.rows
        ),
        figures=("cost_usd", "share"),
        line_end="\n",  # a terminal's lines
    )


def insights_text(insights: Insights) -> str:
    """``insights`` in a terminal: people's words as they are."""
    return render("insights.txt.j2", insights=insights, esc=str)


INSIGHT_LABEL_CHARS = 80
"""A model or key name in an insight in Slack: ten idle keys fit one section (3,000)."""


def insight_label(text: str) -> str:
    """A name in an insight, cut and escaped for Slack mrkdwn."""
    return formatting.mrkdwn(formatting.clip(text, INSIGHT_LABEL_CHARS))


def insights_section(insights: Insights) -> str:
    """The compact mrkdwn lines for a weekly digest or the App Home ("" when nothing to say).

    Here, not in ``bot/slack``, so the digests (plain Python) can add it.
    """
    text = render("slack/insights_section.md.j2", insights=insights, esc=insight_label)
    lines = [line for line in text.splitlines() if line.strip()]
    return formatting.clip("\n".join(lines), 2900)
