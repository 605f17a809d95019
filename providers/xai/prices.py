"""xAI's list prices (``prices.toml``) and the kinds of usage xAI bills.

The price table is data, kept in one file so updating it is editing a number
and a date. The host's kinds of usage (:class:`providers.types.UsageKind`) are
read from xAI's own words for a unit type ("Prompt text tokens", "Reasoning
tokens"...), which are undocumented and may change: a unit type no rule
recognises is kept as its own kind, never dropped. :class:`XaiProvider` hands
both to the host; nothing else reads this module.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from providers.types import ModelPrice, PriceTable, UsageKind

PRICES_FILE = Path(__file__).with_name("prices.toml")
PER_TOKENS = Decimal(1_000_000)
"""Token prices are written per million tokens."""

# First match wins: "cached prompt" must be read before "prompt".
_KIND_RULES = (
    (re.compile(r"cache"), UsageKind.CACHED_INPUT),
    (re.compile(r"reason|thinking"), UsageKind.REASONING),
    (re.compile(r"image"), UsageKind.IMAGES),
    (re.compile(r"search|source|tool"), UsageKind.SEARCH),
    (re.compile(r"completion|output|generated"), UsageKind.OUTPUT),
    (re.compile(r"prompt|input"), UsageKind.INPUT),
)
# The file's field for each kind, and how many units its price is for.
_PRICE_FIELDS = {
    UsageKind.INPUT: ("input", PER_TOKENS),
    UsageKind.CACHED_INPUT: ("cached_input", PER_TOKENS),
    UsageKind.OUTPUT: ("output", PER_TOKENS),
    UsageKind.IMAGES: ("image", Decimal(1)),
}
_KNOWN_KEYS = {"aliases", "cheaper", "unsure", *(name for name, _ in _PRICE_FIELDS.values())}


def usage_kind(unit_type: str) -> UsageKind | str:
    """The kind of usage one of xAI's unit types is, or the unit type itself."""
    words = unit_type.lower()
    for rule, kind in _KIND_RULES:
        if rule.search(words):
            return kind
    return unit_type


class PriceFileError(ValueError):
    """The price file is malformed: the message says where."""


@cache
def price_table(path: Path = PRICES_FILE) -> PriceTable:
    """The price file, parsed and checked: exact decimals, known fields, siblings that exist.

    Prices in the table are per single unit (one token, one image), as the
    contract has them; the file writes tokens per million.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PriceFileError(f"{path.name}: {error}") from None
    try:
        as_of = date.fromisoformat(str(raw["as_of"]))
        source = str(raw["source"])
        entries = raw["models"]
    except (KeyError, ValueError) as error:
        raise PriceFileError(f"{path.name}: needs as_of (YYYY-MM-DD), source, models") from error
    if not source.startswith("https://"):
        raise PriceFileError(f"{path.name}: source must be an https URL")
    models: dict[str, ModelPrice] = {}
    for model, entry in entries.items():
        unknown = sorted(set(entry) - _KNOWN_KEYS)
        if unknown:
            raise PriceFileError(f"{path.name}: {model}: unknown field {unknown[0]!r}")
        per_unit = {}
        for kind, (name, units) in _PRICE_FIELDS.items():
            if name in entry:
                per_unit[kind] = _price(path, model, name, entry[name]) / units
        if not per_unit:
            raise PriceFileError(f"{path.name}: {model}: no price")
        if UsageKind.OUTPUT in per_unit:  # xAI bills reasoning tokens as output tokens
            per_unit[UsageKind.REASONING] = per_unit[UsageKind.OUTPUT]
        price = ModelPrice(model, per_unit, entry.get("cheaper"), bool(entry.get("unsure")))
        for name in (model, *entry.get("aliases", ())):
            if name in models:
                raise PriceFileError(f"{path.name}: {name} is listed twice")
            models[name] = price
    for price in models.values():
        if price.cheaper is not None and price.cheaper not in models:
            raise PriceFileError(f"{path.name}: {price.model}: cheaper {price.cheaper!r} unknown")
    return PriceTable(as_of, source, models)


def _price(path: Path, model: str, name: str, value: object) -> Decimal:
    if not isinstance(value, str):
        raise PriceFileError(f'{path.name}: {model}.{name}: write prices as strings, e.g. "0.20"')
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise PriceFileError(f"{path.name}: {model}.{name}: {value!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise PriceFileError(f"{path.name}: {model}.{name}: {value!r} is not a price")
    return price
