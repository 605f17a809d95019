"""Connection rows for tests that build a store by hand: no real key, sealed or not."""

from __future__ import annotations

from storage.models import Connection


def add_connection(session, workspace_id: int, label: str, **fields) -> Connection:
    """An xAI connection (status ``ok`` unless ``fields`` say otherwise), flushed for its id."""
    connection = Connection(
        workspace_id=workspace_id,
        provider="xai",
        label=label,
        credentials_sealed="sealed",
        credentials_key_id="k1",
        status=fields.pop("status", "ok"),
        **fields,
    )
    session.add(connection)
    session.flush()
    return connection
