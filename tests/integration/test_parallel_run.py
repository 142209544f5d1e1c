"""Parallel run: a legacy invoice register against closeloop's bill run, line by line, causes, exceptions,
reruns that update rather than duplicate, and the wave gate that reads the last run."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError

HEADER = "invoice,customer,date,sku,description,period_start,period_end,quantity,unit_price,amount,tax,currency\n"


@pytest.fixture
def billed(app, clock, us01):
    """Three customers on a 100.00 monthly platform fee (B also 5 seats at 10.00), billed for February."""
    app.do("product.create", {"sku": "PLAT", "name": "Platform", "treatment": "ratable"})
    app.do("product.create", {"sku": "SEAT", "name": "Seats", "treatment": "ratable"})
    app.do("price.create", {"price_id": "PLAT-M", "sku": "PLAT", "currency": "USD", "model": "flat",
                            "amount": "100.00", "period": "month", "timing": "advance"})
    app.do("price.create", {"price_id": "SEAT-M", "sku": "SEAT", "currency": "USD", "model": "per_unit",
                            "amount": "10.00", "period": "month", "timing": "advance"})
    for ext, start, seats in (("A", "2026-01-01", 0), ("B", "2026-01-01", 5), ("C", "2026-02-10", 0)):
        app.do("customer.upsert", {"source": "crm", "external_id": ext, "name": f"Customer {ext} Ltd",
                                   "country": "US", "region": "OR", "entity": "US01", "currency": "USD"})
        lines = [{"line_id": "L1", "price_id": "PLAT-M", "quantity": "1"}]
        if seats:
            lines.append({"line_id": "L2", "price_id": "SEAT-M", "quantity": str(seats)})
        app.do("quote.create", {"quote_id": f"Q-{ext}", "customer": ext, "start": start, "term_months": 12,
                                "billing_day": 1, "lines": lines})
        app.do("quote.accept", {"quote_id": f"Q-{ext}", "contract_id": f"K-{ext}"})
    clock.set(date(2026, 2, 28))
    app.do("billing.run", {"as_of": "2026-02-10"})
    return app


def register(*rows: str) -> str:
    return HEADER + "".join(r + "\n" for r in rows)


def test_a_price_difference_and_the_other_causes(billed):
    app = billed
    content = register(
        "L-100,A,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,110.00,110.00,0.00,USD",  # price
        "L-101,B,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",  # matched
        "L-101,B,2026-02-01,SEAT,Seats,2026-02-01,2026-02-28,5,10.00,50.00,4.00,USD",       # tax
        "L-101,B,2026-02-01,SUPP,Support,2026-02-01,2026-02-28,1,30.00,30.00,0.00,USD",     # missing
        "L-102,C,2026-02-10,PLAT,Platform,2026-02-10,2026-02-28,1,100.00,70.00,0.00,USD",   # proration
        "L-099,A,2026-01-01,PLAT,Platform,2026-01-01,2026-01-31,1,100.00,100.00,0.00,USD",  # January: left out
    )
    imported = app.do("parallel.import", {"entity": "US01", "period": "2026-02", "content": content,
                                          "system": "OldBill"})
    assert imported["lines"] == 5 and imported["invoices"] == 3 and imported["skipped"] == {"outside_period": 1}
    run = app.do("parallel.run", {"entity": "US01", "period": "2026-02"})
    causes = [(d["customer"], d["cause"], d["legacy"], d["closeloop"], d["difference"]) for d in run["differences"]]
    # C from 10 February: 100.00 x 19/28 = 67.86 in closeloop, the legacy system prorated to 70.00.
    assert causes == [("A", "price", "110.00", "100.00", "-10.00"),
                      ("B", "tax", "54.00", "50.00", "-4.00"),
                      ("B", "missing", "30.00", "0.00", "-30.00"),
                      ("C", "proration", "70.00", "67.86", "-2.14")]
    assert run["matched"] == 1
    assert run["difference"] == "46.14"
    breaks = app.query("exceptions", {"kind": "recon_break", "status": "open"})
    assert breaks["count"] == 4
    assert {i["details"]["cause"] for i in breaks["items"]} == {"price", "tax", "missing", "proration"}
    assert all(i["details"]["rule"] == "parallel_run" for i in breaks["items"])
    a_break = next(i for i in breaks["items"] if i["details"]["cause"] == "price")
    assert a_break["amount"] == "10.00" and a_break["record"] == {"customer": "A"}

    # The legacy system fixes A's price and B's tax; a rerun updates the rest and closes what no longer differs.
    fixed = register(
        "L-100,A,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",
        "L-101,B,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",
        "L-101,B,2026-02-01,SEAT,Seats,2026-02-01,2026-02-28,5,10.00,50.00,0.00,USD",
        "L-101,B,2026-02-01,SUPP,Support,2026-02-01,2026-02-28,1,30.00,30.00,0.00,USD",
        "L-102,C,2026-02-10,PLAT,Platform,2026-02-10,2026-02-28,1,100.00,70.00,0.00,USD",
        "L-103,D,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",
    )
    app.do("parallel.import", {"entity": "US01", "period": "2026-02", "content": fixed})
    rerun = app.do("parallel.run", {"entity": "US01", "period": "2026-02"})
    assert rerun["matched"] == 3 and rerun["exceptions_closed"] == 2
    assert [(d["customer"], d["cause"]) for d in rerun["differences"]] == [
        ("B", "missing"), ("C", "proration"), ("D", "missing")]
    open_ = app.query("exceptions", {"kind": "recon_break", "status": "open"})
    assert open_["count"] == 3
    all_ = app.query("exceptions", {"kind": "recon_break"})
    assert all_["count"] == 5  # 4 from the first run (2 closed) + D's new one; none doubled
    runs = app.query("parallel_run", {"entity": "US01"})["runs"]
    assert [r["difference"] for r in runs] == ["46.14", "132.14"]
    assert runs[-1]["period"] == "2026-02" and runs[-1]["differences"][0]["line_count"] == 1


def test_an_extra_line_and_the_wave_gate(billed):
    app = billed
    app.do("parallel.import", {"entity": "US01", "period": "2026-02", "content": register(
        "L-100,A,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",
        "L-102,C,2026-02-10,PLAT,Platform,2026-02-10,2026-02-28,1,100.00,67.86,0.00,USD")})
    run = app.do("parallel.run", {"entity": "US01", "period": "2026-02"})
    assert [(d["customer"], d["cause"], d["difference"]) for d in run["differences"]] == [("B", "extra", "150.00")]
    assert run["difference"] == "150.00" and run["matched"] == 2
    app.do("waves.plan", {"body": "waves:\n  - wave: W1\n    scope: {entities: [US01]}\n    gates:\n"
                                  "      - {measure: parallel_run_difference, max: \"0.00\"}\n"})
    gate = app.query("waves_status", {"wave": "W1"})["waves"][0]["gates"][0]
    assert gate["value"] == "150.00" and gate["passed"] is False
    assert gate["evidence"] == "parallel run 2026-02: difference 150.00 (maximum 0.00)"
    app.do("parallel.import", {"entity": "US01", "period": "2026-02", "content": register(
        "L-100,A,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",
        "L-101,B,2026-02-01,PLAT,Platform,2026-02-01,2026-02-28,1,100.00,100.00,0.00,USD",
        "L-101,B,2026-02-01,SEAT,Seats,2026-02-01,2026-02-28,5,10.00,50.00,0.00,USD",
        "L-102,C,2026-02-10,PLAT,Platform,2026-02-10,2026-02-28,1,100.00,67.86,0.00,USD")})
    clean = app.do("parallel.run", {"entity": "US01", "period": "2026-02"})
    assert clean["differences"] == [] and clean["difference"] == "0.00" and clean["matched"] == 4
    assert app.query("waves_status", {"wave": "W1"})["waves"][0]["go"] is True
    assert app.query("exceptions", {"kind": "recon_break", "status": "open"})["count"] == 0


def test_register_problems_refuse_the_import(billed):
    app = billed
    with pytest.raises(CloseloopError) as err:
        app.do("parallel.import", {"entity": "US01", "period": "2026-02",
                                   "content": "invoice,customer,date\nL-1,A,2026-02-01\n"})
    assert err.value.code == "validation_error" and "has no column amount" in err.value.message
    with pytest.raises(CloseloopError) as err:
        app.do("parallel.import", {"entity": "US01", "period": "2026-02", "content": register(
            "L-1,A,2026-02-01,PLAT,Platform,,,1,100,1O0.00,0.00,USD",
            "L-2,A,2026-02-31,PLAT,Platform,,,1,100,100.00,0.00,USD")})
    assert err.value.message.startswith("register.csv: 2 row(s) cannot be read, nothing was imported (first: line 2,")
    assert [(p["row"], p["field"]) for p in err.value.details["problems"]] == [(2, "amount"), (3, "date")]
    with pytest.raises(CloseloopError) as err:
        app.do("parallel.import", {"entity": "US01", "period": "2026-02", "content": register(
            "L-1,A,2026-02-01,PLAT,Platform,,,1,100,99999999999999999999.00,0.00,USD",
            "L-2," + "B" * 200 + ",2026-02-01,PLAT,Platform,,,1,100,100.00,0.00,USD")})
    assert [(p["row"], p["field"]) for p in err.value.details["problems"]] == [(2, "amount"), (3, "customer")]
    with pytest.raises(CloseloopError) as err:
        app.do("parallel.run", {"entity": "US01", "period": "2026-03"})
    assert err.value.code == "not_found"
    assert app.query("parallel_run", {})["runs"] == []
