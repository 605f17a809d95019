"""Shared fixtures: a real SQLite file and a real PostgreSQL, the xAI stand-in.

Every test that takes ``db`` runs twice, once per backend, except tests of what a
Slack surface says (modules marked ``one_store``): those read the same figures
through the same queries, so they run on SQLite alone and keep the suite under
three minutes on two cores; a test in them that two processes or replicas share a
store through is marked ``every_store`` and runs on both, and
``XAI_USAGE_TEST_EVERY_STORE=1`` runs every test on both. PostgreSQL gets a
fresh database for the session (dropped at the end), emptied between
tests. SQLite is migrated once per session and each test gets a copy of that
file: Alembic takes a quarter of a second per run, times hundreds of tests.
Without a reachable PostgreSQL the postgres half is skipped locally and fails
in CI (CI=true), so CI can never silently test one backend.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Engine, create_engine, event, text

from storage.crypto import Keyring
from storage.db import Database
from storage.models import Base

POSTGRES_ADMIN_URL = os.environ.get(
    "XAI_USAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def store_key() -> bytes:
    return Keyring.generate_key()


@pytest.fixture(scope="session")
def keyring(store_key: bytes) -> Keyring:
    return Keyring([store_key])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"xai_usage_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


EVERY_STORE = os.environ.get("XAI_USAGE_TEST_EVERY_STORE") == "1"


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A ``one_store`` test runs on SQLite only (see the module's docstring)."""
    if (
        "db_url" in metafunc.fixturenames
        and not EVERY_STORE
        and metafunc.definition.get_closest_marker("one_store")
        and not metafunc.definition.get_closest_marker("every_store")
    ):
        # As a mark, which pytest applies in place of the fixture's own two params.
        metafunc.definition.add_marker(pytest.mark.parametrize("db_url", ["sqlite"], indirect=True))


@pytest.fixture(scope="session", autouse=True)
def compiled_sql_shared_between_engines() -> Iterator[None]:
    """Each statement compiled once per test process, not once per engine.

    SQLAlchemy keeps the SQL it compiled per engine, keyed by the engine's
    dialect. A test opens the store many times over, as separate processes
    would (the ``db`` fixture, every CLI command and ``jobs run`` run in
    process, every runtime built), so the same statements were compiled again
    for every engine: two fifths of the CPU of tests/bot/test_jobs.py. Here
    every engine :func:`storage.db.make_engine` builds takes, once one of its
    kind (backend, read-only or not) has connected and so knows its server,
    that engine's dialect and compiled statements. What runs against the
    store, and how, is unchanged.
    """
    import storage.db

    build = storage.db.make_engine
    connected: dict[tuple[str, str, bool], tuple[Any, Any]] = {}

    def make_engine(url: str, *, read_only: bool = False) -> Engine:
        engine = build(url, read_only=read_only)
        kind = (engine.dialect.name, engine.dialect.driver, read_only)
        if kind in connected:
            engine.dialect, engine._compiled_cache = connected[kind]
            engine.pool._dialect = engine.dialect
        else:
            # Listeners run in order: SQLAlchemy's own, which sets the dialect up
            # from the server, comes first.
            def known(*_: object) -> None:
                connected.setdefault(kind, (engine.dialect, engine._compiled_cache))

            event.listen(engine.pool, "connect", known, once=True)
        return engine

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage.db, "make_engine", make_engine)
        yield


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'xai-usage.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory, keyring: Keyring) -> Path:
    """A SQLite store at the schema head, made once; ``db`` copies it for each test."""
    path = tmp_path_factory.mktemp("migrated") / "xai-usage.db"
    database = Database(f"sqlite:///{path}", keyring)
    database.migrate()
    database.dispose()
    # Closing the last connection checkpoints the WAL: the one file is the whole store.
    assert not path.with_name(f"{path.name}-wal").exists()
    return path


@pytest.fixture
def db(db_url: str, keyring: Keyring, request: pytest.FixtureRequest) -> Iterator[Database]:
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        if not path.exists():
            shutil.copy(request.getfixturevalue("migrated_sqlite"), path)
    database = Database(db_url, keyring)
    database.migrate()  # on the copy, one query finds it current
    try:
        yield database
    finally:
        if database.backend == "postgresql":
            empty_postgres(database)
        database.dispose()


def empty_postgres(database: Database) -> None:
    """Every row deleted and every id counter back at 1, as TRUNCATE … RESTART IDENTITY
    leaves them: for tables of a test's size DELETE is a few times quicker than
    TRUNCATE, which makes new files for every table."""
    with database.engine.begin() as conn:
        sequences = conn.scalars(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
        ).all()
        statements = [f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables)]
        statements += [f'ALTER SEQUENCE "{name}" RESTART' for name in sequences]
        conn.exec_driver_sql("; ".join(statements))  # one round trip


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 22, 7, 30, tzinfo=UTC))


@pytest.fixture
def sandbox(clock: FixedClock):
    from providers.xai.sandbox import Sandbox

    with Sandbox(clock=clock) as stand_in:
        yield stand_in


FAST_RETRIES = dict(deadline=3.0, base_delay=0.01, max_delay=0.05, timeout=2.0)
IMPATIENT = dict(deadline=0.5, base_delay=0.01, max_delay=0.05, timeout=0.5)
"""For a test whose xAI stays down: gives up within half a second, where FAST_RETRIES takes 3."""


def impatient(providers) -> None:
    """The stand-in xAI provider of ``providers`` gives up on a failing call at once."""
    from providers.http import RetryPolicy

    providers.get("xai").retry = RetryPolicy(**IMPATIENT)


def patient(providers) -> None:
    """Back to the fixture's retries once xAI answers again: half a second is too short
    for a cold, loaded machine's first request (a failure that says nothing)."""
    from providers.http import RetryPolicy

    providers.get("xai").retry = RetryPolicy(**FAST_RETRIES)


@pytest.fixture
def providers(sandbox):
    from providers.http import RetryPolicy
    from providers.manager import ProviderRegistry
    from providers.xai.provider import XaiProvider

    return ProviderRegistry([XaiProvider(base_url=sandbox.url, retry=RetryPolicy(**FAST_RETRIES))])


@pytest.fixture
def engine(db, providers, clock):
    from bot.sync import SyncEngine

    return SyncEngine(db, providers, concurrency=8, clock=clock)


@pytest.fixture
def workspace_id(db) -> int:
    from storage.repo import resolve_workspace

    with db.transaction() as session:
        return resolve_workspace(session).id


@pytest.fixture
def cli(db: Database, store_key: bytes, tmp_path) -> Callable[..., tuple[int, str, str]]:
    """The CLI in process, against this test's database: (exit code, stdout, stderr).

    ``env`` adds to the environment or overrides it, e.g. a provider's API URL and
    ``XAI_USAGE_NO_PLUGINS="0"`` for the providers registered as plugins.
    """
    from bot.cli import Console, main

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        environ = {
            "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": db.url,
            "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(store_key).decode(),
            "XAI_USAGE_NO_PLUGINS": "1",
            **(env or {}),
        }
        code = main(list(args), console=Console(out, err, io.StringIO()), environ=environ)
        return code, out.getvalue(), err.getvalue()

    return run


@dataclass
class Finished:
    """What a finished ``xai-usage`` left behind, as ``subprocess.run`` reports it."""

    returncode: int
    stdout: str
    stderr: str


def xai_usage_in_process(env: dict[str, str], *args: str, stdin: str = "") -> Finished:
    """``xai-usage ARGS`` run by ``main()`` in this process, seeing what a fresh process
    sees: ``env`` as its whole environment (log level included), no secret yet known to
    the log redactor, and its log lines on its stderr. Starting a real interpreter costs
    seconds; keep real processes for what needs one (serve, signals, import costs)."""
    from bot.cli import Console, main
    from bot.runtime import REDACTOR

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with (
            mock.patch.dict(os.environ, env, clear=True),
            mock.patch.object(REDACTOR, "secrets", []),
            redirect_stdout(out),
            redirect_stderr(err),  # where configure_logging's handler writes
        ):
            code = main(list(args), console=Console(out, err, io.StringIO(stdin)), environ=env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return Finished(code, out.getvalue(), err.getvalue())
