"""Contracts: activation, amendments, renewals (manual and automatic), cancellation, history as of any date,
and the events billing and revenue recognition act on."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from closeloop.catalog.model import PriceTerms
from closeloop.catalog.rating import rate
from closeloop.contracts.service import validate_contract_payload
from tests.fixtures.contracts.helpers import catalogue, company, events, refuse, seats_quote


@pytest.fixture
def world(app):
    company(app)
    catalogue(app)
    return app


def sign(app, quote_id="Q1", contract_id="C1", **kw):
    seats_quote(app, quote_id, **kw)
    return app.do("quote.accept", {"quote_id": quote_id, "contract_id": contract_id})


def contract(app, as_of=None, contract_id="C1"):
    return app.query("contract", {"contract_id": contract_id, "as_of": as_of})


def test_activation_emits_everything_billing_and_revenue_need(world):
    app = world
    app.do("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
                            "billing_day": 1, "auto_renew": True, "lines": [
                                {"line_id": "seats", "price_id": "seat-usd", "quantity": 10, "discount_pct": "10"},
                                {"line_id": "calls", "price_id": "api-usd", "quantity": 0},
                                {"line_id": "impl", "price_id": "impl-usd", "quantity": 1, "performing_entity": "DE01",
                                 "milestones": [{"milestone_id": "M1", "amount": "30000.00"}]}]})
    app.do("quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    [ev] = events(app, "contract.")
    assert (ev["type"], ev["aggregate_id"], ev["entity"], ev["version"]) == ("contract.activated", "C1", "US01", 1)
    p = ev["payload"]
    customer_id = app.query("customer", {"external_id": "SF-1"})["id"]
    assert {k: p[k] for k in ("contract_id", "quote_id", "customer", "customer_id", "entity", "currency",
                              "billing_day", "auto_renew", "start", "service_end", "effective", "modification")} == {
        "contract_id": "C1", "quote_id": "Q1", "customer": "SF-1", "customer_id": customer_id, "entity": "US01",
        "currency": "USD", "billing_day": 1, "auto_renew": True, "start": "2026-01-01", "service_end": "2026-12-31",
        "effective": "2026-01-01", "modification": None}
    assert p["term"] == {"number": 1, "start": "2026-01-01", "end": "2026-12-31", "months": 12, "uplift_pct": None}
    lines = {ln["line_id"]: ln for ln in p["lines"]}
    seats = lines["seats"]
    assert {k: seats[k] for k in ("sku", "treatment", "tax_code", "quantity", "discount_pct", "unit_amount",
                                  "period_amount", "ssp", "ssp_unit", "performing_entity", "from", "to")} == {
        "sku": "seat", "treatment": "ratable", "tax_code": "saas", "quantity": "10", "discount_pct": "10",
        "unit_amount": "9.00", "period_amount": "90.00", "ssp": "1440.00", "ssp_unit": "12",
        "performing_entity": "US01", "from": "2026-01-01", "to": "2026-12-31"}
    assert seats["price"] == {"price_id": "seat-usd", "model": "per_unit", "currency": "USD", "amount": "10",
                              "tiers": [], "package_size": None, "period": "month", "timing": "advance",
                              "metric": None, "aggregation": None, "aggregation_property": None}
    calls = lines["calls"]
    assert calls["metered"] is True and calls["period_amount"] is None and calls["treatment"] == "usage"
    # billing rates usage from the event alone: 15,000 calls = 1,000 x 0.10 + 9,000 x 0.05 + 5,000 x 0.01
    assert rate(PriceTerms.from_dict(calls["price"]), 15000, discount_pct=calls["discount_pct"]) == 600_00
    impl = lines["impl"]
    assert impl["performing_entity"] == "DE01" and impl["milestones"] == [{"milestone_id": "M1", "amount": "30000.00"}]
    assert impl["treatment"] == "milestone" and impl["tax_code"] == "services" and impl["recurring"] is False
    assert p["values"] == {"tcv": "31080.00", "acv": "1080.00", "mrr": "90.00", "one_time": "30000.00"}
    assert [c["action"] for c in p["changed_lines"]] == ["added", "added", "added"]
    assert [(s["line_id"], s["from"], s["to"], s["value"]) for s in p["segments"]] == [
        ("seats", "2026-01-01", "2026-12-31", "1080.00"), ("calls", "2026-01-01", "2026-12-31", "0.00"),
        ("impl", "2026-01-01", "2026-12-31", "30000.00")]
    validate_contract_payload(p)
    with pytest.raises(ValueError) as bad:
        validate_contract_payload({**p, "customer_id": "12", "lines": [{"line_id": "x", "price": {}}]})
    assert "customer_id: missing or not int" in str(bad.value) and "lines[0].price.model: missing" in str(bad.value)


def test_amendment_mid_term_is_prorated_and_the_contract_reads_as_of_any_date(world, clock):
    app = world
    sign(app)
    clock.set(date(2026, 4, 10))
    r = app.do("contract.amend", {"contract_id": "C1", "effective": "2026-04-15",
                                  "changes": [{"line_id": "L1", "quantity": 15}]})
    assert r["changed_lines"] == [{"line_id": "L1", "action": "changed"}]
    # 3 months x 100 + 14/30 x 100 (46.67) then 16/30 x 150 (80.00) + 8 x 150
    assert (r["tcv"], r["mrr"], r["lines"][0]["quantity"]) == ("1626.67", "150.00", "15")
    assert r["amendments"] == [{"seq": 2, "ref": "C1-A1", "kind": "amendment", "effective": "2026-04-15",
                                "recorded_on": "2026-04-10", "modification": "prospective",
                                "changes": [{"line_id": "L1", "quantity": "15"}], "added": []}]
    before = contract(app, "2026-04-14")
    assert (before["tcv"], before["mrr"], before["lines"][0]["quantity"]) == ("1200.00", "100.00", "10")
    assert [c["ref"] for c in before["pending_changes"]] == ["C1-A1"]
    today = contract(app)  # the clock is on 2026-04-10: the amendment is not in force yet
    assert today["as_of"] == "2026-04-10" and today["mrr"] == "100.00"
    assert contract(app, "2026-04-15")["lines"][0]["quantity"] == "15"
    assert contract(app, "2025-12-01")["status"] == "active"  # signed, not started: its first lines
    assert contract(app, "2025-12-01")["mrr"] == "0.00"
    after_end = contract(app, "2027-02-01")
    assert (after_end["status"], after_end["mrr"], after_end["end"]) == ("expired", "0.00", "2026-12-31")
    [ev] = [e for e in events(app, "contract.amended")]
    p = ev["payload"]
    assert p["effective"] == "2026-04-15" and p["modification"] == "prospective"
    assert p["changed_lines"][0]["before"]["quantity"] == "10" and p["changed_lines"][0]["after"]["quantity"] == "15"
    assert [(s["from"], s["to"], s["quantity"], s["value"]) for s in p["segments"]] == [
        ("2026-01-01", "2026-04-14", "10", "346.67"), ("2026-04-15", "2026-12-31", "15", "1280.00")]
    history = app.query("contract_history", {"contract_id": "C1"})
    assert [(h["kind"], h["actor"], h["void"]) for h in history["items"]] == [("activation", "tester", False),
                                                                              ("amendment", "tester", False)]


def test_price_change_added_and_removed_lines_catch_up(world):
    app = world
    app.do("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
                            "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 10},
                                      {"line_id": "L2", "price_id": "support-usd-q", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    assert contract(app, "2026-01-01")["tcv"] == "2400.00"  # 12 x 100 + 4 x 300
    r = app.do("contract.amend", {"contract_id": "C1", "effective": "2026-07-01", "modification": "catch_up",
                                  "amendment_id": "CO-7", "reason": "upgrade to pro",
                                  "changes": [{"line_id": "L1", "price_id": "seat-usd-pro"},
                                              {"line_id": "L2", "remove": True}],
                                  "add": [{"line_id": "L3", "price_id": "platform-usd", "quantity": 1}]})
    assert sorted((c["line_id"], c["action"]) for c in r["changed_lines"]) == [
        ("L1", "changed"), ("L2", "removed"), ("L3", "added")]
    assert [(ln["line_id"], ln["unit_amount"], ln["amount"]) for ln in r["lines"]] == [
        ("L1", "15.00", "150.00"), ("L3", "500.00", "500.00")]
    # 6 x 100 + 2 x 300 (two quarters) + 6 x 150 + 6 x 500
    assert (r["tcv"], r["mrr"]) == ("5100.00", "650.00")
    p = events(app, "contract.amended")[0]["payload"]
    assert p["modification"] == "catch_up" and p["change"]["ref"] == "CO-7" and p["change"]["reason"] == "upgrade to pro"
    added = [c for c in p["changed_lines"] if c["action"] == "added"][0]["after"]
    assert added["ssp_source"] == "contract_price" and added["ssp"] == "3000.00" and added["from"] == "2026-07-01"
    changed = [c for c in p["changed_lines"] if c["line_id"] == "L1"][0]
    assert changed["before"]["price"]["price_id"] == "seat-usd" and changed["after"]["price"]["price_id"] == "seat-usd-pro"


def test_bad_amendments_are_refused_and_write_nothing(world, clock):
    app = world
    sign(app, start="2026-02-01")
    app.do("quote.create", {"quote_id": "Q2", "customer": "SF-1", "start": "2026-02-01", "term_months": 12,
                            "lines": [{"line_id": "S", "price_id": "onboarding-usd", "quantity": 1},
                                      {"line_id": "L", "price_id": "seat-usd", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q2", "contract_id": "C2"})
    amend = {"contract_id": "C1", "effective": "2026-05-01", "changes": [{"line_id": "L1", "quantity": 12}]}
    err = refuse(app, "validation_error", "contract.amend", {**amend, "effective": "2026-01-31"})
    assert err.details["field"] == "effective" and "before" in err.message
    err = refuse(app, "validation_error", "contract.amend", {**amend, "effective": "2027-02-01"})
    assert "after" in err.message
    refuse(app, "not_found", "contract.amend", {**amend, "changes": [{"line_id": "L9", "quantity": 1}]})
    refuse(app, "not_found", "contract.amend", {**amend, "contract_id": "C9"})
    refuse(app, "validation_error", "contract.amend", {**amend, "changes": [{"line_id": "L1", "quantity": 10}]})
    refuse(app, "validation_error", "contract.amend", {**amend, "changes": [{"line_id": "L1", "quantity": 0}]})
    refuse(app, "validation_error", "contract.amend", {**amend, "changes": [{"line_id": "L1", "quantity": 3,
                                                                             "remove": True}]})
    refuse(app, "validation_error", "contract.amend", {**amend, "changes": []})
    refuse(app, "validation_error", "contract.amend", {**amend, "modification": "retrospective"})
    refuse(app, "validation_error", "contract.amend", {**amend, "changes": [{"line_id": "L1", "price_id": "seat-eur"}]})
    refuse(app, "validation_error", "contract.amend", {**amend, "changes": [{"line_id": "L1", "price_id": "api-usd"}]})
    refuse(app, "not_found", "contract.amend", {**amend, "changes": [{"line_id": "L1", "price_id": "nope"}]})
    refuse(app, "conflict", "contract.amend", {**amend, "changes": [], "add": [
        {"line_id": "L1", "price_id": "seat-usd", "quantity": 1}]})
    err = refuse(app, "validation_error", "contract.amend", {"contract_id": "C2", "effective": "2026-05-01",
                                                             "changes": [{"line_id": "S", "quantity": 2}]})
    assert "one-time" in err.message
    refuse(app, "validation_error", "contract.amend", {**amend, "effective": "2026-13-01"})
    app.do("contract.cancel", {"contract_id": "C1", "effective": "2026-06-01"})
    err = refuse(app, "conflict", "contract.amend", {**amend, "effective": "2026-07-01"})
    assert "cancelled" in err.message
    # before the cancellation takes effect the contract can still change
    assert app.do("contract.amend", amend)["lines"][0]["quantity"] == "12"


def test_backdated_amendments_apply_in_date_order_and_must_fit_the_later_ones(world, clock):
    app = world
    sign(app)
    clock.set(date(2026, 3, 5))
    app.do("contract.amend", {"contract_id": "C1", "effective": "2026-05-01",
                              "changes": [{"line_id": "L1", "quantity": 15}]})
    app.do("contract.amend", {"contract_id": "C1", "effective": "2026-03-01",
                              "changes": [{"line_id": "L1", "quantity": 12}]})
    quantities = [(ln["from"], ln["quantity"]) for d in ("2026-02-01", "2026-03-15", "2026-06-01")
                  for ln in contract(app, d)["lines"]]
    assert quantities == [("2026-01-01", "10"), ("2026-03-01", "12"), ("2026-05-01", "15")]
    # removing the line from April would leave the May amendment without its line
    refuse(app, "not_found", "contract.amend", {"contract_id": "C1", "effective": "2026-04-01",
                                                "changes": [{"line_id": "L1", "remove": True}]})


def test_renewal_with_uplift_starts_a_new_term(world, clock):
    app = world
    app.do("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
                            "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 10},
                                      {"line_id": "setup", "price_id": "onboarding-usd", "quantity": 1},
                                      {"line_id": "calls", "price_id": "api-usd", "quantity": 0}]})
    app.do("quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    clock.set(date(2026, 12, 1))
    r = app.do("contract.renew", {"contract_id": "C1", "term_months": 12, "uplift_pct": "5"})
    assert r["renewal"] == {"term": 2, "start": "2027-01-01", "end": "2027-12-31", "uplift_pct": "5"}
    assert (r["start"], r["end"], r["term"], r["tcv"], r["mrr"]) == ("2027-01-01", "2027-12-31", 2, "1260.00",
                                                                      "105.00")
    assert [ln["line_id"] for ln in r["lines"]] == ["L1", "calls"]  # the one-time line does not renew
    assert r["lines"][0]["unit_amount"] == "10.50"
    first = contract(app, "2026-06-01")
    assert (first["term"], first["tcv"], first["end"]) == (1, "3200.00", "2026-12-31")
    p = events(app, "contract.renewed")[0]["payload"]
    assert p["term"] == {"number": 2, "start": "2027-01-01", "end": "2027-12-31", "months": 12, "uplift_pct": "5"}
    calls = [ln for ln in p["lines"] if ln["line_id"] == "calls"][0]
    assert calls["uplift_factor"] == "1.05" and calls["price"]["tiers"][0]["unit_amount"] == "0.105"
    assert rate(PriceTerms.from_dict(calls["price"]), 1000) == 105_00
    assert sorted((c["line_id"], c["action"]) for c in p["changed_lines"]) == [("L1", "renewed"), ("calls", "renewed"), ("setup", "not_renewed")]
    refuse(app, "validation_error", "contract.renew", {"contract_id": "C1", "term_months": 0})
    refuse(app, "validation_error", "contract.renew", {"contract_id": "C1", "term_months": 12, "uplift_pct": "-100"})
    # a second renewal follows the renewed term; amendments may reach into it
    app.do("contract.renew", {"contract_id": "C1", "term_months": 6})
    assert contract(app, "2028-03-01")["end"] == "2028-06-30"
    assert app.do("contract.amend", {"contract_id": "C1", "effective": "2027-06-01",
                                     "changes": [{"line_id": "L1", "quantity": 20}]})["lines"][0]["unit_amount"] == "10.50"
    # the later term keeps the quantity and carries the uplift
    assert contract(app, "2028-01-15")["lines"][0]["quantity"] == "20"


def test_auto_renewal_run_renews_every_term_that_has_ended_once(world, clock):
    app = world
    sign(app, auto_renew=True, renewal_uplift_pct="3")
    sign(app, "Q2", "C2")  # not auto-renewing
    sign(app, "Q3", "C3", auto_renew=True)  # the configured uplift (0)
    app.do("contract.cancel", {"contract_id": "C3", "effective": "2026-09-01"})
    assert app.do("renewals.run", {"as_of": "2026-12-31"})["count"] == 0
    preview = app.do("renewals.run", {"as_of": "2027-01-01", "dry_run": True})
    assert preview["renewed"] == [{"contract_id": "C1", "term": 2, "start": "2027-01-01", "end": "2027-12-31",
                                   "months": 12, "uplift_pct": "3"}]
    assert events(app, "contract.renewed") == []
    assert app.do("renewals.run", {"as_of": "2027-01-01"})["count"] == 1
    assert app.do("renewals.run", {"as_of": "2027-01-01"})["count"] == 0
    assert contract(app, "2027-01-01")["mrr"] == "103.00"
    late = app.do("renewals.run", {"as_of": "2029-01-05"})
    assert [(x["term"], x["start"], x["uplift_pct"]) for x in late["renewed"]] == [(3, "2028-01-01", "3"),
                                                                                  (4, "2029-01-01", "3")]
    # 10.00 x 1.03^3 = 10.92727 a seat: the uplift compounds exactly, the line rounds once (109.27)
    assert (contract(app, "2029-02-01")["lines"][0]["unit_amount"], contract(app, "2029-02-01")["mrr"]) == (
        "10.92727", "109.27")
    assert [e["payload"]["change"]["reason"] for e in events(app, "contract.renewed")] == ["auto-renewal"] * 3
    for e in events(app, "contract."):
        validate_contract_payload(e["payload"])
    assert contract(app, "2027-06-01", "C2")["status"] == "expired"
    assert contract(app, "2027-06-01", "C3")["status"] == "cancelled"


def test_cancellation_ends_service_the_day_before_its_effective_date(world, clock):
    app = world
    sign(app)
    clock.set(date(2026, 6, 10))
    r = app.do("contract.cancel", {"contract_id": "C1", "effective": "2026-07-01", "reason": "customer churned"})
    assert r["cancellation"] == {"effective": "2026-07-01", "last_day_of_service": "2026-06-30", "voided_changes": []}
    assert (r["status"], r["end"], r["tcv"], r["mrr"]) == ("cancelled", "2026-06-30", "600.00", "0.00")
    still = contract(app)  # on 2026-06-10 the service continues until the end of June
    assert (still["status"], still["mrr"], still["cancelled_effective"]) == ("active", "100.00", "2026-07-01")
    assert contract(app, "2026-06-30")["status"] == "active"
    p = events(app, "contract.cancelled")[0]["payload"]
    assert (p["effective"], p["service_end"], p["cancelled_effective"], p["status"]) == (
        "2026-07-01", "2026-06-30", "2026-07-01", "cancelled")
    assert [c["action"] for c in p["changed_lines"]] == ["cancelled"] and p["lines"][0]["to"] == "2026-06-30"
    refuse(app, "conflict", "contract.cancel", {"contract_id": "C1", "effective": "2026-08-01"})
    refuse(app, "conflict", "contract.renew", {"contract_id": "C1", "term_months": 12})
    sign(app, "Q2", "C2")
    refuse(app, "validation_error", "contract.cancel", {"contract_id": "C2", "effective": "2025-12-31"})
    refuse(app, "validation_error", "contract.cancel", {"contract_id": "C2", "effective": "2027-01-02"})
    # effective the day after the end: a non-renewal, the whole term is served
    end = app.do("contract.cancel", {"contract_id": "C2", "effective": "2027-01-01"})
    assert (end["tcv"], contract(app, "2026-12-31", "C2")["status"]) == ("1200.00", "active")


def test_a_cancellation_voids_a_renewal_recorded_before_it(world, clock):
    app = world
    sign(app)
    app.do("contract.renew", {"contract_id": "C1", "term_months": 12})
    r = app.do("contract.cancel", {"contract_id": "C1", "effective": "2026-10-01"})
    assert r["cancellation"]["voided_changes"] == ["C1-R1"]
    assert contract(app, "2027-03-01")["status"] == "cancelled"
    history = app.query("contract_history", {"contract_id": "C1"})["items"]
    assert [h["void"] for h in history] == [False, True, False]


def test_values_with_a_billing_day_other_than_the_start_and_longer_periods(world):
    app = world
    sign(app, start="2026-01-15", billing_day=1)
    c = contract(app, "2026-01-20")
    # 17/31 x 100 (54.84) + 11 x 100 + 14/31 x 100 (45.16)
    assert (c["tcv"], c["start"], c["end"], c["billing_day"]) == ("1200.00", "2026-01-15", "2027-01-14", 1)
    app.do("quote.create", {"quote_id": "Q2", "customer": "SF-1", "start": "2026-01-01", "term_months": 24,
                            "lines": [{"line_id": "Y", "price_id": "support-usd", "quantity": 1},
                                      {"line_id": "Q", "price_id": "support-usd-q", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q2", "contract_id": "C2"})
    c2 = contract(app, "2026-02-01", "C2")
    assert (c2["tcv"], c2["acv"], c2["mrr"], c2["arr"]) == ("4800.00", "2400.00", "200.00", "2400.00")


def test_customer_merge_repoints_quotes_and_contracts(world):
    app = world
    sign(app, customer="SF-3")
    app.do("customer.merge", {"survivor": "SF-1", "merged": "SF-3"})
    assert contract(app, "2026-02-01")["customer"] == "SF-1"
    assert app.query("quote", {"quote_id": "Q1"})["customer"] == "SF-1"
    assert app.query("contracts", {"customer": "SF-1"})["count"] == 1
    # a quote for the merged id acts on the survivor
    assert seats_quote(app, "Q2", customer="SF-3")["customer"] == "SF-1"


def test_not_owner_sources_cannot_change_contracts(world):
    app = world
    sign(app)
    with pytest.raises(Exception) as exc:
        app.do("contract.amend", {"contract_id": "C1", "effective": "2026-03-01", "source": "crm",
                                  "changes": [{"line_id": "L1", "quantity": 20}]})
    assert getattr(exc.value, "code", None) == "not_owner"
    assert contract(app, "2026-04-01")["lines"][0]["quantity"] == "10"
    assert app.query("exceptions", {"kind": "not_owner"})["count"] == 1
    assert app.do("contract.amend", {"contract_id": "C1", "effective": "2026-03-01", "source": "billing",
                                     "changes": [{"line_id": "L1", "quantity": 20}]})["mrr"] == "200.00"


def test_contracts_list_and_decimal_quantities(world):
    app = world
    sign(app)
    sign(app, "Q2", "C2", start="2026-03-01")
    listed = app.query("contracts", {"as_of": "2026-02-01", "status": "active"})
    assert [c["contract_id"] for c in listed["items"]] == ["C1", "C2"]
    assert app.query("contracts", {"entity": "DE01"})["count"] == 0
    app.do("contract.amend", {"contract_id": "C1", "effective": "2026-02-01",
                              "changes": [{"line_id": "L1", "quantity": "10.5"}]})
    assert contract(app, "2026-02-01")["mrr"] == "105.00"
    assert Decimal(contract(app, "2026-02-01")["lines"][0]["quantity"]) == Decimal("10.5")
