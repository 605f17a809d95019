"""Scheduled messages in Slack: digests, alerts and pause notes as Block Kit.

``bot.jobs`` hands its outbox plain data (a :class:`~bot.digests.Digest`,
an :class:`~bot.alerts.Alert`, a :class:`~bot.jobs.DigestPaused`); this
module is how Slack shows each, from ``templates/slack/``. The terminal's
renderings of the same data are in ``bot.render``; the webhook's is
:func:`bot.alerts.alert_json`.
"""

from __future__ import annotations

import re
from functools import singledispatch
from typing import Any

from bot.alerts import Action, Alert
from bot.digests import Digest, DigestLine, digest_view
from bot.formatting import clip, money, mrkdwn
from bot.jobs import DigestPaused
from bot.render import insights_section, render_json
from bot.slack import native
from bot.slack.blocks import notice
from bot.slack.native import Table

HEADER_LIMIT = 150  # Slack's header block
SECTION_LIMIT = 3000  # Slack's section text
BUTTON_TEXT_LIMIT = 75  # a button's label
BUTTON_VALUE_LIMIT = 2000

EMOJI = {
    "budget": ":moneybag:",
    "forecast": ":crystal_ball:",
    "spike": ":chart_with_upwards_trend:",
    "sync_failure": ":rotating_light:",
    "recovered": ":white_check_mark:",
}


@singledispatch
def slack_message(item: object) -> dict[str, Any]:
    """``chat.postMessage``'s ``text`` and ``blocks`` for one scheduled item."""
    raise TypeError(f"no Slack message for {type(item).__name__}")


@slack_message.register
def digest_message(digest: Digest) -> dict[str, Any]:
    """Block Kit for ``chat.postMessage``: ``{"text": fallback, "blocks": [...]}``; its
    table a native one, the code block in ``text`` its fallback (bot.slack.native)."""
    insights = insights_section(digest.insights) if digest.insights else ""
    view = digest_view(digest)
    text = mrkdwn(view["fallback"])
    table = None
    if digest.top:
        shown = digest_table(digest, view["lines"], view["other"])
        table = native.table_block(shown)
        text = native.with_fallback(text, native.code_section_text(shown))
    return render_json("slack/digest.json.j2", **view, insights=insights, table=table, text=text)


def digest_table(digest: Digest, lines: list[DigestLine], other: DigestLine | None) -> Table:
    """A digest's lines (bot.digests.digest_view: they add up to its total) as a table."""
    rows = [(line.model, line.cost, line.share, line.spark) for line in lines]
    if other is not None:
        rows.append((other.model, other.cost, other.share, ""))
    trend = "Weeks" if digest.every == "month" else "7 days"
    return Table(
        header=("Model", "Cost", "%", trend),
        rows=tuple(rows),
        align=("left", "right", "right", "left"),
        total=("Total", money(digest.total.value) + digest.total.mark, "", ""),
    )


@slack_message.register
def alert_message(alert: Alert) -> dict[str, Any]:
    """A header, the text with its fix, its actions as buttons, and how often it repeats."""
    emoji = EMOJI.get(alert.kind, ":bell:")
    # What a notification shows: the title, unless the text already says it.
    fallback = alert.text if alert.title in alert.text else f"{alert.title}: {alert.text}"
    return render_json(
        "slack/alert.json.j2",
        fallback=clip(mrkdwn(fallback), SECTION_LIMIT),
        header=clip(mrkdwn(f"{emoji} {alert.title}"), HEADER_LIMIT),
        body=clip(mrkdwn(alert.text), SECTION_LIMIT),
        note=alert.note,
        buttons=buttons(alert.actions),
        alert=alert,
    )


@slack_message.register
def paused_message(paused: DigestPaused) -> dict[str, Any]:
    return notice(
        f":pause_button: I paused the {paused.every}ly digest for <#{paused.channel_id}>: "
        f"{paused.fix}."
    )


def buttons(actions: tuple[Action, ...]) -> list[dict[str, str]]:
    """Each action as a button: its value is the command, its action_id ``xu:<slug>``.

    Values over Slack's limit (a command naming a very long label) are left
    out rather than cut: a cut command would run something else.
    """
    shown = []
    slugs: set[str] = set()
    for number, action in enumerate(actions):
        if len(action.command) > BUTTON_VALUE_LIMIT:
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", action.label.lower()).strip("-")[:40] or str(number)
        if slug in slugs:  # action_id must be unique within the message
            slug = f"{slug}-{number}"
        slugs.add(slug)
        shown.append(
            {
                "text": clip(action.label, BUTTON_TEXT_LIMIT),
                "action_id": f"xu:{slug}",
                "value": action.command,
            }
        )
    return shown
