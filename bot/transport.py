"""The transport a sync's requests travel on: httpcore's connections over asyncio's own
streams, behind httpx's interface.

A sync is CPU-bound on its event loop long before it is bound by the network: at 64
requests in flight, a millisecond of Python per request is most of each 100 ms round
trip. ``./run bench sync`` sends a daily sync's 2,000 requests both ways, with nothing
stored: over httpx's clients they took 1.3-1.4 ms of CPU a request here, over this
transport 0.8 ms. (Of what it saves, about two fifths is httpx's client layer, its cookie
jar and response bookkeeping; the rest is anyio's, under httpcore's connections.)

What it keeps: httpcore's HTTP/1.1 and its connection pool (keep-alive, expiry, a
connection the server closed is not reused), TLS verified against the context given,
timeouts from each request, and httpx's exceptions, so a caller catches
``httpx.TransportError`` as before. What it leaves out: proxies (the pool uses httpx's
own clients whenever one is configured, :func:`proxy_configured`), cookies, redirects
and streaming; a provider's requests need none of them, and a request that asks for
redirects or an auth flow goes through httpx's client instead.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProtocolError: httpx.ProtocolError,
}
"""httpcore's exceptions as httpx raises them, looked up along an error's classes
(:func:`_as_httpx`), so the most specific one found wins."""

_log = logging.getLogger("httpx")
"""Each request logged as httpx's client logs it, where an operator already looks
(and where :class:`bot.runtime.HideUrlSecrets` already cleans URLs)."""


def proxy_configured() -> bool:
    """Whether the environment names a proxy for HTTP(S) (``HTTPS_PROXY``, ``ALL_PROXY``...):
    then requests go through httpx's clients, which honour it and ``NO_PROXY``."""
    return any(scheme != "no" for scheme in urllib.request.getproxies())


class LeanTransport(httpx.AsyncBaseTransport):
    """Up to ``connections`` kept-alive connections; each answer read whole."""

    KEEPALIVE_SECONDS = 5.0
    """How long an idle connection is kept (httpx's default)."""

    def __init__(self, ssl_context: ssl.SSLContext, connections: int) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=self.KEEPALIVE_SECONDS,
            network_backend=_AsyncioBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = await self._pool.handle_async_request(sent)
            try:
                body = await answer.aread()
            finally:
                await answer.aclose()
        except Exception as error:
            mapped = _as_httpx(error, request)
            if mapped is None:
                raise
            raise mapped from error
        _log.info(
            'HTTP Request: %s %s "%s %d %s"',
            request.method,
            url,
            answer.extensions.get("http_version", b"HTTP/1.1").decode("ascii", "replace"),
            answer.status,
            answer.extensions.get("reason_phrase", b"").decode("ascii", "replace"),
        )
        # The body as it came: httpx decodes it (gzip and the rest) as it would its own.
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            content=body,
            extensions=answer.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _as_httpx(error: Exception, request: httpx.Request) -> httpx.TransportError | None:
    """httpcore's ``error`` as httpx's; None for anything else (a bug: raised as it is)."""
    for kind in type(error).__mro__:
        if kind in _HTTPX_ERRORS:
            return _HTTPX_ERRORS[kind](str(error) or kind.__name__, request=request)
    return None


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections as asyncio streams, each wait bounded by ``asyncio.timeout``."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} in time") from error
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from error
        socket = writer.get_extra_info("socket")
        for option in socket_options or ():
            socket.setsockopt(*option)
        return _AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - providers are reached over TCP
        raise httpcore.ConnectError("a sync reaches its providers over TCP")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as error:
            raise httpcore.ReadTimeout("no answer in time") from error
        except OSError as error:
            raise httpcore.ReadError(str(error)) from error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as error:
            raise httpcore.WriteTimeout("could not send in time") from error
        except OSError as error:
            raise httpcore.WriteError(str(error)) from error

    async def aclose(self) -> None:
        # Like httpcore's own streams, TLS is not shut down politely: waiting for the
        # server's close_notify would cost a round trip per connection.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as error:
            self._writer.transport.abort()
            raise httpcore.ConnectTimeout("no TLS handshake in time") from error
        except OSError as error:  # ssl.SSLError included: an untrusted certificate
            self._writer.transport.abort()
            raise httpcore.ConnectError(str(error)) from error
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle connection before it is reused: readable means the
            # server closed it (or broke it), so it must not be.
            return self._reader.at_eof() or self._reader.exception() is not None
        return self._writer.get_extra_info(
            {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        )
