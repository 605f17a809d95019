"""The App Home dashboard as plain data: what a workspace spends, where, and what is set up.

Slack's Home tab is published on every open, so the figures here are the ones
``status`` and the weekly digest already compute (:func:`bot.reports.status_rows`,
:func:`bot.digests.build_digest`), gathered once and kept for a few minutes by
:class:`DashboardCache`. Nothing here knows Slack: ``bot/slack/home.py``
renders a :class:`Dashboard` and publishes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import profiles
from bot.digests import Digest, build_digest
from bot.figures import Figure, weeks_of
from bot.insights import Insights, build_insights
from bot.reports import StatusRow, status_book, status_rows
from bot.setup import Listing, alerts_go
from providers.types import Provider
from storage.models import (
    AlertEmail,
    AlertRoute,
    AlertSilence,
    Budget,
    Connection,
    DigestSubscription,
)
from storage.reader import SessionReader

TREND_DAYS = 30
MAX_LISTED = 10
"""Digests or budgets listed one by one (each with its Remove button); the rest are counted."""
FRESH_FOR_SECONDS = 5 * 60


@dataclass(frozen=True)
class Step:
    """One step of the first-open checklist, ticked when the store shows it done."""

    text: str
    done: bool
    command: str  # what its button runs (the shared "a button is a command" contract)
    button: str


@dataclass(frozen=True)
class Silenced:
    """An alert rule muted or snoozed, as Home lists it, with the command that unmutes it."""

    ident: int
    text: str
    unmute: str  # ``alerts unmute 3``


@dataclass(frozen=True)
class Dashboard:
    """One workspace's Home tab, for everyone in it (admin buttons are added when rendered)."""

    built_at: datetime
    today: date
    connections: tuple[StatusRow, ...]
    """status's rows: health, last sync, month to date, forecast, reconciliation."""
    month_to_date: Figure
    """The 1st through today, today so far included: status's and the budget alerts' figure."""
    last_month: Figure
    trend: tuple[tuple[date, Decimal | None], ...]
    """The 30 days ending today, oldest first; None for a day no connection fetched."""
    weeks: tuple[tuple[str, Figure], ...]
    """The trend's Monday–Sunday weeks (cut to it, labelled "(part)"), oldest first."""
    week: Digest
    """The weekly digest as it would be sent today: top models, budget, credit, limit."""
    insights: Insights
    """Top movers, idle keys, where the money goes: the same as `insights`."""
    digests: Listing | None
    """The first digests, as `digest list` words them, each with what Remove stops."""
    budgets: Listing | None
    alerts: str  # where alerts go, as one sentence
    checklist: tuple[Step, ...]
    scope_name: str = profiles.SEVERAL
    """The one provider's display name, or "AI" for several: the tab's title says whose."""
    caveats: tuple[str, ...] = ()
    """What the providers in scope say their figures leave out."""
    silenced: tuple[Silenced, ...] = ()
    """Alert rules muted or snoozed, each with the command that unmutes it."""

    @property
    def forecast(self):
        """The workspace's month-end forecast (bot.figures), as status shows it."""
        return self.connections[0].workspace_forecast if self.connections else None

    @property
    def month_to_date_usd(self) -> Decimal:
        return self.month_to_date.value

    @property
    def show_checklist(self) -> bool:
        return not all(step.done for step in self.checklist)

    @property
    def reconciled(self) -> tuple[StatusRow, ...]:
        """The connections whose usage series can be set beside an invoice preview."""
        return tuple(row for row in self.connections if row.reconciliation is not None)


def build_dashboard(
    session: Session,
    workspace_id: int,
    now: datetime,
    *,
    providers: Iterable[Provider],
    setup=None,
) -> Dashboard:
    """Everything the Home tab shows, from the store, as of ``now``.

    ``providers`` (``runtime.providers``) read the insights' kinds and prices.
    ``setup`` (a :class:`bot.setup.Setup`) words the digests, budgets and
    alert routes as the ``list`` commands do; without it they are left out.
    """
    today = now.astimezone(UTC).date()
    words = profiles.in_scope(SessionReader(session), workspace_id)
    rows = tuple(status_rows(session, workspace_id, now))
    book = status_book(session, workspace_id, now)
    last_month_end = today.replace(day=1) - timedelta(days=1)
    first_trend = today - timedelta(days=TREND_DAYS - 1)
    week = build_digest(session, workspace_id, "week", today, providers=providers, now=now)
    digests = budgets = None
    alerts, silenced = "", ()
    if setup is not None:
        digests = setup.listing("digest", size=MAX_LISTED)
        budgets = setup.listing("budget", size=MAX_LISTED)
        alerts = setup.where_alerts_go()
        silenced = tuple(
            Silenced(ident, line, f"alerts unmute {ident}")
            for (ident, *_), line in zip(
                setup.silences(now), setup.silenced_lines(now), strict=True
            )
        )[:MAX_LISTED]
    return Dashboard(
        built_at=now,
        today=today,
        connections=rows,
        month_to_date=book.month_to_date(),
        last_month=book.figure(last_month_end.replace(day=1), last_month_end),
        trend=tuple(book.daily(first_trend, today)),
        weeks=tuple(
            (label, book.figure(first, last)) for first, last, label in weeks_of(first_trend, today)
        ),
        week=week,
        insights=build_insights(session, workspace_id, today, providers=providers),
        digests=digests,
        budgets=budgets,
        alerts=alerts,
        checklist=checklist(session, workspace_id),
        scope_name=words.scope_name,
        caveats=words.caveats,
        silenced=silenced,
    )


def checklist(session: Session, workspace_id: int) -> tuple[Step, ...]:
    """Connect an account, choose where alerts go, add a digest: each ticked from the store.

    The next step to take (the first not done) is the tab's one primary action."""

    def exists(model) -> bool:
        return bool(
            session.scalar(select(model.id).where(model.workspace_id == workspace_id).limit(1))
        )

    return (
        Step("Connect a provider's account", exists(Connection), "connect", "Connect"),
        # Ticked as "Alerts go to …" words it: a route, or a first budget's or digest's channel.
        Step(
            "Choose where alerts go",
            alerts_go(session, workspace_id).chosen,
            "alerts",
            "Alert channel",
        ),
        Step("Add a digest", exists(DigestSubscription), "digest add", "Add a digest"),
    )


def fingerprint(session: Session, workspace_id: int) -> tuple:
    """What changes when a sync finishes or someone sets something up, in one statement.

    A cached dashboard is reused only while this is unchanged, so a scheduled
    sync in another process, or a digest added from the terminal, shows at once.
    Aggregates only (counts, sums, extremes): the same store always gives the
    same answer, whatever order the database reads rows in.
    """

    def of(*columns, model):
        return select(*columns).where(model.workspace_id == workspace_id).scalar_subquery()

    def of_emails(column):
        """Addresses belong to a route, not to the workspace: read through their routes."""
        return (
            select(column)
            .join(AlertRoute, AlertRoute.id == AlertEmail.route_id)
            .where(AlertRoute.workspace_id == workspace_id)
            .scalar_subquery()
        )

    return tuple(
        session.execute(
            select(
                of(func.count(Connection.id), model=Connection),
                of(func.max(Connection.last_attempt_at), model=Connection),
                of(func.max(Connection.credentials_changed_at), model=Connection),
                of(func.count(Connection.error_since), model=Connection),
                of(func.count(DigestSubscription.id), model=DigestSubscription),
                of(func.max(DigestSubscription.id), model=DigestSubscription),
                of(func.count(DigestSubscription.paused_reason), model=DigestSubscription),
                of(func.count(Budget.id), model=Budget),
                of(func.max(Budget.id), model=Budget),
                of(func.sum(Budget.amount_usd), model=Budget),
                of(func.min(Budget.thresholds), model=Budget),
                of(func.max(Budget.thresholds), model=Budget),
                of(func.count(AlertRoute.id), model=AlertRoute),
                of(func.count(AlertSilence.id), model=AlertSilence),
                of(func.max(AlertSilence.id), model=AlertSilence),
                of(func.count(AlertSilence.muted_by), model=AlertSilence),
                of(func.max(AlertSilence.snoozed_until), model=AlertSilence),
                of(func.min(AlertRoute.channel_id), model=AlertRoute),
                of(func.max(AlertRoute.channel_id), model=AlertRoute),
                of_emails(func.count(AlertEmail.id)),
                of_emails(func.max(AlertEmail.id)),
            )
        ).one()
    )


class DashboardCache:
    """Dashboards built in the last few minutes, one per workspace.

    Reused while younger than ``fresh_for`` seconds and while the workspace's
    :func:`fingerprint` is unchanged; :meth:`forget` drops one (after a sync).
    One build at a time per workspace: a second open waits for the first's.
    """

    def __init__(
        self, fresh_for: float = FRESH_FOR_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.fresh_for = fresh_for
        self.clock = clock
        self._built: dict[Hashable, tuple[float, tuple, Dashboard]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.builds = 0  # how many dashboards were built (not reused): for tests and the bench

    def get(
        self,
        workspace_id: int,
        current: Callable[[], tuple],
        build: Callable[[], Dashboard],
    ) -> Dashboard:
        with self._lock:
            lock = self._locks.setdefault(workspace_id, threading.Lock())
        with lock:
            stamp = current()
            cached = self._built.get(workspace_id)
            if cached and cached[1] == stamp and self.clock() - cached[0] < self.fresh_for:
                return cached[2]
            dashboard = build()
            self.builds += 1
            self._built[workspace_id] = (self.clock(), stamp, dashboard)
            return dashboard

    def forget(self, workspace_id: int) -> None:
        self._built.pop(workspace_id, None)
