"""The store on SQLite and PostgreSQL: schema, exact money, sealed secrets."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from storage.crypto import DecryptionError, Keyring
from storage.db import Database, StoreError
from storage.models import Connection, DailyCost, Workspace
from storage.repo import NotFound, find_connection, resolve_workspace, unique_label


def add_connection(db: Database, label: str = "Prod", secret: str = "xai-secret-value-1234") -> int:
    with db.transaction() as session:
        workspace = resolve_workspace(session)
        connection = Connection(
            workspace_id=workspace.id,
            provider="xai",
            label=label,
            credentials_sealed="",
            credentials_key_id=db.keyring.primary_key_id,
        )
        session.add(connection)
        session.flush()
        connection.credentials_sealed = db.keyring.seal_json(
            {"management_key": secret}, connection.credentials_aad
        )
        return connection.id


def test_migrations_create_every_table(db: Database) -> None:
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Workspace)) == 0
    db.migrate()  # running again at every start is harmless


def test_money_is_exact_to_the_nano_dollar_and_sums_exactly(db: Database) -> None:
    cid = add_connection(db)
    amounts = [Decimal("0.75973725"), Decimal("0.1"), Decimal("0.2"), Decimal("1234567.000000001")]
    with db.transaction() as session:
        ws = session.get(Connection, cid).workspace_id
        for i, amount in enumerate(amounts):
            session.add(
                DailyCost(
                    connection_id=cid,
                    workspace_id=ws,
                    day=date(2026, 11, 1),
                    model=f"m{i}",
                    cost=amount,
                )
            )
    with db.session() as session:
        costs = sorted(session.scalars(select(DailyCost.cost)))
        total = session.scalar(select(func.sum(DailyCost.cost)))
    assert costs == sorted(amounts)
    assert total == sum(amounts)  # 0.1 + 0.2 is 0.3 here, not 0.30000000000000004


def test_one_row_per_connection_day_model_and_key(db: Database) -> None:
    cid = add_connection(db)
    row = dict(
        connection_id=cid,
        workspace_id=1,
        day=date(2026, 11, 1),
        model="grok-4-0709",
        api_key_id="",
        cost=Decimal(1),
    )
    with db.transaction() as session:
        session.add(DailyCost(**row))
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(DailyCost(**row))


def test_labels_are_unique_within_a_workspace_and_suggested(db: Database) -> None:
    add_connection(db, "Production — xAI")
    with db.session() as session:
        assert unique_label(session, 1, "Production — xAI") == "Production — xAI (2)"
        assert find_connection(session, 1, "production — XAI").label == "Production — xAI"
        with pytest.raises(NotFound, match="Production — xAI"):
            find_connection(session, 1, "staging")
    with pytest.raises(IntegrityError):
        add_connection(db, "Production — xAI")


def test_secrets_are_sealed_in_the_database_and_bound_to_their_row(db: Database) -> None:
    secret = "xai-mgmt-never-in-plain-text-7f3a"
    first = add_connection(db, "A", secret)
    second = add_connection(db, "B", "xai-another-secret-value-99")
    with db.engine.connect() as conn:
        dumped = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM connections")) for v in row
        )
    assert secret not in dumped
    with db.transaction() as session:
        a, b = session.get(Connection, first), session.get(Connection, second)
        assert (
            db.keyring.open_json(a.credentials_sealed, a.credentials_aad)["management_key"]
            == secret
        )
        b.credentials_sealed = a.credentials_sealed  # copied to another row
    with db.session() as session:
        b = session.get(Connection, second)
        with pytest.raises(DecryptionError):
            db.keyring.open_json(b.credentials_sealed, b.credentials_aad)


def test_a_wrong_key_is_refused_at_start_and_nothing_is_overwritten(db: Database) -> None:
    add_connection(db)
    with db.session() as session:
        before = session.scalar(select(Connection.credentials_sealed))
    other = Database(db.url, Keyring([Keyring.generate_key()]))
    try:
        with pytest.raises(StoreError, match="XAI_USAGE_ENCRYPTION_KEY"):
            other.check_keys()
    finally:
        other.dispose()
    with db.session() as session:
        assert session.scalar(select(Connection.credentials_sealed)) == before


def test_rotate_key_reseals_everything_with_the_new_key(db: Database, store_key: bytes) -> None:
    add_connection(db, "A", "xai-secret-aaaaaaaaaaaa")
    add_connection(db, "B", "xai-secret-bbbbbbbbbbbb")
    new = Keyring.generate_key()
    rotating = Database(db.url, Keyring([new, store_key]))  # "NEW,OLD", as the README says
    only_new = Database(db.url, Keyring([new]))
    try:
        with pytest.raises(StoreError):
            only_new.check_keys()
        assert rotating.rotate_key() == 2
        assert rotating.rotate_key() == 0
        only_new.check_keys()
        with only_new.session() as session:
            secrets = sorted(
                only_new.keyring.open_json(c.credentials_sealed, c.credentials_aad)[
                    "management_key"
                ]
                for c in session.scalars(select(Connection))
            )
    finally:
        rotating.dispose()
        only_new.dispose()
    assert secrets == ["xai-secret-aaaaaaaaaaaa", "xai-secret-bbbbbbbbbbbb"]
