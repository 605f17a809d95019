"""app.yaml creates the app the code expects: same command, scopes and events."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.slack.listeners.commands import SLASH_COMMAND
from bot.slack.settings import OPTIONAL_SCOPES, SCOPES

MANIFEST = yaml.safe_load((Path(__file__).parents[1] / "app.yaml").read_text())


def test_the_slash_command_escapes_channels_and_has_a_usage_hint() -> None:
    [command] = MANIFEST["features"]["slash_commands"]
    assert command["command"] == SLASH_COMMAND
    assert command["should_escape"] is True
    assert "today" in command["usage_hint"] and len(command["usage_hint"]) <= 1000
    assert len(command["description"]) <= 2000


def test_scopes_are_exactly_what_the_code_asks_for() -> None:
    assert MANIFEST["oauth_config"]["scopes"]["bot"] == list(SCOPES)
    assert MANIFEST["oauth_config"]["scopes"]["bot_optional"] == list(OPTIONAL_SCOPES)


def test_reading_channels_is_optional() -> None:
    """The widest scopes are not required: a workspace may install without them."""
    required = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert not required & {"channels:history", "groups:history", "channels:read"}
    assert set(OPTIONAL_SCOPES) == {"channels:history", "groups:history"}


def test_events_and_interactivity_match_the_listeners() -> None:
    from bot.slack.listeners import events

    events_listened = {"app_uninstalled", "tokens_revoked", "app_home_opened", "message"}
    assert all(hasattr(events, name) for name in events_listened)
    subscribed = set(MANIFEST["settings"]["event_subscriptions"]["bot_events"])
    # Slack names the DM flavour of the `message` event `message.im`.
    assert {name.split(".")[0] for name in subscribed} == events_listened
    assert [name for name in subscribed if name.startswith("message")] == ["message.im"]
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True


def test_the_home_tab_is_on_and_people_can_write_to_the_app() -> None:
    home = MANIFEST["features"]["app_home"]
    assert home["home_tab_enabled"] is True
    assert home["messages_tab_enabled"] is True
    assert home["messages_tab_read_only_enabled"] is False
    assert "im:history" in MANIFEST["oauth_config"]["scopes"]["bot"]  # what message.im needs


def test_socket_mode_is_the_default_and_names_fit_slack() -> None:
    assert MANIFEST["settings"]["socket_mode_enabled"] is True
    info = MANIFEST["display_information"]
    assert len(info["name"]) <= 35 and len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000
