"""Configuration, read once from the environment into a typed object.

Everything has a default that works on one machine with no setup; every
override is an environment variable named in README.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.numbers import clock_time, whole_number
from storage.reader import sqlite_url

WEBHOOKS_ALLOW_PRIVATE = "XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE"
"""1: alert webhooks may be on loopback or a private network (bot/webhooks.py)."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the variable to set."""


def default_data_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("XAI_USAGE_DATA_DIR"):
        return Path(environ["XAI_USAGE_DATA_DIR"]).expanduser()
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "xai-usage"


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    value = whole_number(raw)
    if value is None:
        raise ConfigError(f"{name} must be a whole number in ASCII digits, got {raw!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _clock_time(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = (environ.get(name) or default).strip()
    time = clock_time(raw)
    if time is None:
        raise ConfigError(f"{name} must be a UTC time like 06:00, got {raw!r}")
    return f"{time[0]:02d}:{time[1]:02d}"


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = (environ.get(name) or "0").strip()
    if raw not in ("0", "1"):
        raise ConfigError(f"{name} must be 1 (on) or 0 (off), got {raw!r}")
    return raw == "1"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    sync_concurrency: int = 32
    trailing_days: int = 3
    http_deadline: int = 60
    daily_sync_at: str = "06:00"
    settle_hours: int | None = None
    """Overrides every provider's settle time (bot.figures: final and provisional days)."""
    fresh_within_minutes: int = 60
    """A digest or alert syncs its scope first when its data is older than this."""
    fresh_budget_seconds: int = 60
    """How long that sync may take before the message goes out as it stands."""
    answer_processes: int = 1
    """Processes `serve` works commands' answers out in (bot.slack.answering); 0: its own."""
    webhooks_allow_private: bool = False
    """Alert webhooks may be on loopback or a private network (WEBHOOKS_ALLOW_PRIVATE);
    off, they must be on the public internet."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        data_dir = default_data_dir(environ)
        return cls(
            data_dir=data_dir,
            database_url=environ.get("DATABASE_URL") or sqlite_url(data_dir),
            sync_concurrency=_int(environ, "XAI_USAGE_SYNC_CONCURRENCY", 32, 1, 512),
            trailing_days=_int(environ, "XAI_USAGE_TRAILING_DAYS", 3, 1, 31),
            http_deadline=_int(environ, "XAI_USAGE_HTTP_DEADLINE", 60, 1, 600),
            daily_sync_at=_clock_time(environ, "XAI_USAGE_DAILY_SYNC_AT", "06:00"),
            fresh_within_minutes=_int(environ, "XAI_USAGE_FRESH_WITHIN", 60, 1, 24 * 60),
            fresh_budget_seconds=_int(environ, "XAI_USAGE_FRESH_BUDGET", 60, 0, 600),
            settle_hours=(
                _int(environ, "XAI_USAGE_SETTLE_HOURS", 12, 0, 72)
                if environ.get("XAI_USAGE_SETTLE_HOURS")
                else None
            ),
            answer_processes=_int(environ, "XAI_USAGE_ANSWER_PROCESSES", 1, 0, 16),
            webhooks_allow_private=_flag(environ, WEBHOOKS_ALLOW_PRIVATE),
            environ=environ,
        )

    @property
    def provider_config(self) -> Mapping[str, str]:
        """What provider plugins may see: API URLs and the HTTP deadline, no secrets."""
        urls = {k: v for k, v in self.environ.items() if k.endswith("_API_URL")}
        return {**urls, "XAI_USAGE_HTTP_DEADLINE": str(self.http_deadline)}
