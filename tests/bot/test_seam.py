"""The seams of the host: the core knows nothing of Slack, nor of a provider's code.

Digests, alerts, scheduled jobs and setup build plain data (dataclasses with
Decimal money and dates) and words; Block Kit, mrkdwn and Slack's error codes
live in ``bot/slack/``. And ``bot/`` learns about a provider only through the
provider object (``providers/types.py``): xAI's package is built as a third
party would build the next one. This reads the modules' source, so a Block Kit
dict, a Slack error code or an import of xAI's internals slipping back into
the host fails here, not in review.
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


# -- the host learns about a provider only through the provider object ----------------

PROVIDER_OWN = "providers.xai"
"""xAI's own package: built as a third party would build the next provider."""
STAND_IN_COMMANDS = frozenset({("cli.py", "demo")})
"""The command that runs the product against xAI's local stand-in: the one place the host
names xAI's code (``sandbox`` finds any provider's stand-in through ``StandInProvider``)."""


def provider_imports(source: str) -> list[tuple[str | None, str]]:
    """Each use of a provider's own package in ``source``: (the function it is in, or None
    at module level; what it names). Imports in any spelling, and module names as strings
    (``importlib.import_module``)."""
    found: list[tuple[str | None, str]] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        return []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        for name in names(node):
            if name == PROVIDER_OWN or name.startswith(PROVIDER_OWN + "."):
                found.append((function, name))
                break
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), None)
    return found


def test_the_host_imports_no_providers_own_code_but_the_stand_in_commands() -> None:
    root = Path(bot.__file__).parent
    found = {
        (str(path.relative_to(root)), function, name)
        for path in sorted(root.rglob("*.py"))
        for function, name in provider_imports(path.read_text(encoding="utf-8"))
        if (str(path.relative_to(root)), function) not in STAND_IN_COMMANDS
    }
    assert found == set(), "bot/ reaches into a provider's package: use its capabilities"


def test_the_provider_check_recognises_what_it_forbids() -> None:
    assert provider_imports("from providers.xai.prices import price_table") == [
        (None, "providers.xai.prices")
    ]
    assert provider_imports("from providers import xai") == [(None, "providers.xai")]
    assert provider_imports("def f():\n    import providers.xai.sandbox as s") == [
        ("f", "providers.xai.sandbox")
    ]
    assert provider_imports('importlib.import_module("providers.xai.provider")') == [
        (None, "providers.xai.provider")
    ]
    assert provider_imports("from providers.types import UsageKind") == []
    assert provider_imports("from providers.xaiish import x") == []
