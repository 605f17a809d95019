"""Numbers are ASCII digits, in every setting and argument, through one parser.

``str.isdigit()`` and ``int()`` take far more than 0-9: ``²`` passes
``isdigit()`` and then ``int()`` raises (a traceback), ``١`` (Arabic-Indic
one) and ``１`` (fullwidth) pass both, as do `` 7 `` and ``1_000``. So
``digest remove ١`` removed digest 1 and ``PORT=²`` was a traceback.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.config import ConfigError, Settings
from bot.numbers import clock_time, decimal_number, whole_number
from bot.slack.settings import SlackSettings
from storage.models import Budget, DigestSubscription
from tests.bot.slack.conftest import BOT_TOKEN, SIGNING_SECRET

NOT_NUMBERS = ("", "²", "١", "١٠", "１", "+1", "-1", " 1", "1 ", "1_000", "0x1", "1e3", "9" * 5000)


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_only_ascii_digits_are_a_whole_number(text: str) -> None:
    assert whole_number(text) is None


def test_whole_numbers_and_decimals_as_typed() -> None:
    assert whole_number("0") == 0
    assert whole_number("65535") == 65535
    assert whole_number("007") == 7
    assert decimal_number("2.5") == 2.5
    assert decimal_number("5") == 5.0
    for text in ("١.٥", "2.", ".5", "nan", "inf", "1e3", "2.5 ", "٢"):
        assert decimal_number(text) is None, text


def test_clock_times_are_ascii_hh_mm() -> None:
    assert clock_time("09:00") == (9, 0)
    assert clock_time("9:05") == (9, 5)
    for text in ("²:00", "٠٩:٠٠", "09:٠٠", "24:00", "09:60", "0900", "09:00:00", ":", "１:00"):
        assert clock_time(text) is None, text


@pytest.mark.parametrize(
    "name, value",
    [
        ("XAI_USAGE_DAILY_SYNC_AT", "٠٦:٠٠"),
        ("XAI_USAGE_DAILY_SYNC_AT", "²:00"),
        ("XAI_USAGE_SYNC_CONCURRENCY", "١٦"),
        ("XAI_USAGE_SYNC_CONCURRENCY", "1_6"),
        ("XAI_USAGE_TRAILING_DAYS", "²"),
        ("XAI_USAGE_HTTP_DEADLINE", " 60"),
    ],
)
def test_a_setting_that_is_not_ascii_digits_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "name, value",
    [
        ("PORT", "²"),
        ("PORT", "١"),
        ("PORT", "３０００"),
        ("XAI_USAGE_SERVE_IDLE_TIMEOUT", "١٠"),
        ("XAI_USAGE_SERVE_MAX_CONNECTIONS", "1_000"),
        ("XAI_USAGE_SERVE_REQUEST_DEADLINE", "١.٥"),
    ],
)
def test_a_serve_setting_that_is_not_ascii_digits_names_the_variable(name, value) -> None:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, name: value}
    with pytest.raises(ConfigError, match=name):
        SlackSettings.from_env(env, force_http=True)


def test_digest_remove_with_an_arabic_indic_one_removes_nothing(cli, workspace_id, db) -> None:
    with db.transaction() as session:
        session.add(
            DigestSubscription(
                workspace_id=workspace_id,
                channel_id="C0123ABCD",
                at_time="09:00",
                tz="UTC",
                every="day",
                created_by="test",
            )
        )
    code, _, err = cli("digest", "remove", "١")
    assert code == 1
    assert "Give the number `xai-usage digest list` shows" in err
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DigestSubscription)) == 1


def test_budget_remove_with_a_superscript_is_one_line_not_a_traceback(
    cli, workspace_id, db
) -> None:
    with db.transaction() as session:
        session.add(Budget(workspace_id=workspace_id, amount_usd=500, thresholds="50,80,100"))
    code, _, err = cli("budget", "remove", "²")
    assert code == 1
    assert "Give the number `xai-usage budget list` shows" in err
    assert "Traceback" not in err
