"""Lookups the CLI, the Slack app and the sync engine share."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from storage.models import Connection, DailyCost, Workspace, WorkspaceDailyTotal
from storage.reader import NotFound as NotFound  # raised by the lookups below
from storage.reader import SessionReader, connection_by_label, pick_workspace

LOCAL_WORKSPACE_NAME = "local"


def resolve_workspace(session: Session, name: str | None = None) -> Workspace:
    """The workspace a terminal command works on.

    With one workspace (or none yet) it is implied; with several, ``name``
    (a Slack team id or workspace name) picks one.
    """
    found = pick_workspace(SessionReader(session), name)
    if found is not None:
        return session.get_one(Workspace, found)
    workspace = Workspace(name=LOCAL_WORKSPACE_NAME)
    session.add(workspace)
    session.flush()
    return workspace


def workspace_for_slack_team(
    session: Session, team_id: str, name: str = "", *, adopt_local: bool = False
) -> Workspace:
    """The workspace of a Slack team, created on first sight.

    With ``adopt_local`` (one-workspace installs), the terminal's workspace is
    taken over by the first Slack team, so both see the same connections.
    """
    workspace = session.scalar(select(Workspace).where(Workspace.slack_team_id == team_id))
    if workspace is None and adopt_local:
        workspace = session.scalar(select(Workspace).where(Workspace.slack_team_id.is_(None)))
        if workspace is not None:
            workspace.slack_team_id = team_id
            workspace.name = name or workspace.name
    if workspace is None:
        workspace = Workspace(slack_team_id=team_id, name=name or team_id)
        session.add(workspace)
        session.flush()
    return workspace


def connections(session: Session, workspace_id: int) -> list[Connection]:
    return list(
        session.scalars(
            select(Connection)
            .where(Connection.workspace_id == workspace_id)
            .order_by(Connection.label)
        )
    )


def find_connection(session: Session, workspace_id: int, label: str) -> Connection:
    """A connection by label, forgiving case; unknown labels list the known ones."""
    found = connection_by_label(SessionReader(session), workspace_id, label)
    return session.get_one(Connection, found.id)


def unique_label(session: Session, workspace_id: int, wanted: str) -> str:
    """``wanted``, or ``wanted (2)``, ``(3)``… if the label is taken."""
    taken = {c.label.lower() for c in connections(session, workspace_id)}
    label, n = wanted, 1
    while label.lower() in taken:
        n += 1
        label = f"{wanted} ({n})"
    return label


def rebuild_totals(session: Session, workspace_id: int) -> None:
    """Recompute a workspace's rollup from its rows (after a bulk load)."""
    session.execute(
        delete(WorkspaceDailyTotal).where(WorkspaceDailyTotal.workspace_id == workspace_id)
    )
    session.execute(
        insert(WorkspaceDailyTotal).from_select(
            ["workspace_id", "day", "model", "cost"],
            select(DailyCost.workspace_id, DailyCost.day, DailyCost.model, func.sum(DailyCost.cost))
            .where(DailyCost.workspace_id == workspace_id)
            .group_by(DailyCost.workspace_id, DailyCost.day, DailyCost.model),
        )
    )
