"""HTTP plumbing shared by the local stand-ins for remote APIs.

The xAI sandbox (:mod:`providers.xai.sandbox`, shipped in the product) and the
Slack stand-in (``tests/fakes/slack_api.py``) are served over real sockets, so
the product's own HTTP clients are what gets exercised. They differ in what
they answer, not in how they speak HTTP, so that part lives here once:

* keep-alive HTTP/1.1 with an exact Content-Length and TCP_NODELAY, so a
  pooling client (httpx, slack_sdk) reuses its connections as it would
  against the real service, and a benchmark measures the client, not the
  handshakes;
* a thread per connection and a deep accept queue, for benchmarks that open
  hundreds of connections at once;
* a stop that cuts idle keep-alive connections, so no handler thread
  outlives a test.

A stand-in subclasses :class:`StandIn` and says what to answer
(``_respond``) and how its errors read (``_unreadable``, ``_failed``);
anything more particular (the xAI sandbox's truncated answers) goes in a
:class:`StandInHandler` subclass.

The stand-ins for the providers' APIs (xAI's, and OpenAI's and Anthropic's
through :mod:`providers.cost_standin`) also share what any service's stand-in
has besides its answers, in :class:`ApiStandIn`: the keys it knows and those
revoked, faults injected on purpose and spent one request each, a clock the
tests set, latency, and a record of the requests it answered.

Standard library only: a product command must not need test dependencies.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Protocol, Self, TypedDict, TypeVar

__all__ = ["Answer", "ApiStandIn", "StandIn", "StandInHandler", "StandInOptions", "StandInServer"]

# How often the accept loop looks for a stop request: short, so tests stop fast.
_POLL_SECONDS = 0.01


class Answer(Protocol):
    """What a stand-in sends back; each stand-in writes its own JSON dialect."""

    status: int
    headers: tuple[tuple[str, str], ...]

    def encode(self) -> bytes: ...


class StandInHandler(BaseHTTPRequestHandler):
    """One connection: read each request whole, let the stand-in answer, write it back."""

    protocol_version = "HTTP/1.1"
    server: StandInServer
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the benchmarks would drown in access lines."""

    def _handle(self, method: str) -> None:
        stand_in = self.server.stand_in
        try:
            raw_body = self._read_body()
        except ValueError as exc:
            self._write(stand_in._unreadable(str(exc)))
            self.close_connection = True
            return
        try:
            answer = stand_in._respond(method, self.path, self.headers, raw_body)
        except Exception:
            answer = stand_in._failed(method, self.path)
        if answer is None:
            self.close_connection = True
            return
        try:
            self._write(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        """Always drain the body, or the next request on the connection would misparse."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.isdigit():
            raise ValueError("invalid Content-Length")
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():
            pass
        return b"".join(chunks)

    def _write(self, answer: Answer) -> None:
        data = answer.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", self.server.stand_in._content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self._write_body(answer, data)

    def _write_body(self, answer: Answer, data: bytes) -> None:
        """Send the body as promised; a subclass may break the promise on purpose."""
        self.wfile.write(data)


class StandInServer(ThreadingHTTPServer):
    """A thread per connection, and a record of open connections so stop can cut them."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((stand_in.host, stand_in.port), stand_in._handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handler threads idling on keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        stand_in = self.stand_in
        stand_in._log.debug(
            "%s request from %s failed", stand_in._label, client_address, exc_info=True
        )


class StandIn:
    """A stand-in's life: served on a daemon thread from start() to stop(), or in a with block.

    ``_stopping`` is set while stopping, so a stand-in that makes a request wait
    (latency, a hang fault) can wait on it and give up at once.
    """

    _label: ClassVar[str]
    """How logs name the stand-in."""
    _thread_name: ClassVar[str]
    """The serving thread's name, before its port."""
    _log: ClassVar[logging.Logger]
    _content_type: ClassVar[str] = "application/json"
    _handler: ClassVar[type[StandInHandler]] = StandInHandler

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._stopping = threading.Event()
        self._server: StandInServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._stopping.clear()
        server = StandInServer(self)
        self._server = server
        self.url = f"http://{self.host}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            daemon=True,
            name=f"{self._thread_name}-{server.server_address[1]}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections, so a wait or keep-alive never holds a test."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # what a stand-in says (called from server threads)

    def _respond(
        self, method: str, target: str, headers: Message, raw_body: bytes
    ) -> Answer | None:
        """The answer to one request, or None to drop the connection unanswered."""
        raise NotImplementedError

    def _unreadable(self, problem: str) -> Answer:
        """The answer to a request whose body could not be read (the connection then closes)."""
        raise NotImplementedError

    def _failed(self, method: str, target: str) -> Answer:
        """The answer when ``_respond`` raised; called inside the ``except``, so it can log it."""
        raise NotImplementedError


class StandInOptions(TypedDict, total=False):
    """Where an :class:`ApiStandIn` serves and how it keeps time: every one takes these."""

    host: str
    port: int
    """0: any free port (``url`` says which, once started)."""
    latency: float
    """Seconds added before each answer."""
    clock: Callable[[], datetime] | None
    """What "now" is, for the figures a stand-in serves (None: the real clock)."""


class InjectedFault(Protocol):
    """What :meth:`ApiStandIn._take_fault` needs of a fault; each stand-in says the rest."""

    endpoint: str
    """The endpoint it hits, or ``any``."""
    remaining: int | None
    """Requests left before it is spent; None means forever."""


KeyT = TypeVar("KeyT")
FaultT = TypeVar("FaultT", bound=InjectedFault)


def _real_now() -> datetime:
    return datetime.now(UTC)


class ApiStandIn(StandIn, Generic[KeyT, FaultT]):
    """A stand-in for a service's API: keys, faults, a clock, latency and a record.

    Keys are held by their secret (``KeyT`` is the stand-in's own record of
    one); a key revoked is refused as revoked, one never added as unknown.
    Faults (``FaultT``) apply in the order they were added, one request spending
    one. Everything here may be called from any thread.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.latency = latency
        self.requests: list[Any] = []
        self._clock = clock or _real_now
        self._lock = threading.Lock()
        self._keys: dict[str, KeyT] = {}
        self._revoked: set[str] = set()
        self._faults: list[FaultT] = []

    def now(self) -> datetime:
        """The stand-in's clock, in UTC."""
        return self._clock().astimezone(UTC)

    def revoke_key(self, key: str) -> None:
        """The key is refused from now on, as revoked (a key never added is just unknown)."""
        with self._lock:
            if self._keys.pop(key, None) is not None:
                self._revoked.add(key)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _store_key(self, key: str, entry: KeyT) -> None:
        """Register a key; adding a known key again replaces it (and un-revokes it)."""
        with self._lock:
            self._keys[key] = entry
            self._revoked.discard(key)

    def _key(self, token: str | None) -> tuple[KeyT | None, bool]:
        """The key behind a credential, and whether it was revoked (when it is None)."""
        with self._lock:
            key = self._keys.get(token) if token else None
            return key, token in self._revoked

    def _add_fault(self, fault: FaultT) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(
        self, endpoint: str, matches: Callable[[FaultT], bool] = lambda fault: True
    ) -> FaultT | None:
        """The first fault due for a request to ``endpoint`` (and that ``matches`` it), spent
        by one; None when none is."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint not in ("any", endpoint) or not matches(fault):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _record(self, entry: Any) -> None:
        with self._lock:
            self.requests.append(entry)

    def _wait_latency(self) -> bool:
        """Wait :attr:`latency` before answering; False when the stand-in stopped meanwhile
        (the request then goes unanswered)."""
        return not (self.latency > 0 and self._stopping.wait(self.latency))
