"""storage.reader: SQL text the store's two ways of reading share."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.models import SEALED
from storage.reader import SEALED_KEY_ID_COLUMNS, sqlite_file_of


def test_the_key_check_covers_every_sealed_column() -> None:
    sealed = {(s.model.__tablename__, s.key_id_attr) for s in SEALED}
    assert set(SEALED_KEY_ID_COLUMNS) == sealed


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////srv/xai-usage.db", Path("/srv/xai-usage.db")),
        ("sqlite:///relative.db", Path("relative.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("sqlite:////srv/x.db?mode=ro", None),  # options: the normal way reads them
        ("sqlite+pysqlite:////srv/x.db", None),
        ("postgresql://u@h/db", None),
    ],
)
def test_only_a_plain_sqlite_file_is_read_with_sqlite3_alone(url, path) -> None:
    assert sqlite_file_of(url) == path
