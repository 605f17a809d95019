"""Registers the OpenAI provider: the entry point ``openai = "providers.openai.plugin"``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from providers.hookspecs import hookimpl
from providers.http import RetryPolicy
from providers.openai.provider import BASE_URL_SETTING, DEFAULT_BASE_URL, OpenAIProvider


@hookimpl
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    deadline = config.get("XAI_USAGE_HTTP_DEADLINE")
    retry = RetryPolicy(deadline=float(deadline)) if deadline else RetryPolicy()
    register(OpenAIProvider(base_url=config.get(BASE_URL_SETTING) or DEFAULT_BASE_URL, retry=retry))
