"""The formatting helpers every surface shares: one way to write a date, a share, a warning."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from bot import formatting


def test_spans_of_days_read_one_way_without_leading_zeros() -> None:
    span = formatting.day_span
    assert span(date(2026, 10, 1), date(2026, 10, 31)) == "1 Oct–31 Oct 2026"
    assert span(date(2026, 10, 28), date(2026, 11, 3)) == "28 Oct–3 Nov 2026"
    assert span(date(2026, 12, 28), date(2027, 1, 3)) == "28 Dec 2026–3 Jan 2027"
    assert span(date(2026, 11, 1), date(2026, 11, 1)) == "Sun 1 Nov 2026"


def test_whole_replies_are_escaped_but_keep_the_references_the_bot_makes() -> None:
    text = "<@U123> sent alerts for “R&D <!channel> *x*” to <#C0AB>: a > b"
    assert formatting.mrkdwn_keep_references(text) == (
        "<@U123> sent alerts for “R&amp;D &lt;!channel&gt; *x*” to <#C0AB>: a &gt; b"
    )


def test_a_backfill_of_nothing_hints_at_another_account_in_the_providers_words() -> None:
    hint = formatting.zero_backfill_hint(Decimal(0), 90)
    assert "No spend at all in 90 days" in hint and "another account's" in hint
    said = formatting.zero_backfill_hint(Decimal(0), 90, "the Team ID may be another team's.")
    assert said.endswith("if this account does use the API, the Team ID may be another team's.")
    assert formatting.zero_backfill_hint(Decimal("0.01"), 90) == ""


def test_connection_counts() -> None:
    assert [formatting.connections_count(n) for n in (1, 2, 3)] == [
        "1 connection",
        "Both connections",
        "All 3 connections",
    ]


def test_report_titles_have_no_leading_zeros() -> None:
    from bot.grammar import Command
    from bot.reports import resolve_period

    week = resolve_period(Command("week", ()), date(2026, 12, 1))
    assert week.title == "Last 7 days, 25 Nov–1 Dec 2026"


def test_names_cut_in_the_middle_stay_apart():
    from bot.formatting import clip_apart, clip_middle

    assert clip_middle("Production — xAI: Test key", 20) == "Production… Test key"
    assert clip_middle("short", 20) == "short"
    # A key's own name stays whole; its connection, in parentheses, is cut instead...
    assert clip_middle("Test key (Production — xAI Europe)", 22) == "Test key (Produ…urope)"
    # ...unless too little of it would be left: then the whole is cut in the middle.
    assert clip_middle("A very long key name (Production)", 22) == "A very long…roduction)"
    models = ["grok-4-fast-reasoning", "grok-4-fast-non-reasoning", "grok-4-0709"]
    cut = clip_apart(models, 20)
    assert len(set(cut)) == 3 and all(len(c) <= 20 for c in cut) and cut[2] == "grok-4-0709"
    assert cut[0].endswith("t-reasoning") and cut[1].endswith("n-reasoning")
    twins = clip_apart(["same name, long enough"] * 2, 10)
    assert twins[0] == twins[1] and len(twins[0]) == 10  # alike as written: nothing to keep
