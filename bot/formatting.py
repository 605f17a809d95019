"""Formatting helpers for money, shares, deltas and sparklines: one place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
SPARKS = "▁▂▃▄▅▆▇█"


def money(value: Decimal) -> str:
    """``$1,234.56``; a non-zero amount under a cent says so instead of $0.00."""
    if value == 0:
        return "$0.00"
    if abs(value) < CENT:
        return "<$0.01" if value > 0 else "-<$0.01"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value).quantize(CENT, rounding=ROUND_HALF_UP):,}"


def share(part: Decimal, total: Decimal) -> str:
    if total == 0:
        return "–"
    pct = part / total * 100
    if 0 < pct < Decimal("0.1"):
        return "<0.1%"
    return f"{pct.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def delta(now: Decimal, before: Decimal) -> str:
    """``+12.5%`` / ``-3.0%``; ``new`` when there was nothing before."""
    if before == 0:
        return "new" if now else "±0%"
    pct = (now - before) / before * 100
    sign = "+" if pct >= 0 else "-"
    return f"{sign}{abs(pct).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def sparkline(values: Sequence[Decimal]) -> str:
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARKS[0] * len(values)
    last = len(SPARKS) - 1
    return "".join(SPARKS[int((v / top * last).to_integral_value(ROUND_HALF_UP))] for v in values)


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


def mrkdwn(text: str) -> str:
    """Escape what Slack's mrkdwn treats as markup (&, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
