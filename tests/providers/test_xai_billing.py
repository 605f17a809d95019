"""The xAI provider reads the bill as xAI states it, and last months' invoices.

Against the stand-in over real sockets: the invoice preview's own totals (with
lines that need not add up to them, or no lines at all), prepaid credit used
up, VAT, and past invoices with their statuses, top-ups and a broken one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest

from providers.http import RetryPolicy
from providers.types import BillSource, InvoiceHistoryProvider, InvoiceStatus
from providers.xai.provider import XaiProvider
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, Sandbox

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
CREDS = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}
LIMIT = Decimal(1000)  # the stand-in's spending limit


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def stand_in(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    knobs = getattr(request, "param", {})
    with Sandbox(clock=lambda: NOW, **knobs) as sandbox:
        yield sandbox


async def billing(sandbox: Sandbox):
    provider = XaiProvider(base_url=sandbox.url, retry=RetryPolicy(deadline=2))
    async with httpx.AsyncClient() as http:
        return await provider.fetch_billing(http, CREDS)


async def invoices(sandbox: Sandbox, since: date):
    provider = XaiProvider(base_url=sandbox.url, retry=RetryPolicy(deadline=2))
    async with httpx.AsyncClient() as http:
        return await provider.fetch_invoices(http, CREDS, since)


@pytest.mark.parametrize("stand_in", [{"invoice_shape": "totals"}], indirect=True)
async def test_totals_without_lines_are_the_bill(stand_in: Sandbox) -> None:
    snapshot = await billing(stand_in)
    bill = stand_in.bill(DEMO_TEAM_ID)
    assert bill.stated > 200  # a month with spend, stated without a single line
    assert snapshot.month_to_date_usd == bill.stated
    assert snapshot.bill_source is BillSource.TOTALS
    assert snapshot.lines == ()
    assert snapshot.subtotal_usd == snapshot.total_usd == bill.subtotal
    assert snapshot.total_with_corrections_usd == bill.total_with_corrections


@pytest.mark.parametrize(
    "stand_in", [{"invoice_shape": "totals", "prepaid_cents": 5000}], indirect=True
)
async def test_used_up_prepaid_credit_leaves_the_rest_invoiced(stand_in: Sandbox) -> None:
    snapshot = await billing(stand_in)
    bill = stand_in.bill(DEMO_TEAM_ID)
    # Read from lines that are not there, the bill was $0.00 and so nothing invoiced:
    # the whole limit looked free, overstated by all of this.
    assert snapshot.invoiced_usd == bill.invoiced == bill.stated - 50 > 0
    assert (snapshot.prepaid_total_usd, snapshot.prepaid_used_usd) == (Decimal(50), Decimal(50))
    assert snapshot.prepaid_credit_usd == 0
    assert snapshot.spending_limit_usd == LIMIT


@pytest.mark.parametrize(
    "stand_in",
    [{"invoice_shape": "full", "vat_percent": 20, "correction_cents": -2500}],
    indirect=True,
)
async def test_lines_are_for_the_split_and_the_totals_for_the_bill(stand_in: Sandbox) -> None:
    snapshot = await billing(stand_in)
    bill = stand_in.bill(DEMO_TEAM_ID)
    lines = sum((line.amount_usd for line in snapshot.lines), Decimal(0))
    assert lines == bill.lines != bill.subtotal  # rounded per line: they do not add up
    assert snapshot.bill_source is BillSource.TOTALS
    assert snapshot.subtotal_usd == bill.subtotal
    assert (
        snapshot.tax_usd == bill.tax == (bill.subtotal * Decimal("0.2")).quantize(Decimal("0.01"))
    )
    assert snapshot.total_usd == bill.total == bill.subtotal + bill.tax
    assert snapshot.total_with_corrections_usd == bill.total - 25
    assert snapshot.month_to_date_usd == bill.total - 25
    assert snapshot.invoiced_usd == bill.total - 25 - 200  # $200 prepaid, used up


async def test_without_totals_the_lines_are_added_up_and_it_says_so(stand_in: Sandbox) -> None:
    snapshot = await billing(stand_in)  # the stand-in's first shape: lines only
    bill = stand_in.bill(DEMO_TEAM_ID)
    assert snapshot.bill_source is BillSource.LINES
    assert snapshot.month_to_date_usd == bill.lines
    assert snapshot.invoiced_usd == bill.lines - 200
    assert (snapshot.subtotal_usd, snapshot.tax_usd, snapshot.total_usd) == (None, None, None)


@pytest.mark.parametrize("stand_in", [{"vat_percent": 10, "top_up_invoices": True}], indirect=True)
async def test_past_invoices_are_read_with_their_status(stand_in: Sandbox) -> None:
    stand_in.set_invoice(2026, 10, "PENDING")
    stand_in.set_invoice(2026, 9, "WILL_NEVER_BE_CHARGED")
    stand_in.set_invoice(2026, 8, "FAILED")
    assert isinstance(XaiProvider(), InvoiceHistoryProvider)

    found = await invoices(stand_in, date(2026, 7, 1))

    by_month = {invoice.month: invoice for invoice in found}
    assert list(by_month) == [
        date(2026, 10, 1),
        date(2026, 9, 1),
        date(2026, 8, 1),
        date(2026, 7, 1),
    ]
    assert [i.status for i in found] == [
        InvoiceStatus.PENDING,
        InvoiceStatus.WILL_NEVER_BE_CHARGED,
        InvoiceStatus.FAILED,
        InvoiceStatus.PAID,
    ]
    october = stand_in.past_bill(DEMO_TEAM_ID, 2026, 10)
    first = by_month[date(2026, 10, 1)]
    assert (first.subtotal_usd, first.tax_usd, first.total_usd) == (
        october.subtotal,
        october.tax,
        october.total,
    )
    assert first.number == f"INV-202610-{DEMO_TEAM_ID[:8].upper()}"
    assert sum((line.amount_usd for line in first.lines), Decimal(0)) == october.lines
    assert all(not i.problem for i in found)


async def test_a_broken_invoice_is_reported_unreadable_never_guessed(stand_in: Sandbox) -> None:
    stand_in.set_invoice(2026, 10, malformed="total")
    stand_in.set_invoice(2026, 9, malformed="cycle")

    found = await invoices(stand_in, date(2026, 8, 1))

    october, no_month, august = found
    assert october.month == date(2026, 10, 1) and october.status is InvoiceStatus.UNREADABLE
    assert (october.total_usd, october.subtotal_usd) == (None, None)
    assert "total" in october.problem and "twelve dollars" in october.problem
    assert no_month.month is None and no_month.status is InvoiceStatus.UNREADABLE
    assert "billing month" in no_month.problem
    assert no_month.number == f"INV-202609-{DEMO_TEAM_ID[:8].upper()}"  # to look it up by
    assert august.status is InvoiceStatus.PAID
    assert august.total_usd == stand_in.past_bill(DEMO_TEAM_ID, 2026, 8).total


async def test_asking_for_invoices_sends_the_month_it_starts_from(stand_in: Sandbox) -> None:
    assert await invoices(stand_in, date(2026, 12, 1)) == ()  # nothing closed since
    assert stand_in.requests[-1].path.endswith("/invoices?since.year=2026&since.month=12")
    stand_in.add_fault("invoices", status=403, message="missing permission: billing read")
    assert await invoices(stand_in, date(2026, 10, 1)) is None  # may not see them
