"""Opening the store: engine, sessions, migrations, and the key check."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage.crypto import Keyring
from storage.models import SEALED

log = logging.getLogger(__name__)

SQLITE_FILE_NAME = "xai-usage.db"


def upsert(session: Session, model: type) -> Any:
    """An INSERT that can say ON CONFLICT, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


class StoreError(Exception):
    """The store cannot be used as configured; the message says how to fix it."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / SQLITE_FILE_NAME}"


def normalise_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_engine(url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", "storage:migrations")
    config.attributes["engine"] = engine
    return config


class Database:
    """The store: an engine, a session factory and a keyring."""

    def __init__(self, url: str, keyring: Keyring) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.keyring = keyring
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema up to date (safe to run at every start)."""
        command.upgrade(alembic_config(self.engine), "head")

    def check_keys(self) -> None:
        """Refuse to start when stored secrets were sealed with a key we lack.

        Failing here, before anything writes, is what keeps a wrong key from
        overwriting or orphaning what is stored.
        """
        used: set[str] = set()
        with self.session() as session:
            for sealed in SEALED:
                used.update(
                    session.scalars(
                        select(sealed.key_id_column)
                        .where(sealed.key_id_column.is_not(None))
                        .distinct()
                    )
                )
        missing = sorted(used - set(self.keyring.key_ids))
        if missing:
            raise StoreError(
                "The encryption key does not match this database: its credentials were "
                f"encrypted with key id {', '.join(missing)}, and the configured key(s) are "
                f"{', '.join(self.keyring.key_ids)}. Set XAI_USAGE_ENCRYPTION_KEY to the key "
                "this database was created with (to change keys, list the new key first and "
                "the old one after a comma, then run `xai-usage rotate-key`)."
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    def rotate_key(self) -> int:
        """Re-seal every secret with the primary key; returns how many changed.

        Runs in one transaction: a secret that cannot be opened aborts it and
        nothing is rewritten.
        """
        keyring = self.keyring
        changed = 0
        with self.transaction() as session:
            for sealed in SEALED:
                stale = select(sealed.model).where(sealed.key_id_column != keyring.primary_key_id)
                for row in session.scalars(stale):
                    aad = sealed.aad(row)
                    plain = keyring.open(getattr(row, sealed.token_attr), aad)
                    setattr(row, sealed.token_attr, keyring.seal(plain, aad))
                    setattr(row, sealed.key_id_column.key, keyring.primary_key_id)
                    changed += 1
        return changed

    def dispose(self) -> None:
        self.engine.dispose()
