"""Quotes: versions, approval rules, acceptance, and the bad input the issue lists."""

from __future__ import annotations

import pytest

from closeloop.core.errors import CloseloopError
from tests.fixtures.contracts.helpers import catalogue, company, counts, events, refuse, seats_quote


@pytest.fixture
def world(app):
    company(app)
    catalogue(app)
    return app


def test_quote_changed_after_approval_needs_approval_again(world):
    app = world
    q = seats_quote(app, discount="25")
    assert (q["status"], q["version"], q["approved"]) == ("pending_approval", 1, False)
    assert [r["id"] for r in q["rules"]] == ["discount_over_20"]
    assert (q["tcv"], q["mrr"]) == ("900.00", "75.00")
    err = refuse(app, "approval_required", "quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    assert err.details["pending"] == ["discount_over_20"]
    approved = app.do("quote.approve", {"quote_id": "Q1", "approver": "alice"})
    assert approved["status"] == "approved" and approved["rules"][0]["covered_by"] == ["alice"]
    changed = app.do("quote.update", {"quote_id": "Q1", "lines": [
        {"line_id": "L1", "price_id": "seat-usd", "quantity": 12, "discount_pct": "25"}]})
    assert (changed["status"], changed["version"], changed["approval_reset"]) == ("pending_approval", 2, True)
    assert changed["changed_fields"] == ["lines"] and changed["approvals"] == []
    err = refuse(app, "approval_required", "quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    assert "changed since: lines" in err.message
    app.do("quote.approve", {"quote_id": "Q1", "approver": "alice"})
    contract = app.do("quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    assert (contract["status"], contract["tcv"], contract["mrr"]) == ("active", "1080.00", "90.00")
    q = app.query("quote", {"quote_id": "Q1"})
    assert (q["status"], q["contract_id"], len(q["versions"])) == ("accepted", "C1", 2)
    first = app.query("quote", {"quote_id": "Q1", "version": 1})
    assert (first["status"], first["lines"][0]["quantity"], first["approvals"][0]["approver"]) == (
        "superseded", "10", "alice")
    refuse(app, "conflict", "quote.update", {"quote_id": "Q1", "term_months": 24})
    refuse(app, "conflict", "quote.accept", {"quote_id": "Q1", "contract_id": "C2"})
    types = [e["type"] for e in events(app, "quote.")]
    assert types == ["quote.created", "quote.approved", "quote.updated", "quote.approved", "quote.accepted"]


def test_a_quote_that_needs_no_approval_records_an_approval_and_an_unchanged_update_is_no_version(world):
    app = world
    q = seats_quote(app)
    assert (q["status"], q["rules"]) == ("approved", [])
    r = app.do("quote.approve", {"quote_id": "Q1", "approver": "bob"})
    assert r["approval"] == {"quote_id": "Q1", "version": 1, "approver": "bob", "covers": [], "pending": [],
                             "status": "approved", "needed_approval": False}
    assert app.do("quote.update", {"quote_id": "Q1", "term_months": 12})["changed"] is False
    # a change that triggers no rule leaves the quote approved
    r = app.do("quote.update", {"quote_id": "Q1", "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 11}]})
    assert (r["status"], r["version"], r["approval_reset"]) == ("approved", 2, False)
    assert app.do("quote.accept", {"quote_id": "Q1", "contract_id": "C1"})["tcv"] == "1320.00"
    # the same create again is accepted and changes nothing; another payload under the id is a conflict
    seats_quote(app, "Q2")
    assert seats_quote(app, "Q2")["created"] is False
    with pytest.raises(CloseloopError) as exc:
        seats_quote(app, "Q2", quantity=3)
    assert exc.value.code == "conflict"


def test_approval_rules_by_role_each_rule_needs_its_approver(world):
    app = world
    app.services.config["users"] = {"sam": ["sales_manager"], "fiona": {"roles": ["finance"]}, "rep": ["sales_ops"],
                                    "tester": ["sales_ops"]}
    q = seats_quote(app, discount="45")
    assert [r["id"] for r in q["rules"]] == ["discount_over_20", "discount_over_40"]
    err = refuse(app, "forbidden", "quote.approve", {"quote_id": "Q1", "approver": "rep"})
    assert "sales_manager" in err.message and "finance" in err.message
    r = app.do("quote.approve", {"quote_id": "Q1", "approver": "sam"})
    assert (r["status"], r["pending_approvals"]) == ("pending_approval", ["discount_over_40"])
    refuse(app, "approval_required", "quote.accept", {"quote_id": "Q1", "contract_id": "C1"})
    assert app.do("quote.approve", {"quote_id": "Q1", "approver": "fiona"})["status"] == "approved"
    assert app.do("quote.accept", {"quote_id": "Q1", "contract_id": "C1"})["status"] == "active"


def test_a_negotiated_unit_price_below_list_counts_as_a_discount(world):
    app = world
    q = app.do("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
                                "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 10,
                                           "unit_amount": "7.00"}]})
    assert q["max_discount_pct"] == "30" and [r["id"] for r in q["rules"]] == ["discount_over_20"]
    assert q["lines"][0]["unit_amount"] == "7.00"
    q = app.do("quote.create", {"quote_id": "Q2", "customer": "SF-1", "start": "2026-01-01", "term_months": 48,
                                "auto_renew": True, "renewal_uplift_pct": "-5",
                                "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 10}]})
    assert [r["id"] for r in q["rules"]] == ["non_standard_terms"]


def test_quote_values_one_time_usage_and_yearly_lines(world):
    app = world
    q = app.do("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-15", "term_months": 12,
                                "lines": [
                                    {"line_id": "platform", "price_id": "platform-usd", "quantity": 1},
                                    {"line_id": "setup", "price_id": "onboarding-usd", "quantity": 1},
                                    {"line_id": "calls", "price_id": "api-usd", "quantity": 0},
                                    {"line_id": "support", "price_id": "support-usd", "quantity": 1}]})
    # TCV = 12 x 500 + 2,000 once + usage (commits nothing) + 1,200 a year; ACV and MRR recurring only
    assert (q["tcv"], q["acv"], q["mrr"], q["one_time"]) == ("9200.00", "7200.00", "600.00", "2000.00")
    lines = {ln["line_id"]: ln for ln in q["lines"]}
    assert lines["calls"]["amount"] is None and lines["calls"]["unit_amount"] is None
    assert lines["setup"]["ssp"] == "1500.00" and lines["setup"]["ssp_source"] == "product"
    assert lines["platform"]["ssp"] == "6000.00" and lines["platform"]["ssp_source"] == "contract_price"
    assert q["billing_day"] == 15 and q["end"] == "2027-01-14"


def test_bad_quotes_are_refused_with_a_specific_error_and_nothing_written(world):
    app = world
    base = {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
            "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 10}]}
    err = refuse(app, "validation_error", "quote.create", {**base, "term_months": 0})
    assert err.details["field"] == "term_months"
    app.do("product.update", {"sku": "support", "active": False})
    err = refuse(app, "validation_error", "quote.create", {**base, "lines": [
        {"line_id": "L1", "price_id": "support-usd", "quantity": 1}]})
    assert err.details["field"] == "lines[0].price_id" and "inactive" in err.message
    # a EUR entity quoting in USD without any USD->EUR rate
    err = refuse(app, "validation_error", "quote.create", {**base, "customer": "SF-2", "currency": "USD"})
    assert err.details["field"] == "currency" and "USD->EUR" in err.message
    app.do("fx.rate", {"base": "USD", "quote": "EUR", "date": "2025-12-31", "rate": "0.92"})
    assert app.do("quote.create", {**base, "quote_id": "QX", "customer": "SF-2", "currency": "USD"})["entity"] == "DE01"
    refuse(app, "not_found", "quote.create", {**base, "customer": "SF-404"})
    refuse(app, "not_found", "quote.create", {**base, "lines": [{"line_id": "L1", "price_id": "nope", "quantity": 1}]})
    refuse(app, "not_found", "quote.create", {**base, "entity": "XX01"})
    err = refuse(app, "validation_error", "quote.create", {**base, "lines": [
        {"line_id": "L1", "price_id": "seat-eur", "quantity": 1},
        {"line_id": "L1", "price_id": "seat-usd", "quantity": 1},
        {"line_id": "L3", "price_id": "platform-usd", "quantity": 2},
        {"line_id": "L4", "price_id": "api-usd", "quantity": 1, "unit_amount": "0.02"},
        {"line_id": "L5", "price_id": "seat-usd", "quantity": 1, "discount_pct": "120"},
        {"line_id": "L6", "price_id": "impl-usd", "quantity": 1},
        {"line_id": "L7", "price_id": "impl-usd", "quantity": 1,
         "milestones": [{"milestone_id": "M1", "amount": "10000.00"}]},
        {"line_id": "L8", "price_id": "seat-usd", "quantity": -1}]})
    fields = [e["field"] for e in err.details["errors"]]
    assert fields == ["lines[0].price_id", "lines[1].line_id", "lines[2].quantity", "lines[3].unit_amount",
                      "lines[4].discount_pct", "lines[5].milestones", "lines[6].milestones", "lines[7].quantity"]
    refuse(app, "validation_error", "quote.create", {**base, "billing_day": 32})
    refuse(app, "validation_error", "quote.create", {**base, "start": "2026-02-30"})
    refuse(app, "validation_error", "quote.create", {**base, "lines": []})


def test_milestones_must_bill_exactly_the_line(world):
    app = world
    q = app.do("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 6,
                                "lines": [{"line_id": "impl", "price_id": "impl-usd", "quantity": 1,
                                           "discount_pct": "10", "ssp": "30000.00",
                                           "milestones": [{"milestone_id": "design", "amount": "9000.00"},
                                                          {"milestone_id": "golive", "amount": "18000.00"}]}]})
    line = q["lines"][0]
    assert line["amount"] == "27000.00" and line["ssp"] == "30000.00" and line["ssp_source"] == "quote"
    assert line["milestones"] == [{"milestone_id": "design", "amount": "9000.00"},
                                  {"milestone_id": "golive", "amount": "18000.00"}]
    assert q["tcv"] == "27000.00" and q["mrr"] == "0.00"


def test_a_source_that_does_not_own_a_quote_cannot_change_it(world):
    app = world
    seats_quote(app, source="crm")
    tables = ("contracts_quote", "contracts_quote_version")
    before = counts(app, tables)
    with pytest.raises(CloseloopError) as exc:
        app.do("quote.update", {"quote_id": "Q1", "source": "billing", "lines": [
            {"line_id": "L1", "price_id": "seat-usd", "quantity": 20}]})
    assert exc.value.code == "not_owner" and exc.value.details["field"] == "lines"
    assert counts(app, tables) == before
    items = app.query("exceptions", {"kind": "not_owner"})["items"]
    assert len(items) == 1 and items[0]["record"] == {"quote": "Q1"}
    r = app.do("quote.update", {"quote_id": "Q1", "source": "crm", "lines": [
        {"line_id": "L1", "price_id": "seat-usd", "quantity": 20}]})
    assert r["version"] == 2
    # billing owns the billing day
    assert app.do("quote.update", {"quote_id": "Q1", "source": "billing", "billing_day": 5})["version"] == 3


def test_maker_checker_entity_refuses_self_approval(app):
    app.do("entity.create", {"code": "UK01", "name": "Acme Ltd", "country": "GB", "currency": "GBP",
                             "maker_checker": True})
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-9", "name": "Tesco", "country": "GB",
                               "entity": "UK01", "currency": "GBP"})
    app.do("product.create", {"sku": "seat", "name": "Seat", "treatment": "ratable"})
    app.do("price.create", {"price_id": "seat-gbp", "sku": "seat", "currency": "GBP", "model": "per_unit",
                            "amount": "8.00", "period": "month", "timing": "advance"})
    app.services.config["users"] = {"mia": ["sales_ops", "sales_manager"], "sam": ["sales_manager"]}
    app.do("quote.create", {"quote_id": "Q1", "customer": "SF-9", "start": "2026-01-01", "term_months": 12,
                            "lines": [{"line_id": "L1", "price_id": "seat-gbp", "quantity": 5, "discount_pct": 30}]},
           actor="mia")
    with pytest.raises(CloseloopError) as exc:
        app.do("quote.approve", {"quote_id": "Q1", "approver": "mia"}, actor="mia")
    assert exc.value.code == "forbidden"
    assert app.do("quote.approve", {"quote_id": "Q1", "approver": "sam"}, actor="sam")["status"] == "approved"
