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
import re
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

ROOT = Path(bot.__file__).parents[1]
HOST = ("bot", "storage", "templates")
HISTORY = "storage/migrations"
"""Migrations record what the schema was; their docstrings are history, not the host's words."""
PROVIDER_PACKAGES = ("providers.xai", "providers.openai", "providers.anthropic")
"""Each provider's own package, built as a third party would build one."""
PROVIDER_WORDS = re.compile(
    r"\bxAI\b|x\.ai\b|\bOpenAI\b|\bAnthropic\b|\bGrok\b|\bClaude\b|Team ID|"
    r"[Mm]anagement (API )?[Kk]ey|[Aa]dmin [Kk]ey|\bteam-id\b|sk-admin|sk-ant"
)
"""How the built-in providers word themselves: a host surface says them only by quoting
what a provider supplies (display names, field labels, help, messages)."""
SLACK_OWN = frozenset({"team_id"})
"""A provider's field name that is also a Slack payload field: Slack's own in bot/slack."""


def provider_vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """The names and credential field names of every provider this repository ships."""
    from providers.manager import load_providers, plugin_manager

    registry = load_providers({}, plugin_manager(load_entry_points=True))
    names = frozenset(p.name for p in registry)
    fields = frozenset(f.name for p in registry for f in p.credential_fields)
    return names, fields


def string_constants(source: str) -> list[tuple[int, str]]:
    """Every string literal of ``source`` but docstrings (which explain, and may cite a
    provider as an example), with its line."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):  # a docstring after an assignment (attribute docs)
        if isinstance(node, ast.Module | ast.ClassDef):
            for before, after in zip(node.body, node.body[1:], strict=False):
                documents = isinstance(before, ast.Assign | ast.AnnAssign)
                if (
                    documents
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                ):
                    docstrings.add(id(after.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def provider_knowledge(path: Path, source: str, names, fields) -> list[str]:
    """What in a host file names a provider, its credential fields or its wording."""
    relative = path.relative_to(ROOT).as_posix()
    in_slack = relative.startswith(("bot/slack/", "storage/"))
    found = []
    if path.suffix == ".py":
        for name in provider_imports(source):
            found.append(f"imports {name[1]}")
        texts = string_constants(source)
    else:
        texts = [(n, line) for n, line in enumerate(source.splitlines(), start=1)]
    for line, text in texts:
        if match := PROVIDER_WORDS.search(text):
            found.append(f"line {line}: says {match.group(0)!r}")
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", text))
        if path.suffix == ".py":
            words = {text} if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", text) else set()
        for word in words & (names | fields):
            if word in SLACK_OWN and in_slack:
                continue
            found.append(f"line {line}: names {word!r}")
    return found


def host_files() -> list[Path]:
    files = []
    for folder in HOST:
        for path in sorted((ROOT / folder).rglob("*")):
            relative = path.relative_to(ROOT).as_posix()
            if path.suffix in (".py", ".j2") and not relative.startswith(HISTORY):
                files.append(path)
    return files


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
            if any(name == p or name.startswith(p + ".") for p in PROVIDER_PACKAGES):
                found.append((function, name))
                break
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), None)
    return found


def test_the_host_names_no_provider_its_fields_or_its_words() -> None:
    """bot/, storage/ and templates/ say a provider's name, fields and words only by
    quoting what the provider supplies: `demo` included, which finds the stand-ins through
    their capability."""
    names, fields = provider_vocabulary()
    assert {"xai", "openai", "anthropic"} <= names  # the check knows what it looks for
    found = {
        path.relative_to(ROOT).as_posix(): problems
        for path in host_files()
        if (problems := provider_knowledge(path, path.read_text(encoding="utf-8"), names, fields))
    }
    assert found == {}, "the host knows a provider: quote what the provider object says"


def test_the_provider_check_recognises_what_it_forbids() -> None:
    names, fields = frozenset({"xai", "openai"}), frozenset({"team_id", "admin_key"})
    py = ROOT / "bot" / "example.py"
    slack = ROOT / "bot" / "slack" / "example.py"
    template = ROOT / "templates" / "example.j2"

    def knows(path: Path, source: str) -> list[str]:
        return provider_knowledge(path, source, names, fields)

    assert knows(py, 'TITLE = "Daily xAI spend"') == ["line 1: says 'xAI'"]
    assert knows(py, 'provider = registry.get("openai")') == ["line 1: names 'openai'"]
    assert knows(py, 'key = values["admin_key"]') == ["line 1: names 'admin_key'"]
    assert knows(py, 'hint = "check console.x.ai"') == ["line 1: says 'x.ai'"]
    assert knows(py, '"""Like xAI\'s, for example."""\nx = 1') == []  # a docstring explains
    assert knows(slack, 'team = body["team_id"]') == []  # Slack's own field
    assert knows(py, 'team = body["team_id"]') == ["line 1: names 'team_id'"]
    assert knows(template, '"text": "Connect an xAI team"') == ["line 1: says 'xAI'"]
    assert knows(template, '{% if name == "openai" %}') == ["line 1: names 'openai'"]
    assert knows(py, "from providers.xai.prices import price_table") == [
        "imports providers.xai.prices"
    ]
    assert knows(py, 'importlib.import_module("providers.openai.provider")') == [
        "imports providers.openai.provider"
    ]
    assert knows(py, "from providers.types import UsageKind") == []
    assert knows(py, 'name = "xai-usage"') == []  # the product's own name


# -- bot/slack: dependencies point one way ----------------------------------------------


def slack_imports() -> dict[str, set[str]]:
    """Each bot/slack module's imports of another, lazy ones included (not those under
    ``TYPE_CHECKING``, which never run)."""
    root = Path(bot.__file__).parent / "slack"
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        module = "bot." + path.relative_to(root.parent).with_suffix("").as_posix().replace("/", ".")
        module = module.removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in ast.walk(node)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in skipped or not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.module.startswith("bot.slack"):
                found.add(node.module)
                found |= {
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (root.parent / node.module.replace("bot.", "").replace(".", "/")).is_dir()
                }
        graph[module] = found - {module}  # a package naming its own submodules
    return graph


def test_bot_slack_has_no_import_cycle_and_no_listener_imports_another() -> None:
    graph = slack_imports()
    listeners = {m for m in graph if m.startswith("bot.slack.listeners.")}
    for listener in listeners:
        assert not graph[listener] & listeners, f"{listener} imports another listener"

    def cycle_from(start: str) -> list[str] | None:
        path, seen = [start], set()

        def walk(module: str) -> list[str] | None:
            for nxt in sorted(graph.get(module, ())):
                if nxt == start:
                    return [*path, nxt]
                if nxt in seen:
                    continue
                seen.add(nxt)
                path.append(nxt)
                if found := walk(nxt):
                    return found
                path.pop()
            return None

        return walk(start)

    cycles = [found for module in graph if (found := cycle_from(module))]
    assert cycles == [], f"an import cycle in bot/slack: {' -> '.join(cycles[0])}"
