"""Connecting OpenAI and Anthropic organizations through the engine, on both stores:
which account a key reads is the provider's to say, and every refusal is the
provider's code, on the field the provider names, with nothing saved.

The engine is the one connect flow every surface calls (terminal, slash command,
form); the surfaces' own tests show each one reaching it.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from bot.sync import ConnectError, SyncEngine
from providers.anthropic.provider import AnthropicProvider
from providers.anthropic.sandbox import DEMO_KEY as ANTHROPIC_KEY
from providers.anthropic.sandbox import DEMO_ORG as ANTHROPIC_ORG
from providers.anthropic.sandbox import AnthropicStandIn
from providers.http import RetryPolicy
from providers.manager import ProviderRegistry
from providers.openai.provider import OpenAIProvider
from providers.openai.sandbox import DEMO_KEY as OPENAI_KEY
from providers.openai.sandbox import DEMO_ORG as OPENAI_ORG
from providers.openai.sandbox import OpenAIStandIn
from storage.models import Connection, ConnectionStatus
from tests.conftest import FAST_RETRIES

SECOND_ANTHROPIC_ORG = "0b7f3c2e-1111-4a2b-9c3d-4e5f6a7b8c9d"
SETUPS = {
    # provider: (stand-in, provider class, demo org, demo key, a second org, keys of another
    # kind (as the stand-in calls it, and a key with that kind's own prefix))
    "openai": (
        OpenAIStandIn,
        OpenAIProvider,
        OPENAI_ORG,
        OPENAI_KEY,
        "org-second",
        "sk-admin-second0openai0organization0key0",
        ("project", "sk-proj-AbCdEf0123456789AbCdEf0123456789"),
    ),
    "anthropic": (
        AnthropicStandIn,
        AnthropicProvider,
        ANTHROPIC_ORG,
        ANTHROPIC_KEY,
        SECOND_ANTHROPIC_ORG,
        "sk-ant-admin01-second0anthropic0organization0key0",
        ("api", "sk-ant-api03-AbCdEf0123456789AbCdEf0123456789"),
    ),
}


@pytest.fixture(params=sorted(SETUPS))
def setup(request, db, clock):
    """(engine, stand-in, provider name) for one provider, with the test's clock."""
    stand_in_class, provider_class, *_ = SETUPS[request.param]
    with stand_in_class(clock=clock) as stand_in:
        provider = provider_class(base_url=stand_in.url, retry=RetryPolicy(**FAST_RETRIES))
        engine = SyncEngine(db, ProviderRegistry([provider]), concurrency=8, clock=clock)
        yield engine, stand_in, request.param


def connect(engine: SyncEngine, workspace_id: int, name: str, key: str, **how):
    return asyncio.run(
        engine.connect(workspace_id, name, {"admin_key": key}, backfill_days=3, **how)
    )


def connections(engine: SyncEngine) -> list[Connection]:
    with engine.db.session() as session:
        return list(session.scalars(select(Connection).order_by(Connection.id)))


def test_two_organizations_connect_side_by_side_and_the_same_one_twice_is_refused(
    setup, workspace_id
) -> None:
    engine, stand_in, name = setup
    _, _, org, key, second_org, second_key, _ = SETUPS[name]
    stand_in.add_organization(second_org)
    stand_in.add_key(second_key, second_org)

    first = connect(engine, workspace_id, name, key, label="First")
    second = connect(engine, workspace_id, name, second_key, label="Second")

    assert first.backfill.ok and second.backfill.ok
    stored = connections(engine)
    assert [c.label for c in stored] == ["First", "Second"]
    accounts = [c.account_ref for c in stored]
    assert all(accounts) and accounts[0] != accounts[1]  # each organization by its own id
    if name == "openai":  # its oldest project: no answer carries the organization's id
        assert accounts == [stand_in.identity(org), stand_in.identity(second_org)]
    else:  # the organization's id and name, as /v1/organizations/me says them
        assert accounts == [org, second_org]
        assert stored[0].account_name == "Demo Org"

    # Another admin key of the first organization: the same account, refused.
    other_key = key[:-4] + "0000"
    stand_in.add_key(other_key, org)
    requests = len(stand_in.requests)
    with pytest.raises(ConnectError) as refused:
        connect(engine, workspace_id, name, other_key, label="Again")
    assert refused.value.reason == "already_connected"
    assert refused.value.field == "admin_key"  # the key is what names the account here
    assert refused.value.existing == "First"
    assert "xai-usage update-key First" in refused.value.message
    assert len(stand_in.requests) > requests  # only the key's check could tell
    assert [c.label for c in connections(engine)] == ["First", "Second"]


def test_a_key_whose_organization_the_provider_cannot_name_connects_without_an_identity(
    db, clock, workspace_id
) -> None:
    """OpenAI: a restricted admin key that may read costs but not projects. Such
    connections cannot be told apart, so neither is refused as the other."""
    with OpenAIStandIn(clock=clock) as stand_in:
        provider = OpenAIProvider(base_url=stand_in.url, retry=RetryPolicy(**FAST_RETRIES))
        engine = SyncEngine(db, ProviderRegistry([provider]), concurrency=8, clock=clock)
        stand_in.add_key(OPENAI_KEY, OPENAI_ORG, can_read_org=False)
        first = connect(engine, workspace_id, "openai", OPENAI_KEY, label="A")
        second = connect(engine, workspace_id, "openai", OPENAI_KEY, label="B")
    assert first.account == "" and any(
        "cannot tell which organization" in n for n in first.check.notes
    )
    assert second.backfill.ok
    assert [(c.account_ref, c.account_key) for c in connections(engine)] == [("", None), ("", None)]


@pytest.mark.parametrize(
    "case", ["prefix of another kind", "key of another kind", "revoked", "missing scope", "short"]
)
def test_every_refusal_is_the_providers_code_on_the_key_field_and_saves_nothing(
    setup, workspace_id, case
) -> None:
    engine, stand_in, name = setup
    _, _, org, key, _, _, (kind, other_kind_key) = SETUPS[name]
    expected = {
        # Told by the field's own check, in the provider's words, before any request.
        "prefix of another kind": "invalid_input",
        "key of another kind": "not_admin_key",
        "revoked": "invalid_key",
        "missing scope": "missing_scope",
        "short": "invalid_input",
    }[case]
    if case == "prefix of another kind":
        key = other_kind_key
    elif case == "key of another kind":  # an admin key's prefix, but not one to the service
        stand_in.add_key(key, org, kind=kind)
    elif case == "revoked":
        stand_in.revoke_key(key)
    elif case == "missing scope":
        stand_in.add_key(key, org, can_read_costs=False)
    else:
        key = key[:12]
    requests = len(stand_in.requests)

    with pytest.raises(ConnectError) as refused:
        connect(engine, workspace_id, name, key)

    assert (refused.value.reason, refused.value.field) == (expected, "admin_key")
    assert key not in refused.value.message
    if case == "prefix of another kind":  # what to paste instead, in the provider's words
        assert "Admin key" in refused.value.message or "admin key" in refused.value.message
    if case in ("prefix of another kind", "short"):
        assert len(stand_in.requests) == requests  # refused before the key left the host
    assert connections(engine) == []


@pytest.mark.parametrize("trouble", ["no longer an admin key", "another currency"])
def test_a_providers_own_code_that_needs_a_person_turns_the_connection_to_error(
    setup, workspace_id, trouble
) -> None:
    """``not_admin_key`` and ``currency_not_usd`` are no ``Reason`` of the host's: what the
    provider says (``needs_person``) decides, not a list of the host's codes."""
    engine, stand_in, name = setup
    _, _, org, key, _, _, (kind, _) = SETUPS[name]
    connected = connect(engine, workspace_id, name, key)
    if trouble == "no longer an admin key":
        stand_in.add_key(key, org, kind=kind)
        code = "not_admin_key"
    else:
        stand_in.add_organization(org, currency="eur" if name == "openai" else "EUR")
        stand_in.add_key(key, org)
        code = "currency_not_usd"

    (result,) = asyncio.run(engine.sync_all(workspace_id, trigger="daily"))

    assert not result.ok and result.needs_person and result.reason == code
    (row,) = connections(engine)
    assert (row.status, row.status_reason) == (ConnectionStatus.ERROR, code)
    assert row.error_since is not None  # an incident: one alert, kept while it lasts
    # The daily sync leaves it alone until someone gives it a new key.
    (skipped,) = asyncio.run(engine.sync_all(workspace_id, trigger="daily"))
    assert skipped.skipped and connected.connection_id == row.id


def test_a_new_key_of_another_organization_is_refused_by_identity(setup, workspace_id) -> None:
    engine, stand_in, name = setup
    _, _, org, key, second_org, second_key, _ = SETUPS[name]
    stand_in.add_organization(second_org)
    stand_in.add_key(second_key, second_org)
    connected = connect(engine, workspace_id, name, key)

    with pytest.raises(ConnectError) as refused:
        asyncio.run(engine.update_key(connected.connection_id, {"admin_key": second_key}))

    assert (refused.value.reason, refused.value.field) == ("account_mismatch", "admin_key")
    assert "would be stored as that connection's" in refused.value.message
    # A new key of the same organization is taken.
    same = key[:-4] + "1111"
    stand_in.add_key(same, org)
    updated = asyncio.run(engine.update_key(connected.connection_id, {"admin_key": same}))
    assert updated.sync.ok and updated.mask.endswith("1111")


def test_a_backfill_reaches_only_as_far_as_the_provider_keeps_costs(setup, workspace_id) -> None:
    engine, _, name = setup
    _, _, _, key, *_ = SETUPS[name]
    provider = engine.providers.get(name)
    provider.max_backfill_days = 20  # as a provider with a shorter memory would declare

    with pytest.raises(ConnectError) as refused:
        asyncio.run(engine.connect(workspace_id, name, {"admin_key": key}, backfill_days=21))
    assert refused.value.field == "backfill_days"
    assert "from 1 to 20" in refused.value.message

    connected = asyncio.run(engine.connect(workspace_id, name, {"admin_key": key}))
    assert connected.backfill.days == 20  # its reach, by default
    (synced,) = asyncio.run(engine.sync_all(workspace_id, trigger="force", days=90))
    assert synced.days == 20  # `sync --days 90` asks no further back than it keeps


def test_the_engine_records_what_each_provider_says_of_itself(setup, workspace_id) -> None:
    from bot.profiles import in_scope
    from storage.reader import SessionReader

    engine, _, name = setup
    _, _, _, key, *_ = SETUPS[name]
    connect(engine, workspace_id, name, key)
    provider = engine.providers.get(name)
    with engine.db.session() as session:
        words = in_scope(SessionReader(session), workspace_id)
    profile = words.get(name)
    assert (
        profile.display_name == provider.display_name and words.scope_name == profile.display_name
    )
    assert profile.caveats == tuple(provider.caveats) and profile.caveats
    assert profile.settle_hours == provider.settle_hours
    assert profile.key_page and profile.key_page == provider.key_page

    with engine.db.session() as session:
        assert session.scalar(select(func.count(Connection.id))) == 1
