"""Opening the store: the schema check without Alembic, outages in one line, private files."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.crypto import Keyring
from storage.db import Database, StoreError, open_store, schema_head

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
