"""Slack's native tables and charts, built from the figures every surface shows.

A report's, a digest's or ``status``'s table goes out as a ``table`` block, a
chart as a ``data_visualization`` block, each within Slack's limits
(:mod:`bot.slack.limits`). Neither works everywhere: a Home tab takes no
table, and a workspace's Slack may refuse either block. So each has a fallback
that a refusal puts in its place (:func:`degrade`):

* a table's is the phone-wide code block that replies used before (40
  columns): the message's ``text`` carries it, after its first line, so
  notifications and screen readers read the table too, and a refused table is
  swapped for it without building the message again;
* a chart's is the PNG upload (``bot.slack.files``, ``bot.slack.delivery``),
  and in the Home tab the text trend beside it: the block is left out.

Blocks that only make sense beside the native one (a note under the table on
rows the native table left out) carry a ``block_id`` saying so, and go with it.
Nothing here rounds or adds: tables show the cells the figures made
(``Report.table()``, ``digest_view``'s lines), charts the chart's data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from bot import figures, formatting
from bot.charts import OTHER, ChartData, Series
from bot.slack import limits

PHONE_WIDTH = 40
"""A code-block line at most: a phone shows about 40 monospace characters without
wrapping. Only the fallback keeps to it; a native table wraps as Slack lays it out."""
TABLE_ROWS_INSIDE = limits.TABLE_ROWS - 2
"""A native table's rows between its header and its total row."""
LABEL_MIN = 8
"""The narrowest a fallback's first column gets before a column on its right is dropped."""

TABLE = "table"
CHART = "data_visualization"
NATIVE = frozenset({TABLE, CHART})

TABLE_ID = "xu-table"
TABLE_NOTE_ID = "xu-table-note"
"""A note that speaks of the native table's rows: it goes when the table does."""
CHART_ID = "xu-chart"
CHART_NOTE_ID = "xu-chart-note"
"""A note that speaks of the native chart (days it leaves out): it goes with it."""


# -- tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table as shown: strings already worded (amounts, shares, marks), a row per line.

    Words are as typed: a ``raw_text`` cell is shown literally (no markup, references or
    entities: as Slack clients measured it, CopilotKit #6481), and the code-block fallback
    escapes them for mrkdwn.

    ``total`` is the marked total row; ``narrow`` the columns the phone-wide fallback
    keeps (default: all, the rightmost dropped first if the first column gets too narrow).
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...]
    total: tuple[str, ...] | None = None
    narrow: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        width = len(self.header)
        if len(self.align) != width or any(len(r) != width for r in self.all_rows()):
            raise ValueError("every row of a table has one cell per column")
        if not set(self.align) <= set(limits.TABLE_ALIGNMENTS):
            raise ValueError(f"a column aligns {' or '.join(limits.TABLE_ALIGNMENTS)}")

    def all_rows(self) -> list[tuple[str, ...]]:
        return [self.header, *self.rows, *([self.total] if self.total else [])]


def _raw(text: str) -> dict[str, Any]:
    # Slack refuses an empty raw_text; a blank cell is a space.
    return {
        "type": "raw_text",
        "text": formatting.clip_middle(text, limits.TABLE_CELL_CHARS) or " ",
    }


def _bold(text: str) -> dict[str, Any]:
    words = formatting.clip_middle(text, limits.TABLE_CELL_CHARS) or " "
    return {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [{"type": "text", "text": words, "style": {"bold": True}}],
            }
        ],
    }


def table_block(table: Table) -> dict[str, Any]:
    """``table`` as Slack's ``table`` block: a bold header row, the rows, the total row in
    bold; amounts right-aligned, the first column wrapped."""
    if len(table.header) > limits.TABLE_CELLS:
        raise ValueError(f"a table has at most {limits.TABLE_CELLS} columns")
    if len(table.all_rows()) > limits.TABLE_ROWS:
        raise ValueError(f"a table has at most {limits.TABLE_ROWS} rows, header and total too")
    rows = [[_bold(cell) for cell in table.header]]
    rows += [[_raw(cell) for cell in row] for row in table.rows]
    if table.total:
        rows.append([_bold(cell) for cell in table.total])
    settings = [
        {"align": align, **({"is_wrapped": True} if n == 0 else {})}
        for n, align in enumerate(table.align)
    ]
    return {"type": "table", "block_id": TABLE_ID, "rows": rows, "column_settings": settings}


def code_table(table: Table, width: int = PHONE_WIDTH) -> str:
    """``table`` as monospace lines at most ``width`` wide: the first column gives way
    (cut in the middle), then the rightmost of ``narrow``'s columns; a rule over the total."""
    keep = list(table.narrow or range(len(table.header)))
    rows = table.all_rows()
    while True:
        widths = [max(len(row[c]) for row in rows) for c in keep]
        others = sum(widths[1:]) + 2 * (len(keep) - 1)
        first = min(widths[0], width - others)
        if first >= min(LABEL_MIN, widths[0]) or len(keep) <= 2:
            widths[0] = max(first, 1)
            break
        keep.pop()

    # The first column's labels are cut as a set, so two alike stay apart.
    firsts = formatting.clip_apart([row[keep[0]] for row in rows], widths[0])

    def line(row: tuple[str, ...], first: str) -> str:
        cells = []
        for c, w in zip(keep, widths, strict=True):
            text = first if c == keep[0] else formatting.clip_middle(row[c], w)
            cells.append(text.rjust(w) if table.align[c] == "right" else text.ljust(w))
        return "  ".join(cells).rstrip()

    lines = [line(row, first) for row, first in zip(rows, firsts, strict=True)]
    if table.total:
        rule = "─" * min(width, sum(widths) + 2 * (len(keep) - 1))
        lines.insert(len(lines) - 1, rule)
    return "\n".join(lines)


def code_section_text(table: Table, note: str = "") -> str:
    """The fallback section's mrkdwn: the code block, then ``note`` if any. Its words are
    escaped, and a backtick in a name kept from pairing (or from closing the block) by a
    zero-width space on each side: invisible, so the columns still line up."""
    code = formatting.mrkdwn(code_table(table))
    zwsp = formatting.ZERO_WIDTH_SPACE
    text = "```" + code.replace("`", f"{zwsp}`{zwsp}") + "```"
    return text + (f"\n{note}" if note else "")


def with_fallback(headline: str, fallback_section: str) -> str:
    """A message's ``text``: its headline, then the table's fallback section.

    What a notification or screen reader reads, and what :func:`degrade` puts in
    place of a refused table: everything from the first code fence on."""
    if "```" in headline:
        raise ValueError("a message's headline never holds a code fence")
    return f"{headline}\n{fallback_section}"


def fallback_of(text: str) -> str | None:
    """The table's fallback section in a message's ``text`` (see :func:`with_fallback`)."""
    at = text.find("```")
    return None if at < 0 else text[at:]


# -- the fallback ------------------------------------------------------------------


def natives_in(message: Mapping[str, Any]) -> frozenset[str]:
    """The native block types a message (or a view) holds."""
    return frozenset(b.get("type") for b in message.get("blocks") or () if b.get("type") in NATIVE)


def degrade(message: Mapping[str, Any], kinds: Iterable[str]) -> dict[str, Any]:
    """``message`` (or a view) without the native blocks of ``kinds``: a table becomes its
    code block (from the message's ``text``), a chart is left out, and the notes that
    speak of either go with them."""
    kinds = frozenset(kinds) & natives_in(message)
    if not kinds:
        return dict(message)
    blocks = []
    for block in message.get("blocks") or ():
        kind, block_id = block.get("type"), str(block.get("block_id", ""))
        if TABLE in kinds and block_id == TABLE_NOTE_ID:
            continue
        if CHART in kinds and block_id.startswith(CHART_NOTE_ID):
            continue
        if kind == CHART and CHART in kinds:
            continue
        if kind == TABLE and TABLE in kinds:
            section = fallback_of(str(message.get("text") or ""))
            if section is not None:
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
            continue
        blocks.append(block)
    return {**message, "blocks": blocks}


_POINTER = re.compile(r"json-pointer:/(?:view/)?blocks/(\d+)")


def pointed_at(message: Mapping[str, Any], said: Sequence[str]) -> frozenset[str]:
    """The native block types Slack's refusal names (``[json-pointer:/blocks/3]``)."""
    blocks = message.get("blocks") or []
    found = set()
    for line in said:
        for match in _POINTER.finditer(str(line)):
            n = int(match.group(1))
            if n < len(blocks) and blocks[n].get("type") in NATIVE:
                found.add(blocks[n]["type"])
    return frozenset(found)


# -- charts ------------------------------------------------------------------------

CHART_KINDS = {"stacked": "bar", "ranked": "pie", "line": "line"}
"""How a chart's data is drawn natively: stacked days by model as grouped bars, a ranking
(one day) as a pie, a trend as a line; a split by API key is a pie of the period's shares."""
AXIS_TITLES = {"day": "UTC day", "week": "Week (Monday–Sunday, UTC)", "month": "Month (UTC)"}
COARSER = {"day": "week", "week": "month"}


def chart_block(data: ChartData, *, block_id: str = CHART_ID) -> dict[str, Any] | None:
    """``data`` as a ``data_visualization`` block within Slack's limits, or None when
    nothing can be drawn (no spend, or no day fetched).

    Too many buckets for Slack's points become weeks, then months (sums of the days
    the picture stacks); too many series fold their tail into "other"; labels are cut
    in the middle so two keys of one connection stay apart. Buckets nobody fetched are
    left out (unknown is never $0): :func:`chart_note` says which.
    """
    kind = "pie" if data.split == "key" else CHART_KINDS[data.kind]
    chart = _pie(data) if kind == "pie" else _series_chart(kind, _fit_buckets(data))
    if chart is None:
        return None
    return {"type": CHART, "block_id": block_id, "title": chart_title(data), "chart": chart}


def chart_title(data: ChartData) -> str:
    """The chart's title in Slack's 50 characters, its figure's marks always kept: the
    picture's title (period and total) when it fits; else the days and the total; else
    the total and what is split; else the total as figure_words wrote it."""
    words = data.title.rsplit(" · ", 1)[-1]  # the total, as figure_words wrote it
    end = data.end or data.buckets[-1]
    for title in (
        data.title,
        f"{formatting.day_span(data.buckets[0], end)} · {words}",
        f"{words} · by {data.split_words}",
    ):
        if len(title) <= limits.CHART_TITLE_CHARS:
            return title
    return formatting.clip_middle(words, limits.CHART_TITLE_CHARS)


def chart_note(data: ChartData) -> str | None:
    """What the native chart leaves out: the buckets nobody fetched, and the oldest months
    of a range longer than Slack's points."""
    said = []
    if data.gaps:
        days = sorted(data.gaps)
        span = formatting.day_span(days[0], days[-1])
        said.append(f"Not fetched, so not drawn (never $0.00): {span}.")
    if data.kind != "ranked" and data.split != "key":
        fitted = _fit_buckets(data)
        if fitted.buckets[0] > data.buckets[0]:
            said.append(
                f"The chart shows the newest {len(fitted.buckets)} months; the table has them all."
            )
    return ":grey_question: " + " ".join(said) if said else None


def chart_message(data: ChartData) -> dict[str, Any] | None:
    """A message of the chart alone (a digest's chart, a Chart click beside its report):
    the block and its note, the picture's alt text for notifications; None when nothing
    can be drawn."""
    block = chart_block(data)
    if block is None:
        return None
    blocks = [block]
    if note := chart_note(data):
        blocks.append(
            {
                "type": "context",
                "block_id": CHART_NOTE_ID,
                "elements": [{"type": "mrkdwn", "text": note}],
            }
        )
    return {"text": formatting.mrkdwn(f"{data.title}. {data.subtitle}."), "blocks": blocks}


def _points(values: Sequence[Decimal | None]) -> list[float]:
    return [round(float(v or 0), 2) for v in values]


def _pie(data: ChartData) -> dict[str, Any] | None:
    totals = [(s.label, s.total) for s in data.series]
    positive = [(label, amount) for label, amount in totals if amount > 0]
    positive.sort(key=lambda item: (item[0] == OTHER, -item[1], item[0]))
    named = [item for item in positive if item[0] != OTHER]
    rest = sum((amount for label, amount in positive if label == OTHER), Decimal(0))
    if len(named) + (1 if rest else 0) > limits.CHART_SEGMENTS:
        keep = limits.CHART_SEGMENTS - 1
        rest += sum((amount for _, amount in named[keep:]), Decimal(0))
        named = named[:keep]
    segments = [*named, *([(OTHER, rest)] if rest else [])]
    if not segments:
        return None
    labels = _labels([label for label, _ in segments])
    return {
        "type": "pie",
        "segments": [
            {"label": label, "value": point}
            for label, point in zip(labels, _points([a for _, a in segments]), strict=True)
        ],
    }


def _series_chart(kind: str, data: ChartData) -> dict[str, Any] | None:
    shown = [i for i, start in enumerate(data.buckets) if start not in data.gaps]
    series = [s for s in data.series if any(s.values[i] for i in shown)]
    if not shown or not series:
        return None
    if len(series) > limits.CHART_SERIES:
        keep = limits.CHART_SERIES - 1
        named = [s for s in series if s.label != OTHER][:keep]
        folded = [s for s in series if s not in named]
        other = tuple(
            sum((s.values[i] or Decimal(0) for s in folded), Decimal(0))
            for i in range(len(data.buckets))
        )
        series = [*named, Series(OTHER, other)]
    categories = _labels([_bucket_label(data, data.buckets[i]) for i in shown])
    names = _labels([s.label for s in series])
    return {
        "type": kind,
        "series": [
            {
                "name": name,
                "data": [
                    {"label": category, "value": value}
                    for category, value in zip(
                        categories, _points([s.values[i] for i in shown]), strict=True
                    )
                ],
            }
            for name, s in zip(names, series, strict=True)
        ],
        "axis_config": {
            "categories": categories,
            "x_label": AXIS_TITLES[data.bucket],
            "y_label": "Cost (USD)",
        },
    }


def _fit_buckets(data: ChartData) -> ChartData:
    """``data`` in weeks, then months, until its buckets fit Slack's points."""
    while len(data.buckets) - len(data.gaps) > limits.CHART_POINTS and data.bucket in COARSER:
        data = _coarser(data, COARSER[data.bucket])
    if len(data.buckets) - len(data.gaps) > limits.CHART_POINTS:  # years of months: the newest
        keep = [b for b in data.buckets if b not in data.gaps][-limits.CHART_POINTS :]
        index = [data.buckets.index(b) for b in keep]
        data = replace(
            data,
            buckets=tuple(keep),
            series=tuple(Series(s.label, tuple(s.values[i] for i in index)) for s in data.series),
            gaps=frozenset(),
        )
    return data


def _coarser(data: ChartData, bucket: str) -> ChartData:
    """The same costs in coarser buckets: a bucket is a gap only if all its parts were."""

    def start_of(day: date) -> date:
        first = figures.monday_of(day) if bucket == "week" else day.replace(day=1)
        return max(first, data.buckets[0])

    starts: list[date] = []
    for b in data.buckets:
        if not starts or starts[-1] != start_of(b):
            starts.append(start_of(b))
    index = {s: n for n, s in enumerate(starts)}
    series = []
    for s in data.series:
        values: list[Decimal | None] = [None] * len(starts)
        for b, v in zip(data.buckets, s.values, strict=True):
            n = index[start_of(b)]
            if v is not None:
                values[n] = (values[n] or Decimal(0)) + v
        series.append(Series(s.label, tuple(values)))
    parts: dict[date, list[date]] = {}
    for b in data.buckets:
        parts.setdefault(start_of(b), []).append(b)
    gaps = frozenset(s for s, inside in parts.items() if all(b in data.gaps for b in inside))
    return replace(data, bucket=bucket, buckets=tuple(starts), series=tuple(series), gaps=gaps)


def _bucket_label(data: ChartData, start: date) -> str:
    end = data.end or data.buckets[-1]
    if data.bucket == "week":
        monday = figures.monday_of(start)
        last = min(monday + timedelta(days=6), end)
        text = f"{start.day} {start:%b}" + ("" if start == last else f"–{last.day} {last:%b}")
        whole = (start, last) == (monday, monday + timedelta(days=6))
        return text if whole else f"{text} (part)"
    if data.bucket == "month":
        return f"{start:%b %Y}"
    several_years = data.buckets[0].year != end.year
    return f"{start.day} {start:%b}" + (f" {start:%y}" if several_years else "")


def _labels(texts: Sequence[str]) -> list[str]:
    """Labels within Slack's characters, cut in the middle where they differ
    (:func:`bot.formatting.clip_apart`), a number at the end of any still alike."""
    out: list[str] = []
    for text, cut in zip(
        texts, formatting.clip_apart(texts, limits.CHART_LABEL_CHARS), strict=True
    ):
        label = cut or "–"
        n = 2
        while label in out:
            suffix = f" {n}"
            label = formatting.clip_middle(text, limits.CHART_LABEL_CHARS - len(suffix)) + suffix
            n += 1
        out.append(label)
    return out
