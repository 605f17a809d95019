"""Block Kit replies: data cut to Slack's limits, rendered by templates/slack/.

Slack allows 50 blocks a message and 3,000 characters a section; however
many models, days or connections there are, long lists end with "and N
more" instead of breaking the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bot import figures, formatting
from bot.grammar import COMMANDS, Command, words
from bot.insights import Insights
from bot.render import GROUP_TITLES, insight_label, render_json
from bot.reports import Report, StatusRow
from bot.sync import SyncResult
from storage.models import ConnectionStatus

MAX_TABLE_ROWS = 32  # a whole month of days (31) before "and N more"; 40 a line is ~1,300
PHONE_WIDTH = 40
"""A table line at most: a phone shows about 40 monospace characters without wrapping."""
SHARE_WIDTH = 6
MAX_STATUS_ROWS = 40
FALLBACK_LABELS = 5
LABEL_WIDTH = 26
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


def report_controls(report: Report, command: Command) -> dict[str, list[dict[str, Any]]]:
    """The report's buttons, each carrying a command (see :func:`bot.grammar.words`).

    Period and grouping clicks keep the filters and update the message in place
    (``xu:view:``); ``range`` keeps its dates when the grouping changes.
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
        _button("xu:share:report", "Share to channel", same(share=True)),
    ]
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


def report_message(
    report: Report, command: Command | None = None, *, shared_by: str | None = None
) -> dict[str, Any]:
    """``command`` (the words that asked) adds the controls; ``shared_by`` (a user id)
    says who posted it in the channel, where a copy carries no controls."""
    cells = report.table()
    shown = cells[:MAX_TABLE_ROWS]
    rest = cells[MAX_TABLE_ROWS:]
    if rest:  # keep the last line for "and N more"
        shown, rest = shown[:-1], cells[MAX_TABLE_ROWS - 1 :]
    hidden_total = sum((c.cents for c in rest if c.cents is not None), Decimal(0))
    hidden_share = sum((c.share for c in rest if c.share is not None), Decimal(0))
    costs = [c.cost for c in cells]
    costs.append(formatting.money(hidden_total))
    cost_width = max(len(c) for c in costs)
    subtitle = [f"by {GROUP_TITLES[report.group_by]}"]
    if report.model_pattern:
        subtitle.append(f"models matching “{formatting.mrkdwn_inert(report.model_pattern)}”")
    count = len(report.connection_labels)
    subtitle.append(f"{count} connection{'s' if count != 1 else ''}")
    subtitle.append(f"as of {formatting.clock(report.as_of)}")
    top = ", ".join(f"{formatting.mrkdwn_inert(c.label)} {c.cost}" for c in cells[:3])
    header = f"{report.period.title}: {figures.figure_words(report.total)}"
    controls = (
        report_controls(report, command)
        if command is not None and not shared_by and not report.empty
        else None
    )
    return render_json(
        "slack/report.json.j2",
        report=report,
        controls=controls,
        shared_by=shared_by,
        rows=shown,
        hidden=len(rest),
        hidden_total=formatting.money(hidden_total),
        hidden_share=figures.share_words(hidden_share),
        settling=figures.settle_words(report.total.coverage),
        header=formatting.fit(header, 150).rstrip(),
        subtitle="  ·  ".join(subtitle),
        fallback=f"{header}" + (f" ({top})" if top else ""),
        problems=[formatting.mrkdwn(p) for p in report.problems[:5]],
        coverage_notes=report.coverage_notes[:3],
        caveats=report.caveats[:3],
        label_width=min(
            LABEL_WIDTH,
            PHONE_WIDTH - 2 - cost_width - 2 - SHARE_WIDTH,
            max([len(c.label) for c in shown] + [12]),
        ),
        cost_width=cost_width,
    )


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


def status_message(rows: Sequence[StatusRow], alerts: Sequence[str] = ()) -> dict[str, Any]:
    return render_json(
        "slack/status.json.j2",
        rows=rows[:MAX_STATUS_ROWS],
        # Labels as shown (inert); commands to copy keep them as typed.
        shown={
            label: formatting.inert(label)
            for row in rows[:MAX_STATUS_ROWS]
            for label in (row.label, row.duplicate_of)
            if label
        },
        alerts=[formatting.mrkdwn_keep_references(line) for line in alerts],
        controls=status_controls(rows),
        hidden=max(0, len(rows) - MAX_STATUS_ROWS),
        icons=STATUS_ICONS,
        fallback=status_fallback(rows),
    )


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


def help_message(topic: str | None = None) -> dict[str, Any]:
    commands = {name: spec for name, spec in COMMANDS.items() if "slack" in spec.surfaces}
    return render_json("slack/help.json.j2", commands=commands, topic=commands.get(topic or ""))


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
        lines = [*lines[:29], f"and {len(lines) - 29} more"]
    return "\n".join(lines) or (
        "Nothing is connected yet, so there is nothing to sync: a workspace admin can run "
        "`/xai-usage connect` first."
    )


def form_button(command: str) -> dict[str, Any]:
    """A command that opens a form, asked where Slack cannot open one (a DM): a button that can."""
    return render_json("slack/form_button.json.j2", command=command[:2000])
