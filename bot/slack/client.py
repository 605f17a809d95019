"""The Slack Web API client every part of the app uses: SLACK_API_URL reaches every call,
Slack's 429s are retried after Retry-After, and a connection error is retried unless it
may have cut off the answer to a post that landed."""

from __future__ import annotations

from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.slack.settings import SlackSettings

POSTING_METHODS = frozenset(
    {"chat.postMessage", "chat.scheduleMessage", "chat.meMessage", "files.completeUploadExternal"}
)
"""Web API methods that add a message: never sent again after a lost answer."""


class RetryUnlessPosted(ConnectionErrorRetryHandler):
    """Connection errors are retried, except a post whose answer was lost.

    A request that never went (the connection refused, or cut while it was being
    sent) comes back as a ``URLError``: safe to send again. A post that went and
    whose answer did not come back may have landed; sending it again blind is how
    one digest appeared three times. That one is raised instead, and the job looks
    for the post before sending it again (``bot.jobs._post_once``).
    """

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        method = request.url.rsplit("/", 1)[-1].partition("?")[0]
        if method in POSTING_METHODS and not isinstance(error, URLError):
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)


def web_client(settings: SlackSettings, token: str | None = None) -> WebClient:
    """Our Web API client: 429s waited out, connection errors retried unless a post may
    have landed (:class:`RetryUnlessPosted`; slack_sdk's own default retries are replaced)."""
    client = WebClient(token=token, base_url=settings.api_url)
    client.retry_handlers = [
        RateLimitErrorRetryHandler(max_retry_count=5),
        RetryUnlessPosted(max_retry_count=2),
    ]
    return client
