"""The usage series beside the bill as the provider states it: this month's invoice
preview in `status`, and a closed month's invoice for any surface that asks.

End to end: the xAI stand-in over real sockets, a real sync, then the terminal
(`status`, in process) or the one function the surfaces call, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from decimal import Decimal

from bot.formatting import money
from bot.reports import reconcile_month
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS

DEMO = {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY}
OCTOBER = date(2026, 10, 1)  # the clock is at 22 Nov 2026


def connect(engine, workspace_id: int, days: int) -> None:
    connected = asyncio.run(engine.connect(workspace_id, "xai", DEMO, backfill_days=days))
    assert connected.backfill.ok


def status_json(cli) -> dict:
    code, out, err = cli("status", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    return row["reconciliation"]


def served(sandbox, first: date, last: date) -> Decimal:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return sum((sandbox.cost(DEMO_TEAM_ID, m, d) for m in MODELS for d in days), Decimal(0))


# -- this month: the invoice preview ----------------------------------------------------


def test_status_sets_usage_beside_a_lines_less_invoices_own_total(
    engine, sandbox, workspace_id, cli
) -> None:
    sandbox.invoice_shape = "totals"  # xAI stated its totals and no lines
    connect(engine, workspace_id, 90)
    bill = sandbox.bill(DEMO_TEAM_ID)

    code, out, err = cli("status")

    assert code == 0, err
    assert "invoice so far $0.00" not in out and "above the invoice" not in out
    assert f"invoice so far {money(bill.stated)}" in out and "they agree" in out
    r = status_json(cli)
    assert r["flagged"] is False and r["explanations"] == []
    assert Decimal(r["invoice_usd"]) == bill.stated and r["bill_source"] == "totals"
    assert Decimal(r["usage_usd"]) == bill.usage
    assert abs(Decimal(r["difference_usd"])) < Decimal("0.005")  # one rounding to the cent


def test_usage_is_set_against_the_bill_before_tax_and_corrections(
    engine, sandbox, workspace_id, cli
) -> None:
    sandbox.invoice_shape = "full"
    sandbox.vat_percent = Decimal(20)
    sandbox.correction_cents = -1500  # a credit of $15.00
    connect(engine, workspace_id, 90)
    bill = sandbox.bill(DEMO_TEAM_ID)

    r = status_json(cli)

    assert r["source"] == "preview" and r["status"] is None
    assert Decimal(r["invoice_usd"]) == bill.stated == bill.total - 15
    assert Decimal(r["invoice_before_tax_usd"]) == bill.subtotal
    assert Decimal(r["tax_usd"]) == bill.tax > 0
    assert Decimal(r["corrections_usd"]) == -15
    assert Decimal(r["difference_usd"]) == bill.usage - bill.subtotal
    assert r["flagged"] is False  # the tax is stated, not a difference to explain
    assert "E" not in r["invoice_usd"] + r["usage_usd"] + r["difference_usd"]


def test_a_bill_added_up_from_lines_says_so_when_it_differs(
    engine, sandbox, workspace_id, cli
) -> None:
    connect(engine, workspace_id, 3)  # 20–22 Nov only; the bill has the whole month
    r = status_json(cli)
    assert r["bill_source"] == "lines" and r["flagged"] is True
    assert r["invoice_before_tax_usd"] is None and r["tax_usd"] is None
    assert any("stated no totals" in why for why in r["explanations"])
    assert any("tax or fees" in why for why in r["explanations"])  # not stated, so possible


# -- a closed month: its invoice ----------------------------------------------------------


def test_a_closed_month_is_set_beside_its_invoice_with_its_status(
    engine, sandbox, workspace_id, clock
) -> None:
    sandbox.vat_percent = Decimal(10)
    sandbox.set_invoice(2026, 10, "PENDING")
    connect(engine, workspace_id, 60)  # 24 Sep – 22 Nov: all of October
    october = sandbox.past_bill(DEMO_TEAM_ID, 2026, 10)

    with engine.db.session() as session:
        (r,) = reconcile_month(session, workspace_id, OCTOBER, clock.now.date()).values()

    assert (r.month, r.source, r.status) == (OCTOBER, "invoice", "pending")
    assert r.usage_usd == served(sandbox, OCTOBER, date(2026, 10, 31)) == october.usage
    assert (r.invoice_usd, r.before_tax_usd, r.tax_usd) == (
        october.total,
        october.subtotal,
        october.tax,
    )
    assert abs(r.difference_usd) < Decimal("0.005") and not r.flagged
    assert r.number.startswith("INV-202610-")
    as_json = r.as_json()
    assert as_json["status"] == "pending" and Decimal(as_json["invoice_usd"]) == october.total


def test_a_closed_month_fetched_in_part_is_flagged_with_the_sync_that_fetches_it(
    engine, sandbox, workspace_id, clock
) -> None:
    connect(engine, workspace_id, 30)  # 24 Oct – 22 Nov
    with engine.db.session() as session:
        (r,) = reconcile_month(session, workspace_id, OCTOBER, clock.now.date()).values()
    assert r.status == "paid" and r.flagged and r.difference_usd < -1
    assert r.usage_usd == served(sandbox, date(2026, 10, 24), date(2026, 10, 31))
    assert r.explanations[0] == (
        "days not fetched into the usage series: 1 Oct–23 Oct 2026 (sync --days 53 fetches them)"
    )


def test_an_unreadable_or_missing_invoice_is_said_so_never_zero(
    engine, sandbox, workspace_id, clock
) -> None:
    sandbox.set_invoice(2026, 10, malformed="total")
    sandbox.set_invoice(2026, 9, listed=False)
    connect(engine, workspace_id, 90)
    today = clock.now.date()
    with engine.db.session() as session:
        (unreadable,) = reconcile_month(session, workspace_id, OCTOBER, today).values()
        (missing,) = reconcile_month(session, workspace_id, date(2026, 9, 1), today).values()
        never_asked = reconcile_month(session, workspace_id, date(2026, 6, 1), today)

    assert unreadable.status == "unreadable" and unreadable.invoice_usd is None
    assert unreadable.difference_usd is None and not unreadable.flagged
    assert "twelve dollars" in unreadable.problem
    assert unreadable.usage_usd == served(sandbox, OCTOBER, date(2026, 10, 31))
    assert missing.status == "not_listed" and missing.invoice_usd is None
    assert unreadable.as_json()["invoice_usd"] is None
    assert never_asked == {}


def test_the_current_month_asked_for_is_the_one_status_shows(
    engine, sandbox, workspace_id, clock
) -> None:
    sandbox.invoice_shape = "totals"
    connect(engine, workspace_id, 30)
    with engine.db.session() as session:
        (r,) = reconcile_month(session, workspace_id, date(2026, 11, 1), clock.now.date()).values()
    assert r.source == "preview" and r.invoice_usd == sandbox.bill(DEMO_TEAM_ID).stated


# -- a closed month on every surface that shows one --------------------------------------


def test_last_month_the_monthly_digest_and_the_pdf_show_the_months_invoice(
    engine, sandbox, workspace_id, cli, tmp_path, db
) -> None:
    from bot.digests import build_digest
    from bot.render import digest_text
    from tests.bot.test_exports import pdf_text
    from tests.fakes.providers import built_in

    sandbox.set_invoice(2026, 10, "PENDING")
    connect(engine, workspace_id, 90)
    past = sandbox.past_bill(DEMO_TEAM_ID, 2026, 10)
    expected = f"invoice INV-202610-{DEMO_TEAM_ID[:8].upper()} {money(past.stated)}"

    # (The terminal runs on the real clock, the stand-in at 22 Nov: name October itself.)
    code, out, err = cli("range", "2026-10-01", "2026-10-31")
    assert code == 0, err
    assert "Invoices for October 2026:" in out
    line = next(x for x in out.splitlines() if "October 2026: usage series" in x)
    assert expected in line and "pending" in line and "they agree" in line

    with db.session() as session:
        digest = build_digest(
            session, workspace_id, "month", date(2026, 11, 1), providers=built_in()
        )
    assert [label for label, _ in digest.invoices] == ["Production — xAI"]
    assert expected in digest_text(digest)

    pdf = tmp_path / "october.pdf"
    code, _, err = cli("export", "2026-10-01", "2026-10-31", "--format", "pdf", "-o", str(pdf))
    assert code == 0, err
    text = " ".join(pdf_text(pdf.read_bytes()).split())
    assert "Invoices for October 2026" in text and money(past.stated) in text

    code, out, _ = cli("range", "2026-10-01", "2026-10-30")  # not the whole month: none
    assert "Invoices for" not in out


def test_a_closed_month_whose_invoice_cannot_be_read_says_so_never_zero(
    engine, sandbox, workspace_id, cli
) -> None:
    sandbox.set_invoice(2026, 10, malformed="total")
    connect(engine, workspace_id, 90)
    code, out, err = cli("range", "2026-10-01", "2026-10-31")
    assert code == 0, err
    line = next(x for x in out.splitlines() if "October 2026: usage series" in x)
    assert "its invoice could not be read" in line and "$0.00" not in line
