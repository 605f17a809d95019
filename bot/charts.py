"""Charts of a report: plain data first (:class:`ChartData`), then a picture.

What is drawn follows the report's ``--by``: ``day``, ``week`` and ``month``
stack each bucket's cost by model; ``model``, ``key`` and ``connection`` stack
each day by that (the top few plus "other"); over a one-day period those three
draw ranked bars. Days nobody fetched are gaps (a hatched band), never zeros.

matplotlib is imported only inside :func:`render_chart` (and the PDF export),
so commands that do not draw (``today``, the Slack ack) never pay for it. The
figure is built with the object API and the Agg canvas: no pyplot, no global
state, safe from several threads.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import formatting
from bot.reports import NO_KEY, Report, cost_query
from storage.models import ApiKeyName, Connection

TOP_SERIES = 5
"""Series drawn by name; the rest are summed into "other"."""
RANKED_BARS = 10
OTHER = "other"

# Tableau's 10 colours: distinct for colour-blind readers, dark enough on white.
PALETTE = (
    "#4E79A7",
    "#F28E2B",
    "#E15759",
    "#76B7B2",
    "#59A14F",
    "#EDC948",
    "#B07AA1",
    "#FF9DA7",
    "#9C755F",
    "#2F4B7C",
)
OTHER_COLOUR = "#BAB0AC"
TEXT_COLOUR = "#333333"
MUTED_COLOUR = "#6B6B6B"
GAP_COLOUR = "#D9D9D9"

# Sized for Slack's image preview and a phone: 1000 x 600 pixels, large type.
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.8, 125
PIXELS = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))
FORMATS = ("png", "svg")


@dataclass(frozen=True)
class Series:
    label: str
    values: tuple[Decimal | None, ...]  # one per bucket; None: not fetched

    @property
    def total(self) -> Decimal:
        return sum((v for v in self.values if v is not None), Decimal(0))


@dataclass(frozen=True)
class ChartData:
    """Everything a chart shows, with Decimal money and UTC dates."""

    title: str
    subtitle: str
    kind: str  # "stacked" over time, or "ranked" bars
    bucket: str  # "day", "week" or "month" (stacked only)
    buckets: tuple[date, ...]  # the first day of each bucket
    series: tuple[Series, ...]
    total_usd: Decimal
    gaps: frozenset[date] = field(default_factory=frozenset)
    """Buckets with no fetched day: drawn as gaps."""
    end: date | None = None
    """The period's last day: a last week or month that is cut short draws narrower."""


def unfetched_days(report: Report) -> frozenset[date]:
    """The days of the report that no connection fetched.

    A report carries its ``uncovered`` spans per connection; a day is a gap only
    when every connection in the report missed it (else its bar shows what was
    fetched).
    """
    spans = report.uncovered
    labels = set(report.connection_labels)
    if not spans or not labels:
        return frozenset()
    missed: dict[date, set[str]] = defaultdict(set)
    for span in spans:
        day = span.start
        while day <= span.end:
            missed[day].add(span.connection)
            day += timedelta(days=1)
    return frozenset(day for day, who in missed.items() if who >= labels)


def chart_data(
    session: Session,
    workspace_id: int,
    report: Report,
    *,
    connection_id: int | None = None,
    unfetched: Iterable[date] | None = None,
) -> ChartData:
    """The chart of ``report``: its period, filters and grouping, split as ``--by`` says."""
    period = report.period
    unfetched = frozenset(unfetched_days(report) if unfetched is None else unfetched)
    by = report.group_by
    split = by if by in ("model", "key", "connection") else "model"
    when = formatting.day_span(period.start, period.end) if period.name == "range" else period.title
    title = f"{when} · {formatting.money(report.total_usd)}"
    what = {"model": "model", "key": "API key", "connection": "connection"}[split]
    filters = f" · models matching “{report.model_pattern}”" if report.model_pattern else ""
    if period.days == 1 and by in ("model", "key", "connection"):
        rows = [r for r in report.rows if r.cost_usd]
        shown = rows[:RANKED_BARS]
        series = [Series(r.label, (r.cost_usd,)) for r in shown]
        rest = sum((r.cost_usd for r in rows[RANKED_BARS:]), Decimal(0))
        if rest:
            series.append(Series(OTHER, (rest,)))
        gaps = frozenset({period.start}) & unfetched
        return ChartData(
            title,
            f"Cost by {what}, UTC day{filters}",
            "ranked",
            "day",
            (period.start,),
            tuple(series),
            report.total_usd,
            gaps,
        )
    bucket = by if by in ("week", "month") else "day"
    starts = _buckets(period.start, period.end, bucket)
    index = {start: i for i, start in enumerate(starts)}
    costs: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(starts))
    for day, label, cost in _daily(session, workspace_id, report, split, connection_id):
        costs[label][index[_bucket_of(day, bucket, period.start)]] += cost
    ranked = sorted(costs.items(), key=lambda item: (-sum(item[1]), item[0]))
    named = ranked[:TOP_SERIES]
    if len(ranked) > TOP_SERIES + 1:  # "other" only when it stands for two or more
        other = [
            sum(values, Decimal(0))
            for values in zip(*(v for _, v in ranked[TOP_SERIES:]), strict=True)
        ]
        named.append((OTHER, other))
    else:
        named = ranked
    days_in = defaultdict(set)
    day = period.start
    while day <= period.end:
        days_in[_bucket_of(day, bucket, period.start)].add(day)
        day += timedelta(days=1)
    gaps = frozenset(start for start in starts if days_in[start] <= unfetched)
    series = tuple(
        Series(label, tuple(None if starts[i] in gaps else v for i, v in enumerate(values)))
        for label, values in named
    )
    return ChartData(
        title,
        f"Cost per {bucket} by {what}, UTC days{filters}",
        "stacked",
        bucket,
        tuple(starts),
        series,
        report.total_usd,
        gaps,
        period.end,
    )


def _buckets(start: date, end: date, bucket: str) -> list[date]:
    starts: list[date] = []
    day = start
    while day <= end:
        first = _bucket_of(day, bucket, start)
        if not starts or starts[-1] != first:
            starts.append(first)
        day += timedelta(days=1)
    return starts


def _bucket_of(day: date, bucket: str, period_start: date) -> date:
    """The bucket's first day within the period (a partial first week starts with the period)."""
    if bucket == "week":
        first = day - timedelta(days=day.weekday())
    elif bucket == "month":
        first = day.replace(day=1)
    else:
        return day
    return max(first, period_start)


def _daily(
    session: Session, workspace_id: int, report: Report, split: str, connection_id: int | None
) -> list[tuple[date, str, Decimal]]:
    """(day, series label, cost) for the report's period and filters, summed in SQL."""
    period = report.period
    group = {
        "model": ["day", "model"],
        "connection": ["day", "connection_id"],
        "key": ["day", "connection_id", "api_key_id"],
    }[split]
    query = cost_query(
        workspace_id,
        period.start,
        period.end,
        group,
        connection_id=connection_id,
        model_pattern=report.model_pattern,
    )
    rows = [(tuple(r[:-1]), r[-1] or Decimal(0)) for r in session.execute(query)]
    if split == "model":
        return [(day, model, cost) for (day, model), cost in rows]
    labels = dict(
        session.execute(
            select(Connection.id, Connection.label).where(Connection.workspace_id == workspace_id)
        ).all()
    )
    if split == "connection":
        return [(day, labels.get(cid, str(cid)), cost) for (day, cid), cost in rows]
    names = {
        (n.connection_id, n.api_key_id): n.name
        for n in session.scalars(
            select(ApiKeyName).join(Connection).where(Connection.workspace_id == workspace_id)
        )
    }
    several = len(report.connection_labels) > 1
    out = []
    for (day, cid, key_id), cost in rows:
        label = names.get((cid, key_id), key_id) if key_id else NO_KEY
        if several:
            label = f"{labels.get(cid, cid)}: {label}"
        out.append((day, label, cost))
    return out


def colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour per series: the hash of its name picks it, so a model keeps its colour
    from chart to chart; if two names in one chart hash alike, the later takes the next free
    colour. "other" is always grey."""
    chosen: dict[str, str] = {}
    taken: set[int] = set()
    # Collisions are settled in name order, so the same set of names always gets the same
    # colours, whatever their ranks in this period.
    for label in sorted(labels):
        if label == OTHER:
            chosen[label] = OTHER_COLOUR
            continue
        slot = palette_slot(label)
        for step in range(len(PALETTE)):
            candidate = (slot + step) % len(PALETTE)
            if candidate not in taken or len(taken) >= len(PALETTE):
                break
        taken.add(candidate)
        chosen[label] = PALETTE[candidate]
    return chosen


def palette_slot(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big") % len(PALETTE)


def render_chart(data: ChartData, fmt: str = "png") -> bytes:
    """The chart as PNG or SVG bytes: a white card, so it reads in light and dark mode."""
    if fmt not in FORMATS:
        raise ValueError(f"charts are drawn as {' or '.join(FORMATS)}, not {fmt}")
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = draw(data)
    FigureCanvasAgg(figure)
    out = io.BytesIO()
    # PNG at zlib level 1: the encoding took a sixth of a chart at the default level 6.
    extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    figure.savefig(out, format=fmt, dpi=DPI, facecolor="white", **extra)
    return out.getvalue()


def draw(data: ChartData, figure=None, rect=None):
    """Draw ``data`` onto a matplotlib figure (a new 1000 x 600 one unless given)."""
    from matplotlib.figure import Figure

    if figure is None:
        figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="white")
    if rect is None:  # ranked bars need room for their labels; stacks for their legend
        rect = (0.3, 0.1, 0.62, 0.72) if data.kind == "ranked" else (0.09, 0.12, 0.6, 0.72)
        left = 0.02
    else:
        left = rect[0]
    axes = figure.add_axes(rect)
    # The title and subtitle sit a fixed distance above the plot, whatever the page's size.
    above = (rect[1] + rect[3]) + 0.48 / figure.get_figheight()
    figure.text(
        left, above, data.title, fontsize=15, fontweight="bold", color=TEXT_COLOUR, va="center"
    )
    below = (rect[1] + rect[3]) + 0.22 / figure.get_figheight()
    figure.text(left, below, data.subtitle, fontsize=10.5, color=MUTED_COLOUR, va="center")
    _style(axes)
    palette = colours(s.label for s in data.series)
    if data.kind == "ranked":
        _ranked(axes, data, palette)
    else:
        _stacked(axes, data, palette)
    return figure


def _style(axes) -> None:
    axes.set_facecolor("white")
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(MUTED_COLOUR)
    axes.tick_params(colors=TEXT_COLOUR, labelsize=10.5)
    axes.grid(axis="y", color="#E6E6E6", linewidth=0.8)
    axes.set_axisbelow(True)


def _dollars(top: float):
    from matplotlib.ticker import FuncFormatter

    cents = top < 10
    return FuncFormatter(lambda v, _pos: f"${v:,.2f}" if cents else f"${v:,.0f}")


def _stacked(axes, data: ChartData, palette: dict[str, str]) -> None:
    from matplotlib.collections import PolyCollection
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    x = date2num(list(data.buckets))
    lengths = _bucket_lengths(data)
    widths = [0.8 * n for n in lengths]
    centres = [xi + (n - 1) / 2 for xi, n in zip(x, lengths, strict=True)]
    # One polygon collection per series, not one patch per bar: 540 bars draw in a
    # tenth of the time (the patches' own bookkeeping was most of the cost).
    bottom = [0.0] * len(x)
    handles, labels = [], []
    for series in data.series:
        heights = [float(v) if v is not None else 0.0 for v in series.values]
        boxes = [
            ((c - w / 2, b), (c - w / 2, b + h), (c + w / 2, b + h), (c + w / 2, b))
            for c, w, b, h in zip(centres, widths, bottom, heights, strict=True)
            if h > 0
        ]
        colour = palette[series.label]
        axes.add_collection(
            PolyCollection(boxes, facecolors=colour, edgecolors="none", linewidths=0)
        )
        handles.append(Patch(facecolor=colour))
        labels.append(formatting.fit(series.label, 26).rstrip())
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    top = max(bottom, default=0.0) or 1.0
    for i, start in enumerate(data.buckets):
        if start in data.gaps:
            axes.axvspan(
                centres[i] - widths[i] / 2,
                centres[i] + widths[i] / 2,
                facecolor="none",
                edgecolor=GAP_COLOUR,
                hatch="///",
                linewidth=0,
            )
    if data.gaps:
        handles.append(Patch(facecolor="none", edgecolor=GAP_COLOUR, hatch="///"))
        labels.append("not fetched")
    axes.set_ylim(0, top * 1.08)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))  # few: costly
    axes.yaxis.set_major_formatter(_dollars(top))
    locator = AutoDateLocator(minticks=3, maxticks=7)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, show_offset=False))
    if len(x):
        axes.set_xlim(x[0] - 0.6, x[-1] + lengths[-1] - 0.4)
    if not data.series:
        axes.text(
            0.5, 0.5, "No spend in this period", transform=axes.transAxes, ha="center", fontsize=12
        )
    if handles:
        # The key reads top-down in stack order (largest at the bottom of the stack).
        order = handles[::-1] if not data.gaps else handles[-2::-1] + handles[-1:]
        names = labels[::-1] if not data.gaps else labels[-2::-1] + labels[-1:]
        _key(axes, order, names)


def _key(axes, patches, labels) -> None:
    """The legend, placed by hand beside the plot: a square and a name per series.

    Cheaper than matplotlib's legend (whose layout boxes took a fifth of a chart's
    time) and it reads the same.
    """
    from matplotlib.patches import Rectangle

    figure = axes.figure
    left, bottom, width, height = axes.get_position().bounds
    x = left + width + 0.025
    step = 0.27 / figure.get_figheight()
    square = 0.13 / figure.get_figheight()
    y = bottom + height - square
    for patch, label in zip(patches, labels, strict=True):
        figure.patches.append(
            Rectangle(
                (x, y),
                square * figure.get_figheight() / figure.get_figwidth(),
                square,
                transform=figure.transFigure,
                facecolor=patch.get_facecolor(),
                edgecolor=patch.get_edgecolor() if patch.get_hatch() else "none",
                hatch=patch.get_hatch(),
                linewidth=0,
                figure=figure,
            )
        )
        figure.text(x + 0.03, y + square / 2, label, fontsize=9.5, color=TEXT_COLOUR, va="center")
        y -= step


def _bucket_lengths(data: ChartData) -> list[int]:
    """Days per bucket, for bar widths (weeks and months are wider)."""
    if data.bucket == "day" or not data.buckets:
        return [1] * len(data.buckets)
    ends = list(data.buckets[1:])
    last = data.buckets[-1]
    if data.bucket == "week":
        final = last - timedelta(days=last.weekday()) + timedelta(days=7)
    else:
        final = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    ends.append(min(final, data.end + timedelta(days=1)) if data.end else final)
    return [(end - start).days for start, end in zip(data.buckets, ends, strict=True)]


def _ranked(axes, data: ChartData, palette: dict[str, str]) -> None:
    labels = [formatting.fit(s.label, 28).rstrip() for s in data.series][::-1]
    values = [float(s.values[0] or 0) for s in data.series][::-1]
    bars = axes.barh(
        labels, values, color=[palette[s.label] for s in data.series][::-1], height=0.65
    )
    top = max(values, default=0.0) or 1.0
    for bar, series in zip(bars, data.series[::-1], strict=True):
        axes.text(
            bar.get_width() + top * 0.01,
            bar.get_y() + bar.get_height() / 2,
            formatting.money(series.values[0] or Decimal(0)),
            va="center",
            fontsize=10,
            color=TEXT_COLOUR,
        )
    axes.set_xlim(0, top * 1.18)
    axes.xaxis.set_major_formatter(_dollars(top))
    axes.grid(axis="y", visible=False)
    axes.grid(axis="x", color="#E6E6E6", linewidth=0.8)
    if not data.series:
        axes.text(
            0.5, 0.5, "No spend on this day", transform=axes.transAxes, ha="center", fontsize=12
        )
    if data.gaps:
        axes.text(
            0.5,
            0.5,
            "This day was not fetched",
            transform=axes.transAxes,
            ha="center",
            fontsize=12,
            color=MUTED_COLOUR,
        )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError if it is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
