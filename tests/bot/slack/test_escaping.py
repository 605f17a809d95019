"""People's and providers' words reach Slack escaped, on every surface.

A connection labelled ``R&D <!channel> *x*`` and a model named ``grok<&>x``
go through reports (also ``--share``), status, sync, confirmations, errors,
setup replies, digests and alerts; nothing posted may carry a raw
``<!channel>`` or an unescaped ``&``, ``<`` or ``>`` from that data.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from bot.jobs import run_due
from bot.slack.delivery import SlackDelivery
from bot.slack.settings import SlackSettings
from storage.models import Connection, DailyCost, ModelSeen, WorkspaceDailyTotal
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import BOT_TOKEN, TEAM, SlackApp, text_of
from tests.fakes.connections import connect_demo

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

LABEL = "R&D <!channel> *x*"
MODEL = "grok<&>x"
# What Slack itself parses on purpose: user and channel references the bot makes.
REFERENCE = re.compile(r"<[@#][A-Z0-9]+(?:\|[^<>&]*)?>")


def _strings(value) -> list[str]:
    """Every string in a posted payload (text, blocks, however nested) that Slack parses.

    A button's ``value`` is the command it runs (a button is a command), handed
    back on a click and never displayed or parsed as markup: it keeps a label
    exactly as typed, so it is not read here. Nor is a table's ``raw_text`` cell:
    Slack shows it literally (no references, no entities), so a label in it is as typed.
    """
    if isinstance(value, str):
        try:
            return _strings(json.loads(value)) if value[:1] in "[{" else [value]
        except ValueError:
            return [value]
    if isinstance(value, dict):
        if value.get("type") == "raw_text":
            return []
        return [s for k, v in value.items() if k != "value" for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _unescaped(text: str) -> list[str]:
    """Markup Slack would parse that the bot did not mean: raw <, >, & from data."""
    rest = REFERENCE.sub("", text)
    problems = re.findall(r"&(?!amp;|lt;|gt;)|<|>", rest)
    if "<!channel>" in text:
        problems.append("<!channel>")
    return problems


def _posted(app: SlackApp) -> list[dict]:
    """Every message the app sent: response-URL replies and Web API posts."""
    payloads = [r.payload for r in app.slack.responses]
    payloads += [dict(c.params) for c in app.slack.calls_to("chat.postMessage")]
    return payloads


def _connect_rd(app: SlackApp) -> None:
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connect_demo(app.runtime.engine, workspace_id, 40, label=LABEL)
    # A provider that names a model with markup: xAI's names are plain, another's may not be.
    with app.runtime.db.transaction() as session:
        for table in (DailyCost, WorkspaceDailyTotal, ModelSeen):
            session.execute(
                update(table).where(table.model.like("%grok-3-mini%")).values(model=MODEL)
            )


def test_labels_and_model_names_are_escaped_in_everything_posted(slack_app: SlackApp):
    _connect_rd(slack_app)
    for text in (
        "month --by model",
        "month --by model --share",
        "month --by connection",
        "week --by day",
        "status",
        f'disconnect "{LABEL}"',
        'month --connection "Nope <!here> & co"',  # an error naming what was asked
        f'budget set 1 --connection "{LABEL}"',
        f'alerts <#CCOSTS|costs> --connection "{LABEL}"',
        f'digest add --at 00:00 --tz UTC --connection "{LABEL}"',
        "alerts list",
        "month --by model --connection <!channel>",
    ):
        _, url_id = slack_app.command(text)
        slack_app.reply(url_id)
    _, url_id = slack_app.command("sync")
    sync_result = text_of(slack_app.reply(url_id, count=2, timeout=30), as_sent=True)
    # Read as written (zero-width spaces aside), and its *x* can't turn bold.
    assert "R&amp;D &lt;!channel&gt; *x*" in sync_result.replace("\u200b", "")
    assert "*x*" not in sync_result

    # Digests and alerts, as `jobs run` posts them.
    settings = SlackSettings.from_env(
        {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack_app.slack.api_url},
        delivering_only=True,
    )
    delivery = SlackDelivery(settings, lambda team: BOT_TOKEN, pause=lambda seconds: None)
    outcome = run_due(slack_app.runtime, datetime.now(UTC), delivery)
    kinds = [json.dumps(_strings(p)) for p in _posted(slack_app)]
    assert any("budget" in k.lower() and "&amp;D" in k for k in kinds), outcome
    assert any("digest" in k.lower() or "grok&lt;&amp;&gt;x" in k for k in kinds)

    posted = _posted(slack_app)
    everything = [s for p in posted for s in _strings(p)]
    assert any("grok&lt;&amp;&gt;x" in s for s in everything)  # the model was shown, escaped
    assert any("R&amp;D &lt;!channel&gt; *x*" in s.replace("\u200b", "") for s in everything)
    # Outside code (commands to copy keep the label exactly; code renders no markup).
    assert not any("*x*" in re.sub(r"`[^`]*`", "", s) for s in everything)
    bad = {s[:120]: _unescaped(s) for s in everything if _unescaped(s)}
    assert bad == {}


def test_status_of_a_thousand_connections_stays_under_slacks_40000_characters(
    slack_app: SlackApp,
):
    with slack_app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        session.add_all(
            Connection(
                workspace_id=workspace_id,
                provider="xai",
                label=f"{n:04d} {LABEL} " + "long team name " * 11,  # near the 200 allowed
                account_ref=f"team-{n}",
                credentials_sealed="sealed",
                credentials_key_id="k",
                status="error" if n % 10 == 0 else "ok",
                status_message="The management key was revoked. " * 100,  # xAI may say a lot
            )
            for n in range(1000)
        )
    _, url_id = slack_app.command("status")
    reply = slack_app.reply(url_id)
    assert len(reply["text"]) < 40_000
    assert reply["text"].startswith("1000 connections (100 error, 900 ok): 0000 R&amp;D")
    assert "and 995 more" in reply["text"]
    assert "and 960 more" in text_of(reply)  # the blocks say where the full list is
    assert slack_app.slack.violations == []  # the stand-in took it: under 40,000 in all
