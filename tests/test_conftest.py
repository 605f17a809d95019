"""The shared fixtures keep their promises: each test's store is empty and current."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.db import Database, schema_head
from storage.models import Workspace
from tests.conftest import empty_postgres
from tests.fakes.connections import connect_demo


def test_a_tests_store_starts_at_the_head_and_empty(db: Database) -> None:
    assert db.schema_version() == schema_head()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Workspace)) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_emptying_postgres_deletes_every_row_and_restarts_every_id(db: Database, engine) -> None:
    from storage.repo import resolve_workspace

    with db.transaction() as session:
        workspace_id = resolve_workspace(session).id
    connect_demo(engine, workspace_id, 3, label="Production — xAI")  # rows in most tables
    empty_postgres(db)
    with db.engine.connect() as conn:
        left = {
            table: conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar()
            for table in db.engine.dialect.get_table_names(conn)
            if table != "alembic_version"
        }
    assert set(left.values()) == {0}, left
    with db.transaction() as session:
        session.add(Workspace(name="again"))
        session.flush()
        assert session.scalar(select(Workspace.id)) == 1
