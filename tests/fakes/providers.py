"""The providers tests read insights with: the built-in ones, loaded as the app loads them.

Third-party plugins are never loaded in tests (their presence would change
what a test sees); a test that needs another provider registers its own fake.
"""

from __future__ import annotations

from functools import cache

from providers.manager import ProviderRegistry, load_providers, plugin_manager


@cache
def built_in() -> ProviderRegistry:
    return load_providers({}, pm=plugin_manager(load_entry_points=False))
