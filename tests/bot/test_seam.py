"""The plain-Python core knows nothing of Slack: it hands data to a surface.

Digests, alerts, scheduled jobs and setup build plain data (dataclasses with
Decimal money and dates) and words; Block Kit, mrkdwn and Slack's error codes
live in ``bot/slack/``. This reads the modules' source, so a Block Kit dict or
a Slack error code slipping back into the core fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bot

CORE = ("jobs.py", "digests.py", "alerts.py", "setup.py")
SLACK_PACKAGES = ("bot.slack", "slack_sdk", "slack_bolt")
# Block Kit's keys and types, and the error codes Slack's Web API answers with.
SLACK_WORDS = frozenset(
    {
        "blocks",
        "mrkdwn",
        "plain_text",
        "section",
        "header",
        "context",
        "elements",
        "action_id",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "ratelimited",
        "not_installed",
        "missing_scope",
    }
)
SLACK_NAMES = frozenset({"mrkdwn", "render_json", "notice", "slack_message"})


def slack_knowledge(source: str) -> list[str]:
    """What in ``source`` is Slack's business: imports, Block Kit, error codes, surface tests."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names = []
        else:
            modules, names = [], []
        found += [f"imports {m}" for m in modules if m.startswith(SLACK_PACKAGES)]
        found += [f"imports {n}" for n in names if n in SLACK_NAMES]
        if isinstance(node, ast.Constant) and node.value in SLACK_WORDS:
            found.append(f"the string {node.value!r}")
        if isinstance(node, ast.Name) and node.id in SLACK_NAMES:
            found.append(f"uses {node.id}")
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value == "slack" for o in operands):
                found.append(f"asks whether the surface is Slack (line {node.lineno})")
    return found


@pytest.mark.parametrize("module", CORE)
def test_the_core_builds_data_and_leaves_slack_to_bot_slack(module: str) -> None:
    source = (Path(bot.__file__).parent / module).read_text(encoding="utf-8")
    assert slack_knowledge(source) == [], f"bot/{module} knows Slack"


def test_the_check_recognises_what_it_forbids() -> None:
    assert slack_knowledge("from bot.slack.blocks import notice") == [
        "imports bot.slack.blocks",
        "imports notice",
    ]
    assert slack_knowledge('m = {"blocks": [{"type": "section"}]}') == [
        "the string 'blocks'",
        "the string 'section'",
    ]
    assert slack_knowledge('FIX = {"not_in_channel": "invite me"}') == [
        "the string 'not_in_channel'"
    ]
    assert slack_knowledge('x = "<@U1>" if surface == "slack" else "An admin"') == [
        "asks whether the surface is Slack (line 1)"
    ]
    assert slack_knowledge("text = mrkdwn(label)") == ["uses mrkdwn"]
