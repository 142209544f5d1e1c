"""Revenue recognition of contracts migrated from a legacy system (docs/revenue.md, "Migrated contracts"):
nothing through the cutover is recognised again, what the legacy system billed in advance is carried as each
contract's opening deferred revenue and released over the days it was billed for, a contract billed in arrears
carries a contract asset, and the GL's deferred revenue ties to the schedules month after month (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.integration.test_migration_import import _files

D = date.fromisoformat
MONTHS = ("2026-02", "2026-03", "2026-04")


def dataset(**over: str | None) -> dict[str, str]:
    """OldBill's US01 with four contracts, cutover 31 January 2026:

    - K1: 100.00 a month from 1 June 2025, billed through 31 January (nothing carried);
    - K2: 100.00 a month from 15 June 2025 (billing day 15), billed through 14 February: 1-14 February
      carried, 14/31 of 100.00 = 45.16;
    - K3: 1,200.00 a year from 1 July 2025, billed through 30 June 2026: 150 of 365 days carried = 493.15;
    - K4: 100.00 a month in arrears from 1 June 2025, billed through 31 December: January was recognised by
      OldBill and is billed by closeloop on 1 February — a contract asset of 100.00.

    The opening balances carry exactly that: deferred revenue 538.31, unbilled receivable 100.00."""
    files = _files(**{
        "products.csv": "sku,name,treatment\nPLAT,Platform,ratable\nSUPP,Premium support,ratable\n",
        "prices.csv": ("price_id,sku,currency,model,amount,period,timing\n"
                       "PLAT-USD,PLAT,USD,flat,100.00,month,advance\nPLAT-200,PLAT,USD,flat,200.00,month,advance\n"
                       "PLAT-ARR,PLAT,USD,flat,100.00,month,arrears\nSUPP-USD,SUPP,USD,flat,1200.00,year,advance\n"),
        "customers.csv": ("legacy_id,name,country,region,postal_code,tax_id,entity,currency\n"
                          "C1,Globex LLC,US,NY,10001,12-3456789,US01,USD\n"
                          "C2,Initech Inc,US,TX,78701,20-1234567,US01,USD\n"
                          "C3,Hooli Inc,US,CA,94043,27-1234567,US01,USD\n"
                          "C4,Umbrella Corp,US,WA,98101,45-1234567,US01,USD\n"),
        "contracts.csv": ("contract_id,customer_id,start,term_months,billing_day,billed_through\n"
                          "K1,C1,2025-06-01,24,1,2026-01-31\n"
                          "K2,C2,2025-06-15,24,15,2026-02-14\n"
                          "K3,C3,2025-07-01,36,1,2026-06-30\n"
                          "K4,C4,2025-06-01,24,1,2025-12-31\n"),
        "contract_lines.csv": ("contract_id,line_id,price_id,quantity\n"
                               "K1,L1,PLAT-USD,1\nK2,L1,PLAT-USD,1\nK3,L1,SUPP-USD,1\nK4,L1,PLAT-ARR,1\n"),
        "opening_balances.csv": ("entity,account,debit,credit\n"
                                 "US01,accounts_receivable,250.00,\nUS01,unbilled_receivable,100.00,\n"
                                 "US01,cash,1188.31,\nUS01,deferred_revenue,,538.31\n"
                                 "US01,retained_earnings,,1000.00\n"),
    })
    files.update({k: v for k, v in over.items() if v is not None})
    return files


def revenue(app, period: str, **where: Any) -> str:
    return app.query("revenue", {"period": period, **where})["recognized"]


def recon_clean(app) -> bool:
    app.do("recon.run", {"rules": ["deferred_revenue_vs_gl"]})
    return app.query("recon", {"rule": "deferred_revenue_vs_gl"})["breaks"] == []


def month_end(app, clock, month: str) -> dict[str, Any]:
    """The month's bill runs (the 1st and the 15th), then recognition through its last day."""
    first = D(f"{month}-01")
    for day in (first, first.replace(day=15)):
        clock.set(day)
        app.do("billing.run", {"as_of": day.isoformat()})
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    clock.set(last)
    return app.do("revrec.run", {"through": last.isoformat()})


def test_migrated_contracts_are_recognised_from_the_day_after_the_cutover(app, clock):
    clock.set(D("2026-02-01"))
    report = app.do("migration.import", {"files": dataset()})
    assert report["status"] == "accepted" and report["created"]["contracts"] == 4
    assert "do not run revrec.run" not in " ".join(report.get("notes", []))
    # What recognition takes over, per contract: the opening balances hold exactly the totals.
    migrated = app.query("revenue_migrated", {"entity": "US01"})
    assert [(c["contract_id"], c["legacy_billed"], c["legacy_recognized"], c["deferred"], c["unbilled"])
            for c in migrated["contracts"]] == [
        ("K1", "800.00", "800.00", "0.00", "0.00"),
        ("K2", "800.00", "754.84", "45.16", "0.00"),
        ("K3", "1200.00", "706.85", "493.15", "0.00"),
        ("K4", "700.00", "800.00", "0.00", "100.00")]
    assert migrated["totals"] == [{"entity": "US01", "currency": "USD", "contracts": 4, "deferred": "538.31",
                                   "unbilled": "100.00"}]
    assert app.query("deferred_revenue", {"as_of": "2026-01-31"})["amount"] == "538.31"
    assert app.query("deferred_revenue", {"as_of": "2026-01-31"})["unbilled_receivable"] == "100.00"
    assert app.query("deferred_revenue", {"as_of": "2026-01-30"})["amount"] == "0.00"
    assert recon_clean(app)

    # A run through the cutover finds nothing to recognise: OldBill recognised June to January.
    clock.set(D("2026-02-01"))
    run = app.do("revrec.run", {"through": "2026-01-31"})
    assert run["recognized"] == [] and run["lines"] == 0
    assert app.query("revenue_run_status", {"through": "2026-01-31"})["done"] is True

    expected = {  # K2: 1-14 Feb from the carried period, then 15 Feb - 14 Mar, ...; K3: 493.15 over Feb-Jun
        "K1": ("100.00", "100.00", "100.00"),
        "K2": ("95.16", "104.84", "98.49"),
        "K3": ("92.05", "101.92", "98.63"),
        "K4": ("100.00", "100.00", "100.00"),
    }
    totals = {"2026-02": "387.21", "2026-03": "406.76", "2026-04": "397.12"}
    deferred = {"2026-02": "451.10", "2026-03": "344.34", "2026-04": "247.22"}
    for month in MONTHS:
        run = month_end(app, clock, month)
        assert run["recognized"] == [{"entity": "US01", "currency": "USD", "amount": totals[month]}]
        last = run["through"]
        assert app.query("deferred_revenue", {"as_of": last})["amount"] == deferred[month]
        assert app.query("balance", {"role": "deferred_revenue", "as_of": last})["amount"] == f"-{deferred[month]}"
        # K4 is recognised a month before it is billed: the contract asset stays at one month
        assert app.query("balance", {"role": "unbilled_receivable", "as_of": last})["amount"] == "100.00"
        assert recon_clean(app), month
    for cid, amounts in expected.items():
        by_period = app.query("revenue", {"period": "2025-01..2026-04", "contract": cid})["by_period"]
        assert by_period == dict(zip(MONTHS, amounts, strict=True)), cid
    # Nothing before the cutover, in the revenue reports and in the GL.
    assert revenue(app, "2025-01..2026-01") == "0.00"
    assert app.query("balance", {"role": "revenue", "as_of": "2026-01-31"})["amount"] == "0.00"
    assert app.query("balance", {"role": "revenue", "as_of": "2026-04-30"})["amount"] == "-1191.09"

    roll = app.query("deferred_revenue_rollforward", {"period": "2026-01..2026-04"})
    assert roll["ties"], roll
    assert [(r["period"], r["opening"], r["billed"], r["migrated"], r["recognized"], r["contract_asset_offset"],
             r["closing"]) for r in roll["rows"]] == [
        ("2026-01", "0.00", "0.00", "538.31", "0.00", "0.00", "538.31"),
        ("2026-02", "538.31", "300.00", "0.00", "287.21", "100.00", "451.10"),
        ("2026-03", "451.10", "300.00", "0.00", "306.76", "100.00", "344.34"),
        ("2026-04", "344.34", "300.00", "0.00", "297.12", "100.00", "247.22")]

    schedule = app.query("revenue_schedule", {"contract": "K2"})
    assert schedule["migrated"] == {"cutover": "2026-01-31", "billed_through": "2026-02-14", "system": "OldBill"}
    line = schedule["lines"][0]
    assert (line["allocated"], line["legacy_recognized"], line["scheduled"]) == ("2400.00", "754.84", "1645.16")
    assert min(line["periods"]) == "2026-02"
    rpo = app.query("remaining_performance_obligations", {"as_of": "2026-04-30", "contract": "K3"})
    # May and June (billed in advance by OldBill: 101.92 + 98.63), then two more years of 1,200.00
    assert rpo["contracts"][0]["total"] == "2600.55"

    # A second import of the same data set changes nothing, in recognition either.
    again = app.do("migration.import", {"files": dataset()})
    assert again["created"] == {}
    assert app.do("revrec.run", {"through": "2026-04-30"})["recognized"] == []
    assert recon_clean(app)


def test_a_cutover_inside_a_month_cuts_the_billed_period_by_days(app, clock):
    """Cutover 15 January: OldBill recognised 1-15 January of the January it billed; closeloop recognises
    16-31 January (16/31 of 100.00 = 51.61), which the opening balances carry as deferred revenue."""
    clock.set(D("2026-01-20"))
    files = _files(**{
        "manifest.yaml": "system: OldBill\ncutover: '2026-01-15'\n",
        "open_invoices.csv": ("number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                              "LEG-1,C1,US01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                              "LEG-2,C2,US01,USD,2026-01-15,2026-02-14,250.00,0.00,150.00\n"),
        "opening_balances.csv": ("entity,account,debit,credit\nUS01,accounts_receivable,250.00,\n"
                                 "US01,cash,801.61,\nUS01,deferred_revenue,,51.61\n"
                                 "US01,retained_earnings,,1000.00\n")})
    app.do("migration.import", {"files": files})
    assert app.query("revenue_migrated", {})["totals"][0]["deferred"] == "51.61"
    clock.set(D("2026-01-31"))
    run = app.do("revrec.run", {"through": "2026-01-31"})
    assert run["recognized"] == [{"entity": "US01", "currency": "USD", "amount": "51.61"}]
    assert revenue(app, "2025-06..2026-01") == "51.61"
    assert app.query("deferred_revenue", {"as_of": "2026-01-31"})["amount"] == "0.00"
    assert app.query("deferred_revenue_rollforward", {"period": "2026-01"})["ties"]
    assert recon_clean(app)
    clock.set(D("2026-02-28"))
    app.do("billing.run", {"as_of": "2026-02-01"})
    app.do("revrec.run", {"through": "2026-02-28"})
    assert revenue(app, "2026-02") == "100.00"
    assert recon_clean(app)


def test_an_amendment_after_the_cutover_is_recognised_as_for_any_contract(app, clock):
    """K1 (migrated, 100.00 a month) moves to 200.00 from 1 March, prospectively: February 100.00, March and
    April 200.00; K2-K4 as before."""
    clock.set(D("2026-02-01"))
    app.do("migration.import", {"files": dataset()})
    month_end(app, clock, "2026-02")
    clock.set(D("2026-02-28"))
    app.do("contract.amend", {"contract_id": "K1", "effective": "2026-03-01",
                              "changes": [{"line_id": "L1", "price_id": "PLAT-200"}]})
    month_end(app, clock, "2026-03")
    month_end(app, clock, "2026-04")
    assert app.query("revenue", {"period": "2026-01..2026-04", "contract": "K1"})["by_period"] == {
        "2026-02": "100.00", "2026-03": "200.00", "2026-04": "200.00"}
    assert revenue(app, "2025-01..2026-01") == "0.00"
    assert app.query("deferred_revenue_rollforward", {"period": "2026-01..2026-04"})["ties"]
    assert recon_clean(app)


def test_a_credit_memo_on_a_legacy_invoice_is_a_reduction_of_revenue(app, clock):
    """LEG-2's revenue was OldBill's: a 10.00 credit on it is posted against deferred revenue like any credit memo,
    and the next run recognises it (negative) on the memo's date, so deferred revenue is back where it was."""
    clock.set(D("2026-02-03"))
    app.do("migration.import", {"files": _files()})
    memo = app.do("invoice.credit", {"invoice": "LEG-2", "reason": "goodwill", "amount": "10.00"})
    assert memo["invoice_balance"] == "140.00"
    assert app.query("balance", {"role": "deferred_revenue"})["amount"] == "10.00"
    assert recon_clean(app)  # recognition saw the memo (no delivery left waiting)
    app.do("revrec.run", {"through": "2026-02-03"})
    assert revenue(app, "2026-02", customer="C2") == "-10.00"
    assert revenue(app, "2026-02", customer="C1") == "10.71"  # K1, 1-3 February (not billed yet)
    assert app.query("balance", {"role": "deferred_revenue"})["amount"] == "0.00"
    assert app.query("balance", {"role": "accounts_receivable"})["amount"] == "240.00"
    assert app.query("deferred_revenue_rollforward", {"period": "2026-02"})["ties"]
    assert recon_clean(app)
