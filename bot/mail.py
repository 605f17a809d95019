"""Email alerts: the SMTP server from the environment, addresses as typed, messages sent.

An alert route may email a few addresses as well as post in Slack (``alerts
--email``). Each address is a place of its own for ``bot.jobs``: tried, and
recorded in the ledger, on its own, so one refusing never holds up the others.

The server is the operator's (``XAI_USAGE_SMTP_URL``, ``XAI_USAGE_SMTP_FROM``),
never an admin's: an admin types only addresses. Mail goes encrypted wherever
the server allows it: ``smtps://`` is TLS from the first byte, ``smtp://``
upgrades with STARTTLS when the server offers it, and
``XAI_USAGE_SMTP_REQUIRE_TLS=1`` refuses to send in the clear at all. A
password is never sent in the clear either way. The URL holds that password,
so it is a secret: it is redacted from every log line, and no message here
quotes it.

A mail server's answer is kept to two kinds: a refusal for good (5xx: this
message will never be taken; not tried again) and anything else (a 4xx, the
server down, a login or TLS problem the operator can fix: tried again later,
the alert pending meanwhile). What is shown of it never holds the address,
which is personal data (the ledger keeps it in plain text).

The bodies are rendered from ``templates/email/`` from the alert's own data,
a plain-text part and an HTML one; nothing here works out a figure.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email import errors
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as email_policy
from email.utils import format_datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from bot.runtime import REDACTOR

log = logging.getLogger(__name__)

SMTP_URL = "XAI_USAGE_SMTP_URL"
SMTP_FROM = "XAI_USAGE_SMTP_FROM"
SMTP_REQUIRE_TLS = "XAI_USAGE_SMTP_REQUIRE_TLS"
SMTP_CA_FILE = "XAI_USAGE_SMTP_CA_FILE"
DEFAULT_PORTS = {"smtps": 465, "smtp": 587}
TIMEOUT_SECONDS = 10.0
"""How long the server may take to answer each step before the try is given up."""
MAX_ADDRESSES = 10
"""Addresses one route may email: a team's few, not a mailing list's many."""
SERVER_WORDS = 200
"""Of a server's reply, what a reason quotes."""


class MailNotConfigured(Exception):
    """The operator has not set (or mistyped) the SMTP settings; says which and how."""


class MailFailed(Exception):
    """Not sent this time: tried again later. ``reason`` says why, without the address
    or the password; ``for_good`` marks a refusal that asking again will not change."""

    def __init__(self, reason: str, *, for_good: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.for_good = for_good


class AddressProblem(ValueError):
    """An address as typed that mail cannot go to; the message says how to write one."""


# -- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MailServer:
    """Where and how alerts are sent, from the operator's environment."""

    host: str
    port: int
    implicit_tls: bool  # smtps://: TLS from the first byte
    sender: Address
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    require_tls: bool = False
    ca_file: str | None = None

    @property
    def where(self) -> str:
        """The server as messages name it: host and port, never the URL (it has the password)."""
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MailServer:
        """The server, or :class:`MailNotConfigured` saying what to set. Never quotes the URL."""
        url = (environ.get(SMTP_URL) or "").strip()
        if not url:
            raise MailNotConfigured(
                f"email needs a mail server: the operator sets {SMTP_URL} (e.g. "
                "smtps://user:password@smtp.example.com:465, or smtp://smtp.example.com:587) "
                f'and {SMTP_FROM} (e.g. "xai-usage <alerts@example.com>") where the bot runs'
            )
        REDACTOR.add(url)
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise MailNotConfigured(f"{SMTP_URL} must start with smtps:// or smtp://")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise MailNotConfigured(f"{SMTP_URL} has a port that is not a number") from None
        if not parts.hostname:
            raise MailNotConfigured(f"{SMTP_URL} names no host, as in smtps://smtp.example.com")
        password = unquote(parts.password) if parts.password is not None else None
        if password:
            REDACTOR.add(password)
        raw_from = (environ.get(SMTP_FROM) or "").strip()
        if not raw_from:
            raise MailNotConfigured(
                f'{SMTP_FROM} is not set: give the address alerts come from, e.g. "xai-usage '
                '<alerts@example.com>"'
            )
        try:
            [sender] = parse_addresses(raw_from)
        except (AddressProblem, ValueError):
            raise MailNotConfigured(
                f'{SMTP_FROM} is not one email address, e.g. "xai-usage <alerts@example.com>"'
            ) from None
        require = (environ.get(SMTP_REQUIRE_TLS) or "0").strip()
        if require not in ("0", "1"):
            raise MailNotConfigured(f"{SMTP_REQUIRE_TLS} must be 1 (on) or 0 (off)")
        ca_file = (environ.get(SMTP_CA_FILE) or "").strip() or None
        if ca_file and not Path(ca_file).is_file():
            raise MailNotConfigured(f"{SMTP_CA_FILE} names no file ({ca_file})")
        return cls(
            host=parts.hostname,
            port=port,
            implicit_tls=parts.scheme == "smtps",
            sender=sender,
            username=unquote(parts.username) if parts.username else None,
            password=password,
            require_tls=require == "1",
            ca_file=ca_file,
        )


# -- addresses -----------------------------------------------------------------------------

_SLACK_MAILTO = re.compile(r"<mailto:([^|>]*)(?:\|[^>]*)?>")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
HOW_TO_WRITE = (
    'write it as ana@example.com, or with a name as "Ana Lopez <ana@example.com>" '
    "(quoted); separate several with commas"
)


def parse_addresses(text: str) -> list[Address]:
    """The addresses in ``text``, as typed in a terminal or Slack (which sends
    ``<mailto:ana@example.com|ana@example.com>`` and ``&lt;…&gt;``): one, or several
    separated by commas, each bare or with a display name. :class:`AddressProblem`
    naming the first one that is not an address, and how to write it."""
    plain = unescape(_SLACK_MAILTO.sub(r"\1", text)).strip()
    if not plain:
        raise AddressProblem(f"Give an email address: {HOW_TO_WRITE}.")
    found: list[Address] = []
    for piece in _split(plain):
        found.append(_one_address(piece))
    return found


def _split(text: str) -> list[str]:
    """``text`` cut at the commas outside double quotes and angle brackets."""
    pieces, current, quoted, angled = [], [], False, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        if char == "," and not quoted and not angled:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return [piece.strip() for piece in pieces if piece.strip()]


def _one_address(piece: str) -> Address:
    shown = piece if len(piece) <= 60 else piece[:59] + "…"
    refused = AddressProblem(f"“{shown}” is not an email address: {HOW_TO_WRITE}.")
    if any(ord(char) < 32 or ord(char) == 127 for char in piece):
        raise refused
    try:
        header = email_policy.header_factory("To", piece)
        addresses = list(header.addresses)
    except (IndexError, ValueError, TypeError):
        raise refused from None
    only_non_ascii = all(isinstance(d, errors.NonASCIILocalPartDefect) for d in header.defects)
    if len(addresses) == 1 and header.defects and only_non_ascii:
        raise AddressProblem(
            f"“{shown}”: the part before the @ must be plain ASCII letters, digits and "
            "punctuation (mail servers may refuse anything else)."
        )
    if header.defects or len(addresses) != 1:
        raise refused
    [address] = addresses
    local, domain = address.username, address.domain
    if not _LOCAL.fullmatch(local or ""):
        raise refused
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower() if domain else ""
    except UnicodeError:
        raise refused from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise refused
    return Address(display_name=address.display_name, username=local, domain=ascii_domain)


def same_address(a: Address, b: Address) -> bool:
    """One mailbox written twice (the domain's case never matters; the rest rarely does)."""
    return a.addr_spec.lower() == b.addr_spec.lower()


# -- messages ------------------------------------------------------------------------------


def message_id(seed: str, server: MailServer) -> str:
    """The same alert to the same address always has the same Message-ID: a repeat sent
    after a crash (sent, then not recorded) is one that mail programs can drop."""
    digest = hashlib.sha256(f"{seed}\0{server.sender.addr_spec}".encode()).hexdigest()[:40]
    return f"<xai-usage.{digest}@{server.sender.domain}>"


def build_message(
    server: MailServer,
    to: Address,
    subject: str,
    template: str,
    at: datetime,
    seed: str,
    **context: Any,
) -> EmailMessage:
    """A plain-text and an HTML body from ``templates/email/<template>.{txt,html}.j2``."""
    from bot.render import render

    message = EmailMessage(policy=email_policy)
    message["Subject"] = " ".join(subject.split())  # one line, whatever the title held
    message["From"] = server.sender
    message["To"] = to
    message["Date"] = format_datetime(at)
    message["Message-ID"] = message_id(seed, server)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    message["X-Auto-Response-Suppress"] = "All"  # the same, for Exchange
    context = {**context, "to": to}
    message.set_content(render(f"email/{template}.txt.j2", **context).rstrip("\n") + "\n")
    message.add_alternative(render(f"email/{template}.html.j2", **context), subtype="html")
    return message


def alert_message(server: MailServer, to: Address, alert: Any, at: datetime, seed: str):
    """An alert (``bot.alerts.Alert``) as an email: its title is the subject."""
    return build_message(server, to, alert.title, "alert", at, seed, alert=alert)


def added_message(server: MailServer, to: Address, scope: str, at: datetime) -> EmailMessage:
    """The test message a new address gets: proof that mail reaches it."""
    return build_message(
        server,
        to,
        f"Alerts about spend for {scope} will come to this address",
        "added",
        at,
        f"added\0{to.addr_spec}\0{at.isoformat()}",
        scope=scope,
    )


# -- sending -------------------------------------------------------------------------------


def send(server: MailServer, message: EmailMessage, to: Address) -> None:
    """Hand ``message`` to the server for ``to``; :class:`MailFailed` when it is not taken."""
    context = ssl.create_default_context(cafile=server.ca_file)
    try:
        if server.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=TIMEOUT_SECONDS, context=context
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS)
        with smtp:
            smtp.ehlo()
            if not server.implicit_tls:
                _upgrade(smtp, server, context)
            if server.username:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message, from_addr=server.sender.addr_spec, to_addrs=[to.addr_spec])
    except smtplib.SMTPRecipientsRefused as error:
        code, answer = next(iter(error.recipients.values()), (0, b""))
        raise _answered("refused the address", code, answer, to) from None
    except smtplib.SMTPSenderRefused as error:
        raise _answered(
            f"refused the sender {server.sender.addr_spec} ({SMTP_FROM})",
            error.smtp_code,
            error.smtp_error,
            to,
        ) from None
    except smtplib.SMTPDataError as error:
        raise _answered("refused the message", error.smtp_code, error.smtp_error, to) from None
    except smtplib.SMTPAuthenticationError as error:
        raise MailFailed(
            f"the mail server {server.where} refused the login ({error.smtp_code}): check the "
            f"user and password in {SMTP_URL}"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise MailFailed(
            f"the mail server {server.where} offers no login (AUTH) here: drop the user and "
            f"password from {SMTP_URL}, or use smtps://"
        ) from None
    except ssl.SSLCertVerificationError as error:
        raise MailFailed(
            f"the mail server {server.where}'s certificate is not trusted ({error.verify_message})"
            f": for a private certificate authority, point {SMTP_CA_FILE} at its PEM file"
        ) from None
    except MailFailed:
        raise
    except (smtplib.SMTPException, ssl.SSLError, OSError) as error:
        log.warning("mail to the server %s failed: %s", server.where, type(error).__name__)
        raise MailFailed(
            f"the mail server {server.where} did not answer ({type(error).__name__})"
        ) from None


def _upgrade(smtp: smtplib.SMTP, server: MailServer, context: ssl.SSLContext) -> None:
    """STARTTLS when the server offers it; otherwise refuse what must not go in the clear."""
    if smtp.has_extn("starttls"):
        smtp.starttls(context=context)
        smtp.ehlo()
        return
    if server.require_tls:
        raise MailFailed(
            f"the mail server {server.where} offers no TLS (STARTTLS) and {SMTP_REQUIRE_TLS}=1: "
            "not sent in the clear; use smtps:// or a server that offers STARTTLS"
        )
    if server.username:
        raise MailFailed(
            f"the mail server {server.where} offers no TLS (STARTTLS): the password in "
            f"{SMTP_URL} is never sent in the clear; use smtps:// or a server that offers STARTTLS"
        )


def _answered(what: str, code: int, answer: bytes | str, to: Address) -> MailFailed:
    """A server's reply as a reason: a 5xx is for good; its words never hold the address."""
    words = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    for written in {to.addr_spec, to.addr_spec.lower()}:
        words = re.sub(re.escape(written), "the address", words, flags=re.IGNORECASE)
    words = " ".join(words.split())[:SERVER_WORDS]
    for_good = 500 <= code < 600
    later = "" if for_good else ", tried again later"
    return MailFailed(f"the mail server {what}: {code} {words}{later}".rstrip(), for_good=for_good)


def send_alert(
    environ: Mapping[str, str], address: str, alert: Any, at: datetime, *, seed: str
) -> None:
    """Email ``alert`` to ``address`` (as kept: ``Ana <ana@example.com>``); ``seed`` (the
    ledger's key for this place) makes its Message-ID. :class:`MailFailed` when not taken."""
    if not address:  # sealed with a key this process lacks (see route_addresses)
        raise MailFailed(
            "not sent by this process: the address is sealed with a key it lacks, so a "
            "process that has the key sends it"
        )
    try:
        server = MailServer.from_env(environ)
    except MailNotConfigured as error:
        raise MailFailed(f"not sent: {error}") from None
    [to] = parse_addresses(address)
    send(server, alert_message(server, to, alert, at, f"{seed}\0{to.addr_spec}"), to)


# -- the addresses of a route --------------------------------------------------------------


def route_addresses(db: Any, session: Any, route_id: int) -> list[tuple[str, str]]:
    """(number, address) of each address an alert route emails, oldest first.

    An address sealed with a key this process lacks (rotated while it runs) comes
    as ``""``: still owed, for a process that has the key. One that cannot be
    opened at all is left out, with a warning naming its number.
    """
    from sqlalchemy import select

    from storage.crypto import DecryptionError
    from storage.models import AlertEmail

    found = []
    rows = session.scalars(
        select(AlertEmail).where(AlertEmail.route_id == route_id).order_by(AlertEmail.id)
    )
    for row in rows:
        try:
            address = db.keyring.open(row.address_sealed, row.address_aad).decode()
        except DecryptionError as error:
            if error.key_id is not None and error.key_id not in db.keyring.key_ids:
                db.missing_key_ids()  # rotated while this process runs: said once
                found.append((str(row.id), ""))
            else:
                log.warning("email address %s of alert route %s cannot be opened", row.id, route_id)
            continue
        found.append((str(row.id), address))
    return found
