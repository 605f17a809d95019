"""Throwaway stores for the benchmarks: a temporary SQLite file and a fresh
PostgreSQL database (``xai_usage_bench_<random>``, dropped WITH (FORCE) at the
end, whatever happens).

PostgreSQL is reached through ``XAI_USAGE_BENCH_POSTGRES_URL`` (default: the
local test server). If it cannot be reached, the PostgreSQL rows are skipped
with a note saying why, rather than failing the whole run.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage.db import Database, normalise_url

POSTGRES_URL_ENV = "XAI_USAGE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Unavailable(Exception):
    """A store that cannot be had on this machine; the message says why."""


@contextmanager
def sqlite_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="xai-usage-bench-") as directory:
        yield f"sqlite:///{directory}/xai-usage.db"


@contextmanager
def postgres_store() -> Iterator[str]:
    """A URL to a new, empty database; raises :class:`Unavailable` if PG is unreachable."""
    admin_url = normalise_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    shown = make_url(admin_url).render_as_string(hide_password=True)
    name = f"xai_usage_bench_{secrets.token_hex(5)}"
    admin = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Unavailable(f"PostgreSQL unreachable at {shown} ({reason})") from None
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


STORES: tuple[tuple[str, Callable[[], AbstractContextManager[str]]], ...] = (
    ("sqlite", sqlite_store),
    ("postgresql", postgres_store),
)
"""Each backend's name and how to open a throwaway store on it, in run order."""


def bulk_insert_costs(db: Database, rows: Iterable[tuple]) -> None:
    """Load (connection_id, workspace_id, day, model, api_key_id, nano-dollars) rows
    the fastest way each backend has: executemany on SQLite, COPY on PostgreSQL."""
    columns = "connection_id, workspace_id, day, model, api_key_id, cost"
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.backend == "sqlite":
            # SQLAlchemy keeps a SQLite DATE as ISO text: store it the same way.
            cursor.executemany(
                f"INSERT INTO daily_costs ({columns}) VALUES (?, ?, ?, ?, ?, ?)",
                ((c, w, d.isoformat(), m, k, v) for c, w, d, m, k, v in rows),
            )
        else:
            with cursor.copy(f"COPY daily_costs ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        cursor.close()
        raw.commit()
    finally:
        raw.close()
