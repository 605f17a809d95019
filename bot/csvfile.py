"""CSV for people's spreadsheets: one writer, which no spreadsheet can run.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is a formula to Excel, LibreOffice and Google Sheets: an API key named
``=HYPERLINK("https://…?"&A1)`` would send the sheet's figures away when
opened. Labels, model and key names come from people and providers, so every
such cell is prefixed with ``'`` (shown, never run). The figures we compute
(days, amounts, shares) are written as they are: ``-1.50`` is a number there,
not a formula. Every CSV the product writes (report ``--format csv``,
``export``) comes through here, so there is one rule.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """A word a spreadsheet will show, not run: one starting a formula gets a ``'``."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def csv_text(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    figures: Iterable[str] = (),
    line_end: str = "\r\n",
) -> str:
    """The header and rows as CSV; every cell not in a ``figures`` column goes through
    :func:`safe_cell`. None is an empty cell; a figure is written with ``str``."""
    computed = {i for i, name in enumerate(columns) if name in set(figures)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [
                "" if cell is None else str(cell) if i in computed else safe_cell(str(cell))
                for i, cell in enumerate(row)
            ]
        )
    return out.getvalue()
