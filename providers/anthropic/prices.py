"""Anthropic's list prices (``prices.toml``) and the kinds of usage its cost report names.

Grouped by description, a cost result carries a ``token_type``
(``uncached_input_tokens``, ``cache_read_input_tokens``, ``output_tokens``,
``cache_creation.ephemeral_5m_input_tokens``...) or, for what is not tokens, a
``cost_type`` (``web_search``, ``code_execution``). They are matched exactly:
cache writes are billed at their own prices (1.25x or 2x input), so they stay
their own kinds rather than be priced as input, named as people read them
("5-minute cache write tokens"); a type not known here is kept as it came.
Nothing is guessed, nothing dropped.
"""

from __future__ import annotations

from pathlib import Path

from providers.price_file import load_price_table
from providers.types import PriceTable, UsageKind

PRICES_FILE = Path(__file__).with_name("prices.toml")

_KINDS = {
    "uncached_input_tokens": UsageKind.INPUT,
    "cache_read_input_tokens": UsageKind.CACHED_INPUT,
    "output_tokens": UsageKind.OUTPUT,
    "web_search": UsageKind.SEARCH,
    # Kinds of their own, without a list price here (prices.toml): named for people.
    "cache_creation.ephemeral_5m_input_tokens": "5-minute cache write tokens",
    "cache_creation.ephemeral_1h_input_tokens": "1-hour cache write tokens",
    "code_execution": "code execution",
}


def usage_kind(unit_type: str) -> UsageKind | str:
    """The kind of usage of a ``token_type`` or ``cost_type``, or the type itself."""
    return _KINDS.get(unit_type.strip().lower(), unit_type)


def price_table(path: Path = PRICES_FILE) -> PriceTable:
    """Anthropic's price file, parsed, checked and kept (see :mod:`providers.price_file`)."""
    return load_price_table(path)
