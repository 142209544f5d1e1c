"""Intercompany: a sale by one entity performed by another books both sides; consolidation eliminates them."""

from __future__ import annotations

from tests.integration.test_posting import emit, invoice_payload


def test_intercompany_charge_both_sides_and_elimination(app, us01, de01):
    app.do("fx.rate", {"base": "USD", "quote": "EUR", "date": "2026-01-01", "rate": "0.90"})
    payload = invoice_payload(lines=(("1000.00", "0.00"), ("200.00", "0.00")))
    payload["lines"][0]["performing_entity"] = "DE01"
    emit(app, "invoice.issued", payload)
    # US01 -> DE01 is cost plus: 1000.00 x 0.60 x 1.10 = 660.00 USD = 594.00 EUR at 0.90
    de = app.query("trial_balance", {"entity": "DE01"})["accounts"]
    assert de == {"1200": "594.00", "4800": "-594.00"}
    us = app.query("trial_balance", {"entity": "US01"})["accounts"]
    assert us == {"1100": "1200.00", "2200": "-1200.00", "2300": "-660.00", "5100": "660.00"}
    payable = app.query("journal", {"journal": "JE-US01-0000002"})
    assert [(ln["account"], ln["currency"], ln["txn_amount"]) for ln in payable["lines"]] == [
        ("5100", "EUR", "594.00"), ("2300", "EUR", "-594.00")]
    consolidated = app.query("consolidated_trial_balance", {"currency": "USD", "as_of": "2026-01-31"})
    assert consolidated["balanced"] is True
    assert all(e["balanced"] for e in consolidated["eliminations"])
    # after elimination only the external invoice remains (EUR balances translated back at 1/0.90)
    assert consolidated["accounts"] == {"1100": "1200.00", "2200": "-1200.00"}


def test_mismatched_intercompany_shows_a_difference(app, us01, de01):
    app.do("fx.rate", {"base": "USD", "quote": "EUR", "date": "2026-01-01", "rate": "0.90"})
    app.do("journal.post", {"entity": "DE01", "date": "2026-01-10", "memo": "one-sided", "lines": [
        {"account": "intercompany_receivable", "debit": "90.00"}, {"account": "intercompany_revenue",
                                                                   "credit": "90.00"}]})
    consolidated = app.query("consolidated_trial_balance", {"currency": "USD", "as_of": "2026-01-31"})
    pair = consolidated["eliminations"][0]
    assert pair["difference"] == "100.00" and pair["balanced"] is False
    assert consolidated["balanced"] is True


def test_intercompany_reconciliation_by_counterparty(app, us01, de01):
    app.do("fx.rate", {"base": "USD", "quote": "EUR", "date": "2026-01-01", "rate": "0.90"})
    payload = invoice_payload(lines=(("1000.00", "0.00"),))
    payload["lines"][0]["performing_entity"] = "DE01"
    emit(app, "invoice.issued", payload)
    result = app.do("recon.run", {"rules": ["intercompany_balances"], "as_of": "2026-01-31"})
    recon = app.query("recon", {"rule": "intercompany_balances"})
    assert recon["matched"] == 1 and recon["breaks"] == [], (result, recon)
    # a one-sided intercompany journal in DE01 has no counterparty: a break
    app.do("journal.post", {"entity": "DE01", "date": "2026-01-20", "memo": "one-sided", "lines": [
        {"account": "intercompany_receivable", "debit": "5.00"}, {"account": "4900", "credit": "5.00"}]})
    app.do("recon.run", {"rules": ["intercompany_balances"], "as_of": "2026-01-31"})
    breaks = app.query("recon", {"rule": "intercompany_balances"})["breaks"]
    assert [(b["category"], b["amount"]) for b in breaks] == [("missing_right", "5.00")]
