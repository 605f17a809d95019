"""The command grammar the terminal and /xai-usage share."""

from __future__ import annotations

import pytest

from bot.grammar import Command, UsageError, parse, slack_channel, tokenize


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


def test_in_slack_range_and_alerts_without_arguments_are_left_to_a_form() -> None:
    assert parse(["range", "--by", "day"], surface="slack") == Command("range", (), {"by": "day"})
    assert parse(["alerts"], surface="slack") == Command("alerts")
    with pytest.raises(UsageError, match="needs #CHANNEL"):
        parse(["alerts"])
    with pytest.raises(UsageError, match="needs TO"):
        parse(["range", "2026-10-01"], surface="slack")


def test_surfaces_differ_only_where_they_must() -> None:
    assert parse(["today", "--share"], surface="slack").get("share") is True
    with pytest.raises(UsageError):
        parse(["today", "--share"], surface="cli")
    with pytest.raises(UsageError, match="is not a command"):
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


# -- edge values: one clear line, never a traceback (issue 9) ---------------------


@pytest.mark.parametrize("digits", ["²", "٣", "３", "1²"])
def test_whole_numbers_are_ascii_digits_only(digits: str) -> None:
    # "²".isdigit() is True and int("٣") == 3: neither is a number anybody typed.
    with pytest.raises(UsageError, match=r"--days must be a whole number from 1 to 3660"):
        parse(["sync", "--days", digits])


def test_days_in_bounds_still_parse() -> None:
    assert parse(["sync", "--days", "90"]).get("days") == 90
    assert parse(["sync", "--days", "1"]).get("days") == 1


@pytest.mark.parametrize("latency", ["nan", "inf", "-1", "1e400", "61", "²"])
def test_latency_is_a_finite_number_of_seconds(latency: str) -> None:
    with pytest.raises(UsageError, match=r"from 0 to 60"):
        parse(["sandbox", "--latency", latency])
    assert parse(["sandbox", "--latency", "0.25"]).get("latency") == 0.25


def test_a_label_over_80_characters_is_refused_with_its_length() -> None:
    with pytest.raises(UsageError) as caught:
        parse(["connect", "--team-id", "x", "--label", "L" * 10_240])
    assert "at most 80 characters" in caught.value.message
    assert "10,240" in caught.value.message
    assert len(caught.value.message) < 200  # the label is not echoed whole
    assert parse(["connect", "--label", "L" * 80]).get("label") == "L" * 80


@pytest.mark.parametrize(
    "words",
    [
        ["today", "--connection", "Prod\x00uction"],
        ["range", "2026-11-01\x00", "2026-11-02"],
        ["connect", "--label", "a\x00b"],
        ["disconnect", "Prod\x00"],
        ["budget", "set", "100\x00"],
        ["to\x00day"],
    ],
)
def test_a_nul_byte_anywhere_is_one_clear_line(words: list[str]) -> None:
    with pytest.raises(UsageError, match=r"contains a control character") as caught:
        parse(words)
    assert "\x00" not in str(caught.value)
    assert "\\x00" in caught.value.message  # shown, so the person sees where


def test_a_pasted_file_as_a_value_is_refused() -> None:
    with pytest.raises(UsageError, match=r"at most 2,000"):
        parse(["today", "--model", "g" * 100_000])


def test_jobs_has_one_subcommand_and_refuses_the_rest() -> None:
    assert parse(["jobs", "run", "--at", "2026-11-23T09:00:00Z"]).args == ("run",)
    for words in (["jobs", "list"], ["jobs", "status"], ["jobs", "run", "now"]):
        with pytest.raises(UsageError) as caught:
            parse(words)
        assert caught.value.usage == "jobs run [--at TIME]"


# -- connect's fields are the provider's; help is the grammar's; one quoter ----------------


def test_connect_takes_any_field_as_a_flag_for_the_provider_to_judge() -> None:
    from bot.grammar import field_options

    command = parse(
        ["connect", "--provider", "acme", "--region", "eu-west", "--Team_ID", "x", "--days", "7"]
    )
    assert command.get("provider") == "acme" and command.get("days") == 7
    assert field_options(command) == {"region": "eu-west", "team_id": "x"}
    with pytest.raises(UsageError, match="--region needs a value"):
        parse(["connect", "--region"])
    with pytest.raises(UsageError, match="`sync` has no option --region"):
        parse(["sync", "--region", "eu"])  # only connect takes a provider's fields


def test_help_lists_the_options_its_usage_line_shows() -> None:
    """The help template once re-implemented which options show where, and drifted:
    `help digest` listed --chart in its usage but not among its options."""
    from bot.grammar import COMMANDS
    from bot.render import render

    for surface in ("cli", "slack"):
        for name, spec in COMMANDS.items():
            if surface not in spec.surfaces:
                continue
            text = render("help.txt.j2", commands=COMMANDS, topic=name, surface=surface, extra=[])
            usage = text.splitlines()[0]
            listed = [line.split()[0] for line in text.splitlines()[3:] if line.startswith("  --")]
            shown = [word.strip("[]") for word in usage.split() if word.startswith("[--")]
            assert listed == [s for s in shown if s != "--FIELD"], (surface, name)
    digest = render("help.txt.j2", commands=COMMANDS, topic="digest", surface="cli", extra=[])
    assert "  --chart" in digest


@pytest.mark.parametrize(
    "word",
    ["Production", "Prod — team", 'say "hi"', "back\\slash", "it’s", "a'b", "two  spaces"],
)
def test_one_quoter_gives_every_word_back_through_tokenize(word: str) -> None:
    from bot.grammar import quoted, words

    typed = word.replace("’", "'")  # a curly quote comes back straight, as when typed
    assert tokenize(quoted(word)) == [typed]
    assert parse(tokenize(words("sync", connection=word))).get("connection") == typed
