"""A terminal report read with sqlite3 alone says exactly what the normal way says.

`xai-usage today` on a current SQLite store skips SQLAlchemy (issue 9: its
import costs more than the report). Both ways run the same SQL text and the
same Python, so every report command, grouping, filter and format is run
both ways here, in process, and the outputs must be identical: text, exit
code and error line alike. A check that the quick way was really taken keeps
this from comparing the normal way with itself.
"""

from __future__ import annotations

import base64
import io
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

import bot.cli
from bot.cli import Console, main
from bot.runtime import Runtime
from storage.crypto import Keyring
from storage.db import Database
from storage.models import ApiKeyName, Connection, DailyCost, FetchedSpan, Workspace
from storage.repo import rebuild_totals
from tests.fakes.connections import add_connection

TODAY = datetime.now(UTC).date()
REPORTS = (
    ["today"],
    ["yesterday"],
    ["week"],
    ["month"],
    ["last-month"],
    ["range", str(TODAY - timedelta(days=70)), str(TODAY)],
)
GROUPINGS = ("model", "day", "week", "month", "connection", "key")
FILTERS = (
    (),
    ("--connection", "research"),  # case forgiven, as labels are
    ("--connection", "Nobody"),  # one line listing the connections
    ("--model", "grok-4*"),
    ("--model", "FAST"),
)


@pytest.fixture
def key() -> bytes:
    return Keyring.generate_key()


@pytest.fixture
def store(tmp_path, key, migrated_sqlite):
    """A migrated SQLite store (a copy of the session's: migrating costs a quarter second)."""
    path = tmp_path / "data" / "xai-usage.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(migrated_sqlite, path)
    db = Database(f"sqlite:///{path}", Keyring([key]))
    db.migrate()  # one query finds it current
    yield db
    db.dispose()


def seed(db: Database) -> None:
    """Costs by model and API key over 80 days, fetched with gaps; one connection failing."""
    with db.transaction() as session:
        acme, elsewhere = Workspace(name="acme"), Workspace(name="elsewhere", slack_team_id="T2")
        session.add_all([acme, elsewhere])
        session.flush()
        synced = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=3)
        production = add_connection(session, acme.id, "Production — xAI", last_success_at=synced)
        research = add_connection(
            session, acme.id, "Research", last_success_at=synced - timedelta(days=1)
        )
        add_connection(
            session,
            acme.id,
            "Staging",
            status="error",
            status_reason="invalid_key",
            last_success_at=synced - timedelta(days=2, seconds=1),
        )
        theirs = add_connection(session, elsewhere.id, "Theirs", last_success_at=synced)
        session.add(ApiKeyName(connection_id=production.id, api_key_id="k-app", name="app"))
        for n in range(80):
            day = TODAY - timedelta(days=n)
            for connection, model, key_id, nano in (
                (production, "grok-4-0709", "k-app", 1_250_000_000 + n * 7),
                (production, "grok-4-fast-reasoning", "k-batch", 310_000_001 * (n % 3)),
                (research, "grok-4-0709", "", 90_000_000 + n),
                (research, "grok-code-fast-1", "", 1 + n % 5),
                (theirs, "grok-4-0709", "", 5_000_000_000),
            ):
                session.add(
                    DailyCost(
                        connection_id=connection.id,
                        workspace_id=connection.workspace_id,
                        day=day,
                        model=model,
                        api_key_id=key_id,
                        cost=Decimal(nano) / 10**9,
                    )
                )
        for connection, first, last in (
            (production, 79, 0),
            (research, 79, 41),  # a gap of days nobody fetched for it...
            (research, 30, 2),  # ...and the last two days not yet
            (theirs, 79, 0),
        ):
            session.add(
                FetchedSpan(
                    connection_id=connection.id,
                    workspace_id=connection.workspace_id,
                    first_day=TODAY - timedelta(days=first),
                    last_day=TODAY - timedelta(days=last),
                )
            )  # Staging never fetched anything
        session.flush()
        rebuild_totals(session, acme.id)
        rebuild_totals(session, elsewhere.id)


def sealed_with(db: Database, key: bytes) -> None:
    """Every connection's credentials sealed (nominally) with ``key``, so its key check passes."""
    with db.transaction() as session:
        session.execute(update(Connection).values(credentials_key_id=Keyring([key]).key_ids[0]))


@pytest.fixture
def both_ways(store, key, tmp_path, monkeypatch):
    """Runs a command the quick way and the normal way; (quick, normal, whether quick was taken)."""
    environ = {
        "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
        "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(key).decode(),
        "XAI_USAGE_NO_PLUGINS": "1",
    }
    taken: list[bool] = []
    quick = bot.cli._report_without_sqlalchemy

    def spy(command, runtime):
        report = quick(command, runtime)
        taken.append(report is not None)
        return report

    monkeypatch.setattr(bot.cli, "_report_without_sqlalchemy", spy)

    def once(args) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), console=Console(out, err, io.StringIO()), environ=environ)
        return code, out.getvalue(), err.getvalue()

    def run(*args: str) -> tuple[tuple[int, str, str], tuple[int, str, str], bool]:
        taken.clear()
        fast = once(args)
        with monkeypatch.context() as patch:
            patch.setattr(Runtime, "sqlite_reader", lambda self: None)
            normal = once(args)
        return fast, normal, bool(taken) and taken[0]

    return run


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: r[0])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: " ".join(f) or "everything")
def test_every_report_reads_the_same_without_sqlalchemy(store, key, both_ways, report, filters):
    seed(store)
    sealed_with(store, key)
    for by in GROUPINGS:
        for fmt in ("table", "json") if filters else ("table", "json", "csv"):
            args = [*report, "--workspace", "acme", "--by", by, "--format", fmt, *filters]
            fast, normal, quick = both_ways(*args)
            assert fast == normal, args
            assert fast[0] == (1 if "Nobody" in filters else 0), fast
            # A closed month shows its invoices beside it, read in a session: the normal way.
            closed = report == ["last-month"]
            assert quick != closed or "Nobody" in filters, f"{args}: read with sqlite3 {quick}"


def test_the_empty_workspace_and_the_other_workspace_read_the_same(store, key, both_ways):
    """No connections at all, a Slack team's workspace by id, and several without --workspace."""
    with store.transaction() as session:
        session.add(Workspace(name="local"))
    fast, normal, quick = both_ways("today")
    assert fast == normal and quick
    assert "Nothing is connected yet" in fast[1]
    seed(store)
    sealed_with(store, key)
    for args in (
        ["week", "--workspace", "T2", "--by", "day"],
        ["today"],
        ["today", "--workspace", "x"],
    ):
        fast, normal, quick = both_ways(*args)
        assert fast == normal, args
    assert both_ways("week", "--workspace", "T2")[2]
    assert "several workspaces" in both_ways("today")[0][2]


def test_anything_unusual_is_left_to_the_normal_way(store, key, both_ways):
    """No workspace yet (one is made), a key the store was not sealed with, an unknown schema."""
    fast, normal, quick = both_ways("today")  # makes the terminal's workspace
    assert fast[0] == normal[0] == 0 and not quick
    seed(store)  # sealed with "k1", which is not the configured key
    fast, normal, quick = both_ways("today", "--workspace", "acme")
    assert fast == normal and not quick
    assert "encryption key does not match" in fast[2]
    sealed_with(store, key)
    assert both_ways("today", "--workspace", "acme")[2]
    with store.engine.begin() as connection:  # a newer xai-usage's schema
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    fast, normal, quick = both_ways("today", "--workspace", "acme")
    assert fast == normal and not quick
    assert "newer than this xai-usage knows" in fast[2]
