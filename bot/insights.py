"""Insights: what changed this week, what sits idle, where the money goes, what is cheaper.

Reports answer "how much"; insights answer "what should we look at". Each one
is plain data with the days it covers and where its figures come from, and
each is left out, with a note saying why, when the store cannot back it: a
mover from a week nobody fetched or an idle key from days fetched without the
per-key breakdown would be a confident wrong answer.

Weeks are the last 7 finished UTC days (today is partial) against the 7
before; idle keys spent in days 15 to 44 ago and nothing in the last 14.

Kinds of usage and list prices are the providers' to give: each connection's
unit types are read, and its models priced, by its own provider where it has
those capabilities (``UsageKindProvider``, ``PriceListProvider``). Without
them its unit types are shown as they come and its models get no hint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.figures import cents_that_add_up, share_words, shares_that_add_up
from bot.formatting import clock, day_span
from providers.types import (
    KIND_LABELS,
    PriceListProvider,
    PriceTable,
    Provider,
    UnitCostProvider,
    UsageKindProvider,
    kind_label,
)
from storage.models import (
    ApiKeyName,
    Connection,
    DailyCost,
    FetchedSpan,
    InvoiceLineUnits,
    UnitCost,
    UnitCostSpan,
)

WEEK_DAYS = 7
IDLE_QUIET_DAYS = 14
"""A key is idle when it spent nothing in this many finished days..."""
IDLE_BEFORE_DAYS = 30
"""...after spending in the this many days before them."""
MAX_MOVERS = 5
MAX_IDLE_KEYS = 10
# Where figures come from, said with the providers' own names ({who}: "xAI", "xAI and …").
COST_SOURCE = "{who} usage series, daily cost per model"
KEY_SOURCE = "{who} usage series by API key"
UNIT_SOURCE = "{who} usage series by unit type"
INVOICE_SOURCE = "{who} invoice preview"


@dataclass(frozen=True)
class Span:
    """UTC days ``start``..``end``, both included."""

    start: date
    end: date

    @property
    def title(self) -> str:
        return day_span(self.start, self.end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Mover:
    label: str
    this_week_usd: Decimal
    last_week_usd: Decimal

    @property
    def change_usd(self) -> Decimal:
        return self.this_week_usd - self.last_week_usd

    @property
    def new(self) -> bool:
        """Nothing the week before: a percentage would be meaningless."""
        return self.last_week_usd == 0

    @property
    def change_pct(self) -> Decimal | None:
        if self.new:
            return None
        return self.change_usd / self.last_week_usd * 100


@dataclass(frozen=True)
class Movers:
    this_week: Span
    last_week: Span
    models: tuple[Mover, ...]
    keys: tuple[Mover, ...]
    """Empty when no connection had the per-key breakdown for both weeks."""
    source: str
    key_source: str


@dataclass(frozen=True)
class IdleKey:
    label: str
    spent_usd: Decimal
    """What it spent in the earlier 30 days."""
    last_day: date
    """The last day it spent anything."""


@dataclass(frozen=True)
class IdleKeys:
    quiet: Span
    before: Span
    keys: tuple[IdleKey, ...]
    hidden: int
    source: str


@dataclass(frozen=True)
class Kind:
    kind: str
    label: str
    cost_usd: Decimal
    share: Decimal
    cents: Decimal
    """Its cost as written, and its share as written (percent, to 0.1): every kind's add
    up to the total as written and to 100.0% (bot.figures)."""
    percent: Decimal | None
    units: int | None = None
    """Units billed this cycle (tokens, images), from the invoice, where known."""

    @property
    def share_text(self) -> str:
        return share_words(self.percent, self.cost_usd)


@dataclass(frozen=True)
class Kinds:
    period: Span
    rows: tuple[Kind, ...]
    total_usd: Decimal
    source: str
    units_source: str | None = None
    """Where ``Kind.units`` come from (the invoice's cycle so far), when any do."""


@dataclass(frozen=True)
class CheaperHint:
    model: str
    cheaper: str
    actual_usd: Decimal
    cheaper_usd: Decimal
    """The same token mix at the cheaper model's list prices."""
    period: Span
    source: str
    prices_as_of: date
    prices_source: str
    unsure: bool
    """A price behind it is marked unsure in the price file."""

    @property
    def saving_usd(self) -> Decimal:
        return self.actual_usd - self.cheaper_usd


@dataclass(frozen=True)
class Insights:
    today: date
    connection: str | None
    """The one connection they are for, or None for the whole workspace."""
    movers: Movers | None
    idle: IdleKeys | None
    kinds: Kinds | None
    hints: tuple[CheaperHint, ...]
    notes: tuple[str, ...]
    """Why an insight is missing or partial, one line each."""

    @property
    def empty(self) -> bool:
        return not (self.movers or self.idle or self.kinds or self.hints)


def build_insights(
    session: Session,
    workspace_id: int,
    today: date,
    connection: Connection | None = None,
    *,
    providers: Iterable[Provider],
) -> Insights:
    """Every insight for a workspace (or one connection) as of ``today`` (UTC).

    ``providers`` are the loaded ones (``runtime.providers``); a connection
    whose provider is not among them is read as one without the capabilities.
    """
    scope = _Scope.read(session, workspace_id, connection, providers)
    notes: list[str] = []
    if not scope.labels:
        notes.append("Nothing is connected yet: connect an account to see insights.")
        return Insights(today, None, None, None, None, (), tuple(notes))
    movers = _movers(session, scope, today, notes)
    idle = _idle_keys(session, scope, today, notes)
    kinds, mix = _kinds(session, scope, today, notes)
    prices = scope.price_lists(notes)
    hints = _hints(mix, prices)
    if not mix and (priced := _with_cheaper_sibling(session, scope, today, prices)):
        notes.append(
            "Cheaper-model hints need the token mix (input, output, cached), which "
            f"{scope.who_of(priced)} has not "
            "given for these days: neither the usage split by unit type nor invoice lines."
        )
    return Insights(
        today=today,
        connection=connection.label if connection else None,
        movers=movers,
        idle=idle,
        kinds=kinds,
        hints=hints,
        notes=tuple(notes),
    )


# -- scope and coverage ---------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    labels: dict[int, str]
    provider_of: dict[int, str]
    """Each connection's provider name (``Connection.provider``)."""
    providers: dict[str, Provider]
    """The loaded providers of these connections, by name; one not loaded is missing."""
    readers: dict[str, Callable[[str], str]]
    """``usage_kind`` of those that read their unit types as kinds, by provider name."""

    @classmethod
    def read(
        cls,
        session: Session,
        workspace_id: int,
        connection: Connection | None,
        providers: Iterable[Provider],
    ) -> _Scope:
        query = select(Connection.id, Connection.label, Connection.provider).where(
            Connection.workspace_id == workspace_id
        )
        if connection is not None:
            query = query.where(Connection.id == connection.id)
        rows = session.execute(query.order_by(Connection.label)).all()
        loaded = {provider.name: provider for provider in providers}
        in_scope = {name: loaded[name] for _, _, name in rows if name in loaded}
        return cls(
            {cid: label for cid, label, _ in rows},
            {cid: name for cid, _, name in rows},
            in_scope,
            {n: p.usage_kind for n, p in in_scope.items() if isinstance(p, UsageKindProvider)},
        )

    @property
    def who(self) -> str:
        """The providers of these connections, by their display names: "xAI", "xAI and …"."""
        return self.who_of(self.ids)

    def who_of(self, ids: Iterable[int]) -> str:
        """The providers of some of these connections, by their display names: a source
        names only the providers whose figures it holds."""
        names = sorted(
            {
                self.providers[n].display_name if n in self.providers else n
                for n in (self.provider_of[i] for i in ids)
            }
        )
        return " and ".join(filter(None, (", ".join(names[:-1]), names[-1]))) if names else ""

    def says(self, template: str, ids: Iterable[int] | None = None) -> str:
        return template.format(who=self.who if ids is None else self.who_of(ids))

    @property
    def splitting(self) -> set[int]:
        """The connections whose provider can split costs by unit type
        (``UnitCostProvider``): for the others, saying nothing is the right answer."""
        return {
            cid
            for cid, name in self.provider_of.items()
            if isinstance(self.providers.get(name), UnitCostProvider)
        }

    def display_name(self, provider: str) -> str:
        loaded = self.providers.get(provider)
        return loaded.display_name if loaded is not None else provider

    def kind(self, connection_id: int, unit_type: str) -> _KindKey:
        """The kind of usage a unit type of this connection is, as its provider reads it;
        the unit type itself, unlabelled, where the provider cannot read it."""
        read = self.readers.get(self.provider_of[connection_id])
        if read is None:
            return _KindKey(unit_type, unit_type)
        kind = read(unit_type)
        return _KindKey(kind, kind_label(kind))

    def price_lists(self, notes: list[str]) -> dict[str, PriceTable]:
        """The list prices of the providers in scope that have them, by provider name."""
        tables = {}
        for name, provider in self.providers.items():
            if not isinstance(provider, PriceListProvider):
                continue
            try:
                tables[name] = provider.list_prices()
            except ValueError as error:
                notes.append(
                    f"Cheaper-model hints leave out {provider.display_name}: its list prices "
                    f"could not be read ({error})."
                )
        return tables

    @property
    def ids(self) -> list[int]:
        return list(self.labels)

    def names(self, ids: Iterable[int]) -> str:
        return ", ".join(f"“{self.labels[i]}”" for i in sorted(ids, key=self.labels.get))


def _covering(session: Session, table, ids: Sequence[int], span: Span) -> set[int]:
    """The connections one of whose spans (merged on write) holds every day of ``span``."""
    if not ids:
        return set()
    return set(
        session.scalars(
            select(table.connection_id).where(
                table.connection_id.in_(ids),
                table.first_day <= span.start,
                table.last_day >= span.end,
            )
        )
    )


def _keyed(session: Session, ids: Iterable[int], span: Span) -> set[int]:
    """Of connections that fetched ``span``, those their provider answers per API key.

    What the provider said (``CostFetch.by_key``, kept as ``key_breakdown`` by each
    sync) is the signal, not the rows: a provider that does answer per key still has
    costs no key made (OpenAI's image and tool line items), stored with no key.
    """
    ids = list(ids)
    if not ids:
        return set()
    return set(
        session.scalars(
            select(Connection.id).where(Connection.id.in_(ids), Connection.key_breakdown.is_(True))
        )
    )


def _weeks(today: date) -> tuple[Span, Span]:
    end = today - timedelta(days=1)
    this_week = Span(end - timedelta(days=WEEK_DAYS - 1), end)
    last_week = Span(this_week.start - timedelta(days=WEEK_DAYS), this_week.start - timedelta(1))
    return this_week, last_week


# -- top movers -------------------------------------------------------------------


def _movers(session: Session, scope: _Scope, today: date, notes: list[str]) -> Movers | None:
    this_week, last_week = _weeks(today)
    both = Span(last_week.start, this_week.end)
    covered = _covering(session, FetchedSpan, scope.ids, both)
    if missing := set(scope.ids) - covered:
        notes.append(
            f"Top movers leave out {scope.names(missing)}: not every day of {both.title} was "
            f"fetched (`sync --days {(today - both.start).days + 1}` fetches them)."
        )
    if not covered:
        return None
    recent = DailyCost.day >= this_week.start
    by_model = {
        model: [after or Decimal(0), before or Decimal(0)]
        for model, after, before in session.execute(
            select(
                DailyCost.model,
                func.sum(case((recent, DailyCost.cost), else_=0)),
                func.sum(case((~recent, DailyCost.cost), else_=0)),
            )
            .where(
                DailyCost.connection_id.in_(covered),
                DailyCost.day >= both.start,
                DailyCost.day <= both.end,
            )
            .group_by(DailyCost.model)
        )
    }
    models = _ranked(by_model)
    keyed = _keyed(session, covered, both)
    keys: tuple[Mover, ...] = ()
    if keyed:
        by_key = _key_sums(session, scope, keyed, both, split=this_week.start)
        keys = _ranked({label: [recent, before] for label, (recent, before, _) in by_key.items()})
    if covered - keyed:
        notes.append(
            f"API key movers leave out {scope.names(covered - keyed)}: "
            f"{scope.who_of(covered - keyed)} did not give the per-key breakdown at the last "
            "sync."
        )
    if not models and not keys:
        return None
    return Movers(
        this_week,
        last_week,
        models,
        keys,
        scope.says(COST_SOURCE, covered),
        scope.says(KEY_SOURCE, keyed),
    )


def _ranked(sums: dict[str, list[Decimal]]) -> tuple[Mover, ...]:
    """The biggest changes in dollars, either way; ties by name."""
    movers = [Mover(label, recent, before) for label, (recent, before) in sums.items()]
    movers = [m for m in movers if m.change_usd]
    movers.sort(key=lambda m: (-abs(m.change_usd), m.label))
    return tuple(movers[:MAX_MOVERS])


def _key_sums(
    session: Session, scope: _Scope, ids: Iterable[int], span: Span, *, split: date
) -> dict[str, tuple[Decimal, Decimal, date]]:
    """Per API key: (cost from ``split`` on, cost before it, last day with a cost)."""
    ids = list(ids)
    names = {
        (cid, key): name
        for cid, key, name in session.execute(
            select(ApiKeyName.connection_id, ApiKeyName.api_key_id, ApiKeyName.name).where(
                ApiKeyName.connection_id.in_(ids)
            )
        )
    }
    several = len(scope.labels) > 1
    recent = DailyCost.day >= split
    # Summed in SQL per key (a row per key, not per key and day): the App Home builds
    # these for every connection of a workspace.
    query = (
        select(
            DailyCost.connection_id,
            DailyCost.api_key_id,
            func.sum(case((recent, DailyCost.cost), else_=0)),
            func.sum(case((~recent, DailyCost.cost), else_=0)),
            func.max(DailyCost.day),
        )
        .where(
            DailyCost.connection_id.in_(ids),
            DailyCost.day >= span.start,
            DailyCost.day <= span.end,
            DailyCost.api_key_id != "",
            DailyCost.cost != 0,
        )
        .group_by(DailyCost.connection_id, DailyCost.api_key_id)
    )
    sums: dict[str, tuple[Decimal, Decimal, date]] = {}
    for cid, key, after, before, last in session.execute(query):
        label = names.get((cid, key), key)
        if several:
            label = f"{scope.labels[cid]}: {label}"
        old_after, old_before, old_last = sums.get(label, (Decimal(0), Decimal(0), last))
        sums[label] = (old_after + (after or 0), old_before + (before or 0), max(old_last, last))
    return sums


# -- idle keys ----------------------------------------------------------------------


def _idle_keys(session: Session, scope: _Scope, today: date, notes: list[str]) -> IdleKeys | None:
    end = today - timedelta(days=1)
    quiet = Span(end - timedelta(days=IDLE_QUIET_DAYS - 1), end)
    before = Span(quiet.start - timedelta(days=IDLE_BEFORE_DAYS), quiet.start - timedelta(1))
    whole = Span(before.start, quiet.end)
    keyed = _keyed(session, _covering(session, FetchedSpan, scope.ids, whole), whole)
    if missing := set(scope.ids) - keyed:
        notes.append(
            f"Idle API keys leave out {scope.names(missing)}: finding them needs every day of "
            f"{whole.title} fetched, with the per-key breakdown {scope.who_of(missing)} did "
            "not give at the last sync."
        )
    if not keyed:
        return None
    sums = _key_sums(session, scope, keyed, whole, split=quiet.start)
    idle = sorted(
        (
            IdleKey(label, spent, last)
            for label, (recent, spent, last) in sums.items()
            if spent > 0 and recent == 0
        ),
        key=lambda k: (-k.spent_usd, k.label),
    )
    if not idle:
        return None
    return IdleKeys(
        quiet,
        before,
        tuple(idle[:MAX_IDLE_KEYS]),
        max(0, len(idle) - MAX_IDLE_KEYS),
        scope.says(KEY_SOURCE, keyed),
    )


# -- where the money goes, and the token mix ---------------------------------------


class _KindKey(NamedTuple):
    """A kind of usage and how it is shown. A unit type no provider read keeps its own
    words even where they are the name of a kind ("output"): it was not read as one."""

    kind: str
    label: str


_ByKind = dict[_KindKey, tuple[Decimal, Decimal | None]]
"""(cost, units or None) per kind."""


@dataclass(frozen=True)
class _Mix:
    """One model's usage by kind over a period, under one provider (whose prices apply)."""

    model: str
    provider: str
    period: Span
    source: str
    by_kind: _ByKind


def _kinds(
    session: Session, scope: _Scope, today: date, notes: list[str]
) -> tuple[Kinds | None, list[_Mix]]:
    """The week's cost by kind of usage (usage series), else the cycle's (invoice lines);
    with the token mix per model the hints are built from."""
    week, _ = _weeks(today)
    covered = _covering(session, UnitCostSpan, scope.ids, week)
    lines = _invoice_lines(session, scope.ids)
    invoiced = {row[0] for row in lines.rows}
    # A provider that cannot split costs by unit type is left out of the notes: it has
    # no kinds to give, and saying so every time would be noise.
    missing = scope.splitting - covered
    if not covered and not lines.rows:
        if missing:
            notes.append(
                "Where the money goes (input, output, images…) is not known: "
                f"{scope.who_of(missing)} did not split {week.title}'s costs by unit type (it "
                "answers that grouping only sometimes, or no sync has asked yet; the next one "
                "asks again), and no invoice preview has unit counts yet."
            )
        return None, []
    lines = replace(lines, title=lines.title.format(who=scope.who_of(invoiced)))
    if missing:
        fallback = f"; shown instead from the {lines.title}" if not covered else ""
        notes.append(
            f"{scope.who_of(missing)} did not split the costs of {scope.names(missing)} by unit "
            f"type for {week.title} (it answers that grouping only sometimes, or no sync has "
            f"asked yet; the next one asks again){fallback}."
        )
    units_by_kind: dict[_KindKey, int] = defaultdict(int)
    for cid, _, unit_type, units, _ in lines.rows:
        units_by_kind[scope.kind(cid, unit_type)] += units
    units_source = lines.title if lines.rows else None
    if covered:
        # Per connection, so each connection's provider reads its own unit types.
        costs: dict[tuple[str, str], dict[_KindKey, Decimal]] = defaultdict(
            lambda: defaultdict(Decimal)
        )  # by (model, provider)
        for cid, model, unit_type, cost in session.execute(
            select(
                UnitCost.connection_id, UnitCost.model, UnitCost.unit_type, func.sum(UnitCost.cost)
            )
            .where(
                UnitCost.connection_id.in_(covered),
                UnitCost.day >= week.start,
                UnitCost.day <= week.end,
            )
            .group_by(UnitCost.connection_id, UnitCost.model, UnitCost.unit_type)
        ):
            costs[model, scope.provider_of[cid]][scope.kind(cid, unit_type)] += cost or Decimal(0)
        mixes = [
            _Mix(
                model,
                provider,
                week,
                UNIT_SOURCE.format(who=scope.display_name(provider)),
                {k: (c, None) for k, c in kinds.items()},
            )
            for (model, provider), kinds in sorted(costs.items())
        ]
        source = scope.says(UNIT_SOURCE, covered)
        kinds = _kind_rows(mixes, week, source, units_by_kind, units_source)
        return kinds, mixes
    by_model: dict[tuple[str, str], _ByKind] = defaultdict(dict)  # by (model, provider)
    for cid, model, unit_type, units, amount in lines.rows:
        kind = scope.kind(cid, unit_type)
        mix = by_model[model, scope.provider_of[cid]]
        cost, count = mix.get(kind, (Decimal(0), Decimal(0)))
        mix[kind] = (cost + amount, (count or 0) + units)
    mixes = [
        _Mix(model, provider, lines.span, lines.title, kinds)
        for (model, provider), kinds in sorted(by_model.items())
    ]
    return _kind_rows(mixes, lines.span, lines.title, units_by_kind, units_source), mixes


def _kind_rows(
    mixes: list[_Mix],
    period: Span,
    source: str,
    units_by_kind: dict[_KindKey, int],
    units_source: str | None,
) -> Kinds | None:
    totals: dict[_KindKey, Decimal] = defaultdict(Decimal)
    for mix in mixes:
        for kind, (cost, _) in mix.by_kind.items():
            totals[kind] += cost
    total = sum(totals.values(), Decimal(0))
    if not total:
        return None
    spent = sorted(
        ((key, cost) for key, cost in totals.items() if cost),
        key=lambda item: (-item[1], item[0].label),
    )
    amounts = [cost for _, cost in spent]
    rows = tuple(
        Kind(key.kind, key.label, cost, cost / total, cents, percent, units_by_kind.get(key))
        for (key, cost), cents, percent in zip(
            spent, cents_that_add_up(amounts, total), shares_that_add_up(amounts), strict=True
        )
    )
    return Kinds(period, rows, total, source, units_source)


@dataclass(frozen=True)
class _Lines:
    rows: list[tuple[int, str, str, int, Decimal]]
    """(connection id, model, unit type, units, amount)."""
    span: Span
    title: str


def _invoice_lines(session: Session, ids: Sequence[int]) -> _Lines:
    """The invoice previews' unit counts for this cycle: one cycle, the oldest reading.
    Its title names its source with ``{who}`` left for the providers that gave lines."""
    lines = InvoiceLineUnits
    found = session.execute(
        select(
            lines.connection_id,
            lines.model,
            lines.unit_type,
            func.sum(lines.num_units),
            func.sum(lines.amount_usd),
            func.min(lines.invoice_month),
            func.max(lines.invoice_month),
            func.count(lines.invoice_month),
            func.count(),
            func.min(lines.as_of),
        )
        .where(lines.connection_id.in_(ids))
        .group_by(lines.connection_id, lines.model, lines.unit_type)
    ).all()
    months = {month for row in found for month in (row[5], row[6])}
    # Lines of different cycles (or of none) would add up to nothing meaningful.
    if not found or len(months) != 1 or any(row[7] != row[8] for row in found):
        return _Lines([], Span(date.min, date.min), "")
    (month,) = months
    read: datetime = min(_aware(row[9]) for row in found)
    span = Span(month, max(month, read.date()))
    rows = [(cid, model, unit, int(units), amount) for cid, model, unit, units, amount, *_ in found]
    return _Lines(rows, span, f"{INVOICE_SOURCE}, {month:%B %Y} as read {clock(read)}")


def _aware(moment: datetime) -> datetime:
    """A UTC moment, aware, whatever the backend's aggregate gave back."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- cheaper-model hints --------------------------------------------------------------


def _hints(mixes: list[_Mix], price_lists: dict[str, PriceTable]) -> tuple[CheaperHint, ...]:
    """For each model with a cheaper sibling in its own provider's price list: the same
    mix at the sibling's list prices.

    Units are the invoice's counts when known, else the cost of each kind
    divided by the model's own list price. A kind either price lacks (search,
    a new unit type) makes the mix unknown: no hint rather than a wrong one.
    """
    hints = []
    for mix in mixes:
        prices = price_lists.get(mix.provider)
        if prices is None:
            continue
        price = prices.get(mix.model)
        cheaper = prices.get(price.cheaper) if price and price.cheaper else None
        if price is None or cheaper is None:
            continue
        actual = sibling = Decimal(0)
        for (kind, _), (cost, units) in mix.by_kind.items():
            own, theirs = price.price(kind), cheaper.price(kind)
            if kind not in KIND_LABELS or own is None or theirs is None or own == 0:
                break
            count = units if units is not None else cost / own
            actual += cost
            sibling += count * theirs
        else:
            if actual > 0 and sibling < actual:
                hints.append(
                    CheaperHint(
                        model=mix.model,
                        cheaper=cheaper.model,
                        actual_usd=actual,
                        cheaper_usd=sibling,
                        period=mix.period,
                        source=mix.source,
                        prices_as_of=prices.as_of,
                        prices_source=prices.source,
                        unsure=price.unsure or cheaper.unsure,
                    )
                )
    hints.sort(key=lambda h: (-h.saving_usd, h.model))
    return tuple(hints)


def _with_cheaper_sibling(
    session: Session, scope: _Scope, today: date, price_lists: dict[str, PriceTable]
) -> set[int]:
    """The connections that used a model this week with a cheaper sibling in its
    provider's price list."""
    week, _ = _weeks(today)
    used = session.execute(
        select(DailyCost.connection_id, DailyCost.model)
        .where(
            DailyCost.connection_id.in_(scope.ids),
            DailyCost.day >= week.start,
            DailyCost.day <= week.end,
        )
        .distinct()
    )
    found = set()
    for cid, model in used:
        prices = price_lists.get(scope.provider_of[cid])
        if prices is not None and (price := prices.get(model)) is not None and price.cheaper:
            found.add(cid)
    return found
