"""Setup forms: `digest add`, `budget set`, `alerts` and `range` typed bare open a modal.

Signed slash commands open them; signed view_submission payloads, filled in
as Slack fills them (the initial values unless changed), submit them. A form
saves exactly what the typed command saves, and every refusal shows on its
field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, timedelta
from decimal import Decimal
from logging import getLogger

import pytest
from sqlalchemy import select

from bot.slack.dispatch import run_command
from bot.slack.service import STORE_UNAVAILABLE, Invocation
from storage.db import Database
from storage.models import AlertRoute, Budget, DigestSubscription
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, MEMBER, TEAM, SlackApp, text_of
from tests.bot.slack.test_clicks import click
from tests.fakes.connections import add_connection

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

SELECTED = {
    "conversations_select": "selected_conversation",
    "timepicker": "selected_time",
    "datepicker": "selected_date",
}
INITIAL = {
    "conversations_select": "initial_conversation",
    "timepicker": "initial_time",
    "datepicker": "initial_date",
}


def open_form(app: SlackApp, words: str, user: str = ADMIN) -> tuple[dict, str]:
    """Type ``words``; the view opened and the command's response URL id."""
    opened = len(app.slack.calls_to("views.open"))
    _, url_id = app.command(words, user=user)
    app.slack.wait_for(lambda: len(app.slack.calls_to("views.open")) > opened)
    return app.slack.calls_to("views.open")[-1].params["view"], url_id


def inputs(view: dict) -> dict[str, dict]:
    return {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}


def initial(element: dict) -> str | None:
    if element["type"] == "static_select":
        return element.get("initial_option", {}).get("value")
    return element.get(INITIAL.get(element["type"], "initial_value"))


def submit(app: SlackApp, view: dict, user: str = ADMIN, **changes: str | None):
    """Submit ``view`` as Slack would: each input's initial value unless ``changes`` says."""
    state = {}
    for block_id, element in inputs(view).items():
        value = changes[block_id] if block_id in changes else initial(element)
        kind = element["type"]
        if kind == "static_select":
            chosen = next((o for o in element["options"] if o["value"] == value), None)
            entry = {"selected_option": chosen or ({"value": value} if value else None)}
        else:
            entry = {SELECTED.get(kind, "value"): value}
        state[block_id] = {"value": {"type": kind, **entry}}
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0001",
        "trigger_id": "trig.form",
        "view": {**view, "id": "V0002", "team_id": TEAM, "state": {"values": state}},
    }
    return app.interact(payload)


def errors_of(response) -> dict[str, str]:
    body = response.json()
    assert body["response_action"] == "errors"
    return body["errors"]


def option_value(view: dict, block_id: str, text: str) -> str:
    return next(o["value"] for o in inputs(view)[block_id]["options"] if o["text"]["text"] == text)


SAVED_DIGEST = (
    "channel_id",
    "at_time",
    "tz",
    "every",
    "connection_id",
    "quiet_min_usd",
    "quiet_change_pct",
    "created_by",
)


def digests(app: SlackApp) -> list[tuple]:
    with app.runtime.db.session() as session:
        rows = session.scalars(select(DigestSubscription).order_by(DigestSubscription.id))
        return [tuple(getattr(row, name) for name in SAVED_DIGEST) for row in rows]


# -- digest add -------------------------------------------------------------------


def test_bare_digest_add_opens_a_form_here_at_nine_in_the_askers_zone(connected: SlackApp):
    connected.slack.add_user("UTOKYO", is_admin=True, tz="Asia/Tokyo")
    view, url_id = open_form(connected, "digest add", user="UTOKYO")
    assert view["callback_id"] == "digest_form"
    fields = inputs(view)
    assert fields["channel"]["type"] == "conversations_select"
    assert fields["channel"]["initial_conversation"] == "CCOSTS"
    assert fields["channel"]["default_to_current_conversation"] is True
    assert (initial(fields["at"]), initial(fields["tz"]), initial(fields["every"])) == (
        "09:00",
        "Asia/Tokyo",
        "day",
    )
    assert [o["text"]["text"] for o in fields["connection"]["options"]] == [
        "All connections",
        "Production — xAI",
    ]
    assert initial(fields["connection"]) == "all"
    assert [o["text"]["text"] for o in fields["every"]["options"]] == [
        "Every day",
        "Every Monday",
        "On the 1st of each month",
    ]
    assert connected.replies(url_id) == []  # the form is the answer
    assert digests(connected) == []  # nothing saved until it is submitted


def test_a_hundred_and_twenty_long_labels_still_fit_a_select(slack_app: SlackApp):
    with slack_app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        for n in range(120):
            add_connection(session, workspace_id, f"{n:03d}" + " a very long team name" * 4)
    view, _ = open_form(slack_app, "digest add")
    options = inputs(view)["connection"]["options"]
    assert len(options) == 100 and options[0]["text"]["text"] == "All connections"
    assert max(len(o["text"]["text"]) for o in options) == 75  # Slack's most; cut with "…"
    view, _ = open_form(slack_app, "budget set --connection 119" + " a very long team name" * 4)
    last = inputs(view)["connection"]
    assert last["initial_option"] == last["options"][-1]  # the one typed, though past 99
    assert last["initial_option"]["text"]["text"].startswith("119 ")
    # the stand-in checked every other limit when the view opened (no violations)


def test_a_digest_form_saves_exactly_what_the_typed_command_saves(connected: SlackApp):
    connected.slack.add_channel("CWEEK", "weekly")
    _, url_id = connected.command(
        "digest add <#CWEEK|weekly> --at 08:30 --tz Europe/Paris --every week "
        '--connection "Production — xAI" --quiet-min 25 --quiet-change 20'
    )
    typed_reply = text_of(connected.reply(url_id))
    [typed] = digests(connected)
    _, removed = connected.command("digest remove 1")  # else the form's would be a repeat
    connected.reply(removed)
    view, url_id = open_form(connected, "digest add")
    response = submit(
        connected,
        view,
        channel="CWEEK",
        at="08:30",
        tz="Europe/Paris",
        every="week",
        connection=option_value(view, "connection", "Production — xAI"),
        quiet_min="25",
        quiet_change="20",
    )
    assert response.status_code == 200 and response.text == ""  # the form closes
    [formed] = digests(connected)
    assert typed == formed
    assert formed[:4] == ("CWEEK", "08:30", "Europe/Paris", "week")
    assert formed[5:] == (Decimal(25), 20, ADMIN)
    confirmed = text_of(connected.reply(url_id))  # to the command that opened the form
    [number] = set(re.findall(r"Digest (\d+):", confirmed))  # SQLite may reuse the removed id
    assert confirmed == typed_reply.replace("Digest 1", f"Digest {number}").replace(
        "remove 1", f"remove {number}"
    )
    notes = connected.slack.history("CWEEK")
    assert len(notes) == 2 and notes[0]["text"] == notes[1]["text"]  # the same note first


def test_digest_form_errors_show_on_their_fields(connected: SlackApp):
    view, _ = open_form(connected, "digest add")
    for field, value, expected in (
        ("tz", "Mars/Olympus", "Europe/London"),
        ("at", "25:00", "09:00"),
        ("quiet_min", "lots", "not an amount"),
        ("quiet_change", "0", "from 1 to 1000"),
        ("every", "hourly", "day, week, month"),
        ("channel", None, "Pick a channel"),
    ):
        errors = errors_of(submit(connected, view, **{field: value}))
        assert list(errors) == [field] and expected in errors[field], field
    assert digests(connected) == []
    assert connected.slack.calls_to("chat.postMessage") == []  # no note for a form refused


def test_a_channel_the_bot_cannot_post_in_is_refused_on_the_channel_field(connected: SlackApp):
    connected.slack.add_channel("CPRIV", "private", is_member=False)
    view, url_id = open_form(connected, "digest add")
    errors = errors_of(submit(connected, view, channel="CPRIV"))
    assert list(errors) == ["channel"]
    assert "I can't post in that channel" in errors["channel"] and "/invite" in errors["channel"]
    assert "<#" not in errors["channel"]  # a field error is plain text
    assert digests(connected) == [] and connected.replies(url_id) == []


def test_a_connection_removed_while_the_form_was_open_is_told_on_its_field(connected: SlackApp):
    view, _ = open_form(connected, "digest add")
    chosen = option_value(view, "connection", "Production — xAI")
    _, url_id = connected.command('disconnect "Production — xAI"')
    connected.reply(url_id)
    connected.service.disconnect(Invocation(TEAM, ADMIN), chosen)
    errors = errors_of(submit(connected, view, connection=chosen))
    assert "removed meanwhile" in errors["connection"]


# -- budget set -------------------------------------------------------------------


def test_bare_budget_set_opens_a_form_filled_with_any_options_typed(connected: SlackApp):
    view, _ = open_form(connected, "budget set")
    assert view["callback_id"] == "budget_form"
    fields = inputs(view)
    assert initial(fields["amount"]) is None and initial(fields["thresholds"]) == "50,80,100"
    assert initial(fields["channel"]) == "CCOSTS" and initial(fields["connection"]) == "all"
    view, _ = open_form(connected, 'budget set --thresholds 90 --connection "production — xai"')
    fields = inputs(view)
    assert initial(fields["thresholds"]) == "90"
    assert initial(fields["connection"]) == option_value(view, "connection", "Production — xAI")


def test_a_budget_form_saves_what_the_typed_command_saves(connected: SlackApp):
    view, url_id = open_form(connected, "budget set")
    assert errors_of(submit(connected, view, amount="a lot")) == {
        "amount": "“a lot” is not an amount: give dollars, more than $0 and at most "
        "$10,000,000, with at most 2 decimals (e.g. 500 or 1250.50)."
    }
    assert (
        "percentages"
        in errors_of(submit(connected, view, amount="5", thresholds="x"))["thresholds"]
    )
    response = submit(connected, view, amount="$1,250.50", thresholds="90,50")
    assert response.text == ""
    confirmed = text_of(connected.reply(url_id))
    assert "$1,250.50 a month, alerts at 50%, 90%" in confirmed
    assert "Its alerts go to <#CCOSTS>." in confirmed
    with connected.runtime.db.session() as session:
        budget = session.scalar(select(Budget))
    formed = (budget.amount_usd, budget.thresholds, budget.channel_id, budget.connection_id)
    _, url_id = connected.command("budget set 1250.50 --thresholds 90,50 --channel <#CCOSTS|c>")
    assert "(replaces $1,250.50)" in text_of(connected.reply(url_id))  # the same scope
    with connected.runtime.db.session() as session:
        budget = session.scalar(select(Budget))
    assert formed == (budget.amount_usd, budget.thresholds, budget.channel_id, None)


def test_a_budget_form_starts_from_the_scopes_budget_and_says_when_its_channel_moves(
    connected: SlackApp,
):
    connected.slack.add_channel("CALERTS", "alerts")
    _, url_id = connected.command("budget set 800 --thresholds 75,100 --channel <#CALERTS|a>")
    connected.reply(url_id)
    view, url_id = open_form(connected, "budget set")  # typed in #costs
    fields = inputs(view)
    assert initial(fields["amount"]) == "800.00" and initial(fields["thresholds"]) == "75,100"
    assert initial(fields["channel"]) == "CALERTS"  # where it alerts now, not where typed
    assert "Replaces:" in text_of({"blocks": view["blocks"]}) and "$800.00" in str(view)
    # A budget for one connection has none yet: the form starts empty for it.
    view_one, _ = open_form(connected, 'budget set --connection "Production — xAI"')
    assert initial(inputs(view_one)["amount"]) is None
    assert submit(connected, view, amount="900", channel="CCOSTS").text == ""
    confirmed = text_of(connected.reply(url_id))
    assert "(replaces $800.00)" in confirmed
    assert "Its alerts go to <#CCOSTS> (they went to <#CALERTS>)." in confirmed


def test_a_budget_form_with_no_channel_alerts_where_alerts_go(connected: SlackApp):
    view, url_id = open_form(connected, "budget set")
    assert submit(connected, view, amount="20", channel=None).text == ""
    confirmed = text_of(connected.reply(url_id))
    assert "Its alerts go" not in confirmed and "Alerts have nowhere to go yet" in confirmed
    with connected.runtime.db.session() as session:
        assert session.scalar(select(Budget)).channel_id is None


# -- alerts -----------------------------------------------------------------------


def test_bare_alerts_opens_a_form_and_its_webhook_is_checked_and_sealed(connected: SlackApp):
    connected.slack.add_channel("CALERTS", "alerts")
    view, url_id = open_form(connected, "alerts")
    assert view["callback_id"] == "alerts_form"
    assert initial(inputs(view)["channel"]) == "CCOSTS"
    assert "webhook" in inputs(view) and initial(inputs(view)["webhook"]) is None
    errors = errors_of(submit(connected, view, channel="CALERTS", webhook="ftp://example.com/x"))
    assert errors == {"webhook": "Enter an http(s) URL, e.g. https://hooks.example.com/xai."}
    assert connected.slack.history("CALERTS") == []  # refused before any note
    url = "https://hooks.example.com/services/T000/B000/secretpart"
    assert submit(connected, view, channel="CALERTS", webhook=url).text == ""
    assert "now go to <#CALERTS> and to the webhook" in text_of(connected.reply(url_id))
    [note] = connected.slack.history("CALERTS")
    assert "<@UADMIN> sent spend alerts for all connections here" in note["text"]
    with connected.runtime.db.session() as session:
        route = session.scalar(select(AlertRoute))
    assert route.connection_id is None and route.channel_id == "CALERTS"
    assert connected.runtime.db.keyring.open(route.webhook_sealed, route.webhook_aad).decode() == (
        url
    )
    assert all("secretpart" not in str(r.payload) for r in connected.slack.responses)


def test_alerts_options_typed_without_a_channel_fill_in_the_form(connected: SlackApp):
    view, _ = open_form(connected, 'alerts --connection "Production — xAI"')
    assert initial(inputs(view)["connection"]) == option_value(
        view, "connection", "Production — xAI"
    )
    # A webhook URL is a secret: never echoed into a form, so the channel must be typed too.
    _, url_id = connected.command("alerts --webhook https://hooks.example.com/x")
    assert "Name the channel too, e.g. `alerts #costs --webhook URL`" in text_of(
        connected.reply(url_id)
    )
    assert len(connected.slack.calls_to("views.open")) == 1


def test_an_alerts_form_for_one_connection_in_a_closed_channel(connected: SlackApp):
    connected.slack.add_channel("CPRIV", "private", is_member=False)
    view, _ = open_form(connected, "alerts")
    production = option_value(view, "connection", "Production — xAI")
    errors = errors_of(submit(connected, view, channel="CPRIV", connection=production))
    assert "/invite" in errors["channel"] and "alerts still go where they went" in errors["channel"]
    assert submit(connected, view, connection=production).text == ""
    with connected.runtime.db.session() as session:
        route = session.scalar(select(AlertRoute))
    assert route.connection_id is not None and route.channel_id == "CCOSTS"


# -- who may, and typed words ------------------------------------------------------


@pytest.mark.parametrize("words", ["digest add", "budget set", "alerts"])
def test_non_admins_are_refused_before_any_form(connected: SlackApp, words: str):
    _, url_id = connected.command(words, user=MEMBER)
    assert "only workspace admins" in text_of(connected.reply(url_id))
    assert connected.slack.calls_to("views.open") == []


def test_a_form_submitted_by_a_non_admin_is_refused_on_a_field(connected: SlackApp):
    view, _ = open_form(connected, "budget set")
    errors = errors_of(submit(connected, view, user=MEMBER, amount="10"))
    assert "only workspace admins" in errors["amount"]
    with connected.runtime.db.session() as session:
        assert session.scalar(select(Budget)) is None


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("digest add", "digest ACTION"),
        ("budget set", "budget ACTION"),
        ("alerts", "alerts #CHANNEL|list|remove"),
        ("range", "range FROM TO"),
    ],
)
def test_without_a_trigger_the_bare_command_answers_with_its_usage(
    connected: SlackApp, words: str, expected: str
):
    """A DM (or any surface with no trigger_id) can't open a modal: say what to type."""
    said: list[dict] = []
    invocation = Invocation(TEAM, ADMIN, channel_id="DADMIN")
    client = connected.bolt.client
    respond = lambda **message: said.append(message)  # noqa: E731
    run_command(connected.service, client, invocation, words, respond, getLogger())
    [reply] = said
    assert f"Usage: `/xai-usage {expected}" in text_of(reply) and "e.g." in text_of(reply)
    assert connected.slack.calls_to("views.open") == []


def test_typed_arguments_still_run_at_once(connected: SlackApp):
    _, url_id = connected.command("budget set 300")
    assert "$300.00 a month" in text_of(connected.reply(url_id))
    _, url_id = connected.command("alerts <#CCOSTS|costs>")
    assert "now go to <#CCOSTS>" in text_of(connected.reply(url_id))
    _, url_id = connected.command("digest add --tz UTC")
    assert "every day at 09:00 (UTC)" in text_of(connected.reply(url_id))
    assert connected.slack.calls_to("views.open") == []


# -- range ------------------------------------------------------------------------


def test_bare_range_opens_two_date_pickers_on_the_last_week(connected: SlackApp):
    today = connected.runtime.clock().astimezone(UTC).date()
    view, url_id = open_form(connected, "range --by day")
    assert view["callback_id"] == "range_form"
    fields = inputs(view)
    assert fields["from"]["type"] == fields["to"]["type"] == "datepicker"
    assert initial(fields["from"]) == (today - timedelta(days=6)).isoformat()
    assert initial(fields["to"]) == today.isoformat()
    assert initial(fields["by"]) == "day"
    assert [o["text"]["text"] for o in fields["by"]["options"]][-1] == "API key"
    assert connected.replies(url_id) == []


def test_a_range_form_answers_as_the_typed_range(connected: SlackApp):
    today = connected.runtime.clock().astimezone(UTC).date()
    start, end = (today - timedelta(days=9)).isoformat(), (today - timedelta(days=2)).isoformat()
    _, typed_url = connected.command(f"range {start} {end} --by model")
    typed = text_of(connected.reply(typed_url))
    view, url_id = open_form(connected, "range")
    assert submit(connected, view, **{"from": start, "to": end, "by": "model"}).text == ""
    answered = text_of(connected.reply(url_id))
    assert answered.split("as of")[0] == typed.split("as of")[0]


def test_range_form_errors_show_on_their_fields(connected: SlackApp):
    view, url_id = open_form(connected, "range")
    errors = errors_of(submit(connected, view, **{"from": "2026-11-20", "to": "2026-11-01"}))
    assert errors == {"to": "FROM (2026-11-20) is after TO (2026-11-01)."}
    errors = errors_of(submit(connected, view, **{"from": "2020-01-01", "to": "2020-01-31"}))
    assert list(errors) == ["from"] and "reports cover 2023-01-01" in errors["from"]
    errors = errors_of(submit(connected, view, **{"from": "last week"}))
    assert "YYYY-MM-DD" in errors["from"]
    assert "must be one of" in errors_of(submit(connected, view, by="colour"))["by"]
    assert connected.replies(url_id) == []


def test_a_button_carrying_the_bare_command_opens_the_form(connected: SlackApp):
    """A click (block_actions) comes with a trigger: `digest add` as a button's value opens
    the form; with no response URL to answer through, the confirmation comes by DM."""
    said: list[dict] = []
    invocation = Invocation(TEAM, ADMIN, channel_id="CCOSTS", trigger_id="trig.click")
    respond = lambda **message: said.append(message)  # noqa: E731
    run_command(
        connected.service, connected.bolt.client, invocation, "digest add", respond, getLogger()
    )
    [opened] = connected.slack.calls_to("views.open")
    assert opened.params["trigger_id"] == "trig.click" and said == []
    view = opened.params["view"]
    assert view["callback_id"] == "digest_form"
    assert submit(connected, view, tz="UTC").text == ""
    connected.slack.wait_for(lambda: len(connected.slack.calls_to("chat.postMessage")) == 2)
    [note, dm] = connected.slack.calls_to("chat.postMessage")
    assert note.params["channel"] == "CCOSTS" and dm.params["channel"] == ADMIN
    assert "every day at 09:00 (UTC)" in text_of(dm.params)


def test_a_form_opened_in_a_dm_starts_with_no_channel(connected: SlackApp):
    invocation = Invocation(TEAM, ADMIN, channel_id="DADMIN", trigger_id="trig.dm")
    run_command(connected.service, connected.bolt.client, invocation, "alerts", print, getLogger())
    [opened] = connected.slack.calls_to("views.open")
    channel = inputs(opened.params["view"])["channel"]
    assert "initial_conversation" not in channel and channel["default_to_current_conversation"]


def test_options_typed_with_a_bare_range_ride_along(connected: SlackApp):
    view, url_id = open_form(connected, 'range --share --connection "Production — xAI"')
    carried = json.loads(view["private_metadata"])["words"]
    assert carried == ["--share", "--connection=Production — xAI"]
    assert submit(connected, view).text == ""  # the last week, as the form starts
    shared = connected.reply(url_id)
    assert shared["response_type"] == "in_channel" and "1 connection" in text_of(shared)


def test_a_database_outage_during_a_submission_is_told_on_the_form(connected: SlackApp, keyring):
    view, url_id = open_form(connected, "alerts")
    connected.runtime.__dict__["db"] = Database("postgresql://nobody@127.0.0.1:1/none", keyring)
    connected.service._workspaces.clear()  # nothing answered from memory
    assert errors_of(submit(connected, view)) == {"channel": STORE_UNAVAILABLE}
    assert connected.replies(url_id) == []


def test_a_form_for_a_digest_that_already_posts_there_is_refused_naming_it(
    connected: SlackApp,
):
    _, url_id = connected.command("digest add --at 09:00 --tz UTC")
    connected.reply(url_id)
    view, url_id = open_form(connected, "digest add")
    errors = errors_of(submit(connected, view, tz="UTC"))
    assert list(errors) == ["channel"]
    assert errors["channel"].startswith(  # under the channel picked
        "Digest 1 already posts in that channel, every day at 09:00 (UTC)"
    )
    assert len(digests(connected)) == 1 and connected.replies(url_id) == []


def test_form_errors_are_in_the_forms_words_not_the_commands(connected: SlackApp):
    """A form has fields, not flags: its errors never name an --option, and an empty field
    says what to enter rather than quoting nothing back (“” is not an amount)."""
    digest, _ = open_form(connected, "digest add")
    budget, _ = open_form(connected, "budget set")
    alerts, _ = open_form(connected, "alerts")
    said = {}
    for view, field, value in (
        (digest, "quiet_change", "0"),
        (digest, "quiet_change", "2.5"),
        (digest, "at", "25:00"),
        (digest, "quiet_min", "lots"),
        (budget, "thresholds", "x"),
        (budget, "thresholds", "50%, 80%, 2000%"),
        (budget, "amount", "   "),
        (alerts, "webhook", "hooks.example.com/xai"),
    ):
        changes = {field: value, "amount": "500"} if view is budget else {field: value}
        if field == "amount":
            changes["amount"] = value
        errors = errors_of(submit(connected, view, **changes))
        assert list(errors) == [field], (field, value, errors)
        said[field, value] = errors[field]
    for (field, value), error in said.items():
        assert "--" not in error and "“”" not in error, (field, value, error)
    assert said["quiet_change", "0"] == "Enter a whole percentage from 1 to 1000, e.g. 20."
    assert said["amount", "   "] == "Enter an amount, e.g. 500."
    assert "50, 80, 100" in said["thresholds", "x"]


def test_thresholds_written_as_the_field_label_says_are_taken(connected: SlackApp):
    """The field's label says “%” and the replies echo “50%, 80%, 100%”: written back
    that way, in the form or typed, they are the same thresholds."""
    view, url_id = open_form(connected, "budget set")
    assert submit(connected, view, amount="500", thresholds="50%, 80%, 100%").text == ""
    assert "alerts at 50%, 80%, 100%" in text_of(connected.reply(url_id))
    _, url_id = connected.command('budget set 500 --thresholds "75%, 100 %"')
    assert "alerts at 75%, 100%" in text_of(connected.reply(url_id))
    with connected.runtime.db.session() as session:
        assert session.scalar(select(Budget.thresholds)) == "75,100"


@pytest.mark.parametrize("words", ["connect", "digest add", "budget set", "range"])
def test_a_form_slack_no_longer_lets_open_comes_as_a_button_that_opens_it(
    connected: SlackApp, words: str
):
    """Slack lets a command's trigger open a form for 3 s. An answer that got to it later
    (a busy server) is told so, with a button whose click brings a fresh trigger."""
    connected.slack.fail("views.open", "expired_trigger_id")
    _, url_id = connected.command(words)
    late = connected.reply(url_id)
    assert "opens a form" in text_of(late) and "3 seconds" in text_of(late)
    assert late["response_type"] == "ephemeral"
    button = next(b["accessory"] for b in late["blocks"] if b.get("accessory"))
    assert (button["text"]["text"], button["value"]) == ("Open the form", words)
    opened = len(connected.slack.calls_to("views.open"))
    click(connected, button["action_id"], button["value"])  # a fresh trigger
    connected.slack.wait_for(lambda: len(connected.slack.calls_to("views.open")) > opened)
    assert connected.slack.outcomes("views.open")[-1][1] == "ok"
