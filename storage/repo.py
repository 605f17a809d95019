"""Lookups the CLI, the Slack app and the sync engine share."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from storage.models import Connection, DailyCost, Workspace, WorkspaceDailyTotal

LOCAL_WORKSPACE_NAME = "local"


class NotFound(LookupError):
    """A named thing does not exist; the message lists what does."""


def resolve_workspace(session: Session, name: str | None = None) -> Workspace:
    """The workspace a terminal command works on.

    With one workspace (or none yet) it is implied; with several, ``name``
    (a Slack team id or workspace name) picks one.
    """
    workspaces = list(session.scalars(select(Workspace).order_by(Workspace.id)))
    if name:
        for workspace in workspaces:
            if name in (workspace.name, workspace.slack_team_id, str(workspace.id)):
                return workspace
        known = ", ".join(w.name for w in workspaces) or "none yet"
        raise NotFound(f"no workspace named {name!r} (workspaces: {known})")
    if len(workspaces) == 1:
        return workspaces[0]
    if not workspaces:
        workspace = Workspace(name=LOCAL_WORKSPACE_NAME)
        session.add(workspace)
        session.flush()
        return workspace
    known = ", ".join(w.name for w in workspaces)
    raise NotFound(f"there are several workspaces ({known}): pick one with --workspace NAME")


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
    found = session.scalar(
        select(Connection).where(
            Connection.workspace_id == workspace_id,
            func.lower(Connection.label) == label.strip().lower(),
        )
    )
    if found is None:
        known = ", ".join(f"“{c.label}”" for c in connections(session, workspace_id))
        raise NotFound(
            f"no connection labelled “{label}”"
            + (f" (connections: {known})" if known else " (none yet: run `connect` first)")
        )
    return found


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
