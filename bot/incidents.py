"""What people did about alerts: an incident acknowledged, a rule snoozed or muted.

``bot.alerts`` says what an incident and a rule are; this keeps what people
did about them, in the store (``alert_incidents``, ``alert_silences``), so
every process sees it at once, and says what that means for the next run:

* **Acknowledge** (anyone who may use the app): the incident is known, and
  somebody is on it. Its reminders stop ("still failing"); what is news still
  comes (a spike that doubles, "working again"). The first to click is the
  one shown.
* **Snooze** for a day or a week (anyone who may use the app): nothing of the
  rule is posted until then (reminders, new incidents, a spike that doubles);
  what is still so when it ends is posted then. A new snooze replaces the last.
* **Mute** (admins): nothing of the rule is posted until an admin unmutes it
  (``alerts unmute N``, from ``alerts list`` or the Home tab); alerts of it
  still owed are let go.

"Working again" is never held back: it closes an incident people were told about.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from storage.db import Database, upsert
from storage.models import AlertIncident, AlertSilence, PostedMessage


@dataclass(frozen=True)
class Acknowledged:
    """Who acknowledged an incident, and when; ``now`` says it was this click."""

    by: str
    at: datetime
    now: bool


def acknowledge(
    db: Database, workspace_id: int, incident: str, user: str, at: datetime
) -> Acknowledged:
    """Record that ``user`` acknowledged ``incident``; the first acknowledgement stands."""
    with db.transaction() as session:
        won = session.execute(
            upsert(session, AlertIncident)
            .values(workspace_id=workspace_id, key=incident, acked_by=user, acked_at=at)
            .on_conflict_do_nothing(index_elements=["workspace_id", "key"])
            .returning(AlertIncident.key)
        ).scalar()
        row = session.get(AlertIncident, (workspace_id, incident))
        return Acknowledged(row.acked_by, row.acked_at, won is not None)


def snooze(db: Database, workspace_id: int, rule: str, user: str, until: datetime) -> None:
    """Hold the rule back until ``until`` (a mute, if any, stays)."""
    _silence(db, workspace_id, rule, snoozed_until=until, snoozed_by=user)


def mute(db: Database, workspace_id: int, rule: str, user: str, at: datetime) -> None:
    """Hold the rule back until an admin unmutes it."""
    _silence(db, workspace_id, rule, muted_by=user, muted_at=at)


def _silence(db: Database, workspace_id: int, rule: str, **values: object) -> None:
    with db.transaction() as session:
        statement = upsert(session, AlertSilence).values(
            workspace_id=workspace_id, rule=rule, **values
        )
        session.execute(
            statement.on_conflict_do_update(index_elements=["workspace_id", "rule"], set_=values)
        )


@dataclass(frozen=True)
class Incidents:
    """What people did about a workspace's alerts, read once per run: when each sync
    failure's first post went out (its reminders count from there), which incidents
    were acknowledged, which rules are silenced now."""

    first_posted: dict[str, datetime]
    acked: frozenset[str]
    silences: dict[str, tuple[datetime | None, str | None, str | None]]
    """rule -> (snoozed until, snoozed by, muted by), for rules silenced now."""

    @classmethod
    def read(cls, db: Database, workspace_id: int, at: datetime) -> Incidents:
        with db.session() as session:
            first = session.execute(
                select(PostedMessage.incident, func.min(PostedMessage.posted_at))
                .where(
                    PostedMessage.workspace_id == workspace_id,
                    PostedMessage.incident.startswith("syncfail:"),
                    PostedMessage.thread_ts.is_(None),
                )
                .group_by(PostedMessage.incident)
            )
            first_posted = dict(first.all())
            acked = frozenset(
                session.scalars(
                    select(AlertIncident.key).where(AlertIncident.workspace_id == workspace_id)
                )
            )
            silences = {
                rule: (until, snoozer, muter)
                for rule, until, snoozer, muter in session.execute(
                    select(
                        AlertSilence.rule,
                        AlertSilence.snoozed_until,
                        AlertSilence.snoozed_by,
                        AlertSilence.muted_by,
                    ).where(
                        AlertSilence.workspace_id == workspace_id,
                        or_(AlertSilence.muted_by.is_not(None), AlertSilence.snoozed_until > at),
                    )
                )
            }
        return cls(first_posted, acked, silences)

    def held(self, alert) -> bool:
        """Whether ``alert`` waits: its rule is snoozed or muted, and it is not the
        "working again" that closes an incident."""
        return alert.kind != "recovered" and alert.rule in self.silences

    def muted(self, alert) -> bool:
        return self.held(alert) and self.silences[alert.rule][2] is not None

    def why_held(self, alert) -> str:
        until, snoozer, muter = self.silences[alert.rule]
        if muter is not None:
            return f"not sent: muted by <@{muter}>"
        return f"held back: snoozed by <@{snoozer}> until {until:%Y-%m-%d %H:%M} UTC"
