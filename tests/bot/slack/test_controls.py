"""The controls on a report or status reply, in process: what each carries and Slack's limits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bot.figures import Figure, coverage_of
from bot.grammar import parse, tokenize, words
from bot.reports import Period, Report, ReportRow, StatusRow
from bot.slack import blocks
from bot.sync import SyncResult
from tests.fakes.slack_api import _BlockKit

DAY = date(2026, 11, 20)


def report(labels: tuple[str, ...] = ("Prod",), group_by: str = "model") -> Report:
    made = datetime(2026, 11, 22, 12, tzinfo=UTC)
    coverage = coverage_of(
        DAY, DAY, made, dict(enumerate(labels)), {n: [(DAY, DAY)] for n in range(len(labels))}
    )
    return Report(
        period=Period("week", DAY, DAY, "Last 7 days"),
        group_by=group_by,
        total=Figure(Decimal("12.50"), coverage, datetime(2026, 11, 20, 12, tzinfo=UTC)),
        rows=(ReportRow("grok-4", "grok-4", Decimal("12.50"), Decimal(1)),),
        connection_labels=labels,
    )


def problems(message: dict) -> list[str]:
    check = _BlockKit("invalid_blocks")
    check.message(message)
    return [p.describe() for p in check.problems]


def actions(message: dict) -> dict[str, dict]:
    return {
        e["action_id"]: e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    }


@pytest.mark.parametrize(
    "label",
    ["Production — xAI", 'R&D "north"', "back\\slash", "it's", "“curly”", "x", "#costs"],
)
def test_words_give_back_the_command_they_spell(label: str) -> None:
    command = parse(
        tokenize(words("week", by="model", connection=label, share=True)), surface="slack"
    )
    assert command.name == "week" and command.get("by") == "model" and command.get("share")
    assert command.get("connection") == label.replace("“", '"').replace("”", '"')
    assert parse(tokenize(words("update-key", label)), surface="slack").args == (
        label.replace("“", '"').replace("”", '"'),
    )


def test_a_long_model_pattern_turns_the_period_select_into_buttons() -> None:
    pattern = "grok-*" + "x" * 140  # too long for a select option's 150 characters
    message = blocks.report_message(report(), parse(["week", "--model", pattern], surface="slack"))
    found = actions(message)
    assert "xu:view:period" not in found
    assert found["xu:view:week"]["style"] == "primary"
    assert all(pattern in e["value"] for e in found.values())
    assert problems(message) == []


def test_a_control_whose_command_would_not_fit_is_left_out() -> None:
    pattern = "x" * 1970  # sharing it passes the 2,000 characters of a value; a grouping fits
    message = blocks.report_message(report(), parse(["week", "--model", pattern], surface="slack"))
    found = actions(message)
    assert "xu:share:report" not in found and "xu:view:by-day" in found
    assert problems(message) == []


def test_no_controls_without_a_connection_or_on_a_shared_copy() -> None:
    assert actions(blocks.report_message(report(labels=()), parse(["week"], surface="slack"))) == {}
    shared = blocks.report_message(
        report(), parse(["week", "--share"], surface="slack"), shared_by="U1"
    )
    assert actions(shared) == {}
    assert any("Shared by <@U1>" in str(b) for b in shared["blocks"])
    assert actions(blocks.report_message(report())) == {}  # a digest's copy, say


def test_a_sync_of_many_connections_says_where_the_rest_are() -> None:
    """The reply to `sync` lists 29 connections, then "and N more": `status` shows them."""
    results = [SyncResult(n, f"Team {n}", DAY, DAY, True, 1, Decimal(1)) for n in range(40)]
    lines = blocks.sync_lines(results).splitlines()
    assert len(lines) == 30
    assert lines[-1] == "and 11 more: `/xai-usage status` shows each connection's last sync."


def test_status_offers_a_few_new_keys_and_stays_within_50_blocks() -> None:
    rows = [
        StatusRow(
            f"Team {n} " + "long name " * 20,
            "xai",
            f"t{n}",
            "xai-…cafe",
            "error",
            "auth",
            None,
            None,
            Figure(
                Decimal(0), coverage_of(DAY, DAY, datetime(2026, 11, 22, tzinfo=UTC), {}, {}), None
            ),
        )
        for n in range(60)
    ]
    message = blocks.status_message(rows)
    found = actions(message)
    assert list(found) == [
        "xu:sync",
        *(f"xu:update-key:{n}" for n in range(5)),
        "xu:view:page-next",  # the 20 connections after the first 40
    ]
    assert found["xu:view:page-next"]["value"] == "status --page 2"
    assert parse(tokenize(found["xu:update-key:3"]["value"]), surface="slack").args == (
        rows[3].label,
    )
    assert len(message["blocks"]) <= 50 and problems(message) == []
    assert actions(blocks.status_message([])) == {}  # nothing to sync yet
