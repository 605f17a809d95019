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
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import figures, formatting
from bot.costs import cost_query
from bot.reports import NO_KEY, Report
from storage.models import ApiKeyName, Connection

TOP_SERIES = 5
"""Series drawn by name; the rest are summed into "other"."""
RANKED_BARS = 10
OTHER = "other"
SPLIT_WORDS = {"model": "model", "key": "API key", "connection": "connection"}

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

FONT = "sans-serif"
"""One family for every word of a chart (matplotlib's DejaVu Sans, else the viewer's)."""
PARTIAL = "today so far (partial)"
"""The key's words for today's bar: it keeps growing until the UTC day ends."""


VEIL = 0.55
"""How far today's bar is taken towards white: lighter, its series still told apart."""


def lighter(colour: str) -> tuple[float, float, float]:
    """``colour`` as a bar under the veil looks: for the key's "today so far" square."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * VEIL, g + (1 - g) * VEIL, b + (1 - b) * VEIL)


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
    split: str = "model"
    """What the series are: ``model``, ``key`` or ``connection`` (a trend: ``total``)."""
    partial: date | None = None
    """The bucket holding today, when the period does: drawn as "so far", not as a whole day."""

    @property
    def split_words(self) -> str:
        return SPLIT_WORDS.get(self.split, self.split)


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
    title = f"{when} · {figures.figure_words(report.total)}"
    what = SPLIT_WORDS[split]
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
            f"Cost by {what}, UTC day{filters}" + (f", {figures.SO_FAR}" if report.partial else ""),
            "ranked",
            "day",
            (period.start,),
            tuple(series),
            report.total_usd,
            gaps,
            split=split,
            partial=period.start if report.partial else None,
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
        split,
        _bucket_of(report.total.coverage.today, bucket, period.start) if report.partial else None,
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
    """The chart as PNG or SVG bytes: a white card, so it reads in light and dark mode.
    An SVG keeps its words as text (selectable, searchable), not as outlines."""
    if fmt not in FORMATS:
        raise ValueError(f"charts are drawn as {' or '.join(FORMATS)}, not {fmt}")
    import io

    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = draw(data)
    FigureCanvasAgg(figure)
    out = io.BytesIO()
    # PNG at zlib level 1: the encoding took a sixth of a chart at the default level 6.
    extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    if fmt == "svg":  # words as text, not outlines (only an SVG asks: rc_context costs)
        with rc_context({"svg.fonttype": "none"}):
            figure.savefig(out, format=fmt, dpi=DPI, facecolor="white")
    else:
        figure.savefig(out, format=fmt, dpi=DPI, facecolor="white", **extra)
    return out.getvalue()


def text(figure, x: float, y: float, words: str, **style):
    """Words on a chart, all in :data:`FONT`, and as written: an amount's or a name's
    ``$`` never starts mathematics (``$prod$ key`` would have turned italic serif)."""
    return figure.text(x, y, words, fontfamily=FONT, parse_math=False, **style)


def draw(data: ChartData, figure=None, rect=None):
    """Draw ``data`` onto a matplotlib figure (a new 1000 x 600 one unless given).

    ``rect`` is the plot area as (left, bottom, width, height) fractions of the figure;
    the title sits above it and the key to its right.
    """
    from matplotlib.figure import Figure

    if figure is None:
        figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="white")
    if rect is None:  # ranked bars need room for their labels; stacks for their key
        rect = (0.3, 0.1, 0.62, 0.72) if data.kind == "ranked" else (0.09, 0.12, 0.6, 0.72)
        left = 0.02
    else:
        left = rect[0]
    # The title and subtitle sit a fixed distance above the plot, whatever the page's size.
    above = (rect[1] + rect[3]) + 0.48 / figure.get_figheight()
    text(
        figure,
        left,
        above,
        data.title,
        fontsize=15,
        fontweight="bold",
        color=TEXT_COLOUR,
        va="center",
    )
    below = (rect[1] + rect[3]) + 0.22 / figure.get_figheight()
    text(figure, left, below, data.subtitle, fontsize=10.5, color=MUTED_COLOUR, va="center")
    palette = colours(s.label for s in data.series)
    if data.kind == "ranked":
        _ranked(figure, rect, data, palette)
    else:
        _stacked(figure, rect, data, palette)
    return figure


class _Plot:
    """A plot area without an Axes: data coordinates mapped onto ``rect`` of the figure.

    An Axes builds tick objects, axis layouts and data limits on every draw, which was most
    of a chart's time. A chart here has a few fixed parts (bars, a grid, two spines, tick
    labels), so they are figure-level artists under one affine transform.
    """

    def __init__(self, figure, rect, xlim: tuple[float, float], ylim: tuple[float, float]):
        from matplotlib.transforms import Affine2D

        left, bottom, width, height = rect
        (x0, x1), (y0, y1) = xlim, ylim
        self.figure, self.xlim, self.ylim = figure, xlim, ylim
        self.data = (
            Affine2D()
            .translate(-x0, -y0)
            .scale(width / (x1 - x0), height / (y1 - y0))
            .translate(left, bottom)
            + figure.transFigure
        )
        self.centre = (left + width / 2, bottom + height / 2)

    def offset(self, transform, dx_points: float, dy_points: float):
        """``transform`` moved by a distance in points (labels keep their gap at any size)."""
        from matplotlib.transforms import ScaledTranslation

        return transform + ScaledTranslation(
            dx_points / 72, dy_points / 72, self.figure.dpi_scale_trans
        )

    def bars(self, boxes: list[tuple[float, float, float, float]], colour: str) -> None:
        """Boxes (x, y, width, height) in data units, as one compound path: one draw call."""
        import numpy as np
        from matplotlib.patches import PathPatch
        from matplotlib.path import Path

        if not boxes:
            return
        b = np.asarray(boxes, dtype=float)
        x, y, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        polys = np.stack(
            [np.stack([x, y], 1), np.stack([x, y + h], 1), np.stack([x + w, y + h], 1),
             np.stack([x + w, y], 1)],
            axis=1,
        )  # fmt: skip
        path = Path.make_compound_path_from_polys(polys)
        self.figure.add_artist(
            PathPatch(path, transform=self.data, facecolor=colour, edgecolor="none", linewidth=0)
        )

    def veil(self, box: tuple[float, float, float, float]) -> None:
        """A bar made lighter (today's: it keeps growing), its colours still told apart:
        one white, half-clear box over it, the cheapest way to draw it (hatching cost a
        PNG a sixth more time, and dots made a PDF eight times larger)."""
        from matplotlib.patches import Rectangle

        self.figure.add_artist(
            Rectangle(
                box[:2], box[2], box[3], transform=self.data, facecolor="white",
                alpha=VEIL, edgecolor="none", linewidth=0, zorder=1.5,
            )
        )  # fmt: skip

    def grid(self, axis: str, ticks) -> None:
        """Light lines across the plot at ``ticks``, behind the bars."""
        from matplotlib.collections import LineCollection

        (x0, x1), (y0, y1) = self.xlim, self.ylim
        if axis == "y":
            lines = [((x0, t), (x1, t)) for t in ticks]
        else:
            lines = [((t, y0), (t, y1)) for t in ticks]
        self.figure.add_artist(
            LineCollection(lines, colors="#E6E6E6", linewidths=0.8, transform=self.data, zorder=0.5)
        )

    def spines(self) -> None:
        """The left and bottom edges of the plot."""
        from matplotlib.collections import LineCollection

        (x0, x1), (y0, y1) = self.xlim, self.ylim
        self.figure.add_artist(
            LineCollection(
                [
                    (
                        (x0, y1),
                        (x0, y0),
                    ),
                    ((x0, y0), (x1, y0)),
                ],
                colors=MUTED_COLOUR,
                linewidths=0.8,
                transform=self.data,
                zorder=2.5,
            )
        )

    def ticks(self, axis: str, where, labels) -> None:
        """Tick marks outside the plot and their labels: x below, y to the left."""
        from matplotlib.lines import Line2D
        from matplotlib.markers import TICKDOWN, TICKLEFT

        (x0, _), (y0, _) = self.xlim, self.ylim
        where = list(where)
        if axis == "x":
            xs, ys, marker = where, [y0] * len(where), TICKDOWN
        else:
            xs, ys, marker = [x0] * len(where), where, TICKLEFT
        self.figure.add_artist(
            Line2D(
                xs, ys, linestyle="none", marker=marker, markersize=3.5,
                markeredgewidth=0.8, color=MUTED_COLOUR, transform=self.data, zorder=2.5,
            )
        )  # fmt: skip
        if axis == "x":
            place = dict(transform=self.offset(self.data, 0, -7), ha="center", va="top")
        else:
            place = dict(transform=self.offset(self.data, -7, 0), ha="right", va="center")
        for x, y, label in zip(xs, ys, labels, strict=True):  # one transform for them all
            text(self.figure, x, y, label, fontsize=10.5, color=TEXT_COLOUR, **place)

    def note(self, words: str, colour: str = TEXT_COLOUR) -> None:
        """A line in the middle of the plot (an empty chart says why it is empty)."""
        x, y = self.centre
        text(
            self.figure, x, y, words, ha="center", va="center", fontsize=12, color=colour, zorder=3
        )


def _dollar_ticks(top: float, nbins: int) -> tuple[list[float], list[str]]:
    """Round dollar ticks from 0 to ``top``, in cents below $10."""
    from matplotlib.ticker import MaxNLocator

    ticks = [
        float(t) for t in MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(0, top)
    ]
    ticks = [t for t in ticks if 0 <= t <= top * (1 + 1e-9)]
    cents = top < 10
    return ticks, [f"${t:,.2f}" if cents else f"${t:,.0f}" for t in ticks]


MOST_TICKS = 8
"""Labels along the bottom at most: each is drawn text, and a phone shows about this many."""
TICK_CHAR_PIXELS = 10.0
"""About how wide a character of a tick label is (10.5 pt at 125 dpi, DejaVu Sans)."""


def _date_ticks(
    data: ChartData, centres: list[float], room: float
) -> tuple[list[float], list[str]]:
    """Labels along the bottom that read as what the bars are: days as days (``2 Dec``,
    the year where it turns), weeks as weeks (``23–29 Nov``), months as months; evenly
    spaced so none overlaps the next in ``room`` pixels, and the newest always named."""
    if data.bucket == "week":
        labels = [_week_words(start, data) for start in data.buckets]
    elif data.bucket == "month":
        labels = [f"{start:%b %Y}" for start in data.buckets]
    else:
        several = data.buckets[0].year != data.buckets[-1].year
        labels = [
            f"{day.day} {day:%b}"
            + (f" {day.year}" if several and n and day.year != data.buckets[n - 1].year else "")
            for n, day in enumerate(data.buckets)
        ]
    span = (centres[-1] - centres[0]) or 1.0
    pixels = room * 0.95 / (span + (len(centres) and 1))  # per day of the axis, about

    def apart(chosen: list[int]) -> bool:  # no label runs into the next
        return all(
            (centres[b] - centres[a]) * pixels
            >= (len(labels[a]) + len(labels[b])) / 2 * TICK_CHAR_PIXELS * 1.15
            for a, b in itertools.pairwise(chosen)
        )

    least = max(math.ceil(len(labels) / MOST_TICKS), 1)
    steps = (1, 2, 3, 7, 14, 28, 56, 91, 182, 364) if data.bucket == "day" else range(1, 400)
    chosen = [len(labels) - 1]
    for step in (s for s in steps if s >= least):
        chosen = list(range(len(labels) - 1, -1, -step))[::-1]  # counted back from the newest
        if apart(chosen):
            break
    turns = [n for n, label in enumerate(labels) if label[-4:].isdigit()]
    for turn in turns:  # the year is said where it turns, even between ticks
        if turn not in chosen:
            nearest = min(chosen, key=lambda n: abs(n - turn))
            chosen[chosen.index(nearest)] = turn
    return [centres[n] for n in chosen], [labels[n] for n in chosen]


def _week_words(start: date, data: ChartData) -> str:
    """A week's bar: its days within the period, ``23–29 Nov`` or ``30 Nov–6 Dec``."""
    last = start - timedelta(days=start.weekday()) + timedelta(days=6)
    if data.end is not None:
        last = min(last, data.end)
    if start == last:
        return f"{start.day} {start:%b}"
    if start.month == last.month:
        return f"{start.day}–{last.day} {last:%b}"
    return f"{start.day} {start:%b}–{last.day} {last:%b}"


def _stacked(figure, rect, data: ChartData, palette: dict[str, str]) -> None:
    from matplotlib.dates import date2num
    from matplotlib.patches import Patch, Rectangle

    x = [float(v) for v in date2num(list(data.buckets))]
    lengths = _bucket_lengths(data)
    widths = [0.8 * n for n in lengths]
    lefts = [xi + (n - 1) / 2 - w / 2 for xi, n, w in zip(x, lengths, widths, strict=True)]
    bottom = [0.0] * len(x)
    stacks = []
    for series in data.series:
        heights = [float(v) if v is not None else 0.0 for v in series.values]
        stacks.append(
            [
                (x0, b, w, h)
                for x0, b, w, h in zip(lefts, bottom, widths, heights, strict=True)
                if h > 0
            ]
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    top = max(bottom, default=0.0) or 1.0
    xlim = (x[0] - 0.6, x[-1] + lengths[-1] - 0.4) if x else (0.0, 1.0)
    plot = _Plot(figure, rect, xlim, (0.0, top * 1.08))
    yticks, ylabels = _dollar_ticks(top * 1.08, 5)  # few: each label is drawn text
    plot.grid("y", yticks)
    handles, labels = [], []
    today = data.buckets.index(data.partial) if data.partial in data.buckets else None
    for series, boxes in zip(data.series, stacks, strict=True):
        colour = palette[series.label]
        plot.bars(boxes, colour)
        handles.append(Patch(facecolor=colour))
        labels.append(formatting.fit(series.label, 26).rstrip())
    if today is not None and bottom[today] > 0:  # today keeps growing: its stack lighter
        plot.veil((lefts[today], 0.0, widths[today], bottom[today]))
    for i, start in enumerate(data.buckets):
        if start in data.gaps:
            figure.add_artist(
                Rectangle(
                    (lefts[i], 0.0), widths[i], top * 1.08, transform=plot.data,
                    facecolor="none", edgecolor=GAP_COLOUR, hatch="///", linewidth=0,
                )
            )  # fmt: skip
    # The key reads top-down in stack order (largest at the bottom of the stack), then
    # what the marks mean.
    order, names = handles[::-1], labels[::-1]
    if today is not None and data.series:
        order.append(Patch(facecolor=lighter(MUTED_COLOUR), edgecolor="none"))
        names.append(PARTIAL)
    if data.gaps:
        order.append(Patch(facecolor="none", edgecolor=GAP_COLOUR, hatch="///"))
        names.append("not fetched")
    plot.spines()
    plot.ticks("y", yticks, ylabels)
    if x:
        centres = [xi + (n - 1) / 2 for xi, n in zip(x, lengths, strict=True)]
        room = rect[2] * figure.get_figwidth() * figure.dpi
        plot.ticks("x", *_date_ticks(data, centres, room))
    if not data.series:
        plot.note("No spend in this period")
    if order:
        _key(figure, rect, order, names)


def _key(figure, rect, patches, labels) -> None:
    """The key, placed by hand beside the plot: a square and a name per series.

    Cheaper than matplotlib's legend (whose layout boxes took a fifth of a chart's
    time) and it reads the same.
    """
    from matplotlib.patches import Rectangle

    left, bottom, width, height = rect
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
        text(figure, x + 0.03, y + square / 2, label, fontsize=9.5, color=TEXT_COLOUR, va="center")
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


def _ranked(figure, rect, data: ChartData, palette: dict[str, str]) -> None:
    """Horizontal bars, largest at the top, each with its amount at its end."""
    shown = list(data.series)
    values = [float(s.values[0] or 0) for s in shown]
    top = max(values, default=0.0) or 1.0
    count = len(shown)
    plot = _Plot(figure, rect, (0.0, top * 1.18), (-0.6, max(count, 1) - 0.4))
    xticks, xlabels = _dollar_ticks(top * 1.18, 6)
    plot.grid("x", xticks)
    height = 0.65
    for i, (series, value) in enumerate(zip(shown, values, strict=True)):
        row = count - 1 - i  # the first (largest) at the top
        box = (0.0, row - height / 2, value, height)
        plot.bars([box], palette[series.label])
        if data.partial is not None:
            plot.veil(box)
        text(
            figure, value + top * 0.01, row, formatting.money(series.values[0] or Decimal(0)),
            transform=plot.data, va="center", fontsize=10, color=TEXT_COLOUR,
        )  # fmt: skip
    plot.spines()
    plot.ticks("x", xticks, xlabels)
    rows = [count - 1 - i for i in range(count)]
    plot.ticks("y", rows, [formatting.fit(s.label, 28).rstrip() for s in shown])
    if data.gaps:
        plot.note("This day was not fetched", MUTED_COLOUR)
    elif not shown:
        plot.note("No spend on this day")
    elif data.partial is not None:  # what the dotted, lighter bars mean
        words = f"Lighter: {PARTIAL}, it keeps growing until the UTC day ends"
        text(figure, 0.02, 0.02, words, fontsize=9.5, color=MUTED_COLOUR, va="bottom")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError if it is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
