"""HTTP benchmark: ``/healthz`` and a signed ``/xai-usage`` while 1,000 slow clients hold on.

The attack is slowloris from one client: connections that send half a
request line and stop, and connections that drip one byte of headers every
2 seconds. Whenever the server cuts one (the request deadline), the attacker
opens another at once, so 1,000 stay open for the whole measurement, and
the server keeps accepting, timing out and closing all the while.

The set-up is ``xai-usage serve --http`` as ``serve`` builds it: a
``Runtime`` on a temporary SQLite store, ``build_app``, ``wsgi_app`` and
:func:`bot.slack.server.http_server` with the default limits, on 127.0.0.1
in a thread of this process; the Slack stand-in
(:mod:`tests.fakes.slack_api`) answers ``auth.test``, ``users.info`` and the
response URLs. The attacker is a separate process (its own interpreter, so
it does not share this one's GIL), one non-blocking loop over its sockets.

Measured, one request at a time on a new connection each (as a load
balancer or Slack may), every 20 ms or so for about 12 seconds, longer than
the request deadline so cut-and-reopen churn is under way: the time to a
``/healthz`` 200, and to the HTTP 200 of a signed ``/xai-usage help``
(its reply to the response URL is counted: the work after the ack happened).
Then the same with no attacker, for comparison. Target: both p99 under 1 s
under attack.

Not a timed test: ``tests/bot/slack/test_server.py`` checks the behaviour
with 150 slow connections; this measures it at 1,000.
"""

from __future__ import annotations

import base64
import logging
import multiprocessing
import resource
import selectors
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bench.table import Column, Scoreboard, Table, count, ms, percentile
from bot.config import Settings
from bot.runtime import Runtime
from bot.slack.app import build_app
from bot.slack.server import DeadlineServer, http_server, stop_waitress, wsgi_app
from bot.slack.settings import SlackSettings
from storage.crypto import Keyring
from tests.fakes.slack_api import SlackStandIn

SLOW_CONNECTIONS = 1_000
DRIP_EVERY = 2.0
"""Seconds between the bytes a dripping connection sends."""
MEASURE_FOR = 12.0
PROBE_GAP = 0.02
TARGET_P99 = 1.0
PROBE_TIMEOUT = 10.0

SLACK_TEAM = "T0BENCH"
ADMIN = "UADMIN"
BOT_TOKEN = "xoxb-1111-2222-benchtokenvalue"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

COLUMNS = (
    Column("slow clients", 12, "<"),
    Column("request", 18, "<"),
    Column("n", 5),
    Column("p50", 9),
    Column("p99", 9),
    Column("max", 9),
    Column("failed", 6),
    Column(f"p99<{TARGET_P99:g} s", 9),
)


# -- the attacker (its own process) ---------------------------------------------------


def attack(port: int, total: int, ready, stop, report) -> None:
    """Keep ``total`` slow connections open to 127.0.0.1:``port`` until ``stop`` is set.

    Half send ``POST /slack/ev`` and stop; half drip one header byte every
    DRIP_EVERY seconds. A connection the server closes is replaced at once.
    Every second, ``report`` gets (open now, opened in all, closed by the server).
    """
    _raise_open_files_limit()
    selector = selectors.DefaultSelector()
    next_drip: dict[socket.socket, float] = {}
    started: set[socket.socket] = set()
    opened = closed = 0

    def open_one(kind: str) -> None:
        nonlocal opened
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_READ, kind)
        next_drip[sock] = time.monotonic() + 0.05  # once the connect has completed
        opened += 1

    for n in range(total):
        open_one("drip" if n % 2 else "half")
    ready.set()
    last_report = 0.0
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # the server closed it: replace it
                selector.unregister(sock)
                next_drip.pop(sock, None)
                started.discard(sock)
                sock.close()
                closed += 1
                open_one(key.data)
        now = time.monotonic()
        for sock, due in list(next_drip.items()):
            if due > now:
                continue
            try:
                if selector.get_key(sock).data == "half":
                    sock.send(b"POST /slack/ev")
                    del next_drip[sock]  # then silence
                    continue
                if sock in started:
                    sock.send(b"a")
                else:
                    sock.send(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    started.add(sock)
                next_drip[sock] = now + DRIP_EVERY
            except (BlockingIOError, InterruptedError):
                next_drip[sock] = now + 0.05  # not connected yet
            except OSError:
                pass  # reset: the read side sees it and replaces it
        if now - last_report >= 1.0:
            report.put((len(selector.get_map()), opened, closed))
            last_report = now
    for key in list(selector.get_map().values()):
        key.fileobj.close()


# -- measuring ------------------------------------------------------------------------


@dataclass
class Probe:
    timings: list[float] = field(default_factory=list)
    failed: int = 0

    def record(self, seconds: float, ok: bool) -> None:
        if ok:
            self.timings.append(seconds)
        else:
            self.failed += 1


def _signed_help(response_url: str) -> tuple[str, dict[str, str]]:
    body = urlencode(
        {
            "command": "/xai-usage",
            "text": "help",
            "team_id": SLACK_TEAM,
            "team_domain": "acme",
            "user_id": ADMIN,
            "channel_id": "CCOSTS",
            "response_url": response_url,
            "trigger_id": f"bench.{time.monotonic_ns()}",
            "api_app_id": "A0BENCH",
        }
    )
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    return body, {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def measure(url: str, slack: SlackStandIn) -> tuple[Probe, Probe, list[str]]:
    """/healthz and signed help, alternately, each on a new connection."""
    health, ack = Probe(), Probe()
    url_ids = []
    # No keep-alive: every probe must be accepted past the slow clients.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=PROBE_TIMEOUT, limits=limits) as http:
        until = time.monotonic() + MEASURE_FOR
        while time.monotonic() < until:
            began = time.perf_counter()
            try:
                ok = http.get(f"{url}/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            health.record(time.perf_counter() - began, ok)
            response_url = slack.response_url()
            body, headers = _signed_help(response_url)
            began = time.perf_counter()
            try:
                ok = http.post(f"{url}/slack/events", content=body, headers=headers).is_success
            except httpx.HTTPError:
                ok = False
            ack.record(time.perf_counter() - began, ok)
            if ok:
                url_ids.append(response_url.rsplit("/", 1)[-1])
            time.sleep(PROBE_GAP)
    return health, ack, url_ids


@contextmanager
def serving(slack: SlackStandIn) -> Iterator[tuple[DeadlineServer, str]]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "XAI_USAGE_DATA_DIR": data_dir,
            "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(Keyring.generate_key()).decode(),
            "XAI_USAGE_NO_PLUGINS": "1",
            "SLACK_API_URL": slack.api_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        }
        runtime = Runtime(Settings.from_env(env))
        settings = SlackSettings.from_env(env, force_http=True, port=0)
        app, _ = build_app(runtime, settings)
        server = http_server(
            wsgi_app(app, runtime, SIGNING_SECRET), settings.limits, host="127.0.0.1", port=0
        )
        thread = threading.Thread(target=server.run, name="bench-http", daemon=True)
        thread.start()
        try:
            yield server, f"http://127.0.0.1:{server.effective_port}"
        finally:
            stop_waitress(server)
            thread.join(timeout=10)
            runtime.close()


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65_536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# -- running --------------------------------------------------------------------------


def run(score: Scoreboard) -> None:
    table = Table(
        f"HTTP: /healthz and a signed /xai-usage (to HTTP 200), one at a time on new "
        f"connections for {MEASURE_FOR:g} s, while {count(SLOW_CONNECTIONS)} slow connections "
        f"(half a request line, or a byte every {DRIP_EVERY:g} s) are held open; "
        f"target p99 < {TARGET_P99:g} s",
        COLUMNS,
    )
    _raise_open_files_limit()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SLOW_CONNECTIONS + 200:
        score.fail(f"the open files limit ({soft}) is below {SLOW_CONNECTIONS + 200}")
        return
    logging.getLogger("waitress").setLevel(logging.ERROR)
    with SlackStandIn(team_id=SLACK_TEAM) as slack:
        slack.add_token(BOT_TOKEN)
        slack.add_user(ADMIN, name="ada", is_admin=True)
        with serving(slack) as (server, url):
            for attackers in (SLOW_CONNECTIONS, 0):
                _measure_row(score, table, server, url, slack, attackers)


def _measure_row(
    score: Scoreboard,
    table: Table,
    server: DeadlineServer,
    url: str,
    slack: SlackStandIn,
    attackers: int,
) -> None:
    context = multiprocessing.get_context("spawn")
    ready, stop, report = context.Event(), context.Event(), context.Queue()
    process = None
    if attackers:
        process = context.Process(
            target=attack, args=(int(server.effective_port), attackers, ready, stop, report)
        )
        process.start()
        ready.wait(30)
        time.sleep(1.0)  # every connection accepted and stalled before timing
    dropped_before = server.dropped
    try:
        health, ack, url_ids = measure(url, slack)
    finally:
        stop.set()
        if process is not None:
            process.join(timeout=10)
    reports = []
    while not report.empty():
        reports.append(report.get())
    label = count(attackers) if attackers else "none"
    for name, probe in (("GET /healthz", health), ("signed command ack", ack)):
        if not probe.timings:
            table.row(label, name, 0, "-", "-", "-", probe.failed, score.target(name, False))
            continue
        p99 = percentile(probe.timings, 99)
        passed = p99 < TARGET_P99 and probe.failed == 0
        verdict = score.target(f"{name} p99 with {label} slow clients", passed)
        table.row(
            label,
            name,
            len(probe.timings) + probe.failed,
            ms(percentile(probe.timings, 50)),
            ms(p99),
            ms(max(probe.timings)),
            probe.failed,
            verdict,
        )
    with suppress(AssertionError):  # counted just below
        slack.wait_for(lambda: _replied(slack, url_ids) == len(url_ids), timeout=15)
    replied = _replied(slack, url_ids)
    if replied != len(url_ids):
        score.fail(f"{len(url_ids) - replied} of {len(url_ids)} acked commands never replied")
    if attackers:
        held = [open_now for open_now, _, _ in reports]
        if not held or min(held) < attackers * 0.95:
            score.fail(f"the attacker could not hold {attackers} connections open ({held})")
            return
        _, opened, closed = reports[-1]
        table.note(
            f"slow connections held open: {min(held)}-{max(held)}; the server cut "
            f"{count(server.dropped - dropped_before)} during the measurement; the attacker "
            f"opened {count(opened)} in all ({count(closed)} replacements)"
        )


def _replied(slack: SlackStandIn, url_ids: list[str]) -> int:
    wanted = set(url_ids)
    return len({r.url_id for r in slack.responses if r.url_id in wanted})
