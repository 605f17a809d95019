"""A small typed facade over pluggy: load providers, look them up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pluggy

from providers import hookspecs
from providers.types import Provider

ENTRY_POINT_GROUP = "xai_usage.providers"
DEFAULT_PLUGINS = ("providers.default_xai",)
DEFAULT_PROVIDER = "xai"
"""The provider a command means when it names none: the built-in one."""


class UnknownProvider(LookupError):
    pass


class ProviderRegistry:
    """The providers loaded for this process, by name."""

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            self.add(provider)

    def add(self, provider: object) -> None:
        if not isinstance(provider, Provider):
            raise TypeError(f"{provider!r} does not implement the Provider protocol")
        if provider.name in self._providers:
            raise ValueError(f"two providers are both named {provider.name!r}")
        self._providers[provider.name] = provider

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(sorted(self._providers)) or "none"
            raise UnknownProvider(
                f"no provider named {name!r} is loaded (loaded: {known})"
            ) from None

    def __iter__(self):
        return iter(sorted(self._providers.values(), key=lambda p: p.name))

    def __len__(self) -> int:
        return len(self._providers)


def plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """The in-tree defaults plus, unless told not to, installed plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    import importlib

    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()  # a misspelled hook implementation fails loudly
    return pm


def load_providers(
    config: Mapping[str, str], pm: pluggy.PluginManager | None = None
) -> ProviderRegistry:
    pm = pm or plugin_manager()
    registry = ProviderRegistry()
    pm.hook.register_providers(register=registry.add, config=config)
    return registry
