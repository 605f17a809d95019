"""What each provider says of itself, as surfaces read it back from the store."""

from __future__ import annotations

from datetime import UTC, datetime

from bot import profiles
from providers import types
from storage.reader import SessionReader
from tests.fakes.connections import add_connection


def test_the_defaults_are_the_contracts() -> None:
    assert profiles.DEFAULT_REACH_DAYS == types.DEFAULT_MAX_BACKFILL_DAYS
    assert profiles.DEFAULT_SETTLE_HOURS == types.DEFAULT_SETTLE_HOURS


def test_a_scope_is_named_by_its_one_provider_or_ai_for_several_or_unknown(db, workspace_id):
    with db.transaction() as session:
        add_connection(session, workspace_id, "Grok")  # a built-in: its profile recorded
        reader = SessionReader(session)
        assert profiles.in_scope(reader, workspace_id).scope_name == "xAI"
        add_connection(session, workspace_id, "Other", provider="other")  # never synced
        words = profiles.in_scope(reader, workspace_id)
        assert words.scope_name == "AI"
        assert words.get("other").own_name == "" and words.get("other").display_name == "other"
        profiles.record(
            session,
            [profiles.Profile("other", "Other AI", 30, 2, ("It leaves out refunds.",))],
            datetime.now(UTC),
        )
        words = profiles.in_scope(SessionReader(session), workspace_id)
        assert words.name_for(["other"]) == "Other AI" and words.scope_name == "AI"
        assert words.caveats == ("It leaves out refunds.",)
        assert words.who(["xai", "other"]) == "Other AI and xAI"
        assert words.get("other").max_backfill_days == 30
