"""OpenAI's and Anthropic's list prices, as the host receives them (``PriceListProvider``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from providers.manager import load_providers, plugin_manager
from providers.types import UsageKind

PER_TOKEN = D(1) / D(1_000_000)


@pytest.fixture(scope="module")
def providers():
    return load_providers({}, pm=plugin_manager(load_entry_points=True))


@pytest.mark.parametrize(
    ("provider", "model", "alias", "input_", "cached", "output", "cheaper", "unsure"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o", "2.50", "1.25", "10.00",
         "gpt-4o-mini-2024-07-18", True),
        ("openai", "o3-2025-04-16", "o3", "2.00", "0.50", "8.00", None, True),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1", "15.00", "1.50", "75.00",
         "claude-sonnet-4-20250514", False),
        ("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5", "1.00", "0.10", "5.00",
         None, False),
    ],
)  # fmt: skip
def test_each_price_is_per_token_dated_sourced_and_marked_when_unconfirmed(
    providers, provider, model, alias, input_, cached, output, cheaper, unsure
) -> None:
    table = providers.get(provider).list_prices()
    assert table.source.startswith("https://") and table.as_of == date(2026, 12, 7)
    price = table.get(model)
    assert table.get(alias) is price  # the family name finds the same prices
    assert price.price(UsageKind.INPUT) == D(input_) * PER_TOKEN
    assert price.price(UsageKind.CACHED_INPUT) == D(cached) * PER_TOKEN
    assert (
        price.price(UsageKind.OUTPUT) == price.price(UsageKind.REASONING) == D(output) * PER_TOKEN
    )
    assert (price.cheaper, price.unsure) == (cheaper, unsure)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_cheaper_sibling_is_cheaper_at_every_kind(providers, provider) -> None:
    table = providers.get(provider).list_prices()
    for price in table.models.values():
        if price.cheaper:
            sibling = table.get(price.cheaper)
            for kind, usd in price.per_unit.items():
                assert sibling.price(kind) < usd, (price.model, kind)


@pytest.mark.parametrize(
    ("provider", "unit_type", "kind"),
    [
        ("openai", "input", UsageKind.INPUT),
        ("openai", "cached input", UsageKind.CACHED_INPUT),
        ("openai", "output", UsageKind.OUTPUT),
        ("openai", "input (batch)", "input (batch)"),
        ("openai", "Image models", "Image models"),
        ("openai", "web search tool calls", UsageKind.SEARCH),
        ("anthropic", "uncached_input_tokens", UsageKind.INPUT),
        ("anthropic", "cache_read_input_tokens", UsageKind.CACHED_INPUT),
        ("anthropic", "output_tokens", UsageKind.OUTPUT),
        ("anthropic", "web_search", UsageKind.SEARCH),
        ("anthropic", "cache_creation.ephemeral_1h_input_tokens", "1-hour cache write tokens"),
        ("anthropic", "code_execution", "code execution"),
        ("anthropic", "a_type_to_come", "a_type_to_come"),
    ],
)  # fmt: skip
def test_unit_types_are_read_as_the_hosts_kinds_or_kept(providers, provider, unit_type, kind):
    assert providers.get(provider).usage_kind(unit_type) == kind
