"""Sending with native blocks, and remembering where Slack refused them.

A workspace's Slack may refuse a ``table`` or a ``data_visualization`` block
(not rolled out there yet, a surface that takes none): it answers
``invalid_blocks`` (a view: ``invalid_arguments``) naming the block. The
message is then sent once more with the fallback in its place
(:func:`bot.slack.native.degrade`), and the refusal is recorded in the store
(``native_refusals``), so that workspace's later messages go with the fallback
at once, from whichever process sends them. After :data:`TRY_AGAIN_AFTER`
the block is tried again: Slack turns blocks on workspace by workspace.

A second refusal is not the block's doing: it is raised as Slack's error, and
nothing is remembered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.slack import limits
from bot.slack.native import degrade, natives_in, pointed_at
from storage.db import Database, upsert
from storage.models import NativeRefusal, Workspace

log = logging.getLogger(__name__)

TRY_AGAIN_AFTER = timedelta(days=7)
"""How long a refused block stays refused in a workspace before it is tried again."""
READ_AGAIN_AFTER = 60.0
"""Seconds one process reuses what it read of a workspace's refusals: another process's
refusal reaches it within a minute (meanwhile a refused block is retried once more)."""
MESSAGE, HOME = "message", "home"
"""The surfaces remembered apart: a workspace may take a chart in a message and not in
its Home tab."""


class Refused(Exception):
    """Slack refused a message or a view for one of its blocks."""

    def __init__(self, code: str, said: tuple[str, ...] = (), error: Exception | None = None):
        super().__init__(code)
        self.code = code
        self.said = said
        """Slack's ``response_metadata.messages``: which block, and why."""
        self.error = error
        """Slack's own error, raised again when the fallback is refused too."""

    def words(self) -> str:
        return (f"{self.code}: {self.said[0]}" if self.said else self.code)[:200]


class NothingLeft(Refused):
    """Refused for a native block that was all the message had: without it there is
    nothing to send (a chart alone). The refusal is remembered; what to send instead is
    the caller's to say."""


def refusal_of(error: SlackApiError) -> Refused | None:
    """A Web API error as a block refusal, or None when it is something else."""
    answer = error.response.data if error.response is not None else {}
    if not isinstance(answer, Mapping) or answer.get("error") not in limits.REFUSALS:
        return None
    said = (answer.get("response_metadata") or {}).get("messages") or ()
    return Refused(str(answer["error"]), tuple(str(s) for s in said), error)


def response_refusal(status: int, body: str) -> Refused | None:
    """A response URL's answer as a block refusal (JSON, or Slack's bare error word)."""
    if status == 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {"error": body.strip()}
    if not isinstance(answer, dict) or answer.get("error") not in limits.REFUSALS:
        return None
    said = (answer.get("response_metadata") or {}).get("messages") or ()
    return Refused(str(answer["error"]), tuple(str(s) for s in said))


def calling(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (a ``WebClient`` call) raising :class:`Refused` for a block refusal."""

    def call(**arguments: Any) -> Any:
        try:
            return method(**arguments)
        except SlackApiError as error:
            refused = refusal_of(error)
            if refused is None:
                raise
            raise refused from error

    return call


class _Reads:
    """What one process read of a store's refusals, with when to read it again."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self.lock = threading.Lock()


class NativeRefusals:
    """Which native blocks each workspace's Slack refused, per surface, in the store.

    What was read is kept for :data:`READ_AGAIN_AFTER`, so a run posting a thousand
    digests reads it once per workspace; what this process learns counts at once."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] | None = None,
        reads: _Reads | None = None,
    ) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))
        reads = reads or _Reads()
        self._read, self._lock = reads.found, reads.lock

    def refused(self, team_id: str | None, surface: str) -> frozenset[str]:
        """The block types refused in ``team_id``'s Slack on ``surface`` lately."""
        if not team_id:
            return frozenset()
        with self._lock:
            read = self._read.get((team_id, surface))
        if read is not None and time.monotonic() < read[0]:
            return read[1]
        since = self.clock() - TRY_AGAIN_AFTER
        with self.db.session() as session:
            found = frozenset(
                session.scalars(
                    select(NativeRefusal.block_type)
                    .join(Workspace, Workspace.id == NativeRefusal.workspace_id)
                    .where(
                        Workspace.slack_team_id == team_id,
                        NativeRefusal.surface == surface,
                        NativeRefusal.refused_at >= since,
                    )
                )
            )
        with self._lock:
            self._read[(team_id, surface)] = (time.monotonic() + READ_AGAIN_AFTER, found)
        return found

    def remember(self, team_id: str | None, surface: str, kinds: frozenset[str], why: str) -> None:
        if not team_id or not kinds:
            return
        with self._lock:
            read = self._read.get((team_id, surface))
            if read is not None:
                self._read[(team_id, surface)] = (read[0], read[1] | kinds)
        now = self.clock()
        with self.db.transaction() as session:
            workspace_id = session.scalar(
                select(Workspace.id).where(Workspace.slack_team_id == team_id)
            )
            if workspace_id is None:
                return
            for kind in sorted(kinds):
                session.execute(
                    upsert(session, NativeRefusal)
                    .values(
                        workspace_id=workspace_id,
                        surface=surface,
                        block_type=kind,
                        refused_at=now,
                        error=why[:200],
                    )
                    .on_conflict_do_update(
                        index_elements=["workspace_id", "surface", "block_type"],
                        set_={"refused_at": now, "error": why[:200]},
                    )
                )


_READS: weakref.WeakKeyDictionary[Database, _Reads] = weakref.WeakKeyDictionary()
"""Per store, and gone with it: nothing here keeps a closed store (or its pool) alive."""
_READS_LOCK = threading.Lock()


def refusals_for(db: Database) -> NativeRefusals:
    """The refusals of a store, read once a minute however many senders ask."""
    with _READS_LOCK:
        reads = _READS.get(db)
        if reads is None:
            reads = _READS[db] = _Reads()
    return NativeRefusals(db, reads=reads)


def send(
    message: Mapping[str, Any],
    attempt: Callable[[dict[str, Any]], Any],
    *,
    refusals: NativeRefusals | None,
    team_id: str | None,
    surface: str = MESSAGE,
) -> dict[str, Any]:
    """Send ``message`` (or a view) with ``attempt``, which raises :class:`Refused` when
    Slack refuses it: without the blocks this workspace refused before; if Slack refuses
    a native block now, once more without it, remembered (:class:`NothingLeft` when
    nothing would be left). Returns what was sent."""
    known = refusals.refused(team_id, surface) if refusals and natives_in(message) else ()
    message = degrade(message, known)
    try:
        attempt(message)
        return message
    except Refused as refusal:
        natives = natives_in(message)
        if not natives:
            raise refusal.error or refusal from None
        culprits = pointed_at(message, refusal.said) or natives
        why = refusal.words()
        nothing_left = NothingLeft(refusal.code, refusal.said, refusal.error)
    fallback = degrade(message, culprits)
    if message.get("blocks") and not fallback.get("blocks"):
        if refusals is not None:
            refusals.remember(team_id, surface, culprits, why)
        raise nothing_left
    try:
        attempt(fallback)
    except Refused as again:  # not (only) the native block's doing: Slack's error stands
        raise again.error or again from None
    log.info(
        "Slack refused the %s block in %s (%s): sent without it; this workspace's %ss go "
        "without it for %d days",
        " and ".join(sorted(culprits)),
        team_id,
        why,
        surface,
        TRY_AGAIN_AFTER.days,
    )
    if refusals is not None:
        refusals.remember(team_id, surface, culprits, why)
    return fallback


def publish_home(
    client: Any, team_id: str | None, user_id: str, view: dict[str, Any], refusals: NativeRefusals
) -> dict[str, Any]:
    """``views.publish`` of a Home tab: a native block this workspace's Home tab refuses is
    left out, as :func:`send` leaves it out of a message. The view published."""
    publish = calling(client.views_publish)
    return send(
        view,
        lambda shown: publish(user_id=user_id, view=shown),
        refusals=refusals,
        team_id=team_id,
        surface=HOME,
    )


def post_message(
    client: Any, team_id: str | None, refusals: NativeRefusals, **message: Any
) -> dict[str, Any]:
    """``chat.postMessage`` with what :func:`send` leaves out; the message posted."""
    post = calling(client.chat_postMessage)
    fields = {k: v for k, v in message.items() if k in ("text", "blocks", "attachments")}
    where = {k: v for k, v in message.items() if k not in fields}
    return send(fields, lambda shown: post(**where, **shown), refusals=refusals, team_id=team_id)
