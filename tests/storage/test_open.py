"""Opening the store: the schema check without Alembic, outages in one line, private files."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.crypto import Keyring
from storage.db import Database, StoreError, open_store, schema_head
from tests.fakes.processes import run_together

ROOT = Path(__file__).parents[2]


def test_the_head_read_from_the_migrations_folder_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from storage.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    assert [schema_head()] == script.get_heads()


def test_a_current_store_opens_without_importing_alembic(db: Database) -> None:
    """The check at every start is one query; Alembic loads only when a migration is due."""
    assert db.schema_version() == schema_head()
    probe = (
        "import sys, base64\n"
        "from storage.crypto import Keyring\n"
        "from storage.db import open_store\n"
        "db = open_store(sys.argv[1], Keyring([bytes(32)]))\n"
        "print('alembic' in sys.modules, db.schema_version())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, db.url], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", schema_head()]


def test_a_store_behind_the_head_is_migrated(db: Database, keyring: Keyring) -> None:
    from alembic import command

    from storage.db import alembic_config

    command.downgrade(alembic_config(db.engine), "0005")  # as a store from an older release
    opened = open_store(db.url, keyring)
    try:
        assert opened.schema_version() == schema_head()
        with opened.engine.connect() as connection:
            connection.execute(text("SELECT first_claimed_at FROM deliveries"))
    finally:
        opened.dispose()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://user:pw-s3cret@db.example/costs", "uses mysql://"),
        ("redis://db.example", "uses redis://"),
    ],
)
def test_an_unusable_database_url_is_one_line_without_the_password(url: str, says: str) -> None:
    with pytest.raises(StoreError) as raised:
        open_store(url, Keyring([bytes(32)]))
    message = str(raised.value)
    assert says in message and "DATABASE_URL" in message
    assert "pw-s3cret" not in message and "\n" not in message


def test_a_missing_postgres_database_is_named_with_host_port_and_the_fix(postgres_url) -> None:
    base = postgres_url.rsplit("/", 1)[0].replace("postgres@", "postgres:pw-s3cret@")
    with pytest.raises(StoreError) as raised:
        open_store(f"{base}/xai_usage_no_such_db", Keyring([bytes(32)]))
    message = str(raised.value)
    assert "127.0.0.1:5432" in message and "xai_usage_no_such_db" in message
    assert "does not exist" in message and "createdb" in message
    assert "pw-s3cret" not in message


def test_a_new_sqlite_store_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = open_store(f"sqlite:///{data / 'xai-usage.db'}", Keyring([bytes(32)]))
    try:
        with db.transaction() as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))  # writes: -wal and -shm exist
        files = sorted(p.name for p in data.iterdir())
        assert files == ["xai-usage.db", "xai-usage.db-shm", "xai-usage.db-wal"]
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for name in files:
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    finally:
        db.dispose()


def test_a_store_from_a_newer_version_is_one_line_not_an_alembic_traceback(
    db: Database, keyring: Keyring
) -> None:
    set_version = "UPDATE alembic_version SET version_num = :v"
    with db.engine.begin() as connection:
        connection.execute(text(set_version), {"v": "9999"})
    try:
        with pytest.raises(StoreError) as raised:
            open_store(db.url, keyring)
    finally:  # the PostgreSQL database is shared by the session's tests
        with db.engine.begin() as connection:
            connection.execute(text(set_version), {"v": schema_head()})
    message = str(raised.value)
    assert "revision 9999" in message and "Upgrade xai-usage" in message
    assert "DATABASE_URL" in message and "\n" not in message


def _schema(engine) -> dict[str, object]:
    """What a schema is made of, as the database describes it: each table's columns (name,
    type, null, default), keys, foreign keys, indexes, unique and check constraints, each by
    name; and on SQLite each index's own SQL (reflection skips expression indexes)."""
    from sqlalchemy import inspect

    inspector = inspect(engine)
    tables = {}
    for table in inspector.get_table_names():
        tables[table] = {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ),
            "primary key": inspector.get_pk_constraint(table),
            "foreign keys": sorted(
                repr(sorted(fk.items())) for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(repr(sorted(i.items())) for i in inspector.get_indexes(table)),
            "unique": sorted(
                repr(sorted(u.items())) for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(
                repr(sorted(c.items())) for c in inspector.get_check_constraints(table)
            ),
        }
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            tables["sqlite indexes"] = sorted(
                (name, " ".join(sql.split()))
                for name, sql in connection.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql NOTNULL")
                )
            )
    return tables


@pytest.fixture
def two_new_stores(db_url, tmp_path) -> Iterator[tuple[str, str]]:
    """Two URLs of new, empty stores on the backend under test."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'made.db'}", f"sqlite:///{tmp_path / 'replayed.db'}"
        return
    from sqlalchemy import create_engine

    from tests.conftest import POSTGRES_ADMIN_URL

    names = [f"xai_usage_new_{n}_{tmp_path.name[-12:].lower()}" for n in ("made", "replayed")]
    names = ["".join(ch if ch.isalnum() else "_" for ch in name) for name in names]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# SQLite cannot reflect the installer index (it is on expressions), so autogenerate skips
# it there with a warning; _schema compares it by its SQL instead.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_a_new_store_is_made_at_the_head_as_the_migrations_would_make_it(
    two_new_stores: tuple[str, str], keyring: Keyring
) -> None:
    """A new store gets the models' schema in one step, stamped at the head; it is the very
    schema replaying every migration makes (Alembic finds nothing between that and the
    models either), so later migrations apply to it alike."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.db import alembic_config
    from storage.models import Base

    made_url, replayed_url = two_new_stores
    made, replayed = Database(made_url, keyring), Database(replayed_url, keyring)
    try:
        made.migrate()
        assert made.schema_version() == schema_head()
        command.upgrade(alembic_config(replayed.engine), "head")
        assert replayed.schema_version() == schema_head()
        assert _schema(made.engine) == _schema(replayed.engine)
        with replayed.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        # A later migration applies to a made store as to a replayed one.
        for store in (made, replayed):
            command.downgrade(alembic_config(store.engine), "0060")
        assert _schema(made.engine) == _schema(replayed.engine)
    finally:
        made.dispose()
        replayed.dispose()


def test_two_processes_making_one_new_store_make_it_once(
    two_new_stores: tuple[str, str], keyring: Keyring
) -> None:
    url, _ = two_new_stores
    probe = (
        "import sys\n"
        "from storage.crypto import Keyring\n"
        "from storage.db import open_store\n"
        "db = open_store(sys.argv[1], Keyring([bytes(32)]))\n"
        "print(db.schema_version())\n"
    )
    outputs = run_together(["-c", probe, url], 3)
    assert [code for code, _, _ in outputs] == [0, 0, 0], outputs
    assert [out.strip() for _, out, _ in outputs] == [schema_head()] * 3
    store = Database(url, keyring)
    try:
        with store.engine.connect() as connection:
            versions = connection.scalars(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [schema_head()]
    finally:
        store.dispose()
