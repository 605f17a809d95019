"""Opening the store: engine, sessions, migrations, and the key check.

Alembic is imported only when a migration is due: at every start, one query
of ``alembic_version`` against the head revision read from the migrations
folder says whether there is anything to do. That keeps a terminal command's
start-up short and lets reports run from a read-only SQLite file.

A store that cannot be reached or opened is a :class:`StoreError` whose one
line names ``DATABASE_URL`` (host, port and database; never the password) and
what to check.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.crypto import Keyring
from storage.models import SEALED
from storage.reader import (
    KEY_IDS_IN_USE_SQL,
    SCHEMA_VERSION_SQL,
    known_revisions,
    schema_head,
)

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
KEY_CHECK_SECONDS = 30.0
"""How long a running process trusts its last look at the keys the store uses."""
URL_HINT = "postgresql://USER@HOST:5432/DATABASE or sqlite:////absolute/path/xai-usage.db"


def upsert(session: Session, model: type) -> Any:
    """An INSERT that can say ON CONFLICT, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(model)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(model)


class StoreError(Exception):
    """The store cannot be used as configured; the message says how to fix it."""


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


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # No journal_mode here: changing it is a write, and a WAL file stays WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def parse_url(url: str) -> URL:
    """The URL, or a StoreError saying what DATABASE_URL should look like (never echoing it)."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError:
        raise StoreError(
            f"DATABASE_URL is not a database URL; it should look like {URL_HINT}."
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"DATABASE_URL uses {parsed.get_backend_name()}://, which xai-usage does not "
            f"support; use {URL_HINT}."
        )
    return parsed


def describe_url(url: str | URL) -> str:
    """Where the store is, for messages: backend, host, port and database, never the password."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    user = f"user {parsed.username}, " if parsed.username else ""
    return f"PostgreSQL at {where}, {user}database {parsed.database or '(none)'}"


def _sqlite_file(parsed: URL) -> Path | None:
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _create_private_file(path: Path) -> None:
    """Create the SQLite file 0600 in a 0700 directory before SQLite does (0644).

    SQLite gives the -wal and -shm files the database file's permissions, so
    they are private too. An existing file is left as it is.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite will say what is wrong, in StoreError's words
    os.close(fd)


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    parsed = parse_url(url)
    path = _sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite":
        if read_only and path is not None:
            engine = create_engine(
                "sqlite+pysqlite:///" + _read_only_uri(path), connect_args={"timeout": 10}
            )
            event.listen(engine, "connect", _sqlite_read_only_pragmas)
            return engine
        if path is not None:
            _create_private_file(path)
        engine = create_engine(parsed, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _read_only_uri(path: Path) -> str:
    """An SQLite URI that opens ``path`` without writing to it.

    Reading a WAL database needs its -shm file. Without one, and without the
    right to create it in the folder, SQLite can only open the file as
    immutable; that is safe because no process has the database open (a
    connection in WAL mode always keeps a -wal file beside it).
    """
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro"
    if not wal.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        mode = "immutable=1"
    return f"file:{quote(str(path.resolve()))}?{mode}&uri=true"


def unavailable(error: BaseException, url: str | URL) -> StoreError:
    """One line for a store that cannot be reached, opened or written: where, why, what to check."""
    where = describe_url(url)
    parsed = url if isinstance(url, URL) else parse_url(url)
    detail = str(getattr(error, "orig", None) or error)
    if parsed.password:
        detail = detail.replace(parsed.password, "***")
    lowered = detail.lower()
    if parsed.get_backend_name() == "sqlite":
        if "readonly" in lowered or "read-only" in lowered:
            why = (
                "the file is read-only to this user, and this command writes. Run it as the "
                "file's owner, or make the file and its folder writable"
            )
        elif "unable to open" in lowered:
            why = (
                "it cannot be opened. Check that its folder exists and is readable and "
                "writable by this user, or point DATABASE_URL elsewhere"
            )
        elif "not a database" in lowered or "malformed" in lowered:
            why = "the file is not an SQLite database (or is damaged). Restore it from a backup"
        else:
            why = f"{_first_line(detail)}. Check the file and DATABASE_URL"
        return StoreError(f"Cannot use the {where} (DATABASE_URL): {why}.")
    if "does not exist" in lowered and "database" in lowered:
        why = (
            f"the database {parsed.database} does not exist. Create it (`createdb "
            f"{parsed.database}`) or fix the name in DATABASE_URL"
        )
    elif "connection refused" in lowered:
        why = "the connection was refused. Check that PostgreSQL runs there and the port is right"
    elif "resolve host" in lowered or "name or service not known" in lowered:
        why = f"the host {parsed.host} is unknown. Check the host name in DATABASE_URL"
    elif "password authentication failed" in lowered or "no password supplied" in lowered:
        why = "the server refused the user name or password. Check them in DATABASE_URL"
    elif "timeout" in lowered or "timed out" in lowered:
        why = "the server did not answer in time. Check the host, port and firewall"
    elif "read-only" in lowered or "permission denied" in lowered:
        why = "this user may not write there. Grant it, or use a writable database"
    else:
        why = f"{_first_line(detail)}. Check DATABASE_URL and that the server is up"
    return StoreError(f"Cannot reach the {where} (DATABASE_URL): {why}.")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "unknown error"
    for prefix in ("connection failed:", "(psycopg.OperationalError)"):
        line = line.removeprefix(prefix).strip()
    return line.rstrip(".")[:200]


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "storage:migrations")
    config.attributes["engine"] = engine
    return config


ALEMBIC_VERSION = "alembic_version"
"""Alembic's record of the schema's revision, as Alembic itself makes it."""
_CREATE_LOCK = 0x78616955  # "xaiU": the advisory lock of a new store's creation


class Database:
    """The store: an engine, a session factory and a keyring."""

    def __init__(self, url: str, keyring: Keyring, *, read_only: bool | None = None) -> None:
        self.url = normalise_url(url)
        parsed = parse_url(self.url)
        if read_only is None:
            path = _sqlite_file(parsed)
            # A file we may read but not write (a backup, another user's store):
            # open it read-only so reports still work from it.
            read_only = bool(
                path and path.exists() and os.access(path, os.R_OK) and not _writable(path)
            )
        self.read_only = read_only
        self.engine = make_engine(self.url, read_only=read_only)
        self.keyring = keyring
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._missing_keys: tuple[float, list[str]] | None = None  # (when read, ids)
        self._warned_keys: set[str] = set()
        self._keys_lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def schema_version(self) -> str | None:
        """The revision in ``alembic_version``, or None for a store not yet migrated."""
        with self.engine.connect() as connection:  # cannot connect: raises, as it should
            try:
                return connection.scalar(text(SCHEMA_VERSION_SQL))
            except DBAPIError as error:
                if "alembic_version" in str(error.orig):
                    return None  # no such table: never migrated
                raise

    def migrate(self) -> None:
        """Bring the schema up to date (safe to run at every start: cheap when it is)."""
        head = schema_head()
        version = self.schema_version()
        if head is not None and version == head:
            return
        if head is not None and version is not None and version not in known_revisions():
            raise StoreError(
                f"The {describe_url(self.url)} (DATABASE_URL) has schema revision {version}, "
                f"newer than this xai-usage knows (up to {head}): a newer version of "
                "xai-usage uses it. Upgrade xai-usage, or point DATABASE_URL elsewhere."
            )
        if self.read_only:
            raise StoreError(
                f"The {describe_url(self.url)} (DATABASE_URL) is read-only to this user and "
                "its schema needs an upgrade: run `xai-usage migrate` as its owner."
            )
        if head is not None and version is None and self._create_at(head):
            return
        from alembic import command

        command.upgrade(alembic_config(self.engine), "head")

    def _create_at(self, head: str) -> bool:
        """Make an empty store's schema at ``head`` in one transaction; False when the store
        is not empty (a store Alembic must bring up: it holds tables but no version).

        Replaying every migration on a new store cost a third of a second (Alembic's
        loading and 60-odd migrations' DDL), each time someone starts with a new store
        (the demo, a first ``connect``, every test of a first run); the models build the
        same schema in a tenth of that (tests/storage/test_open.py compares the two on
        both backends). Two processes starting on the same new store at once: one makes
        it, the other waits for it (PostgreSQL's advisory lock, SQLite's write lock) and
        finds it made.
        """
        from sqlalchemy import inspect

        from storage.models import Base

        with self.engine.begin() as connection:
            if self.backend == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # DDL too is in the transaction
            else:
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                connection.execute(lock, {"key": _CREATE_LOCK})
            tables = set(inspect(connection).get_table_names())
            if ALEMBIC_VERSION in tables:
                return True  # another process made it meanwhile
            if tables:
                return False
            Base.metadata.create_all(connection)
            connection.exec_driver_sql(
                f"CREATE TABLE {ALEMBIC_VERSION} (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            connection.execute(
                text(f"INSERT INTO {ALEMBIC_VERSION} (version_num) VALUES (:head)"), {"head": head}
            )
        log.info("made a new store's schema at revision %s", head)
        return True

    def check_keys(self) -> None:
        """Refuse to start when stored secrets were sealed with a key we lack.

        Failing here, before anything writes, is what keeps a wrong key from
        overwriting or orphaning what is stored.
        """
        with self.engine.connect() as connection:  # one query: it runs at every start
            used = set(connection.scalars(text(KEY_IDS_IN_USE_SQL)))
        missing = sorted(used - set(self.keyring.key_ids))
        if missing:
            raise StoreError(
                "The encryption key does not match this database: its credentials were "
                f"encrypted with key id {', '.join(missing)}, and the configured key(s) are "
                f"{', '.join(self.keyring.key_ids)}. Set XAI_USAGE_ENCRYPTION_KEY to the key "
                "this database was created with (to change keys, list the new key first and "
                "the old one after a comma, then run `xai-usage rotate-key`)."
            )

    def missing_key_ids(self, max_age: float = KEY_CHECK_SECONDS) -> list[str]:
        """Keys stored secrets were sealed with since this process started that it lacks.

        :meth:`check_keys` refuses to start without them; this is for a process
        that is running when another one rotates the keys (``rotate-key``). Read
        at most every ``max_age`` seconds (``/healthz`` may be asked often); a
        key newly missing is logged once, as a warning saying what to do.
        """
        now = time.monotonic()
        with self._keys_lock:
            known = self._missing_keys
            if known is not None and now - known[0] < max_age:
                return known[1]
        with self.engine.connect() as connection:
            used = set(connection.scalars(text(KEY_IDS_IN_USE_SQL)))
        missing = sorted(used - set(self.keyring.key_ids))
        with self._keys_lock:
            self._missing_keys = (now, missing)
            new = [kid for kid in missing if kid not in self._warned_keys]
            self._warned_keys.update(new)
        if new:
            log.warning("%s", missing_keys_warning(missing))
        return missing

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


def missing_keys_warning(key_ids: list[str]) -> str:
    """What to tell the operator of a process that lacks keys the store now uses."""
    keys = ", ".join(key_ids)
    return (
        f"Stored credentials are now sealed with key id {keys}, which this process does not "
        "have (the keys were rotated with `xai-usage rotate-key` while it ran). Until it is "
        "restarted with XAI_USAGE_ENCRYPTION_KEY listing that key first, it leaves those "
        "connections as they are and does not sync them."
    )


def loose_permissions(url: str) -> str | None:
    """A warning when the SQLite file is readable by other users (made before 0600), else None."""
    path = _sqlite_file(parse_url(url))
    if path is None or os.name != "posix":
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"{path} has permissions {mode:04o}, so other users may be able to read the costs and "
        f"labels in it: run `chmod 600 {path}*` (and `chmod 700 {path.parent}`)."
    )


def _writable(path: Path) -> bool:
    """Whether SQLite could write the file: the file, and its folder for the -wal/-shm files."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def open_store(url: str, keyring: Keyring) -> Database:
    """The store, migrated and checked against the keys; one clear StoreError when it can't be."""
    parsed = parse_url(url)
    try:
        db = Database(url, keyring)
    except (SQLAlchemyError, OSError) as error:
        raise unavailable(error, parsed) from None
    try:
        db.migrate()
        db.check_keys()
    except (SQLAlchemyError, OSError) as error:
        db.dispose()
        raise unavailable(error, parsed) from None
    except BaseException:
        db.dispose()
        raise
    return db
