"""Billing's reconciliation sides (closeloop.billing.recon_sides): every rule they make runnable finds a
planted break and closes it by itself once the cause is fixed.

Rules: invoices_vs_ledger (billing.invoice_totals vs posting.invoice_postings), invoices_vs_ar_subledger
(billing.open_invoice_balances vs collections.ar_open_items), legacy_invoice_register (a CSV vs
billing.invoice_totals)."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError


def _setup(app, customers=(("SF-1", "1000.00"), ("SF-2", "500.00")), start="2026-01-01"):
    app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
    for n, (cust, amount) in enumerate(customers, 1):
        app.do("customer.upsert", {"source": "crm", "external_id": cust, "name": f"Customer {n}", "country": "US",
                                   "region": "OR"})
        app.do("price.create", {"price_id": f"p{n}", "sku": "pro", "currency": "USD", "model": "flat",
                                "amount": amount, "period": "month", "timing": "advance"})
        app.do("quote.create", {"quote_id": f"Q-{n}", "customer": cust, "entity": "US01", "start": start,
                                "term_months": 12,
                                "lines": [{"line_id": "L1", "price_id": f"p{n}", "quantity": 1}]})
        app.do("quote.accept", {"quote_id": f"Q-{n}", "contract_id": f"C-{n}"})


def _recon(app, *rules, **extra):
    app.do("recon.run", {"rules": list(rules), **extra})
    return app.query("recon", {})


def _exceptions(app, status="open"):
    return app.query("exceptions", {"kind": "recon_break", "status": status})["items"]


def test_the_rules_billing_provides_are_available(app):
    rules = {r["rule"]: r for r in app.query("recon_rules", {})["rules"]}
    for rule in ("invoices_vs_ledger", "invoices_vs_ar_subledger", "contract_vs_billed", "legacy_invoice_register"):
        assert rules[rule]["status"] == "available", rules[rule]
    assert {r["status"] for r in rules.values()} == {"available"}
    sides = app.query("recon_rules", {})["sides"]
    assert {"billing.invoice_totals", "billing.open_invoice_balances", "billing.billed_to_date",
            "contracts.value_due_to_date"} <= set(sides)


def test_invoices_vs_ledger_finds_an_edited_invoice_and_closes_after_the_fix(app, us01, clock):
    _setup(app)
    app.do("billing.run", {"as_of": "2026-01-01"})
    result = _recon(app, "invoices_vs_ledger")
    assert (result["matched"], result["breaks"]) == (2, [])
    clock.set(date(2026, 1, 5))
    with app.unit_of_work() as uow:  # an edit behind closeloop's back
        uow.execute("UPDATE billing_invoice SET total = total + 1234 WHERE number = 'INV-US01-000002'")
    result = _recon(app, "invoices_vs_ledger")
    assert result["matched"] == 1
    [brk] = result["breaks"]
    assert (brk["category"], brk["amount"], brk["left"], brk["right"], brk["key"]) == (
        "amount_difference", "12.34", "512.34", "500.00", {"entity": "US01", "invoice": "INV-US01-000002"})
    [exc] = _exceptions(app)
    assert (exc["amount"], exc["owner_role"], exc["entity"]) == ("12.34", "controller", "US01")
    clock.set(date(2026, 1, 6))
    with app.unit_of_work() as uow:
        uow.execute("UPDATE billing_invoice SET total = total - 1234 WHERE number = 'INV-US01-000002'")
    result = _recon(app, "invoices_vs_ledger")
    assert (result["matched"], result["breaks"]) == (2, [])
    assert [e["resolution"] for e in _exceptions(app, "resolved")] == ["auto_closed"]


def test_invoices_vs_ledger_finds_an_invoice_never_posted(app, us01, clock):
    _setup(app)
    app.do("billing.run", {"as_of": "2026-01-01"})
    with app.unit_of_work() as uow:  # the invoice's posting is lost (its reference no longer names it)
        uow.execute("UPDATE journal_entry SET reference = 'lost' WHERE reference = 'invoice.issued:INV-US01-000001'")
    clock.set(date(2026, 1, 3))
    [brk] = _recon(app, "invoices_vs_ledger")["breaks"]
    assert (brk["category"], brk["amount"], brk["left"]) == ("missing_right", "1000.00", "1000.00")
    # only issued invoices count: a held invoice is not expected in the GL
    assert "right" not in brk


def test_held_and_void_invoices_are_not_expected_in_the_ledger(app, us01, clock):
    _setup(app, customers=(("SF-1", "1000.00"),))
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-9", "name": "No state", "country": "US"})
    app.do("quote.create", {"quote_id": "Q-9", "customer": "SF-9", "start": "2026-01-01", "term_months": 12,
                            "lines": [{"line_id": "L1", "price_id": "p1", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q-9", "contract_id": "C-9"})
    assert app.do("billing.run", {"as_of": "2026-01-01"})["held"] == 1
    result = _recon(app, "invoices_vs_ledger", "invoices_vs_ar_subledger")
    assert result["breaks"] == [] and result["matched"] == 2


def test_invoices_vs_ar_subledger_through_payments_and_credits(app, us01, clock):
    _setup(app)
    app.do("billing.run", {"as_of": "2026-01-01"})
    clock.set(date(2026, 1, 10))
    app.do("payment.receive", {"customer": "SF-1", "amount": "400.00", "currency": "USD",
                               "reference": "INV-US01-000001"})
    app.do("invoice.credit", {"invoice": "INV-US01-000002", "amount": "100.00", "reason": "goodwill"})
    result = _recon(app, "invoices_vs_ar_subledger")
    assert (result["matched"], result["breaks"]) == (2, [])
    assert app.query("invoice", {"number": "INV-US01-000001"})["balance"] == "600.00"
    app.do("payment.receive", {"customer": "SF-2", "amount": "400.00", "currency": "USD",
                               "reference": "INV-US01-000002"})
    result = _recon(app, "invoices_vs_ar_subledger")  # a paid invoice leaves both sides
    assert (result["matched"], result["breaks"]) == (1, [])
    clock.set(date(2026, 1, 12))
    with app.unit_of_work() as uow:  # the open balance changed behind closeloop's back
        uow.execute("UPDATE billing_invoice SET balance = 50000 WHERE number = 'INV-US01-000001'")
    [brk] = _recon(app, "invoices_vs_ar_subledger")["breaks"]
    assert (brk["category"], brk["amount"], brk["left"], brk["right"]) == (
        "amount_difference", "100.00", "500.00", "600.00")
    with app.unit_of_work() as uow:
        uow.execute("UPDATE billing_invoice SET balance = 60000 WHERE number = 'INV-US01-000001'")
    assert _recon(app, "invoices_vs_ar_subledger")["breaks"] == []
    assert [e["resolution"] for e in _exceptions(app, "resolved")] == ["auto_closed"]


def test_foreign_currency_invoices_reconcile_in_their_own_currency(app, us01, clock):
    app.do("fx.rate", {"base": "CAD", "quote": "USD", "date": "2026-01-01", "rate": "0.7300"})
    app.do("customer.upsert", {"source": "crm", "external_id": "CA-1", "name": "Maple", "country": "CA",
                               "currency": "CAD"})
    app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
    app.do("price.create", {"price_id": "cad", "sku": "pro", "currency": "CAD", "model": "flat",
                            "amount": "1000.00", "period": "month", "timing": "advance"})
    app.do("quote.create", {"quote_id": "Q-1", "customer": "CA-1", "currency": "CAD", "start": "2026-01-01",
                            "term_months": 12, "lines": [{"line_id": "L1", "price_id": "cad", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q-1", "contract_id": "C-1"})
    app.do("billing.run", {"as_of": "2026-01-01"})
    clock.set(date(2026, 1, 20))
    app.do("fx.rate", {"base": "CAD", "quote": "USD", "date": "2026-01-20", "rate": "0.7500"})
    app.do("payment.receive", {"customer": "CA-1", "amount": "250.00", "currency": "CAD",
                               "reference": "INV-US01-000001"})
    result = _recon(app, "invoices_vs_ledger", "invoices_vs_ar_subledger", "ar_subledger_vs_gl")
    assert result["breaks"] == [] and result["matched"] == 3
    left = app.query("invoice", {"number": "INV-US01-000001"})
    assert (left["currency"], left["balance"]) == ("CAD", "750.00")


def test_legacy_invoice_register_file(app, us01, clock, tmp_path):
    _setup(app)
    app.do("billing.run", {"as_of": "2026-01-01"})
    register = tmp_path / "register.csv"
    register.write_text("Entity,Invoice,Total,Currency,Date\n"
                        "US01,INV-US01-000001,1000.00,USD,2026-01-01\n"
                        "US01,INV-US01-000002,550.00,USD,2026-01-01\n"
                        "US01,OLD-77,99.00,USD,2026-01-01\n")
    clock.set(date(2026, 1, 5))
    app.do("recon.run", {"rules": ["legacy_invoice_register"], "files": {"legacy_invoice_register": str(register)}})
    result = app.query("recon", {"rule": "legacy_invoice_register"})
    assert result["matched"] == 1
    assert sorted((b["category"], b["amount"]) for b in result["breaks"]) == [
        ("amount_difference", "50.00"), ("missing_right", "99.00")]
    register.write_text("Entity,Invoice,Total,Currency,Date\n"
                        "US01,INV-US01-000001,1000.00,USD,2026-01-01\n"
                        "US01,INV-US01-000002,500.00,USD,2026-01-01\n")
    app.do("recon.run", {"rules": ["legacy_invoice_register"], "files": {"legacy_invoice_register": str(register)}})
    assert app.query("recon", {"rule": "legacy_invoice_register"})["breaks"] == []
    assert len(_exceptions(app, "resolved")) == 2


MIGRATION = {
    "manifest.yaml": "system: OldBill\ncutover: \"2026-01-31\"\n",
    "entities.csv": "code,name,country,currency\nUS01,Acme Inc,US,USD\n",
    "customers.csv": "legacy_id,name,country,region,postal_code,tax_id,entity,currency\n"
                     "C1,Globex LLC,US,OR,97201,12-3456789,US01,USD\nC2,Initech Inc,US,OR,97204,20-1234567,US01,USD\n",
    "products.csv": "sku,name,treatment\nPLAT,Platform,ratable\n",
    "prices.csv": "price_id,sku,currency,model,amount,period,timing\nPLAT-USD,PLAT,USD,flat,100.00,month,advance\n",
    "contracts.csv": "contract_id,customer_id,start,term_months,billing_day,billed_through\n"
                     "K1,C1,2025-06-01,24,1,2026-01-31\n",
    "contract_lines.csv": "contract_id,line_id,price_id,quantity\nK1,L1,PLAT-USD,1\n",
    "open_invoices.csv": "number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                         "LEG-1,C1,US01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                         "LEG-2,C2,US01,USD,2026-01-15,2026-02-14,250.00,0.00,150.00\n",
    "opening_balances.csv": "entity,account,debit,credit\nUS01,accounts_receivable,250.00,\nUS01,cash,750.00,\n"
                            "US01,retained_earnings,,1000.00\n",
}


def test_migrated_invoices_and_contracts_reconcile(app, clock):
    clock.set(date(2026, 2, 1))
    app.do("migration.import", {"files": MIGRATION})
    # LEG-2 was partly paid in the legacy system: the GL holds its open 150.00, and so does billing's side
    result = _recon(app, "invoices_vs_ledger", "invoices_vs_ar_subledger", "contract_vs_billed", as_of="2026-01-31")
    assert result["breaks"] == [], result["breaks"]
    rules = {r["rule"]: r for r in result["rules"]}
    assert (rules["invoices_vs_ledger"]["matched"], rules["invoices_vs_ar_subledger"]["matched"]) == (2, 2)
    # K1 was billed through 31 January by OldBill: nothing is due in closeloop before February
    assert rules["contract_vs_billed"]["left"] == 0
    app.do("billing.run", {"as_of": "2026-02-01"})
    result = _recon(app, "invoices_vs_ledger", "contract_vs_billed")
    assert result["breaks"] == [], result["breaks"]
    rules = {r["rule"]: r for r in result["rules"]}
    assert (rules["invoices_vs_ledger"]["matched"], rules["contract_vs_billed"]["matched"]) == (3, 1)


def test_entity_filter_and_bad_rules(app, us01, de01, clock):
    _setup(app)
    app.do("billing.run", {"as_of": "2026-01-01"})
    app.do("recon.run", {"rules": ["invoices_vs_ledger"], "entity": "DE01"})
    assert app.query("recon", {"rule": "invoices_vs_ledger"})["matched"] == 0
    app.do("recon.run", {"rules": ["invoices_vs_ledger"], "entity": "US01"})
    assert app.query("recon", {"rule": "invoices_vs_ledger"})["matched"] == 2
    with pytest.raises(CloseloopError) as err:
        app.do("recon.run", {"rules": ["no_such_rule"]})
    assert err.value.code == "validation_error"
