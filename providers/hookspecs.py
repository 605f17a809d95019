"""The hooks a provider plugin implements.

A plugin is a module or object with ``@hookimpl`` functions. Like datasette,
an implementation may accept any subset of a hook's documented arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pluggy

PROJECT = "xai_usage"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers(register: Callable[[object], None], config: Mapping[str, str]) -> None:
    """Hand provider objects to the host with ``register(provider)``.

    ``config`` is the host's configuration (settings such as a base URL
    override), resolved by the host; a provider never reads the environment.
    """
