"""Building the running application from settings: store, keys, providers.

Shared by the terminal and the Slack app so both start the same way and fail
the same clear way.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from bot.config import Settings
from storage.crypto import KEY_FILE_NAME, KeySource, configured_key_ids, load_keyring
from storage.reader import SqliteReader, open_sqlite_reader

if TYPE_CHECKING:  # imported when first used: a terminal report needs none of them
    from bot.sync import SyncEngine
    from providers.manager import ProviderRegistry
    from storage.db import Database

log = logging.getLogger(__name__)

SECRET_ENV_VARS = (
    "XAI_MANAGEMENT_KEY",
    "XAI_USAGE_ENCRYPTION_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_SECRET",
    "XAI_USAGE_SMTP_URL",  # holds the mail server's password (bot.mail)
)


class RedactSecrets(logging.Filter):
    """Last line of defence: blank known secret values out of every log record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def add(self, secret: str) -> None:
        if len(secret) >= 8 and secret not in self.secrets:
            self.secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                record.msg, record.args = self._redact(message), None
            if record.exc_info and not record.exc_text:
                # A traceback quotes exception messages (e.g. httpx's, with the URL):
                # format it here, redacted, so the handler's formatter uses this text.
                record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
        return True

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


REDACTOR = RedactSecrets([])


class HideUrlSecrets(logging.Filter):
    """The HTTP libraries log each request's full URL (httpx at INFO, httpcore and
    urllib3 at DEBUG). A URL's path or query can be the secret itself (a Slack
    incoming webhook), so their records keep only ``scheme://host:port/…``."""

    LIBRARIES = ("httpx", "httpcore", "urllib3")
    URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s\"'?#]+)[/?#][^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.LIBRARIES):
            message = record.getMessage()
            hidden = self.URL.sub(r"\1/…", message)
            if hidden != message:
                record.msg, record.args = hidden, None
        return True


class WithholdBodies(logging.Filter):
    """Slack's libraries log request bodies, views and headers at some levels
    (Bolt logs the whole body when a signature fails). Keep the first words of
    such a record, which say what happened, and withhold the rest."""

    LIBRARIES = ("slack_bolt", "slack_sdk", "slack")
    MARKERS = (
        "body",
        "payload",
        "view",
        "headers",
        "token",
        "Bearer",
        "state",
        "query",
        "params",
        "response",
        "private_metadata",
        "{",
        "(",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.LIBRARIES):
            message = record.getMessage()
            cuts = [message.find(m) for m in self.MARKERS if m in message]
            if cuts:
                record.msg, record.args = message[: min(cuts)] + " [details withheld]", None
        return True


def configure_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("XAI_USAGE_LOG_LEVEL") or "WARNING").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(WithholdBodies())
    handler.addFilter(HideUrlSecrets())
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in SECRET_ENV_VARS:
        if os.environ.get(name):
            REDACTOR.add(os.environ[name])


@dataclass
class Runtime:
    """Lazily built parts: a command that needs no database opens none."""

    settings: Settings
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    warn: Callable[[str], None] = field(default=lambda message: log.warning("%s", message))

    @cached_property
    def key_source(self) -> KeySource:
        key_file = self.settings.data_dir / KEY_FILE_NAME
        existed = key_file.exists()
        source = load_keyring(self.settings.environ, self.settings.data_dir)
        # Said when the key file is made (or is too open), not on every command.
        if source.warning and (not existed or "chmod" in source.warning):
            self.warn(source.warning)
        return source

    @cached_property
    def db(self) -> Database:
        from storage.db import loose_permissions, open_store

        db = open_store(self.settings.database_url, self.key_source.keyring)
        if not db.read_only and (warning := loose_permissions(db.url)):
            self.warn(warning)
        return db

    @cached_property
    def providers(self) -> ProviderRegistry:
        from providers.manager import load_providers, plugin_manager

        load_entry_points = self.settings.environ.get("XAI_USAGE_NO_PLUGINS") != "1"
        return load_providers(
            self.settings.provider_config, plugin_manager(load_entry_points=load_entry_points)
        )

    @cached_property
    def engine(self) -> SyncEngine:
        """The sync engine; it writes, so a store opened read-only stops here, before any fetch."""
        from bot.sync import SyncEngine
        from storage.db import StoreError, describe_url

        if self.db.read_only:
            raise StoreError(
                f"The {describe_url(self.db.url)} (DATABASE_URL) is read-only to this user: "
                "reports work, but this command writes. Run it as the file's owner, or make "
                "the file and its folder writable."
            )
        return SyncEngine(
            self.db,
            self.providers,
            concurrency=self.settings.sync_concurrency,
            trailing_days=self.settings.trailing_days,
            clock=self.clock,
            settle_hours=self.settings.settle_hours,
        )

    def sqlite_reader(self) -> SqliteReader | None:
        """The store read with sqlite3 alone, when opening it as :attr:`db` would only read.

        For terminal reports: SQLAlchemy's import costs more than the report.
        None whenever :attr:`db` would migrate, warn or fail (see
        :func:`storage.reader.open_sqlite_reader`); the caller then uses it.
        """
        if "db" in self.__dict__:
            return None
        settings = self.settings
        return open_sqlite_reader(
            settings.database_url,
            lambda: configured_key_ids(settings.environ, settings.data_dir),
        )

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
