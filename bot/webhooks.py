"""Alert webhooks reach the public internet, and only that, unless the operator says so.

A webhook is a URL an admin types (``alerts --webhook``); the server then
POSTs to it. Pointed at ``169.254.169.254`` (a cloud's metadata service),
``127.0.0.1:5432`` or a host on the private network, it would make the server
a probe of what only the server can reach. So a webhook's address must be on
the public internet: checked when it is set (a clear refusal at once), and
again when it is sent, on the very address the request connects to (a name
can resolve elsewhere by then), without following proxies that would resolve
it for us. An operator whose receiver is on a private network allows that
with ``XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE=1``.

What a receiver answered stays in the log: a reply, ``alerts list`` and
``jobs run`` say only that it took the alert or did not, never its status
code, which would turn them into a port scanner's report.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from bot.config import WEBHOOKS_ALLOW_PRIVATE as ALLOW_PRIVATE

log = logging.getLogger(__name__)

ATTEMPTS, RETRY_DELAY = 3, 0.5
"""An alert webhook is tried three times, 0.5 s then 1 s apart."""


class WebhookFailed(Exception):
    """The alert webhook did not take the alert; ``reason`` never holds the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = f"webhook {reason}"


TIMEOUT_SECONDS = 5.0


class AddressRefused(Exception):
    """A webhook whose host is not on the public internet; says why, never the URL."""


def blocked_address(address: str) -> str | None:
    """Why an IP address is not somewhere alerts may go, or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 (fe80::1%eth0)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where clouds serve instance metadata)"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or not ip.is_global:
        return "an address that is not on the public internet"
    return None


def refusal(host: str, address: str, why: str) -> str:
    shown = host if host == address else f"{host} ({address})"
    return (
        f"the webhook's host {shown} is {why}: alerts only go to webhooks on the public "
        f"internet, unless the operator sets {ALLOW_PRIVATE}=1"
    )


def _host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise AddressRefused("the webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("the webhook URL's port is not a port number") from None
    return parts.hostname, port


def _check(host: str, port: int) -> list[str]:
    """The host's addresses, all of them public, or AddressRefused (OSError: no answer)."""
    addresses = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    for address in addresses:
        if why := blocked_address(address):
            raise AddressRefused(refusal(host, address, why))
    return addresses


def address_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` may not be an alert webhook, when it is set; None when it may.

    A host that does not resolve now is let through: sending checks it again.
    """
    if allow_private:
        return None
    try:
        _check(*_host_and_port(url))
    except AddressRefused as error:
        return str(error)
    except OSError:
        return None
    return None


class _PublicOnly(httpcore.NetworkBackend):
    """Connects only to the addresses just checked, so what is checked is what is used."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        address = _check(host, port)[0]  # the TLS layer still checks the name's certificate
        return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _PublicOnlyTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_PublicOnly()
        )


def post_json(url: str, body: dict, *, allow_private: bool) -> int:
    """POST ``body`` to ``url``; its status code. :class:`AddressRefused` before any
    connection to a host off the public internet (unless allowed); otherwise httpx's
    transport errors, or OSError when the name does not resolve."""
    if allow_private:
        return httpx.post(url, json=body, timeout=TIMEOUT_SECONDS).status_code
    _host_and_port(url)  # a URL without a host is refused before anything is sent
    with httpx.Client(transport=_PublicOnlyTransport(), trust_env=False) as http:
        return http.post(url, json=body, timeout=TIMEOUT_SECONDS).status_code


def deliver(
    url: str,
    body: dict,
    *,
    allow_private: bool,
    pause: Callable[[float], None] = time.sleep,
) -> None:
    """POST an alert; :class:`WebhookFailed` when it is not taken. Neither the URL nor
    what the receiver answered (its status) is in it: only the log has the status."""
    answer, told = "did not answer", "did not answer"
    for attempt in range(ATTEMPTS):
        try:
            status = post_json(url, body, allow_private=allow_private)
        except AddressRefused as error:
            log.warning("the alert webhook was not sent: %s", error)
            raise WebhookFailed(f"not sent: {error}") from None
        except (httpx.TransportError, OSError) as error:
            answer = told = f"did not answer ({type(error).__name__})"
        else:
            if status < 300:
                return
            answer, told = f"answered HTTP {status}", "did not take the alert"
            if status < 500:  # refused: asking again will not help now
                break
        if attempt + 1 < ATTEMPTS:  # no wait after the last
            pause(RETRY_DELAY * 2**attempt)
    log.warning("the alert webhook %s", answer)
    raise WebhookFailed(told)
