"""Rendering replies from ``templates/``: tables, JSON and CSV.

Replies are data (a :class:`~bot.reports.Report`, a digest, an alert)
rendered by templates; the formatting helpers are registered as filters so
templates never do maths. Here are the terminal's renderings; Slack's are in
``bot.slack``.
"""

from __future__ import annotations

import csv
import io
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

import templates
from bot import figures, formatting
from bot.reports import Report, ReportRow

if TYPE_CHECKING:
    from bot.alerts import Alert
    from bot.digests import Digest

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
    )
    env.globals["pace"] = figures.PACE  # how the month-end forecast is made, in its words
    env.filters.update(
        money=formatting.money,
        share=formatting.share,
        share_narrow=formatting.share_narrow,
        delta=formatting.delta,
        sparkline=formatting.sparkline,
        clock=formatting.clock,
        fit=formatting.fit,
        mrkdwn=formatting.mrkdwn,
        clip=formatting.clip,
        cost_cell=formatting.cost_cell,
        day_label=formatting.day_label,
    )
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_json(template: str, **context: Any) -> Any:
    """A template that renders JSON (Block Kit messages and views)."""
    return json.loads(render(template, **context))


def report_table(report: Report) -> str:
    costs = [formatting.cost_cell(r.cost_usd, r.complete) for r in report.rows]
    return render(
        "report.txt.j2",
        report=report,
        group_title=GROUP_TITLES[report.group_by],
        label_width=max([len(r.label) for r in report.rows] + [len(report.group_by) + 4, 12]),
        cost_width=max([len(c) for c in costs] + [len(formatting.money(report.total_usd)), 8]),
    )


def digest_text(digest: Digest) -> str:
    """A digest as the terminal shows it: the same figures as Slack's, in plain text."""
    from bot.digests import digest_view

    return render("digest.txt.j2", **digest_view(digest)).rstrip("\n")


def alert_text(alert: Alert) -> str:
    """An alert as the terminal shows it: its title, text and note, without buttons."""
    return render("alert.txt.j2", alert=alert).rstrip("\n")


def report_json(report: Report) -> str:
    """The stable shape scripts rely on (README documents it)."""
    return json.dumps(
        {
            "start": report.period.start.isoformat(),
            "end": report.period.end.isoformat(),
            "group_by": report.group_by,
            "total_usd": str(report.total_usd),
            "rows": [_json_row(r, report.group_by) for r in report.rows],
            "as_of": report.as_of.isoformat() if report.as_of else None,
            "partial": report.partial,
            "uncovered": [
                {"connection": u.connection, "from": u.start.isoformat(), "to": u.end.isoformat()}
                for u in report.uncovered
            ],
            "data_from": report.data_from.isoformat() if report.data_from else None,
        },
        indent=2,
    )


TIME_GROUPS = frozenset({"day", "week", "month", "connection"})


def _json_row(r: ReportRow, group_by: str) -> dict[str, Any]:
    """A row nobody fetched has ``cost_usd`` null, never "0"; day-like rows say if complete."""
    row: dict[str, Any] = {
        "key": r.key,
        "label": r.label,
        "cost_usd": None if r.cost_usd is None else str(r.cost_usd),
        "share": None if r.share is None else str(round(r.share, 4)),
    }
    if group_by in TIME_GROUPS:
        row["complete"] = r.complete
    return row


def report_csv(report: Report) -> str:
    """An unfetched row leaves its cost and share cells empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.group_by, "label", "cost_usd", "share"])
    for r in report.rows:
        cost = "" if r.cost_usd is None else str(r.cost_usd)
        share = "" if r.share is None else str(round(r.share, 4))
        writer.writerow([r.key, r.label, cost, share])
    return out.getvalue()
