"""Reading the store with SQL text: through a SQLAlchemy session, or through sqlite3 alone.

A terminal report should answer at once, and importing SQLAlchemy costs
more than the whole report (issue 9). So the queries reports run are SQL
text written once, portable between SQLite and PostgreSQL, and what they
return is turned into Decimals, dates and aware datetimes by the functions
here, whichever way they ran: :class:`SessionReader` runs them in a
session's transaction (the server, PostgreSQL, anything that writes), and
:class:`SqliteReader` runs them with the standard library on a migrated
SQLite file (a terminal report, see :func:`open_sqlite_reader`).

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SQLITE_FILE_NAME = "xai-usage.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations" / "versions"
NANO = Decimal("0.000000001")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / SQLITE_FILE_NAME}"


# -- values as the store keeps them -------------------------------------------------


def usd(nano: int | Decimal | None) -> Decimal | None:
    """Integer nano-dollars (a column, or a SUM of one) as dollars: exact, normalised."""
    if nano is None:
        return None
    return (Decimal(int(nano)) * NANO).normalize() if nano else Decimal(0)


def day(value: date | str | None) -> date | None:
    """A day column: PostgreSQL gives a date, SQLite the 'YYYY-MM-DD' text it was written as."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def moment(value: datetime | str | None) -> datetime | None:
    """A timestamp column as an aware UTC datetime (SQLite keeps naive UTC text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_params(params: dict[str, Any]) -> dict[str, Any]:
    """Days bound as the text SQLite stores them as, so comparisons are the stored ones."""
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in params.items()}


# -- readers -----------------------------------------------------------------------


class Reader(Protocol):
    """Runs SQL text with ``:name`` parameters; rows come back as plain tuples."""

    dialect: str
    """``sqlite`` or ``postgresql``: the few functions that differ are spelled per dialect."""

    def rows(self, sql: str, **params: Any) -> list[tuple]: ...


STRING_AGG = {"sqlite": "group_concat", "postgresql": "string_agg"}
"""``agg(text, separator)``: the one aggregate SQLite and PostgreSQL name differently."""


class SessionReader:
    """SQL text in a SQLAlchemy session's transaction (it sees what the session wrote)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name

    def rows(self, sql: str, **params: Any) -> list[tuple]:
        if self.dialect == "sqlite":
            params = _sqlite_params(params)
        result = self.session.connection().execute(_text(sql), params)
        return list(map(tuple, result.all()))  # fetched at once: a thousand rows, not a call each


@functools.cache
def _text(sql: str) -> Any:
    from sqlalchemy import text

    return text(sql)


def reader_of(source: Session | Reader) -> Reader:
    """A reader for a session, or the reader itself."""
    return source if hasattr(source, "rows") else SessionReader(source)  # type: ignore[arg-type]


class SqliteReader:
    """SQL text on an SQLite file opened read-only with the standard library."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def rows(self, sql: str, **params: Any) -> list[tuple]:
        return self.connection.execute(sql, _sqlite_params(params)).fetchall()

    def close(self) -> None:
        self.connection.close()


# -- the schema's version, read without Alembic --------------------------------------

SCHEMA_VERSION_SQL = "SELECT version_num FROM alembic_version"


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision in ``migrations/versions``, read without importing Alembic."""
    return frozenset(_revision_graph()[0])


@functools.cache
def schema_head() -> str | None:
    """The head revision of ``migrations/versions``, read without importing Alembic.

    None when the folder does not have exactly one head written the usual
    way (e.g. a merge revision): then Alembic decides.
    """
    revisions, parents, plain = _revision_graph()
    heads = revisions - parents
    return heads.pop() if plain and len(heads) == 1 else None


def _revision_graph() -> tuple[set[str], set[str], bool]:
    """Revisions, those with a child, and whether every file was plainly written."""
    revisions: set[str] = set()
    parents: set[str] = set()
    plain = True
    pattern = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)
    for path in MIGRATIONS_DIR.glob("*.py"):
        found = dict(pattern.findall(path.read_text(encoding="utf-8")))
        revision = found.get("revision", "").strip("\"'")
        down = found.get("down_revision", "None").strip("\"'")
        if not re.fullmatch(r"[\w-]+", revision) or not re.fullmatch(r"[\w-]+", down):
            plain = False
            continue
        revisions.add(revision)
        if down != "None":
            parents.add(down)
    return revisions, parents, plain


# -- the key check ------------------------------------------------------------------

SEALED_KEY_ID_COLUMNS = (
    ("connections", "credentials_key_id"),
    ("slack_installations", "key_id"),
    ("alert_routes", "webhook_key_id"),
    ("alert_emails", "address_key_id"),
)
"""Where each sealed secret's key id is kept: ``storage.models.SEALED`` (a test checks)."""

KEY_IDS_IN_USE_SQL = " UNION ".join(
    f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
    for table, column in SEALED_KEY_ID_COLUMNS
)
"""The ids of every key something stored was sealed with: one query at every start."""


def keys_missing(reader: Reader, configured: Iterable[str]) -> list[str]:
    """Ids of keys the store's secrets were sealed with that are not configured."""
    return sorted({kid for (kid,) in reader.rows(KEY_IDS_IN_USE_SQL)} - set(configured))


# -- lookups every terminal command makes ------------------------------------------


class NotFound(LookupError):
    """A named thing does not exist; the message lists what does."""


def pick_workspace(reader: Reader, name: str | None = None) -> int | None:
    """The id of the workspace a terminal command works on; None when there is none yet.

    With one workspace it is implied; with several, ``name`` (a Slack team
    id, a workspace name or id) picks one.
    """
    workspaces = reader.rows("SELECT id, name, slack_team_id FROM workspaces ORDER BY id")
    if name:
        for workspace_id, workspace_name, team_id in workspaces:
            if name in (workspace_name, team_id, str(workspace_id)):
                return workspace_id
        known = ", ".join(w[1] for w in workspaces) or "none yet"
        raise NotFound(f"no workspace named {name!r} (workspaces: {known})")
    if len(workspaces) == 1:
        return workspaces[0][0]
    if not workspaces:
        return None
    known = ", ".join(w[1] for w in workspaces)
    raise NotFound(f"there are several workspaces ({known}): pick one with --workspace NAME")


@dataclass(frozen=True)
class ConnectionRef:
    """A connection as a report names it."""

    id: int
    label: str


def connection_by_label(reader: Reader, workspace_id: int, label: str) -> ConnectionRef:
    """A connection by label, forgiving case; unknown labels list the known ones."""
    found = reader.rows(
        "SELECT id, label FROM connections WHERE workspace_id = :workspace_id "
        "AND lower(label) = :label",
        workspace_id=workspace_id,
        label=label.strip().lower(),
    )
    if found:
        return ConnectionRef(*found[0])
    labels = reader.rows(
        "SELECT label FROM connections WHERE workspace_id = :workspace_id ORDER BY label",
        workspace_id=workspace_id,
    )
    known = ", ".join(f"“{known}”" for (known,) in labels)
    raise NotFound(
        f"no connection labelled “{label}”"
        + (f" (connections: {known})" if known else " (none yet: run `connect` first)")
    )


# -- opening a terminal report's store --------------------------------------------


def sqlite_file_of(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL; None for anything else (driver, options)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or url == prefix:
        return None
    name = url.removeprefix(prefix)
    return None if name == ":memory:" else Path(name)


def open_sqlite_reader(
    url: str, configured_key_ids: Callable[[], Iterable[str] | None]
) -> SqliteReader | None:
    """The store as an :class:`SqliteReader` when opening it normally would do nothing more.

    That is: a plain SQLite file that exists, is this user's to write
    (private, as it is created), whose schema is at the head, and whose
    secrets were sealed with the configured keys. Anything else (PostgreSQL,
    a migration due, a read-only or too-open file, a key problem, an error)
    is None: the caller opens the store the normal way, which migrates,
    warns or says what is wrong in its usual words. Opened query-only: this
    path never writes.
    """
    path = sqlite_file_of(url)
    if path is None:
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    if not writable or (os.name == "posix" and mode & 0o077):
        return None
    head = schema_head()
    try:
        # Read-write but query-only, as the normal way opens it: the last connection
        # to close then tidies the -wal and -shm files away (a read-only one cannot).
        connection = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, timeout=10
        )
        connection.execute("PRAGMA query_only = ON")
    except sqlite3.Error:
        return None
    reader = SqliteReader(connection)
    try:
        (version,) = reader.rows(SCHEMA_VERSION_SQL)[0]
        key_ids = configured_key_ids() if head is not None and version == head else None
        if key_ids is not None and not keys_missing(reader, key_ids):
            return reader
    except (sqlite3.Error, IndexError):
        pass
    reader.close()
    return None
