"""Registers the Anthropic provider (entry point ``anthropic = "providers.anthropic.plugin"``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from providers.anthropic.provider import BASE_URL_SETTING, DEFAULT_BASE_URL, AnthropicProvider
from providers.hookspecs import hookimpl
from providers.http import RetryPolicy


@hookimpl
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    deadline = config.get("XAI_USAGE_HTTP_DEADLINE")
    retry = RetryPolicy(deadline=float(deadline)) if deadline else RetryPolicy()
    base_url = config.get(BASE_URL_SETTING) or DEFAULT_BASE_URL
    register(AnthropicProvider(base_url=base_url, retry=retry))
