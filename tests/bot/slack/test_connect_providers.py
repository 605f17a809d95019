"""Connecting OpenAI and Anthropic from Slack, with signed requests, against their stand-ins.

The app loads the providers as it does in production (their entry points); the
forms are built from what each provider declares, and a workspace holding xAI,
OpenAI and Anthropic together gets one digest, one budget alert and one Home tab
that say whose figures they are.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.cli import Console, main
from bot.grammar import parse
from bot.reports import build_report, resolve_period
from providers.anthropic.sandbox import DEMO_KEY as ANTHROPIC_KEY
from providers.anthropic.sandbox import DEMO_ORG as ANTHROPIC_ORG
from providers.anthropic.sandbox import AnthropicStandIn
from providers.openai.sandbox import DEMO_KEY as OPENAI_KEY
from providers.openai.sandbox import DEMO_ORG as OPENAI_ORG
from providers.openai.sandbox import OpenAIStandIn
from storage.models import Budget, Connection, DigestSubscription
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, TEAM, SlackApp, serving, text_of
from tests.bot.slack.test_home import open_home, words
from tests.bot.slack.test_slack_app import submit
from tests.fakes.connections import connect_demo

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

SECOND_OPENAI_KEY = "sk-admin-second0openai0organization0keyfeed"
KEYS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY}
# The stand-ins serve as of this moment, so what they served and what they say they
# served cannot drift apart while a test runs (today keeps growing otherwise).
NOW = datetime.now(UTC)
ORGS = {"openai": OPENAI_ORG, "anthropic": ANTHROPIC_ORG}


@pytest.fixture
def app(slack_env, store_key):
    """The Slack app with xAI's, OpenAI's and Anthropic's stand-ins, all three loaded."""
    with (
        OpenAIStandIn(clock=lambda: NOW) as openai,
        AnthropicStandIn(clock=lambda: NOW) as anthropic,
        serving(
            slack_env,
            store_key,
            XAI_USAGE_NO_PLUGINS="0",
            OPENAI_API_URL=openai.url,
            ANTHROPIC_API_URL=anthropic.url,
            XAI_USAGE_HTTP_DEADLINE="10",
        ) as served,
    ):
        served.stand_ins = {"openai": openai, "anthropic": anthropic}
        yield served


def opened(app: SlackApp, text: str) -> tuple[dict, str]:
    """``/xai-usage TEXT`` that opens a form: the view, and the response URL's id."""
    before = len(app.slack.calls_to("views.open"))
    _, url_id = app.command(text)
    app.slack.wait_for(lambda: len(app.slack.calls_to("views.open")) > before)
    return app.slack.calls_to("views.open")[-1].params["view"], url_id


def inputs(view: dict) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if b["type"] == "input"]


def choose(app: SlackApp, view: dict, provider: str) -> dict:
    """Choose ``provider`` at the top of an open connect form; the rebuilt form."""
    view_id, view_hash = list(app.slack.views().items())[-1]
    before = len(app.slack.calls_to("views.update"))
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": ADMIN, "team_id": TEAM},
        "api_app_id": "A0001",
        "trigger_id": "trig.choose",
        "container": {"type": "view", "view_id": view_id},
        "view": {**view, "id": view_id, "hash": view_hash, "team_id": TEAM, "state": {}},
        "actions": [
            {
                "type": "static_select",
                "action_id": "connect_provider",
                "block_id": "provider",
                "selected_option": {
                    "text": {"type": "plain_text", "text": provider},
                    "value": provider,
                },
            }
        ],
    }
    assert app.interact(payload).status_code == 200
    app.slack.wait_for(lambda: len(app.slack.calls_to("views.update")) > before)
    call = app.slack.calls_to("views.update")[-1]
    assert (call.params["view_id"], call.params["hash"]) == (view_id, view_hash)
    return call.params["view"]


def month_by_model(app: SlackApp) -> dict[str, Decimal]:
    now = datetime.now(UTC)
    with app.runtime.db.session() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        report = build_report(
            session, workspace_id, resolve_period(parse(["month"]), now.date()), "model", now=now
        )
    return {row.key: row.cost_usd for row in report.rows}


def connections(app: SlackApp) -> list[Connection]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(Connection).order_by(Connection.label)))


# -- the forms, from each provider's declaration -------------------------------------------


def test_a_bare_connect_opens_the_built_in_form_and_choosing_openai_rebuilds_it(app) -> None:
    view, url_id = opened(app, "connect")
    assert inputs(view) == ["provider", "label", "team_id", "management_key", "backfill_days"]
    choice = view["blocks"][0]
    assert choice["dispatch_action"] is True
    assert [o["value"] for o in choice["element"]["options"]] == ["anthropic", "openai", "xai"]
    assert choice["element"]["initial_option"]["value"] == "xai"

    view = choose(app, view, "openai")

    assert view["title"]["text"] == "Connect OpenAI"
    assert inputs(view) == ["provider", "label", "admin_key", "backfill_days"]
    assert json.loads(view["private_metadata"])["provider"] == "openai"
    key = next(b for b in view["blocks"] if b.get("block_id") == "admin_key")
    assert key["hint"]["text"].startswith("An admin key (sk-admin-…) of the organization")
    assert key["element"]["placeholder"]["text"] == "sk-admin-…"
    assert "initial_value" not in key["element"]

    answer = submit(app, view, admin_key=OPENAI_KEY, backfill_days="90")
    assert (answer.status_code, answer.text) == (200, "")  # closed: the key was good
    done = app.reply(url_id, 2, timeout=30)
    assert ":white_check_mark: Connected *Production — OpenAI*" in text_of(done)
    openai = app.stand_ins["openai"]
    assert f"OpenAI account `{openai.identity(OPENAI_ORG)}`" in text_of(done)
    today = NOW.date()
    assert month_by_model(app) == openai.costs_by_model(OPENAI_ORG, today.replace(day=1), today)
    assert len(openai.requests) > 90 / 7  # the backfill crossed pages


def test_connect_provider_anthropic_opens_its_form_filled_in_and_connects(app) -> None:
    view, url_id = opened(app, 'connect --provider anthropic --label "Claude org" --days 30')
    assert view["title"]["text"] == "Connect Anthropic"
    assert inputs(view) == ["provider", "label", "admin_key", "backfill_days"]
    label = next(b for b in view["blocks"] if b.get("block_id") == "label")
    assert label["element"]["initial_value"] == "Claude org"
    days = next(b for b in view["blocks"] if b.get("block_id") == "backfill_days")
    assert (days["element"]["initial_value"], days["element"]["max_value"]) == ("30", "90")

    submit(app, view, label="Claude org", admin_key=ANTHROPIC_KEY, backfill_days="30")

    done = text_of(app.reply(url_id, 2, timeout=30))
    assert "Connected *Claude org*" in done and "Backfilled 30 days" in done
    assert f"Anthropic account `Demo Org ({ANTHROPIC_ORG})`" in done
    anthropic = app.stand_ins["anthropic"]
    today = NOW.date()
    assert month_by_model(app) == anthropic.costs_by_model(
        ANTHROPIC_ORG, today.replace(day=1), today
    )


@pytest.mark.parametrize("name", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("case", "block"),
    [
        ("a key of another kind", "admin_key"),
        ("revoked", "admin_key"),
        ("missing scope", "admin_key"),
        ("connected already", "admin_key"),
        ("days beyond its reach", "backfill_days"),
        ("label taken", "label"),
    ],
)
def test_every_refusal_shows_on_the_field_it_is_about(app, name, case, block) -> None:
    stand_in, key = app.stand_ins[name], KEYS[name]
    values = {"admin_key": key, "backfill_days": "7", "label": ""}
    if case in ("connected already", "label taken"):
        with app.runtime.db.transaction() as session:
            workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        asyncio.run(
            app.runtime.engine.connect(workspace_id, name, {"admin_key": key}, backfill_days=3)
        )
        if case == "label taken":
            values["label"] = connections(app)[0].label
            other = "org-other" if name == "openai" else "0b7f3c2e-1111-4a2b-9c3d-4e5f6a7b8c9d"
            stand_in.add_organization(other)
            values["admin_key"] = key[:-4] + "9999"
            stand_in.add_key(values["admin_key"], other)
        else:  # another admin key of the same organization
            values["admin_key"] = key[:-4] + "0000"
            stand_in.add_key(values["admin_key"], ORGS[name])
    elif case == "a key of another kind":
        values["admin_key"] = (
            "sk-proj-AbCdEf0123456789AbCdEf0123456789"
            if name == "openai"
            else "sk-ant-api03-AbCdEf0123456789AbCdEf0123456789"
        )
    elif case == "revoked":
        stand_in.revoke_key(key)
    elif case == "missing scope":
        stand_in.add_key(key, ORGS[name], can_read_costs=False)
    else:
        values["backfill_days"] = "91"
    before = len(connections(app))
    view, _ = opened(app, f"connect --provider {name}")

    body = submit(app, view, **values).json()

    assert body["response_action"] == "errors" and list(body["errors"]) == [block]
    said = body["errors"][block]
    assert values["admin_key"] not in said
    expected = {
        "a key of another kind": "admin key" if name == "openai" else "Admin key",
        "revoked": "rejected the",
        "missing scope": "cost",
        "connected already": "already connected here as",
        "days beyond its reach": "from 1 to 90",
        "label taken": "already exists",
    }[case]
    assert expected in said, said
    if case == "connected already":
        assert "`/xai-usage update-key" in said
    assert len(connections(app)) == before  # nothing saved


def test_two_openai_organizations_connect_side_by_side_from_the_form(app) -> None:
    openai = app.stand_ins["openai"]
    openai.add_organization("org-second")
    openai.add_key(SECOND_OPENAI_KEY, "org-second")
    for label, key in (("Research", OPENAI_KEY), ("Product", SECOND_OPENAI_KEY)):
        view, url_id = opened(app, "connect --provider openai")
        answer = submit(app, view, label=label, admin_key=key, backfill_days="7")
        assert answer.text == ""  # closed, nothing to fix
        assert "Connected" in text_of(app.reply(url_id, 2, timeout=30))
    assert [(c.label, c.account_ref) for c in connections(app)] == [
        ("Product", openai.identity("org-second")),
        ("Research", openai.identity(OPENAI_ORG)),
    ]


def test_a_key_or_a_field_the_provider_does_not_have_is_refused_before_any_form(app) -> None:
    _, url_id = app.command(f"connect --provider openai --admin-key {OPENAI_KEY}")
    said = text_of(app.reply(url_id))
    assert "Admin key is a secret: never type it in a message" in said
    _, url_id = app.command("connect --provider anthropic --team-id abc")
    assert "Anthropic has no field --team-id" in text_of(app.reply(url_id))
    _, url_id = app.command("connect --provider nobody")
    assert "no provider named 'nobody' is loaded" in text_of(app.reply(url_id))
    assert app.slack.calls_to("views.open") == []


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_revoked_key_is_replaced_from_slack_for_each_provider(app, name) -> None:
    stand_in, key = app.stand_ins[name], KEYS[name]
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connected = asyncio.run(
        app.runtime.engine.connect(workspace_id, name, {"admin_key": key}, backfill_days=3)
    )
    stand_in.revoke_key(key)
    (failed,) = asyncio.run(app.runtime.engine.sync_all(workspace_id, trigger="daily"))
    assert not failed.ok and failed.needs_person

    view, url_id = opened(app, f"update-key {connected.label}")
    display = {"openai": "OpenAI", "anthropic": "Anthropic"}[name]
    assert view["title"]["text"] == f"New {display} key"
    assert inputs(view) == ["admin_key"]
    assert connections(app)[0].account_ref in text_of(view)
    body = submit(app, view, admin_key=key).json()  # the revoked one again
    assert list(body["errors"]) == ["admin_key"]
    new_key = key[:-4] + "cafe"
    stand_in.add_key(new_key, ORGS[name])

    answer = submit(app, view, admin_key=new_key)

    assert answer.text == ""
    said = text_of(app.reply(url_id, 1, timeout=30))  # the form's only answer
    assert ":white_check_mark: New key for" in said
    (row,) = connections(app)
    assert row.status == "ok" and row.secret_mask.endswith("cafe")


# -- a workspace with all three: one digest, one budget alert, one Home tab --------------


def test_a_mixed_workspace_gets_one_digest_one_budget_alert_and_one_home_tab(
    app, slack_env, store_key
) -> None:
    with app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connect_demo(app.runtime.engine, workspace_id, 30, label="Grok")
    for name, label in (("openai", "GPT"), ("anthropic", "Claude")):
        asyncio.run(
            app.runtime.engine.connect(
                workspace_id, name, {"admin_key": KEYS[name]}, label=label, backfill_days=30
            )
        )
    app.slack.add_channel("CALERTS", "alerts")
    now = datetime.now(UTC)
    with app.runtime.db.transaction() as session:
        session.add(
            DigestSubscription(  # set up days ago, due at the top of this hour: today's is due
                workspace_id=workspace_id,  # (one due at 00:00 is too late to post after noon)
                channel_id="CCOSTS",
                at_time=f"{now:%H}:00",
                created_by=ADMIN,
                created_at=datetime.now(UTC) - timedelta(days=2),
            )
        )
        session.add(
            Budget(
                workspace_id=workspace_id,
                amount_usd=Decimal(1),
                thresholds="50",
                channel_id="CALERTS",
                created_by=ADMIN,
            )
        )

    out = io.StringIO()
    env = {
        **slack_env,
        "SLACK_API_URL": app.slack.api_url,
        "XAI_MANAGEMENT_API_URL": app.xai.url,
        "OPENAI_API_URL": app.stand_ins["openai"].url,
        "ANTHROPIC_API_URL": app.stand_ins["anthropic"].url,
        "XAI_USAGE_NO_PLUGINS": "0",
        "XAI_USAGE_ENCRYPTION_KEY": app.runtime.settings.environ["XAI_USAGE_ENCRYPTION_KEY"],
    }
    main(["jobs", "run", "--at", now.isoformat()], environ=env, console=Console(out, out))

    (digest,) = [
        c.params for c in app.slack.calls_to("chat.postMessage") if c.params["channel"] == "CCOSTS"
    ]
    yesterday = now.date() - timedelta(days=1)
    assert digest["text"].startswith(f"Daily AI spend · {yesterday:%a} {yesterday.day} ")
    with app.runtime.db.session() as session:
        report = build_report(
            session, workspace_id, resolve_period(parse(["yesterday"]), now.date()), "connection"
        )
    assert report.total.value > 0 and f"${report.total.value:,.2f}" in digest["text"]
    said = text_of(digest)  # the digest says what each provider's figures leave out
    assert "leaves out Priority Tier costs" in said and "line items are free text" in said
    alerts = [
        text_of(c.params)
        for c in app.slack.calls_to("chat.postMessage")
        if c.params["channel"] == "CALERTS"
    ]
    budget = next(a for a in alerts if "budget" in a.lower())
    assert "All connections spent" in budget
    assert "xAI spending limit" in budget  # the one provider that reads a limit, by name

    seen = words(open_home(app))
    assert seen.startswith("AI spend")
    assert "Grok" in seen and "GPT" in seen and "Claude" in seen
    assert "leaves out Priority Tier costs" in seen  # each provider's caveat
    assert "line items are free text" in seen
