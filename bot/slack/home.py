"""The App Home tab: the workspace's dashboard, published when someone opens it.

Slack sends ``app_home_opened`` and expects its ack at once; the listener
hands the person to :func:`publish` on the service's background pool. A
dashboard built in the last few minutes is reused (bot.home.DashboardCache),
so an open costs one query and a ``views.publish``. Everyone who may read the
workspace's costs sees the figures; admins also get the buttons that manage
it, each carrying the command it runs (the "a button is a command" contract:
action ids start with ``xu:``, values are the words of ``/xai-usage``).

A tab left open follows the store: after a sync or a setup change,
:class:`LiveHome` re-publishes it for whoever opened it in the last half
hour (the newest 50 per workspace), coalescing a burst into one round.

The 30-day trend is a sparkline and a weekly table, and a line of its weeks
drawn by Slack (a ``data_visualization`` block) where the workspace's Home tab
takes one: a tab that refuses it is published again without it, once, and
the workspace is remembered (bot.slack.refusals). Not the chart PNG: a Home
view shows an image only by URL or as a ``slack_file`` the viewer can
already open. The weekly table stays a code block: a Home tab takes no
``table`` block (bot.slack.limits).
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot import figures, formatting
from bot.charts import ChartData, Series
from bot.digests import prepaid_words
from bot.figures import PACE
from bot.home import Dashboard, build_dashboard, fingerprint
from bot.render import insights_section, render_json
from bot.slack import native
from bot.slack.access import Person, refusal_to_administer, refusal_to_use
from bot.slack.blocks import STATUS_ICONS
from bot.slack.refusals import publish_home, refusals_for
from bot.slack.service import (
    STORE_UNAVAILABLE,
    Invocation,
    SlackService,
    setup_for,
    store_unavailable,
)

log = logging.getLogger(__name__)

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
    return render_json(
        "slack/home.json.j2",
        d=dashboard,
        trend_chart=native.chart_block(trend_chart(dashboard), block_id="xu-chart-home"),
        admin=admin,
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
        prepaid=prepaid_words(dashboard.week.prepaid),
        week_vs=dashboard.week.previous,
        pace=PACE,
        spark=formatting.sparkline(trend),
        trend_span=formatting.day_span(dashboard.trend[0][0], dashboard.trend[-1][0]),
        weeks=weeks,
        unfetched_note=_unfetched_note(dashboard.trend),
        rows=rows,
        hidden=len(dashboard.connections) - len(rows),
        icons=STATUS_ICONS,
        labels={row.label: command_label(typed) for row, typed in shown},
        reconciled_rows=[
            replace(r, label=formatting.inert(r.label)) for r in dashboard.reconciled[:5]
        ],
        digests=[(s, formatting.mrkdwn_keep_references(s.text)) for s in dashboard.digests],
        budgets=[(b, formatting.mrkdwn_keep_references(b.text)) for b in dashboard.budgets],
        alerts=formatting.mrkdwn_keep_references(dashboard.alerts),
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


def publish(service: SlackService, client: WebClient, invocation: Invocation) -> dict | None:
    """Build (or reuse) and publish one person's Home tab; the view sent, or None."""
    try:
        person = service.person(client, invocation)
        view = view_for(service, invocation, person, lambda: dashboard_for(service, invocation))
    except Exception as error:
        if not store_unavailable(error):  # a bug: one line, the traceback at DEBUG, as app.py does
            log.error("could not build the Home tab: %s: %s", type(error).__name__, error)
            log.debug("the Home tab's traceback", exc_info=error)
            return None
        view = notice_view(f":warning: {STORE_UNAVAILABLE}")
    try:
        view = publish_home(
            client, invocation.team_id, invocation.user_id, view, refusals_for(service.runtime.db)
        )
    except SlackApiError as error:
        log.warning("views.publish refused the Home tab: %s", error.response.get("error"))
        return None
    return view


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

RECENT_FOR = 30 * 60
"""Seconds after someone opens the Home tab during which a change re-publishes it for them.

Slack says when the tab is opened, never when it is left or closed, so who is
looking is a guess: half an hour covers someone who keeps the dashboard beside
their work through a sync or a setup session; after that, their next open
shows the current figures anyway, and nobody's Slack quota is spent on tabs
long gone from the screen."""
MOST_VIEWERS = 50
"""People per workspace re-published in one round, the most recent openers first.

Each costs a ``users.info`` (their role now) and a ``views.publish``; both are
Slack's tier 4 (100+ a minute), so a round stays inside a minute's allowance."""
SETTLE_SECONDS = 1.0
"""A round waits this long after the last change, so a burst publishes once..."""
LONGEST_WAIT_SECONDS = 5.0
"""...but never longer than this after the first, so a steady stream still shows."""
LONGEST_RETRY_AFTER = 10
"""A 429 asking to wait at most this many seconds is waited out; a longer one ends the round."""
ROUND_ENDERS = frozenset(
    {
        "ratelimited",
        "not_authed",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
    }
)
"""Refusals that every later publish in the round would get too."""
TOKEN_GONE = frozenset(
    {"not_authed", "invalid_auth", "token_revoked", "token_expired", "account_inactive"}
)
"""Refusals after which the workspace's viewers are forgotten: their next open brings a token."""


def opened(service: SlackService, client: WebClient, invocation: Invocation) -> dict | None:
    """``app_home_opened``, on the background pool: note who is looking, then publish."""
    live = service.live_home
    if live is None:
        return publish(service, client, invocation)
    rounds = live.opened(client, invocation)
    view = publish(service, client, invocation)
    live.published(invocation.team_id, rounds)
    return view


class _BriefRateLimitRetry(RateLimitErrorRetryHandler):
    """Slack's 429 waited out when its Retry-After is short; a long one is given up on."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        for name, values in (response.headers if response is not None else {}).items():
            if name.lower() == "retry-after":
                value = values[0] if isinstance(values, list) else values
                return str(value).isdigit() and int(value) <= LONGEST_RETRY_AFTER
        return True  # none said: the handler waits about a second


@dataclass
class _Watched:
    """One workspace's recent Home viewers, and its next round if one is due."""

    client: WebClient
    viewers: OrderedDict[str, float] = field(default_factory=OrderedDict)
    """User id to when they last opened the tab (``LiveHome.clock``), oldest first."""
    shown: tuple | None = None
    """The fingerprint (bot.home.fingerprint) of what was last published to them."""
    force: bool = False  # a sync happened: its figures may move without the fingerprint
    first: float | None = None  # the first change the coming round answers
    due: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one round at a time
    started: int = 0  # rounds that began publishing


class LiveHome:
    """Re-publishes an open Home tab when its workspace's dashboard changes.

    Who looked is kept in this process's memory, per Slack team: a restart
    forgets it (the next open brings it back), and with several server
    processes each re-publishes for the people whose open it received.
    :meth:`changed` is told by whatever changed the store in this process (a
    sync, a setup command); :meth:`check_all`, called every minute by the
    scheduler, catches the rest (the daily sync, the terminal, other
    processes) by the workspace's fingerprint. Changes coalesce: a round runs
    :data:`SETTLE_SECONDS` after the last of a burst, builds the dashboard
    once (the shared DashboardCache), and publishes to each recent viewer the
    view their role allows, on its own small pool so neither an ack nor a sync
    ever waits for Slack here. Slack refusing is logged and never raised.
    """

    def __init__(
        self,
        service: SlackService,
        *,
        recent_for: float = RECENT_FOR,
        clock: Callable[[], float] = time.monotonic,
        most: int = MOST_VIEWERS,
        settle: float = SETTLE_SECONDS,
        longest: float = LONGEST_WAIT_SECONDS,
    ) -> None:
        self.service = service
        self.recent_for = recent_for
        self.most = most
        self.settle = settle
        self.longest = longest
        self.clock = clock  # seconds, as time.monotonic counts them
        self.rounds = 0  # rounds that published, to the end: for tests
        self._running = 0  # rounds handed to the pool and not yet ended
        self._watched: dict[str, _Watched] = {}
        self._cond = threading.Condition()
        self._dispatcher: threading.Thread | None = None
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xai-usage-home")

    def opened(self, client: WebClient, invocation: Invocation) -> int:
        """Someone opened the tab: keep them (and this team's token) for :data:`RECENT_FOR`.

        Returns how many rounds the team has begun, for :meth:`published`.
        """
        now = self.clock()
        with self._cond:
            if self._closed:
                return 0
            watched = self._watched.get(invocation.team_id)
            if watched is None or watched.client.token != client.token:
                republisher = _republisher(client)
                if watched is None:
                    watched = self._watched[invocation.team_id] = _Watched(republisher)
                watched.client = republisher
            watched.viewers.pop(invocation.user_id, None)
            watched.viewers[invocation.user_id] = now
            while len(watched.viewers) > self.most:
                watched.viewers.popitem(last=False)
            needs_baseline = watched.shown is None
            rounds = watched.started
        if needs_baseline:  # read before the opener's tab is built, so no change slips between
            try:
                stamp = self._stamp(invocation)
            except Exception:  # the opener's own publish says what is wrong
                return rounds
            with self._cond:
                if watched.shown is None:
                    watched.shown = stamp
        return rounds

    def published(self, team_id: str, rounds: int) -> None:
        """The opener's tab is out. A round that began meanwhile may have been overtaken
        by it (built before the change, sent after): one more round puts it right."""
        with self._cond:
            watched = self._watched.get(team_id)
            again = watched is not None and watched.started != rounds
        if again:
            self.changed(team_id, force=True)

    def changed(self, team_id: str, *, force: bool = False) -> None:
        """The team's dashboard may have changed: a round soon, if anyone is looking.

        ``force``: publish even if the fingerprint did not move (after a sync,
        whose new figures it does not count). Never blocks on the store or Slack.
        """
        now = self.clock()
        with self._cond:
            watched = self._live(team_id, now)
            if watched is None:
                return
            watched.force = watched.force or force
            watched.first = now if watched.first is None else watched.first
            watched.due = min(watched.first + self.longest, now + self.settle)
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="xai-usage-home-live", daemon=True
                )
                self._dispatcher.start()
            self._cond.notify_all()  # the dispatcher, and anyone in settled()

    def check_all(self) -> None:
        """Every team someone is looking at, re-published where the fingerprint moved."""
        with self._cond:
            teams = list(self._watched)
        for team_id in teams:
            self.changed(team_id)

    def _live(self, team_id: str, now: float) -> _Watched | None:
        """The team's watch without those who looked too long ago; None (forgotten) if empty."""
        watched = self._watched.get(team_id)
        if watched is None:
            return None
        for user, at in list(watched.viewers.items()):
            if now - at <= self.recent_for:
                break
            del watched.viewers[user]
        if not watched.viewers:
            del self._watched[team_id]
            return None
        return watched

    def _dispatch(self) -> None:
        """Start each team's round when it is due; ends when none is waiting."""
        while True:
            with self._cond:
                now = self.clock()
                waiting = [w.due for w in self._watched.values() if w.due is not None]
                if not waiting:
                    self._dispatcher = None
                    return
                if min(waiting) > now:
                    self._cond.wait(min(waiting) - now)
                    continue
                ready = []
                for team_id, watched in self._watched.items():
                    if watched.due is not None and watched.due <= now:
                        ready.append((team_id, watched, watched.force))
                        watched.due = watched.first = None
                        watched.force = False
                self._running += len(ready)  # under the same lock: settled() never sees a gap
            for n, (team_id, watched, force) in enumerate(ready):
                try:
                    self._pool.submit(self._round, team_id, watched, force)
                except RuntimeError:  # closed meanwhile: nothing more is published
                    with self._cond:
                        self._running -= len(ready) - n  # these will never run
                        self._cond.notify_all()
                    return

    def _stamp(self, invocation: Invocation) -> tuple:
        workspace_id = self.service.workspace_id(invocation)
        with self.service.runtime.db.session() as session:
            return fingerprint(session, workspace_id)

    def _round(self, team_id: str, watched: _Watched, force: bool) -> None:
        try:
            self._round_of(team_id, watched, force)
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def settled(self, timeout: float) -> bool:
        """Wait until no round is due or under way; False if ``timeout`` seconds pass first.

        What a test waits on to say "and nothing more was published", instead of sleeping.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed and (
                self._running or any(w.due is not None for w in self._watched.values())
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _round_of(self, team_id: str, watched: _Watched, force: bool) -> None:
        with watched.lock:
            with self._cond:
                now = self.clock()
                users = [
                    u for u, at in reversed(watched.viewers.items()) if now - at <= self.recent_for
                ]
                client = watched.client
            if not users:
                return
            anyone = Invocation(team_id=team_id, user_id=users[0])
            try:
                stamp = self._stamp(anyone)
                if not force and stamp == watched.shown:
                    return
                with self._cond:
                    watched.started += 1
                built: list[Dashboard] = []

                def dashboard() -> Dashboard:  # once per round, and only if someone may see it
                    if not built:
                        built.append(dashboard_for(self.service, anyone))
                    return built[0]

                finished = self._publish_each(team_id, watched, client, users, dashboard)
            except Exception as error:
                reason = STORE_UNAVAILABLE if store_unavailable(error) else type(error).__name__
                log.error("the Home tab was not re-published in %s: %s", team_id, reason)
                log.debug("the re-publish's traceback", exc_info=error)
                return
            if finished:  # else the next change, or the minute's check, tries again
                with self._cond:
                    watched.shown = stamp
                    self.rounds += 1

    def _publish_each(
        self,
        team_id: str,
        watched: _Watched,
        client: WebClient,
        users: list[str],
        dashboard: Callable[[], Dashboard],
    ) -> bool:
        """Each viewer's tab as their role allows; False if Slack stopped the round."""
        reached = 0

        def stopped(why: str) -> bool:
            log.warning(
                "Home tab re-published for %d of %d people in %s; %s",
                reached,
                len(users),
                team_id,
                why,
            )
            return False

        for user in users:
            invocation = Invocation(team_id=team_id, user_id=user)
            try:
                person = self.service.person(client, invocation)
                if person is None:  # gone, or Slack did not answer: their tab stays as it was
                    log.info("Home tab not re-published for %s: could not look them up", user)
                    continue
                view = view_for(self.service, invocation, person, dashboard)
                publish_home(client, team_id, user, view, refusals_for(self.service.runtime.db))
            except SlackApiError as error:
                code = str(error.response.get("error") or "unknown_error")
                if code not in ROUND_ENDERS:  # this person's (gone, say): forgotten till they open
                    log.info("Home tab not re-published for %s: %s", user, code)
                    with self._cond:
                        watched.viewers.pop(user, None)
                    continue
                if code in TOKEN_GONE:
                    with self._cond:
                        if self._watched.get(team_id) is watched:
                            del self._watched[team_id]
                return stopped(f"Slack said {code}")
            except OSError as error:
                return stopped(f"Slack unreachable ({type(error).__name__})")
            reached += 1
        log.info("Home tab re-published for %d of %d people in %s", reached, len(users), team_id)
        return True

    def close(self) -> None:
        """Stop: nothing more is queued, and rounds not yet started are dropped."""
        with self._cond:
            self._closed = True
            self._watched.clear()
            self._cond.notify_all()  # the dispatcher, and anyone in settled()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _republisher(client: WebClient) -> WebClient:
    """The opener's token and Slack address, with 429s waited out only when brief."""
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            _BriefRateLimitRetry(max_retry_count=2),
        ],
    )
