"""Scheduled work: everything due at one moment, each item exactly once.

``run_due(runtime, at, delivery)`` is the whole of it. The scheduler inside
``xai-usage serve`` calls it every minute; ``xai-usage jobs run [--at T]``
calls it once (cron deployments, and tests moving through time). Every
item is claimed in the ledger before it is done, so any number of
processes may call it at the same moment.

What is due is plain data (a :class:`~bot.digests.Digest`, an
:class:`~bot.alerts.Alert`, a chart's bytes) handed to an :class:`Outbox`;
how each looks, and what a refusal means, is the outbox's business (Slack's
is ``bot.slack.delivery``). Digest charts are drawn last, once per scope and
period however many digests show them, so a slow or failing chart never
holds up or loses a digest's text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import islice
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bot.ledger import DELIVERED, EXPIRED, MAX_ATTEMPTS, Claim, Ledger
from bot.runtime import REDACTOR, Runtime
from bot.webhooks import WebhookFailed
from storage.crypto import DecryptionError

if TYPE_CHECKING:
    from bot.sync import SyncResult
from storage.models import (
    AlertRoute,
    Budget,
    Connection,
    Delivery,
    DigestSubscription,
    Workspace,
    repeated_digests,
)

log = logging.getLogger(__name__)

CATCH_UP = timedelta(hours=12)
"""A digest missed (the bot was down) is still sent this long after its time."""
RECORD_POSTS_EVERY = 20
RECORD_POSTS_WITHIN = 2.0
"""A run's digest posts are recorded (bot.posts) every this many, or this many seconds,
whichever comes first: a process killed mid-run loses the correction of at most that
many posts, and a run of a few digests records them in one transaction."""
EARLIEST_RUN = datetime(2023, 1, 1, tzinfo=UTC)
"""``jobs run --at`` replays from here (xAI's API) up to a day ahead of now."""
LATEST_AHEAD = timedelta(days=1)
SYNC_LEASE = timedelta(minutes=5)
"""A claim on a connection's daily sync holds this long unless renewed: renewed every
:data:`RENEW_EVERY` while its process works, so it runs out only for a process that died."""
RENEW_EVERY = timedelta(minutes=1)
CLAIM_BATCH = 32
"""Connections claimed in one round trip, at least (the engine asks for its concurrency)."""
DAILY_KEYS = "sync:"
"""The daily sync's keys: ``sync:DAY``, and ``sync:DAY:cID`` for each connection."""
PENDING_FOR = timedelta(days=7)
"""An alert that cannot be delivered is retried this long, then recorded as expired."""
RETRY_REFUSED = timedelta(minutes=5)
"""A place that refused an alert is tried again after this."""


class ChannelUnavailable(Exception):
    """The outbox will not take posts there (gone, not a member, archived): what posts
    there is paused, not retried. ``error`` names the refusal for the ledger, ``words``
    for people; ``fix`` (for a paused digest) and ``hint`` (for an alert still owed)
    say what to do."""

    def __init__(
        self, error: str, channel: str, *, fix: str = "", hint: str = "", words: str = ""
    ) -> None:
        super().__init__(error)
        self.error = error
        self.channel = channel
        self.fix = fix or "check the channel"
        self.hint = hint
        self.words = words


@dataclass(frozen=True)
class DigestPaused:
    """Told to whoever set a digest up when its channel refused it."""

    every: str  # day | week | month
    channel_id: str
    fix: str


@dataclass
class ChartFile:
    """A digest's chart: what it shows (``bot.charts.ChartData``, which an outbox may show
    natively) and how to name and describe it; drawn as a PNG only when asked (``data``)."""

    chart: Any = field(repr=False)
    filename: str
    title: str
    alt: str
    _png: bytes | Exception | None = field(default=None, repr=False)

    @property
    def data(self) -> bytes:
        """The chart drawn as PNG bytes: drawn once, and failing once, per scope."""
        if self._png is None:
            from bot.charts import render_chart

            try:
                self._png = render_chart(self.chart, "png")
            except Exception as error:
                self._png = error
        if isinstance(self._png, Exception):
            raise self._png
        return self._png


class Refused(Exception):
    """The place will never take this alert (a mail server's 5xx): recorded as refused
    there and not tried again; the other places still get it. ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


REFUSED = "refused: "
"""How the ledger's outcome of a place marks a refusal for good (see :class:`Refused`)."""


@dataclass(frozen=True)
class Destination:
    """One place an alert goes; each is tried, and recorded, on its own.

    A kind of place is a ``kind`` here, a branch of :func:`_send` and, for a place
    people are named by, an entry of ``PLACE_WORDS``: the ledger, threads and the
    outputs follow from ``name`` and ``words``.
    """

    kind: str  # channel | dm | webhook | email
    target: str = field(repr=False)
    """A channel id, a user id, the webhook URL (a secret) or an email address (personal)."""
    ref: str = ""
    """An email address's number (bot.mail): how it is named, never by the address."""

    @property
    def name(self) -> str:
        """How the ledger and the output call it: never the webhook's URL nor an address."""
        if self.kind == "email":
            return f"email {self.ref}"
        return {"channel": f"#{self.target}", "dm": f"@{self.target}"}.get(self.kind, self.kind)

    @property
    def words(self) -> str:
        """How ``status`` and ``alerts list`` say it (Slack's references; the terminal
        shows them as ``#C…`` and ``@U…``): never the webhook's URL nor an address."""
        if self.kind == "email":
            return f"email {self.ref}"
        return PLACE_WORDS.get(self.kind, "{kind}").format(target=self.target, kind=self.kind)

    @property
    def posts_in_slack(self) -> bool:
        """A Slack conversation: posted once, looked for, threaded (not a webhook)."""
        return self.kind in ("channel", "dm")


PLACE_WORDS = {
    "channel": "<#{target}>",
    "dm": "<@{target}> (direct message)",
    "webhook": "the webhook",
}


Message = Any
"""A :class:`~bot.digests.Digest`, an :class:`~bot.alerts.Alert` or a :class:`DigestPaused`:
the outbox renders it for its surface."""


@dataclass(frozen=True)
class Posted:
    """Where a message landed: its channel (a DM's own id for a DM) and its ``ts``; for a
    reply, the ``ts`` of the message it replied to."""

    channel: str
    ts: str
    thread: str | None = None


class CannotEdit(Exception):
    """The outbox will not change a message in place (gone, too old, not ours)."""


class AnswerLost(Exception):
    """The outbox sent a post and heard nothing back (the connection dropped, or timed
    out, after the request went): it may have landed. Never sent again blind."""


class Outbox(Protocol):
    """Where messages go: Slack in production. Raises :class:`ChannelUnavailable`
    for a place that will not take posts."""

    slack: bool
    """Whether it posts in Slack; without, alerts go to webhooks and email only."""

    def post(
        self,
        team_id: str | None,
        channel: str,
        message: Message,
        *,
        key: str | None = None,
        thread: str | None = None,
        broadcast: bool = False,
    ) -> Posted | None:
        """Post ``message``; ``key`` travels with it, for :meth:`posted` to find. In the
        thread of the message ``thread`` (a ts) when given, shown to the whole channel too
        with ``broadcast``. Says where it landed, when the outbox can tell; raises
        :class:`AnswerLost` when the answer was lost after the post went."""

    def update(self, team_id: str | None, posted: Posted, message: Message) -> None:
        """Show ``message`` in place of the one at ``posted``; :class:`CannotEdit` if not."""

    def reply(self, team_id: str | None, posted: Posted, message: Message) -> Posted | None:
        """Post ``message`` in the thread of the one at ``posted``."""

    def posted(
        self,
        team_id: str | None,
        channel: str,
        key: str,
        since: datetime,
        *,
        thread: str | None = None,
    ) -> Posted | bool | None:
        """Where a message carrying ``key`` was posted in ``channel`` (in the thread of
        ``thread``) since ``since``: a :class:`Posted` (True when found but not where),
        False when it is not there, None when that cannot be told (then it is posted again)."""

    def exists(self, team_id: str | None, posted: Posted) -> bool | None:
        """Whether the message at ``posted`` is still there; None when that cannot be told."""

    def dm(self, team_id: str | None, user_id: str, message: Message) -> Posted | None: ...

    def webhook(self, url: str, body: dict) -> None: ...

    def upload(self, team_id: str | None, channel: str, chart: ChartFile) -> None:
        """Show ``chart`` in ``channel``, after the digest it belongs to."""


class WithoutSlack:
    """The outbox of a process with no Slack configured (a terminal-only install): an
    alert's webhook and email addresses are all it reaches (email goes out from
    :func:`_send` itself); nothing is posted."""

    slack = False

    def __init__(self, allow_private_webhooks: bool) -> None:
        self.allow_private_webhooks = allow_private_webhooks

    def webhook(self, url: str, body: dict) -> None:
        from bot import webhooks

        webhooks.deliver(url, body, allow_private=self.allow_private_webhooks)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{name}: no Slack is configured to post with")


@dataclass
class Outcome:
    """What one run did, for the terminal and the logs."""

    synced: int | None = None
    """Connections the daily sync covered; None when it did not run."""
    digests: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    """Alerts delivered to every place they go, each as ``key -> places``."""
    pending: list[str] = field(default_factory=list)
    """Alerts not (fully) delivered, kept for later runs, each with why."""
    expired: list[str] = field(default_factory=list)
    """Alerts given up on after :data:`PENDING_FOR` undelivered."""
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    """Digests whose chart was shown with them, by key."""
    charts_drawn: int = 0
    """Charts drawn this run: one per scope and period, however many digests show it."""
    corrections: list[str] = field(default_factory=list)
    """Posted figures a later sync moved, each corrected once (bot.posts)."""


def latest_occurrence(every: str, at_time: str, tz: str, at: datetime) -> datetime:
    """The most recent scheduled moment at or before ``at``, in the zone's local time.

    Built from the local date and wall-clock time each time, so a daylight
    saving change moves the UTC moment, not the local one.
    """
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    hour, minute = (int(part) for part in at_time.split(":"))
    wall = time(hour, minute)

    def on(day) -> datetime:
        return datetime.combine(day, wall, tzinfo=zone)

    day = local.date()
    if every == "week":
        day -= timedelta(days=day.weekday())
        step = lambda d: d - timedelta(days=7)  # noqa: E731
    elif every == "month":
        day = day.replace(day=1)
        step = lambda d: (d - timedelta(days=1)).replace(day=1)  # noqa: E731
    else:
        step = lambda d: d - timedelta(days=1)  # noqa: E731
    candidate = on(day)
    if candidate > local:
        candidate = on(step(day))
    return candidate


def check_run_time(at: datetime, now: datetime) -> str | None:
    """Why ``at`` cannot be a ``jobs run --at`` time, or None if it can.

    Digests and alerts do date arithmetic around ``at``: year 1 or 9999 would
    overflow it, and a moment years away has nothing due anyway.
    """
    latest = now.astimezone(UTC) + LATEST_AHEAD
    if EARLIEST_RUN <= at <= latest:
        return None
    return (
        f"--at must be from {EARLIEST_RUN:%Y-%m-%dT%H:%M:%SZ} to {latest:%Y-%m-%dT%H:%M:%SZ} "
        f"(a day from now); got {at.isoformat()}."
    )


def run_due(
    runtime: Runtime, at: datetime, delivery: Outbox | None, *, daily_sync_at: str = "06:00"
) -> Outcome:
    outcome = Outcome()
    ledger = Ledger(runtime.db, clock=lambda: at)
    _daily_sync(runtime, at, daily_sync_at, outcome)
    if delivery is None:
        outcome.skipped.append(
            "digests: no Slack configured to post them (alerts go to their routes' "
            "webhooks and email addresses only)"
        )
        delivery = WithoutSlack(runtime.settings.webhooks_allow_private)
    else:
        from bot.posts import correct_posts

        correct_posts(runtime, ledger, at, delivery, outcome)
    with runtime.db.session() as session:
        workspaces = list(session.scalars(select(Workspace)))
    charts = DigestCharts(runtime, at)
    owed: list[_ChartOwed] = []
    for workspace in workspaces:
        if delivery.slack:
            owed += _digests(runtime, ledger, workspace, at, delivery, outcome)
        _alerts(runtime, ledger, workspace, at, delivery, outcome)
    # Last, once every digest's text and every alert is out: the charts.
    for item in owed:
        _send_chart(charts, item, delivery, outcome)
    outcome.charts_drawn = charts.draws
    return outcome


def _daily_sync(runtime: Runtime, at: datetime, sync_at: str, outcome: Outcome) -> None:
    hour, minute = (int(part) for part in sync_at.split(":"))
    due = datetime.combine(at.astimezone(UTC).date(), time(hour, minute), tzinfo=UTC)
    if at < due:
        return
    if runtime.db.missing_key_ids():  # rotated while this process runs: it warned, once
        return
    # The share's time starts at ``at`` and moves on with the sync, so a claim renewed
    # during a long one holds from the moment it is renewed, not from ``at``.
    began = monotonic()
    ledger = Ledger(runtime.db, clock=lambda: at + timedelta(seconds=monotonic() - began))
    share = DailyShare(runtime, ledger, due.date().isoformat())
    if share.finished():
        return
    results = share.run()
    if results:
        outcome.synced = len(results)
    share.close_day(outcome)


class DailyShare:
    """This process's part of one day's sync, claimed a few dozen connections at a time.

    Each connection's daily sync has its own ledger key (``sync:DAY:cID``), so
    any number of processes share the day: each claims a batch of keys (one
    round trip for dozens), syncs them, and claims more while the last are in
    flight, until none is left unclaimed. A key is marked done in the very
    transaction that stores its connection's sync, so a sync is stored once
    and only once. While a process works, a thread renews its leases; a
    process that dies stops renewing, and once its lease runs out the next run
    (of any process) takes its share over. When every connection's key is done,
    the day's own key (``sync:DAY``) is marked done, so later runs that day
    look no further, and the keys of days before are deleted.
    """

    def __init__(self, runtime: Runtime, ledger: Ledger, day: str) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.day = f"sync:{day}"
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def key(self, connection_id: int) -> str:
        return f"{self.day}:c{connection_id}"

    def finished(self) -> bool:
        """The day's sync is done (by this process or another)."""
        done, _ = self.ledger.states([self.day]).get(self.day, (False, None))
        return done

    def run(self) -> list[SyncResult]:
        """Sync every connection this process manages to claim; their results."""
        candidates = self._unclaimed()
        random.Random(self.ledger.owner).shuffle(candidates)  # replicas start apart
        offered = iter(candidates)

        def claim(n: int) -> list[int]:
            while batch := list(islice(offered, max(n, CLAIM_BATCH))):
                keys = {self.key(i): i for i in batch}
                won = self.ledger.claim_many(list(keys), lease=SYNC_LEASE)
                if won:
                    with self._lock:
                        self._held.update(won)
                    return [keys[key] for key in won]
            return []

        keeper = threading.Thread(target=self._renew, name="xai-usage-lease", daemon=True)
        self._stop = threading.Event()
        keeper.start()
        try:
            results = asyncio.run(
                self.runtime.engine.sync_claimed(claim, trigger="daily", stored=self._stored)
            )
        finally:
            self._stop.set()
            keeper.join()
        with self._lock:  # claimed, not stored: skipped (a connection in error), or gone
            left = sorted(self._held)
        if left:
            with self.runtime.db.transaction() as session:
                self.ledger.done_with(session, left, "not synced: in error, or disconnected")
        return results

    def _unclaimed(self) -> list[int]:
        """Connections whose key is neither done, nor held by a live lease, nor given up."""
        now = self.ledger.clock()
        with self.runtime.db.session() as session:
            ids = list(session.scalars(select(Connection.id).order_by(Connection.id)))
            taken = set(
                session.scalars(
                    select(Delivery.key).where(
                        Delivery.key.startswith(f"{self.day}:c"),
                        (Delivery.done_at.is_not(None))
                        | (Delivery.lease_until >= now)
                        | (Delivery.attempts >= MAX_ATTEMPTS),
                    )
                )
            )
        return [i for i in ids if self.key(i) not in taken]

    def _stored(self, session: Session, results: list[SyncResult]) -> None:
        """In the transaction that stores these syncs: their keys are done."""
        keys = [self.key(result.connection_id) for result in results]
        self.ledger.done_with(session, keys, "synced")
        with self._lock:
            self._held.difference_update(keys)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY.total_seconds()):
            with self._lock:
                held = sorted(self._held)
            try:
                self.ledger.renew(held, SYNC_LEASE)
            except Exception as error:  # the next renewal tries again; the lease has slack
                log.warning("could not renew the daily sync's leases: %s", type(error).__name__)

    def close_day(self, outcome: Outcome) -> None:
        """Mark the day done once no connection's sync is left; the days before are forgotten."""
        if self._unclaimed() or self._in_hand_elsewhere():
            return
        if self.ledger.claim(self.day, lease=SYNC_LEASE) is None:
            return  # another process is closing it
        with self.runtime.db.session() as session:
            count = session.scalar(select(func.count()).select_from(Connection))
        self.ledger.done(self.day, f"{count} connections")
        if outcome.synced is None and not count:
            outcome.synced = 0
        with self.runtime.db.transaction() as session:  # a day's worth of keys, each day
            session.execute(
                delete(Delivery).where(
                    Delivery.key.like(f"{DAILY_KEYS}%:c%"), Delivery.key < self.day
                )
            )

    def _in_hand_elsewhere(self) -> bool:
        """Some connection's key is held by a live lease (being synced, or its process died)."""
        now = self.ledger.clock()
        with self.runtime.db.session() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.key.startswith(f"{self.day}:c"),
                        Delivery.done_at.is_(None),
                        Delivery.lease_until >= now,
                    )
                )
                > 0
            )


@dataclass(frozen=True)
class _ChartOwed:
    """A digest posted this run whose chart is still to be shown after it."""

    key: str
    team_id: str | None
    channel: str
    workspace_id: int
    connection_id: int | None
    digest: Any  # bot.digests.Digest


def wants_chart(sub: DigestSubscription) -> bool:
    """Weekly and monthly digests show their period's chart; a daily one if asked."""
    return sub.every in ("week", "month") or bool(sub.chart)


class DigestCharts:
    """The charts of one run, each drawn once per scope (workspace and connection
    filter) and period, however many digests show it; a chart that failed to draw
    fails once too."""

    def __init__(self, runtime: Runtime, at: datetime) -> None:
        self.runtime = runtime
        self.at = at
        self.draws = 0
        self._drawn: dict[tuple, ChartFile | Exception] = {}

    def chart(self, workspace_id: int, connection_id: int | None, digest) -> ChartFile:
        scope = (workspace_id, connection_id, digest.period_start, digest.period_end)
        if scope not in self._drawn:
            self.draws += 1
            try:
                self._drawn[scope] = self._draw(workspace_id, connection_id, digest)
            except Exception as error:
                self._drawn[scope] = error
        found = self._drawn[scope]
        if isinstance(found, Exception):
            raise found
        return found

    def _draw(self, workspace_id: int, connection_id: int | None, digest) -> ChartFile:
        from bot.charts import chart_data
        from bot.reports import Period, build_report

        period = Period("digest", digest.period_start, digest.period_end, digest.title)
        with self.runtime.db.session() as session:
            connection = session.get(Connection, connection_id) if connection_id else None
            report = build_report(
                session, workspace_id, period, "model", connection=connection, now=self.at
            )
            data = chart_data(session, workspace_id, report, connection_id=connection_id)
        return ChartFile(
            chart=data,
            filename=f"xai-usage-{period.start}-to-{period.end}-by-model.png",
            title=data.title,
            alt=f"{data.title}. {data.subtitle}.",
        )


def _send_chart(charts: DigestCharts, item: _ChartOwed, delivery: Outbox, outcome: Outcome) -> None:
    """Draw (or reuse) and show one digest's chart; a failure is noted, the digest stands."""
    try:
        chart = charts.chart(item.workspace_id, item.connection_id, item.digest)
        delivery.upload(item.team_id, item.channel, chart)
    except Exception as error:  # the digest was delivered: its chart is a bonus
        reason = getattr(error, "error", None) or type(error).__name__
        log.warning("the chart of %s was not shown: %s", item.key, reason)
        outcome.problems.append(f"{item.key}: chart not shown ({reason})")
        return
    outcome.charts.append(item.key)


def _digests(
    runtime: Runtime,
    ledger: Ledger,
    workspace: Workspace,
    at: datetime,
    delivery: Outbox,
    outcome: Outcome,
) -> list[_ChartOwed]:
    """Post every digest due in ``workspace``; the charts the posted ones still owe.

    The connections they cover are synced first where their data is stale
    (bot.posts.freshen); a digest whose figures could not be made fresh says so.
    """
    from bot.digests import DigestRequest, build_digests, digest_period, quiet_skip
    from bot.posts import digest_headline, freshen, freshness_words, record_posts

    with runtime.db.session() as session:
        subscriptions = list(
            session.scalars(
                select(DigestSubscription).where(DigestSubscription.workspace_id == workspace.id)
            )
        )
    repeats = repeated_digests(subscriptions)  # `digest list` names them, not posted
    due = {}
    for sub in subscriptions:
        if sub.paused_reason is not None or sub.id in repeats:
            continue
        occurrence = latest_occurrence(sub.every, sub.at_time, sub.tz, at)
        if sub.created_at <= occurrence <= at and at - occurrence <= CATCH_UP:
            due[f"digest:{sub.id}:{occurrence.date().isoformat()}"] = (sub, occurrence)
    # The lease covers posting them all at Slack's pace, so nobody takes over too soon.
    lease = timedelta(minutes=10) + timedelta(seconds=2) * len(due)
    won = ledger.claim_many(list(due), workspace_id=workspace.id, lease=lease)
    mine = [(won[key], sub) for key, (sub, _) in due.items() if key in won]
    requests = [
        DigestRequest(
            sub.every, due[claim.key][1].astimezone(UTC).date(), sub.connection_id, sub.tz
        )
        for claim, sub in mine
    ]
    requests_by_key = {claim.key: r for (claim, _), r in zip(mine, requests, strict=True)}
    about: dict[int | None, date] = {}
    for r in requests:
        end = digest_period(r.every, r.occurrence)[1]
        about[r.connection_id] = max(end, about.get(r.connection_id, end))
    not_fresh = freshen(runtime, workspace.id, about, at)
    with runtime.db.session() as session:
        digests = build_digests(
            session, workspace.id, requests, providers=runtime.providers, now=at
        )
    digests = [
        replace(
            d,
            freshness=freshness_words(not_fresh, d.total.coverage.connections, d.total.as_of),
        )
        for d in digests
    ]
    owed: list[_ChartOwed] = []
    posts: list = []
    record_by = monotonic() + RECORD_POSTS_WITHIN
    with ledger.batch():  # each outcome recorded as it comes, over one connection
        for (claim, sub), digest in zip(mine, digests, strict=True):
            key = claim.key
            if quiet_skip(digest, sub.quiet_min_usd, sub.quiet_change_pct):
                ledger.done(key, "quiet: below the thresholds")
                outcome.skipped.append(key)
                continue
            try:
                sent = _post_once(delivery, workspace.slack_team_id, sub.channel_id, digest, claim)
                if not sent.now:
                    ledger.done(key, EARLIER_POST)
                    outcome.digests.append(key)
                    continue
            except ChannelUnavailable as error:
                _pause(runtime, sub, error, delivery, workspace)
                ledger.done(key, f"paused: {error.error}")
                outcome.problems.append(f"{key}: {error.error}")
                continue
            except Exception as error:  # Slack down: hand the key back for the next run
                log.warning("digest %s not delivered: %s", key, type(error).__name__)
                ledger.failed(key, type(error).__name__)
                outcome.problems.append(f"{key}: {type(error).__name__}")
                continue
            ledger.done(key)
            outcome.digests.append(key)
            if sent.where is not None and not digest.empty:
                headline = digest_headline(digest, requests_by_key[key])
                posts.append((key, "digest", sent.where, headline, digest.total.amount))
                if len(posts) >= RECORD_POSTS_EVERY or monotonic() >= record_by:
                    # As the run goes, not only at its end: a process killed in a long
                    # run leaves the posts it recorded correctable (bot.posts).
                    record_posts(runtime, workspace.id, posts, at)
                    posts, record_by = [], monotonic() + RECORD_POSTS_WITHIN
            if wants_chart(sub) and not digest.empty:
                owed.append(
                    _ChartOwed(
                        key,
                        workspace.slack_team_id,
                        sub.channel_id,
                        workspace.id,
                        sub.connection_id,
                        digest,
                    )
                )
    record_posts(runtime, workspace.id, posts, at)
    return owed


EARLIER_POST = "found the post of an earlier attempt: not posted again"


@dataclass(frozen=True)
class _Sent:
    """What :func:`_post_once` did: posted now (and where, when known), or found it done."""

    now: bool
    where: Posted | None = None


def _post_once(
    delivery: Outbox,
    team_id: str | None,
    channel: str,
    message: Message,
    claim: Claim,
    *,
    recorded: Posted | None = None,
    thread: str | None = None,
    broadcast: bool = False,
) -> _Sent:
    """Post unless an earlier attempt at the same claim did; never send one blind.

    A first attempt just posts. A later one (its process died, or Slack failed it)
    first checks the post an earlier attempt recorded (``recorded``: where Slack
    said it landed) is still there (``chat.getPermalink``: no scope needed), else
    looks in the channel for a message carrying the key. An attempt whose answer
    was lost (the post went, the connection dropped before Slack's answer) looks
    the same way at once. Only when nothing can tell (the app lacks the optional
    history scope) does it post again, once, saying so in the log: a rare repeat
    beats a lost message.
    """
    if claim.retry:
        found = _landed(delivery, team_id, channel, claim, recorded, thread)
        if found:
            log.info("%s: an earlier attempt had posted it", claim.key)
            return _Sent(False, found if isinstance(found, Posted) else None)

    def post() -> Posted | None:
        return delivery.post(
            team_id, channel, message, key=claim.key, thread=thread, broadcast=broadcast
        )

    try:
        return _Sent(True, post())
    except AnswerLost:
        found = delivery.posted(team_id, channel, claim.key, claim.since, thread=thread)
        if found:
            log.info("%s: Slack's answer was lost, and the post is there", claim.key)
            return _Sent(False, found if isinstance(found, Posted) else None)
        if found is None:
            log.warning(
                "%s: Slack's answer was lost and whether it landed can't be told: posting it "
                "again, once (it may show twice)",
                claim.key,
            )
        return _Sent(True, post())  # lost again: the key is retried later, looked for first


def _landed(
    delivery: Outbox,
    team_id: str | None,
    channel: str,
    claim: Claim,
    recorded: Posted | None,
    thread: str | None,
) -> Posted | bool | None:
    """Where an earlier attempt's post is: its recorded ts if the message is still there
    (or Slack can't say: it did take it), else what the channel shows."""
    if recorded is not None:
        if delivery.exists(team_id, recorded) is not False:
            return recorded
        log.info("%s: its recorded post was deleted since; posting it again", claim.key)
        return False
    return delivery.posted(team_id, channel, claim.key, claim.since, thread=thread)


def _pause(
    runtime: Runtime,
    sub: DigestSubscription,
    error: ChannelUnavailable,
    delivery: Outbox,
    workspace: Workspace,
) -> None:
    """Stop posting where the outbox says no, and tell the person who set it up."""
    fix = error.fix
    with runtime.db.transaction() as session:
        session.execute(
            update(DigestSubscription)
            .where(DigestSubscription.id == sub.id)
            .values(paused_reason=f"{error.error}: {fix}")
        )
    if sub.created_by.startswith("U"):
        try:
            delivery.dm(
                workspace.slack_team_id,
                sub.created_by,
                DigestPaused(sub.every, sub.channel_id, fix),
            )
        except Exception:  # the pause stands even if the DM fails
            log.warning("could not tell %s about the paused digest", sub.created_by)


def _alerts(
    runtime: Runtime,
    ledger: Ledger,
    workspace: Workspace,
    at: datetime,
    delivery: Outbox,
    outcome: Outcome,
) -> None:
    """Every alert due, and every one still owed from earlier runs, to each of its places.

    An alert is used up only once every place it goes took it. Until then it
    is pending in the ledger, with why, and a later run tries again (a route
    set meanwhile, the bot invited back), for :data:`PENDING_FOR`; then it is
    recorded as expired. Each place is claimed under ``key@place`` on its own,
    so one refusing never skips the others and a place that took it is not
    sent it again.

    What people did about alerts counts too (``bot.incidents``): an acknowledged
    incident is not recalled, and a snoozed or muted rule's alerts are held back
    (a muted rule's owed alerts are let go), but for "working again".
    """
    from bot.alerts import (
        alert_from_json,
        budget_alerts,
        one_post_per_budget,
        recovery_alerts,
        reminder_alerts,
        spike_alerts,
        spiked,
        sync_failure_alerts,
    )
    from bot.incidents import Incidents
    from bot.posts import freshen, freshness_words

    reached = ledger.reached("syncfail:", workspace.id)
    alerted = spiked(ledger.payloads("spike:", workspace.id))
    incidents = Incidents.read(runtime.db, workspace.id, at)

    def evaluate() -> dict[str, Any]:
        with runtime.db.session() as session:
            return {
                alert.key: alert
                for alert in (
                    *budget_alerts(session, workspace.id, at),
                    *spike_alerts(session, workspace.id, at, alerted),
                    *sync_failure_alerts(session, workspace.id),
                    *reminder_alerts(
                        session, workspace.id, at, incidents.first_posted, incidents.acked
                    ),
                    *recovery_alerts(session, workspace.id, reached),
                )
            }

    fresh = evaluate()
    # An alert about to speak of figures for the first time syncs what it covers if that
    # is stale, then is worked out again on what the sync brought (it may be gone).
    known = ledger.states(list(fresh))
    about: dict[int | None, date] = {}
    for alert in fresh.values():
        if alert.key in known or alert.kind not in FIGURE_ALERTS:
            continue
        if incidents.held(alert):
            continue  # not posted now: no sync on its account
        day = date.fromisoformat(alert.facts.get("day") or alert.facts["through"])
        about[alert.connection_id] = max(day, about.get(alert.connection_id, day))
    not_fresh = freshen(runtime, workspace.id, about, at)
    if about:
        fresh = evaluate()
    for key, alert in list(fresh.items()):
        if key in known or alert.kind not in FIGURE_ALERTS:
            continue
        scope = [alert.connection_id] if alert.connection_id else list(not_fresh)
        words = freshness_words(not_fresh, scope, None)
        if words:
            fresh[key] = replace(alert, text=f"{alert.text} {words}")
    # A budget's threshold and forecast due together are one post.
    for alert in one_post_per_budget(a for k, a in fresh.items() if k not in known):
        for covered in alert.covers:
            fresh.pop(covered, None)
        fresh[alert.key] = alert
    for key in [k for k, a in fresh.items() if incidents.held(a)]:
        log.debug("%s held back: %s", key, incidents.why_held(fresh.pop(key)))
    # Alerts owed from earlier runs go first, so a channel reads them in order
    # (a late "stopped syncing" before its "working again").
    due = {}
    for key, payload, since, why in ledger.owed(workspace.id):
        if since is not None and at - since >= PENDING_FOR:
            fresh.pop(key, None)
            if ledger.claim(key, workspace_id=workspace.id):
                expired = f"expired: not delivered in {PENDING_FOR.days} days ({why})"
                ledger.done(key, expired, state=EXPIRED)
                outcome.expired.append(f"{key}: {expired}")
            continue
        # the situation may have passed since; the alert is still owed
        owed = fresh.pop(key, None) or alert_from_json(payload)
        if incidents.muted(owed):  # an admin muted its rule: let it go, said why
            if ledger.claim(key, workspace_id=workspace.id):
                ledger.done(key, incidents.why_held(owed), state=MUTED)
            continue
        if not incidents.held(owed):
            due[key] = owed
    due.update(fresh)
    for alert in due.values():
        claim = ledger.claim(alert.key, workspace_id=workspace.id)
        if claim is None:
            continue
        # What it also says is used up with it (the forecast in a budget's threshold post).
        for covered in ledger.claim_many(list(alert.covers), workspace_id=workspace.id):
            ledger.done(covered, f"said with {alert.key}")
        _deliver_alert(runtime, ledger, workspace, alert, delivery, outcome)


MUTED = "muted"
"""The ledger state of an alert let go because an admin muted its rule."""


def _deliver_alert(
    runtime: Runtime,
    ledger: Ledger,
    workspace: Workspace,
    alert,
    delivery: Outbox,
    outcome: Outcome,
) -> None:
    from bot.alerts import alert_json

    places, why_none = _route(runtime, workspace, alert)
    if not delivery.slack:
        places = [place for place in places if not place.posts_in_slack]
        why_none = NO_ROUTE_WITHOUT_SLACK
    payload = json.dumps(alert_json(alert))
    ledger.keep(alert.key, payload)  # what it said: spike repeats and corrections read it
    if not places:
        reason = f"nowhere to send it: {why_none}"
        ledger.pending(alert.key, reason, payload=payload)
        outcome.pending.append(f"{alert.key}: {reason}")
        return
    keys = {place: f"{alert.key}@{place.name}" for place in places}
    states = ledger.states(list(keys.values()))
    delivered: list[str] = []
    waiting: list[str] = []
    refused: list[str] = []  # places that will never take it: said, not retried
    sent_to: list[str] = []  # how the output names the places that took it
    for place, key in keys.items():
        done, last = states.get(key, (False, None))
        if done and last and last.startswith(REFUSED):
            refused.append(last.removeprefix(REFUSED))
            continue
        if done:
            delivered.append(place.words)
            sent_to.append(place.name)
            continue
        claim = ledger.claim(key, workspace_id=workspace.id)
        if claim is None:  # refused a moment ago: retried once its pause is over
            waiting.append(last or f"{place.words}: being delivered by another process")
            continue
        try:
            sent = _send(runtime, workspace, delivery, place, alert, claim, ledger.clock())
        except ChannelUnavailable as error:
            reason = f"{place.words}: {error.words or error.error}{error.hint}"
        except Refused as error:
            reason = f"{place.words}: {error.reason}"
            ledger.done(key, f"{REFUSED}{reason}", state=EXPIRED)
            refused.append(reason)
            continue
        except Exception as error:  # Slack or the webhook down: retried later
            log.warning("alert %s not delivered to %s: %s", alert.key, place.name, error)
            said = getattr(error, "reason", None) or f"not delivered ({type(error).__name__})"
            reason = f"{place.words}: {said}, tried again in {RETRY_REFUSED.seconds // 60} min"
        else:
            ledger.done(key, sent, state=DELIVERED)
            delivered.append(place.words)
            sent_to.append(sent)
            continue
        ledger.pending(key, reason, retry_in=RETRY_REFUSED)
        waiting.append(reason)
    if waiting:
        reason = "; ".join(waiting + refused)
        if delivered:
            reason += f" (delivered to {', '.join(delivered)})"
        ledger.pending(alert.key, reason, payload=payload)
        outcome.pending.append(f"{alert.key}: {reason}")
        return
    if refused:  # told once, in this run's problems: the rest of the places have it
        outcome.problems.append(f"{alert.key}: {'; '.join(refused)} (not tried again)")
    if not delivered:
        ledger.done(alert.key, f"not delivered: {'; '.join(refused)}", state=EXPIRED)
        return
    ledger.done(alert.key, f"delivered to {', '.join(delivered)}", state=DELIVERED)
    outcome.alerts.append(f"{alert.key} -> {', '.join(sent_to)}")


def _send(
    runtime: Runtime,
    workspace: Workspace,
    delivery: Outbox,
    place: Destination,
    alert,
    claim: Claim,
    at: datetime,
) -> str:
    """Deliver to one place; what it is called in the ledger and the output.

    In Slack, a follow-up replies in the thread of its incident's first post there
    ("working again" shown to the channel too), and every post is recorded the
    moment Slack answers (``posted_messages``): where it is, for the follow-ups and
    for a later attempt to find it without reading the channel; a spike's with its
    figure, to be corrected if a sync moves it."""
    from bot.alerts import alert_json
    from bot.posts import record_posts, spike_headline

    if place.kind == "email":
        from bot.mail import MailFailed, send_alert

        try:
            send_alert(runtime.settings.environ, place.target, alert, at, seed=claim.key)
        except MailFailed as error:
            if error.for_good:
                raise Refused(error.reason) from None
            raise
        return place.name
    if place.kind == "webhook":
        if not place.target:  # sealed with a key this process lacks (see _route)
            raise WebhookFailed(
                "not sent by this process: its URL is sealed with a key it lacks, so a "
                "process that has the key sends it"
            )
        delivery.webhook(place.target, alert_json(alert))
        return place.name
    if not place.posts_in_slack:
        raise ValueError(f"no way to send an alert to a {place.kind}")
    parent = _first_post(runtime, alert, place) if alert.follow_up else None
    sent = _post_once(
        delivery,
        workspace.slack_team_id,
        parent.channel if parent else place.target,  # a DM's thread is in the DM's own id
        alert,
        claim,
        recorded=_recorded(runtime, claim.key) if claim.retry else None,
        thread=parent.ts if parent else None,
        broadcast=alert.broadcast,
    )
    if sent.where is not None:
        headline = spike_headline(alert)
        shown = Decimal(alert.facts["cost_usd"]) if headline is not None else None
        where = replace(sent.where, thread=parent.ts if parent else None)
        record_posts(
            runtime,
            workspace.id,
            [(claim.key, "alert", where, headline, shown)],
            at,
            incident=alert.incident,
        )
    return place.name if sent.now else f"{place.name} (by an earlier attempt)"


def _first_post(runtime: Runtime, alert, place: Destination) -> Posted | None:
    """Where the first post of ``alert``'s incident landed at ``place``, if it did."""
    from storage.models import PostedMessage

    with runtime.db.session() as session:
        row = session.get(PostedMessage, f"{alert.incident}@{place.name}")
    return Posted(row.channel_id, row.ts) if row is not None else None


def _recorded(runtime: Runtime, key: str) -> Posted | None:
    """Where an earlier attempt's post landed, if it was recorded when Slack answered."""
    from storage.models import PostedMessage

    with runtime.db.session() as session:
        row = session.get(PostedMessage, key)
    return Posted(row.channel_id, row.ts, row.thread_ts) if row is not None else None


DIRECT_TOO = frozenset({"sync_failure", "still_failing", "recovered"})
"""Alerts the person who connected the team also gets directly: theirs to fix."""
FIGURE_ALERTS = frozenset({"budget", "forecast", "spike"})
"""Alerts that speak of spend: synced first when their figures are stale."""

NO_ROUTE = (
    "no alert channel, no budget or digest channel, and nobody who connected a team "
    "in Slack to tell (set one with `/xai-usage alerts #channel`)"
)
NO_ROUTE_WITHOUT_SLACK = (
    "no Slack is configured, and its route has no webhook or email address (add one "
    "with `xai-usage alerts --email ADDRESS`)"
)
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def _route(runtime: Runtime, workspace: Workspace, alert) -> tuple[list[Destination], str]:
    """Where an alert goes, and why nowhere when that is the answer.

    The channel: a budget's own, else the connection's alert route, else the
    workspace's, else the channel of the workspace's first budget or digest;
    with none, a DM to whoever connected the team. Sync failures, their reminders
    and recoveries also DM that person; a route's webhook and email addresses get every
    alert of its route (an address-only route leaves the channel as it would be without it).
    """
    from bot.mail import route_addresses

    with runtime.db.session() as session:
        mailing = alert_route(session, workspace.id, alert.connection_id)
        emails = route_addresses(runtime.db, session, mailing.id) if mailing else []
        route = alert_route(session, workspace.id, alert.connection_id, for_channel=True)
        channel = route.channel_id if route else None
        webhook = None
        if route and route.webhook_sealed:
            try:
                webhook = runtime.db.keyring.open(route.webhook_sealed, route.webhook_aad).decode()
                REDACTOR.add(webhook)  # the URL is the secret: never in a log line
            except DecryptionError as error:
                if error.key_id is not None and error.key_id not in runtime.db.keyring.key_ids:
                    runtime.db.missing_key_ids()  # rotated while this process runs: said once
                    webhook = ""  # still owed: a process with the key sends it
                else:
                    log.warning("the webhook of alert route %s cannot be decrypted", route.id)
        if alert.kind in ("budget", "forecast"):
            budget = session.get(Budget, int(alert.key.split(":")[1]))
            if budget is not None and budget.workspace_id == workspace.id and budget.channel_id:
                channel = budget.channel_id
        if channel is None:
            channel = first_setup_channel(session, workspace.id)
        person = connector(session, workspace.id, alert.connection_id)
    places = [Destination("channel", channel)] if channel else []
    if person and (not channel or alert.kind in DIRECT_TOO):
        places.append(Destination("dm", person))
    if webhook is not None:
        places.append(Destination("webhook", webhook))
    places += [Destination("email", address, ref) for ref, address in emails]
    return places, NO_ROUTE


def alert_route(
    session, workspace_id: int, connection_id: int | None, *, for_channel: bool = False
) -> AlertRoute | None:
    """The connection's own alert route, else the workspace's. ``for_channel``: the
    route whose channel and webhook apply, passing over a connection's route that only
    adds email addresses (no channel of its own)."""
    routes = {
        r.connection_key: r
        for r in session.scalars(
            select(AlertRoute).where(
                AlertRoute.workspace_id == workspace_id,
                AlertRoute.connection_key.in_({connection_id or 0, 0}),
            )
        )
    }
    own = routes.get(connection_id or 0)
    if own is not None and for_channel and own.channel_id is None and own.connection_key:
        own = None
    return own or routes.get(0)


def first_setup_channel(session, workspace_id: int) -> str | None:
    """The channel of the workspace's first budget (with a channel) or running digest."""
    budget = session.execute(
        select(Budget.created_at, Budget.channel_id)
        .where(Budget.workspace_id == workspace_id, Budget.channel_id.is_not(None))
        .order_by(Budget.created_at, Budget.id)
        .limit(1)
    ).first()
    digest = session.execute(
        select(DigestSubscription.created_at, DigestSubscription.channel_id)
        .where(
            DigestSubscription.workspace_id == workspace_id,
            DigestSubscription.paused_reason.is_(None),
        )
        .order_by(DigestSubscription.created_at, DigestSubscription.id)
        .limit(1)
    ).first()
    found = [row for row in (budget, digest) if row is not None]
    return min(found, key=lambda row: row[0])[1] if found else None


def connector(session, workspace_id: int, connection_id: int | None) -> str | None:
    """The Slack user who connected the team (the workspace's first, for
    workspace-wide alerts); None when it was done from a terminal."""
    query = select(Connection.created_by).where(Connection.workspace_id == workspace_id)
    if connection_id:
        query = query.where(Connection.id == connection_id)
    creator = session.scalar(query.order_by(Connection.id).limit(1))
    return creator if creator and _SLACK_USER.fullmatch(creator) else None
