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
    of all spend. Invoiced spend is the bill so far as xAI states it minus the
    prepaid credit used. Each team's limit is its own: shown per team, never
    summed.
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
    invoiced: Decimal | None = None  # the bill so far minus prepaid credit used, when known
    label: str = ""
    """The connection's name, to tell the teams apart when several are shown."""

    @property
    def invoiced_spend(self) -> Decimal | None:
        if self.invoiced is not None:
            return self.invoiced
        if self.prepaid_left is not None and self.prepaid_left > 0:
            return ZERO  # prepaid credit is used first: nothing invoiced yet
        return None

    @property
    def headroom(self) -> Decimal | None:
        """What may still be invoiced this month: the limit less the invoiced spend, never
        below $0 (a prepaid-only team has none); None when the invoiced spend is unknown."""
        if self.limit <= 0:
            return ZERO
        spend = self.invoiced_spend
        return None if spend is None else max(self.limit - spend, ZERO)


def spending_limit_lines(teams: Iterable[TeamLimit]) -> tuple[str, ...]:
    """xAI's own limit, one phrase per team: "prepaid only", or the headroom on invoiced
    spend. Never summed across teams: a team that ran out must not hide behind another's
    room. Teams are named (their label, else "team N") when there are several."""
    teams = list(teams)
    lines = []
    for number, team in enumerate(teams, start=1):
        name = ""
        if len(teams) > 1:
            name = f" for “{team.label}”" if team.label else f" for team {number}"
        lines.append(f"xAI spending limit{name}: {_limit_phrase(team)}")
    return tuple(lines)


def spending_limit_text(teams: Iterable[TeamLimit]) -> str | None:
    """:func:`spending_limit_lines` as one sentence; None when no team has a limit."""
    return "; ".join(spending_limit_lines(teams)) or None


def _limit_phrase(team: TeamLimit) -> str:
    if team.limit <= 0:
        if team.prepaid_left is None:
            return "prepaid only (usage stops when prepaid credit runs out)"
        if team.prepaid_left <= 0:
            return "prepaid only, and its prepaid credit is used up (usage has stopped)"
        return (
            f"prepaid only, {money(team.prepaid_left)} prepaid credit left "
            "(usage stops when it runs out)"
        )
    text = f"{money(team.limit)} a month on invoiced spend"
    headroom = team.headroom
    if headroom is None:
        return text + ", after prepaid credit"
    text += f", {money(headroom)} headroom"
    if headroom <= 0:
        text += " (reached: xAI stops serving once prepaid credit is gone)"
    return text
