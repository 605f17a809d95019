"""Formatting helpers for money, shares, deltas and sparklines: one place."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
NANO_PLACES = Decimal("0.000000001")
SPARKS = "▁▂▃▄▅▆▇█"


def money(value: Decimal) -> str:
    """``$1,234.56``; a non-zero amount under a cent says so instead of $0.00."""
    if value == 0:
        return "$0.00"
    if abs(value) < CENT:
        return "<$0.01" if value > 0 else "-<$0.01"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value).quantize(CENT, rounding=ROUND_HALF_UP):,}"


NOT_FETCHED = "not fetched"


def cost_cell(value: Decimal | None, complete: bool = True) -> str:
    """A report cell: a day nobody fetched is never $0.00; a partly fetched one is starred."""
    if value is None:
        return NOT_FETCHED
    return money(value) + ("" if complete else "*")


def delta(now: Decimal, before: Decimal) -> str:
    """``+12.5%`` / ``-3.0%``; ``new`` when there was nothing before."""
    if before == 0:
        return "new" if now else "±0%"
    pct = (now - before) / before * 100
    sign = "+" if pct >= 0 else "-"
    return f"{sign}{abs(pct).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


NOT_FETCHED_SPARK = " "
"""A day nobody fetched: a gap in the line, never the lowest bar ($0.00 would be a claim)."""


def sparkline(values: Sequence[Decimal | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return NOT_FETCHED_SPARK * len(values)
    top = max(known)
    last = len(SPARKS) - 1
    return "".join(
        NOT_FETCHED_SPARK
        if v is None
        else SPARKS[0]
        if top <= 0
        else SPARKS[int((v / top * last).to_integral_value(ROUND_HALF_UP))]
        for v in values
    )


def clock(moment: datetime | None) -> str:
    """``06:02 UTC`` today, ``21 Nov 06:02 UTC`` otherwise."""
    if moment is None:
        return "never"
    return moment.strftime("%d %b %H:%M UTC").lstrip("0")


def day_label(moment) -> str:
    return moment.strftime("%a %d %b %Y").replace(" 0", " ")


def fit(text: str, width: int) -> str:
    """Exactly ``width`` characters: padded, or cut with an ellipsis."""
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


ZERO_WIDTH_SPACE = "\u200b"
_EMPHASIS = re.compile("\u200b?([*_~])\u200b?")
_MARKUP = re.compile("\u200b?([*_~`])\u200b?")
_REFERENCE_START = re.compile("<(?!\u200b)")
_LEFT_ALONE = re.compile(r"```.*?```|`[^`\n]+`|:[a-z0-9_+'-]+:", re.DOTALL)
"""Code (commands to copy, exactly) and emoji codes (``:white_check_mark:``)."""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str) -> str:
    """Text for Slack's mrkdwn that shows as written: ``&``, ``<`` and ``>`` escaped, and
    ``*``, ``_`` and ``~`` (bold, italic, struck) kept from pairing up by a zero-width
    space on each side (mrkdwn has no escape for them), except inside code and emoji
    codes, which stay exactly as they are. For words from people and providers."""
    escaped = _escape(text)
    out, at = [], 0
    for kept in _LEFT_ALONE.finditer(escaped):
        out += [_unpaired(_EMPHASIS, escaped[at : kept.start()]), kept.group()]
        at = kept.end()
    out.append(_unpaired(_EMPHASIS, escaped[at:]))
    return "".join(out)


def _unpaired(markup: re.Pattern[str], text: str) -> str:
    """Each ``markup`` character with a zero-width space on each side (once, however
    often it is done), so Slack pairs none of them into bold, italic, strike or code."""
    return markup.sub(f"{ZERO_WIDTH_SPACE}\\1{ZERO_WIDTH_SPACE}", text)


def inert(text: str) -> str:
    """People's words (a label) made markup-free before they go into a reply: ``*``,
    ``_``, ``~`` and backticks can't pair up, and ``<@U…>`` can't become a reference
    again when the reply is escaped and its own references restored
    (:func:`mrkdwn_keep_references`). Reads the same; escaping is still the reply's."""
    return _REFERENCE_START.sub(f"<{ZERO_WIDTH_SPACE}", _unpaired(_MARKUP, text))


def mrkdwn_inert(text: str) -> str:
    """A label alone in mrkdwn: escaped, and no markup of any kind, code included."""
    return mrkdwn(inert(text))


_SLACK_REFERENCE = re.compile(r"&lt;([#@][A-Z0-9]+)&gt;")


def mrkdwn_keep_references(text: str) -> str:
    """Escape a whole reply for Slack, keeping the channel and user references it names.

    For replies built from user words (errors, setup confirmations) that also
    point at ``<#C…>`` or ``<@U…>`` on purpose: labels, amounts typed and
    provider text are escaped, so ``<!channel>`` in a label never pings, and
    the labels in it are :func:`inert`, so none becomes a reference again.
    The reply's own markup (``*1*``, commands in code) is kept.
    """
    return _SLACK_REFERENCE.sub(r"<\1>", _escape(text))


def day_span(start: date, end: date) -> str:
    """An inclusive span of days, one way everywhere (no leading zeros, the month on both sides):

    ``Sat 21 Nov 2026``, ``1 Oct–31 Oct 2026``, ``28 Oct–3 Nov 2026``, ``28 Dec 2026–3 Jan 2027``.
    """
    if start == end:
        return day_label(start)
    if start.year == end.year:
        return f"{start.day} {start:%b}–{end.day} {end:%b %Y}"
    return f"{start.day} {start:%b %Y}–{end.day} {end:%b %Y}"


def percent_reached(part: Decimal, total: Decimal) -> str:
    """How much of a limit is used, rounded down so ``100%`` only shows once reached."""
    if total == 0:
        return "–"
    pct = part / total * 100
    if 0 < pct < 1:  # "0%" would read as nothing spent
        tenths = pct.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
        return f"{tenths}%" if tenths else "<0.1%"
    return f"{pct.to_integral_value(ROUND_FLOOR)}%"


def times(ratio: Decimal) -> str:
    """A ratio as ``3.2×``."""
    return f"{ratio.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}×"


def month_label(moment) -> str:
    """``November 2026``."""
    return moment.strftime("%B %Y")


def decimal_text(value: Decimal) -> str:
    """An amount for machines, the one way every JSON and CSV writes one: fixed point,
    no exponent, at least cents and at most nano-dollar places (``330.00``, ``0.00``,
    ``3487.60392194``)."""
    exact = value.quantize(NANO_PLACES, rounding=ROUND_HALF_UP).normalize()
    if exact == 0:
        return "0.00"
    if exact.as_tuple().exponent > -2:  # type: ignore[operator]
        exact = exact.quantize(CENT)
    return f"{exact:f}"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut with an ellipsis, never inside ``&amp;``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp < len("&amp;"):
        cut = cut[:amp]
    return cut + "…"


def clip_middle(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut in the middle: ``grok-4-f…reasoning``.

    Names that share a beginning differ at the end, so both ends stay; a little more of
    the start, which says what it is. A name qualified in parentheses ("Test key
    (Production — xAI Europe)") keeps its own words and cuts its qualifier's middle
    instead ("Test key (Produ…urope)"), when that leaves a few of its characters."""
    if len(text) <= limit:
        return text
    if limit < 3:
        return text[:limit]
    head, paren, inner = text[:-1].partition(" (")
    if paren and text.endswith(")") and limit - len(head) - 3 >= QUALIFIER_KEPT:
        return f"{head} ({clip_middle(inner, limit - len(head) - 3)})"
    tail = (limit - 1) // 2
    return text[: limit - 1 - tail] + "…" + text[len(text) - tail :]


QUALIFIER_KEPT = 5
"""The fewest characters of a parenthesised qualifier worth keeping (``Pr…pe``): fewer,
and the whole name is cut in the middle instead."""


def clip_apart(texts: Sequence[str], limit: int) -> list[str]:
    """Each text cut in the middle to ``limit`` (:func:`clip_middle`); where two cuts would
    read alike ("model-4-f…reasoning" for both "model-4-fast-reasoning" and
    "model-4-fast-non-reasoning"), those are cut elsewhere, so each keeps what tells it
    apart ("model-4-…t-reasoning", "model-4-…n-reasoning")."""
    out = [clip_middle(text, limit) for text in texts]
    groups: dict[str, list[int]] = {}
    for n, cut in enumerate(out):
        groups.setdefault(cut, []).append(n)
    for members in groups.values():
        long = [n for n in members if len(texts[n]) > limit]
        if len(members) < 2 or not long or limit < 3:
            continue
        default = (limit - 1) // 2
        for tail in sorted(range(1, limit - 1), key=lambda t: (abs(t - default), -t)):
            cuts = [
                texts[n][: limit - 1 - tail] + "…" + texts[n][-tail:] if n in long else texts[n]
                for n in members
            ]
            if len(set(cuts)) == len(cuts) and not set(cuts) & (set(out) - {out[members[0]]}):
                for n, cut in zip(members, cuts, strict=True):
                    out[n] = cut
                break
    return out


def zero_backfill_hint(total: Decimal, days: int, hint: str = "") -> str:
    """After a backfill that found nothing: the likeliest cause, and what to check
    (``hint``: the provider's own words, ``providers.types.no_spend_hint``)."""
    if total != 0:
        return ""
    check = hint or "the key may be another account's: check which account it was made in."
    return f" No spend at all in {days} days: if this account does use the API, {check}"


def connections_count(count: int) -> str:
    """``1 connection``, ``Both connections``, ``All 3 connections``."""
    if count == 1:
        return "1 connection"
    if count == 2:
        return "Both connections"
    return f"All {count} connections"


def money_change(value: Decimal) -> str:
    """A change in dollars, always signed: ``+$40.00``, ``-$3.10``, ``±$0.00``."""
    if value == 0:
        return "±$0.00"
    return ("+" if value > 0 else "") + money(value)


_QUANTITY_STEPS = ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "K"))


def quantity(count: int | Decimal) -> str:
    """A count of tokens or images, short: ``950``, ``12.3K``, ``4.1M``, ``2.0B``."""
    value = Decimal(count)
    for step, suffix in _QUANTITY_STEPS:
        if abs(value) >= step:
            return f"{(value / step).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}{suffix}"
    return f"{value.to_integral_value(ROUND_HALF_UP)}"
