"""A provider's list prices, read from a TOML file it ships.

A price table is data, kept in one file per provider so updating it is
editing a number and a date (``providers/xai/prices.toml`` is the example).
Every provider's file has the same shape, so it is read and checked here,
once: exact decimals written as strings, known fields only, an https source,
and siblings (``cheaper``) that exist.

The file's fields, per model (prices in US dollars per 1M tokens; images per
image):

``input``, ``cached_input``, ``output``, ``image``
    the prices, as strings ("0.20") so they stay exact decimals;
``aliases``
    other ids the cost rows may name the model by;
``cheaper``
    a model of the same file that does the same kind of work for less;
``unsure``
    true when a price was not confirmed at ``source`` on ``as_of``.

Reasoning (thinking) tokens are billed at the output price by every provider
this project reads, so a model with an output price gets the same reasoning
price.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from providers.types import ModelPrice, PriceTable, UsageKind

PER_TOKENS = Decimal(1_000_000)
"""Token prices are written per million tokens."""

# The file's field for each kind, and how many units its price is for.
_PRICE_FIELDS = {
    UsageKind.INPUT: ("input", PER_TOKENS),
    UsageKind.CACHED_INPUT: ("cached_input", PER_TOKENS),
    UsageKind.OUTPUT: ("output", PER_TOKENS),
    UsageKind.IMAGES: ("image", Decimal(1)),
}
_KNOWN_KEYS = {"aliases", "cheaper", "unsure", *(name for name, _ in _PRICE_FIELDS.values())}


class PriceFileError(ValueError):
    """The price file is malformed: the message says where."""


@cache
def load_price_table(path: Path) -> PriceTable:
    """The price file, parsed and checked; read once per path and kept.

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
        if UsageKind.OUTPUT in per_unit:  # reasoning tokens are billed as output tokens
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
