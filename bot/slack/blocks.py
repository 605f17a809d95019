"""Block Kit replies: data cut to Slack's limits, rendered by templates/slack/.

Slack allows 50 blocks a message and 3,000 characters a section; however
many models, days or connections there are, long lists end with "and N
more" instead of breaking the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from bot import figures, formatting
from bot.grammar import COMMANDS, Command, unknown_command, words
from bot.insights import Insights
from bot.render import GROUP_TITLES, insight_label, render_json
from bot.reports import Cells, Report, StatusRow, nothing_connected
from bot.setup import STOPS, Listed, Listing
from bot.slack import native
from bot.sync import SyncResult
from storage.models import ConnectionStatus

MAX_TABLE_ROWS = 32
"""The fallback code block's rows: a whole month of days (31) before the folded line; at 40
columns a line, about 1,300 characters (a section takes 3,000)."""
MAX_STATUS_ROWS = 40
FALLBACK_LABELS = 5
STATUS_ICONS = {
    "ok": ":white_check_mark:",
    "pending": ":hourglass:",
    "error": ":x:",
    "failing": ":warning:",
}


MAX_BUTTON_VALUE = 2000
MAX_OPTION_VALUE = 150
"""Slack's limits on what a button and a select's option carry: a control whose
command would not fit is left out (only a pasted, very long --model can do that)."""
MAX_KEY_BUTTONS = 5
"""Status: "Update key" buttons for the first few connections that need one."""
PERIODS = (
    ("today", "Today"),
    ("yesterday", "Yesterday"),
    ("week", "Last 7 days"),
    ("month", "This month"),
    ("last-month", "Last month"),
)
GROUPINGS = (("model", "Model"), ("day", "Day"), ("key", "API key"), ("connection", "Connection"))


def report_controls(
    report: Report, command: Command, *, in_dm: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """The report's buttons, each carrying a command (see :func:`bot.grammar.words`).

    Period and grouping clicks keep the filters and update the message in place
    (``xu:view:``); ``range`` keeps its dates when the grouping changes. In the app's
    DM (``in_dm``) there is no channel to share to.
    """
    filters = {"connection": command.get("connection"), "model": command.get("model")}
    by = report.group_by
    periods = [
        {"text": text, "value": words(name, by=by, **filters), "selected": name == command.name}
        for name, text in PERIODS
    ]
    view: list[dict[str, Any]]
    if all(len(p["value"]) <= MAX_OPTION_VALUE for p in periods):
        view = [{"select": "xu:view:period", "text": "Period", "options": periods}]
    else:  # a select's option holds 150 characters, a button's value 2,000
        view = [
            _button(f"xu:view:{name}", p["text"], p["value"], p["selected"])
            for (name, _), p in zip(PERIODS, periods, strict=True)
        ]

    def same(**changes: Any) -> str:  # this report's command, with some options changed
        return words(command.name, *command.args, **{"by": by, **filters, **changes})

    view += [
        _button(f"xu:view:by-{name}", text, same(by=name), selected=name == by)
        for name, text in GROUPINGS
    ]
    period = command.args if command.name == "range" else (command.name,)
    export = words("export", *period, by=by, **filters, format="csv")
    tools = [
        _button("xu:chart", "Chart", same(chart=True)),
        _button("xu:export", "Export CSV", export),
    ]
    if not in_dm:
        tools.append(_button("xu:share:report", "Share to channel", same(share=True)))
    return {
        "view": [c for c in view if len(c.get("value", "")) <= MAX_BUTTON_VALUE],
        "tools": [c for c in tools if len(c["value"]) <= MAX_BUTTON_VALUE],
    }


def _button(action_id: str, text: str, value: str, selected: bool = False) -> dict[str, Any]:
    return {"action_id": action_id, "text": text, "value": value, "selected": selected}


def status_controls(rows: Sequence[StatusRow]) -> list[dict[str, Any]]:
    """ "Sync now", and "Update key" for the first connections whose key needs a person."""
    if not rows:
        return []
    needing_key = [r for r in rows if r.status == ConnectionStatus.ERROR][:MAX_KEY_BUTTONS]
    return [
        _button("xu:sync", "Sync now", "sync"),
        *(
            _button(
                f"xu:update-key:{i}",
                formatting.clip(f"Update key: {r.label}", 75),
                words("update-key", r.label),
            )
            for i, r in enumerate(needing_key)
        ),
    ]


CONFIRM_TEXT = 300
"""Characters of a confirmation dialog's text, Slack's limit."""
LIST_TITLES = {"digest": "Digests", "budget": "Budgets"}


def remove_control(item: Listed, action_id: str) -> dict[str, Any]:
    """A Remove button that asks first (Slack's confirmation dialog), naming what it
    removes and what that stops; the click runs ``digest remove 3`` as typed."""
    stops = STOPS[item.kind]
    text = f"{item.removes}: {stops[:1].lower()}{stops[1:]}."
    return {
        "action_id": action_id,
        "text": "Remove",
        "value": item.remove,
        "confirm": {
            "title": f"Remove {item.kind} {item.ident}?",
            "text": formatting.clip(formatting.mrkdwn_keep_references(text), CONFIRM_TEXT),
        },
    }


def setup_list_message(listing: Listing, more: str, empty: str, said: str = "") -> dict[str, Any]:
    """A page of ``digest list`` or ``budget list``: each item with its Remove button, how
    many more there are and the command that shows them, and buttons to turn the page
    (in place). ``more`` and ``empty`` are the Setup's words for the rest and for none;
    ``said``, what a Remove clicked on the page did (the page is then shown again, in
    place, without what it removed)."""
    title = LIST_TITLES[listing.name]
    said = formatting.mrkdwn_keep_references(said)
    pages = -(-listing.total // listing.size) if listing.size else 1
    where = f"page {listing.page} of {pages}, {listing.total} in all" if pages > 1 else ""
    heading = f"*{title}*" + (f" ({where})" if where else "")
    turn = []
    if listing.previous_page is not None:
        turn.append(_button("xu:view:page-previous", "Previous page", listing.previous_page))
    if listing.more:
        turn.append(_button("xu:view:page-next", "Next page", listing.next_page))
    return render_json(
        "slack/setup_list.json.j2",
        items=[
            (
                replace(
                    item, text=formatting.mrkdwn_keep_references(f"*{item.ident}*  {item.text}")
                ),
                remove_control(
                    replace(item, remove=_on_page(item.remove, listing.page)),
                    f"xu:view:remove:{n}",  # in place: the page again, without it
                ),
            )
            for n, item in enumerate(listing.items)
        ],
        said=said,
        heading=heading,
        more=formatting.mrkdwn_keep_references(more),
        empty=formatting.mrkdwn_keep_references(empty),
        pages=turn,
        fallback=" ".join(
            part
            for part in (
                said,
                f"{title}" + (f" ({where})" if where else "") if listing.total else empty,
            )
            if part
        ),
    )


def _on_page(command: str, page: int) -> str:
    """A list's Remove carries the page it is on, to show that page again after."""
    return command if page == 1 else f"{command} --page {page}"


def report_message(
    report: Report,
    command: Command | None = None,
    *,
    shared_by: str | None = None,
    chart: dict[str, Any] | None = None,
    chart_note: str | None = None,
    in_dm: bool = False,
) -> dict[str, Any]:
    """``command`` (the words that asked) adds the controls; ``shared_by`` (a user id)
    says who posted it in the channel, where a copy carries no controls; ``chart`` (a
    ``data_visualization`` block, bot.slack.native) is shown under the table, with
    ``chart_note`` (what it leaves out) under it; ``in_dm``: asked in the app's DM, where
    there is no channel to share it to.

    The table is Slack's ``table`` block; its phone-wide code block, the fallback, rides
    in the message's ``text`` (bot.slack.native.degrade swaps it in where refused)."""
    cells = report.table()
    subtitle = [f"by {GROUP_TITLES[report.group_by]}"]
    if report.model_pattern:
        subtitle.append(f"models matching “{formatting.mrkdwn_inert(report.model_pattern)}”")
    count = len(report.connection_labels)
    subtitle.append(f"{count} connection{'s' if count != 1 else ''}")
    subtitle.append(f"as of {formatting.clock(report.as_of)}")
    top = ", ".join(f"{formatting.mrkdwn_inert(c.label)} {c.cost}" for c in cells[:3])
    header = f"{report.period.title}: {figures.figure_words(report.total)}"
    if report.empty:  # no figure, count or as-of: how to connect instead
        header, subtitle, top = f"{report.period.title}: nothing connected yet", [], ""
    headline = f"{header}" + (f" ({top})" if top else "")
    controls = (
        report_controls(report, command, in_dm=in_dm)
        if command is not None and not shared_by and not report.empty
        else None
    )
    table = native_note = None
    if cells and report.total.known:
        filters = (
            {"connection": command.get("connection"), "model": command.get("model")}
            if command is not None
            else {"model": report.model_pattern}
        )
        wide = report_table(report, cells, native.TABLE_ROWS_INSIDE, filters)
        narrow = report_table(report, cells, MAX_TABLE_ROWS, filters)
        table = native.table_block(wide.table)
        native_note = wide.note
        headline = native.with_fallback(
            headline, native.code_section_text(narrow.table, narrow.note)
        )
    return render_json(
        "slack/report.json.j2",
        report=report,
        controls=controls,
        shared_by=shared_by,
        has_rows=bool(cells),
        table=table,
        table_note=native_note,
        chart=chart,
        chart_note=chart_note if chart else None,
        settling=figures.settle_words(report.total.coverage),
        header=formatting.fit(header, 150).rstrip(),
        subtitle="  ·  ".join(subtitle),
        nothing_connected=nothing_connected("/xai-usage", in_slack=True),
        fallback=headline,
        problems=[formatting.mrkdwn(p) for p in report.problems[:5]],
        coverage_notes=report.coverage_notes[:3],
        caveats=report.caveats[:3],
    )


@dataclass(frozen=True)
class ShownTable:
    """A report's table cut to some rows, and how to see those it leaves out."""

    table: native.Table
    note: str  # mrkdwn; "" when every row is shown


TIME_GROUPS = {"day": "day", "week": "week", "month": "month"}


def report_table(
    report: Report, cells: Sequence[Cells], rows: int, filters: dict[str, Any] | None = None
) -> ShownTable:
    """``cells`` in at most ``rows`` lines: a table by day, week or month keeps the newest
    and folds the oldest into one line before them; any other keeps the largest and folds
    the rest after them. The folded line's cost and share are its cells' sums (they add
    up, so the column still adds up to the total)."""
    unit = TIME_GROUPS.get(report.group_by)
    shown, hidden = list(cells), []
    if len(cells) > rows:
        keep = rows - 1
        if unit:
            shown, hidden = list(cells[-keep:]), list(cells[:-keep])
        else:
            shown, hidden = list(cells[:keep]), list(cells[keep:])

    def line(c: Cells) -> tuple[str, str, str]:  # a label as typed: Slack shows cells literally
        return (c.label, c.cost, c.share_text)

    body = [line(c) for c in shown]
    note = ""
    if hidden:
        cost = formatting.money(sum((c.cents for c in hidden if c.cents is not None), Decimal(0)))
        share = figures.share_words(
            sum((c.share for c in hidden if c.share is not None), Decimal(0))
        )
        plural = "" if len(hidden) == 1 else "s"
        if unit:
            body.insert(0, (f"{len(hidden)} earlier {unit}{plural}", cost, share))
            note = _earlier_note(report, shown[0], len(hidden), unit, len(shown), filters or {})
        else:
            body.append((f"and {len(hidden)} more", cost, share))
            note = _more_note(report, len(cells), filters or {})
    shares = [c.share for c in cells if c.share is not None]
    total = (
        "Total",
        formatting.money(report.total.value) + report.total.mark,
        figures.share_words(sum(shares, Decimal(0))) if shares else "",
    )
    title = GROUP_TITLES[report.group_by]
    return ShownTable(
        native.Table(
            header=(title[:1].upper() + title[1:], "Cost", "Share"),
            rows=tuple(body),
            align=("left", "right", "right"),
            total=total,
        ),
        note,
    )


def _earlier_note(
    report: Report, first: Cells, hidden: int, unit: str, shown: int, filters: dict[str, Any]
) -> str:
    """How to see the oldest rows a table by day, week or month left out (mrkdwn)."""
    last_hidden = _row_start(report, first) - timedelta(days=1)
    command = words(
        "range",
        report.period.start.isoformat(),
        last_hidden.isoformat(),
        by=report.group_by,
        **filters,
    )
    return (
        f"The newest {shown} {unit}s are shown; `/xai-usage {formatting.mrkdwn(command)}` "
        f"shows the {hidden} before them "
        f"({formatting.day_span(report.period.start, last_hidden)})."
    )


def _more_note(report: Report, rows: int, filters: dict[str, Any]) -> str:
    """How to see every row of a table that folded its smallest (mrkdwn)."""
    period = report.period
    when = (
        (period.start.isoformat(), period.end.isoformat())
        if period.name == "range"
        else (period.name,)
    )
    command = words("export", *when, by=report.group_by, **filters)
    return f"All {rows} rows: `/xai-usage {formatting.mrkdwn(command)}` (a CSV file)."


def _row_start(report: Report, cells: Cells) -> date:
    """The first day of a day, week or month row, within the period."""
    key = cells.row.key
    if report.group_by == "month":
        first = date.fromisoformat(f"{key}-01")
    else:
        first = date.fromisoformat(key)
    return max(first, report.period.start)


MAX_INSIGHT_NOTES = 5


def insights_message(insights: Insights) -> dict[str, Any]:
    """``insights``: a section and its source per insight, then why any is missing."""
    top = insights.movers.models[0] if insights.movers and insights.movers.models else None
    fallback = f"Insights up to {formatting.day_label(insights.today)}" + (
        f": {insight_label(top.label)} {formatting.money_change(top.change_usd)} this week"
        if top
        else ""
    )
    return render_json(
        "slack/insights.json.j2",
        insights=insights,
        esc=insight_label,
        notes=insights.notes[:MAX_INSIGHT_NOTES],
        fallback=fallback,
    )


def status_message(
    rows: Sequence[StatusRow], alerts: Sequence[str] = (), *, page: int = 1
) -> dict[str, Any]:
    """``status``: a page of :data:`MAX_STATUS_ROWS` connections, a table of them at the
    top (its code block in ``text`` the fallback), then what each needs, one section per
    connection; how many more there are and the command (and button) that shows the next
    page."""
    pages = max(1, -(-len(rows) // MAX_STATUS_ROWS))
    if page > pages:
        return notice(
            f"There are {len(rows)} connections, {MAX_STATUS_ROWS} a page: "
            f"`/xai-usage {_status_page(pages)}` is the last."
        )
    shown = rows[(page - 1) * MAX_STATUS_ROWS : page * MAX_STATUS_ROWS]
    hidden = max(0, len(rows) - page * MAX_STATUS_ROWS)
    turn = []
    if page > 1:
        turn.append(_button("xu:view:page-previous", "Previous page", _status_page(page - 1)))
    if hidden:
        turn.append(_button("xu:view:page-next", "Next page", _status_page(page + 1)))
    fallback = status_fallback(rows)
    table = None
    if shown:
        summary = status_table(rows, shown)
        table = native.table_block(summary)
        fallback = native.with_fallback(fallback, native.code_section_text(summary))
    return render_json(
        "slack/status.json.j2",
        table=table,
        rows=shown,
        # Labels as shown (inert); commands to copy keep them as typed.
        shown={
            label: formatting.inert(label)
            for row in shown
            for label in (row.label, row.duplicate_of)
            if label
        },
        alerts=[formatting.mrkdwn_keep_references(line) for line in alerts],
        controls=[*status_controls(shown), *turn],
        hidden=hidden,
        next_page=_status_page(page + 1),
        icons=STATUS_ICONS,
        fallback=fallback,
    )


def status_table(rows: Sequence[StatusRow], shown: Sequence[StatusRow]) -> native.Table:
    """``status`` at a glance: each connection's state, month to date and forecast, and
    the workspace's (the same figures as the sections below; ``*``: fetched days only)."""

    def amount(figure: figures.Figure) -> str:
        return figure.money_text + figure.mark if figure.known else "not fetched"

    def forecast(f: figures.Forecast | None) -> str:
        return "" if f is None else formatting.money(f.total) + ("" if f.complete else "*")

    body = tuple(
        (row.label, row.status, amount(row.month_to_date), forecast(row.forecast)) for row in shown
    )
    first = rows[0]
    total = None
    if first.workspace_month_to_date is not None:
        scope = "All connections" if len(rows) > 1 else "The workspace"
        total = (
            scope,
            "",
            amount(first.workspace_month_to_date),
            forecast(first.workspace_forecast),
        )
    return native.Table(
        header=("Connection", "Status", "Month to date", "Forecast"),
        rows=body,
        align=("left", "left", "right", "right"),
        total=total,
        narrow=(0, 1, 2),
    )


def _status_page(page: int) -> str:
    return "status" if page <= 1 else f"status --page {page}"


def status_fallback(rows: Sequence[StatusRow]) -> str:
    """A notification-sized summary: counts by status and the first few labels, escaped.

    One line per connection would pass Slack's 40,000 characters long before
    1,000 connections.
    """
    if not rows:
        return "Nothing is connected yet: a workspace admin can run `/xai-usage connect`."
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    shown = "; ".join(
        f"{formatting.clip(formatting.mrkdwn_inert(r.label), 60)}: {r.status}"
        for r in rows[:FALLBACK_LABELS]
    )
    more = f"; and {len(rows) - FALLBACK_LABELS} more" if len(rows) > FALLBACK_LABELS else ""
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(rows)} connection{'s' if len(rows) != 1 else ''} ({tally}): {shown}{more}"


def notice(text: str, usage: str = "") -> dict[str, Any]:
    """``text`` is mrkdwn already: its data escaped by whoever built it."""
    return render_json("slack/notice.json.j2", text=formatting.clip(text, 2900), usage=usage)


def words_notice(text: str, usage: str = "", *, references: bool = True) -> dict[str, Any]:
    """A reply built from people's words (an error, a setup confirmation): escaped here,
    keeping the ``<#C…>``/``<@U…>`` references it makes on purpose; ``references=False``
    for one that makes none (a usage error), so none typed into it comes alive."""
    shown = formatting.mrkdwn_keep_references(text) if references else formatting.mrkdwn(text)
    return notice(shown, formatting.mrkdwn(usage))


def help_message(
    topic: str | None = None, *, admin: bool = True, refusal: str | None = None
) -> dict[str, Any]:
    """``help`` for one person: the commands they may run (the admins' for admins), one
    command's usage, or that a word is no command and the nearest there is. ``refusal``
    (a guest's, a visitor's) is all there is to say to someone who may run none."""
    if refusal:
        return notice(refusal)
    offered = {name: spec for name, spec in COMMANDS.items() if "slack" in spec.surfaces}
    spec = offered.get(topic or "")
    return render_json(
        "slack/help.json.j2",
        commands={name: s for name, s in offered.items() if admin or not s.admin},
        topic=spec,
        unknown=unknown_command(topic, "slack") if topic and spec is None else "",
        admins_only=spec is not None and spec.admin and not admin,
        admin=admin,
    )


def confirm_disconnect(label: str, uid: str) -> dict[str, Any]:
    return render_json("slack/confirm_disconnect.json.j2", label=formatting.inert(label), uid=uid)


def message_view(title: str, text: str) -> dict[str, Any]:
    return render_json("slack/message_view.json.j2", title=title[:24], text=text[:2900])


def sync_lines(results: Sequence[SyncResult]) -> str:
    """One line per connection synced, for the reply to `sync`."""
    lines = []
    for r in results:
        label = formatting.mrkdwn_inert(r.label)
        if r.ok:
            lines.append(
                f":white_check_mark: *{label}*: {r.days} days "
                f"({formatting.day_span(r.start, r.end)}), "
                f"{r.rows} rows, {formatting.money(r.total_usd)}"
            )
        else:
            lines.append(f":x: *{label}*: {formatting.mrkdwn(r.message or r.reason or '')}")
    if len(lines) > 30:
        rest = f"and {len(lines) - 29} more: `/xai-usage status` shows each connection's last sync."
        lines = [*lines[:29], rest]
    return "\n".join(lines) or (
        "Nothing is connected yet, so there is nothing to sync: a workspace admin can run "
        "`/xai-usage connect` first."
    )


def form_button(command: str, *, late: bool = False) -> dict[str, Any]:
    """A command that opens a form, asked where Slack cannot open one (a DM), or answered
    after Slack's 3 seconds to open it (``late``): a button that can."""
    return render_json("slack/form_button.json.j2", command=command[:2000], late=late)
