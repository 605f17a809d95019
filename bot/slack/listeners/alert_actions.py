"""Acknowledge, Snooze and Mute on an alert: signed ``block_actions`` from its buttons.

Unlike the ``xu:`` controls, these are not commands typed by a click: each is
about one incident of one posted alert (its value names the incident). Who may
do what, and what each does, is :mod:`bot.incidents`'; here a click is checked
(the person, the incident is this workspace's), recorded, and the alert it came
from says who did it, in place (``chat.update``), for everyone in the channel.
A repeated click (the same ``action_ts``, person and control) never reaches
here twice: the app's replay guard answers it (``bot.slack.replays``).
"""

from __future__ import annotations

from datetime import timedelta

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import incidents
from bot.alerts import rule_of, rule_words
from bot.formatting import clock, mrkdwn_inert
from bot.slack import blocks
from bot.slack.messages import ALERT_ACTIONS, with_state
from bot.slack.service import Invocation, SlackService, click_invocation

ACK, SNOOZE, MUTE = f"{ALERT_ACTIONS}ack", f"{ALERT_ACTIONS}snooze", f"{ALERT_ACTIONS}mute"
SNOOZE_FOR = {"1d": timedelta(days=1), "7d": timedelta(days=7)}
"""The Snooze menu's values (``bot.slack.messages.SNOOZES``) and how long each holds."""
OUT_OF_DATE = "That alert's button is out of date: `/xai-usage alerts list` shows what is set."
ONLY_ADMINS_MUTE = (
    "Only workspace admins and owners (or people listed in XAI_USAGE_ADMINS) can mute alerts. "
    "You can Acknowledge this one, or Snooze it for a day or a week."
)


def register(app: App) -> None:
    app.action(ACK)(clicked)
    app.action(SNOOZE)(clicked)
    app.action(MUTE)(clicked)


def clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    service: SlackService = context["xai_usage"]
    service.after_ack(act, service, client, click_invocation(body, context), body)


def act(service: SlackService, client: WebClient, invocation: Invocation, body: dict) -> None:
    """Check who clicked what, record it, and show it on the alert."""
    respond = service.responder(client, invocation)

    def tell(text: str) -> None:
        respond(**blocks.notice(text), replace_original=False)

    action = (body.get("actions") or [{}])[0]
    control = action.get("action_id", "")
    value = str(action.get("value") or (action.get("selected_option") or {}).get("value") or "")
    period, _, incident = value.partition(" ") if control == SNOOZE else ("", "", value)
    rule = rule_of(incident)
    if rule is None or (control == SNOOZE and period not in SNOOZE_FOR):
        tell(OUT_OF_DATE)
        return
    if refusal := service.refusal(client, invocation):
        tell(refusal)  # guests, visitors, bots: the app's polite refusal
        return
    if control == MUTE and service.refusal(client, invocation, admin=True):
        tell(ONLY_ADMINS_MUTE)
        return
    workspace_id = service.workspace_id(invocation)
    db, user, now = service.runtime.db, invocation.user_id, service.runtime.clock()
    with db.session() as session:
        what = rule_words(session, workspace_id, rule, mrkdwn_inert)
    if what is None:  # its budget or connection is gone, or is another workspace's
        tell(OUT_OF_DATE)
        return
    drop: frozenset[str] = frozenset()
    if control == ACK:
        done = incidents.acknowledge(db, workspace_id, incident, user, now)
        if not done.now:
            tell(f"<@{done.by}> acknowledged it already, at {clock(done.at)}.")
            return
        reminders = " No more reminders about it." if rule.startswith("syncfail:") else ""
        line = f":white_check_mark: Acknowledged by <@{user}> at {clock(now)}.{reminders}"
        drop = frozenset({ACK})
    elif control == SNOOZE:
        until = now + SNOOZE_FOR[period]
        incidents.snooze(db, workspace_id, rule, user, until)
        line = (
            f":zzz: Snoozed by <@{user}> until {clock(until)}: nothing more about {what} "
            "until then (anything still going on is posted then)."
        )
    else:
        incidents.mute(db, workspace_id, rule, user, now)
        line = (
            f":no_bell: Muted by <@{user}>: no more alerts about {what} until an admin unmutes "
            "them (`/xai-usage alerts list`, or the Home tab)."
        )
        drop = frozenset({SNOOZE, MUTE})
    service.home_changed(invocation.team_id)
    _show(client, body, line, control.removeprefix(ALERT_ACTIONS), drop, tell)


def _show(client: WebClient, body: dict, line: str, what: str, drop: frozenset[str], tell) -> None:
    """Say ``line`` on the alert clicked, for everyone; to the clicker alone if it can't be."""
    message = body.get("message")
    channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id"
    )
    ts = (body.get("container") or {}).get("message_ts") or (message or {}).get("ts")
    if isinstance(message, dict) and channel and ts:
        try:
            client.chat_update(channel=channel, ts=ts, **with_state(message, line, what, drop=drop))
            return
        except SlackApiError:
            pass  # an old or unreadable message: the clicker still hears it
    tell(line)
