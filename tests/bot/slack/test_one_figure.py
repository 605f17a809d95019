"""One scope on every surface: the same month to date, forecast and day, with the same marks.

Two teams on the xAI stand-in, one backfilled 90 days and one only today, so the month so
far is of fetched days only and its last days are still settling. The month to date is
then read from every surface that shows it (terminal table and JSON, ``status`` and its
JSON, the Slack reply and ``status``, the Home tab, a budget alert and its webhook body,
the PDF, the chart's title, the CSV and JSON exports) and each must show the figure
:mod:`bot.figures` makes, worded by :func:`bot.figures.figure_words`.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal

from bot.cli import Console, main
from bot.figures import figure_words, forecast_words, period_words
from bot.formatting import decimal_text
from bot.jobs import run_due
from bot.reports import Period, build_report, status_book
from bot.slack.delivery import SlackDelivery
from bot.slack.settings import SlackSettings
from storage.models import AlertRoute, new_uid
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, BOT_TOKEN, TEAM, SlackApp, text_of
from tests.bot.test_exports import pdf_text
from tests.fakes.connections import connect_demo
from tests.fakes.webhook import webhook_server

RESEARCH_TEAM = "0b7d7c1e-3f55-4b3c-9a1e-5d0c2f9e8a11"
RESEARCH_KEY = "xai-mgmt-research-0000000000000000000000000000cafe"


def terminal(app: SlackApp, *words: str) -> str:
    out = io.StringIO()
    code = main(list(words), environ=app.runtime.settings.environ, console=Console(out, out))
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_the_month_to_date_reads_the_same_on_every_surface(slack_app: SlackApp, tmp_path) -> None:
    import asyncio

    app = slack_app
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connect_demo(app.runtime.engine, workspace_id, 90, label="Production — xAI")
    app.xai.add_key(RESEARCH_KEY, RESEARCH_TEAM)
    asyncio.run(
        app.runtime.engine.connect(
            workspace_id,
            "xai",
            {"team_id": RESEARCH_TEAM, "management_key": RESEARCH_KEY},
            label="Research — xAI",
            backfill_days=1,  # today only: the month's other days were never fetched
        )
    )
    now = datetime.now(UTC)
    with app.runtime.db.session() as session:
        book = status_book(session, workspace_id, now)
        month = book.month_to_date()
        forecast = book.forecast()
    words, span = figure_words(month), period_words(month)
    assert month.running and month.known
    if now.day > 1:  # the point of the test: marks to carry, not only a number
        assert not month.complete and "fetched days only" in words

    # The terminal: the month's table, its JSON, status and its JSON.
    table = terminal(app, "month", "--workspace", TEAM)
    assert f"Total {words}  ·  2 connections" in table
    as_json = json.loads(terminal(app, "month", "--workspace", TEAM, "--format", "json"))
    assert as_json["total_usd"] == decimal_text(month.value)
    assert [u["connection"] for u in as_json["uncovered"]] == (
        ["Research — xAI"] if now.day > 1 else []
    )
    status = terminal(app, "status", "--workspace", TEAM)
    assert f"All connections: month to date ({span}) {words}" in status
    forecast_line = f"all connections: {forecast_words(forecast)}"
    assert forecast_line in status
    rows = json.loads(terminal(app, "status", "--workspace", TEAM, "--format", "json"))
    assert sum(Decimal(r["month_to_date_usd"]) for r in rows) == month.value
    assert {r["forecast"]["workspace_usd"] for r in rows} == {decimal_text(forecast.total)}

    # Slack: the reply to /xai-usage month, status, and the Home tab.
    _, url_id = app.command("month")
    assert app.reply(url_id)["blocks"][0]["text"]["text"].endswith(f": {words}")
    _, url_id = app.command("status")
    slack_status = text_of(app.reply(url_id))
    assert f"All connections, month to date ({span}): *{words}*" in slack_status
    assert f"all connections: *{forecast_words(forecast)}*" in slack_status
    app.event({"type": "app_home_opened", "user": ADMIN, "tab": "home"})
    app.slack.wait_for(lambda: app.slack.calls_to("views.publish"))
    home = text_of(app.slack.calls_to("views.publish")[-1].params["view"])
    assert f"*Month to date* ({span}): {words}" in home
    assert f"{forecast_words(forecast)} at the pace of the last 7 days" in home

    # A budget alert (Slack and its webhook body) speaks of the same figure.
    bodies: list[dict] = []

    def take(path: str, body: bytes) -> int:
        bodies.append(json.loads(body))
        return 200

    with webhook_server(take) as hook:
        url = f"http://127.0.0.1:{hook.server_port}/alerts"  # a local receiver: set by hand
        with app.runtime.db.transaction() as session:
            route = AlertRoute(
                workspace_id=workspace_id, connection_key=0, channel_id="CCOSTS", uid=new_uid()
            )
            route.webhook_sealed = app.runtime.db.keyring.seal(url.encode(), route.webhook_aad)
            session.add(route)
        _, url_id = app.command("budget set 1")
        app.reply(url_id)
        settings = SlackSettings.from_env(
            {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": app.slack.api_url},
            delivering_only=True,
        )
        delivery = SlackDelivery(
            settings, lambda team: BOT_TOKEN, pause=lambda s: None, allow_private_webhooks=True
        )
        run_due(app.runtime, now, delivery, daily_sync_at="23:59")
    alert = next(m for m in app.slack.history("CCOSTS") if "Over budget" in m["text"])
    assert f"All connections spent {words} of the $1.00 monthly budget" in text_of(alert)
    assert f"{span}, as of " in text_of(alert)
    (body,) = [b for b in bodies if b["kind"] == "budget"]
    assert body["facts"]["month_to_date_usd"] == decimal_text(month.value)
    assert body["facts"]["month_to_date_complete"] == ("true" if month.complete else "false")
    if now.day >= 3:
        assert f"ends near {forecast_words(forecast)}" in text_of(alert)

    # The PDF, the chart's title and the exports.
    pdf = tmp_path / "month.pdf"
    terminal(app, "export", "month", "--workspace", TEAM, "--format", "pdf", "-o", str(pdf))
    text = " ".join(pdf_text(pdf.read_bytes()).split())
    assert f"Total {words}" in text
    assert f"at the pace of the last 7 days: {forecast_words(forecast)}" in text
    from bot.charts import chart_data

    with app.runtime.db.session() as session:
        period = Period("month", month.start, month.end, f"{now:%B %Y} to date")
        report = build_report(session, workspace_id, period, "model", now=now)
        title = chart_data(session, workspace_id, report).title
    assert title == f"{now:%B %Y} to date · {words}"
    csv_rows = terminal(app, "export", "month", "--workspace", TEAM).splitlines()[1:]
    assert sum(Decimal(line.split(",")[5] or 0) for line in csv_rows) == month.value
    exported = json.loads(terminal(app, "export", "month", "--workspace", TEAM, "--format", "json"))
    assert exported["total_usd"] == decimal_text(month.value)
    assert exported["provisional_days"] == [d.isoformat() for d in month.coverage.provisional_days]


def test_each_connection_reads_the_same_cents_on_every_list_and_they_add_up(
    slack_app: SlackApp,
) -> None:
    """Three connections spent $1.004 each this month: $3.01 together. Rounded on its own
    each reads $1.00, and three of them miss the total by a cent; every list of
    connections beside their total (the report by connection, ``status``, its Slack
    reply and table, the Home tab) shows the same cents, and they add up to it."""
    from bot.sync import record_fetched
    from storage.repo import rebuild_totals
    from tests.bot.slack.conftest import native_table
    from tests.fakes.connections import add_sealed_connection, spend

    app = slack_app
    now = datetime.now(UTC)
    first = now.date().replace(day=1)
    labels = ("Alpha", "Beta", "Gamma")
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        for n, label in enumerate(labels):
            c = add_sealed_connection(
                session,
                app.runtime.db.keyring,
                workspace_id,
                {"team_id": f"00000000-0000-4000-8000-00000000000{n}", "management_key": "k"},
                label=label,
                secret_mask="xai-…beef",
                backfill_days=90,
                key_breakdown=False,
                now=now,
            )
            session.flush()
            spend(session, c, first, "grok-4", "1.004")
            record_fetched(session, c.id, workspace_id, first, now.date())
        session.flush()
        rebuild_totals(session, workspace_id)
    cents = {"Alpha": "$1.01", "Beta": "$1.00", "Gamma": "$1.00"}  # the largest remainder
    # A tie: each lost 0.4 of a cent, so the first in the list takes the missing cent.

    table = terminal(app, "month", "--by", "connection", "--workspace", TEAM)
    assert "Total $3.01" in table
    for label, shown in cents.items():
        assert any(line.split()[:2] == [label, shown] for line in table.splitlines()), table
    status = terminal(app, "status", "--workspace", TEAM)
    for label, shown in cents.items():
        section = status.split(f"{label}  ·")[1].splitlines()[1]  # its status line
        assert f") {shown}  ·" in section, section
    assert "All connections: month to date (" in status and ") $3.01, as of" in status

    _, url_id = app.command("status")
    reply = app.reply(url_id)
    rows = native_table(reply)
    assert rows is not None
    shown_rows = {r[0]: r[2] for r in rows[1:] if r[0] in labels}
    assert shown_rows == cents
    assert [r[2] for r in rows if r[0] == "All connections"] == ["$3.01"]
    for label, shown in cents.items():
        assert f"*{label}*" in text_of(reply) and f") {shown}" in text_of(reply)

    app.event({"type": "app_home_opened", "user": ADMIN, "tab": "home"})
    app.slack.wait_for(lambda: app.slack.calls_to("views.publish"))
    home = text_of(app.slack.calls_to("views.publish")[-1].params["view"])
    for label, shown in cents.items():
        section = home.split(f"*{label}*")[1].split("*")[0]
        assert f"month to date {shown}" in section, section
