"""Insights from stored rows: movers, idle keys, kinds of usage and cheaper-model hints.

Rows are written by hand on both stores (SQLite and PostgreSQL) so every
figure is an exact Decimal worked out below; the sync's own part (fetching
unit types from the stand-in) is in test_insights_sync.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from typing import ClassVar

import pytest

from bot.insights import build_insights
from bot.render import insights_text
from providers.manager import ProviderRegistry
from providers.types import CheckResult, CostFetch, ModelPrice, PriceTable, UsageKind
from providers.xai.prices import price_table
from storage.models import (
    ApiKeyName,
    DailyCost,
    FetchedSpan,
    InvoiceLineUnits,
    UnitCost,
    UnitCostSpan,
)
from tests.fakes.connections import add_connection
from tests.fakes.providers import built_in

TODAY = date(2026, 11, 22)  # this week: 15–21 Nov; last week: 8–14 Nov
XAI_ONLY = built_in()


def day(ago: int) -> date:
    return TODAY - timedelta(days=ago)


def fetched(session, connection, first: date, last: date | None = None, table=FetchedSpan) -> None:
    """``first``..``last`` (default: yesterday) fetched, as a sync records it."""
    last = last or day(1)
    session.add(
        table(
            connection_id=connection.id,
            workspace_id=connection.workspace_id,
            first_day=first,
            last_day=last,
        )
    )


def cost(session, connection, ago: int, model: str, usd: str, key: str = "") -> None:
    session.add(
        DailyCost(
            connection_id=connection.id,
            workspace_id=connection.workspace_id,
            day=day(ago),
            model=model,
            api_key_id=key,
            cost=D(usd),
        )
    )


def unit_cost(session, connection, ago: int, model: str, unit_type: str, usd: str) -> None:
    session.add(
        UnitCost(
            connection_id=connection.id,
            workspace_id=connection.workspace_id,
            day=day(ago),
            model=model,
            unit_type=unit_type,
            cost=D(usd),
        )
    )


def insights(db, workspace_id, connection=None, providers=XAI_ONLY):
    with db.session() as session:
        return build_insights(session, workspace_id, TODAY, connection, providers=providers)


def test_movers_compare_the_last_7_finished_days_with_the_7_before(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod")
        fetched(session, c, day(30))
        cost(session, c, 1, "grok-4-0709", "100")  # this week
        cost(session, c, 7, "grok-4-0709", "50")  # this week's first day
        cost(session, c, 8, "grok-4-0709", "60")  # last week's last day
        cost(session, c, 14, "grok-4-0709", "20")  # last week's first day
        cost(session, c, 15, "grok-4-0709", "999")  # before both: ignored
        cost(session, c, 0, "grok-4-0709", "999")  # today, partial: ignored
        cost(session, c, 3, "grok-code-fast-1", "12.5")  # new this week
        cost(session, c, 10, "grok-3-mini", "4")  # gone this week
        cost(session, c, 2, "grok-4-fast-reasoning", "5")
        cost(session, c, 9, "grok-4-fast-reasoning", "5")  # unchanged: not a mover
    found = insights(db, workspace_id)
    movers = found.movers
    assert (movers.this_week.start, movers.this_week.end) == (date(2026, 11, 15), day(1))
    assert (movers.last_week.start, movers.last_week.end) == (date(2026, 11, 8), day(8))
    assert [(m.label, m.this_week_usd, m.last_week_usd) for m in movers.models] == [
        ("grok-4-0709", D(150), D(80)),
        ("grok-code-fast-1", D("12.5"), D(0)),
        ("grok-3-mini", D(0), D(4)),
    ]
    grok4, code, mini = movers.models
    assert grok4.change_usd == D(70) and grok4.change_pct == D(70) / D(80) * 100
    assert code.new and code.change_pct is None
    assert mini.change_usd == D(-4) and mini.change_pct == D(-100)
    assert movers.keys == ()  # stored without the per-key breakdown
    assert any("API key movers leave out “Prod”" in n for n in found.notes)
    text = insights_text(found)
    assert "grok-4-0709: $150.00 (+$70.00, +87.5%)" in text
    assert "grok-code-fast-1: $12.50 (+$12.50, new)" in text
    assert "15 Nov–21 Nov 2026 against 8 Nov–14 Nov 2026" in text


def test_movers_leave_out_a_connection_missing_days_and_say_so(db, workspace_id):
    with db.transaction() as session:
        whole = add_connection(session, workspace_id, "Whole")
        recent = add_connection(session, workspace_id, "Recent")
        fetched(session, whole, day(20))
        fetched(session, recent, day(5))  # connected five days ago
        cost(session, whole, 2, "grok-4-0709", "10")
        cost(session, recent, 2, "grok-4-0709", "1000")
    found = insights(db, workspace_id)
    assert [(m.label, m.this_week_usd) for m in found.movers.models] == [("grok-4-0709", D(10))]
    assert any("Top movers leave out “Recent”" in n and "sync --days 15" in n for n in found.notes)


def test_nothing_fetched_means_no_movers_not_zero_movers(db, workspace_id):
    with db.transaction() as session:
        add_connection(session, workspace_id, "Prod")
    found = insights(db, workspace_id)
    assert found.movers is None and found.idle is None and found.kinds is None
    assert found.empty and "Nothing to show yet." in insights_text(found)
    assert any("Top movers leave out" in n for n in found.notes)


def test_key_movers_and_idle_keys_by_name(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod", key_breakdown=True)
        fetched(session, c, day(60))
        for key, name in (("k1", "production"), ("k2", "staging"), ("k3", "old-batch")):
            session.add(ApiKeyName(connection_id=c.id, api_key_id=key, name=name))
        cost(session, c, 2, "grok-4-0709", "30", "k1")
        cost(session, c, 9, "grok-4-0709", "10", "k1")
        cost(session, c, 3, "grok-4-0709", "2", "k2")  # staging: in the last 14 days
        cost(session, c, 20, "grok-4-0709", "7.25", "k2")
        cost(session, c, 15, "grok-4-0709", "3", "k3")  # old-batch: day 15 ago, then nothing
        cost(session, c, 44, "grok-4-0709", "1.5", "k3")  # the 30 days' first day
        cost(session, c, 45, "grok-3-mini", "100", "k4")  # before the 30 days: not idle, never seen
    found = insights(db, workspace_id)
    assert [(m.label, m.this_week_usd, m.last_week_usd) for m in found.movers.keys] == [
        ("production", D(30), D(10)),
        ("staging", D(2), D(0)),
    ]
    idle = found.idle
    assert (idle.before.start, idle.before.end) == (day(44), day(15))
    assert (idle.quiet.start, idle.quiet.end) == (day(14), day(1))
    assert [(k.label, k.spent_usd, k.last_day) for k in idle.keys] == [
        ("old-batch", D("4.5"), day(15))
    ]
    assert "old-batch: $4.50 before, last spent Sat 7 Nov 2026" in insights_text(found)


def test_idle_keys_need_the_key_breakdown_for_every_day(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod")
        fetched(session, c, day(60))
        cost(session, c, 30, "grok-4-0709", "5", "k1")
        cost(session, c, 20, "grok-4-0709", "5")  # a window fetched per model only
    found = insights(db, workspace_id)
    assert found.idle is None  # k1 may well have spent on day 20: not called idle
    assert any("Idle API keys leave out “Prod”" in n for n in found.notes)


def test_where_the_money_goes_and_the_cheaper_model_from_unit_types(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod")
        fetched(session, c, day(20))
        fetched(session, c, day(10), table=UnitCostSpan)
        cost(session, c, 2, "grok-4-0709", "48.5")
        unit_cost(session, c, 2, "grok-4-0709", "Prompt text tokens", "30")  # 10M at $3
        unit_cost(session, c, 2, "grok-4-0709", "Cached prompt text tokens", "0.75")  # 1M
        unit_cost(session, c, 3, "grok-4-0709", "Reasoning tokens", "15")  # 1M at $15
        unit_cost(
            session, c, 3, "grok-4-0709", "Completion tokens", "2.75"
        )  # 1/6 of 1M... see below
        unit_cost(session, c, 4, "grok-2-image-1212", "Images", "0.70")  # 10 images
        unit_cost(session, c, 9, "grok-4-0709", "Prompt text tokens", "1000")  # last week
    found = insights(db, workspace_id)
    kinds = found.kinds
    assert (kinds.period.start, kinds.period.end) == (date(2026, 11, 15), day(1))
    assert kinds.total_usd == D("49.2")
    assert [(k.kind, k.cost_usd) for k in kinds.rows] == [
        ("input", D(30)),
        ("reasoning", D(15)),
        ("output", D("2.75")),
        ("cached_input", D("0.75")),
        ("images", D("0.7")),
    ]
    assert kinds.rows[0].share == D(30) / D("49.2")
    assert kinds.source == "xAI usage series by unit type"
    (hint,) = found.hints
    # 10M input, 1M cached, 1M reasoning (as output), 2.75/15 M output at grok-4-fast's
    # 0.20 / 0.05 / 0.50 / 0.50 per 1M.
    output_tokens = D("2.75") / (D(15) / D(1_000_000))
    expected = D(10) * D("0.2") + D("0.05") + D("0.5") + output_tokens * D("0.5") / D(1_000_000)
    assert (hint.model, hint.cheaper) == ("grok-4-0709", "grok-4-fast-reasoning")
    assert hint.actual_usd == D("48.5")
    assert hint.cheaper_usd == expected
    assert hint.saving_usd == D("48.5") - expected
    assert hint.prices_as_of == price_table().as_of
    text = insights_text(found)
    assert "input tokens: $30.00 (61.0%)" in text
    assert "grok-4-0709 → grok-4-fast-reasoning: $48.50 would have been about $2.64" in text
    assert f"list prices as of {price_table().as_of:%a} " in text


def with_unit_costs(db, workspace_id, *rows: tuple[int, str, str, str]) -> None:
    """A connection "Prod" with 20 days fetched, 10 of them by unit type, and these costs
    by unit type: (days ago, model, unit type, dollars)."""
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod")
        fetched(session, c, day(20))
        fetched(session, c, day(10), table=UnitCostSpan)
        for ago, model, unit_type, usd in rows:
            unit_cost(session, c, ago, model, unit_type, usd)


def test_where_the_money_goes_adds_up_to_its_total_on_every_surface(db, workspace_id):
    """Three kinds of $1.004 each: $3.01 in all. Rounded on their own they read $1.00 and
    33.3% three times, missing the total by a cent and 100% by a tenth; the list, in the
    terminal and in Slack's section, reads cents and shares that add up."""
    from bot.render import insights_section

    with_unit_costs(
        db,
        workspace_id,
        (2, "grok-4-0709", "Prompt text tokens", "1.004"),
        (2, "grok-4-0709", "Completion tokens", "1.004"),
        (2, "grok-4-0709", "Reasoning tokens", "1.004"),
    )
    found = insights(db, workspace_id)
    assert found.kinds.total_usd == D("3.012")
    text = insights_text(found)
    lines = [line.strip() for line in text.splitlines() if " tokens: $" in line]
    assert [line.split(": ")[1] for line in lines] == [
        "$1.01 (33.4%)",
        "$1.00 (33.3%)",
        "$1.00 (33.3%)",
    ], text
    assert "Where the money goes" in text and ": $3.01" in text.split("Where the money goes")[1]
    section = insights_section(found)
    shares = section.split("Where the money goes")[1].splitlines()[0]
    assert shares.count("33.3%") == 2 and shares.count("33.4%") == 1, shares


def test_a_kind_without_a_price_means_no_hint(db, workspace_id):
    with_unit_costs(
        db,
        workspace_id,
        (2, "grok-4-0709", "Prompt text tokens", "30"),
        (2, "grok-4-0709", "Live search sources", "5"),
    )
    found = insights(db, workspace_id)
    assert [(k.kind, k.cost_usd) for k in found.kinds.rows] == [("input", D(30)), ("search", D(5))]
    assert found.hints == ()  # the search part has no grok-4-fast price: the mix is unknown


def test_without_unit_types_the_invoice_lines_give_kinds_and_token_counts(db, workspace_id):
    read = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod")
        fetched(session, c, day(20))
        cost(session, c, 2, "grok-4-0709", "40")
        for unit_type, units, usd in (
            ("Prompt text tokens", 4_000_000, "12"),
            ("Completion tokens", 1_000_000, "15"),
        ):
            session.add(
                InvoiceLineUnits(
                    connection_id=c.id,
                    model="grok-4-0709",
                    unit_type=unit_type,
                    invoice_month=date(2026, 11, 1),
                    num_units=units,
                    amount_usd=D(usd),
                    as_of=read,
                )
            )
    found = insights(db, workspace_id)
    kinds = found.kinds
    assert (kinds.period.start, kinds.period.end) == (date(2026, 11, 1), TODAY)
    assert kinds.source.startswith("xAI invoice preview, November 2026")
    assert [(k.kind, k.cost_usd, k.units) for k in kinds.rows] == [
        ("output", D(15), 1_000_000),
        ("input", D(12), 4_000_000),
    ]
    (hint,) = found.hints
    assert hint.actual_usd == D(27)
    assert hint.cheaper_usd == D(4) * D("0.2") + D("0.5")  # 4M in, 1M out at grok-4-fast
    assert any("shown instead from the xAI invoice preview" in n for n in found.notes)
    assert "output tokens: $15.00 (55.6%), 1.0M tokens this billing cycle" in insights_text(found)


def test_no_token_mix_no_hint_and_a_note_saying_why(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod")
        fetched(session, c, day(20))
        cost(session, c, 2, "grok-4-0709", "40")
    found = insights(db, workspace_id)
    assert found.kinds is None and found.hints == ()
    assert any(
        "Where the money goes (input, output, images…) is not known" in n for n in found.notes
    )
    assert any("Cheaper-model hints need the token mix" in n for n in found.notes)


def test_one_connection_only(db, workspace_id):
    with db.transaction() as session:
        a = add_connection(session, workspace_id, "A")
        b = add_connection(session, workspace_id, "B")
        for c, usd in ((a, "10"), (b, "20")):
            fetched(session, c, day(20))
            cost(session, c, 2, "grok-4-0709", usd)
    with db.session() as session:
        only_b = build_insights(
            session, workspace_id, TODAY, session.get(type(b), b.id), providers=XAI_ONLY
        )
    assert only_b.connection == "B"
    assert [(m.label, m.this_week_usd) for m in only_b.movers.models] == [("grok-4-0709", D(20))]


def test_no_connection_says_so(db, workspace_id):
    found = insights(db, workspace_id)
    assert found.empty and found.notes == (
        "Nothing is connected yet: connect an account to see insights.",
    )


# -- other providers: kinds and prices only through the provider's capabilities -------


class PlainProvider:
    """A provider with only what every provider has: no kinds of usage, no price list.

    Insights never call its network methods; they are here to satisfy the protocol.
    """

    display_name = "Plain"
    credential_fields = ()
    max_window_days = 31

    def __init__(self, name: str = "plain") -> None:
        self.name = name

    def mask(self, credentials) -> str:
        return "…"

    def default_label(self, credentials) -> str:
        return self.display_name

    async def check_credentials(self, http, credentials) -> CheckResult:
        return CheckResult()

    async def fetch_daily_costs(self, http, credentials, start, end, *, by_key=True) -> CostFetch:
        return CostFetch(rows=(), by_key=by_key)

    async def fetch_billing(self, http, credentials) -> None:
        return None


class PricedProvider(PlainProvider):
    """A second provider that names its own unit types and brings its own list prices."""

    display_name = "Other AI"
    KINDS: ClassVar[dict[str, str]] = {"in_tok": UsageKind.INPUT, "out_tok": UsageKind.OUTPUT}
    PRICES = PriceTable(
        as_of=date(2026, 10, 1),
        source="https://other.example/pricing",
        models={
            "big-1": ModelPrice(
                "big-1",
                {UsageKind.INPUT: D("0.00001"), UsageKind.OUTPUT: D("0.00003")},
                cheaper="small-1",
            ),
            "small-1": ModelPrice(
                "small-1", {UsageKind.INPUT: D("0.000001"), UsageKind.OUTPUT: D("0.000002")}
            ),
        },
    )

    def usage_kind(self, unit_type: str) -> str:
        return self.KINDS.get(unit_type, unit_type)

    def list_prices(self) -> PriceTable:
        return self.PRICES


class UnreadablePrices(PricedProvider):
    display_name = "Broken Prices"

    def list_prices(self) -> PriceTable:
        raise ValueError("prices.toml: big-1.input: 'x' is not a number")


def registry(*others) -> ProviderRegistry:
    return ProviderRegistry([*XAI_ONLY, *others])


@pytest.mark.parametrize(
    "providers",
    [registry(PlainProvider()), XAI_ONLY],
    ids=["registered-without-the-capabilities", "not-loaded"],
)
def test_a_provider_without_kinds_or_prices_keeps_its_unit_types_and_gets_no_hint(
    db, workspace_id, providers
):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Plain team", provider="plain")
        fetched(session, c, day(20))
        fetched(session, c, day(10), table=UnitCostSpan)
        # A model name and unit types xAI's rules would read: they are not this provider's.
        cost(session, c, 2, "grok-4-0709", "40")
        unit_cost(session, c, 2, "grok-4-0709", "Prompt text tokens", "30")
        unit_cost(session, c, 2, "grok-4-0709", "output", "10")
    found = insights(db, workspace_id, providers=providers)
    assert [(k.kind, k.label, k.cost_usd) for k in found.kinds.rows] == [
        ("Prompt text tokens", "Prompt text tokens", D(30)),
        ("output", "output", D(10)),
    ]
    assert found.hints == ()
    assert [m.label for m in found.movers.models] == ["grok-4-0709"]
    # Nothing would have been hinted, so there is nothing to explain.
    assert not any("Cheaper-model" in n or "price" in n for n in found.notes)
    text = insights_text(found)
    assert "Prompt text tokens: $30.00 (75.0%)" in text and "input tokens" not in text


def test_without_a_token_mix_no_note_about_hints_for_a_provider_without_prices(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Plain team", provider="plain")
        fetched(session, c, day(20))
        cost(session, c, 2, "grok-4-0709", "40")  # xAI's price list has a sibling for it
    found = insights(db, workspace_id, providers=registry(PlainProvider()))
    assert found.hints == ()
    assert not any("Cheaper-model hints need the token mix" in n for n in found.notes)


def xai_and_other(session, workspace_id: int):
    """An xAI connection and one of provider "other", both with costs and kinds fetched."""
    xai = add_connection(session, workspace_id, "xAI team")
    other = add_connection(session, workspace_id, "Other team", provider="other")
    for c in (xai, other):
        fetched(session, c, day(20))
        fetched(session, c, day(10), table=UnitCostSpan)
    return xai, other


def test_a_second_provider_gets_hints_from_its_own_price_list(db, workspace_id):
    with db.transaction() as session:
        xai, other = xai_and_other(session, workspace_id)
        unit_cost(session, xai, 2, "grok-4-0709", "Prompt text tokens", "30")  # 10M at $3
        unit_cost(session, other, 2, "big-1", "in_tok", "20")  # 2M at $10 per 1M
        unit_cost(session, other, 3, "big-1", "out_tok", "30")  # 1M at $30 per 1M
        # A model only xAI's list prices: under this provider it is not xAI's to price.
        unit_cost(session, other, 3, "grok-4-0709", "in_tok", "300")
    found = insights(db, workspace_id, providers=registry(PricedProvider("other")))
    assert [(k.kind, k.label, k.cost_usd) for k in found.kinds.rows] == [
        ("input", "input tokens", D(350)),
        ("output", "output tokens", D(30)),
    ]
    big, grok = found.hints
    assert (big.model, big.cheaper, big.actual_usd) == ("big-1", "small-1", D(50))
    assert big.cheaper_usd == D(2) * D(1) + D(1) * D(2)  # 2M in, 1M out at small-1
    assert (big.prices_as_of, big.prices_source) == (
        date(2026, 10, 1),
        "https://other.example/pricing",
    )
    assert (grok.model, grok.actual_usd) == ("grok-4-0709", D(30))  # xAI's own, only
    assert grok.cheaper_usd == D(10) * D("0.2")
    assert grok.prices_source == price_table().source
    # Figures say whose they are: both providers here, each by its own name.
    assert found.kinds.source == "Other AI and xAI usage series by unit type"
    # ...and a hint only its own provider's, whose token mix and prices it is built on.
    assert big.source == "Other AI usage series by unit type"
    assert grok.source == "xAI usage series by unit type"
    with db.session() as session:
        other_only = build_insights(
            session, workspace_id, TODAY, session.get(type(other), other.id),
            providers=registry(PricedProvider("other")),
        )  # fmt: skip
    assert other_only.kinds.source == "Other AI usage series by unit type"


def test_a_price_list_that_cannot_be_read_costs_only_its_own_hints_and_says_why(db, workspace_id):
    with db.transaction() as session:
        xai, other = xai_and_other(session, workspace_id)
        unit_cost(session, xai, 2, "grok-4-0709", "Prompt text tokens", "30")
        unit_cost(session, other, 2, "big-1", "in_tok", "20")
    found = insights(db, workspace_id, providers=registry(UnreadablePrices("other")))
    assert [h.model for h in found.hints] == ["grok-4-0709"]
    assert [(k.kind, k.cost_usd) for k in found.kinds.rows] == [("input", D(50))]
    assert (
        "Cheaper-model hints leave out Broken Prices: its list prices could not be read "
        "(prices.toml: big-1.input: 'x' is not a number)."
    ) in found.notes


# -- the terminal ----------------------------------------------------------------------


def test_cli_insights_prints_them_and_refuses_an_unknown_connection(cli, db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Prod", uid="prod")
        # The terminal checks every stored secret opens with its key before it answers.
        c.credentials_sealed = db.keyring.seal(b"{}", c.credentials_aad)
        c.credentials_key_id = db.keyring.primary_key_id
        fetched(session, c, date(2026, 1, 1), date(2030, 1, 1))  # whatever today is
        now = datetime.now(UTC).date()
        for ago, usd in ((2, "40"), (9, "10")):
            session.add(
                DailyCost(
                    connection_id=c.id,
                    workspace_id=workspace_id,
                    day=now - timedelta(days=ago),
                    model="grok-4-0709",
                    cost=D(usd),
                )
            )
    code, out, err = cli("insights")
    assert (code, err) == (0, "")
    assert out.startswith("Insights · UTC days up to ")
    assert "grok-4-0709: $40.00 (+$30.00, +300.0%)" in out
    assert "Note: Where the money goes (input, output, images…) is not known" in out
    code, out, err = cli("insights", "--connection", "Nope")
    assert (code, out) == (1, "")
    assert err == "xai-usage: no connection labelled “Nope” (connections: “Prod”)\n"


def test_a_connection_answered_per_key_is_keyed_though_some_costs_have_no_key(db, workspace_id):
    """OpenAI answers per API key, yet its image and tool line items are no key's: the
    provider's answer (``key_breakdown``), not a row without a key, says it was keyed."""
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "OpenAI", key_breakdown=True)
        fetched(session, c, day(60))
        session.add(ApiKeyName(connection_id=c.id, api_key_id="key_a", name="production"))
        cost(session, c, 2, "gpt-4o", "30", "key_a")
        cost(session, c, 9, "gpt-4o", "10", "key_a")
        cost(session, c, 2, "Image models", "4")  # no key made it
        cost(session, c, 9, "Image models", "1")
    found = insights(db, workspace_id)
    # The key's own spend moves; the costs no key made are no key's to move.
    assert [(m.label, m.this_week_usd, m.last_week_usd) for m in found.movers.keys] == [
        ("production", D(30), D(10)),
    ]
    assert not any("leave out “OpenAI”" in note for note in found.notes)


def test_a_provider_that_cannot_split_by_unit_type_gets_no_note_about_it(db, workspace_id):
    with db.transaction() as session:
        c = add_connection(session, workspace_id, "Plain team", provider="plain")
        fetched(session, c, day(20))
        cost(session, c, 2, "plain-1", "40")
    found = insights(db, workspace_id, providers=registry(PlainProvider()))
    assert found.kinds is None
    assert not any("Where the money goes" in n or "by unit type" in n for n in found.notes)
