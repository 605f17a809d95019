"""One definition for each figure that digests, alerts and status all show.

The month-end forecast
    At the pace of the last 7 days: the month's spend through the last
    finished UTC day, plus the mean daily spend of the 7 finished days ending
    with it (days without spend count as $0) times the days of the month
    still to come after it. Once the month is over, it is the month's total.
    Today's partial figures never count, so every run on one day, and that
    day's digest, give the same forecast; and since it is a sum of costs, a
    connection's forecast never exceeds its workspace's.

xAI's spending limit
    It applies to invoiced (postpaid) spend only: usage is paid from prepaid
    credit first, and a limit of $0 means prepaid only. So it is shown as
    "prepaid only", or as headroom on invoiced spend where that is known
    (while prepaid credit is left, nothing is invoiced yet); never as a share
    of all spend.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from bot.formatting import money

PACE_DAYS = 7
PACE = "at the pace of the last 7 days"
"""How the forecast is made, in the words every message uses."""
ZERO = Decimal(0)


@dataclass(frozen=True)
class Forecast:
    through: date  # the last finished day counted
    month_to_date: Decimal  # from the 1st of through's month through ``through``
    daily_pace: Decimal  # the mean of the 7 finished days ending with ``through``
    days_left: int  # days of the month after ``through``
    total: Decimal  # the month-end forecast

    @property
    def month(self) -> date:
        return self.through.replace(day=1)


def month_end_forecast(by_day: Mapping[date, Decimal], through: date) -> Forecast:
    """The forecast for ``through``'s month from daily costs (missing days are $0)."""
    first = through.replace(day=1)
    month_to_date = sum((c for d, c in by_day.items() if first <= d <= through), ZERO)
    window = (through - timedelta(days=n) for n in range(PACE_DAYS))
    pace = sum((by_day.get(d, ZERO) for d in window), ZERO) / PACE_DAYS
    days_left = calendar.monthrange(through.year, through.month)[1] - through.day
    return Forecast(through, month_to_date, pace, days_left, month_to_date + pace * days_left)


def last_finished_day(today: date) -> date:
    """Forecasts made on ``today`` (UTC) count the days before it."""
    return today - timedelta(days=1)


@dataclass(frozen=True)
class TeamLimit:
    """One xAI team's monthly spending limit, with what tells its invoiced spend."""

    limit: Decimal
    prepaid_left: Decimal | None = None
    invoiced: Decimal | None = None  # month to date minus prepaid credit used, when known

    @property
    def invoiced_spend(self) -> Decimal | None:
        if self.invoiced is not None:
            return self.invoiced
        if self.prepaid_left is not None and self.prepaid_left > 0:
            return ZERO  # prepaid credit is used first: nothing invoiced yet
        return None


def spending_limit_text(teams: Iterable[TeamLimit]) -> str | None:
    """xAI's own limit as a phrase: "prepaid only", or the headroom on invoiced spend."""
    teams = list(teams)
    if not teams:
        return None
    invoiced_teams = [t for t in teams if t.limit > 0]
    if not invoiced_teams:
        return "xAI spending limit: prepaid only (usage stops when prepaid credit runs out)"
    limit = sum((t.limit for t in invoiced_teams), ZERO)
    several = f" ({len(invoiced_teams)} teams)" if len(invoiced_teams) > 1 else ""
    text = f"xAI spending limit{several}: {money(limit)} a month on invoiced spend"
    invoiced = [t.invoiced_spend for t in invoiced_teams]
    if all(spend is not None for spend in invoiced):
        headroom = limit - sum(invoiced, ZERO)  # type: ignore[arg-type]
        text += f", {money(max(headroom, ZERO))} headroom"
        if headroom <= 0:
            text += " (reached: xAI stops serving once prepaid credit is gone)"
    else:
        text += ", after prepaid credit"
    if len(invoiced_teams) < len(teams):
        text += f"; {len(teams) - len(invoiced_teams)} more prepaid only"
    return text
