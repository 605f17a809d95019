"""``xai-usage serve``: the Slack app with its scheduler; ``xai-usage worker``: the
scheduler alone.

``serve --no-scheduler`` and ``worker`` split the two: any number of Slack
fronts behind a load balancer, and the scheduled work (the daily sync, shared
out between workers; digests; alerts) in processes of its own, so a sync never
competes with a command's acknowledgement for the interpreter.

Socket Mode when SLACK_APP_TOKEN is set (no public URL needed), otherwise
HTTP on waitress, a production WSGI server: POST /slack/events, the OAuth
install paths, and GET /healthz (200 only when the database answers).

Waitress reads requests on one event loop and hands only complete ones to
its threads, so slow clients cost a socket, not a thread. Its defaults still
let anyone take it offline: 100 connections at most (then it stops
accepting), ``select()`` (no file descriptor above 1024), and only an
inactivity timeout, which a client dripping a byte every few seconds never
trips. :func:`http_server` lifts the limit, polls, gives every request a
total deadline for its headers and body, and when full drops the slowest
unfinished connection instead of refusing new ones.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from sqlalchemy import text
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from bot.numbers import whole_number
from bot.runtime import Runtime
from bot.scheduler import start_scheduler, work_until_stopped
from bot.slack.answering import AnswerProcesses
from bot.slack.app import answering_service, build_app
from bot.slack.delivery import SlackDelivery
from bot.slack.inbound import Malformed, parse_body, shape_problem, signature_valid
from bot.slack.settings import HttpLimits, SlackSettings
from storage.db import missing_keys_warning

log = logging.getLogger(__name__)

THREADS = 16
ACK_SWITCH_INTERVAL = 0.001
"""Seconds a thread holds the GIL before one that waits for it takes it (serve)."""
MAX_BODY_BYTES = 1024 * 1024
"""Slack's largest payloads (a view submission) are tens of kilobytes."""
MAX_HEADER_BYTES = 64 * 1024
ACCEPT_BATCH = 256
SPARE_FILES = 64
"""File descriptors kept for the database, Slack calls, logs: not for clients."""


def wsgi_app(
    app: App,
    runtime: Runtime,
    signing_secret: str,
    *,
    clock: Callable[[], float] = time.time,
    answerers: AnswerProcesses | None = None,
) -> Callable[..., Iterable[bytes]]:
    """/healthz, then Bolt; a POST reaches Bolt only signed and well formed.

    The signature is checked here on the raw bytes, before anything is
    parsed (Bolt would decode and parse first): unsigned is 401. Signed but
    malformed is 400 with one log line, never a traceback.
    """
    slack = SlackRequestHandler(app)
    unsigned = _Tally("refused %d unsigned or stale request(s) (401) since the last such line")

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            healthy = database_answers(runtime)
            health: dict[str, Any] = {"ok": healthy, "database": "up" if healthy else "down"}
            if healthy and (missing := _keys_missing(runtime)):
                # Still serving (a balancer must not pull every replica): said, not failed.
                health["keys_missing"] = missing
                health["warning"] = missing_keys_warning(missing)
            if answerers is not None:  # answered all the same when they are gone: said
                health["answer_processes"] = answerers.health()
            body = json.dumps(health).encode()
            return _answer(start_response, "200 OK" if healthy else "503 Service Unavailable", body)
        if environ.get("REQUEST_METHOD") == "POST":
            raw = _read_body(environ)
            if raw is None or not signature_valid(
                signing_secret,
                environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
                environ.get("HTTP_X_SLACK_SIGNATURE"),
                raw,
                clock(),
            ):
                unsigned.add()
                return _answer(start_response, "401 Unauthorized", b'{"error":"unsigned"}')
            try:
                problem = shape_problem(parse_body(raw, environ.get("CONTENT_TYPE", "")))
            except Malformed as error:
                problem = str(error)
            if problem:
                log.warning("refused a signed but malformed request: %s", problem)
                return _answer(start_response, "400 Bad Request", b'{"error":"malformed"}')
            environ["wsgi.input"] = io.BytesIO(raw)  # Bolt reads it again
        try:
            return slack(environ, start_response)
        except Exception as error:  # Bolt building the request, before any listener
            log.warning("refused a request Bolt could not read (%s)", type(error).__name__)
            return _answer(start_response, "400 Bad Request", b'{"error":"malformed"}')

    return application


def _answer(start_response: Callable, status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read_body(environ: dict[str, Any]) -> bytes | None:
    length = whole_number(environ.get("CONTENT_LENGTH") or "0")
    if length is None or length > MAX_BODY_BYTES:
        return None
    return environ["wsgi.input"].read(length)


class _Tally:
    """Counts an event and logs it at most once a minute: an attacker's
    flood of unsigned requests must not flood the log too."""

    def __init__(self, message: str, every: float = 60.0) -> None:
        self.message = message
        self.every = every
        self.count = 0
        self.logged_at: float | None = None
        self.lock = threading.Lock()

    def add(self) -> None:
        with self.lock:
            self.count += 1
            now = time.monotonic()
            if self.logged_at is None or now - self.logged_at >= self.every:
                log.info(self.message, self.count)
                self.count, self.logged_at = 0, now


class ThrottledLog(logging.Filter):
    """Lets a logger's records through once per ``every`` seconds; the next one says how
    many were held back. For waitress's "Task queue depth is N", logged for every
    request that finds the threads busy: a /healthz flood wrote 13,000 lines in 15 s."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self.passed_at: float | None = None
        self.held = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            now = self.clock()
            if self.passed_at is not None and now - self.passed_at < self.every:
                self.held += 1
                return False
            held, self.held, self.passed_at = self.held, 0, now
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it since the last such line)"
            record.args = None
        return True


def throttle(logger: logging.Logger) -> None:
    """Throttle ``logger`` (once, however many servers are built)."""
    if not any(isinstance(f, ThrottledLog) for f in logger.filters):
        logger.addFilter(ThrottledLog())


def database_answers(runtime: Runtime) -> bool:
    try:
        with runtime.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure means "not healthy"
        log.warning("health check: the database does not answer")
        return False


def _keys_missing(runtime: Runtime) -> list[str]:
    try:
        return runtime.db.missing_key_ids()
    except Exception:  # the database just stopped answering: the next check says so
        return []


def stop_waitress(server: Any) -> None:
    """Stop a waitress server from another thread.

    ``close()`` alone leaves waitress's wake-up channel in its loop, which
    then never ends; closing every channel lets ``run()`` return.
    """

    def close_all() -> None:  # runs on waitress's own loop thread
        for channel in list(server._map.values()):
            channel.close()

    server.task_dispatcher.shutdown(timeout=5)
    try:
        server.trigger.pull_trigger(close_all)
    except OSError:  # the loop has already ended and closed its wake-up pipe
        log.warning("stopping the HTTP server: its loop had already ended")
        close_all()


class DeadlineChannel(HTTPChannel):
    """A connection whose request must arrive whole within the server's deadline.

    ``receiving_since`` is when the request being read began: the accept for
    the first, the first byte for the next ones on a kept-alive connection;
    None between requests (then only the idle timeout applies).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.receiving_since: float | None = time.time()
        super().__init__(*args, **kwargs)

    def received(self, data: bytes) -> bool:
        if self.receiving_since is None:
            self.receiving_since = time.time()
        try:
            return super().received(data)
        finally:
            if self.request is None:  # everything read so far made whole requests
                self.receiving_since = None


class DeadlineServer(TcpWSGIServer):
    """Waitress's TCP server with a request deadline and load shedding."""

    channel_class = DeadlineChannel

    def __init__(self, application: Callable, limits: HttpLimits, **adjustments: Any) -> None:
        self.limits = limits
        self.dropped = 0
        """Connections cut for being too slow, or shed when full (for tests and benches)."""
        adj = Adjustments(**adjustments)
        super().__init__(application, map={}, adj=adj, sockinfo=adj.listen[0])

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # the idle timeout (channel_timeout)
        cutoff = now - self.limits.request_deadline
        for channel in list(self.active_channels.values()):
            since = getattr(channel, "receiving_since", None)
            if not channel.requests and since is not None and since < cutoff:
                channel.will_close = True  # closed on this loop's next pass
                self.dropped += 1
                log.debug("dropped a client slower than %ss", self.limits.request_deadline)

    def readable(self) -> bool:
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._shed()
        return super().readable()

    def handle_accept(self) -> None:
        """Accept every waiting connection, not one per turn of the loop.

        Each turn polls every open socket; at one accept a turn, a burst of
        reconnecting slow clients queues a real request behind all of them.
        """
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit:
                self._shed()
                if len(self._map) >= self.adj.connection_limit:
                    return
            try:
                accepted = self.accept()
                if accepted is None:
                    return  # none waiting
                conn, addr = accepted
                self.set_socket_options(conn)
            except OSError:  # the client went away before we got to it
                continue
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def _shed(self) -> None:
        """Full: close the connection that has waited longest without a whole
        request (then the longest idle one), so new clients still get in."""
        waiting = [c for c in self.active_channels.values() if not c.requests]
        if not waiting:
            return  # every connection has a request in the app: stop accepting for now
        slowest = min(waiting, key=lambda c: c.receiving_since or c.last_activity)
        slowest.handle_close()
        self.dropped += 1


def http_server(
    application: Callable, limits: HttpLimits, *, host: str, port: int, threads: int = THREADS
) -> DeadlineServer:
    """The waitress server `serve --http` runs, configured against slow clients and floods."""
    throttle(logging.getLogger("waitress.queue"))
    connection_limit = min(limits.max_connections, _open_files_allowed() - SPARE_FILES)
    if connection_limit < limits.max_connections:
        log.warning(
            "only %d connections are possible (the open files limit, ulimit -n); "
            "XAI_USAGE_SERVE_MAX_CONNECTIONS asks for %d",
            connection_limit,
            limits.max_connections,
        )
    return DeadlineServer(
        application,
        limits,
        host=host,
        port=port,
        threads=threads,
        ident="xai-usage",
        connection_limit=max(connection_limit, 10),
        channel_timeout=limits.idle_timeout,
        cleanup_interval=1,  # how often deadlines are checked (waitress's default is 30 s)
        asyncore_use_poll=True,  # select() cannot watch file descriptors above 1024
        backlog=2048,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=MAX_BODY_BYTES,
    )


def _open_files_allowed() -> int:
    """The soft open-files limit, first raised as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


class GuardedSocketModeHandler(SocketModeHandler):
    """Socket Mode payloads arrive parsed, past the HTTP checks: they are checked
    here, before Bolt builds a request from them (its own code would raise)."""

    def handle(self, client: Any, req: SocketModeRequest) -> None:
        if problem := shape_problem(req.payload):
            log.warning("ignored a malformed Socket Mode request: %s", problem)
            # Acknowledged all the same, or Slack would send it again.
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        super().handle(client, req)


def serve(
    runtime: Runtime,
    settings: SlackSettings,
    *,
    host: str = "0.0.0.0",
    ready: Callable[[str], None] | None = None,
    scheduler: bool = True,
    answer_processes: int = 0,
    log_level: str = "INFO",
) -> None:
    """The Slack app; with ``scheduler``, the scheduled work too (else `xai-usage worker`
    does it, in another process: :func:`work`). With ``answer_processes``, commands'
    answers are worked out in processes of their own (bot.slack.answering), and this
    one only acknowledges."""
    # An ack is short and waits on the GIL at each of its few steps (read, verify,
    # dispatch, write) while answers are worked out on other threads: a thread that
    # wants the GIL gets it after at most this long (Python's default is 5 ms).
    sys.setswitchinterval(ACK_SWITCH_INTERVAL)
    app, service = build_app(runtime, settings)
    assert service.tokens is not None
    if answer_processes:
        service.answerers = AnswerProcesses(service, answer_processes, log_level=log_level)
    running = (
        start_scheduler(
            runtime,
            SlackDelivery.of(runtime, settings, service.tokens),
            after_tick=service.check_homes,
        )
        if scheduler
        else None
    )
    try:
        if settings.mode == "socket":
            handler = GuardedSocketModeHandler(app, settings.app_token)
            if ready:
                ready("Socket Mode")
            handler.start()
        else:
            server = http_server(
                wsgi_app(app, runtime, settings.signing_secret or "", answerers=service.answerers),
                settings.limits,
                host=host,
                port=settings.port,
            )
            if ready:
                ready(f"http://{host}:{server.effective_port}")
            server.run()
    finally:
        if running is not None:
            running.shutdown(wait=False)
        if service.answerers is not None:
            service.answerers.close()
        if service.live_home is not None:
            service.live_home.close()


def work(
    runtime: Runtime,
    settings: SlackSettings | None,
    *,
    ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """`xai-usage worker`: the scheduled work without Slack's front. With Slack
    configured (``settings``), digests and alerts are posted and, after each minute's
    work, the Home tabs open anywhere are brought up to date (their viewers are in the
    store); without it, the daily sync alone."""
    delivery, after, live = None, None, None
    if settings is not None:
        service = answering_service(runtime, settings)
        assert service.tokens is not None
        live = service.live_home
        delivery, after = SlackDelivery.of(runtime, settings, service.tokens), service.check_homes
    try:
        work_until_stopped(runtime, delivery, after, ready=ready, stop=stop)
    finally:
        if live is not None:
            live.close()
