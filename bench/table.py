"""Printing figures as tables, and keeping score of the targets.

Rows are printed as they are measured (a benchmark takes a while, and a row
on screen says how far it got), so column widths are fixed up front.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    align: str = ">"  # "<" for text, ">" for figures


class Table:
    """A fixed-width table printed row by row, with notes underneath."""

    def __init__(self, title: str, columns: Sequence[Column]) -> None:
        self.title = title
        self.columns = tuple(columns)
        self._started = False

    def _line(self, cells: Sequence[object]) -> str:
        parts = [
            f"{cell!s:{column.align}{column.width}}"
            for cell, column in zip(cells, self.columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    def _start(self) -> None:
        if not self._started:
            print()
            print(self.title)
            header = self._line([c.title for c in self.columns])
            print(header)
            print("-" * len(header))
            self._started = True

    def row(self, *cells: object) -> None:
        self._start()
        print(self._line(cells), flush=True)

    def note(self, text: str) -> None:
        """A line under the table: a skip, a check, a plan."""
        self._start()
        print(f"  {text}", flush=True)


@dataclass
class Scoreboard:
    """Every target checked in this run, for the summary at the end."""

    targets: list[tuple[str, bool]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Checks of what was stored or served that did not hold: the figures are void."""

    def target(self, name: str, passed: bool) -> str:
        self.targets.append((name, passed))
        return verdict(passed)

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"  CHECK FAILED: {message}", flush=True)

    def summary(self) -> None:
        passed = sum(1 for _, ok in self.targets if ok)
        print()
        print(f"Targets: {passed} PASS, {len(self.targets) - passed} MISS")
        for name, ok in self.targets:
            if not ok:
                print(f"  MISS  {name}")
        if self.failures:
            print(f"Checks failed: {len(self.failures)} (the figures above are not valid)")
            for message in self.failures:
                print(f"  {message}")


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def percentile(values: Sequence[float], percent: float) -> float:
    """The ``percent`` percentile, interpolated between the closest samples."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[int(percent) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def count(n: int) -> str:
    return f"{n:,}"
