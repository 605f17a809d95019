"""Migration 0007 works out which days an existing store had fetched."""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import insert, select, text

from storage.db import Database, alembic_config
from storage.models import Connection, DailyCost, FetchedSpan, SyncRun, Workspace


def _connection(session, workspace_id: int, label: str, success: datetime | None) -> int:
    # The columns of the 0006 schema only: the model has columns of later migrations.
    return session.execute(
        insert(Connection)
        .values(
            workspace_id=workspace_id,
            provider="xai",
            label=label,
            credentials_sealed="",
            credentials_key_id="k",
            last_success_at=success,
        )
        .returning(Connection.id)
    ).scalar_one()


def _run(session, cid: int, start: date, end: date, outcome: str) -> None:
    # As _connection: the columns of the 0006 schema only.
    session.execute(
        insert(SyncRun).values(
            connection_id=cid,
            trigger="daily",
            window_start=start,
            window_end=end,
            started_at=datetime(2026, 10, 1, tzinfo=UTC),
            outcome=outcome,
        )
    )


def test_existing_stores_get_spans_from_runs_or_first_day_to_last_success(db: Database):
    command.downgrade(alembic_config(db.engine), "0006")
    with db.engine.begin() as conn:  # the old schema really is back
        assert "fetched_spans" not in db.engine.dialect.get_table_names(conn)
    with db.transaction() as session:
        workspace = Workspace(name="old")
        session.add(workspace)
        session.flush()
        ws = workspace.id
        runs = _connection(session, ws, "with runs", datetime(2026, 10, 22, 6, tzinfo=UTC))
        bare = _connection(session, ws, "no runs", datetime(2026, 10, 12, 23, tzinfo=UTC))
        _connection(session, ws, "never synced", None)
        _run(session, runs, date(2026, 10, 1), date(2026, 10, 10), "ok")  # zero spend till 5th
        _run(session, runs, date(2026, 10, 11), date(2026, 10, 13), "error")
        _run(session, runs, date(2026, 10, 20), date(2026, 10, 22), "ok")
        costs = [(runs, 5), (runs, 21), (bare, 3), (bare, 8)]  # October days
        for cid, day in costs:
            session.execute(
                text(
                    "INSERT INTO daily_costs (connection_id, workspace_id, day, model, "
                    "api_key_id, cost) VALUES (:c, :w, :d, 'grok-4', '', 1000)"
                ),
                {"c": cid, "w": ws, "d": date(2026, 10, day)},
            )
    db.migrate()
    with db.session() as session:
        spans = session.execute(
            select(FetchedSpan.connection_id, FetchedSpan.first_day, FetchedSpan.last_day).order_by(
                FetchedSpan.connection_id, FetchedSpan.first_day
            )
        ).all()
        assert session.scalar(select(DailyCost.cost).limit(1)) is not None
    assert spans == [
        (runs, date(2026, 10, 1), date(2026, 10, 10)),
        (runs, date(2026, 10, 20), date(2026, 10, 22)),
        (bare, date(2026, 10, 3), date(2026, 10, 12)),
    ]
