"""Numbers as people type them: ASCII digits, read by one parser everywhere.

Python reads far more than ``0-9`` as a number. ``"²".isdigit()`` is true and
``int("²")`` then raises (a traceback instead of an answer); ``"١"`` (Arabic-Indic
one) and ``"１"`` (fullwidth) pass both, as do ``" 7 "`` and ``"1_000"``; ``float``
adds ``nan``, ``inf`` and exponents. Nobody types those meaning a port, a day
count or a digest's number, and ``digest remove ١`` removing digest 1 is a
surprise nobody wants. Every setting and argument that is a number is read
here, so the rule is the same for all of them: ASCII digits, nothing else.

Each function returns None for anything else; the caller says what it wanted
in its own words (which variable, which option).
"""

from __future__ import annotations

import re

MAX_DIGITS = 18
"""Longer is never a count or a port here, and ``int`` of 5,000 digits raises."""

_WHOLE = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")
_DECIMAL = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}(?:\.[0-9]{{1,9}})?")
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def whole_number(text: str) -> int | None:
    """``"42"`` as 42; None for anything but 1-18 ASCII digits (no sign, space or ``_``)."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        return None
    return int(text)


def decimal_number(text: str) -> float | None:
    """``"2.5"`` as 2.5: ASCII digits with an optional fraction, never NaN or infinity."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        return None
    return float(text)


def clock_time(text: str) -> tuple[int, int] | None:
    """``"09:05"`` (or ``"9:05"``) as (9, 5); None unless a real time of day in ASCII."""
    match = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    hour, minute = int(match[1]), int(match[2])
    return (hour, minute) if hour < 24 and minute < 60 else None
