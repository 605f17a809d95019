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

FIELD_LIMIT = 2000  # a section field's text
MAX_FIELDS = 10  # a section's fields

EMOJI = {
    "budget": ":moneybag:",
    "forecast": ":crystal_ball:",
    "spike": ":chart_with_upwards_trend:",
    "sync_failure": ":rotating_light:",
    "still_failing": ":hourglass:",
    "recovered": ":white_check_mark:",
}
SNOOZES = (("1 day", "1d"), ("1 week", "7d"))
"""The Snooze menu: what it shows, and what its value says (with the incident after)."""
MUTED_WHAT = {
    "budget": "this budget",
    "forecast": "this budget",
    "spike": "this connection's spend spikes",
    "sync_failure": "this connection's sync failures",
    "still_failing": "this connection's sync failures",
}
ALERT_ACTIONS = "xa:"
"""The action ids of Acknowledge, Snooze and Mute (``bot.slack.listeners.alert_actions``)."""
STATE_BLOCK = "xa:state"
"""The context blocks that say who acknowledged, snoozed or muted an alert (one each)."""


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
    """A header, the alert's fields, its fix in one line, its commands as buttons with
    Acknowledge, Snooze and Mute beside them, and how often it repeats.

    An alert kept from before it had fields shows its text instead."""
    emoji = EMOJI.get(alert.kind, ":bell:")
    # What a notification shows: the title, unless the text already says it.
    fallback = alert.text if alert.title in alert.text else f"{alert.title}: {alert.text}"
    incident = alert.incident if alert.can_silence else None
    return render_json(
        "slack/alert.json.j2",
        fallback=clip(mrkdwn(fallback), SECTION_LIMIT),
        header=clip(mrkdwn(f"{emoji} {alert.title}"), HEADER_LIMIT),
        body=clip(mrkdwn(alert.text), SECTION_LIMIT),
        fields=[
            clip(f"*{mrkdwn(f.label)}*\n{mrkdwn(f.value)}", FIELD_LIMIT)
            for f in alert.fields[:MAX_FIELDS]
        ],
        fix=clip(mrkdwn(alert.fix), SECTION_LIMIT) if alert.fix else "",
        note=alert.note,
        buttons=buttons(alert.actions),
        incident=incident,
        snoozes=[(label, f"{value} {incident}") for label, value in SNOOZES],
        mute_words=(
            f"No more alerts about {MUTED_WHAT.get(alert.kind, 'this')} until an admin unmutes "
            "them (from /xai-usage alerts list, or the Home tab). Only admins can mute."
        ),
        alert=alert,
    )


def with_state(
    message: dict[str, Any], line: str, what: str, *, drop: frozenset[str] = frozenset()
) -> dict:
    """A posted alert (``text`` and ``blocks``, as a click's payload carries it) saying
    ``line``: who acknowledged, snoozed or muted it (``what``), and what that does, in
    place of what it said of that before (an acknowledgement stays beside a snooze),
    without the controls in ``drop`` (action ids)."""
    block_id = f"{STATE_BLOCK}:{what}"
    blocks = []
    for block in message.get("blocks") or ():
        if block.get("block_id") == block_id:
            continue
        if block.get("type") == "actions" and drop:
            elements = [e for e in block.get("elements") or () if e.get("action_id") not in drop]
            if not elements:
                continue
            block = {**block, "elements": elements}
        blocks.append(block)
    state = {
        "type": "context",
        "block_id": block_id,
        "elements": [{"type": "mrkdwn", "text": clip(line, SECTION_LIMIT)}],
    }
    # After the buttons and the states said before: the story reads top to bottom.
    last = max(
        (
            i
            for i, b in enumerate(blocks)
            if b.get("type") == "actions" or str(b.get("block_id", "")).startswith(STATE_BLOCK)
        ),
        default=len(blocks) - 1,
    )
    blocks.insert(last + 1, state)
    return {"text": message.get("text") or "", "blocks": blocks}


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
