"""Digests and alerts fresh before they speak, and corrected once when a day settles.

A whole deployment (tests/fakes/world.py): the xAI stand-in serves a finished day
that keeps growing for 16 hours after it ends, as xAI's data does; the Slack
stand-in keeps every message, and changes one in place on ``chat.update``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select

from bot.ledger import Ledger
from providers.xai.sandbox import DEMO_TEAM_ID, MODELS
from storage.models import PostedMessage
from tests.bot.slack.conftest import text_of
from tests.fakes.world import World, at, subscribe

FRIDAY = date(2026, 10, 23)
TOKYO_NINE = "2026-10-24T00:00:30"  # 09:00 in Tokyo on Saturday: Friday (UTC) just ended


def served(world: World, day: date) -> Decimal:
    """What the xAI stand-in serves for the day now, to the nano-dollar."""
    return sum((world.xai.cost(DEMO_TEAM_ID, label, day) for label in MODELS), Decimal(0))


def money(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):,}"


def digest_posts(world: World, day: str = "Fri 23 Oct 2026") -> list[dict]:
    """The digests of ``day`` in #costs (alerts may share the channel), oldest first."""
    return [m for m in world.slack.history("CCOSTS") if f"Daily xAI spend · {day}" in m["text"]]


def posted_key(world: World, message: dict) -> str:
    """The ledger key a message carries (its metadata)."""
    return message["metadata"]["event_payload"]["key"]


def usage_requests(world: World) -> int:
    return sum(1 for r in world.xai.requests if r.path.endswith("/usage"))


def test_a_digest_at_midnight_utc_syncs_first_says_provisional_and_is_corrected_once(
    world: World,
) -> None:
    world.xai.settle_hours = 16  # Friday's figure keeps growing until Saturday 16:00 UTC
    subscribe(world, at_time="09:00", tz="Asia/Tokyo", every="day")

    before = usage_requests(world)
    world.jobs(at(TOKYO_NINE))
    assert usage_requests(world) > before  # last read on Tuesday: synced before speaking
    (posted,) = digest_posts(world)
    first = served(world, FRIDAY)  # 60% of the day: 24 of its 40 hours served
    header = posted["blocks"][0]["text"]["text"]
    assert header == f"Daily xAI spend · Fri 23 Oct 2026: {money(first)} (provisional)"
    text = text_of(posted)
    assert "Fri 23 Oct 2026 is provisional: the provider may still add to it until " in text
    assert "24 Oct 12:00 UTC" in text  # xAI's figures settle 12 hours after the day
    assert "Fri 23 Oct 2026 is a UTC day: 09:00 Fri–09:00 Sat in Asia/Tokyo" in text
    assert "as of 24 Oct 00:00 UTC" in text
    assert world.slack.calls_to("chat.update") == []

    world.jobs(at("2026-10-24T06:00:30"))  # the daily sync: Friday has grown
    second = served(world, FRIDAY)
    assert second > first * Decimal("1.2")
    (update,) = world.slack.calls_to("chat.update")
    assert update.params["ts"] == posted["ts"] and update.params["channel"] == "CCOSTS"
    (posted,) = digest_posts(world)  # still one message: changed in place
    assert posted["blocks"][0]["text"]["text"].endswith(f"{money(second)} (provisional)")
    assert f"Updated 24 Oct 06:00 UTC: was {money(first)}" in text_of(posted)

    world.jobs(at("2026-10-24T06:05:00"))  # nothing synced since: nothing to look at again
    world.jobs(at("2026-10-24T09:00:00"))
    assert len(world.slack.calls_to("chat.update")) == 1

    world.jobs(at("2026-10-25T06:00:30"))  # Friday settled at 16:00, and is read again
    final = served(world, FRIDAY)
    assert final == sum(
        (world.xai.final_cost(DEMO_TEAM_ID, label, FRIDAY) for label in MODELS), Decimal(0)
    )
    assert len(world.slack.calls_to("chat.update")) == 2
    (posted,) = digest_posts(world)
    header = posted["blocks"][0]["text"]["text"]
    assert header == f"Daily xAI spend · Fri 23 Oct 2026: {money(final)}"  # final: no mark
    assert f"was {money(second)}" in text_of(posted)
    with world.runtime().db.session() as session:
        post = session.get(PostedMessage, posted_key(world, posted))
    assert post.final and post.corrections == 2 and post.shown_usd == final

    world.jobs(at("2026-10-26T06:00:30"))  # final: never looked at again
    fridays = [c for c in world.slack.calls_to("chat.update") if c.params["ts"] == posted["ts"]]
    assert len(fridays) == 2  # (Saturday's digest, posted since, is corrected in its turn)


def test_a_correction_another_process_claimed_is_not_made_twice(world: World) -> None:
    world.xai.settle_hours = 16
    subscribe(world, at_time="00:00", tz="UTC", every="day")
    world.jobs(at("2026-10-24T00:00:30"))
    with world.runtime().db.session() as session:
        (post,) = session.scalars(select(PostedMessage))
    # Another process is correcting the same change right now.
    other = Ledger(world.runtime().db, owner="host-b:1", clock=lambda: at("2026-10-24T06:00:30"))
    assert other.claim(f"fix:{post.key}:1", workspace_id=world.workspace_id) is not None
    world.jobs(at("2026-10-24T06:00:30"))
    assert world.slack.calls_to("chat.update") == []


def test_a_message_that_cannot_be_edited_gets_the_correction_in_its_thread(world: World) -> None:
    world.xai.settle_hours = 16
    subscribe(world, at_time="00:00", tz="UTC", every="day")
    world.jobs(at("2026-10-24T00:00:30"))
    (posted,) = digest_posts(world)
    world.slack.fail("chat.update", "cant_update_message")
    world.jobs(at("2026-10-24T06:00:30"))
    original, reply = world.slack.history("CCOSTS")
    assert original["ts"] == posted["ts"] and reply["thread_ts"] == posted["ts"]
    assert "Updated 24 Oct 06:00 UTC: was $" in text_of(reply)


def test_a_digest_that_cannot_sync_first_posts_anyway_and_says_why(world: World) -> None:
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.xai.add_fault("usage", status=401, message="key revoked", times=0)
    world.jobs(at("2026-10-24T09:00:30"))
    (posted,) = digest_posts(world)
    text = text_of(posted)
    # The daily sync of 06:00 ran first in this run, was refused, and left the team in error.
    assert (
        "As of 20 Oct 07:00 UTC, provisional: not synced before this was posted "
        "(“Production — xAI” is in error (invalid_key) until someone fixes it); "
        "its figures are those of the last sync." in text
    )


def test_a_sync_that_takes_too_long_does_not_hold_the_digest(world: World) -> None:
    world.env["XAI_USAGE_FRESH_BUDGET"] = "1"
    world.env["XAI_USAGE_DAILY_SYNC_AT"] = "12:00"  # not due: it would wait on the hang too
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.xai.add_fault("usage", kind="hang", times=0)
    world.jobs(at("2026-10-24T09:00:30"))
    (posted,) = digest_posts(world)
    assert "(“Production — xAI” gave no answer within 1 s)" in text_of(posted)


def test_fresh_data_is_not_fetched_again_before_a_digest(world: World) -> None:
    world.env["XAI_USAGE_FRESH_WITHIN"] = "240"  # four hours
    subscribe(world, at_time="09:00", tz="UTC", every="day")
    world.jobs(at("2026-10-24T06:00:30"))  # the daily sync, after Friday ended
    synced = usage_requests(world)
    world.jobs(at("2026-10-24T09:00:30"))
    assert len(digest_posts(world)) == 1
    assert usage_requests(world) == synced  # read three hours ago: fresh enough
    world.env["XAI_USAGE_FRESH_WITHIN"] = "60"
    world.jobs(at("2026-10-25T05:00:00"))  # nothing due
    subscribe(world, "CALERTS", at_time="05:30", tz="UTC", every="day")
    world.jobs(at("2026-10-25T05:30:30"))  # read 23 hours ago: synced first
    assert len(world.slack.history("CALERTS")) == 1 and usage_requests(world) > synced
