"""The built-in xAI provider, registered exactly as a third-party plugin is."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from providers.hookspecs import hookimpl
from providers.xai.provider import XaiProvider


@hookimpl
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    register(XaiProvider.from_config(config))
