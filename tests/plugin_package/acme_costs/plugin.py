"""The entry point: ``acme = "acme_costs.plugin"`` in group ``xai_usage.providers``."""

from __future__ import annotations

from acme_costs.provider import BASE_URL_SETTING, AcmeProvider
from providers import hookimpl


@hookimpl
def register_providers(register, config) -> None:
    register(AcmeProvider(config.get(BASE_URL_SETTING) or "https://api.acme.example"))
