"""xAI's list prices (``prices.toml``) and the kinds of usage xAI bills.

The price table is data, kept in one file so updating it is editing a number
and a date. The kinds are read from xAI's own words for a unit type ("Prompt
text tokens", "Reasoning tokens"...), which are undocumented and may change:
a unit type no rule recognises is kept as its own kind, never dropped.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("prices.toml")
PER_TOKENS = Decimal(1_000_000)
"""Token prices are per million tokens."""

INPUT, CACHED_INPUT, OUTPUT, REASONING, IMAGES, SEARCH = (
    "input",
    "cached_input",
    "output",
    "reasoning",
    "images",
    "search",
)
KIND_LABELS = {
    INPUT: "input tokens",
    CACHED_INPUT: "cached input tokens",
    OUTPUT: "output tokens",
    REASONING: "reasoning tokens",
    IMAGES: "images",
    SEARCH: "search",
}
# First match wins: "cached prompt" must be read before "prompt".
_KIND_RULES = (
    (re.compile(r"cache"), CACHED_INPUT),
    (re.compile(r"reason|thinking"), REASONING),
    (re.compile(r"image"), IMAGES),
    (re.compile(r"search|source|tool"), SEARCH),
    (re.compile(r"completion|output|generated"), OUTPUT),
    (re.compile(r"prompt|input"), INPUT),
)
_PRICE_FIELDS = {INPUT: "input", CACHED_INPUT: "cached_input", OUTPUT: "output", IMAGES: "image"}
_KNOWN_KEYS = {"aliases", "cheaper", "unsure", *_PRICE_FIELDS.values()}


def usage_kind(unit_type: str) -> str:
    """The kind of usage a unit type is (a key of ``KIND_LABELS``), or the unit type itself."""
    words = unit_type.lower()
    for rule, kind in _KIND_RULES:
        if rule.search(words):
            return kind
    return unit_type


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


class PriceFileError(ValueError):
    """The price file is malformed: the message says where."""


@dataclass(frozen=True)
class ModelPrice:
    model: str
    per_unit: dict[str, Decimal]
    """USD per 1M tokens (per image for ``images``), by kind."""
    cheaper: str | None = None
    unsure: bool = False

    def price(self, kind: str) -> Decimal | None:
        """USD per unit of ``kind`` (one token, one image); reasoning is billed as output."""
        if kind == REASONING:
            kind = OUTPUT
        found = self.per_unit.get(kind)
        if found is None:
            return None
        return found if kind == IMAGES else found / PER_TOKENS


@dataclass(frozen=True)
class PriceTable:
    as_of: date
    source: str
    models: dict[str, ModelPrice]
    """By model id and by alias."""

    def get(self, model: str) -> ModelPrice | None:
        return self.models.get(model)


@cache
def price_table(path: Path = PRICES_FILE) -> PriceTable:
    """The price file, parsed and checked: exact decimals, known fields, siblings that exist."""
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
        for kind, name in _PRICE_FIELDS.items():
            if name in entry:
                per_unit[kind] = _price(path, model, name, entry[name])
        if not per_unit:
            raise PriceFileError(f"{path.name}: {model}: no price")
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
