"""Registers the Anthropic provider (entry point ``anthropic = "providers.anthropic.plugin"``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from providers.anthropic.provider import AnthropicProvider
from providers.hookspecs import hookimpl


@hookimpl
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    register(AnthropicProvider.from_config(config))
