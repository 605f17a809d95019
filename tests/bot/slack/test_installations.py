"""Slack installations and OAuth states in our database, tokens sealed (both backends)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from slack_sdk.oauth.installation_store import Bot, Installation
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from bot.slack.installations import DatabaseOAuthStateStore, EncryptedInstallationStore
from storage.crypto import DecryptionError
from storage.db import Database
from storage.models import SlackInstallation, SlackOAuthState

CLIENT_ID = "1111111111.2222222222"
BOT_TOKEN = "xoxb-111-222-abcdefghij"
BOT_REFRESH = "xoxe-1-refresh-abc"
USER_TOKEN = "xoxp-111-333-klmnopqrst"
USER_REFRESH = "xoxe-1-refresh-user-def"
WEBHOOK = "https://hooks.slack.com/services/T0111/B0222/webhooksecretpath"
SECRETS = (BOT_TOKEN, BOT_REFRESH, USER_TOKEN, USER_REFRESH, WEBHOOK)

T = TypeVar("T")

INSTALLED = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC).timestamp()
BOT_EXPIRES = int(datetime(2026, 11, 1, 21, 0, tzinfo=UTC).timestamp())
USER_EXPIRES = int(datetime(2026, 11, 1, 22, 0, tzinfo=UTC).timestamp())


def installation(**changes: object) -> Installation:
    values: dict = dict(
        app_id="A0APP",
        team_id="T0111",
        team_name="Acme",
        bot_token=BOT_TOKEN,
        bot_id="B0BOT",
        bot_user_id="U0BOT",
        bot_scopes="commands,chat:write",
        bot_refresh_token=BOT_REFRESH,
        bot_token_expires_at=BOT_EXPIRES,
        user_id="U0ALICE",
        user_token=USER_TOKEN,
        user_scopes="identity.basic",
        user_refresh_token=USER_REFRESH,
        user_token_expires_at=USER_EXPIRES,
        incoming_webhook_url=WEBHOOK,
        incoming_webhook_channel="#spend",
        incoming_webhook_channel_id="C0SPEND",
        token_type="bot",
        installed_at=INSTALLED,
        custom_values={"plan": "pro"},
    )
    values.update(changes)
    return Installation(**values)


def bot_only(user_id: str, bot_token: str, installed_at: float, **changes: object) -> Installation:
    return installation(
        user_id=user_id,
        bot_token=bot_token,
        installed_at=installed_at,
        user_token=None,
        user_refresh_token=None,
        user_token_expires_at=None,
        user_scopes="",
        **changes,
    )


@pytest.fixture
def store(db: Database) -> EncryptedInstallationStore:
    return EncryptedInstallationStore(db, CLIENT_ID)


def all_at_once(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(0..count-1)`` in threads released together; results or errors, in order."""
    start = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = work(n)
        except BaseException as error:
            results[n] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def row_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(SlackInstallation))


def stored_bytes(db: Database) -> bytes:
    """Everything the database holds for installations, as the disk or a dump shows it."""
    if db.backend == "sqlite":
        db.dispose()  # let SQLite checkpoint; the WAL file is read as well anyway
        path = Path(make_url(db.url).database)
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT t::text FROM slack_installations t")).scalars()
        return "\n".join(rows).encode()


# Installations


def test_an_installation_round_trips_with_every_token_refresh_token_and_expiry(
    store: EncryptedInstallationStore,
) -> None:
    saved = installation()
    store.save(saved)

    found = store.find_installation(enterprise_id=None, team_id="T0111", user_id="U0ALICE")

    assert found is not None
    assert found.to_dict_for_copying() == saved.to_dict_for_copying()
    assert (found.bot_token, found.bot_refresh_token) == (BOT_TOKEN, BOT_REFRESH)
    assert (found.user_token, found.user_refresh_token) == (USER_TOKEN, USER_REFRESH)
    assert found.bot_token_expires_at == BOT_EXPIRES
    assert found.user_token_expires_at == USER_EXPIRES
    assert found.installed_at == INSTALLED
    assert found.bot_scopes == ["commands", "chat:write"]
    assert found.custom_values == {"plan": "pro"}


def test_an_installation_without_scopes_or_expiry_round_trips(
    store: EncryptedInstallationStore,
) -> None:
    saved = bot_only("U0ALICE", BOT_TOKEN, INSTALLED, bot_scopes="", bot_token_expires_at=None)
    store.save(saved)

    found = store.find_installation(enterprise_id=None, team_id="T0111")

    assert found is not None
    assert found.bot_scopes == [] and found.user_scopes == []
    assert found.bot_token_expires_at is None and found.user_token is None
    assert found.to_dict_for_copying() == saved.to_dict_for_copying()


def test_the_plain_columns_hold_only_what_lookups_need(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation())

    with db.session() as session:
        row = session.scalars(select(SlackInstallation)).one()
    assert (row.client_id, row.team_id, row.enterprise_id, row.user_id) == (
        CLIENT_ID,
        "T0111",
        None,
        "U0ALICE",
    )
    assert row.installed_at == datetime.fromtimestamp(INSTALLED, UTC)
    assert row.bot_token_expires_at == datetime(2026, 11, 1, 21, 0, tzinfo=UTC)
    assert row.key_id == db.keyring.primary_key_id
    assert row.sealed.startswith(f"v1.{db.keyring.primary_key_id}.")


def test_saving_again_updates_the_installers_row(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation())
    with db.session() as session:
        uid = session.scalars(select(SlackInstallation.uid)).one()

    rotated_expiry = BOT_EXPIRES + 12 * 3600
    store.save(
        installation(
            bot_token="xoxb-111-222-rotatedzzz",
            bot_refresh_token="xoxe-1-refresh-new",
            bot_token_expires_at=rotated_expiry,
        )
    )

    assert row_count(db) == 1
    found = store.find_installation(enterprise_id=None, team_id="T0111", user_id="U0ALICE")
    assert found is not None
    assert (found.bot_token, found.bot_refresh_token) == (
        "xoxb-111-222-rotatedzzz",
        "xoxe-1-refresh-new",
    )
    with db.session() as session:
        row = session.scalars(select(SlackInstallation)).one()
    assert row.uid == uid
    assert row.bot_token_expires_at == datetime.fromtimestamp(rotated_expiry, UTC)


def test_concurrent_first_saves_of_one_installer_leave_one_row(
    db: Database, store: EncryptedInstallationStore
) -> None:
    results = all_at_once(
        4, lambda n: store.save(installation(bot_token=f"xoxb-111-222-thread{n}"))
    )

    assert results == [None] * 4
    assert row_count(db) == 1


def test_the_database_refuses_a_second_row_for_one_installer(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation())  # no enterprise: the NULL must still collide
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(
            SlackInstallation(
                client_id=CLIENT_ID,
                team_id="T0111",
                user_id="U0ALICE",
                installed_at=datetime.now(UTC),
                sealed="x",
                key_id="x",
            )
        )


def test_find_without_a_user_returns_the_latest_installation_of_the_workspace(
    store: EncryptedInstallationStore,
) -> None:
    store.save(installation(user_id="U0ALICE", installed_at=INSTALLED))
    store.save(bot_only("U0BOB", "xoxb-111-222-bobsbotxx", INSTALLED + 60))
    store.save(installation(team_id="T0OTHER", user_id="U0CAROL", installed_at=INSTALLED + 120))
    other_app = EncryptedInstallationStore(store.db, "9999.9999")
    other_app.save(installation(user_id="U0DAVE", installed_at=INSTALLED + 180))

    latest = store.find_installation(enterprise_id=None, team_id="T0111")

    assert latest is not None
    assert (latest.user_id, latest.bot_token) == ("U0BOB", "xoxb-111-222-bobsbotxx")
    assert store.find_installation(enterprise_id=None, team_id="T0NONE") is None


def test_a_users_installation_comes_with_the_workspaces_latest_bot_token(
    store: EncryptedInstallationStore,
) -> None:
    store.save(installation(user_id="U0ALICE", installed_at=INSTALLED))
    store.save(bot_only("U0BOB", "xoxb-111-222-newerbotx", INSTALLED + 60))

    alice = store.find_installation(enterprise_id=None, team_id="T0111", user_id="U0ALICE")

    assert alice is not None
    assert (alice.user_id, alice.user_token) == ("U0ALICE", USER_TOKEN)
    assert alice.bot_token == "xoxb-111-222-newerbotx"
    assert store.find_installation(enterprise_id=None, team_id="T0111", user_id="U0NONE") is None


def test_find_bot_builds_the_bot_of_the_latest_installation(
    store: EncryptedInstallationStore,
) -> None:
    assert store.find_bot(enterprise_id=None, team_id="T0111") is None
    store.save(installation(user_id="U0ALICE", installed_at=INSTALLED))
    store.save(bot_only("U0BOB", "xoxb-111-222-newerbotx", INSTALLED + 60))
    # A later user-only authorization carries no bot token: it is skipped.
    store.save(installation(user_id="U0CAROL", bot_token=None, installed_at=INSTALLED + 120))

    bot = store.find_bot(enterprise_id=None, team_id="T0111")

    assert bot is not None
    assert (bot.bot_token, bot.bot_id, bot.bot_refresh_token) == (
        "xoxb-111-222-newerbotx",
        "B0BOT",
        BOT_REFRESH,
    )
    assert bot.bot_token_expires_at == BOT_EXPIRES
    assert bot.installed_at == INSTALLED + 60


def test_save_bot_keeps_a_rotated_bot_token(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation())
    bot = store.find_bot(enterprise_id=None, team_id="T0111")
    assert bot is not None
    rotated = Bot(
        **{
            **bot.to_dict_for_copying(),
            "bot_token": "xoxb-111-222-rotatedbot",
            "bot_refresh_token": "xoxe-1-refresh-rotated",
            "bot_token_expires_at": BOT_EXPIRES + 43200,
        }
    )

    store.save_bot(rotated)

    assert row_count(db) == 1
    found = store.find_installation(enterprise_id=None, team_id="T0111")
    assert found is not None
    assert (found.bot_token, found.bot_refresh_token) == (
        "xoxb-111-222-rotatedbot",
        "xoxe-1-refresh-rotated",
    )
    assert found.user_token == USER_TOKEN


def test_an_org_wide_install_serves_every_workspace_of_the_org(
    store: EncryptedInstallationStore,
) -> None:
    store.save(installation(enterprise_id="E0ORG", team_id=None, is_enterprise_install=True))
    store.save(installation(enterprise_id="E0ORG", team_id="T0WS", bot_token="xoxb-111-222-wsbot"))

    org = store.find_installation(
        enterprise_id="E0ORG", team_id="T0ANYWS", is_enterprise_install=True
    )
    bot = store.find_bot(enterprise_id="E0ORG", team_id="T0ANYWS", is_enterprise_install=True)

    assert org is not None and org.is_enterprise_install
    assert org.bot_token == BOT_TOKEN
    assert bot is not None and bot.bot_token == BOT_TOKEN
    workspace = store.find_installation(enterprise_id="E0ORG", team_id="T0WS")
    assert workspace is not None and workspace.bot_token == "xoxb-111-222-wsbot"
    assert store.find_installation(enterprise_id="E0ORG", team_id="T0ANYWS") is None


def test_delete_installation_forgets_one_user_or_the_whole_workspace(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation(user_id="U0ALICE", installed_at=INSTALLED))
    store.save(installation(user_id="U0BOB", installed_at=INSTALLED + 60))
    store.save(installation(team_id="T0OTHER"))

    store.delete_installation(enterprise_id=None, team_id="T0111", user_id="U0BOB")
    assert store.find_installation(enterprise_id=None, team_id="T0111", user_id="U0BOB") is None
    remaining = store.find_installation(enterprise_id=None, team_id="T0111")
    assert remaining is not None and remaining.user_id == "U0ALICE"

    store.delete_installation(enterprise_id=None, team_id="T0111")
    assert store.find_installation(enterprise_id=None, team_id="T0111") is None
    assert row_count(db) == 1


def test_delete_all_forgets_the_workspace_and_nothing_else(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation(user_id="U0ALICE"))
    store.save(bot_only("U0BOB", BOT_TOKEN, INSTALLED + 60))
    store.save(installation(team_id="T0OTHER"))

    store.delete_all(enterprise_id=None, team_id="T0111")

    assert store.find_installation(enterprise_id=None, team_id="T0111") is None
    assert store.find_bot(enterprise_id=None, team_id="T0111") is None
    assert store.find_bot(enterprise_id=None, team_id="T0OTHER") is not None  # the other stays
    assert row_count(db) == 1


def test_delete_bot_forgets_bot_tokens_and_keeps_users_own(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation(user_id="U0ALICE"))
    store.save(bot_only("U0BOB", BOT_TOKEN, INSTALLED + 60))

    store.delete_bot(enterprise_id=None, team_id="T0111")

    assert store.find_bot(enterprise_id=None, team_id="T0111") is None
    alice = store.find_installation(enterprise_id=None, team_id="T0111", user_id="U0ALICE")
    assert alice is not None
    assert (alice.bot_token, alice.bot_refresh_token, alice.user_token) == (None, None, USER_TOKEN)
    assert row_count(db) == 1  # Bob's row held only the bot token


def test_no_token_reaches_the_database_in_plain_text(
    db: Database, store: EncryptedInstallationStore
) -> None:
    store.save(installation())
    store.save(installation(user_id="U0BOB", installed_at=INSTALLED + 60))

    stored = stored_bytes(db)

    assert b"T0111" in stored  # the plain columns are there to be seen
    for secret in SECRETS:
        assert secret.encode() not in stored, secret[:5]


def test_a_ciphertext_copied_to_another_row_does_not_open(
    db: Database, store: EncryptedInstallationStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.save(installation(team_id="T0VICTIM"))
    store.save(installation(team_id="T0ATTACKER", bot_token="xoxb-111-222-attackerbt"))
    with db.transaction() as session:
        victim = session.scalars(
            select(SlackInstallation).where(SlackInstallation.team_id == "T0VICTIM")
        ).one()
        session.execute(
            update(SlackInstallation)
            .where(SlackInstallation.team_id == "T0ATTACKER")
            .values(sealed=victim.sealed)
        )

    with caplog.at_level(logging.ERROR), pytest.raises(DecryptionError):
        store.find_installation(enterprise_id=None, team_id="T0ATTACKER")

    assert "T0ATTACKER" in caplog.text
    assert all(secret not in caplog.text for secret in SECRETS)
    victim_found = store.find_installation(enterprise_id=None, team_id="T0VICTIM")
    assert victim_found is not None and victim_found.bot_token == BOT_TOKEN


# OAuth states


@pytest.fixture
def states(db: Database, clock) -> DatabaseOAuthStateStore:
    return DatabaseOAuthStateStore(db, expiration_seconds=600, clock=clock)


def test_a_state_is_consumed_once(states: DatabaseOAuthStateStore) -> None:
    state = states.issue()

    assert len(state) == 32 and state.replace("-", "").replace("_", "").isalnum()
    assert states.consume(state) is True
    assert states.consume(state) is False


def test_an_expired_or_unknown_state_is_refused(states: DatabaseOAuthStateStore, clock) -> None:
    state = states.issue()
    clock.now += timedelta(seconds=600)

    assert states.consume(state) is False
    assert states.consume("never-issued") is False
    assert states.consume("") is False


def test_issuing_sweeps_expired_states(
    db: Database, states: DatabaseOAuthStateStore, clock
) -> None:
    states.issue()
    clock.now += timedelta(seconds=601)

    fresh = states.issue()

    with db.session() as session:
        assert list(session.scalars(select(SlackOAuthState.state))) == [fresh]


def test_of_concurrent_consumes_of_one_state_only_one_wins(
    states: DatabaseOAuthStateStore,
) -> None:
    for _ in range(5):
        state = states.issue()

        results = all_at_once(8, lambda _n, state=state: states.consume(state))

        assert sorted(results, key=repr) == [False] * 7 + [True]
