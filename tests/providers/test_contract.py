"""The provider contract's later additions: each has a default, so an older provider keeps
working, and the three providers this project ships declare theirs."""

from __future__ import annotations

import pytest

from providers.manager import ProviderRegistry, load_providers, plugin_manager
from providers.types import (
    DEFAULT_MAX_BACKFILL_DAYS,
    DEFAULT_SETTLE_HOURS,
    CheckResult,
    CredentialField,
    PriceListProvider,
    ProviderError,
    Reason,
    StandInProvider,
    UnitCostProvider,
    caveats,
    max_backfill_days,
    settle_hours,
)


class OldProvider:
    """A provider written against the first contract: none of the additions."""

    name = "old"
    display_name = "Old"
    credential_fields = (CredentialField("api_key", "API key", secret=True),)
    max_window_days = 7

    def mask(self, credentials):
        return "…"

    def default_label(self, credentials):
        return "Old"

    async def check_credentials(self, http, credentials):
        return CheckResult()

    async def fetch_daily_costs(self, http, credentials, start, end, *, by_key=True): ...

    async def fetch_billing(self, http, credentials):
        return None


@pytest.fixture(scope="module")
def shipped() -> ProviderRegistry:
    """The providers as the app loads them: xAI built in, the others through entry points."""
    return load_providers({}, pm=plugin_manager(load_entry_points=True))


def test_an_older_provider_still_registers_and_gets_the_defaults() -> None:
    old = ProviderRegistry([OldProvider()]).get("old")
    assert max_backfill_days(old) == DEFAULT_MAX_BACKFILL_DAYS == 90
    assert settle_hours(old) == DEFAULT_SETTLE_HOURS
    assert caveats(old) == ()
    assert not isinstance(old, StandInProvider)
    assert CredentialField("x", "X").optional is False
    assert CheckResult().account_id == CheckResult().account_name == ""


def test_openai_and_anthropic_are_registered_as_third_party_plugins_are(shipped) -> None:
    names = {p.name: type(p).__module__ for p in shipped}
    assert names == {
        "xai": "providers.xai.provider",
        "openai": "providers.openai.provider",
        "anthropic": "providers.anthropic.provider",
    }
    # Without the entry points only the built-in provider is there: they are plugins.
    built_in = load_providers({}, pm=plugin_manager(load_entry_points=False))
    assert [p.name for p in built_in] == ["xai"]


def test_the_base_urls_come_from_the_hosts_config(shipped) -> None:
    config = {"OPENAI_API_URL": "http://127.0.0.1:9/", "ANTHROPIC_API_URL": "http://127.0.0.1:8"}
    configured = load_providers(config, pm=plugin_manager(load_entry_points=True))
    assert configured.get("openai").base_url == "http://127.0.0.1:9"
    assert configured.get("anthropic").base_url == "http://127.0.0.1:8"
    assert shipped.get("openai").base_url == "https://api.openai.com"  # without /v1
    assert shipped.get("anthropic").base_url == "https://api.anthropic.com"


@pytest.mark.parametrize(
    ("name", "backfill", "settle", "caveat"),
    [
        ("xai", 90, 12, None),
        ("openai", 90, 48, "line items are free text"),
        ("anthropic", 90, 6, "Priority Tier"),
    ],
)
def test_each_provider_declares_its_reach_its_settling_and_its_caveats(
    shipped, name, backfill, settle, caveat
) -> None:
    provider = shipped.get(name)
    assert (max_backfill_days(provider), settle_hours(provider)) == (backfill, settle)
    said = " ".join(caveats(provider))
    assert (caveat in said) if caveat else said == ""
    assert isinstance(provider, StandInProvider)
    assert isinstance(provider, UnitCostProvider)
    assert isinstance(provider, PriceListProvider)


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_key_is_read_from_the_variable_the_provider_declares(shipped, name) -> None:
    (field,) = shipped.get(name).credential_fields
    assert (field.name, field.secret, field.optional) == ("admin_key", True, False)
    assert field.env_var == f"{name.upper()}_ADMIN_KEY"


def test_a_providers_own_reason_is_kept_and_says_whether_a_person_must_act() -> None:
    own = ProviderError("not_admin_key", "That is a project key.", needs_person=True)
    assert own.reason == "not_admin_key" and own.needs_person
    assert not ProviderError("busy_somewhere", "later").needs_person  # own codes: not by default
    # A code that is one of the host's reasons becomes it, with its own answer.
    known = ProviderError("invalid_key", "revoked")
    assert known.reason is Reason.INVALID_KEY and known.needs_person
    assert not ProviderError(Reason.RATE_LIMITED, "slow down").needs_person
    # ...unless the provider says otherwise.
    assert not ProviderError(Reason.INVALID_KEY, "x", needs_person=False).needs_person
