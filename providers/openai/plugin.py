"""Registers the OpenAI provider: the entry point ``openai = "providers.openai.plugin"``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from providers.hookspecs import hookimpl
from providers.openai.provider import OpenAIProvider


@hookimpl
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    register(OpenAIProvider.from_config(config))
