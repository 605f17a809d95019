"""The built-in xAI provider, registered exactly as a third-party plugin is."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from providers.hookspecs import hookimpl
from providers.http import RetryPolicy
from providers.xai.provider import DEFAULT_BASE_URL, XaiProvider


@hookimpl
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    deadline = config.get("XAI_USAGE_HTTP_DEADLINE")
    retry = RetryPolicy(deadline=float(deadline)) if deadline else RetryPolicy()
    register(
        XaiProvider(base_url=config.get("XAI_MANAGEMENT_API_URL") or DEFAULT_BASE_URL, retry=retry)
    )
