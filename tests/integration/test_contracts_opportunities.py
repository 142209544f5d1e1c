"""CRM opportunities into quotes: upsert, conversion and its exceptions, the webhook, Salesforce imports."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.core.errors import CloseloopError
from tests.fixtures.contracts.helpers import catalogue, company, events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"
MAPPING = {"products": {"SEAT-STD": "seat"},
           "price_books": {"Standard": {"seat": {"USD": "seat-usd", "EUR": "seat-eur"}}}}


@pytest.fixture
def world(app):
    company(app)
    catalogue(app)
    app.services.config["opportunity_mapping"] = MAPPING
    return app


def opp(**kw):
    base = {"source": "crm", "external_id": "OPP-1", "customer": "SF-1", "stage": "Closed Won",
            "close_date": "2026-02-15", "currency": "USD", "price_book": "Standard",
            "lines": [{"sku": "SEAT-STD", "quantity": 12}]}
    return {**base, **kw}


def unconvertible(app):
    return app.query("exceptions", {"kind": "opportunity_unconvertible", "status": "open"})


def test_a_closed_won_opportunity_becomes_a_quote(world):
    app = world
    r = app.do("opportunity.upsert", opp(stage="Negotiation"))
    assert (r["outcome"], r["status"], r["quote_id"]) == ("created", "open", None)
    r = app.do("opportunity.upsert", opp())
    assert (r["outcome"], r["status"], r["quote_id"], r["quote_status"]) == ("updated", "converted", "Q-OPP-1",
                                                                             "approved")
    q = app.query("quote", {"quote_id": "Q-OPP-1"})
    assert (q["customer"], q["start"], q["term_months"], q["opportunity"], q["tcv"]) == (
        "SF-1", "2026-02-15", 12, "OPP-1", "1440.00")
    assert [(ln["sku"], ln["price_id"], ln["quantity"]) for ln in q["lines"]] == [("seat", "seat-usd", "12")]
    assert app.query("opportunity", {"external_id": "OPP-1"})["status"] == "converted"
    assert [e["type"] for e in events(app, "opportunity.")] == ["opportunity.created", "opportunity.updated",
                                                                  "opportunity.converted"]
    # the same upsert again changes nothing
    assert app.do("opportunity.upsert", opp())["outcome"] == "unchanged"
    # a change in the CRM updates the quote: a new version, pending approval at 25% off
    r = app.do("opportunity.upsert", opp(lines=[{"sku": "SEAT-STD", "quantity": 12, "discount_pct": "25"}]))
    assert (r["quote_version"], r["quote_status"]) == (2, "pending_approval")
    app.do("quote.approve", {"quote_id": "Q-OPP-1", "approver": "sam"})
    app.do("quote.accept", {"quote_id": "Q-OPP-1", "contract_id": "C-OPP-1"})
    r = app.do("opportunity.upsert", opp(lines=[{"sku": "SEAT-STD", "quantity": 30}]))
    assert "already accepted as contract C-OPP-1" in r["warning"]
    assert app.query("quote", {"quote_id": "Q-OPP-1"})["version"] == 2


def test_an_opportunity_that_cannot_convert_is_an_exception_until_fixed(world):
    app = world
    r = app.do("opportunity.upsert", opp(customer="SF-77", currency="GBP",
                                         lines=[{"sku": "SEAT-STD", "quantity": 1}, {"sku": "GADGET", "quantity": 1}]))
    assert r["status"] == "unconvertible"
    assert r["reasons"] == ["unknown customer SF-77",
                            "line 1: price book Standard has no GBP price for seat and product seat has no active"
                            " price in GBP", "line 2: unknown product GADGET"]
    found = unconvertible(app)
    assert found["count"] == 1 and found["items"][0]["record"] == {"opportunity": "OPP-1"}
    assert found["items"][0]["owner_role"] == "sales_ops"
    assert app.query("opportunity", {"external_id": "OPP-1"})["status"] == "unconvertible"
    assert app.query("quotes", {})["count"] == 0
    # re-detection updates the one open exception
    app.do("opportunity.upsert", opp(customer="SF-77", currency="GBP", lines=[{"sku": "GADGET", "quantity": 2}]))
    assert unconvertible(app)["count"] == 1
    # fixed in the CRM: it converts and the exception closes
    r = app.do("opportunity.upsert", opp())
    assert r["status"] == "converted" and unconvertible(app)["count"] == 0
    closed = app.query("exceptions", {"kind": "opportunity_unconvertible"})["items"][0]
    assert closed["status"] == "resolved" and closed["resolution"] == "converted"


def test_retry_resolves_the_exception_once_the_data_is_fixed(world):
    app = world
    app.do("opportunity.upsert", opp(customer="SF-50"))
    exc_id = unconvertible(app)["items"][0]["id"]
    with pytest.raises(CloseloopError) as err:
        app.do("exception.resolve", {"exception": exc_id, "action": "retry", "reason": "customer created?"})
    assert err.value.code == "validation_error" and "unknown customer SF-50" in err.value.message
    assert unconvertible(app)["count"] == 1
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-50", "name": "Hooli", "country": "US",
                               "entity": "US01", "currency": "USD"})
    r = app.do("exception.resolve", {"exception": exc_id, "action": "retry", "reason": "customer now synced"})
    assert (r["status"], r["quote_id"]) == ("resolved", "Q-OPP-1")
    assert app.query("opportunity", {"external_id": "OPP-1"})["status"] == "converted"


def test_price_resolution_lost_stages_and_ownership(world):
    app = world
    # without a price book, two USD seat prices make the price ambiguous
    r = app.do("opportunity.upsert", opp(external_id="OPP-2", price_book=None))
    assert "seat has 2 prices in USD (seat-usd, seat-usd-pro)" in r["reasons"][0]
    r = app.do("opportunity.upsert", opp(external_id="OPP-2", price_book=None,
                                         lines=[{"sku": "SEAT-STD", "quantity": 1, "price_id": "seat-usd-pro"}]))
    assert r["status"] == "converted"
    # a product with one price in the currency needs no price book; a CRM sales price below list is kept
    r = app.do("opportunity.upsert", opp(external_id="OPP-3", price_book=None,
                                         lines=[{"sku": "platform", "quantity": 1, "unit_amount": "450"}]))
    assert app.query("quote", {"quote_id": r["quote_id"]})["lines"][0]["unit_amount"] == "450.00"
    r = app.do("opportunity.upsert", opp(external_id="OPP-4", stage="Closed Lost"))
    assert (r["status"], r["quote_id"]) == ("lost", None)
    # billing does not own opportunities
    with pytest.raises(CloseloopError) as err:
        app.do("opportunity.upsert", opp(external_id="OPP-4", source="billing", stage="Closed Won"))
    assert err.value.code == "not_owner"
    assert app.query("opportunity", {"external_id": "OPP-4"})["stage"] == "Closed Lost"
    with pytest.raises(CloseloopError) as err:
        app.do("opportunity.upsert", opp(external_id="OPP-5", close_date="15/02/2026"))
    assert err.value.code == "validation_error"


def test_the_crm_webhook_takes_a_salesforce_sobject(world):
    app = world
    body = {"Opportunity": {"Id": "006W1", "AccountId": "SF-2", "StageName": "Closed Won", "CloseDate": "2026-04-01",
                            "CurrencyIsoCode": "EUR", "Pricebook2Id": "Standard", "Term_Months__c": "24"},
            "OpportunityLineItems": [{"Id": "00kW1", "ProductCode": "SEAT-STD", "Quantity": 5, "UnitPrice": 9.0,
                                      "ListPrice": 9.0}]}
    r = app.do("opportunity.webhook", {"body": body})
    assert (r["status"], r["quote_id"]) == ("converted", "Q-006W1")
    q = app.query("quote", {"quote_id": "Q-006W1"})
    assert (q["entity"], q["currency"], q["term_months"], q["lines"][0]["line_id"]) == ("DE01", "EUR", 24, "00kW1")
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT source FROM contracts_opportunity WHERE external_id = '006W1'") == "crm"
    with pytest.raises(CloseloopError) as err:
        app.do("opportunity.webhook", {"body": {"Id": "006W2", "AccountId": "SF-2", "StageName": "Closed Won",
                                                "CurrencyIsoCode": "EUR"}})
    assert err.value.code == "validation_error" and err.value.details["field"] == "close_date"
    rejected = app.query("exceptions", {"kind": "import_rejected"})
    assert rejected["count"] == 1 and "006W2" in rejected["items"][0]["message"]


def test_salesforce_data_loader_export_with_line_items(world):
    app = world
    files = {"file": str(FIXTURES / "sf_opportunities.csv"), "line_items": str(FIXTURES / "sf_opportunity_line_items.csv")}
    preview = app.query("opportunity_import_preview", files)
    assert (preview["valid"], [r["row"] for r in preview["rejected"]]) == (4, [6])
    assert preview["rejected"][0]["problems"] == [{"field": "close_date", "reason": "'31.02.2026' is not a date"}]
    with pytest.raises(CloseloopError) as err:
        app.do("opportunity.import", files)
    assert err.value.code == "validation_error" and "line 6" in err.value.message
    assert app.query("opportunities", {})["count"] == 0
    report = app.do("opportunity.import", {**files, "accept_valid": True})
    assert {k: report[k] for k in ("created", "converted", "unconvertible", "not_owner")} == {
        "created": 4, "converted": 2, "unconvertible": 1, "not_owner": 0}
    by_id = {i["external_id"]: i for i in report["items"]}
    assert by_id["006x000000A3AAA"]["reasons"] == ["unknown customer SF-404"]
    assert by_id["006x000000A4AAA"]["status"] == "open"
    q = app.query("quote", {"quote_id": "Q-006x000000A2AAA"})
    assert (q["name"], q["currency"], q["tcv"], q["lines"][0]["discount_pct"]) == (
        "Initech Café rollout", "EUR", "972.00", "10")
    assert app.query("exceptions", {"kind": "import_rejected"})["count"] == 1
    again = app.do("opportunity.import", {**files, "accept_valid": True})
    assert (again["unchanged"], again["created"], again["updated"]) == (4, 0, 0)
    assert app.query("exceptions", {"kind": "import_rejected"})["count"] == 1


def test_salesforce_rest_json_export(world):
    app = world
    report = app.do("opportunity.import", {"file": str(FIXTURES / "sf_opportunity_rest.json")})
    assert (report["created"], report["converted"]) == (1, 1)
    q = app.query("quote", {"quote_id": "Q-006x000000B1AAA"})
    # 8.50 on a 10.00 list is 15% off: below the 20% threshold, the quote needs no approval
    assert (q["term_months"], q["auto_renew"], q["status"], q["max_discount_pct"]) == (24, True, "approved", "15")
    assert [(ln["sku"], ln["unit_amount"]) for ln in q["lines"]] == [("seat", "8.50"), ("platform", "500.00")]
    # platform is not in the Standard price book: its only USD price is used
    assert q["lines"][1]["price_id"] == "platform-usd"
