"""The command grammar the terminal and /xai-usage share."""

from __future__ import annotations

import pytest

from bot.grammar import UsageError, parse, slack_channel, tokenize


def test_a_report_with_options_in_either_spelling() -> None:
    command = parse(["today", "--by", "model", "--connection=Production — xAI"])
    assert command.name == "today"
    assert command.options == {"by": "model", "connection": "Production — xAI"}


def test_plural_and_friendly_groupings_are_understood() -> None:
    assert parse(["week", "--by", "models"]).get("by") == "model"
    assert parse(["month", "--by", "api-key"]).get("by") == "key"


def test_a_typo_in_a_command_suggests_the_closest_one_and_the_usage() -> None:
    with pytest.raises(UsageError) as caught:
        parse(["tday", "--by", "model"])
    assert "Did you mean `today`?" in caught.value.message
    assert caught.value.usage.startswith("today")


def test_a_typo_in_an_option_or_value_is_named_with_a_fix() -> None:
    with pytest.raises(UsageError, match=r"Did you mean `--by`\?"):
        parse(["week", "--bye", "model"])
    with pytest.raises(UsageError, match="must be one of model, day, week, month, connection, key"):
        parse(["week", "--by", "team"])
    with pytest.raises(UsageError, match="needs a value"):
        parse(["week", "--by"])


def test_range_needs_two_real_dates_in_order() -> None:
    assert parse(["range", "2026-10-01", "2026-10-31"]).args == ("2026-10-01", "2026-10-31")
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        parse(["range", "2026-10-01", "31/10/2026"])
    with pytest.raises(UsageError, match="is after"):
        parse(["range", "2026-10-31", "2026-10-01"])
    with pytest.raises(UsageError, match="needs FROM TO"):
        parse(["range"])


def test_surfaces_differ_only_where_they_must() -> None:
    assert parse(["today", "--share"], surface="slack").get("share") is True
    with pytest.raises(UsageError):
        parse(["today", "--share"], surface="cli")
    with pytest.raises(UsageError, match="Unknown command"):
        parse(["rotate-key"], surface="slack")


def test_disconnect_takes_a_label_with_spaces() -> None:
    assert parse(["disconnect", "Production", "—", "xAI"]).args == ("Production — xAI",)


def test_nothing_or_help_is_help() -> None:
    assert parse([]).name == "help"
    assert parse(["today", "--help"]).args == ("today",)


def test_tokenize_forgives_phone_quotes_and_unbalanced_quotes() -> None:
    assert tokenize("today --connection “Prod team”") == ["today", "--connection", "Prod team"]
    assert tokenize('week --connection "Prod') == ["week", "--connection", "Prod"]
    assert tokenize("today —by model --connection “Prod — xAI”") == [
        "today",
        "--by",
        "model",
        "--connection",
        "Prod — xAI",
    ]


def test_slack_channel_escapes() -> None:
    assert slack_channel("<#C0123ABC|costs>") == ("C0123ABC", "costs")
    assert slack_channel("#costs") is None


def test_a_label_may_have_spaces_without_quotes() -> None:
    command = parse(["today", "--connection", "Production", "—", "xAI", "--by", "day"])
    assert command.options == {"connection": "Production — xAI", "by": "day"}
    ranged = parse(["range", "--connection", "Prod", "team", "2026-10-01", "2026-10-31"])
    assert ranged.get("connection") == "Prod team" and ranged.args == ("2026-10-01", "2026-10-31")


def test_alerts_can_list_and_remove_a_route_or_only_its_webhook() -> None:
    assert parse(["alerts", "list"]).args == ("list",)
    command = parse(["alerts", "remove", "--connection", "Production", "—", "xAI", "--webhook"])
    assert command.args == ("remove",)
    assert command.options == {"connection": "Production — xAI", "webhook": True}
    with pytest.raises(UsageError, match="--webhook needs a value"):
        parse(["alerts", "C0123ABCD", "--webhook"])  # setting one needs its URL
