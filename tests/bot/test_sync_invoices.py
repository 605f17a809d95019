"""Syncs keep the bill as the provider states it, and the last closed months' invoices.

Against the xAI stand-in over real sockets, on SQLite and PostgreSQL. Past
invoices are asked for beside billing, only while one of the last few closed
months is not stored as final, and their failure never fails a sync.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from bot.figures import TeamLimit
from bot.sync import INVOICE_MONTHS, INVOICE_RECHECK, SyncEngine
from providers.types import BillSource, InvoiceStatus
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import BillingState, Invoice
from tests.conftest import impatient, patient

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}
SEPTEMBER, OCTOBER = date(2026, 9, 1), date(2026, 10, 1)  # the clock is at 22 Nov 2026


def connect(engine: SyncEngine, workspace_id: int, days: int = 30) -> int:
    connected = asyncio.run(engine.connect(workspace_id, "xai", DEMO, backfill_days=days))
    assert connected.backfill.ok
    return connected.connection_id


def sync(engine: SyncEngine, workspace_id: int) -> None:
    assert all(result.ok for result in asyncio.run(engine.sync_all(workspace_id, force=True)))


def stored_invoices(engine: SyncEngine) -> dict[date, Invoice]:
    with engine.db.session() as session:
        return {row.month: row for row in session.scalars(select(Invoice))}


def invoice_requests(sandbox) -> list[str]:
    """The query of each request for past invoices, in order."""
    return [r.path.partition("?")[2] for r in sandbox.requests if "/invoices?" in r.path]


def test_the_bill_is_stored_as_stated_with_its_tax_and_prepaid_credit(
    engine, sandbox, workspace_id
) -> None:
    sandbox.invoice_shape = "totals"  # no lines: the case that read as $0.00
    sandbox.vat_percent = Decimal(20)
    sandbox.prepaid_cents = 5000
    connect(engine, workspace_id)
    bill = sandbox.bill(DEMO_TEAM_ID)
    with engine.db.session() as session:
        billing = session.scalars(select(BillingState)).one()
    assert billing.month_to_date_usd == bill.stated == bill.total > 0
    assert billing.invoiced_usd == bill.stated - 50  # prepaid credit is used up
    assert billing.bill_source == BillSource.TOTALS
    assert (billing.subtotal_usd, billing.tax_usd) == (bill.subtotal, bill.tax)
    assert billing.total_usd == billing.total_with_corrections_usd == bill.total
    assert (billing.prepaid_total_usd, billing.prepaid_used_usd) == (50, 50)
    assert billing.prepaid_credit_usd == 0
    # The headroom on xAI's $1,000 limit, as every surface works it out from the store:
    # read from lines that were not there, it was the whole $1,000.
    team = TeamLimit(billing.spending_limit_usd, billing.prepaid_credit_usd, billing.invoiced_usd)
    assert team.headroom == 1000 - (bill.stated - 50) < 1000


def test_the_last_closed_months_invoices_are_stored_with_their_status(
    engine, sandbox, workspace_id, clock
) -> None:
    sandbox.vat_percent = Decimal(10)
    sandbox.set_invoice(2026, 10, "PENDING")
    sandbox.set_invoice(2026, 9, malformed="total")
    sandbox.set_invoice(2026, 8, malformed="cycle")  # it names no month: may be August's
    connect(engine, workspace_id)

    invoices = stored_invoices(engine)
    assert INVOICE_MONTHS == 3 and sorted(invoices) == [date(2026, 8, 1), SEPTEMBER, OCTOBER]
    october = invoices[OCTOBER]
    expected = sandbox.past_bill(DEMO_TEAM_ID, 2026, 10)
    assert october.status == InvoiceStatus.PENDING
    assert (october.total_usd, october.subtotal_usd, october.tax_usd) == (
        expected.total,
        expected.subtotal,
        expected.tax,
    )
    assert october.number.startswith("INV-202610-") and october.as_of == clock.now
    september = invoices[SEPTEMBER]
    assert september.status == InvoiceStatus.UNREADABLE and september.total_usd is None
    assert "its total is not an amount in cents ('twelve dollars')" in september.problem
    august = invoices[date(2026, 8, 1)]
    assert august.status == InvoiceStatus.NOT_LISTED and august.total_usd is None
    assert "INV-202608-" in august.problem and "it names no billing month" in august.problem


def test_final_invoices_are_not_asked_for_again_and_pending_ones_now_and_then(
    engine, sandbox, workspace_id, clock
) -> None:
    sandbox.set_invoice(2026, 10, "PENDING")
    connect(engine, workspace_id)
    assert invoice_requests(sandbox) == ["since.year=2026&since.month=8"]

    clock.now += INVOICE_RECHECK - timedelta(minutes=1)
    sync(engine, workspace_id)
    assert len(invoice_requests(sandbox)) == 1  # pending, but asked a moment ago

    sandbox.set_invoice(2026, 10, "PAID")
    clock.now += timedelta(minutes=1)
    sync(engine, workspace_id)
    assert invoice_requests(sandbox)[1:] == ["since.year=2026&since.month=10"]  # not final
    assert stored_invoices(engine)[OCTOBER].status == InvoiceStatus.PAID

    clock.now += INVOICE_RECHECK
    sync(engine, workspace_id)
    assert len(invoice_requests(sandbox)) == 2  # all three final: nothing to ask


def test_a_month_not_listed_yet_is_noted_and_asked_again_once_it_may_be(
    engine, sandbox, workspace_id, clock
) -> None:
    clock.now = clock.now.replace(month=12, day=1, hour=6)  # November just closed
    sandbox.set_invoice(2026, 11, listed=False)  # not issued yet
    connect(engine, workspace_id)
    november = stored_invoices(engine)[date(2026, 11, 1)]
    assert november.status == InvoiceStatus.NOT_LISTED and november.total_usd is None

    sandbox.set_invoice(2026, 11, "PENDING")
    clock.now += INVOICE_RECHECK
    sync(engine, workspace_id)
    assert stored_invoices(engine)[date(2026, 11, 1)].status == InvoiceStatus.PENDING


def test_past_invoices_that_fail_never_fail_the_sync_and_keep_what_was_stored(
    engine, sandbox, providers, workspace_id, clock
) -> None:
    sandbox.set_invoice(2026, 10, "PENDING")
    connect(engine, workspace_id)
    before = stored_invoices(engine)[OCTOBER].as_of
    impatient(providers)
    sandbox.add_fault("invoices", status=503, times=0)
    clock.now += INVOICE_RECHECK
    sync(engine, workspace_id)  # the costs still sync
    sandbox.clear_faults()
    patient(providers)
    sandbox.add_fault("invoices", status=200, times=0)  # an answer that is no invoice list
    sync(engine, workspace_id)
    after = stored_invoices(engine)[OCTOBER]
    assert after.status == InvoiceStatus.PENDING and after.as_of == before


def test_disconnect_deletes_the_invoices_too(engine, sandbox, workspace_id) -> None:
    connection_id = connect(engine, workspace_id)
    assert stored_invoices(engine)
    engine.disconnect(connection_id)
    with engine.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Invoice)) == 0
