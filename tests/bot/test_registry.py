"""Commands are declared once, in the grammar; each surface registers a handler for each."""

from __future__ import annotations

import io

import pytest

from bot import cli
from bot.grammar import COMMANDS, Handlers
from bot.slack import dispatch as slack_commands

SURFACES = {"cli": cli.HANDLERS, "slack": slack_commands.HANDLERS}


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_every_command_has_a_handler_on_each_surface_it_claims(surface: str) -> None:
    handlers = SURFACES[surface]
    claimed = {name for name, spec in COMMANDS.items() if surface in spec.surfaces}
    assert handlers.surface == surface
    assert handlers.missing() == []
    assert set(handlers) == claimed  # and none for a name the grammar does not offer here


def test_a_handler_for_an_unknown_or_foreign_command_fails_at_import() -> None:
    handlers: Handlers[object] = Handlers("slack")
    with pytest.raises(LookupError, match="`rotate-key` is not a slack command"):
        handlers.handles("rotate-key")(object())  # a terminal-only command
    with pytest.raises(LookupError, match="`todya` is not a slack command"):
        handlers.handles("todya")(object())
    assert handlers.missing() == [n for n, s in COMMANDS.items() if "slack" in s.surfaces]


def test_a_command_without_a_terminal_handler_says_so(monkeypatch) -> None:
    monkeypatch.delitem(cli.HANDLERS, "providers")
    err = io.StringIO()
    console = cli.Console(out=io.StringIO(), err=err)
    assert cli.main(["providers"], console=console, environ={}) == cli.EXIT_USAGE
    assert err.getvalue() == (
        "xai-usage: `providers` isn't available here; type `help` for what is.\n"
    )
