"""Contracts' reconciliation side (closeloop.contracts.recon_sides) against billing's billed-to-date:
rule contract_vs_billed and the billing_leakage query/KPI, on hand-checked cases.

contracts.value_due_to_date is computed from the contract's change log alone (advance pieces due on
their first day, arrears at their period's end, one-time lines on their first day; metered and
milestone lines not counted); billing.billed_to_date is the net invoiced for the contract's committed
lines. Wherever billing has run, the two agree; a change not billed yet, a held invoice or a missing
bill run is a break, and the break closes itself once billing catches up."""

from __future__ import annotations

from datetime import date

from closeloop.catalog.model import PriceTerms
from closeloop.contracts.model import ContractLine, ProductRef, Segment
from closeloop.contracts.recon_sides import segment_due


def _product(app, sku="seat", treatment="ratable"):
    app.do("product.create", {"sku": sku, "name": sku.title(), "treatment": treatment})


def _customer(app, cust="SF-1", **extra):
    app.do("customer.upsert", {"source": "crm", "external_id": cust, "name": f"Customer {cust}", "country": "US",
                               "region": "OR", **extra})


def _contract(app, n, cust, start, lines, **extra):
    app.do("quote.create", {"quote_id": f"Q-{n}", "customer": cust, "start": start, "term_months": 12,
                            "lines": lines, **extra})
    app.do("quote.accept", {"quote_id": f"Q-{n}", "contract_id": f"C-{n}"})


def _run(app, as_of=None, entity=None):
    payload = {"rules": ["contract_vs_billed"]}
    if as_of:
        payload["as_of"] = as_of
    if entity:
        payload["entity"] = entity
    app.do("recon.run", payload)
    return app.query("recon", {"rule": "contract_vs_billed"})


def _leakage(app, **where):
    return app.query("billing_leakage", where)


def test_an_upgrade_not_billed_yet_is_a_break_until_the_bill_run(app, us01, clock):
    _customer(app)
    _product(app)
    app.do("price.create", {"price_id": "seat", "sku": "seat", "currency": "USD", "model": "per_unit",
                            "amount": "10.00", "period": "month", "timing": "advance"})
    _contract(app, 1, "SF-1", "2026-01-01", [{"line_id": "L1", "price_id": "seat", "quantity": 10}])
    app.do("billing.run", {"as_of": "2026-01-01"})
    result = _run(app)
    assert (result["matched"], result["breaks"]) == (1, [])
    clock.set(date(2026, 1, 16))
    app.do("contract.amend", {"contract_id": "C-1", "effective": "2026-01-16",
                              "changes": [{"line_id": "L1", "quantity": 20}]})
    clock.set(date(2026, 1, 20))
    # due: 100.00 x 15/31 (48.39) + 200.00 x 16/31 (103.23) = 151.62; billed 100.00
    [brk] = _run(app)["breaks"]
    assert (brk["category"], brk["left"], brk["right"], brk["amount"], brk["key"]) == (
        "amount_difference", "151.62", "100.00", "51.62", {"entity": "US01", "contract": "C-1", "currency": "USD"})
    exc = app.query("exceptions", {"kind": "recon_break", "status": "open"})["items"]
    assert [(e["amount"], e["entity"], e["record"]) for e in exc] == [
        ("51.62", "US01", {"recon_break": "contract_vs_billed:US01|C-1|USD"})]
    leak = _leakage(app, as_of="2026-01-20")
    assert (leak["value"], leak["contracts"][0]["due"], leak["contracts"][0]["billed"]) == ("51.62", "151.62", "100.00")
    # the bill run credits 100.00 x 16/31 = 51.61 and charges 200.00 x 16/31 = 103.23: 151.62 billed
    app.do("billing.run", {"as_of": "2026-01-20"})
    result = _run(app)
    assert (result["matched"], result["breaks"]) == (1, [])
    assert app.query("exceptions", {"kind": "recon_break", "status": "resolved"})["items"][0]["resolution"] == \
        "auto_closed"
    assert _leakage(app, as_of="2026-01-20")["value"] == "0"


def test_a_cancellation_credit_and_a_downgrade_agree_once_billed(app, us01, clock):
    _customer(app)
    _customer(app, "SF-2")
    _product(app)
    app.do("price.create", {"price_id": "p100", "sku": "seat", "currency": "USD", "model": "flat",
                            "amount": "100.00", "period": "month", "timing": "advance"})
    app.do("price.create", {"price_id": "seat", "sku": "seat", "currency": "USD", "model": "per_unit",
                            "amount": "20.00", "period": "month", "timing": "advance"})
    _contract(app, 1, "SF-1", "2026-01-01", [{"line_id": "L1", "price_id": "p100", "quantity": 1}])
    _contract(app, 2, "SF-2", "2026-01-01", [{"line_id": "L1", "price_id": "seat", "quantity": 10}])
    app.do("billing.run", {"as_of": "2026-02-01"})
    clock.set(date(2026, 2, 10))
    app.do("contract.cancel", {"contract_id": "C-1", "effective": "2026-02-21"})
    app.do("contract.amend", {"contract_id": "C-2", "effective": "2026-02-15", "changes": [{"line_id": "L1",
                                                                                            "quantity": 5}]})
    clock.set(date(2026, 2, 21))
    result = _run(app)
    # C-1: 100.00 + 100.00 x 20/28 = 171.43 due, 200.00 billed;
    # C-2 (10 seats at 20.00, 5 from 15 February): 200.00 + 200.00 x 14/28 + 100.00 x 14/28 = 350.00 due, 400.00 billed
    breaks = {b["key"]["contract"]: (b["left"], b["right"]) for b in result["breaks"]}
    assert breaks == {"C-1": ("171.43", "200.00"), "C-2": ("350.00", "400.00")}
    assert _leakage(app, as_of="2026-02-21")["value"] == "0"  # billed ahead is not leakage
    app.do("billing.run", {"as_of": "2026-02-21"})
    result = _run(app)
    assert (result["matched"], result["breaks"]) == (2, [])
    # after the cancellation nothing more falls due
    clock.set(date(2026, 4, 1))
    app.do("billing.run", {"as_of": "2026-04-01"})
    result = _run(app)
    assert (result["matched"], result["breaks"]) == (2, [])


def test_arrears_quarterly_one_time_usage_and_milestones(app, us01, clock):
    _customer(app)
    _product(app, "support")
    _product(app, "platform")
    _product(app, "setup", "point_in_time")
    _product(app, "api", "usage")
    _product(app, "impl", "milestone")
    app.do("price.create", {"price_id": "support", "sku": "support", "currency": "USD", "model": "flat",
                            "amount": "310.00", "period": "month", "timing": "arrears"})
    app.do("price.create", {"price_id": "platform", "sku": "platform", "currency": "USD", "model": "flat",
                            "amount": "900.00", "period": "quarter", "timing": "advance"})
    app.do("price.create", {"price_id": "setup", "sku": "setup", "currency": "USD", "model": "flat",
                            "amount": "500.00", "period": "one_time", "timing": "advance"})
    app.do("price.create", {"price_id": "api", "sku": "api", "currency": "USD", "model": "usage",
                            "amount": "0.10", "period": "month", "timing": "arrears", "metric": "api_calls"})
    app.do("price.create", {"price_id": "impl", "sku": "impl", "currency": "USD", "model": "flat",
                            "amount": "1000.00", "period": "one_time", "timing": "advance"})
    clock.set(date(2026, 1, 10))
    _contract(app, 1, "SF-1", "2026-01-10", [
        {"line_id": "S", "price_id": "support", "quantity": 1},
        {"line_id": "P", "price_id": "platform", "quantity": 1},
        {"line_id": "O", "price_id": "setup", "quantity": 1},
        {"line_id": "U", "price_id": "api", "quantity": 1},
        {"line_id": "M", "price_id": "impl", "quantity": 1,
         "milestones": [{"milestone_id": "a", "amount": "400.00"}, {"milestone_id": "b", "amount": "600.00"}]}],
        billing_day=1)
    # on 10 January: the setup fee and the platform's first, partial quarter are due. The quarters follow
    # billing day 1 from the anchor (1 February), so 10-31 January lies in the quarter 1 Nov - 31 Jan:
    # 900.00 x 22/92 = 215.22. Support is billed in arrears (nothing yet); usage and milestones not counted.
    leak = _leakage(app, as_of="2026-01-10")
    assert leak["contracts"][0]["due"] == "715.22"
    clock.set(date(2026, 1, 12))
    app.do("usage.record", {"customer": "SF-1", "metric": "api_calls", "quantity": 1000, "at": "2026-01-12",
                            "key": "u1"})
    app.do("milestone.complete", {"contract_id": "C-1", "line_id": "M", "milestone_id": "a", "date": "2026-01-12"})
    for day in ("2026-01-12", "2026-02-01", "2026-03-01", "2026-04-01"):
        clock.set(date.fromisoformat(day))
        app.do("billing.run", {"as_of": day})
        result = _run(app)
        assert (result["matched"], result["breaks"]) == (1, []), (day, result["breaks"])
    # by 1 April: setup 500 + platform 215.22 + 900 (the quarter from 1 February) + support in arrears:
    # 310 x 22/31 (220, due 1 February) + February 310 + March 310
    leak = _leakage(app, as_of="2026-04-01")
    assert (leak["value"], leak["contracts"]) == ("0", [])
    due = app.query("recon", {"rule": "contract_vs_billed"})["rules"][0]
    assert due["left"] == 1
    with app.unit_of_work() as uow:
        billed = uow.scalar("SELECT SUM(net) FROM billing_line WHERE contract_id = 'C-1' AND kind IN"
                            " ('recurring', 'one_time')")
    assert billed == 50000 + 21522 + 90000 + 22000 + 31000 + 31000


def test_a_held_invoice_is_leakage_until_released(app, us01, clock):
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-7", "name": "No state", "country": "US"})
    _product(app)
    app.do("price.create", {"price_id": "p", "sku": "seat", "currency": "USD", "model": "flat",
                            "amount": "500.00", "period": "month", "timing": "advance"})
    _contract(app, 7, "SF-7", "2026-01-01", [{"line_id": "L1", "price_id": "p", "quantity": 1}])
    assert app.do("billing.run", {"as_of": "2026-01-01"})["held"] == 1
    clock.set(date(2026, 1, 5))
    [brk] = _run(app)["breaks"]
    assert (brk["category"], brk["amount"]) == ("missing_right", "500.00")
    assert app.query("kpi", {"name": "billing_leakage", "period": "2026-01"})["value"] == "500.00"
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-7", "region": "OR"})
    [exc] = app.query("exceptions", {"kind": "tax_undetermined", "status": "open"})["items"]
    app.do("exception.resolve", {"exception": exc["id"], "action": "release", "reason": "state recorded"})
    assert _run(app)["breaks"] == []
    # released on 5 January: billed in January after all
    assert app.query("kpi", {"name": "billing_leakage", "period": "2026-01"})["value"] == "0"


def test_a_renewal_with_uplift_and_the_entity_filter(app, us01, de01, clock):
    _customer(app, entity="US01")
    app.do("customer.upsert", {"source": "crm", "external_id": "DE-1", "name": "Hooli GmbH", "country": "DE",
                               "tax_id": "DE136695976", "entity": "DE01"})
    _product(app)
    app.do("price.create", {"price_id": "usd", "sku": "seat", "currency": "USD", "model": "per_unit",
                            "amount": "10.00", "period": "month", "timing": "advance"})
    app.do("price.create", {"price_id": "eur", "sku": "seat", "currency": "EUR", "model": "per_unit",
                            "amount": "10.00", "period": "month", "timing": "advance"})
    _contract(app, 1, "SF-1", "2026-01-01", [{"line_id": "L1", "price_id": "usd", "quantity": 10}], entity="US01")
    _contract(app, 2, "DE-1", "2026-01-01", [{"line_id": "L1", "price_id": "eur", "quantity": 3}], entity="DE01")
    clock.set(date(2026, 12, 1))
    app.do("contract.renew", {"contract_id": "C-1", "term_months": 12, "uplift_pct": "5"})
    app.do("billing.run", {"as_of": "2026-12-01", "entity": "US01"})
    clock.set(date(2027, 1, 1))
    app.do("billing.run", {"as_of": "2027-01-01", "entity": "US01"})
    result = _run(app, entity="US01")
    assert (result["matched"], result["breaks"]) == (1, [])
    # 12 x 100.00 + 105.00 (10 seats at 10.50) billed and due
    assert _leakage(app, as_of="2027-01-01", entity="US01")["value"] == "0"
    # DE01 was never billed: its 2026 term is leakage, in EUR, 12 x 30.00
    leak = _leakage(app, as_of="2027-01-01")
    assert (leak["value"], leak["by_currency"]) == ("360.00", {"EUR": "360.00"})
    [brk] = _run(app, entity="DE01")["breaks"]
    assert (brk["key"], brk["amount"]) == ({"entity": "DE01", "contract": "C-2", "currency": "EUR"}, "360.00")
    assert app.query("kpi", {"name": "billing_leakage", "period": "2026-12", "entity": "US01"})["value"] == "0"


def _line(months, timing, amount_minor=3100):
    terms = PriceTerms.from_dict({"price_id": "p", "sku": "x", "currency": "USD", "model": "flat",
                                  "amount": f"{amount_minor / 100:.2f}", "period": {1: "month", 3: "quarter"}[months],
                                  "timing": timing})
    return ContractLine(line_id="L", product=ProductRef("x", "X", "ratable", "saas"), list_terms=terms,
                        quantity=1, performing_entity="US01", start=date(2026, 1, 10))


def test_segment_due_by_timing():
    advance = Segment(_line(1, "advance"), date(2026, 1, 10), date(2026, 12, 31), 1, "activation")
    arrears = Segment(_line(1, "arrears"), date(2026, 1, 10), date(2026, 12, 31), 1, "activation")
    start = date(2026, 1, 10)
    # advance: the 10-31 January piece (22/31 of 31.00 = 22.00) is due on 10 January
    assert segment_due(advance, start, 1, date(2026, 1, 10)) == (2200, date(2026, 1, 10))
    assert segment_due(advance, start, 1, date(2026, 2, 1)) == (5300, date(2026, 1, 10))
    # arrears: nothing until the period ends on 1 February
    assert segment_due(arrears, start, 1, date(2026, 1, 31)) == (0, None)
    assert segment_due(arrears, start, 1, date(2026, 2, 1)) == (2200, date(2026, 2, 1))
    # a migrated contract billed through 28 February by the legacy system: March onwards only
    assert segment_due(advance, start, 1, date(2026, 3, 1), billed_through=date(2026, 2, 28)) == (
        3100, date(2026, 3, 1))
