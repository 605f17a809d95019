"""The sync engine against the xAI stand-in over real sockets, on both stores."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot.sync import ConnectError, SyncEngine, day_windows
from providers.xai.provider import model_id
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS
from storage.models import BillingState, Connection, DailyCost, ModelSeen, SyncRun
from tests.conftest import impatient, patient

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}


def connect(engine: SyncEngine, workspace_id: int, days: int = 90, **credentials: str):
    return asyncio.run(
        engine.connect(workspace_id, "xai", {**DEMO, **credentials}, backfill_days=days)
    )


def stored(engine: SyncEngine) -> dict[tuple[date, str, str], Decimal]:
    with engine.db.session() as session:
        return {(r.day, r.model, r.api_key_id): r.cost for r in session.scalars(select(DailyCost))}


def expected(sandbox, start: date, end: date, by_key: bool = True) -> dict:
    """What the stand-in served, day by day, from its own oracle."""
    rows = {}
    day = start
    while day <= end:
        for label in MODELS:
            keys = sandbox.api_keys(DEMO_TEAM_ID) if by_key else [(None, "")]
            for key_id, _ in keys:
                cost = sandbox.cost(DEMO_TEAM_ID, label, day, key_id)
                if cost:
                    rows[(day, model_id(label), key_id or "")] = cost
        day += timedelta(days=1)
    return rows


def usage_requests(sandbox) -> list:
    """The cost requests (the split by unit type, one more a sync, is not one of them)."""
    return [
        r
        for r in sandbox.requests
        if r.path.endswith("/usage") and "unit_type" not in r.body["analyticsRequest"]["groupBy"]
    ]


def test_windows_never_exceed_the_limit_and_cover_the_range() -> None:
    windows = day_windows(date(2026, 8, 25), date(2026, 11, 23), 31)
    assert [(e - s).days for s, e in windows] == [31, 31, 28]
    assert windows[0][0] == date(2026, 8, 25) and windows[-1][1] == date(2026, 11, 23)


def test_connect_tests_saves_and_backfills_90_days_exactly(engine, sandbox, workspace_id, clock):
    connected = connect(engine, workspace_id)
    today = clock.now.date()
    assert connected.backfill.ok
    assert (connected.backfill.start, connected.backfill.end) == (today - timedelta(89), today)
    assert connected.mask == "xai-…beef"
    served = expected(sandbox, today - timedelta(89), today)
    assert len(served) > 500  # six models, two keys, most days: not a vacuous match
    assert stored(engine) == served
    windows = [r.body["analyticsRequest"]["timeRange"] for r in usage_requests(sandbox)][1:]
    assert len(windows) == 3  # 90 days in windows of at most 31, fetched at once
    with engine.db.session() as session:
        models = set(session.scalars(select(ModelSeen.model)))
        connection = session.scalar(select(Connection))
    assert models == {model_id(label) for label in MODELS}
    assert connection.status == "ok" and connection.key_breakdown is True
    assert connected.backfill.total_usd == sum(stored(engine).values())


def test_a_rejected_key_saves_nothing(engine, sandbox, workspace_id):
    with pytest.raises(ConnectError) as caught:
        connect(engine, workspace_id, management_key="xai-not-a-real-management-key-0000")
    assert caught.value.reason == "invalid_key"
    assert "Management" in caught.value.message
    with engine.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


def test_a_malformed_team_id_is_caught_before_any_request(engine, sandbox, workspace_id):
    with pytest.raises(ConnectError) as caught:
        connect(engine, workspace_id, team_id="65c1e471-205f-4566")
    assert caught.value.field == "team_id"
    assert sandbox.requests == []


def test_a_key_of_another_team_names_the_team_field(engine, sandbox, workspace_id):
    sandbox.add_key("xai-mgmt-other-team-key-000000000000", "11111111-2222-3333-4444-555555555555")
    with pytest.raises(ConnectError) as caught:
        connect(engine, workspace_id, management_key="xai-mgmt-other-team-key-000000000000")
    assert caught.value.reason == "team_mismatch" and caught.value.field == "team_id"


def test_daily_sync_replaces_the_trailing_window_without_duplicates(
    engine, sandbox, workspace_id, clock
):
    connect(engine, workspace_id, days=10)
    first = stored(engine)
    clock.now += timedelta(hours=20)  # the next day, 03:30: yesterday settles, today begins
    results = asyncio.run(engine.sync_all(workspace_id))
    assert [r.ok for r in results] == [True]
    today = clock.now.date()
    assert (results[0].start, results[0].end) == (today - timedelta(2), today)
    after = stored(engine)
    assert after == {**first, **expected(sandbox, today - timedelta(2), today)}
    with engine.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DailyCost)) == len(after)


def test_a_failed_sync_keeps_the_last_good_data_and_commits_nothing_partial(
    engine, providers, sandbox, workspace_id
):
    connect(engine, workspace_id, days=40)
    before = stored(engine)
    # The first window answers, the second keeps failing: nothing of the first is stored.
    impatient(providers)  # it stays down: no need to keep asking for 3 s
    sandbox.add_fault("usage", status=503, times=0)
    result = asyncio.run(engine.sync_all(workspace_id, days=40, force=True))[0]
    assert not result.ok and result.reason == "server_error"
    assert stored(engine) == before
    with engine.db.session() as session:
        connection = session.scalar(select(Connection))
        runs = list(session.scalars(select(SyncRun.outcome).order_by(SyncRun.id)))
    assert connection.status == "failing" and runs == ["ok", "error"]
    sandbox.clear_faults()
    patient(providers)
    assert asyncio.run(engine.sync_all(workspace_id))[0].ok


def test_a_revoked_key_stops_daily_retries_until_a_forced_sync_succeeds(
    engine, sandbox, workspace_id
):
    connect(engine, workspace_id, days=5)
    sandbox.revoke_key(DEMO_KEY)
    failed = asyncio.run(engine.sync_all(workspace_id))[0]
    assert failed.reason == "invalid_key" and "revoked" in failed.message
    calls = len(sandbox.requests)
    skipped = asyncio.run(engine.sync_all(workspace_id))[0]
    assert skipped.skipped and len(sandbox.requests) == calls  # no request was made
    sandbox.add_key(DEMO_KEY, DEMO_TEAM_ID)  # the key works again
    assert asyncio.run(engine.sync_all(workspace_id, force=True))[0].ok


def test_a_cut_off_answer_is_split_until_complete(db, clock, workspace_id):
    from providers.http import RetryPolicy
    from providers.manager import ProviderRegistry
    from providers.xai.provider import XaiProvider
    from providers.xai.sandbox import Sandbox

    with Sandbox(clock=clock, max_range_days=10) as sandbox:
        provider = XaiProvider(base_url=sandbox.url, retry=RetryPolicy(base_delay=0.01))
        engine = SyncEngine(db, ProviderRegistry([provider]), clock=clock)
        connect(engine, workspace_id, days=30)
        today = clock.now.date()
        assert stored(engine) == expected(sandbox, today - timedelta(29), today)
        spans = sorted(
            {r.body["analyticsRequest"]["timeRange"]["startTime"] for r in usage_requests(sandbox)}
        )
    assert len(spans) > 3  # 30 days were asked for in pieces of at most 10


def test_without_the_key_breakdown_the_connection_carries_on_by_model(db, clock, workspace_id):
    from providers.http import RetryPolicy
    from providers.manager import ProviderRegistry
    from providers.xai.provider import XaiProvider
    from providers.xai.sandbox import Sandbox

    with Sandbox(clock=clock, key_breakdown=False) as sandbox:
        provider = XaiProvider(base_url=sandbox.url, retry=RetryPolicy(base_delay=0.01))
        engine = SyncEngine(db, ProviderRegistry([provider]), clock=clock)
        connected = connect(engine, workspace_id, days=35)
        today = clock.now.date()
        assert connected.backfill.ok and not connected.backfill.by_key
        assert stored(engine) == expected(sandbox, today - timedelta(34), today, by_key=False)
        before = len(usage_requests(sandbox))
        asyncio.run(engine.sync_all(workspace_id))
        bodies = [r.body for r in usage_requests(sandbox)[before:]]
    # Asked again every sync (a refusal may pass), then per model.
    assert [b["analyticsRequest"]["groupBy"] for b in bodies] == [
        ["description", "api_key_id"],
        ["description"],
    ]


def test_one_refused_key_breakdown_is_tried_again_on_the_next_sync(
    engine, sandbox, workspace_id, clock
):
    connect(engine, workspace_id, days=5)
    # The costs per key, not the split by unit type asked beside them.
    sandbox.add_fault(
        "usage",
        group_by=["description", "api_key_id"],
        status=400,
        message='groupBy: unsupported field "api_key_id"',
    )

    refused = asyncio.run(engine.sync_all(workspace_id))[0]
    with engine.db.session() as session:
        after_refusal = session.scalar(select(Connection.key_breakdown))
    again = asyncio.run(engine.sync_all(workspace_id))[0]

    assert refused.ok and not refused.by_key and after_refusal is False
    assert again.ok and again.by_key
    with engine.db.session() as session:
        assert session.scalar(select(Connection.key_breakdown)) is True
    today = clock.now.date()
    assert stored(engine) == expected(sandbox, today - timedelta(4), today)


def test_a_team_with_many_keys_still_syncs_per_model(db, clock, workspace_id):
    """Per-key series of a day outnumber the groups xAI answers; per model they do not."""
    from providers.http import RetryPolicy
    from providers.manager import ProviderRegistry
    from providers.xai.provider import XaiProvider
    from providers.xai.sandbox import Sandbox

    with Sandbox(clock=clock, api_key_count=8, max_groups=20, max_range_days=10) as sandbox:
        provider = XaiProvider(base_url=sandbox.url, retry=RetryPolicy(base_delay=0.01))
        engine = SyncEngine(db, ProviderRegistry([provider]), clock=clock)
        connected = connect(engine, workspace_id, days=90)
        today = clock.now.date()
        per_model = expected(sandbox, today - timedelta(89), today, by_key=False)
        assert connected.backfill.ok and not connected.backfill.by_key
        assert len(per_model) > 400  # six models on most of 90 days: not a vacuous match
        assert stored(engine) == per_model
        spans = {
            (
                r.body["analyticsRequest"]["timeRange"]["startTime"],
                len(r.body["analyticsRequest"]["groupBy"]),
            )
            for r in usage_requests(sandbox)
        }
    # Keys dropped first, then the dates split (the stand-in serves at most 10 days).
    assert len({start for start, groups in spans if groups == 1}) > 9


def test_rate_limits_are_waited_out(engine, sandbox, workspace_id):
    sandbox.add_fault("usage", status=429, retry_after=0.2, times=2)
    assert connect(engine, workspace_id, days=3).backfill.ok


def test_after_downtime_the_daily_sync_fills_the_gap(engine, sandbox, workspace_id, clock):
    connect(engine, workspace_id, days=5)
    clock.now += timedelta(days=12)
    result = asyncio.run(engine.sync_all(workspace_id))[0]
    assert result.days == 13 and result.ok
    today = clock.now.date()
    assert stored(engine).keys() >= expected(sandbox, today - timedelta(12), today).keys()


def test_disconnect_deletes_the_key_and_every_row(engine, sandbox, workspace_id):
    connected = connect(engine, workspace_id, days=3)
    engine.disconnect(connected.connection_id)
    with engine.db.session() as session:
        for table in (Connection, DailyCost, SyncRun, ModelSeen):
            assert session.scalar(select(func.count()).select_from(table)) == 0


def test_a_write_that_fails_costs_only_its_own_connection(
    engine, sandbox, workspace_id, monkeypatch
):
    sandbox.add_key("xai-mgmt-second-team-key-0000000000", "22222222-3333-4444-5555-666666666666")
    first = connect(engine, workspace_id, days=5)
    second = asyncio.run(
        engine.connect(
            workspace_id,
            "xai",
            {
                "team_id": "22222222-3333-4444-5555-666666666666",
                "management_key": "xai-mgmt-second-team-key-0000000000",
            },
            label="Second",
            backfill_days=5,
        )
    )
    before = stored(engine)
    import bot.sync

    replace_costs = bot.sync._replace_costs

    def broken_for_the_first(session, synced, *args):
        if any(attempt.connection.id == first.connection_id for attempt in synced):
            raise RuntimeError("disk full")
        return replace_costs(session, synced, *args)

    monkeypatch.setattr(bot.sync, "_replace_costs", broken_for_the_first)
    results = {r.label: r for r in asyncio.run(engine.sync_all(workspace_id, days=5))}
    assert results[first.label].reason == "store_failed"
    assert "could not store" in results[first.label].message
    assert results[second.label].ok
    with engine.db.session() as session:
        runs = dict(
            session.execute(
                select(SyncRun.connection_id, SyncRun.outcome).order_by(SyncRun.id)
            ).all()
        )
    assert runs == {first.connection_id: "error", second.connection_id: "ok"}
    assert stored(engine) == before  # nothing of the failed window was half-written


def rollup_matches_rows(db) -> dict:
    from storage.models import WorkspaceDailyTotal

    with db.session() as session:
        raw = {
            (w, d, m): c
            for w, d, m, c in session.execute(
                select(
                    DailyCost.workspace_id, DailyCost.day, DailyCost.model, func.sum(DailyCost.cost)
                ).group_by(DailyCost.workspace_id, DailyCost.day, DailyCost.model)
            )
        }
        rollup = {
            (t.workspace_id, t.day, t.model): t.cost
            for t in session.scalars(select(WorkspaceDailyTotal))
            if t.cost  # a total that went back to zero may stay as a zero row
        }
    assert rollup == raw
    return raw


def test_the_report_rollup_stays_equal_to_the_rows(engine, sandbox, workspace_id, clock):
    sandbox.add_key("xai-mgmt-second-team-key-0000000000", "22222222-3333-4444-5555-666666666666")
    first = connect(engine, workspace_id, days=40)
    asyncio.run(
        engine.connect(
            workspace_id,
            "xai",
            {
                "team_id": "22222222-3333-4444-5555-666666666666",
                "management_key": "xai-mgmt-second-team-key-0000000000",
            },
            label="Second",
            backfill_days=10,
        )
    )
    assert len(rollup_matches_rows(engine.db)) > 100
    clock.now += timedelta(hours=9)  # today grows: its figures change on the next sync
    asyncio.run(engine.sync_all(workspace_id))
    rollup_matches_rows(engine.db)
    engine.disconnect(first.connection_id)
    assert rollup_matches_rows(engine.db)  # only the second connection's days remain


def test_syncs_of_one_workspace_running_at_once_neither_deadlock_nor_fail(
    db, providers, clock, workspace_id, sandbox
):
    import threading

    teams = [f"{n:08d}-2222-3333-4444-555555555555" for n in range(6)]
    setup = SyncEngine(db, providers, clock=clock)
    for n, team in enumerate(teams):
        key = f"xai-mgmt-concurrent-{n}-000000000000000"
        sandbox.add_key(key, team)
        asyncio.run(
            setup.connect(
                workspace_id,
                "xai",
                {"team_id": team, "management_key": key},
                label=f"Team {n}",
                backfill_days=10,
            )
        )
    results, barrier = [], threading.Barrier(4)

    def run() -> None:
        engine = SyncEngine(db, providers, clock=clock, concurrency=4)
        barrier.wait()
        results.extend(asyncio.run(engine.sync_all(workspace_id, force=True, days=10)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 24
    assert [r.reason for r in results if not r.ok] == []
    rollup_matches_rows(db)


# -- one team, one connection -----------------------------------------------------


def workspace_total(engine: SyncEngine) -> Decimal:
    from storage.models import WorkspaceDailyTotal

    with engine.db.session() as session:
        return session.scalar(select(func.sum(WorkspaceDailyTotal.cost)))


def test_connecting_a_connected_team_again_is_refused_and_counts_nothing_twice(
    engine, sandbox, workspace_id
):
    connect(engine, workspace_id, days=30)
    total, requests = workspace_total(engine), len(sandbox.requests)
    for team_id in (DEMO_TEAM_ID, DEMO_TEAM_ID.upper(), f"  {DEMO_TEAM_ID} "):
        with pytest.raises(ConnectError) as refused:
            connect(engine, workspace_id, days=30, team_id=team_id)
        assert refused.value.reason == "already_connected"
        assert refused.value.field == "team_id"
        assert refused.value.existing == "Production — xAI"
        assert "already connected here as “Production — xAI”" in refused.value.message
        assert 'xai-usage update-key "Production — xAI"' in refused.value.message
    assert len(sandbox.requests) == requests  # refused before any key was tested
    assert workspace_total(engine) == total
    with engine.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 1


def test_the_same_team_may_be_connected_in_another_workspace(engine, sandbox, workspace_id):
    from storage.models import Workspace

    connect(engine, workspace_id, days=3)
    with engine.db.transaction() as session:
        other = Workspace(slack_team_id="T0002", name="other")
        session.add(other)
        session.flush()
        other_id = other.id
    assert connect(engine, other_id, days=3).backfill.ok


def test_the_store_itself_refuses_a_second_connection_of_a_team(engine, sandbox, workspace_id):
    """Two connects racing past the first look: the unique index decides."""
    from sqlalchemy.exc import IntegrityError

    connect(engine, workspace_id, days=3)
    with pytest.raises(IntegrityError), engine.db.transaction() as session:
        session.add(
            Connection(
                workspace_id=workspace_id,
                provider="xai",
                label="Copy",
                account_ref=DEMO_TEAM_ID,
                account_key=DEMO_TEAM_ID,
                credentials_sealed="",
                credentials_key_id="k",
            )
        )


NEW_KEY = "xai-mgmt-second-key-9a8b7c6d5e4f3a2b1c0dcafe"


def revoke_and_sync(engine, sandbox, connection_id) -> None:
    sandbox.revoke_key(DEMO_KEY)
    result = asyncio.run(engine.sync_connection(connection_id))
    assert not result.ok
    with engine.db.session() as session:
        assert session.get(Connection, connection_id).status == "error"


def test_update_key_keeps_the_data_clears_the_error_and_syncs(engine, sandbox, workspace_id):
    connected = connect(engine, workspace_id, days=30)
    revoke_and_sync(engine, sandbox, connected.connection_id)
    before = stored(engine)
    sandbox.add_key(NEW_KEY, DEMO_TEAM_ID)
    updated = asyncio.run(
        engine.update_key(connected.connection_id, {"management_key": f" {NEW_KEY}\n"})
    )
    assert updated.mask == "xai-…cafe" and updated.label == "Production — xAI"
    assert updated.sync.ok and updated.sync.rows > 0
    with engine.db.session() as session:
        connection = session.get(Connection, connected.connection_id)
        assert connection.status == "ok" and connection.error_since is None
        assert connection.status_reason is None and connection.secret_mask == "xai-…cafe"
        assert engine.db.keyring.open_json(
            connection.credentials_sealed, connection.credentials_aad
        ) == {"team_id": DEMO_TEAM_ID, "management_key": NEW_KEY}
        assert session.scalar(select(func.count()).select_from(Connection)) == 1
        runs = list(session.scalars(select(SyncRun.outcome).order_by(SyncRun.id)))
    assert runs == ["ok", "error", "ok"]  # backfill, the failure, the sync after the new key
    kept = stored(engine)
    assert {k: v for k, v in kept.items() if k in before} == before  # nothing lost
    assert NEW_KEY not in str(kept)


def test_update_key_refuses_a_key_of_another_team_and_changes_nothing(
    engine, sandbox, workspace_id
):
    connected = connect(engine, workspace_id, days=3)
    revoke_and_sync(engine, sandbox, connected.connection_id)
    sandbox.add_key(NEW_KEY, "11111111-2222-3333-4444-555555555555")
    with pytest.raises(ConnectError) as refused:
        asyncio.run(engine.update_key(connected.connection_id, {"management_key": NEW_KEY}))
    assert refused.value.field == "management_key"  # the only field an update has
    # The provider's words (whose key it is), then the host's: the account cannot change.
    assert f"not {DEMO_TEAM_ID}" in refused.value.message
    assert f"reads {DEMO_TEAM_ID}, which a new key cannot change" in refused.value.message
    with pytest.raises(ConnectError) as rejected:
        asyncio.run(
            engine.update_key(connected.connection_id, {"management_key": "xai-nope-" + "0" * 30})
        )
    assert rejected.value.field == "management_key"
    with pytest.raises(ConnectError) as malformed:
        asyncio.run(engine.update_key(connected.connection_id, {"management_key": "short"}))
    assert malformed.value.field == "management_key"
    with engine.db.session() as session:
        connection = session.get(Connection, connected.connection_id)
        assert connection.status == "error" and connection.secret_mask == "xai-…beef"


def test_migration_keeps_old_duplicates_and_status_names_them(db, keyring, clock):
    """An old database with the same team twice migrates; status says which to drop."""
    from alembic import command

    from bot.reports import status_rows
    from storage.db import alembic_config

    command.downgrade(alembic_config(db.engine), "0006")
    from sqlalchemy import text

    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO workspaces (id, name, created_at) VALUES (1, 'w', :t)"),
            {"t": clock.now},
        )
        for n, (label, team) in enumerate(
            [
                ("Production — xAI", DEMO_TEAM_ID),
                ("Production — xAI (2)", DEMO_TEAM_ID.upper()),
                ("Staging", "11111111-2222-3333-4444-555555555555"),
            ]
        ):
            conn.execute(
                text(
                    "INSERT INTO connections (id, uid, workspace_id, provider, label, "
                    "account_ref, secret_mask, credentials_sealed, credentials_key_id, "
                    "credentials_changed_at, status, backfill_days, created_by, created_at) "
                    "VALUES (:id, :uid, 1, 'xai', :label, :team, 'xai-…beef', 'x', 'k', :t, "
                    "'ok', 90, '', :t)"
                ),
                {"id": n + 1, "uid": f"u{n}", "label": label, "team": team, "t": clock.now},
            )
    db.migrate()
    with db.session() as session:
        keys = dict(session.execute(select(Connection.label, Connection.account_key)).all())
        rows = {r.label: r for r in status_rows(session, 1, clock.now)}
    assert keys == {
        "Production — xAI": DEMO_TEAM_ID,
        "Production — xAI (2)": None,
        "Staging": "11111111-2222-3333-4444-555555555555",
    }
    assert rows["Production — xAI (2)"].duplicate_of == "Production — xAI"
    assert rows["Production — xAI"].duplicate_of is None
    assert rows["Staging"].duplicate_of is None


def test_a_sync_stores_the_spend_beyond_prepaid_credit_that_the_limit_caps(
    engine, sandbox, workspace_id
) -> None:
    # The stand-in's team has $200 of prepaid credit, used up well before the 22nd.
    connect(engine, workspace_id, days=30)
    with engine.db.session() as session:
        billing = session.scalars(select(BillingState)).one()
    assert billing.month_to_date_usd > Decimal(200)
    assert billing.prepaid_credit_usd == 0
    assert billing.invoiced_usd == billing.month_to_date_usd - Decimal(200)


def test_a_day_that_grows_after_it_ends_is_stored_as_served_then_as_settled(
    engine, sandbox, workspace_id, clock
) -> None:
    # xAI keeps adding to a day for hours after it ends: what a sync at 00:30 stores
    # is less than the day's final figure, which the syncs after it catch up with.
    sandbox.settle_hours = 12
    clock.now = clock.now.replace(hour=0, minute=30)
    connect(engine, workspace_id, days=7)
    yesterday = clock.now.date() - timedelta(days=1)

    def day_total() -> Decimal:
        return sum((c for (d, _, _), c in stored(engine).items() if d == yesterday), Decimal(0))

    def oracle(cost) -> Decimal:
        return sum((cost(DEMO_TEAM_ID, label, yesterday) for label in MODELS), Decimal(0))

    early, final = day_total(), oracle(sandbox.final_cost)
    assert early == oracle(sandbox.cost) < final * Decimal("0.7")  # 24.5 of 36 hours
    clock.now = sandbox.settled_at(yesterday)
    asyncio.run(engine.sync_all(workspace_id))
    assert day_total() == final


def test_young_objects_are_collected_less_often_while_syncs_run_and_as_before_after(
    engine, sandbox, workspace_id, monkeypatch
):
    import gc

    import bot.sync

    connect(engine, workspace_id, days=5)
    before = gc.get_threshold()
    fewer = (max(before[0], bot.sync.YOUNG_OBJECTS), *before[1:])
    seen: list[tuple[int, int, int]] = []
    replace_costs = bot.sync._replace_costs

    def watching(session, synced, *args):
        seen.append(gc.get_threshold())  # on the writer, while the sync runs
        return replace_costs(session, synced, *args)

    monkeypatch.setattr(bot.sync, "_replace_costs", watching)
    asyncio.run(engine.sync_all(workspace_id, days=2))
    assert seen == [fewer] and gc.get_threshold() == before

    # Syncs overlapping in one process: the first to end leaves it to the last.
    with bot.sync._FewerCollections():
        with bot.sync._FewerCollections():
            assert gc.get_threshold() == fewer
        assert gc.get_threshold() == fewer
    assert gc.get_threshold() == before
