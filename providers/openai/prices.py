"""OpenAI's list prices (``prices.toml``) and the kinds of usage its line items name.

A line item is ``"<model>, <kind>"``; the kinds read here are the ones seen in
OpenAI's costs (``input``, ``cached input``, ``output``), matched exactly: a
kind such as ``input (batch)`` is billed at another price, so it is kept as
its own kind rather than priced as ``input``. Nothing is guessed, nothing
dropped.
"""

from __future__ import annotations

from pathlib import Path

from providers.price_file import load_price_table
from providers.types import PriceTable, UsageKind

PRICES_FILE = Path(__file__).with_name("prices.toml")

_KINDS = {
    "input": UsageKind.INPUT,
    "cached input": UsageKind.CACHED_INPUT,
    "output": UsageKind.OUTPUT,
    "web search tool calls": UsageKind.SEARCH,
}


def usage_kind(unit_type: str) -> UsageKind | str:
    """The kind of usage of a line item's kind (``"cached input"``), or the kind itself."""
    return _KINDS.get(" ".join(unit_type.lower().split()), unit_type)


def price_table(path: Path = PRICES_FILE) -> PriceTable:
    """OpenAI's price file, parsed, checked and kept (see :mod:`providers.price_file`)."""
    return load_price_table(path)
