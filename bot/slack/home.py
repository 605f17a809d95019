"""The App Home tab: the workspace's dashboard, published when someone opens it.

Slack sends ``app_home_opened`` and expects its ack at once; the listener
hands the person to :func:`publish` on the service's background pool. A
dashboard built in the last few minutes is reused (bot.home.DashboardCache),
so an open costs one query and a ``views.publish``. Everyone who may read the
workspace's costs sees the figures; admins also get the buttons that manage
it, each carrying the command it runs (the "a button is a command" contract:
action ids start with ``xu:``, values are the words of ``/xai-usage``).

The 30-day trend is a sparkline and a weekly table, not the chart PNG: a
Home view shows an image only by URL or as a ``slack_file`` the viewer can
already open, so a chart would have to be shared into each viewer's DM on
every rebuild; the DM stays for charts people ask for (``--chart``).
"""

from __future__ import annotations

import logging
import shlex
from datetime import date
from decimal import Decimal
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import formatting
from bot.figures import PACE
from bot.home import Dashboard, build_dashboard, fingerprint
from bot.render import insights_section, render_json
from bot.slack.access import refusal_to_administer, refusal_to_use
from bot.slack.blocks import STATUS_ICONS
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    setup_for,
    store_unavailable,
)

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 30
"""Connections listed one by one; with the rest of the tab this stays under Slack's 100 blocks."""


def command_label(label: str) -> str:
    """A connection label as a command's argument: quoted as a person would type it."""
    if '"' not in label and "\\" not in label:
        return f'"{label}"'
    return shlex.quote(label)


def home_view(dashboard: Dashboard, *, admin: bool) -> dict[str, Any]:
    """The Home tab for one reader: the dashboard, and management buttons for admins."""
    trend = [cost for _, cost in dashboard.trend]
    weeks = []
    for start in range(0, len(dashboard.trend), 7):
        chunk = dashboard.trend[start : start + 7]
        known = [c for _, c in chunk if c is not None]
        weeks.append(
            (
                formatting.day_span(chunk[0][0], chunk[-1][0]),
                sum(known, Decimal(0)) if known else None,
                len(chunk) - len(known),  # days not fetched: the sum leaves them out
            )
        )
    forecast = dashboard.forecast
    budget = dashboard.week.budget_usd
    rows = dashboard.connections[:MAX_CONNECTIONS]
    return render_json(
        "slack/home.json.j2",
        d=dashboard,
        admin=admin,
        insights=insights_section(dashboard.insights),
        forecast=forecast,
        budget=budget,
        budget_used=(
            formatting.percent_reached(dashboard.month_to_date_usd, budget)
            if budget is not None
            else None
        ),
        forecast_vs_budget=(
            formatting.delta(forecast.total, budget) if forecast and budget else None
        ),
        pace=PACE,
        spark=formatting.sparkline(trend),
        trend_span=formatting.day_span(dashboard.trend[0][0], dashboard.trend[-1][0]),
        weeks=weeks,
        unfetched_note=_unfetched_note(dashboard.trend),
        rows=rows,
        hidden=len(dashboard.connections) - len(rows),
        icons=STATUS_ICONS,
        labels={row.label: command_label(row.label) for row in rows},
        digests=[(s, formatting.mrkdwn_keep_references(s.text)) for s in dashboard.digests],
        budgets=[(b, formatting.mrkdwn_keep_references(b.text)) for b in dashboard.budgets],
        alerts=formatting.mrkdwn_keep_references(dashboard.alerts),
        last_month_name=formatting.month_label(dashboard.last_month),
        week_span=formatting.day_span(dashboard.week.period_start, dashboard.week.period_end),
    )


def notice_view(text: str) -> dict[str, Any]:
    """A Home tab that only says something: a refusal, or that the store is down."""
    return {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
    }


def dashboard_for(service: SlackService, invocation: Invocation) -> Dashboard:
    """The workspace's dashboard: the cached one while nothing changed, else built now."""
    workspace_id = service.workspace_id(invocation)
    db = service.runtime.db

    def current() -> tuple:
        with db.session() as session:
            return fingerprint(session, workspace_id)

    def build() -> Dashboard:
        with db.session() as session:
            return build_dashboard(
                session,
                workspace_id,
                service.runtime.clock(),
                providers=service.runtime.providers,
                setup=setup_for(service, invocation),
            )

    return service.dashboards.get(workspace_id, current, build)


def publish(service: SlackService, client: WebClient, invocation: Invocation) -> dict | None:
    """Build (or reuse) and publish one person's Home tab; the view sent, or None."""
    try:
        person = service.person(client, invocation)
        refusal = refusal_to_use(person, invocation.team_id)
        if refusal:
            view = notice_view(refusal)
        else:
            admin = (
                refusal_to_administer(person, invocation.team_id, service.settings.admins) is None
            )
            view = home_view(dashboard_for(service, invocation), admin=admin)
    except Exception as error:
        if not store_unavailable(error):  # a bug: one line, the traceback at DEBUG, as app.py does
            log.error("could not build the Home tab: %s: %s", type(error).__name__, error)
            log.debug("the Home tab's traceback", exc_info=error)
            return None
        view = notice_view(f":warning: {STORE_UNAVAILABLE}")
    try:
        client.views_publish(user_id=invocation.user_id, view=view)
    except SlackApiError as error:
        log.warning("views.publish refused the Home tab: %s", error.response.get("error"))
        return None
    return view


def _unfetched_note(trend: tuple[tuple[date, Decimal | None], ...]) -> str:
    """Say which days of the trend nobody fetched: gaps in the line, left out of the sums."""
    missing = [day for day, cost in trend if cost is None]
    if not missing:
        return ""
    days = "1 day" if len(missing) == 1 else f"{len(missing)} days"
    return (
        f"_{days} not fetched ({formatting.day_span(missing[0], missing[-1])}): gaps above, "
        f"left out of the sums marked *; `sync --days {(trend[-1][0] - missing[0]).days + 1}` "
        "fetches them._"
    )
