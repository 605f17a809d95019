"""The App Home tab: the workspace's dashboard, published when someone opens it.

Slack sends ``app_home_opened`` and expects its ack at once; the listener
queues the person's tab on :class:`HomePublisher`, Home's own small pool. A
dashboard built in the last few minutes is reused (bot.home.DashboardCache),
and a person's role for a few minutes, so an open costs one query and a
``views.publish``; opens in a burst publish once. Everyone who may read the
workspace's costs sees the figures; admins also get the buttons that manage
it, each carrying the command it runs (the "a button is a command" contract:
action ids start with ``xu:``, values are the words of ``/xai-usage``).

A tab left open follows the store: after a sync or a setup change,
:class:`LiveHome` re-publishes it for whoever opened it in the last half
hour (the newest 50 per workspace), coalescing a burst into one round. The
viewers and rounds are in the store, so replicas behind a load balancer
share them and each round is published once, by one process. Slack's rate
limits hold Home's tabs only: a 429 is waited out by a timer, never by a
thread that a sync, an export or a chart needs.

The 30-day trend is a sparkline and a weekly table, and a line of its weeks
drawn by Slack (a ``data_visualization`` block) where the workspace's Home tab
takes one: a tab that refuses it is published again without it, once, and
the workspace is remembered (bot.slack.refusals). Not the chart PNG: a Home
view shows an image only by URL or as a ``slack_file`` the viewer can
already open. The weekly table stays a code block: a Home tab takes no
``table`` block (bot.slack.limits).
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from sqlalchemy import delete, func, select, update

from bot import figures, formatting
from bot.charts import ChartData, Series
from bot.digests import digest_lines, prepaid_words
from bot.figures import PACE
from bot.home import Dashboard, build_dashboard, fingerprint
from bot.ledger import process_name
from bot.render import insights_section, render_json
from bot.setup import Listing
from bot.slack import native
from bot.slack.access import Person, look_up, refusal_to_administer, refusal_to_use
from bot.slack.blocks import LIST_TITLES, MAX_STATUS_ROWS, STATUS_ICONS, remove_control
from bot.slack.refusals import publish_home, refusals_for
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    setup_for,
    store_unavailable,
)
from bot.slack.setup_words import SLACK
from storage.db import upsert
from storage.models import HomeRound, HomeViewer

log = logging.getLogger(__name__)

MANAGE = (
    ("Connect an account", "xu:connect", "connect"),
    ("Add a digest", "xu:digest-add", "digest add"),
    ("Set a budget", "xu:budget-set", "budget set"),
    ("Alert channel", "xu:alerts", "alerts"),
)
"""The admins' Manage row: each button runs the command it names."""
MAX_CONNECTIONS = 30
"""Connections listed one by one; with the rest of the tab this stays under Slack's 100 blocks."""


def command_label(label: str) -> str:
    """A connection label as a command's argument: quoted as a person would type it."""
    if '"' not in label and "\\" not in label:
        return f'"{label}"'
    return shlex.quote(label)


def home_view(dashboard: Dashboard, *, admin: bool) -> dict[str, Any]:
    """The Home tab for one reader: the dashboard, and management buttons for admins."""
    trend = [cost for _, cost in dashboard.trend]
    weeks = [(label, figures.figure_words(week)) for label, week in dashboard.weeks]
    forecast = dashboard.forecast
    budget = dashboard.week.budget_usd
    # Labels are shown inert (no markup, no mention); the buttons carry them as typed.
    shown = [
        (replace(row, label=formatting.inert(row.label)), row.label)
        for row in dashboard.connections[:MAX_CONNECTIONS]
    ]
    rows = [row for row, _ in shown]
    steps = [step for step in dashboard.checklist if not step.done]
    top_lines, other_line = digest_lines(dashboard.week)
    return render_json(
        "slack/home.json.j2",
        d=dashboard,
        trend_chart=native.chart_block(trend_chart(dashboard), block_id="xu-chart-home"),
        admin=admin,
        next_step=steps[0].command if steps else None,
        # What the checklist offers is not offered twice: the Manage row has the rest.
        manage=[
            {"action_id": action_id, "text": text, "value": command}
            for text, action_id, command in MANAGE
            if command not in {step.command for step in steps}
        ],
        insights=insights_section(dashboard.insights),
        forecast=forecast,
        budget=budget,
        budget_used=(
            figures.budget_share_words(dashboard.month_to_date, budget)
            if budget is not None
            else None
        ),
        forecast_vs_budget=(
            formatting.delta(forecast.total, budget) if forecast and budget else None
        ),
        week_total=figures.figure_words(dashboard.week.total),
        top_lines=top_lines,
        other_line=other_line,
        prepaid=prepaid_words(dashboard.week.prepaid),
        week_vs=dashboard.week.previous,
        pace=PACE,
        spark=formatting.sparkline(trend),
        trend_span=formatting.day_span(dashboard.trend[0][0], dashboard.trend[-1][0]),
        weeks=weeks,
        unfetched_note=_unfetched_note(dashboard.trend),
        rows=rows,
        hidden=len(dashboard.connections) - len(rows),
        status_page=MAX_STATUS_ROWS,
        icons=STATUS_ICONS,
        labels={row.label: command_label(typed) for row, typed in shown},
        reconciled_rows=[
            replace(r, label=formatting.inert(r.label)) for r in dashboard.reconciled[:5]
        ],
        lists=[_listed(listing) for listing in (dashboard.digests, dashboard.budgets) if listing],
        alerts=formatting.mrkdwn_keep_references(dashboard.alerts),
        silenced=[(m, formatting.mrkdwn_keep_references(m.text)) for m in dashboard.silenced],
        last_month_name=formatting.month_label(dashboard.last_month.start),
        week_span=formatting.day_span(dashboard.week.period_start, dashboard.week.period_end),
    )


def trend_chart(dashboard: Dashboard) -> ChartData:
    """The trend as a line of its Monday–Sunday weeks (the weeks table's figures): Slack
    plots 20 points at most, so 30 days go by week. The first week, cut short by the
    30 days, is left out (a line would read its few days as a drop); this week, so far,
    is kept and labelled "(part)"; a week nobody fetched is left out."""
    weeks = list(dashboard.weeks)
    if len(weeks) > 1 and weeks[0][1].start != figures.monday_of(weeks[0][1].start):
        weeks = weeks[1:]
    firsts = tuple(figure.start for _, figure in weeks)
    values = tuple(figure.amount for _, figure in weeks)
    span = formatting.day_span(firsts[0], dashboard.trend[-1][0])
    return ChartData(
        title=f"Spend by week, {span}",
        subtitle="UTC days",
        kind="line",
        bucket="week",
        buckets=firsts,
        series=(Series("Spend", values),),
        total_usd=Decimal(0),
        gaps=frozenset(first for first, value in zip(firsts, values, strict=True) if value is None),
        end=dashboard.trend[-1][0],
        split="total",
    )


def _listed(listing: Listing) -> dict[str, Any]:
    """The first digests or budgets, each with its Remove button (which asks first), and
    how many more `list` shows."""
    more = (
        f"and {listing.more} more: `/xai-usage {listing.name} list` lists them all, "
        f"{SLACK.list_page} a page."
        if listing.more
        else ""
    )
    return {
        "title": LIST_TITLES[listing.name],
        "items": [
            (
                formatting.mrkdwn_keep_references(f"*{item.ident}*  {item.text}"),
                remove_control(item, f"xu:{listing.name}-remove-{item.ident}"),
            )
            for item in listing.items
        ],
        "more": more,
    }


def notice_view(text: str) -> dict[str, Any]:
    """A Home tab that only says something: a refusal, or that the store is down."""
    return {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
    }


def dashboard_for(service: SlackService, invocation: Invocation) -> Dashboard:
    """The workspace's dashboard: the cached one while nothing changed, else built now."""
    workspace_id = service.workspace_id(invocation)
    db = service.runtime.db

    def current() -> tuple:
        with db.session() as session:
            return fingerprint(session, workspace_id)

    def build() -> Dashboard:
        with db.session() as session:
            return build_dashboard(
                session,
                workspace_id,
                service.runtime.clock(),
                providers=service.runtime.providers,
                setup=setup_for(service, invocation),
            )

    return service.dashboards.get(workspace_id, current, build)


def view_for(
    service: SlackService,
    invocation: Invocation,
    person: Person | None,
    dashboard: Callable[[], Dashboard],
) -> dict[str, Any]:
    """What one person's Home tab shows: the figures (buttons for admins), or why not."""
    refusal = refusal_to_use(person, invocation.team_id)
    if refusal:
        return notice_view(refusal)
    admin = refusal_to_administer(person, invocation.team_id, service.settings.admins) is None
    return home_view(dashboard(), admin=admin)


def publish(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    person: Callable[[], Person | None],
) -> dict | None:
    """Build (or reuse) and publish one person's Home tab; the view sent, or None.

    Slack refusing the publish, or the look-up of ``person``, raises
    ``SlackApiError`` for the caller (:class:`HomePublisher`) to retry or drop.
    """
    try:
        view = view_for(service, invocation, person(), lambda: dashboard_for(service, invocation))
    except SlackApiError:
        raise
    except Exception as error:
        if not store_unavailable(error):  # a bug: one line, the traceback at DEBUG, as app.py does
            log.error("could not build the Home tab: %s: %s", type(error).__name__, error)
            log.debug("the Home tab's traceback", exc_info=error)
            return None
        view = notice_view(f":warning: {STORE_UNAVAILABLE}")
    return publish_home(
        client, invocation.team_id, invocation.user_id, view, refusals_for(service.runtime.db)
    )


def _unfetched_note(trend: tuple[tuple[date, Decimal | None], ...]) -> str:
    """Say which days of the trend nobody fetched: gaps in the line, left out of the sums."""
    missing = [day for day, cost in trend if cost is None]
    if not missing:
        return ""
    days = "1 day" if len(missing) == 1 else f"{len(missing)} days"
    reach = (trend[-1][0] - missing[0]).days + 1
    return (
        f"_{days} not fetched ({formatting.day_span(missing[0], missing[-1])}): gaps above, "
        f"weeks that miss them are of fetched days only; `sync --days {reach}` fetches them._"
    )


# -- kept live: re-published after a sync or a setup change ----------------------------

RECENT_FOR = timedelta(minutes=30)
"""How long after someone opens the Home tab a change re-publishes it for them.

Slack says when the tab is opened, never when it is left or closed, so who is
looking is a guess: half an hour covers someone who keeps the dashboard beside
their work through a sync or a setup session; after that, their next open
shows the current figures anyway, and nobody's Slack quota is spent on tabs
long gone from the screen."""
MOST_VIEWERS = 50
"""People per workspace re-published in one round, the most recent openers first.

Each costs a ``views.publish`` (and a ``users.info`` when their role was not looked up in
the last :data:`ROLE_FRESH_FOR`); both are Slack's tier 4 (100+ a minute), so a round
stays inside a minute's allowance."""
SETTLE = timedelta(seconds=1)
"""A round waits this long after the last change, so a burst publishes once..."""
LONGEST_WAIT = timedelta(seconds=5)
"""...but never longer than this after the first, so a steady stream still shows."""
ROUND_LEASE = timedelta(minutes=2)
"""A round claimed by a process that died is claimed again after this."""
PUBLISHERS = 2
"""Threads that send Home tabs, for every team: Home never waits on the pool that
syncs, exports and draws charts, and they never wait on Home."""
PUBLISH_ATTEMPTS = 3
"""Tries of one person's tab through Slack's rate limits before the next change or open."""
LONGEST_RETRY_AFTER = 60
"""A 429 asking to wait at most this many seconds is waited out (by a timer, not a
thread); a longer one drops what was due: the next change or open brings it."""
ROLE_FRESH_FOR = 300.0
"""Seconds a person's role (``users.info``) is reused: a burst of opens, and the rounds
after it, cost one look-up. A button still checks the clicker's role when clicked."""
TOKEN_GONE = frozenset(
    {"not_authed", "invalid_auth", "token_revoked", "token_expired", "account_inactive"}
)
"""Refusals after which the team's viewers are forgotten: their next open brings a token."""


def opened(
    service: SlackService,
    client: WebClient,
    invocation: Invocation,
    finished: Callable[[], None] | None = None,
) -> None:
    """``app_home_opened``: the opener's tab is queued for publishing; returns at once.
    ``finished`` is called once it is sent, or given up on."""
    if service.live_home is not None:
        service.live_home.opened(client, invocation, finished)
    elif finished is not None:
        finished()


@dataclass
class _Publish:
    """One person's Home tab to send. ``send`` builds it when it runs, so whatever
    changed while it waited is in it: the latest view wins."""

    team_id: str
    user_id: str
    send: Callable[[], object]
    opening: bool = False
    """Someone opening the tab now: sent before re-publishes of tabs already open."""
    attempts: int = 0
    finished: list[Callable[[], None]] = field(default_factory=list)
    """Called once this tab (or a newer one that took its place) is sent or given up on."""


class HomePublisher:
    """Sends Home tabs on a small pool of their own, coalesced per person.

    A person has at most one tab waiting (a newer one takes its place) and one in
    flight. A team's tabs go one at a time, openers first (Slack's rate limits are
    per team): a team's rate limit (429) holds only that team's tabs, until its
    ``Retry-After``, which a timer waits out, not a thread. Nothing else in the
    process (a command's answer, an export, a chart, a sync) shares these threads
    or waits for them.
    """

    def __init__(
        self,
        *,
        workers: int = PUBLISHERS,
        clock: Callable[[], float] = time.monotonic,
        on_token_gone: Callable[[str], None] = lambda team_id: None,
        on_refused: Callable[[str, str], None] = lambda team_id, user_id: None,
    ) -> None:
        self.workers = workers
        self.clock = clock
        self.on_token_gone = on_token_gone
        self.on_refused = on_refused
        self.sent = 0  # tabs Slack took: for tests and the bench
        self._cond = threading.Condition()
        self._waiting: dict[str, OrderedDict[str, _Publish]] = {}  # team -> user -> tab
        self._sending: set[str] = set()  # teams with a tab in flight
        self._paused: dict[str, float] = {}  # team -> not before (after a 429)
        self._dispatcher: threading.Thread | None = None
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xai-usage-home")

    def submit(self, tab: _Publish) -> None:
        with self._cond:
            if self._closed:
                return
            queue = self._waiting.setdefault(tab.team_id, OrderedDict())
            older = queue.get(tab.user_id)
            queue[tab.user_id] = tab  # a tab already waiting keeps its place
            if older is not None:
                tab.opening = tab.opening or older.opening
                tab.finished = [*older.finished, *tab.finished]
            elif tab.opening:
                queue.move_to_end(tab.user_id, last=False)
            self._wake()

    def idle(self) -> bool:
        """Nothing waiting (a retry included) and nothing in flight."""
        with self._cond:
            return not self._sending and not any(self._waiting.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._waiting.clear()
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _wake(self) -> None:  # with self._cond held
        if self._dispatcher is None and not self._closed:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="xai-usage-home-publish", daemon=True
            )
            self._dispatcher.start()
        self._cond.notify_all()

    def _dispatch(self) -> None:
        """Hand each team's next tab to the pool when the team and a thread are free."""
        while True:
            with self._cond:
                now = self.clock()
                queued = [team for team, tabs in self._waiting.items() if tabs]
                if self._closed or not queued:
                    self._dispatcher = None
                    self._cond.notify_all()
                    return
                free = [t for t in queued if t not in self._sending]
                ready = [t for t in free if self._paused.get(t, 0.0) <= now]
                room = self.workers - len(self._sending)
                if not ready or room <= 0:
                    later = [self._paused[t] - now for t in free if t not in ready]
                    self._cond.wait(min(later) if later and room > 0 else None)
                    continue
                tabs = []
                for team in ready[:room]:
                    _, tab = self._waiting[team].popitem(last=False)
                    self._sending.add(team)
                    tabs.append(tab)
            for tab in tabs:
                try:
                    self._pool.submit(self._send, tab)
                except RuntimeError:  # closed meanwhile
                    return

    def _send(self, tab: _Publish) -> None:
        retry_in: float | None = None
        try:
            tab.send()
            self.sent += 1
        except SlackApiError as error:
            retry_in = self._refused(tab, error)
        except OSError as error:
            log.warning(
                "Home tab not published for %s in %s: Slack unreachable (%s)",
                tab.user_id,
                tab.team_id,
                type(error).__name__,
            )
        except Exception as error:
            reason = STORE_UNAVAILABLE if store_unavailable(error) else type(error).__name__
            log.error("the Home tab was not published in %s: %s", tab.team_id, reason)
            log.debug("the publish's traceback", exc_info=error)
        finally:
            with self._cond:
                self._sending.discard(tab.team_id)
                finished, tab.finished = tab.finished, []
                if retry_in is not None:
                    until = self.clock() + retry_in
                    self._paused[tab.team_id] = max(self._paused.get(tab.team_id, 0.0), until)
                    tab.attempts += 1
                    queue = self._waiting.setdefault(tab.team_id, OrderedDict())
                    if tab.user_id not in queue:
                        queue[tab.user_id] = tab
                        queue.move_to_end(tab.user_id, last=False)  # it was first in line
                    # else a newer tab took its place: it is sent for both
                    queue[tab.user_id].finished[:0] = finished
                    finished = []
                self._wake()
            for call in finished:
                call()

    def _refused(self, tab: _Publish, error: SlackApiError) -> float | None:
        """What a refusal means: seconds to wait before trying again, or None (dropped)."""
        code = str(error.response.get("error") or "unknown_error")
        if code == "ratelimited":
            wait = _retry_after(error.response)
            if wait <= LONGEST_RETRY_AFTER and tab.attempts + 1 < PUBLISH_ATTEMPTS:
                log.info("Home tab for %s waits %ss: Slack said ratelimited", tab.user_id, wait)
                return wait
            log.warning(
                "Home tab not published for %s in %s; Slack said ratelimited (retry after %ss): "
                "the next change or open brings it",
                tab.user_id,
                tab.team_id,
                wait,
            )
            return None
        if code in TOKEN_GONE:
            log.warning("Home tabs not published in %s; Slack said %s", tab.team_id, code)
            with self._cond:
                self._waiting.pop(tab.team_id, None)
            self.on_token_gone(tab.team_id)
            return None
        log.info("Home tab not re-published for %s: %s", tab.user_id, code)
        self.on_refused(tab.team_id, tab.user_id)  # gone, say: forgotten till they open
        return None


def _retry_after(response: Any) -> float:
    """Seconds a 429's ``Retry-After`` asks for (one when it says nothing usable)."""
    for name, value in (getattr(response, "headers", None) or {}).items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, list) else value
            text = str(value).strip()
            return float(text) if text.isascii() and text.isdigit() else 1.0
    return 1.0


class LiveHome:
    """Re-publishes an open Home tab when its workspace's dashboard changes, once, from
    whichever server or worker process gets to it first.

    Who looked, and what their tabs last showed, is in the store (``home_viewers``,
    ``home_rounds``), so behind a load balancer each replica's viewers are
    re-published, by one process. :meth:`changed` is told by whatever changed the
    store in this process (a sync, a setup command) and returns at once: a thread
    of this class stamps the change in the store, and once the burst settles
    (:data:`SETTLE` after the last change, at most :data:`LONGEST_WAIT` after the
    first) claims the round with a lease, as the ledger claims work. The round
    lists the team's recent viewers, and, when the workspace's fingerprint moved
    (or a sync forced it), hands each one's tab to the :class:`HomePublisher`.
    :meth:`check_all`, called every minute with the scheduled work, catches what
    changed elsewhere (the daily sync, the terminal) by the fingerprint.
    """

    def __init__(
        self,
        service: SlackService,
        token_for: Callable[[str], str | None],
        *,
        recent_for: timedelta = RECENT_FOR,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        most: int = MOST_VIEWERS,
        settle: timedelta = SETTLE,
        longest: timedelta = LONGEST_WAIT,
        owner: str | None = None,
    ) -> None:
        self.service = service
        self.token_for = token_for
        self.recent_for = recent_for
        self.clock = clock
        self.most = most
        self.settle = settle
        self.longest = longest
        self.owner = owner or process_name()
        self.rounds = 0  # rounds that handed out tabs, in this process: for tests
        self.publisher = HomePublisher(on_token_gone=self._forget_team, on_refused=self._forget)
        self._marks: dict[str, bool] = {}  # changes not yet stamped in the store: team -> force
        self._working = False
        self._cond = threading.Condition()
        self._dispatcher: threading.Thread | None = None
        self._closed = False
        self._roles: dict[tuple[str, str], tuple[float, Person | None]] = {}
        self._clients: dict[str, WebClient] = {}

    # -- what the Slack side calls --------------------------------------------------

    def opened(
        self,
        client: WebClient,
        invocation: Invocation,
        finished: Callable[[], None] | None = None,
    ) -> None:
        """Someone opened the tab: they are kept as a viewer, and their tab is published
        (ahead of re-publishes; a burst of their opens publishes once); then
        ``finished`` is called."""
        sender = self._client(client.token, client.base_url)

        def send() -> None:
            try:
                self._remember(invocation)
            except Exception as error:  # the tab itself says the store is down
                if not store_unavailable(error):
                    raise
            publish(self.service, sender, invocation, lambda: self._person(sender, invocation))

        self.publisher.submit(
            _Publish(
                invocation.team_id,
                invocation.user_id,
                send,
                opening=True,
                finished=[finished] if finished is not None else [],
            )
        )

    def changed(self, team_id: str, *, force: bool = False) -> None:
        """The team's dashboard may have changed: a round soon, if anyone is looking.

        ``force``: publish even if the fingerprint did not move (after a sync,
        whose new figures it does not count). Never blocks on the store or Slack.
        """
        with self._cond:
            if self._closed:
                return
            self._marks[team_id] = self._marks.get(team_id, False) or force
            self._wake()

    def check_all(self) -> None:
        """Every team someone is looking at, re-published where the fingerprint moved;
        viewers gone quiet for :attr:`recent_for` are forgotten."""
        recent = self.clock() - self.recent_for
        with self.service.runtime.db.transaction() as session:
            session.execute(delete(HomeViewer).where(HomeViewer.opened_at < recent))
            teams = list(session.scalars(select(HomeViewer.team_id).distinct()))
        for team_id in teams:
            self.changed(team_id)

    def settled(self, timeout: float) -> bool:
        """Wait until no round is due or under way and no tab waits to be sent; False if
        ``timeout`` seconds pass first. What a test waits on instead of sleeping."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                busy = bool(self._marks) or self._working
            if not busy and self.publisher.idle() and not self._rounds_pending():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def close(self) -> None:
        """Stop: nothing more is stamped or published from this process."""
        with self._cond:
            self._closed = True
            self._marks.clear()
            self._cond.notify_all()
        self.publisher.close()

    # -- the store ------------------------------------------------------------------

    def _remember(self, invocation: Invocation) -> None:
        """Note the opener (and, for a team's first viewer, what its tab shows now: read
        before the opener's tab is built, so no change slips between)."""
        workspace_id = self.service.workspace_id(invocation)
        now = self.clock()
        with self.service.runtime.db.transaction() as session:
            viewer = upsert(session, HomeViewer).values(
                team_id=invocation.team_id,
                user_id=invocation.user_id,
                workspace_id=workspace_id,
                opened_at=now,
            )
            session.execute(
                viewer.on_conflict_do_update(
                    index_elements=["team_id", "user_id"], set_={"opened_at": now}
                )
            )
            shown = session.scalar(
                select(HomeRound.shown).where(HomeRound.team_id == invocation.team_id)
            )
        if shown is not None:
            return
        stamp = self._stamp(workspace_id)
        with self.service.runtime.db.transaction() as session:
            new = upsert(session, HomeRound).values(
                team_id=invocation.team_id, workspace_id=workspace_id, shown=stamp
            )
            session.execute(new.on_conflict_do_nothing(index_elements=["team_id"]))
            session.execute(
                update(HomeRound)
                .where(HomeRound.team_id == invocation.team_id, HomeRound.shown.is_(None))
                .values(shown=stamp)
            )

    def _stamp(self, workspace_id: int) -> str:
        with self.service.runtime.db.session() as session:
            return hashlib.sha256(repr(fingerprint(session, workspace_id)).encode()).hexdigest()

    def _stamp_changes(self, marks: dict[str, bool]) -> None:
        """Note the changes in the store, for teams someone looked at lately."""
        now = self.clock()
        with self.service.runtime.db.transaction() as session:
            for team_id, force in sorted(marks.items()):  # rows locked in one order
                looking = (
                    select(HomeViewer.user_id)
                    .where(
                        HomeViewer.team_id == team_id,
                        HomeViewer.opened_at >= now - self.recent_for,
                    )
                    .exists()
                )
                values: dict[str, Any] = {
                    "changed_first": func.coalesce(HomeRound.changed_first, now),
                    "changed_last": now,
                }
                if force:
                    values["forced"] = True
                session.execute(
                    update(HomeRound)
                    .where(HomeRound.team_id == team_id, looking)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )

    def _rounds_pending(self) -> bool:
        with self.service.runtime.db.session() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(HomeRound)
                    .where(HomeRound.changed_first.is_not(None) | HomeRound.claimed_by.is_not(None))
                )
                > 0
            )

    def _forget_team(self, team_id: str) -> None:
        with self.service.runtime.db.transaction() as session:
            session.execute(delete(HomeViewer).where(HomeViewer.team_id == team_id))

    def _forget(self, team_id: str, user_id: str) -> None:
        with self.service.runtime.db.transaction() as session:
            session.execute(
                delete(HomeViewer).where(
                    HomeViewer.team_id == team_id, HomeViewer.user_id == user_id
                )
            )

    # -- rounds -----------------------------------------------------------------------

    def _wake(self) -> None:  # with self._cond held
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="xai-usage-home-live", daemon=True
            )
            self._dispatcher.start()
        self._cond.notify_all()

    def _dispatch(self) -> None:
        """Stamp this process's changes, then run the rounds that are due; sleeps until
        the next one is, and ends when none is pending anywhere."""
        while True:
            with self._cond:
                if self._closed:
                    self._dispatcher = None
                    return
                marks, self._marks = self._marks, {}
                self._working = True
            wait: float | None
            try:
                if marks:
                    self._stamp_changes(marks)
                wait = self._run_due()
            except Exception as error:  # the store: the minute's check_all marks them again
                reason = STORE_UNAVAILABLE if store_unavailable(error) else type(error).__name__
                log.error("the Home tabs were not re-published: %s", reason)
                log.debug("the re-publish's traceback", exc_info=error)
                wait = None
            with self._cond:
                self._working = False
                self._cond.notify_all()
                if self._marks or self._closed:
                    continue
                if wait is None:
                    self._dispatcher = None
                    return
                self._cond.wait(wait)

    def _run_due(self) -> float | None:
        """Claim and run every round that is due; seconds until the next, None if none."""
        now = self.clock()
        with self.service.runtime.db.session() as session:
            pending = list(
                session.execute(
                    select(
                        HomeRound.team_id,
                        HomeRound.changed_first,
                        HomeRound.changed_last,
                        HomeRound.lease_until,
                    ).where(HomeRound.changed_first.is_not(None))
                )
            )
        waits: list[float] = []
        for team_id, first, last, lease in pending:
            due = min(first + self.longest, last + self.settle)
            if lease is not None and lease > due:  # a round under way elsewhere: after it
                due = lease
            if due > now:
                waits.append((due - now).total_seconds())
                continue
            forced = self._claim(team_id, last, now)
            if forced is not None:
                self._round(team_id, forced)
                waits.append(0.0)  # look again: changes may have come in meanwhile
        return min(waits) if waits else None

    def _claim(self, team_id: str, last: datetime, now: datetime) -> bool | None:
        """The round is this process's (whether it is forced), or None: claimed elsewhere,
        or changed again since it was read."""
        with self.service.runtime.db.transaction() as session:
            return session.scalar(
                update(HomeRound)
                .where(
                    HomeRound.team_id == team_id,
                    HomeRound.changed_last == last,
                    HomeRound.lease_until.is_(None) | (HomeRound.lease_until < now),
                )
                .values(
                    changed_first=None,
                    changed_last=None,
                    forced=False,
                    started=HomeRound.started + 1,
                    claimed_by=self.owner,
                    lease_until=now + ROUND_LEASE,
                )
                .returning(HomeRound.forced)
                .execution_options(synchronize_session=False)
            )

    def _round(self, team_id: str, forced: bool) -> None:
        """The team's recent viewers get their tab, if what it shows may have moved."""
        now = self.clock()
        with self.service.runtime.db.session() as session:
            users = list(
                session.scalars(
                    select(HomeViewer.user_id)
                    .where(
                        HomeViewer.team_id == team_id,
                        HomeViewer.opened_at >= now - self.recent_for,
                    )
                    .order_by(HomeViewer.opened_at.desc(), HomeViewer.user_id)
                    .limit(self.most)
                )
            )
            workspace_id, shown = session.execute(
                select(HomeRound.workspace_id, HomeRound.shown).where(HomeRound.team_id == team_id)
            ).one()
        stamp = shown
        try:
            if not users:
                return
            stamp = self._stamp(workspace_id)
            if not forced and stamp == shown:
                return
            token = self.token_for(team_id)
            if token is None:
                log.warning("Home tabs not re-published in %s: no token for it", team_id)
                return
            client = self._client(token, self.service.settings.api_url)
            for user in users:
                invocation = Invocation(team_id=team_id, user_id=user)
                self.publisher.submit(
                    _Publish(team_id, user, partial(self._republish, client, invocation))
                )
            self.rounds += 1
            log.info("Home tab re-published for %d people in %s", len(users), team_id)
        finally:
            with self.service.runtime.db.transaction() as session:
                session.execute(
                    update(HomeRound)
                    .where(HomeRound.team_id == team_id, HomeRound.claimed_by == self.owner)
                    .values(shown=stamp, claimed_by=None, lease_until=None)
                    .execution_options(synchronize_session=False)
                )

    def _republish(self, client: WebClient, invocation: Invocation) -> None:
        person = self._person(client, invocation)
        if person is None:  # gone, or Slack did not answer: their tab stays as it was
            log.info("Home tab not re-published for %s: could not look them up", invocation.user_id)
            return
        publish(self.service, client, invocation, lambda: person)

    # -- Slack ----------------------------------------------------------------------

    def _person(self, client: WebClient, invocation: Invocation) -> Person | None:
        """Their role, looked up at most every :data:`ROLE_FRESH_FOR` seconds; a rate
        limit raises (the publisher waits it out)."""
        key = (invocation.team_id, invocation.user_id)
        now = time.monotonic()
        known = self._roles.get(key)
        if known is not None and now - known[0] < ROLE_FRESH_FOR:
            return known[1]
        person = look_up(client, invocation.user_id, rate_limits=True)
        self._roles[key] = (now, person)
        return person

    def _client(self, token: str | None, base_url: str) -> WebClient:
        """A Web API client for this token whose 429s come back to the publisher at once."""
        key = f"{base_url} {token}"
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = WebClient(
                token=token,
                base_url=base_url,
                timeout=10,
                retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
            )
        return client
