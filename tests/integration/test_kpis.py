"""KPIs from the data: exact values on small hand-checked cases."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError
from closeloop.core.exception_queue import open_exception
from tests.conftest import post
from tests.integration.test_posting import emit, invoice_payload


def value(app, name, **where):
    return app.query("kpi", {"name": name, **where})["value"]


def test_manual_journal_share(app, us01):
    post(app, "US01", "2026-01-05", ("cash", "debit", "300.00"), ("3000", "credit", "300.00"))
    emit(app, "invoice.issued", invoice_payload(date="2026-01-10", lines=(("100.00", "0.00"),)))
    emit(app, "invoice.issued", invoice_payload(number="INV-2", date="2026-01-20", lines=(("100.00", "0.00"),)))
    emit(app, "invoice.issued", invoice_payload(number="INV-3", date="2026-02-02", lines=(("100.00", "0.00"),)))
    result = app.query("kpi", {"name": "manual_journal_share", "period": "2026-01"})
    # 1 manual entry of 3 in January; by amount 300 of 500 debits
    assert (result["value"], result["numerator"], result["denominator"], result["amount_share"]) == (
        "0.3333", 1, 3, "0.6")


def test_dso_and_first_pass_accuracy(app, us01):
    emit(app, "invoice.issued", invoice_payload(date="2026-01-10", lines=(("1000.00", "0.00"),)))
    emit(app, "invoice.issued", invoice_payload(number="INV-2", date="2026-01-20", lines=(("550.00", "0.00"),)))
    emit(app, "payment.received", {"payment": "P-1", "entity": "US01", "customer": "SF-1", "currency": "USD",
                                   "date": "2026-01-25", "amount": "1000.00", "channel": "bank"},
         aggregate="payment")
    emit(app, "payment.applied", {"payment": "P-1", "invoice": "INV-1", "entity": "US01", "customer": "SF-1",
                                  "currency": "USD", "date": "2026-01-25", "amount": "1000.00",
                                  "fx_difference": "0"}, aggregate="payment")
    # AR at 31 Jan 550.00; invoiced in January 1,550.00; 31 days: 550 / 1550 x 31 = 11.00
    assert value(app, "dso_days", period="2026-01") == "11"
    emit(app, "credit_memo.issued", {"credit_memo": "CM-1", "invoice": "INV-2", "entity": "US01", "customer": "SF-1",
                                     "currency": "USD", "date": "2026-02-15", "subtotal": "50.00", "tax": "0.00",
                                     "total": "50.00", "credit_created": "0.00",
                                     "lines": [{"line_no": 1, "description": "x", "revenue_role": "revenue",
                                                "treatment": "ratable", "net": "50.00", "tax": "0.00"}]})
    result = app.query("kpi", {"name": "first_pass_invoice_accuracy", "period": "2026-01"})
    assert (result["value"], result["records"]) == ("0.5", ["INV-2"])
    stp = app.query("kpi", {"name": "straight_through_rate", "period": "2026-01"})
    # 4 automatic journal entries, 1 of 2 invoices untouched, 1 automatic payment: 6 / 7
    assert (stp["value"], stp["parts"]) == ("0.8571", {"journal_entries": [4, 4], "invoices": [1, 2],
                                                       "payments": [1, 1]})


def test_recon_exception_kpis_and_close_cycle(app, us01, clock):
    with app.unit_of_work() as uow:
        first = open_exception(uow, "recon_break", record_type="invoice", record_id="A", entity="US01",
                               message="a", amount=10, currency="USD")
    clock.set(date(2026, 1, 11))
    with app.unit_of_work() as uow:
        open_exception(uow, "recon_break", record_type="invoice", record_id="B", entity="US01", message="b",
                       amount=10, currency="USD")
    app.dispatch()
    assert value(app, "recon_exception_count", period="2026-01") == "2"
    # at 31 Jan: 30 and 20 days old -> 25
    assert value(app, "recon_exception_mean_age_days", period="2026-01") == "25"
    app.do("exception.resolve", {"exception": first, "action": "accept", "reason": "ok"})
    clock.set(date(2026, 2, 3))
    app.do("close.start", {"entity": "US01", "period": "2026-01"})
    clock.set(date(2026, 2, 6))
    assert app.do("close.run", {"entity": "US01", "period": "2026-01"})["locked"] is True
    assert value(app, "close_cycle_days", period="2026-01") == "3"
    with pytest.raises(CloseloopError) as err:
        app.query("kpi", {"name": "happiness"})
    assert err.value.code == "validation_error"
    table = app.query("kpis", {"periods": "2026-01..2026-02"})
    assert [r["period"] for r in table["rows"]] == ["2026-01", "2026-02"]
    assert table["rows"][0]["close_cycle_days"] == "3"


def test_straight_through_counts_manual_applications_and_released_invoices(app, us01, clock):
    """payment.applied carries no method: an application by payment.apply is a manual touch; a held invoice
    is named by its id in its exception, so its release (exception.resolve) marks it touched."""
    app.do("product.create", {"sku": "pro", "name": "Pro", "treatment": "ratable"})
    app.do("price.create", {"price_id": "p", "sku": "pro", "currency": "USD", "model": "flat", "amount": "500.00",
                            "period": "month", "timing": "advance"})
    for cust, region in (("SF-1", "OR"), ("SF-2", None)):
        app.do("customer.upsert", {"source": "crm", "external_id": cust, "name": cust, "country": "US",
                                   **({"region": region} if region else {})})
        app.do("quote.create", {"quote_id": f"Q-{cust}", "customer": cust, "start": "2026-01-01", "term_months": 12,
                                "lines": [{"line_id": "L1", "price_id": "p", "quantity": 1}]})
        app.do("quote.accept", {"quote_id": f"Q-{cust}", "contract_id": f"C-{cust}"})
    assert app.do("billing.run", {"as_of": "2026-01-01"})["held"] == 1
    clock.set(date(2026, 1, 5))
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-2", "region": "OR"})
    [held] = app.query("exceptions", {"kind": "tax_undetermined", "status": "open"})["items"]
    app.do("exception.resolve", {"exception": held["id"], "action": "release", "reason": "state recorded"})
    pay = app.do("payment.receive", {"customer": "SF-1", "amount": "200.00", "currency": "USD", "reference": "?"})
    app.do("payment.apply", {"payment": pay["payment"], "invoice": "INV-US01-000001"})
    app.do("payment.receive", {"customer": "SF-2", "amount": "500.00", "currency": "USD",
                               "reference": "INV-US01-000002"})
    stp = app.query("kpi", {"name": "straight_through_rate", "period": "2026-01"})
    # entries: 2 invoices, 2 received, 2 applied (none manual); invoices: 1 of 2; payments: 1 of 2 -> 8 / 10
    assert (stp["value"], stp["parts"]) == ("0.8", {"journal_entries": [6, 6], "invoices": [1, 2],
                                                    "payments": [1, 2]})
