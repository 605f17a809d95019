"""A click or an event is handled once, however often it arrives.

Slack delivers an event again when it thinks the first delivery went
unanswered (``X-Slack-Retry-Num``, and ``retry_attempt`` in Socket Mode),
keeping its ``event_id``; a signed request can be sent again by anyone who
has it, for the five minutes its signature stays fresh; a click is one
``action_ts`` for one person and one control. Answering any of those twice
posts twice: a report shared to the channel three times, a DM answered twice.

What was seen is recorded in the store (``inbound_seen``), not in memory,
so a replay that reaches another process sharing the database (replicas
behind a load balancer, several Socket Mode connections) is recognised
there too. The first to record a key handles the request; the rest answer
200 with nothing, so Slack stops retrying. Records expire after an hour,
past Slack's last retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete

from storage.db import Database, upsert
from storage.models import InboundSeen

log = logging.getLogger(__name__)


def replay_key(body: dict[str, Any], team_id: str | None) -> str | None:
    """What makes a request the same as another: an event's id, or a click's time,
    person and control. None for anything not retried or repeated that way
    (slash commands, form submissions)."""
    if body.get("type") == "event_callback" and isinstance(body.get("event_id"), str):
        return f"event:{team_id}:{body['event_id']}"
    if body.get("type") == "block_actions":
        actions = body.get("actions") or [{}]
        action, user = actions[0], body.get("user") or {}
        if isinstance(action.get("action_ts"), str) and isinstance(user.get("id"), str):
            return f"click:{team_id}:{user['id']}:{action.get('action_id')}:{action['action_ts']}"
    return None


class SeenRequests:
    """The keys of requests already handled, shared by every process on the store."""

    KEEP_FOR = 60 * 60
    """Seconds a key is kept: Slack's retries come within minutes, a signature lasts five."""
    SWEEP_EVERY = 60
    """Seconds between two deletions of expired keys by one process."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self._swept_at = float("-inf")
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Record ``key``; True when no process had recorded it (then handle the request)."""
        now = self.clock()
        self._sweep(now)
        with self.db.transaction() as session:
            inserted = session.execute(
                upsert(session, InboundSeen)
                .values(
                    key=key[:255],
                    expires_at=datetime.fromtimestamp(now + self.KEEP_FOR, UTC),
                )
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(InboundSeen.key)
            ).scalar()
        return inserted is not None

    def forget_expired(self) -> None:
        with self.db.transaction() as session:
            session.execute(
                delete(InboundSeen).where(
                    InboundSeen.expires_at < datetime.fromtimestamp(self.clock(), UTC)
                )
            )

    def _sweep(self, now: float) -> None:
        with self._lock:
            if now - self._swept_at < self.SWEEP_EVERY:
                return
            self._swept_at = now
        self.forget_expired()
