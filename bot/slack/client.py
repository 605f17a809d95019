"""The Slack Web API client every part of the app uses: SLACK_API_URL reaches every call,
and Slack's 429s are retried after Retry-After."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.slack.settings import SlackSettings


def web_client(settings: SlackSettings, token: str | None = None) -> WebClient:
    client = WebClient(token=token, base_url=settings.api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=5))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client
