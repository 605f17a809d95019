"""Scheduled messages that speak of figures: fresh before they speak, corrected after.

Fresh before it speaks
    A digest or an alert about a day first syncs the connections it covers
    when their data was read before that day ended, or is older than
    ``XAI_USAGE_FRESH_WITHIN`` (an hour), within ``XAI_USAGE_FRESH_BUDGET``
    seconds. When that cannot be done (the provider is down, the time is
    spent, the connection needs a new key), the message goes out anyway and
    says its figures are provisional, as of when, and why (:func:`freshen`).

Corrected after
    Each digest, and each spike alert, that Slack took is kept with the
    figure it headlined (:class:`storage.models.PostedMessage`). After a sync,
    a run compares that figure with the store; when it moved by more than 1%
    and $1 the message is corrected once, in place (``chat.update``, or a
    reply in its thread where it cannot be edited), saying "updated HH:MM
    UTC: was $X". Each correction is claimed in the ledger
    (``fix:<post>:<n>``), so several processes correct a change exactly once.
    Budget alerts speak of the month "so far" and are not corrected: the next
    threshold, the digest and ``status`` carry the newer figure. A post is
    checked until its figure is final, for at most :data:`CHECK_FOR`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from bot.figures import Book, Figure, day_end
from bot.formatting import clock, day_label, money
from storage.models import Connection, ConnectionStatus, PostedMessage, Workspace
from storage.reader import SessionReader

if TYPE_CHECKING:
    from bot.alerts import Alert
    from bot.digests import Digest, DigestRequest
    from bot.jobs import Outbox, Outcome, Posted
    from bot.ledger import Ledger
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

CHECK_FOR = timedelta(days=7)
"""How long a posted figure is compared with the store, at most (it is final sooner)."""
MOVE_USD = Decimal(1)
MOVE_SHARE = Decimal("0.01")


# -- fresh before it speaks -----------------------------------------------------------


def stale(
    last_success: datetime | None, about: date, at: datetime, fresh_within: timedelta
) -> bool:
    """Whether data read at ``last_success`` is too old to speak of ``about`` at ``at``:
    read before that day ended, or longer ago than ``fresh_within``."""
    if last_success is None:
        return True
    ended = day_end(about)
    return (ended <= at and last_success < ended) or at - last_success > fresh_within


def freshen(
    runtime: Runtime, workspace_id: int, about: Mapping[int | None, date], at: datetime
) -> dict[int, str]:
    """Sync what is about to be spoken of, if it is stale; why each connection that could
    not be is not fresh (a connection id -> words). ``about`` maps a connection (None:
    every connection of the workspace) to the last day a message speaks of."""
    if not about:
        return {}
    settings = runtime.settings
    fresh_within = timedelta(minutes=settings.fresh_within_minutes)
    with runtime.db.session() as session:
        rows = list(
            session.execute(
                select(
                    Connection.id,
                    Connection.label,
                    Connection.status,
                    Connection.status_reason,
                    Connection.last_success_at,
                ).where(Connection.workspace_id == workspace_id)
            )
        )
    last_day: dict[int, date] = {}
    for cid, *_ in rows:
        days = [d for scope, d in about.items() if scope in (None, cid)]
        if days:
            last_day[cid] = max(days)
    why: dict[int, str] = {}
    wanted = []
    for cid, label, status, reason, synced in rows:
        if cid not in last_day or not stale(synced, last_day[cid], at, fresh_within):
            continue
        if status == ConnectionStatus.ERROR:  # a sync cannot help: it needs a person
            why[cid] = f"“{label}” is in error ({reason or 'unknown'}) until someone fixes it"
        else:
            wanted.append(cid)
    if not wanted:
        return why
    labels = {cid: label for cid, label, *_ in rows}
    budget = settings.fresh_budget_seconds
    try:
        results = asyncio.run(_sync(runtime, wanted, budget))
    except TimeoutError:
        for cid in wanted:
            why[cid] = f"“{labels[cid]}” gave no answer within {budget} s"
        return why
    except Exception as error:  # the store or the engine: speak as the data stands
        log.warning("could not sync before posting: %s", type(error).__name__)
        for cid in wanted:
            why[cid] = f"“{labels[cid]}”: the sync failed ({type(error).__name__})"
        return why
    for result in results:
        if not result.ok:
            said = result.reason or "unknown"
            why[result.connection_id] = f"“{result.label}”: the sync failed ({said})"
    return why


async def _sync(runtime: Runtime, ids: list[int], budget: int):
    engine = runtime.engine
    return await asyncio.wait_for(engine.sync_many(ids, trigger="fresh"), timeout=budget)


def freshness_words(
    not_fresh: Mapping[int, str], scope: Iterable[int], as_of: datetime | None
) -> str | None:
    """What a message says when some of its connections could not be synced first."""
    reasons = [not_fresh[c] for c in sorted(scope) if c in not_fresh]
    if not reasons:
        return None
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    return (
        f"As of {clock(as_of)}, provisional: not synced before this was posted ({shown}); "
        "its figures are those of the last sync."
    )


# -- what a post headlined -------------------------------------------------------------


def digest_headline(digest: Digest, request: DigestRequest) -> dict[str, Any]:
    """What a digest's headline figure is: enough to rebuild the digest and its figure."""
    return {
        "type": "digest",
        "every": request.every,
        "occurrence": request.occurrence.isoformat(),
        "connection_id": request.connection_id,
        "tz": request.tz,
        "start": digest.period_start.isoformat(),
        "end": digest.period_end.isoformat(),
    }


def spike_headline(alert: Alert) -> dict[str, Any] | None:
    """A spike alert's headline figure: its connection's cost on its day."""
    from bot.alerts import alert_json

    if alert.kind != "spike" or alert.connection_id is None:
        return None
    day = alert.facts.get("day")
    return {
        "type": "spike",
        "connection_id": alert.connection_id,
        "start": day,
        "end": day,
        "alert": alert_json(alert),
    }


def record_posts(
    runtime: Runtime,
    workspace_id: int,
    posts: Iterable[tuple[str, str, Posted, dict[str, Any] | None, Decimal | None]],
    at: datetime,
    *,
    incident: str | None = None,
) -> None:
    """Keep where each message landed and what it headlined, in one statement: each is
    (its ledger key, digest or alert, where, its headline figure, the amount shown);
    ``incident``: the alert incident they belong to (``bot.alerts``), whose follow-ups
    reply in the thread of its first post. A repeat of a key replaces it."""
    from storage.db import upsert

    rows = [
        {
            "key": key,
            "workspace_id": workspace_id,
            "kind": kind,
            "channel_id": where.channel,
            "ts": where.ts,
            "posted_at": at,
            "headline": headline,
            "shown_usd": shown,
            "corrections": 0,
            "final": headline is None,
            "incident": incident,
            "thread_ts": where.thread,
        }
        for key, kind, where, headline, shown in posts
    ]
    if not rows:
        return
    with runtime.db.transaction() as session:
        statement = upsert(session, PostedMessage)
        replaced = {c: statement.excluded[c] for c in rows[0] if c != "key"}
        session.execute(
            statement.on_conflict_do_update(index_elements=["key"], set_=replaced), rows
        )


# -- corrected after ----------------------------------------------------------------------


def moved(shown: Decimal | None, now: Decimal | None) -> bool:
    """By more than 1% and $1 (or from unknown to known)."""
    if shown is None or now is None:
        return (shown is None) != (now is None)
    change = abs(now - shown)
    return change > MOVE_USD and change > abs(shown) * MOVE_SHARE


@dataclass(frozen=True)
class Correction:
    """A posted figure that moved: what the message said, and when it was corrected."""

    was: Decimal | None
    at: datetime

    def words(self) -> str:
        was = "not fetched" if self.was is None else money(self.was)
        return f"Updated {clock(self.at)}: was {was}"


def correct_posts(
    runtime: Runtime, ledger: Ledger, at: datetime, delivery: Outbox, outcome: Outcome
) -> None:
    """Compare each open post's figure with the store, and correct those that moved."""
    with runtime.db.session() as session:
        synced = dict(
            session.execute(
                select(Connection.workspace_id, func.max(Connection.last_success_at)).group_by(
                    Connection.workspace_id
                )
            ).all()
        )
        open_posts = list(
            session.scalars(
                select(PostedMessage).where(
                    PostedMessage.final.is_(False),
                    PostedMessage.posted_at >= at - CHECK_FOR,
                    PostedMessage.headline.is_not(None),
                )
            )
        )
        teams = dict(session.execute(select(Workspace.id, Workspace.slack_team_id)).all())
    by_workspace: dict[int, list[PostedMessage]] = {}
    for post in open_posts:
        latest = synced.get(post.workspace_id)
        # Only a sync since the last look can have moved it.
        if latest is None or (post.checked_at is not None and latest <= post.checked_at):
            continue
        by_workspace.setdefault(post.workspace_id, []).append(post)
    for workspace_id, posts in by_workspace.items():
        _correct_workspace(
            runtime, ledger, at, delivery, outcome, workspace_id, teams.get(workspace_id), posts
        )


def _correct_workspace(
    runtime: Runtime,
    ledger: Ledger,
    at: datetime,
    delivery: Outbox,
    outcome: Outcome,
    workspace_id: int,
    team_id: str | None,
    posts: list[PostedMessage],
) -> None:
    spans = [
        (date.fromisoformat(p.headline["start"]), date.fromisoformat(p.headline["end"]))
        for p in posts
    ]
    with runtime.db.session() as session:
        book = Book(
            SessionReader(session),
            workspace_id,
            at,
            min(a for a, _ in spans),
            max(b for _, b in spans),
        )
    looked: dict[bool, list[str]] = {False: [], True: []}  # final or not -> keys
    for post, (start, end) in zip(posts, spans, strict=True):
        figure = book.figure(start, end, post.headline.get("connection_id"))
        if moved(post.shown_usd, figure.amount):
            n = post.corrections + 1
            fix = f"fix:{post.key}:{n}"
            if ledger.claim(fix, workspace_id=workspace_id) is not None:
                how = _send_correction(runtime, delivery, team_id, post, figure, at)
                ledger.done(fix, how)
                outcome.corrections.append(f"{post.key}: {how}")
                with runtime.db.transaction() as session:
                    session.execute(
                        update(PostedMessage)
                        .where(PostedMessage.key == post.key)
                        .values(shown_usd=figure.amount, corrections=n)
                    )
        looked[figure.final].append(post.key)
    # One statement for all the posts looked at (a run may look at thousands).
    with runtime.db.transaction() as session:
        for final, keys in looked.items():
            if keys:
                session.execute(
                    update(PostedMessage)
                    .where(PostedMessage.key.in_(keys))
                    .values(checked_at=at, final=final)
                )


def _send_correction(
    runtime: Runtime,
    delivery: Outbox,
    team_id: str | None,
    post: PostedMessage,
    figure: Figure,
    at: datetime,
) -> str:
    """Show the corrected message in place, else in the original's thread; what was done."""
    from bot.jobs import CannotEdit, Posted

    correction = Correction(post.shown_usd, at)
    message = _corrected(runtime, post, figure, correction)
    where = Posted(post.channel_id, post.ts)
    try:
        delivery.update(team_id, where, message)
        return f"updated in place ({correction.words()})"
    except CannotEdit as error:
        log.info("%s cannot be edited (%s): replying in its thread", post.key, error)
    delivery.reply(team_id, where, message)
    return f"replied in its thread ({correction.words()})"


def _corrected(runtime: Runtime, post: PostedMessage, figure: Figure, correction: Correction):
    """The message as it would be posted now, saying what it said before."""
    headline = post.headline
    if headline["type"] == "digest":
        from bot.digests import build_digest

        with runtime.db.session() as session:
            digest = build_digest(
                session,
                post.workspace_id,
                headline["every"],
                date.fromisoformat(headline["occurrence"]),
                connection_id=headline.get("connection_id"),
                providers=runtime.providers,
                now=correction.at,
                tz=headline.get("tz") or "UTC",
            )
        return replace(digest, correction=correction)
    from bot.alerts import alert_from_json

    alert = alert_from_json(json.dumps(headline["alert"]))
    day = date.fromisoformat(headline["start"])
    now = "not fetched" if figure.amount is None else money(figure.amount)
    settled = " (final)" if figure.final else " (provisional)"
    return replace(
        alert,
        correction=f"{correction.words()}. {day_label(day)} is now {now}{settled}.",
    )
