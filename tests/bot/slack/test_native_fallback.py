"""A workspace whose Slack refuses a native table or chart still gets every figure.

The refused message is sent once more without the block (its code block, or no
chart), and the refusal is kept in the store: later messages in that workspace,
from any process, go straight to the fallback. Over signed requests, the real
Slack client and the Slack stand-in, which refuses the block as such a
workspace's Slack would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.runtime import Runtime
from bot.slack.delivery import SlackDelivery
from bot.slack.native import degrade
from bot.slack.refusals import (
    HOME,
    MESSAGE,
    TRY_AGAIN_AFTER,
    NativeRefusals,
    Refused,
    refusals_for,
    send,
)
from bot.slack.settings import SlackSettings
from storage.models import NativeRefusal
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import BOT_TOKEN, TEAM, SlackApp, native_table, text_of

TABLE = {"type": "table", "rows": [[{"type": "raw_text", "text": "grok-4"}]]}
CHART = {"type": "data_visualization", "title": "t", "chart": {"type": "pie", "segments": []}}


def message_with(*blocks: dict) -> dict:
    return {
        "text": "Week: $3.10\n```grok-4  $3.10```",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "Week"}}, *blocks],
    }


# -- what is remembered -----------------------------------------------------------------


def test_a_refusal_is_remembered_per_workspace_and_surface_and_tried_again_later(db, clock):
    with db.transaction() as session:
        workspace_for_slack_team(session, "T0001")
        workspace_for_slack_team(session, "T0002")
    refusals = NativeRefusals(db, clock=clock)
    refusals.remember("T0001", MESSAGE, frozenset({"table"}), "invalid_blocks")
    refusals.remember("T0001", MESSAGE, frozenset({"table"}), "invalid_blocks")  # once only
    refusals.remember("T0001", HOME, frozenset({"data_visualization"}), "invalid_arguments")
    refusals.remember("T9999", MESSAGE, frozenset({"table"}), "a team with no workspace")

    assert refusals.refused("T0001", MESSAGE) == {"table"}
    assert refusals.refused("T0001", HOME) == {"data_visualization"}
    assert refusals.refused("T0002", MESSAGE) == set()  # another workspace takes tables
    assert refusals.refused(None, MESSAGE) == set()
    with db.session() as session:
        assert len(session.scalars(select(NativeRefusal)).all()) == 2
    clock.now += TRY_AGAIN_AFTER + timedelta(minutes=1)  # Slack may have turned it on since
    assert NativeRefusals(db, clock=clock).refused("T0001", MESSAGE) == set()


def test_what_a_process_read_is_kept_a_minute_and_what_it_learns_counts_at_once(db):
    from sqlalchemy import event

    with db.transaction() as session:
        workspace_for_slack_team(session, "T0001")
    refusals = refusals_for(db)
    reads: list[str] = []

    def counted(conn, cursor, sql, *args) -> None:
        if "FROM native_refusals" in sql:
            reads.append(sql)

    event.listen(db.engine, "before_cursor_execute", counted)
    try:
        assert refusals.refused("T0001", MESSAGE) == set()
        refusals_for(db).remember("T0001", MESSAGE, frozenset({"table"}), "invalid_blocks")
        for _ in range(100):  # a run of a hundred digests
            assert refusals_for(db).refused("T0001", MESSAGE) == {"table"}
    finally:
        event.remove(db.engine, "before_cursor_execute", counted)
    assert len(reads) == 1


def test_a_refused_native_block_is_sent_once_more_without_it_and_remembered(db, clock):
    with db.transaction() as session:
        workspace_for_slack_team(session, "T0001")
    refusals = NativeRefusals(db, clock=clock)
    sent: list[dict] = []

    def slack(message: dict) -> None:  # this workspace's Slack takes no table
        sent.append(message)
        if any(b["type"] == "table" for b in message["blocks"]):
            raise Refused("invalid_blocks", ("[ERROR] no [json-pointer:/blocks/1/rows]",))

    shown = send(message_with(TABLE), slack, refusals=refusals, team_id="T0001")

    assert len(sent) == 2 and sent[1] == shown
    assert [b["type"] for b in shown["blocks"]] == ["header", "section"]
    assert shown["blocks"][1]["text"]["text"] == "```grok-4  $3.10```"  # from its text
    assert refusals.refused("T0001", MESSAGE) == {"table"}
    sent.clear()
    send(message_with(TABLE), slack, refusals=refusals, team_id="T0001")
    assert len(sent) == 1 and "table" not in str(sent[0])  # straight to the fallback


def test_only_the_block_slack_names_is_left_out(db):
    with db.transaction() as session:
        workspace_for_slack_team(session, "T0001")
    refusals = NativeRefusals(db)

    def slack(message: dict) -> None:
        if any(b["type"] == "data_visualization" for b in message["blocks"]):
            raise Refused("invalid_blocks", ("[ERROR] no [json-pointer:/blocks/2]",))

    shown = send(message_with(TABLE, CHART), slack, refusals=refusals, team_id="T0001")
    assert [b["type"] for b in shown["blocks"]] == ["header", "table"]
    assert refusals.refused("T0001", MESSAGE) == {"data_visualization"}


def test_a_second_refusal_is_slacks_error_and_nothing_is_remembered(db):
    with db.transaction() as session:
        workspace_for_slack_team(session, "T0001")
    refusals = NativeRefusals(db)
    tries: list[dict] = []

    def slack(message: dict) -> None:  # refuses something else in it, whatever we do
        tries.append(message)
        raise Refused("invalid_blocks", ("[ERROR] header too long [json-pointer:/blocks/0]",))

    with pytest.raises(Refused):
        send(message_with(TABLE), slack, refusals=refusals, team_id="T0001")
    assert len(tries) == 2  # retried once, no more
    assert refusals.refused("T0001", MESSAGE) == set()
    tries.clear()
    with pytest.raises(Refused):  # nothing native to leave out: not retried at all
        send(message_with(), slack, refusals=refusals, team_id="T0001")
    assert len(tries) == 1


def test_a_message_without_native_blocks_reads_nothing_from_the_store():
    sent = []
    assert send({"text": "hi", "blocks": []}, sent.append, refusals=None, team_id="T1") == {
        "text": "hi",
        "blocks": [],
    }
    assert degrade({"text": "hi"}, {"table"}) == {"text": "hi"}


# -- over signed requests, and in another process ----------------------------------------


def test_a_workspace_refusing_tables_gets_its_report_once_and_then_straight(connected: SlackApp):
    connected.slack.refuse_blocks("table", team_id=TEAM)

    _, url_id = connected.command("month --by model")
    reply = connected.reply(url_id)
    posts = [r for r in connected.slack.responses if r.url_id == url_id]
    assert [r.refused for r in posts] == ["invalid_blocks", None]  # retried once, without it
    assert native_table(posts[0].payload) is not None and native_table(reply) is None
    table = next(b for b in reply["blocks"] if "```" in str(b))["text"]["text"]
    assert "Total" in table and "grok" in table  # the figures, as a code block
    assert text_of(reply).count("Total") == 2  # the text carries the same fallback

    # The refusal is stored once its fallback has gone, a moment after the reply lands.
    def stored() -> bool:
        with connected.runtime.db.session() as session:
            return session.scalars(select(NativeRefusal)).first() is not None

    connected.slack.wait_for(stored)
    _, url_id = connected.command("week --by day")
    connected.reply(url_id)
    posts = [r for r in connected.slack.responses if r.url_id == url_id]
    assert [r.refused for r in posts] == [None]  # straight to the fallback: no table tried
    assert native_table(posts[0].payload) is None

    # Another process (its own runtime, the same store) posts straight without one too.
    env = {
        "DATABASE_URL": connected.runtime.settings.environ["DATABASE_URL"],
        "XAI_USAGE_ENCRYPTION_KEY": connected.runtime.settings.environ["XAI_USAGE_ENCRYPTION_KEY"],
        "XAI_USAGE_DATA_DIR": connected.runtime.settings.environ["XAI_USAGE_DATA_DIR"],
        "SLACK_API_URL": connected.slack.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
    }
    other = Runtime(Settings.from_env(env))
    try:
        delivery = SlackDelivery(
            SlackSettings.from_env(env, delivering_only=True),
            lambda team: BOT_TOKEN,
            pause=lambda seconds: None,
            refusals=NativeRefusals(other.db),
        )
        delivery.post(TEAM, "CCOSTS", message_with(TABLE))
    finally:
        other.close()
    [(call, outcome)] = connected.slack.outcomes("chat.postMessage")
    assert outcome == "ok" and "table" not in str(call.params["blocks"])


def test_a_workspace_that_takes_tables_keeps_them(connected: SlackApp):
    connected.slack.refuse_blocks("table", team_id="T0002")  # someone else's Slack
    _, url_id = connected.command("month --by model")
    assert native_table(connected.reply(url_id)) is not None
    assert [r.refused for r in connected.slack.responses] == [None]
    with connected.runtime.db.session() as session:
        assert session.scalars(select(NativeRefusal)).all() == []


def test_a_report_asked_by_direct_message_falls_back_in_the_dm_too(connected: SlackApp):
    from tests.bot.slack.test_home import dm

    connected.slack.refuse_blocks("table", team_id=TEAM)
    dm(connected, "month --by model")
    connected.slack.wait_for(lambda: len(connected.slack.calls_to("chat.postMessage")) >= 2)
    posts = connected.slack.outcomes("chat.postMessage")
    assert [o for _, o in posts] == ["invalid_blocks", "ok"]
    taken = posts[1][0].params
    assert native_table(taken) is None and "Total" in text_of(taken)
