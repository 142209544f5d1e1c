"""Revenue recognition through the real commands: contracts, bill runs, recognition runs, the GL and the
reconciliation of deferred revenue (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from closeloop.core.errors import CloseloopError

D = date.fromisoformat


def company(app, *, currency: str = "USD") -> None:
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-1", "name": "Globex LLC", "country": "US",
                               "region": "CA", "entity": "US01", "currency": currency})
    for p in [{"sku": "pro", "name": "Pro plan", "treatment": "ratable"},
              {"sku": "seat", "name": "Seat licence", "treatment": "ratable", "ssp": "12.00"},
              {"sku": "support", "name": "Premium support", "treatment": "ratable"},
              {"sku": "setup", "name": "Onboarding", "treatment": "point_in_time", "tax_code": "services"},
              {"sku": "impl", "name": "Implementation", "treatment": "milestone", "tax_code": "services"},
              {"sku": "api", "name": "API calls", "treatment": "usage"}]:
        app.do("product.create", p)
    for p in [("pro-31", "pro", "flat", "31.00", "month", "advance"), ("pro-90", "pro", "flat", "90.00", "month", "advance"),
              ("pro-120", "pro", "flat", "120.00", "month", "advance"),
              ("pro-100", "pro", "flat", "100.00", "month", "advance"),
              ("pro-200", "pro", "flat", "200.00", "month", "advance"),
              ("pro-arrears", "pro", "flat", "100.00", "month", "arrears"),
              ("seat-10", "seat", "per_unit", "10.00", "month", "advance"),
              ("support-y", "support", "flat", "1200.00", "year", "advance"),
              ("support-seat-y", "support", "per_unit", "1200.00", "year", "advance"),
              ("setup", "setup", "flat", "2000.00", "one_time", "advance"),
              ("impl", "impl", "flat", "3000.00", "one_time", "arrears")]:
        app.do("price.create", {"price_id": p[0], "sku": p[1], "currency": currency, "model": p[2], "amount": p[3],
                                "period": p[4], "timing": p[5]})
    app.do("price.create", {"price_id": "api", "sku": "api", "currency": currency, "model": "usage", "amount": "0.10",
                            "period": "month", "timing": "arrears", "metric": "calls", "aggregation": "sum"})


def sign(app, start: str, lines: list[dict[str, Any]], *, months: int = 12, contract: str = "C1",
         billing_day: int | None = None) -> dict[str, Any]:
    quote = {"quote_id": f"Q-{contract}", "customer": "SF-1", "start": start, "term_months": months, "lines": lines}
    if billing_day:
        quote["billing_day"] = billing_day
    app.do("quote.create", quote)
    app.do("quote.approve", {"quote_id": f"Q-{contract}", "approver": "boss"})
    return app.do("quote.accept", {"quote_id": f"Q-{contract}", "contract_id": contract})


def revenue(app, period: str, **where: Any) -> str:
    return app.query("revenue", {"period": period, **where})["recognized"]


def deferred(app, as_of: str) -> str:
    return app.query("deferred_revenue", {"as_of": as_of})["amount"]


def gl(app, role: str, as_of: str | None = None) -> str:
    return app.query("balance", {"role": role, "as_of": as_of})["amount"]


def revrec_events(app) -> list[dict[str, Any]]:
    with app.unit_of_work(write=False) as uow:
        import json

        return [json.loads(p) for (p,) in uow.all("SELECT payload FROM event WHERE type = 'revenue.recognized'"
                                                  " ORDER BY id")]


def ties(app, period: str) -> bool:
    return app.query("deferred_revenue_rollforward", {"period": period})["ties"]


# --------------------------------------------------------------------------- ratable, billing and the GL


def test_monthly_subscription_from_mid_month_recognises_by_days_and_ties_to_the_gl(app, clock):
    """Stripe's "Monthly subscription" example (docs.stripe.com/revenue-recognition/examples/subscriptions)
    through the real commands: 31.00 a month from 15 January; January recognises 17.00, 14.00 stays deferred."""
    clock.set(D("2026-01-15"))
    company(app)
    sign(app, "2026-01-15", [{"line_id": "L1", "price_id": "pro-31", "quantity": 1}])
    app.do("billing.run", {"as_of": "2026-01-15"})
    clock.set(D("2026-02-01"))
    result = app.do("revrec.run", {"through": "2026-01-31"})
    assert result["recognized"] == [{"entity": "US01", "currency": "USD", "amount": "17.00"}]
    assert revenue(app, "2026-01") == "17.00"
    assert deferred(app, "2026-01-31") == "14.00"
    assert gl(app, "deferred_revenue", "2026-01-31") == "-14.00"
    assert gl(app, "revenue", "2026-01-31") == "-17.00"
    [event] = revrec_events(app)
    assert event["lines"] == [{"contract_id": "C1", "line_id": "L1", "revenue_role": "revenue", "amount": "17.00",
                               "deferred": "17.00", "unbilled": "0.00", "period": "2026-01", "product_family": None}]
    # idempotent: a rerun recognises nothing new and emits nothing
    again = app.do("revrec.run", {"through": "2026-01-31"})
    assert again["lines"] == 0 and again["events"] == [] and len(revrec_events(app)) == 1
    assert app.query("revenue_run_status", {"through": "2026-01-31", "entity": "US01"})["done"] is True
    assert app.query("revenue_run_status", {"through": "2026-02-28", "entity": "US01"})["done"] is False
    assert ties(app, "2026-01")
    app.do("recon.run", {"rules": ["deferred_revenue_vs_gl"]})
    assert app.query("recon", {"rule": "deferred_revenue_vs_gl"})["breaks"] == []


def test_annual_price_billed_up_front_mid_month_is_recognised_by_days_over_the_year(app, clock):
    clock.set(D("2026-01-15"))
    company(app)
    sign(app, "2026-01-15", [{"line_id": "S", "price_id": "support-seat-y", "quantity": 10}])  # 12,000.00
    app.do("billing.run", {"as_of": "2026-01-15"})
    months = [f"2026-{m:02d}" for m in range(1, 13)] + ["2027-01"]
    for period in months:
        last = {"2026-02": "28", "2026-04": "30", "2026-06": "30", "2026-09": "30", "2026-11": "30"}.get(period, "31")
        through = f"{period}-{last}"
        clock.set(D(through))
        app.do("revrec.run", {"through": through})
        assert ties(app, period), period
    assert revenue(app, "2026-01") == "558.90"  # 12,000.00 x 17/365
    assert revenue(app, "2026-02") == "920.55"  # x 28/365
    assert revenue(app, "2027-01") == "460.27"  # x 14/365
    assert revenue(app, "2026-01..2027-01") == "12000.00"
    assert deferred(app, "2026-01-31") == "11441.10"
    assert deferred(app, "2027-01-31") == "0.00" and gl(app, "deferred_revenue") == "0.00"


def test_revenue_recognised_before_billing_is_a_contract_asset_relieved_by_the_invoice(app, clock):
    """Billed in arrears: January's 100.00 is recognised at the end of January before the 1 February invoice
    (Dr unbilled receivable); the invoice relieves the asset (Dr deferred revenue, Cr unbilled receivable)."""
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-arrears", "quantity": 1}], billing_day=1)
    clock.set(D("2026-01-31"))
    app.do("revrec.run", {"through": "2026-01-31"})
    assert gl(app, "unbilled_receivable") == "100.00" and gl(app, "deferred_revenue") == "0.00"
    assert app.query("deferred_revenue", {"as_of": "2026-01-31"})["unbilled_receivable"] == "100.00"
    clock.set(D("2026-02-01"))
    app.do("billing.run", {"as_of": "2026-02-01"})
    relief = revrec_events(app)[-1]
    assert relief["run"].startswith("billing:") and relief["date"] == "2026-02-01"
    assert [(x["amount"], x["deferred"], x["unbilled"]) for x in relief["lines"]] == [("0.00", "100.00", "-100.00")]
    assert gl(app, "unbilled_receivable") == "0.00" and gl(app, "deferred_revenue") == "0.00"
    assert gl(app, "accounts_receivable") == "100.00"
    assert ties(app, "2026-01..2026-02")


def test_a_run_after_next_months_invoices_keeps_each_date_tied_to_the_gl(app, clock):
    """The usual close: February's invoices are issued on 1 February, January's recognition run comes after.
    The run books January on 31 January; the GL ties as of 31 January and as of 1 February."""
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1},
                             {"line_id": "L2", "price_id": "pro-arrears", "quantity": 1}], billing_day=1)
    app.do("billing.run", {"as_of": "2026-01-01"})
    clock.set(D("2026-02-02"))
    app.do("billing.run", {"as_of": "2026-02-01"})
    app.do("revrec.run", {"through": "2026-01-31"})
    assert revenue(app, "2026-01") == "200.00"
    for as_of in ("2026-01-31", "2026-02-01"):
        assert Decimal(deferred(app, as_of)) == -Decimal(gl(app, "deferred_revenue", as_of)), as_of
        assert app.query("deferred_revenue", {"as_of": as_of})["unbilled_receivable"] == gl(
            app, "unbilled_receivable", as_of), as_of
    assert deferred(app, "2026-02-01") == "100.00"  # February billed in advance, January's arrears billed
    assert ties(app, "2026-01..2026-02")


# --------------------------------------------------------------------------- allocation


def test_bundle_allocation_by_relative_standalone_selling_price(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [
        {"line_id": "SEATS", "price_id": "seat-10", "quantity": 10},  # 1,200.00 a year; SSP 12.00 a seat-month
        {"line_id": "SETUP", "price_id": "setup", "quantity": 1, "ssp": "2500.00"},  # 2,000.00 once
    ], billing_day=1)
    alloc = app.query("allocation", {"contract": "C1"})
    # price 3,200.00; SSP 1,440.00 + 2,500.00 = 3,940.00: seats 3,200 x 1,440/3,940 = 1,169.54
    assert alloc["transaction_price"] == "3200.00"
    assert alloc["lines"] == [
        {"line_id": "SEATS", "ssp": "1440.00", "allocated": "1169.54", "treatment": "ratable"},
        {"line_id": "SETUP", "ssp": "2500.00", "allocated": "2030.46", "treatment": "point_in_time"}]
    app.do("billing.run", {"as_of": "2026-01-01"})
    clock.set(D("2026-01-31"))
    app.do("revrec.run", {"through": "2026-01-31"})
    assert revenue(app, "2026-01", line_id="SETUP") == "2030.46"  # delivered on day one
    assert revenue(app, "2026-01", line_id="SEATS") == "97.47"  # 1,169.54 over 12 equal months (97.4617)
    assert revenue(app, "2026-01", contract="C1") == "2127.93"
    # billed 100.00 + 2,000.00 = 2,100.00 < recognised: a contract asset of 27.93
    assert deferred(app, "2026-01-31") == "0.00" and gl(app, "unbilled_receivable") == "27.93"
    rpo = app.query("remaining_performance_obligations", {"as_of": "2026-01-31"})
    assert rpo["totals"] == [{"entity": "US01", "currency": "USD", "within_12_months": "1072.07", "later": "0.00",
                              "unscheduled": "0.00", "total": "1072.07"}]


# --------------------------------------------------------------------------- modifications


def test_upgrade_mid_month_is_prospective_by_default(app, clock):
    """Stripe's "Upgrade" example: 90.00 a month from 1 April, 120.00 from 21 April: April 60.00 + 40.00."""
    clock.set(D("2026-04-01"))
    company(app)
    sign(app, "2026-04-01", [{"line_id": "L1", "price_id": "pro-90", "quantity": 1}], billing_day=1)
    app.do("billing.run", {"as_of": "2026-04-01"})
    clock.set(D("2026-04-21"))
    app.do("contract.amend", {"contract_id": "C1", "effective": "2026-04-21",
                              "changes": [{"line_id": "L1", "price_id": "pro-120"}]})
    app.do("billing.run", {"as_of": "2026-04-21"})
    inv = app.query("invoice", {"customer": "SF-1", "seq": 2})
    assert [ln["amount"] for ln in inv["lines"]] == ["-30.00", "40.00"]
    clock.set(D("2026-05-31"))
    app.do("billing.run", {"as_of": "2026-05-01"})
    app.do("revrec.run", {"through": "2026-05-31"})
    assert revenue(app, "2026-04") == "100.00"
    assert revenue(app, "2026-05") == "120.00"
    assert app.query("allocation", {"contract": "C1"})["transaction_price"] == "1420.00"
    assert ties(app, "2026-04..2026-05")


def test_price_change_as_cumulative_catch_up(app, clock):
    """100.00 a month for a year; from 1 April 200.00, as part of the existing contract (catch_up): 2,100.00 x
    3/12 = 525.00 was due by 1 April, 300.00 was recognised: April books 225.00 + 175.00, later months 175.00."""
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1}], billing_day=1)
    clock.set(D("2026-03-31"))
    app.do("revrec.run", {"through": "2026-03-31"})
    assert revenue(app, "2026-01..2026-03") == "300.00"
    app.do("contract.amend", {"contract_id": "C1", "effective": "2026-04-01", "modification": "catch_up",
                              "changes": [{"line_id": "L1", "price_id": "pro-200"}]})
    clock.set(D("2026-05-31"))
    app.do("revrec.run", {"through": "2026-05-31"})
    assert revenue(app, "2026-04") == "400.00"
    assert revenue(app, "2026-05") == "175.00"
    assert app.query("revenue_schedule", {"contract": "C1"})["lines"][0]["allocated"] == "2100.00"


def test_prospective_quantity_increase_spreads_the_rest_over_the_remaining_months(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "seat-10", "quantity": 10}], billing_day=1)
    clock.set(D("2026-04-10"))
    app.do("contract.amend", {"contract_id": "C1", "effective": "2026-04-15", "changes": [{"line_id": "L1", "quantity": 15}]})
    clock.set(D("2026-12-31"))
    app.do("revrec.run", {"through": "2026-12-31"})
    # 3 months at 100.00, April 14/30 x 100 + 16/30 x 150 = 46.67 + 80.00, then 150.00 a month
    assert revenue(app, "2026-03") == "100.00" and revenue(app, "2026-04") == "126.67"
    assert revenue(app, "2026-05") == "150.00" and revenue(app, "2026-01..2026-12") == "1626.67"


def test_cancellation_stops_recognition_and_renewal_starts_a_new_term(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1}], months=3, billing_day=1)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1}], months=12, contract="C2",
         billing_day=1)
    app.do("contract.renew", {"contract_id": "C1", "term_months": 3, "uplift_pct": "10"})
    clock.set(D("2026-02-20"))
    app.do("contract.cancel", {"contract_id": "C2", "effective": "2026-03-01"})
    clock.set(D("2026-06-30"))
    app.do("revrec.run", {"through": "2026-06-30"})
    assert revenue(app, "2026-01..2026-06", contract="C2") == "200.00"
    assert revenue(app, "2026-04..2026-06", contract="C1") == "330.00"
    alloc = app.query("allocation", {"contract": "C1"})
    assert [t["transaction_price"] for t in alloc["terms"]] == ["300.00", "330.00"]


# --------------------------------------------------------------------------- usage, milestones, credit memos


def test_usage_is_recognised_as_billed_and_milestones_on_completion(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "API", "price_id": "api", "quantity": 1},
                             {"line_id": "IMPL", "price_id": "impl", "quantity": 1,
                              "milestones": [{"milestone_id": "M1", "amount": "1000.00"},
                                             {"milestone_id": "M2", "amount": "2000.00"}]}], billing_day=1)
    clock.set(D("2026-01-20"))
    app.do("usage.record", {"customer": "SF-1", "metric": "calls", "quantity": 1500, "at": "2026-01-20", "key": "u1"})
    clock.set(D("2026-02-01"))
    app.do("milestone.complete", {"contract_id": "C1", "line_id": "IMPL", "milestone_id": "M1", "date": "2026-01-25"})
    app.do("billing.run", {"as_of": "2026-02-01"})
    app.do("revrec.run", {"through": "2026-01-31"})
    assert revenue(app, "2026-01", line_id="IMPL") == "1000.00"
    assert revenue(app, "2026-01", line_id="API") == "0.00"  # billed on 1 February
    clock.set(D("2026-02-28"))
    app.do("revrec.run", {"through": "2026-02-28"})
    assert revenue(app, "2026-02", line_id="API") == "150.00"
    events = revrec_events(app)
    roles = {ln["line_id"]: ln["revenue_role"] for e in events for ln in e["lines"] if ln["amount"] != "0.00"}
    assert roles == {"IMPL": "services_revenue", "API": "usage_revenue"}
    assert gl(app, "usage_revenue") == "-150.00" and gl(app, "services_revenue") == "-1000.00"
    rpo = app.query("remaining_performance_obligations", {"as_of": "2026-02-28"})["totals"][0]
    assert rpo["unscheduled"] == "2000.00"  # M2, not completed
    assert ties(app, "2026-01..2026-02")


def test_credit_memo_lowers_revenue_over_the_credited_service_period(app, clock):
    """Stripe's "Credit note before a payment" (docs.stripe.com/revenue-recognition/examples/credit-notes):
    a 3-month 120.00 charge from 1 January credited 30.00 recognises 31.00, 28.00, 31.00."""
    clock.set(D("2026-01-01"))
    company(app)
    app.do("price.create", {"price_id": "pro-q", "sku": "pro", "currency": "USD", "model": "flat", "amount": "120.00",
                            "period": "quarter", "timing": "advance"})
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-q", "quantity": 1}], months=3, billing_day=1)
    app.do("billing.run", {"as_of": "2026-01-01"})
    app.do("invoice.credit", {"invoice": {"customer": "SF-1", "seq": 1}, "amount": "30.00", "reason": "discount"})
    for through in ("2026-01-31", "2026-02-28", "2026-03-31"):
        clock.set(D(through))
        app.do("revrec.run", {"through": through})
    assert [revenue(app, p) for p in ("2026-01", "2026-02", "2026-03")] == ["31.00", "28.00", "31.00"]
    assert deferred(app, "2026-01-31") == "59.00"
    assert ties(app, "2026-01..2026-03")


# --------------------------------------------------------------------------- controls


def test_a_run_into_a_closed_period_is_refused_and_writes_nothing(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1}], billing_day=1)
    clock.set(D("2026-02-05"))
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    with pytest.raises(CloseloopError) as exc:
        app.do("revrec.run", {"through": "2026-01-31"})
    assert exc.value.code == "period_closed"
    assert revrec_events(app) == []
    # February is open: January's revenue lands in February, the first open period
    app.do("revrec.run", {"through": "2026-02-28"})
    assert revenue(app, "2026-01") == "0.00" and revenue(app, "2026-02") == "200.00"


def test_dry_run_says_what_a_run_would_do_and_writes_nothing(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1}], billing_day=1)
    preview = app.do("revrec.run", {"through": "2026-02-28", "dry_run": True})
    assert preview["recognized"] == [{"entity": "US01", "currency": "USD", "amount": "200.00"}]
    assert [e["period"] for e in preview["events"]] == ["2026-01", "2026-02"]
    assert revrec_events(app) == [] and revenue(app, "2026-01..2026-02") == "0.00"


def test_reconciliation_finds_deferred_revenue_moved_outside_recognition(app, clock):
    clock.set(D("2026-01-01"))
    company(app)
    sign(app, "2026-01-01", [{"line_id": "L1", "price_id": "pro-100", "quantity": 1}], billing_day=1)
    app.do("billing.run", {"as_of": "2026-01-01"})
    app.do("recon.run", {"rules": ["deferred_revenue_vs_gl"]})
    assert app.query("recon", {"rule": "deferred_revenue_vs_gl"})["breaks"] == []
    clock.set(D("2026-01-10"))
    app.do("journal.post", {"entity": "US01", "date": "2026-01-10", "memo": "manual release", "manual": True,
                            "lines": [{"account": "deferred_revenue", "debit": "40.00"},
                                      {"account": "revenue", "credit": "40.00"}]})
    app.do("recon.run", {"rules": ["deferred_revenue_vs_gl"]})
    breaks = app.query("recon", {"rule": "deferred_revenue_vs_gl"})["breaks"]
    assert len(breaks) == 1 and breaks[0]["amount"] == "40.00"


def test_foreign_currency_contract_ties_in_the_functional_currency(app, clock):
    clock.set(D("2026-01-01"))
    company(app, currency="EUR")
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": "1.10"})
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-31", "rate": "1.20"})
    sign(app, "2026-01-01", [{"line_id": "S", "price_id": "support-y", "quantity": 1}], billing_day=1)
    app.do("billing.run", {"as_of": "2026-01-01"})
    clock.set(D("2026-01-31"))
    app.do("revrec.run", {"through": "2026-01-31"})
    result = app.query("deferred_revenue", {"as_of": "2026-01-31"})
    assert result["by_currency"] == {"EUR": "1098.08"}  # 1,200.00 - 31/365 of it
    assert Decimal(result["amount"]) == -Decimal(gl(app, "deferred_revenue", "2026-01-31"))
    app.do("recon.run", {"rules": ["deferred_revenue_vs_gl"]})
    assert app.query("recon", {"rule": "deferred_revenue_vs_gl"})["breaks"] == []
    assert app.query("revenue", {"period": "2026-01", "contract": "C1"}) == {
        "period": "2026-01", "currency": "EUR", "recognized": "101.92", "by_period": {"2026-01": "101.92"}}


def test_an_invoice_line_outside_any_contract_is_recognised_on_its_date(app, clock, us01):
    """A charge billed without a contract is an obligation of its own, satisfied when it is invoiced; a negative
    one (a credit) lowers revenue the same way. Its deferred revenue is simply billed - recognised."""
    clock.set(D("2026-01-31"))
    payload = {"invoice": "INV-9", "entity": "US01", "customer": "SF-1", "currency": "USD", "date": "2026-01-20",
               "due_date": "2026-02-19", "subtotal": "70.00", "tax": "0.00", "total": "70.00", "credit_created": "0.00",
               "lines": [{"line_no": 1, "description": "consulting", "revenue_role": "services_revenue",
                          "treatment": "point_in_time", "net": "100.00", "tax": "0.00", "tax_treatment": "exempt"},
                         {"line_no": 2, "description": "goodwill", "revenue_role": "services_revenue",
                          "treatment": "point_in_time", "net": "-30.00", "tax": "0.00", "tax_treatment": "exempt"}]}
    with app.unit_of_work() as uow:
        uow.emit("invoice.issued", "invoice", "INV-9", payload, entity="US01")
    app.dispatch()
    assert gl(app, "deferred_revenue") == "-70.00" and revrec_events(app) == []
    app.do("revrec.run", {"through": "2026-01-31"})
    assert revenue(app, "2026-01") == "70.00" and revenue(app, "2026-01", contract="invoice:INV-9") == "70.00"
    assert gl(app, "deferred_revenue") == "0.00" and gl(app, "services_revenue") == "-70.00"
    assert gl(app, "unbilled_receivable") == "0.00" and deferred(app, "2026-01-31") == "0.00"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gl_ties_to_the_schedules_on_every_month_end_whatever_the_order_of_runs(app, clock, seed):
    """Contracts billed in advance, in arrears and yearly, amended prospectively and by catch-up, with bill runs
    and recognition runs in a random order (a month's recognition before or after the next month's invoices):
    on every month end the GL's deferred revenue and unbilled receivable are what the schedules say."""
    import random

    rng = random.Random(seed)
    clock.set(D("2026-01-01"))
    company(app)
    prices = ["pro-100", "pro-arrears", "support-y", "seat-10", "pro-31"]
    for i in range(4):
        start = f"2026-01-{rng.randrange(1, 28):02d}"
        lines = [{"line_id": f"L{k}", "price_id": p, "quantity": 3 if p == "seat-10" else 1}
                 for k, p in enumerate(rng.sample(prices, 2))]
        clock.set(D("2026-01-01"))
        sign(app, start, lines, contract=f"C{i}", billing_day=rng.choice([None, 1]))
    amended = False
    month_ends = ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]
    for k, end in enumerate(month_ends):
        next_first = ["2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01", "2026-06-01"][k]
        steps = [("bill", end), ("revrec", end), ("bill", next_first)]
        if rng.random() < 0.5:
            steps = [("bill", end), ("bill", next_first), ("revrec", end)]
        for kind, day in steps:
            clock.set(max(D(day), clock.today()))
            if kind == "bill":
                app.do("billing.run", {"as_of": day})
            else:
                app.do("revrec.run", {"through": day})
        if not amended and k == 1:
            app.do("contract.amend", {"contract_id": "C0", "effective": "2026-03-10",
                                      "modification": rng.choice(["prospective", "catch_up"]),
                                      "add": [{"line_id": "X", "price_id": "pro-200", "quantity": 1}]})
            amended = True
    for end in month_ends:
        result = app.query("deferred_revenue", {"as_of": end})
        assert Decimal(result["amount"]) == -Decimal(gl(app, "deferred_revenue", end)), end
        assert result["unbilled_receivable"] == gl(app, "unbilled_receivable", end), end
    assert ties(app, "2026-01..2026-05")
