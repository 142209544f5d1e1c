"""Billing depth on a fresh database (SQLite and PostgreSQL): coupons, wallets, minimums, ramps and trials
through tax, posting, revenue and the e-invoice; reruns, previews and voids stay exact."""

from __future__ import annotations

import base64
from datetime import date
from decimal import Decimal

import pytest

from closeloop.core.errors import CloseloopError
from tests.integration.test_billing_service import check_payload, events


def german_company(app, clock, *, start: str = "2026-01-01") -> None:
    clock.set(date.fromisoformat(start))
    app.do("entity.create", {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR",
                             "tax_id": "DE123456788",
                             "address": {"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115"}})
    app.do("customer.upsert", {"source": "crm", "external_id": "K-1", "name": "Kunde GmbH", "country": "DE",
                               "tax_id": "DE811907980", "currency": "EUR", "entity": "DE01",
                               "address": {"street": "Ring 2", "city": "Hamburg", "postal_code": "20095"}})
    app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
    app.do("product.create", {"sku": "seat", "name": "Seats", "treatment": "ratable"})
    app.do("product.create", {"sku": "api", "name": "API calls", "treatment": "usage"})
    app.do("price.create", {"price_id": "pro", "sku": "pro", "currency": "EUR", "model": "flat", "amount": "100.00",
                            "period": "month", "timing": "advance"})
    app.do("price.create", {"price_id": "seat", "sku": "seat", "currency": "EUR", "model": "per_unit",
                            "amount": "100.00", "period": "month", "timing": "advance"})
    app.do("price.create", {"price_id": "api", "sku": "api", "currency": "EUR", "model": "usage", "amount": "0.01",
                            "period": "month", "timing": "arrears", "metric": "calls"})


def quote(app, qid: str, cid: str, lines: list[dict], **extra) -> None:
    app.do("quote.create", {"quote_id": qid, "customer": "K-1", "start": "2026-01-01", "term_months": 12,
                            "billing_day": 1, "lines": lines, **extra})
    app.do("quote.accept", {"quote_id": qid, "contract_id": cid})


def test_discount_lines_flow_through_tax_posting_revenue_and_the_einvoice(app, clock):
    from closeloop.einvoice import cii, ubl

    german_company(app, clock)
    app.do("coupon.create", {"coupon": "SAVE200", "amount_off": "200.00", "currency": "EUR", "duration": "forever"})
    quote(app, "Q-1", "C-1", [{"line_id": "P", "price_id": "pro", "quantity": 1},
                              {"line_id": "S", "price_id": "seat", "quantity": 2}], coupons=["SAVE200"])
    app.do("billing.run", {"as_of": "2026-01-01"})
    inv = app.query("invoice", {"customer": "K-1", "seq": 1})
    # 300.00 less 200.00 spread 66.67 / 133.33; 19% VAT on 100.00 once for the group
    assert (inv["subtotal"], inv["tax"], inv["total"]) == ("100.00", "19.00", "119.00")
    assert [(ln["kind"], ln["amount"]) for ln in inv["lines"]] == [
        ("recurring", "100.00"), ("discount", "-66.67"), ("recurring", "200.00"), ("discount", "-133.33")]
    for p in events(app, "invoice.issued"):
        check_payload("invoice.issued", p)
        assert [ln.get("kind") for ln in p["lines"]] == [None, "discount", None, "discount"]
    assert app.query("balance", {"role": "deferred_revenue", "entity": "DE01"})["amount"] == "-100.00"
    assert app.query("balance", {"role": "tax_payable", "entity": "DE01"})["amount"] == "-19.00"
    # the e-invoice shows the discounts as document-level allowances (EN 16931 BG-20), valid against the XSDs
    out = app.do("einvoice.export", {"invoice": inv["number"], "format": "ubl"})
    read = ubl.read_ubl(out["content"])
    assert (str(read.line_extension), str(read.allowance_total), str(read.tax_exclusive), str(read.payable)) == (
        "300.00", "200.00", "100.00", "119.00")
    assert ubl.consistency(read) == [] and len(read.lines) == 2
    cii.check_ubl(out["content"].encode() if isinstance(out["content"], str) else out["content"], credit=False)
    fx = app.do("einvoice.export", {"invoice": inv["number"], "format": "facturx"})
    xml = cii.xml_from_pdf(base64.b64decode(fx["content"]))
    cii.check_cii(xml)
    assert b"AllowanceTotalAmount>200.00<" in xml and b"<ram:Reason>Coupon SAVE200" in xml
    # revenue: the discount is a price reduction of each line over its service period
    clock.set(date(2026, 1, 31))
    app.do("revrec.run", {"through": "2026-01-31"})
    assert app.query("revenue", {"period": "2026-01", "contract": "C-1", "line_id": "P"})["recognized"] == "33.33"
    assert app.query("revenue", {"period": "2026-01", "contract": "C-1"})["recognized"] == "100.00"
    dr = app.query("deferred_revenue", {"as_of": "2026-01-31"})
    assert (dr["amount"], dr["unbilled_receivable"]) == ("0.00", "0.00")
    # a full credit memo credits what was billed after the discount, not more
    memo = app.do("invoice.credit", {"invoice": inv["number"], "reason": "goodwill"})
    assert (memo["amount"], memo["tax"], memo["total"]) == ("100.00", "19.00", "119.00")
    assert app.query("ledger_verify", {})["ok"]


def test_coupons_in_previews_reruns_and_voids(app, clock):
    german_company(app, clock)
    app.do("coupon.create", {"coupon": "ONCE50", "amount_off": "50.00", "currency": "EUR", "duration": "once"})
    quote(app, "Q-1", "C-1", [{"line_id": "P", "price_id": "pro", "quantity": 1, "coupons": ["ONCE50"]}])
    app.do("period.close", {"entity": "DE01", "period": "2026-01"})  # the January invoice cannot post: voidable
    clock.set(date(2026, 2, 1))
    preview = app.query("billing_preview", {"as_of": "2026-02-01"})
    assert [i["subtotal"] for i in preview["invoices"]] == ["50.00", "100.00"]
    run = app.do("billing.run", {"as_of": "2026-02-01"})
    assert run["invoices"] == 2
    assert [i["total"] for i in app.query("invoices", {"customer": "K-1"})["items"]] == ["59.50", "119.00"]
    state = app.query("coupon", {"coupon": "ONCE50"})["redemptions"][0]
    assert (state["uses"], state["discounted"], state["status"]) == (1, "50.00", "exhausted")
    assert app.do("billing.run", {"as_of": "2026-02-01"})["invoices"] == 0
    assert app.query("coupon", {"coupon": "ONCE50"})["redemptions"][0] == state
    # voiding the discounted invoice gives the coupon back; the next run bills it again with the discount
    first = app.query("invoice", {"customer": "K-1", "seq": 1})["number"]
    assert app.query("exceptions", {"kind": "unposted_event"})["count"] == 1  # January is closed: not posted
    app.do("invoice.void", {"invoice": first, "reason": "wrong period"})
    again = app.query("coupon", {"coupon": "ONCE50"})["redemptions"][0]
    assert (again["uses"], again["discounted"], again["status"], again["remaining"]) == (0, "0.00", "active", "50.00")
    app.do("billing.run", {"as_of": "2026-02-01"})
    rebilled = app.query("invoice", {"customer": "K-1", "seq": 3})
    assert rebilled["subtotal"] == "50.00" and rebilled["lines"][1]["kind"] == "discount"


def test_wallet_events_post_and_the_liability_ties_to_the_gl(app, clock):
    german_company(app, clock)
    quote(app, "Q-1", "C-1", [{"line_id": "U", "price_id": "api", "quantity": 1}])
    top = app.do("wallet.topup", {"customer": "K-1", "wallet": "W", "amount": "100.00", "expires": "2026-03-01"})
    assert (top["balance"], top["credits"]) == ("100.00", "100")
    topup_inv = app.query("invoice", {"number": top["invoice"]})
    assert (topup_inv["tax"], topup_inv["lines"][0]["tax_treatment"]) == ("0.00", "out_of_scope")
    assert topup_inv["tax_breakdown"][0]["exemption_reason"].startswith("Advance payment for prepaid credits")
    app.do("einvoice.export", {"invoice": top["invoice"], "format": "ubl"})  # an O-only invoice is valid
    clock.set(date(2026, 1, 20))
    app.do("usage.record", {"customer": "K-1", "metric": "calls", "quantity": 3000, "at": "2026-01-20", "key": "a"})
    clock.set(date(2026, 2, 1))
    app.do("billing.run", {"as_of": "2026-02-01"})
    inv = app.query("invoice", {"customer": "K-1", "seq": 2})
    # after tax: 30.00 + 19% = 35.70, all paid from the wallet
    assert (inv["total"], inv["wallet_applied"], inv["balance"], inv["status"]) == ("35.70", "35.70", "0.00", "paid")
    doc_xml = app.do("einvoice.export", {"invoice": inv["number"], "format": "ubl"})["content"]
    from closeloop.einvoice import ubl

    read = ubl.read_ubl(doc_xml)
    assert (read.prepaid, read.payable) == (Decimal("35.70"), 0)
    for kind in ("wallet.topped_up", "wallet.applied"):
        for p in events(app, kind):
            check_payload(kind, p)
    with pytest.raises(CloseloopError) as exc:
        app.do("wallet.apply", {"wallet": "W", "invoice": inv["number"], "amount": "1.00"})
    assert exc.value.code == "validation_error"  # a paid invoice takes nothing more
    clock.set(date(2026, 3, 1))
    app.do("billing.run", {"as_of": "2026-03-01"})
    expired = events(app, "wallet.expired")
    assert [(p["amount"], p["date"]) for p in expired] == [("64.30", "2026-03-01")]
    check_payload("wallet.expired", expired[0])
    app.do("revrec.run", {"through": "2026-03-31"})
    assert app.query("revenue", {"period": "2026-03", "contract": "wallet:W"})["recognized"] == "64.30"
    gl = app.query("balance", {"role": "deferred_revenue", "entity": "DE01", "as_of": "2026-03-31"})["amount"]
    assert gl == "0.00" and app.query("deferred_revenue", {"as_of": "2026-03-31"})["amount"] == "0.00"
    roll = app.query("deferred_revenue_rollforward", {"period": "2026-01..2026-03"})
    assert roll["ties"], roll
    assert app.query("trial_balance", {"entity": "DE01"})["balanced"]
    assert app.query("ledger_verify", {})["ok"]


def test_an_amendment_of_a_ramped_line_ends_the_ramp_and_trials_survive_changes(app, clock):
    german_company(app, clock)
    ramp = [{"start": "2026-01-01", "end": "2026-06-30", "unit_amount": "100.00"},
            {"start": "2026-07-01", "end": "2026-12-31", "unit_amount": "150.00"}]
    quote(app, "Q-1", "C-1", [{"line_id": "S", "price_id": "seat", "quantity": 2, "ramp": ramp},
                              {"line_id": "P", "price_id": "pro", "quantity": 1, "trial_days": 14}])
    view = app.query("contract", {"contract_id": "C-1", "as_of": "2026-01-05"})
    # seats 6 x 200 + 6 x 300; the Pro plan free for 14 days, then 100.00 x 17/31 + 11 x 100.00
    assert view["tcv"] == "4154.84" and view["mrr"] == "200.00"
    app.do("contract.amend", {"contract_id": "C-1", "effective": "2026-03-01",
                              "changes": [{"line_id": "S", "quantity": 3}]})
    later = app.query("contract", {"contract_id": "C-1", "as_of": "2026-08-01"})
    seats = next(ln for ln in later["lines"] if ln["line_id"] == "S")
    assert (seats["quantity"], seats["unit_amount"]) == ("3", "100.00")  # the ramp ended with the amendment
    clock.set(date(2026, 3, 1))
    app.do("billing.run", {"as_of": "2026-03-01"})
    totals = [i["total"] for i in app.query("invoices", {"customer": "K-1"})["items"]]
    # January seats 200 + VAT; the Pro plan on 15 January, when the trial ends (17/31 days = 54.84); February
    # 200 + 100; March 3 seats at the step-1 price + 100
    assert totals == ["238.00", "65.26", "357.00", "476.00"], totals


@pytest.mark.parametrize("partition_size", [1, 2000])
def test_partitioned_runs_with_coupons_and_wallets_match_one_run(app, clock, partition_size):
    from closeloop.billing.service import run_in_partitions

    german_company(app, clock)
    app.do("customer.upsert", {"source": "crm", "external_id": "K-2", "name": "Zweite GmbH", "country": "DE",
                               "tax_id": "DE136695976", "currency": "EUR", "entity": "DE01",
                               "address": {"street": "Weg 3", "city": "Bonn", "postal_code": "53111"}})
    app.do("coupon.create", {"coupon": "TEN", "percent_off": "10", "duration": "forever"})
    quote(app, "Q-1", "C-1", [{"line_id": "P", "price_id": "pro", "quantity": 1},
                              {"line_id": "U", "price_id": "api", "quantity": 1}], coupons=["TEN"])
    app.do("quote.create", {"quote_id": "Q-2", "customer": "K-2", "start": "2026-01-01", "term_months": 12,
                            "billing_day": 1, "lines": [{"line_id": "U", "price_id": "api", "quantity": 1,
                                                         "minimum": "50.00"}]})
    app.do("quote.accept", {"quote_id": "Q-2", "contract_id": "C-2"})
    app.do("wallet.topup", {"customer": "K-2", "amount": "40.00",
                            "auto_topup": {"threshold": "10", "credits": "40"}})
    clock.set(date(2026, 1, 10))
    for key, cust in (("1", "K-1"), ("2", "K-2")):
        app.do("usage.record", {"customer": cust, "metric": "calls", "quantity": 1500, "at": "2026-01-10",
                                "key": key})
    clock.set(date(2026, 2, 1))
    out = run_in_partitions(app, "2026-02-01", partition_size=partition_size)
    assert out["status"] == "completed"
    k1 = app.query("invoice", {"customer": "K-1", "seq": 2})
    assert (k1["subtotal"], k1["total"]) == ("103.50", "123.17")  # (100 + 15) less 10%
    k2 = app.query("invoice", {"customer": "K-2", "seq": 2})
    # 15.00 of usage + 35.00 true-up = 50.00, 59.50 with VAT: the wallet pays 40.00 and tops itself up
    assert (k2["subtotal"], k2["total"], k2["wallet_applied"], k2["balance"]) == ("50.00", "59.50", "40.00", "19.50")
    assert app.query("wallet", {"customer": "K-2"})["balance"] == "40.00"
    assert app.do("billing.run", {"as_of": "2026-02-01"})["invoices"] == 0
    assert app.query("trial_balance", {"entity": "DE01"})["balanced"]


def test_a_merge_moves_wallets_and_coupons_to_the_survivor(app, clock):
    german_company(app, clock)
    app.do("customer.upsert", {"source": "crm", "external_id": "K-DUP", "name": "Kunde GmbH (dup)", "country": "DE",
                               "currency": "EUR", "entity": "DE01"})
    app.do("coupon.create", {"coupon": "TEN", "percent_off": "10", "duration": "forever"})
    app.do("coupon.create", {"coupon": "FIVE", "percent_off": "5", "duration": "forever"})
    for cust in ("K-1", "K-DUP"):
        app.do("coupon.apply", {"coupon": "TEN", "customer": cust})
    app.do("coupon.apply", {"coupon": "FIVE", "customer": "K-DUP"})
    app.do("wallet.topup", {"customer": "K-DUP", "wallet": "W-DUP", "amount": "20.00"})
    app.do("customer.merge", {"survivor": "K-1", "merged": "K-DUP"})
    assert app.query("wallet", {"customer": "K-1"})["balance"] == "20.00"
    held = [(r["coupon"]) for r in app.query("coupons", {"customer": "K-1"})["items"]]
    assert sorted(held) == ["FIVE", "TEN"]  # TEN once (the survivor's), FIVE moved
