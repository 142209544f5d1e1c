"""Products and prices through the vocabulary: creation, idempotency, bad input, the rate query."""

from __future__ import annotations

from tests.fixtures.contracts.helpers import events, refuse


def test_product_and_price_creation_is_idempotent_and_conflicts_are_refused(app):
    r = app.do("product.create", {"sku": "seat", "name": "Seat", "treatment": "ratable", "ssp": "12.00"})
    assert r["created"] is True and r["tax_code"] == "saas" and r["ssp"] == "12"
    assert app.do("product.create", {"sku": "seat", "name": "Seat", "treatment": "ratable", "ssp": "12.00"})[
        "created"] is False
    refuse(app, "conflict", "product.create", {"sku": "seat", "name": "Seat", "treatment": "usage"})
    price = {"price_id": "p1", "sku": "seat", "currency": "USD", "model": "per_unit", "amount": "10.00",
             "period": "month", "timing": "advance"}
    assert app.do("price.create", price)["created"] is True
    assert app.do("price.create", price)["created"] is False
    refuse(app, "conflict", "price.create", {**price, "amount": "11.00"})
    assert app.query("price", {"price_id": "p1"})["amount"] == "10"
    assert [e["type"] for e in events(app, "p")] == ["product.created", "price.created"]
    assert app.query("product", {"sku": "seat"})["prices"][0]["price_id"] == "p1"


def test_bad_prices_are_refused_with_every_problem_and_nothing_written(app):
    app.do("product.create", {"sku": "api", "name": "API", "treatment": "usage"})
    base = {"price_id": "t1", "sku": "api", "currency": "USD", "model": "tiered", "period": "month",
            "timing": "arrears", "metric": "calls"}
    err = refuse(app, "validation_error", "price.create", {**base, "tiers": [
        {"up_to": 100, "unit_amount": "1"}, {"up_to": 100, "unit_amount": "0.5"}, {"up_to": None, "unit_amount": "0.1"}]})
    assert err.details["field"] == "tiers[1].up_to" and "overlap" in err.message
    err = refuse(app, "validation_error", "price.create", {**base, "tiers": [
        {"up_to": 500, "unit_amount": "1"}, {"up_to": 100, "unit_amount": "0.5"}, {"up_to": None, "unit_amount": "0.1"}]})
    assert err.details["field"] == "tiers[1].up_to" and "sorted" in err.message
    err = refuse(app, "validation_error", "price.create", {**base, "model": "package", "amount": "1.005"})
    assert {e["field"] for e in err.details["errors"]} == {"amount", "package_size"}
    err = refuse(app, "validation_error", "price.create", {**base, "model": "usage", "amount": "0.01",
                                                           "timing": "advance"})
    assert err.details["field"] == "timing"
    err = refuse(app, "validation_error", "price.create", {**base, "model": "usage", "amount": "0.01",
                                                           "aggregation": "median"})
    assert err.details["field"] == "aggregation"
    err = refuse(app, "validation_error", "price.create", {**base, "model": "per_unit", "amount": "1",
                                                           "currency": "USX"})
    assert err.details["field"] == "currency"
    refuse(app, "not_found", "price.create", {**base, "sku": "nope", "model": "usage", "amount": "0.01"})
    refuse(app, "validation_error", "price.create", {**base, "model": "usage", "amount": "0.01", "colour": "red"})


def test_inactive_products_take_no_new_prices_and_deactivation_is_recorded(app):
    app.do("product.create", {"sku": "old", "name": "Legacy", "treatment": "ratable"})
    app.do("price.create", {"price_id": "old-usd", "sku": "old", "currency": "USD", "model": "flat", "amount": "5.00",
                            "period": "month", "timing": "advance"})
    r = app.do("product.update", {"sku": "old", "active": False})
    assert r["changed"] is True and r["active"] is False
    assert app.do("product.update", {"sku": "old", "active": False})["changed"] is False
    refuse(app, "validation_error", "price.create", {"price_id": "old-eur", "sku": "old", "currency": "EUR",
                                                     "model": "flat", "amount": "5.00", "period": "month",
                                                     "timing": "advance"})
    assert app.do("price.deactivate", {"price_id": "old-usd"})["changed"] is True
    assert app.query("prices", {"sku": "old", "active": False})["count"] == 1
    assert app.query("products", {"active": True})["count"] == 0
    updated = [e for e in events(app, "product.updated")][0]["payload"]
    assert updated["changed"] == {"active": {"before": True, "after": False}}


def test_rate_query_shows_the_amount_and_its_parts(app):
    app.do("product.create", {"sku": "api", "name": "API", "treatment": "usage"})
    app.do("price.create", {"price_id": "api-usd", "sku": "api", "currency": "USD", "model": "tiered",
                            "metric": "api_calls", "period": "month", "timing": "arrears",
                            "tiers": [{"up_to": 1000, "unit_amount": "0.10", "flat_amount": "5.00"},
                                      {"up_to": None, "unit_amount": "0.05"}]})
    r = app.query("rate", {"price_id": "api-usd", "quantity": 1500})
    assert r["amount"] == "130.00"  # 1000 x 0.10 + 5 + 500 x 0.05
    assert [(p["quantity"], p["amount"]) for p in r["parts"]] == [("1000", "105"), ("500", "25")]
    assert app.query("price", {"price_id": "api-usd"})["aggregation"] == "sum"  # default for a metric
    assert app.query("rate", {"price_id": "api-usd", "quantity": 1500, "discount_pct": "10"})["amount"] == "117.00"
    assert app.query("prices", {"metric": "api_calls"})["count"] == 1
