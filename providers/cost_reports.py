"""What reading an organization's cost report has in common, whatever the provider.

OpenAI's Costs API and Anthropic's cost report answer alike: daily buckets of
results, cut into pages (``has_more``, and a ``next_page`` cursor sent back as
``page``), each result an amount in a currency. The providers differ in their
words, units and errors, which stay in their packages; what they share is
here, once: following pages without ever looping, taking each result of the
window's days, reading amounts as exact dollars, refusing a currency that is
not US dollars, reading an error body (``{"error": {"message": …}}`` in both),
and summing results into rows per UTC day, model and API key. (What any HTTP
provider needs, reading a body with every number as ``Decimal`` included, is in
:mod:`providers.http`.)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from providers.http import json_body, scrubbed
from providers.types import CostRow, ProviderError, UnitCostRow

MAX_PAGES = 1000
"""More pages than any window can need: a service that keeps saying ``has_more`` is broken."""

CURRENCY_NOT_USD = "currency_not_usd"
"""The reason code of a cost in another currency than US dollars (retrying cannot help)."""


class Unreadable(ValueError):
    """A part of an answer this module cannot read; the provider words the error."""


async def follow_pages(
    get_page: Callable[[str | None], Awaitable[Mapping[str, Any]]],
    cursor_field: str = "next_page",
) -> list[Mapping[str, Any]]:
    """Every page of an answer, first to last: ``get_page(None)``, then ``get_page`` of
    each page's ``cursor_field`` (``next_page``; lists of objects use ``last_id``) while
    it ``has_more``.

    Raises :class:`Unreadable` when the service says there is more but gives
    no new cursor (a missing one, or one already followed): following it
    would never end.
    """
    pages: list[Mapping[str, Any]] = []
    followed: set[str] = set()
    cursor: str | None = None
    while True:
        page = await get_page(cursor)
        pages.append(page)
        if page.get("has_more") is not True:
            return pages
        cursor = page.get(cursor_field)
        if not isinstance(cursor, str) or not cursor:
            raise Unreadable(f"a page says it has more but gives no {cursor_field}")
        if cursor in followed or len(pages) >= MAX_PAGES:
            raise Unreadable("the pages never end (a next_page came back again)")
        followed.add(cursor)


def results_in_window(
    pages: list[Mapping[str, Any]],
    start: date,
    end: date,
    day_of: Callable[[Mapping[str, Any]], date],
) -> Iterator[tuple[date, Mapping[str, Any]]]:
    """Every result of every page's buckets in [start, end), with its bucket's UTC day
    (``day_of(bucket)``); a stray bucket is not this window's to store."""
    for bucket in buckets(pages):
        day = day_of(bucket)
        if not start <= day < end:
            continue
        for result in results(bucket):
            yield day, result


def buckets(pages: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The buckets of every page, in order; anything that is not a bucket is left out."""
    found = []
    for page in pages:
        data = page.get("data")
        if not isinstance(data, list):
            raise Unreadable("a page has no data list")
        found += [bucket for bucket in data if isinstance(bucket, dict)]
    return found


def results(bucket: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A bucket's results; a bucket without any (or with ``null``) had no cost."""
    found = bucket.get("results")
    return [result for result in found if isinstance(result, dict)] if found else []


def amount(value: Any, *, per_dollar: int = 1) -> Decimal:
    """An amount as exact dollars: a JSON number or a decimal string, in units of
    ``1/per_dollar`` dollar (100: cents). Missing means zero."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise Unreadable(f"an amount is not a number: {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise Unreadable(f"an amount is not a number: {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise Unreadable(f"an amount is not a number: {str(value)[:40]!r}")
    return number / per_dollar if per_dollar != 1 else number


def refuse_other_currency(currency: Any, day: date, service: str) -> None:
    """Dollars only: an amount in another currency is refused, never added to dollars.

    A missing currency is read as US dollars, which both services document as
    theirs; any other is a :class:`ProviderError` that needs a person.
    """
    if currency is None or str(currency).strip().lower() in ("", "usd"):
        return
    raise ProviderError(
        CURRENCY_NOT_USD,
        f"{service} reported costs for {day.isoformat()} in {str(currency).upper()[:10]}, not "
        "US dollars. xai-usage keeps every figure in US dollars and will not add another "
        "currency to them, so nothing was stored. Tell the xai-usage maintainers which "
        "currency your organization is billed in.",
        needs_person=True,
    )


def error_words(
    response: httpx.Response, key: str, key_like: re.Pattern[str], detail: str
) -> tuple[str, str]:
    """(message, ``detail``) of an error body ``{"error": {"message": …, detail: …}}``, the
    shape both services answer errors in; the message scrubbed of keys (``key_like``),
    ("", "") for a body of any other shape."""
    payload = json_body(response)
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return scrubbed(error.get("message"), key, key_like), str(error.get(detail) or "")


class DailyTotals:
    """Costs summed per (UTC day, model, key or kind of usage); zero sums left out."""

    def __init__(self) -> None:
        self._totals: dict[tuple[date, str, str], Decimal] = {}

    def add(self, day: date, model: str, second: str, cost: Decimal) -> None:
        slot = (day, model, second)
        self._totals[slot] = self._totals.get(slot, Decimal(0)) + cost

    def _items(self) -> list[tuple[tuple[date, str, str], Decimal]]:
        return sorted((slot, cost) for slot, cost in self._totals.items() if cost)

    def cost_rows(self) -> tuple[CostRow, ...]:
        """Rows per day, model and API key id (the key's id is its label: the cost
        answer names no keys)."""
        return tuple(
            CostRow(day=day, model=model, cost_usd=cost, api_key_id=key, api_key_label=key)
            for (day, model, key), cost in self._items()
        )

    def unit_cost_rows(self) -> tuple[UnitCostRow, ...]:
        return tuple(
            UnitCostRow(day=day, model=model, unit_type=unit_type, cost_usd=cost)
            for (day, model, unit_type), cost in self._items()
        )
