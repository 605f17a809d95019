"""xAI's list prices (``prices.toml``) and the kinds of usage xAI bills.

The price file has the shape every provider's has (read by
:mod:`providers.price_file`). The host's kinds of usage
(:class:`providers.types.UsageKind`) are read from xAI's own words for a unit
type ("Prompt text tokens", "Reasoning tokens"...), which are undocumented
and may change: a unit type no rule recognises is kept as its own kind, never
dropped. :class:`XaiProvider` hands both to the host; nothing else reads this
module.
"""

from __future__ import annotations

import re
from pathlib import Path

from providers.price_file import PriceFileError, load_price_table
from providers.types import PriceTable, UsageKind

__all__ = ["PRICES_FILE", "PriceFileError", "price_table", "usage_kind"]

PRICES_FILE = Path(__file__).with_name("prices.toml")

# First match wins: "cached prompt" must be read before "prompt".
_KIND_RULES = (
    (re.compile(r"cache"), UsageKind.CACHED_INPUT),
    (re.compile(r"reason|thinking"), UsageKind.REASONING),
    (re.compile(r"image"), UsageKind.IMAGES),
    (re.compile(r"search|source|tool"), UsageKind.SEARCH),
    (re.compile(r"completion|output|generated"), UsageKind.OUTPUT),
    (re.compile(r"prompt|input"), UsageKind.INPUT),
)


def usage_kind(unit_type: str) -> UsageKind | str:
    """The kind of usage one of xAI's unit types is, or the unit type itself."""
    words = unit_type.lower()
    for rule, kind in _KIND_RULES:
        if rule.search(words):
            return kind
    return unit_type


def price_table(path: Path = PRICES_FILE) -> PriceTable:
    """xAI's price file, parsed, checked and kept (see :mod:`providers.price_file`)."""
    return load_price_table(path)
