"""The pool a sync sends its requests through, against real servers on 127.0.0.1.

Every request of a sync goes through :class:`bot.sync.HttpPool` and, unless a proxy is
configured, its :class:`bot.transport.LeanTransport`: keep-alive, TLS, timeouts, broken
and closed connections, compressed answers, proxies, and httpx's exceptions.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bot.sync import HttpPool
from bot.transport import LeanTransport
from providers.http import RETRYABLE_ERRORS
from tests.fakes.servers import serving
from tests.fakes.smtp import CertificateAuthority


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.peers: set[int] = set()  # client ports seen: one per connection
        self.paths: list[str] = []
        self.ended = 0  # connections the client closed
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as an API is served
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.ended += 1

    def _answer(self, body: bytes, *, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.peers.add(self.client_address[1])
            self.server.paths.append(self.path)
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/gzip":
            self._answer(gzip.compress(b'{"packed": true}'), headers={"Content-Encoding": "gzip"})
        elif self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"cut": ')
            self.close_connection = True
        elif self.path == "/then-close":
            # Answered as if kept alive, then closed: as a server does to an idle connection.
            self._answer(b'{"closing": true}')
            self.close_connection = True
        else:
            self._answer(json.dumps({"path": self.path}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.peers.add(self.client_address[1])
        self._answer(
            json.dumps({"echo": json.loads(body), "auth": self.headers["Authorization"]}).encode()
        )


@pytest.fixture
def server() -> Iterator[_Server]:
    with serving(_Server()) as running:
        yield running


def _run(coroutine):
    return asyncio.run(coroutine)


def test_requests_share_few_connections_and_come_back_whole(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_proxy(monkeypatch)

    async def go() -> list[httpx.Response]:
        async with HttpPool(8) as http:
            assert all(isinstance(s, LeanTransport) for s in http._shards)
            gets = [http.get(f"{server.url}/n/{n}", timeout=5) for n in range(60)]
            posts = [
                http.post(
                    f"{server.url}/p", json={"n": n}, headers={"Authorization": f"Bearer k{n}"}
                )
                for n in range(20)
            ]
            return await asyncio.gather(*gets, *posts)

    answers = _run(go())
    assert [a.json() for a in answers[:60]] == [{"path": f"/n/{n}"} for n in range(60)]
    assert [a.json() for a in answers[60:]] == [
        {"echo": {"n": n}, "auth": f"Bearer k{n}"} for n in range(20)
    ]
    assert all(a.status_code == 200 and a.request.url.host == "127.0.0.1" for a in answers)
    # 80 requests, at most 8 at once: the connections were kept alive and reused.
    assert 1 <= len(server.peers) <= 8


def test_leaving_the_pool_closes_its_connections(server: _Server, monkeypatch) -> None:
    _no_proxy(monkeypatch)

    async def go() -> None:
        async with HttpPool(8) as http:
            await asyncio.gather(*(http.get(f"{server.url}/n/{n}") for n in range(16)))
            assert server.ended == 0  # kept alive while the pool is open
        # The pool is still referenced and the loop still runs: only closing them ends them.
        deadline = time.monotonic() + 5
        while server.ended < len(server.peers) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert server.ended == len(server.peers) > 0
        assert http.is_closed

    _run(go())


def test_a_compressed_answer_is_read_as_json(server: _Server, monkeypatch) -> None:
    _no_proxy(monkeypatch)

    async def go() -> httpx.Response:
        async with HttpPool(1) as http:
            return await http.get(f"{server.url}/gzip")

    assert _run(go()).json() == {"packed": True}


def test_a_connection_the_server_closed_is_not_used_again(server: _Server, monkeypatch) -> None:
    _no_proxy(monkeypatch)

    async def go() -> list[dict]:
        async with HttpPool(1) as http:
            first = await http.get(f"{server.url}/then-close")
            await asyncio.sleep(0.05)  # the server's close arrives
            second = await http.get(f"{server.url}/after")
            return [first.json(), second.json()]

    assert _run(go()) == [{"closing": True}, {"path": "/after"}]
    assert len(server.peers) == 2


def test_a_slow_answer_is_a_read_timeout_a_sync_retries(server: _Server, monkeypatch) -> None:
    _no_proxy(monkeypatch)

    async def go() -> None:
        async with HttpPool(1) as http:
            await http.get(f"{server.url}/slow", timeout=0.2)

    with pytest.raises(httpx.ReadTimeout) as caught:
        _run(go())
    assert isinstance(caught.value, RETRYABLE_ERRORS)
    assert caught.value.request.url.path == "/slow"


def test_a_body_cut_short_is_a_protocol_error_a_sync_retries(server: _Server, monkeypatch) -> None:
    _no_proxy(monkeypatch)

    async def go() -> None:
        async with HttpPool(1) as http:
            await http.get(f"{server.url}/truncated")

    with pytest.raises(httpx.RemoteProtocolError) as caught:
        _run(go())
    assert isinstance(caught.value, RETRYABLE_ERRORS)


def test_nothing_listening_is_a_connect_error(monkeypatch) -> None:
    _no_proxy(monkeypatch)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def go() -> None:
        async with HttpPool(1) as http:
            await http.get(f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError):
        _run(go())


def test_tls_is_verified_against_the_context_given(tmp_path: Path, monkeypatch) -> None:
    _no_proxy(monkeypatch)
    authority = CertificateAuthority(tmp_path)
    server = _Server()
    server.socket = authority.server_context().wrap_socket(server.socket, server_side=True)
    trusting = ssl.create_default_context(cafile=str(authority.ca_file))
    url = f"https://localhost:{server.server_address[1]}"

    async def get(verify) -> httpx.Response:
        async with HttpPool(1, verify=verify) as http:
            return await http.get(f"{url}/secure", timeout=5)

    with serving(server):
        assert _run(get(trusting)).json() == {"path": "/secure"}
        # The pool's own context (public authorities) does not know this test's CA.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            _run(get(None))


def test_a_configured_proxy_is_used(server: _Server, monkeypatch) -> None:
    """With HTTP_PROXY set, requests go to the proxy (in absolute form), as httpx's do."""
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def go() -> httpx.Response:
        async with HttpPool(4) as http:
            assert not any(isinstance(s, LeanTransport) for s in http._shards)
            return await http.get("http://api.example.invalid/v1/usage")

    assert _run(go()).json() == {"path": "http://api.example.invalid/v1/usage"}


def test_an_auth_flow_or_redirects_go_through_httpx_itself(server: _Server, monkeypatch) -> None:
    _no_proxy(monkeypatch)

    async def go() -> httpx.Response:
        async with HttpPool(1) as http:
            return await http.post(f"{server.url}/p", json={"n": 1}, auth=("user", "secret"))

    answer = _run(go())
    assert answer.json()["auth"].startswith("Basic ")


def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
