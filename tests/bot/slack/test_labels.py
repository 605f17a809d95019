"""A label shows as typed on every surface: no mention, no bold, no code, no reversal.

A connection labelled ``<@UMEMBER> *bold* _it_ ~gone~ `code``` came back as a
live mention of that member in setup replies and the Home tab (which escape a
whole reply and then restore the references the bot meant), and rendered bold,
italic, struck and as code everywhere. Slack's mrkdwn has no escape for ``*``,
``_``, ``~`` and backticks: a zero-width space on each side keeps them from
pairing up, and the text reads the same. A label with a bidi control (U+202E
turns what follows around) is refused when typed.
"""

from __future__ import annotations

import json
import re

import pytest

from bot.formatting import inert, mrkdwn
from bot.grammar import UsageError, label_problem, parse, tokenize
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import ADMIN, TEAM, SlackApp, text_of
from tests.bot.slack.test_escaping import _strings
from tests.bot.slack.test_home import open_home
from tests.fakes.connections import connect_demo

pytestmark = pytest.mark.one_store  # what a surface says: SQLite (tests/conftest.py)

LABEL = "<@UMEMBER> *bold* _it_ ~gone~ `code`"
MARKUP = re.compile(r"\*bold\*|_it_|~gone~|`code`")
ZWSP = "\u200b"


def test_markup_in_words_shows_as_typed_and_commands_in_code_stay_whole() -> None:
    assert mrkdwn("*x*") == f"{ZWSP}*{ZWSP}x{ZWSP}*{ZWSP}"
    assert mrkdwn("a_b ~c~") == f"a{ZWSP}_{ZWSP}b {ZWSP}~{ZWSP}c{ZWSP}~{ZWSP}"
    # Code is where the bot puts commands to copy: left exactly as it is.
    assert mrkdwn('run `update-key "a_b*"` now') == 'run `update-key "a_b*"` now'
    assert mrkdwn("R&D <!channel>") == "R&amp;D &lt;!channel&gt;"
    assert inert("`x` <@U1>") == f"{ZWSP}`{ZWSP}x{ZWSP}`{ZWSP} <{ZWSP}@U1>"


@pytest.fixture
def labelled(slack_app: SlackApp) -> SlackApp:
    with slack_app.runtime.db.transaction() as session:
        workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
    connect_demo(slack_app.runtime.engine, workspace_id, 30, label=LABEL)
    return slack_app


def shown(app: SlackApp) -> list[str]:
    """Every string Slack was sent to show: replies, posts and the Home tab's views."""
    payloads = [r.payload for r in app.slack.responses]
    for method in ("chat.postMessage", "views.publish"):
        payloads += [dict(c.params) for c in app.slack.calls_to(method)]
    return [s for p in payloads for s in _strings(p)]


def test_a_label_with_markup_and_a_mention_shows_as_typed_everywhere(labelled: SlackApp):
    app = labelled
    quoted = json.dumps(LABEL)
    for text in (
        "status",
        "month --by connection",
        "week --by day",
        f"budget set 10 --connection {quoted}",
        "budget list",
        f"alerts <#CCOSTS|costs> --connection {quoted}",
        "alerts list",
        f"digest add --at 00:00 --tz UTC --connection {quoted}",
        "digest list",
        f"disconnect {quoted}",
    ):
        _, url_id = app.command(text)
        app.reply(url_id)
    _, url_id = app.command("sync")
    app.reply(url_id, count=2, timeout=30)
    open_home(app, ADMIN)
    everything = shown(app)
    assert any("bold" in s for s in everything)  # the label was shown...
    assert [s[:100] for s in everything if "<@UMEMBER>" in s] == []  # ...never as a mention
    assert [s[:100] for s in everything if MARKUP.search(s)] == []  # ...nor as markup


def test_a_label_with_a_bidi_control_is_refused_when_typed() -> None:
    for control in ("\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u202a"):
        problem = label_problem(f"Prod{control}uction")
        assert problem is not None and "direction" in problem
    with pytest.raises(UsageError, match="direction"):
        parse(["connect", "--label", "Prod\u202eiaX"])
    assert label_problem("إنتاج — xAI") is None  # right-to-left text itself is welcome


def test_the_connect_form_refuses_a_bidi_control_in_the_label(slack_app: SlackApp) -> None:
    from bot.slack.connecting import LABEL_FIELD, Request, problems

    provider = slack_app.runtime.providers.get("xai")
    request = Request(provider, {"team_id": "", "management_key": ""}, "Prod\u202eiaX", "")
    assert "direction" in problems(slack_app.service, 1, request)[LABEL_FIELD]


def test_a_mention_typed_into_a_setup_reply_stays_dead(labelled: SlackApp) -> None:
    _, url_id = labelled.command('budget set 10 --connection "<@UADMIN> nope"')
    reply = text_of(labelled.reply(url_id))
    assert "nope" in reply and "<@UADMIN>" not in reply


def test_a_command_copied_from_a_message_finds_its_label() -> None:
    """The zero-width spaces that keep a label's markup inert are not part of it."""
    copied = f'update-key "prod{ZWSP}_{ZWSP}eu {ZWSP}*{ZWSP}x{ZWSP}*{ZWSP}"'
    assert parse(tokenize(copied), surface="slack").args == ("prod_eu *x*",)
    assert "invisible" in (label_problem(f"a{ZWSP}b") or "")
