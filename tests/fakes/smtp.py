"""A real SMTP server on 127.0.0.1 (aiosmtpd), in the shapes email alerts meet.

``SmtpStandIn(mode=…)`` serves ``plain`` (no TLS offered), ``starttls`` (offers
STARTTLS with a certificate made here), or ``smtps`` (TLS from the first byte);
with ``login=(user, password)`` it asks for AUTH. ``answers`` refuses a
recipient with a reply of our choosing (``"550 5.1.1 no such user"``), and
``stop()``/``start()`` take it down and bring it back on the same port. What it
accepted is in ``received``, each with whether it came over TLS and who logged in.

The certificate is signed by a throwaway certificate authority (``CertificateAuthority``)
whose PEM file the client is told to trust with ``XAI_USAGE_SMTP_CA_FILE``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class CertificateAuthority:
    """A CA made for one test, and a server certificate for 127.0.0.1 and localhost."""

    def __init__(self, folder: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xai-usage test CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file = folder / "server.pem"
        self.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.key_file = folder / "server.key"
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    def part(self, subtype: str) -> str:
        """The ``text/<subtype>`` body, decoded."""
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None and found.get_content_subtype() == subtype, self.data
        return found.get_content()


def _over_tls(server, session) -> bool:
    """Whether the session is encrypted: upgraded by STARTTLS, or TLS from the start."""
    return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None


@dataclass
class SmtpStandIn:
    mode: str = "plain"  # plain | starttls | smtps
    authority: CertificateAuthority | None = None
    login: tuple[str, str] | None = None
    answers: dict[str, str] = field(default_factory=dict)
    """A recipient's address -> the reply to its RCPT TO (``"550 5.1.1 no such user"``)."""
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)
    """Every address a client asked to send to, taken or refused."""
    logins: list[tuple[str, bool]] = field(default_factory=list)
    """Each AUTH attempt: the user name, and whether it was over TLS."""
    port: int = 0

    def __post_init__(self) -> None:
        if self.mode != "plain" and self.authority is None:
            raise ValueError(f"{self.mode} needs a CertificateAuthority")
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        self.controller: Controller | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        scheme = "smtps" if self.mode == "smtps" else "smtp"
        who = f"{user}:{password}@" if user is not None else ""
        return f"{scheme}://{who}127.0.0.1:{self.port}"

    # aiosmtpd's handler hooks
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        self.rcpt_attempts.append(address)
        answer = self.answers.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or envelope.content,
                tls=_over_tls(server, session),
                login=session.auth_data.decode() if session.auth_data else None,
            )
        )
        return "250 OK"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append((auth_data.login.decode(), _over_tls(server, session)))
        ok = (
            self.login is not None
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == self.login
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    def start(self) -> SmtpStandIn:
        kwargs: dict = {"hostname": "127.0.0.1", "port": self.port, "ready_timeout": 10}
        if self.mode == "smtps":
            kwargs["ssl_context"] = self.authority.server_context()
            # aiosmtpd counts only STARTTLS as TLS for AUTH; this socket is TLS from the start.
            kwargs["auth_require_tls"] = False
        elif self.mode == "starttls":
            kwargs["tls_context"] = self.authority.server_context()
        if self.login is not None:
            kwargs |= {"authenticator": self._authenticate, "auth_required": True}
        self.controller = Controller(self, server_hostname="mail.test", **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SmtpStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
