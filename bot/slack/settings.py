"""How the Slack app runs, read from the environment and checked at start.

A missing or contradictory setting is a :class:`ConfigError` naming the
variable to set, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.config import ConfigError
from bot.numbers import decimal_number, whole_number

DEFAULT_API_URL = "https://slack.com/api/"
# What the bot needs and no more: the slash command, replies and DMs;
# users:read to tell admins from members and guests (and their time zone).
SCOPES = (
    "commands",
    "chat:write",
    "users:read",
    "files:write",  # charts and exports (files.getUploadURLExternal, completeUploadExternal)
    "im:write",  # conversations.open: a private chart or export goes to the asker's DM
    "im:history",  # message.im: a direct message to the app is a command
)
# Optional: each workspace grants them or not at install. Only for a scheduled post
# whose answer Slack lost (or whose process died before the answer): the bot then
# looks for its own post in the channel (only channels it was invited to) instead of
# posting it again. A post whose answer came is found by its ts, without them.
OPTIONAL_SCOPES = ("channels:history", "groups:history")


@dataclass(frozen=True)
class HttpLimits:
    """How `serve --http` keeps slow or idle clients from taking it offline."""

    request_deadline: float = 5.0
    """Seconds a client has to send a whole request, headers and body, from its first
    byte (or from connecting); dripping a byte at a time does not extend it."""
    idle_timeout: int = 75
    """Seconds a kept-alive connection may sit idle between requests (longer than a load
    balancer's usual 60 s, so the balancer closes first and never reuses a closed one)."""
    max_connections: int = 10_000
    """Open connections at most; beyond it, the slowest unfinished one is dropped."""

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> HttpLimits:
        def number(name: str, default: float, *, lowest: float, whole: bool) -> float:
            raw = get(name)
            if raw is None:
                return default
            value = whole_number(raw) if whole else decimal_number(raw)
            if value is None or not lowest <= value:
                kind = "a whole number" if whole else "a number of seconds"
                raise ConfigError(f"{name} must be {kind} of at least {lowest:g}, got {raw!r}.")
            return value

        return cls(
            request_deadline=number(
                "XAI_USAGE_SERVE_REQUEST_DEADLINE", cls.request_deadline, lowest=0.5, whole=False
            ),
            idle_timeout=int(
                number("XAI_USAGE_SERVE_IDLE_TIMEOUT", cls.idle_timeout, lowest=1, whole=True)
            ),
            max_connections=int(
                number(
                    "XAI_USAGE_SERVE_MAX_CONNECTIONS", cls.max_connections, lowest=10, whole=True
                )
            ),
        )


@dataclass(frozen=True)
class SlackSettings:
    mode: str  # "socket" or "http"
    port: int
    api_url: str
    bot_token: str | None
    signing_secret: str | None
    app_token: str | None
    client_id: str | None
    client_secret: str | None
    admins: frozenset[str]
    limits: HttpLimits = field(default_factory=lambda: HttpLimits())

    @property
    def multi_workspace(self) -> bool:
        return self.client_id is not None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        force_http: bool = False,
        port: int | None = None,
        delivering_only: bool = False,
    ) -> SlackSettings:
        """``delivering_only``: for posting from `jobs run`, which receives no
        requests, so neither Socket Mode nor the signing secret matters."""

        def get(name: str) -> str | None:
            value = (environ.get(name) or "").strip()
            return value or None

        app_token, bot_token = get("SLACK_APP_TOKEN"), get("SLACK_BOT_TOKEN")
        signing_secret = get("SLACK_SIGNING_SECRET")
        client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
        mode = "socket" if app_token and not force_http else "http"

        if bool(client_id) != bool(client_secret):
            missing = "SLACK_CLIENT_SECRET" if client_id else "SLACK_CLIENT_ID"
            raise ConfigError(
                f"{missing} is not set. Installing in many workspaces needs both SLACK_CLIENT_ID "
                "and SLACK_CLIENT_SECRET (Basic Information > App Credentials)."
            )
        if client_id and bot_token:
            raise ConfigError(
                "Both SLACK_BOT_TOKEN (one workspace) and SLACK_CLIENT_ID (install in many "
                "workspaces) are set. Unset SLACK_BOT_TOKEN to use the install flow, or unset "
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to run in one workspace."
            )
        if not client_id and not bot_token:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set. Install the app to your workspace (OAuth & "
                "Permissions > Install) and set SLACK_BOT_TOKEN to its Bot User OAuth Token "
                "(xoxb-…); or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install it in "
                "many workspaces."
            )
        if bot_token and not bot_token.startswith("xoxb-"):
            raise ConfigError("SLACK_BOT_TOKEN must be a bot token, starting with xoxb-.")
        if app_token and not app_token.startswith("xapp-"):
            raise ConfigError(
                "SLACK_APP_TOKEN must be an app-level token with connections:write, starting "
                "with xapp- (Basic Information > App-Level Tokens)."
            )
        if delivering_only:
            mode = "http"
        elif mode == "socket" and client_id:
            raise ConfigError(
                "The install flow for many workspaces (SLACK_CLIENT_ID) needs HTTP mode: run "
                "`xai-usage serve --http`, or unset SLACK_APP_TOKEN."
            )
        if mode == "http" and not signing_secret and not delivering_only:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is not set. HTTP mode verifies every request with it "
                "(Basic Information > App Credentials > Signing Secret). For Socket Mode, set "
                "SLACK_APP_TOKEN instead."
            )
        api_url = get("SLACK_API_URL") or DEFAULT_API_URL
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}.")
        if not api_url.rstrip("/").endswith("/api"):
            api_url = api_url.rstrip("/") + "/api"
        if port is None:
            raw_port = get("PORT") or "3000"
            port = whole_number(raw_port)
            if port is None or port > 65535:
                raise ConfigError(f"PORT must be a port number (0-65535), got {raw_port!r}.")
        admins = frozenset(
            part.strip() for part in (get("XAI_USAGE_ADMINS") or "").split(",") if part.strip()
        )
        return cls(
            mode=mode,
            port=port,
            api_url=api_url.rstrip("/") + "/",
            bot_token=bot_token,
            signing_secret=signing_secret,
            app_token=app_token,
            client_id=client_id,
            client_secret=client_secret,
            admins=admins,
            limits=HttpLimits.from_env(get),
        )
