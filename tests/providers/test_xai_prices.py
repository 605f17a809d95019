"""xAI's list prices and its words for kinds of usage, as the host receives them.

The host knows them only through the provider's optional capabilities
(``UsageKindProvider``, ``PriceListProvider``); the file and the rules are xAI's.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from providers.manager import load_providers, plugin_manager
from providers.types import PriceListProvider, UsageKind, UsageKindProvider
from providers.xai.prices import PriceFileError, price_table


@pytest.fixture
def xai():
    return load_providers({}, pm=plugin_manager(load_entry_points=False)).get("xai")


def test_the_registered_xai_provider_has_both_capabilities(xai):
    assert isinstance(xai, UsageKindProvider)
    assert isinstance(xai, PriceListProvider)
    assert xai.list_prices() is price_table()  # read once, kept


def test_the_price_file_parses_with_a_date_a_source_and_known_siblings(xai):
    table = xai.list_prices()
    assert table.source.startswith("https://")
    assert date(2025, 1, 1) <= table.as_of <= date.today()
    grok4 = table.get("grok-4-0709")
    assert table.get("grok-4") is grok4  # an alias
    assert grok4.cheaper == "grok-4-fast-reasoning"
    assert grok4.price(UsageKind.INPUT) == D("3.00") / D(1_000_000)  # per token
    assert grok4.price(UsageKind.REASONING) == grok4.price(UsageKind.OUTPUT)  # billed as output
    assert grok4.price(UsageKind.SEARCH) is None  # not in the file: unknown, not free
    assert table.get("grok-2-image-1212").price(UsageKind.IMAGES) == D("0.07")  # per image
    for price in table.models.values():
        assert price.per_unit, price.model
        if price.cheaper:
            cheaper = table.get(price.cheaper)
            for kind, usd in price.per_unit.items():
                assert cheaper.per_unit.get(kind, usd) < usd, (price.model, kind)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('as_of = "2025-11-01"\nsource = "https://x"\n[models.a]\ninput = 0.2\n', "as strings"),
        ('as_of = "2025-11-01"\nsource = "https://x"\n[models.a]\ninptu = "1"\n', "unknown field"),
        ('as_of = "2025-11-01"\nsource = "https://x"\n[models.a]\ninput = "x"\n', "not a number"),
        (
            'as_of = "2025-11-01"\nsource = "https://x"\n[models.a]\ninput = "1"\ncheaper = "b"\n',
            "unknown",
        ),
        ('source = "https://x"\n[models.a]\ninput = "1"\n', "as_of"),
        ('as_of = "2025-11-01"\nsource = "http://x"\n[models.a]\ninput = "1"\n', "https"),
    ],
)
def test_a_malformed_price_file_is_refused_saying_where(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PriceFileError, match=problem):
        price_table(path)


def test_a_malformed_price_file_is_a_value_error_as_the_contract_says(tmp_path: Path):
    path = tmp_path / "prices.toml"
    path.write_text("as_of = \n")
    with pytest.raises(ValueError, match=r"^prices\.toml: "):
        price_table(path)


@pytest.mark.parametrize(
    ("unit_type", "kind"),
    [
        ("Prompt text tokens", UsageKind.INPUT),
        ("Cached prompt text tokens", UsageKind.CACHED_INPUT),
        ("Completion tokens", UsageKind.OUTPUT),
        ("Reasoning tokens", UsageKind.REASONING),
        ("Images", UsageKind.IMAGES),
        ("Live search sources", UsageKind.SEARCH),
        ("Video seconds", "Video seconds"),  # unknown: kept as it comes
    ],
)
def test_unit_types_are_read_as_the_hosts_kinds(xai, unit_type: str, kind: str):
    assert xai.usage_kind(unit_type) == kind
