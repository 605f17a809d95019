"""Setting up digests, budgets and alert routes: what each surface accepts, and says back."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from bot.grammar import parse
from bot.setup import (
    TERMINAL,
    Setup,
    SetupError,
    check_zone,
    parse_channel,
    parse_thresholds,
    parse_time,
    parse_usd,
)
from bot.slack.delivery import cannot_post
from bot.slack.setup_words import SLACK
from storage.models import Budget, Workspace

SURFACES = {"slack": SLACK, "cli": TERMINAL}


@pytest.mark.parametrize(
    ("word", "here", "surface", "expected"),
    [
        ("<#C0123ABCD|costs>", None, "slack", ("C0123ABCD", "costs")),
        ("<#C0123ABCD>", None, "slack", ("C0123ABCD", "")),
        (None, "CHERE1", "slack", ("CHERE1", "")),
        ("C0123ABCD", None, "cli", ("C0123ABCD", "")),
        ("G0123ABCD", None, "cli", ("G0123ABCD", "")),
    ],
)
def test_channels_each_surface_accepts(word, here, surface, expected) -> None:
    assert parse_channel(word, here, SURFACES[surface]) == expected


@pytest.mark.parametrize(
    ("word", "surface", "says"),
    [
        ("#costs", "slack", "pick it from Slack's #-autocomplete"),
        ("#costs", "cli", "give the channel's id"),
        ("costs", "cli", "e.g. C0123ABCD"),
        (None, "slack", "Name a channel, e.g. `#costs`"),
        (None, "cli", "a channel id such as C0123ABCD"),
    ],
)
def test_a_channel_that_cannot_be_used_says_what_to_type(word, surface, says) -> None:
    with pytest.raises(SetupError) as caught:
        parse_channel(word, None, SURFACES[surface])
    assert says in str(caught.value)


def test_amounts_times_zones_and_thresholds() -> None:
    assert parse_usd("$1,250.5") == Decimal("1250.50")
    for bad in ("abc", "0", "-5", "NaN"):
        with pytest.raises(SetupError):
            parse_usd(bad)
    assert parse_time("9:05") == "09:05"
    for bad in ("25:00", "09:60", "nine", "9"):
        with pytest.raises(SetupError, match="like 09:00"):
            parse_time(bad)
    assert check_zone("Asia/Tokyo") == "Asia/Tokyo"
    with pytest.raises(SetupError, match="not a time zone"):
        check_zone("Mars/Base")
    assert parse_thresholds("100, 50,80,50") == "50,80,100"
    for bad in ("", "fifty", "0", "2000"):
        with pytest.raises(SetupError, match="percentages"):
            parse_thresholds(bad)


def _setup(db, surface: str) -> Setup:
    with db.transaction() as session:
        workspace = Workspace(name="acme")
        session.add(workspace)
        session.flush()
        workspace_id = workspace.id
    actor = "UADMIN" if surface == "slack" else "terminal:ops"
    return Setup(db, workspace_id, actor, SURFACES[surface])


def test_a_digest_is_saved_only_after_its_note_was_posted(db) -> None:
    setup = _setup(db, "cli")
    notes: list[tuple[str, str]] = []

    def refuse(channel: str, text: str) -> None:
        raise cannot_post("not_in_channel")  # as Slack's refusal arrives

    command = parse(["digest", "add", "C0123ABCD", "--every", "week", "--tz", "UTC"])
    with pytest.raises(SetupError, match="I can't post in C0123ABCD: invite me first"):
        setup.add_digest(command, here=None, default_tz=lambda: "UTC", announce=refuse)
    assert setup.digests() == []
    sub = setup.add_digest(
        command, here=None, default_tz=lambda: "UTC", announce=lambda *note: notes.append(note)
    )
    assert notes == [
        (
            "C0123ABCD",
            ":calendar: An admin set up a spend digest here, every Monday at 09:00 (UTC).",
        )
    ]
    assert [s.id for s in setup.digests()] == [sub.id]
    assert setup.digest_added(sub) == (
        f"Digest {sub.id}: C0123ABCD, every Monday at 09:00 (UTC), all connections; each covers "
        "the last whole Monday–Sunday week (UTC days) before it is posted; figures still "
        "settling are marked provisional, and a posted digest is corrected if they move by "
        f"more than 1% and $1. `xai-usage digest remove {sub.id}` stops it."
    )


def test_a_digest_elsewhere_than_utc_says_which_hours_its_days_are(db) -> None:
    setup = _setup(db, "cli")
    command = parse(["digest", "add", "C0123ABCD", "--at", "09:00", "--tz", "Asia/Tokyo"])
    sub = setup.add_digest(command, here=None, default_tz=lambda: "UTC", announce=lambda *n: None)
    assert (
        "each covers the last UTC day that ended before it is posted "
        "(UTC days run 09:00–09:00 in Asia/Tokyo)" in setup.digest_added(sub)
    )


def test_each_surface_names_channels_and_commands_its_own_way(db) -> None:
    slack, terminal = _setup(db, "slack"), _setup(db, "cli")
    assert slack.channel("C1", "costs") == "<#C1>"
    assert terminal.channel("C1", "costs") == "C1 (#costs)"
    assert slack.digest_lines([]) == "No digests yet: `/xai-usage digest add #channel` sets one up."
    assert (
        terminal.digest_lines([]) == "No digests yet: `xai-usage digest add C0123ABCD` sets one up."
    )
    budget = terminal.set_budget(parse(["budget", "set", "500", "--thresholds", "80,50"]))
    assert terminal.budget_lines([budget]) == (
        f"{budget.id:>3}  all connections, $500.00 a month, alerts at 50%, 80%"
    )
    assert slack.budget_lines([]) == "No budgets yet: `/xai-usage budget set 500` sets one."


def test_removing_needs_a_number_of_this_workspace(db) -> None:
    mine, theirs = _setup(db, "cli"), _setup(db, "cli")
    budget = mine.set_budget(parse(["budget", "set", "10"]))
    with pytest.raises(SetupError, match="Give the number"):
        mine.remove(Budget, "first")
    with pytest.raises(SetupError, match=f"Budget {budget.id} is gone already"):
        theirs.remove(Budget, str(budget.id))  # another workspace's budget stays
    mine.remove(Budget, str(budget.id))
    assert mine.budgets() == []


def test_a_daily_digest_can_ask_for_its_chart(db) -> None:
    setup = _setup(db, "cli")
    command = parse(["digest", "add", "C0123ABCD", "--tz", "UTC", "--chart"])
    sub = setup.add_digest(command, here=None, default_tz=lambda: "UTC", announce=lambda *n: None)
    weekly = setup.add_digest(
        parse(["digest", "add", "C0123ABCD", "--tz", "UTC", "--every", "week"]),
        here=None,
        default_tz=lambda: "UTC",
        announce=lambda *n: None,
    )
    assert [s.chart for s in setup.digests()] == [True, False]  # weekly ones always draw
    assert "every day at 09:00 (UTC), all connections, with its chart;" in setup.digest_added(sub)
    assert "with its chart" not in setup.digest_added(weekly)
    assert setup.digest_lines(setup.digests()).splitlines()[0].endswith("with its chart")


def _add(setup: Setup, *words: str, notes: list | None = None):
    command = parse(["digest", "add", "C0123ABCD", "--tz", "UTC", *words])
    announce = (lambda *note: notes.append(note)) if notes is not None else (lambda *n: None)
    return setup.add_digest(command, here=None, default_tz=lambda: "UTC", announce=announce)


def test_a_second_identical_digest_is_refused_naming_the_first(db) -> None:
    """Two identical 09:00 digests were both accepted and both posted, every day."""
    setup = _setup(db, "cli")
    first = _add(setup, "--at", "09:00", "--quiet-min", "25")
    notes: list = []
    with pytest.raises(SetupError) as refused:
        _add(setup, "--at", "9:00", "--quiet-min", "25.00", notes=notes)  # the same, typed apart
    assert str(refused.value).startswith(
        f"Digest {first.id} already posts in C0123ABCD, every day at 09:00 (UTC), all "
        "connections, posted only when spend over $25.00: nothing was added."
    )
    assert f"`xai-usage digest remove {first.id}`" in str(refused.value)
    assert refused.value.field == "channel"
    assert notes == []  # refused before its note was posted
    assert [s.id for s in setup.digests()] == [first.id]
    # Any setting that differs makes another digest.
    for words in (("--at", "10:00"), ("--every", "week"), ("--chart",), ("--quiet-change", "5")):
        _add(setup, *words)
    assert len(setup.digests()) == 5
    # A weekly digest always has its chart: --chart makes no other digest of it.
    with pytest.raises(SetupError, match="already posts"):
        _add(setup, "--every", "week", "--chart")


def test_two_identical_digests_added_at_once_make_one(db) -> None:
    """Both pass the check before either is saved (each waits for the other in its note):
    the database keeps one, and the other is refused in the same words."""
    setup = _setup(db, "cli")
    both_posted = threading.Barrier(2, timeout=10)
    outcomes: list[object] = []

    def add() -> None:
        command = parse(["digest", "add", "C0123ABCD", "--tz", "UTC"])
        try:
            outcomes.append(
                setup.add_digest(
                    command,
                    here=None,
                    default_tz=lambda: "UTC",
                    announce=lambda *note: both_posted.wait(),
                )
            )
        except SetupError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=add) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    [kept] = setup.digests()
    [refused] = [o for o in outcomes if isinstance(o, SetupError)]
    assert str(refused).startswith(f"Digest {kept.id} already posts in C0123ABCD")
