"""compute_invoice_tax on a database: the seller entity and the customer master feed the rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from closeloop.customers.service import get_customer
from closeloop.tax.service import (
    RulesEngine,
    TaxGroup,
    TaxLineInput,
    TaxLineResult,
    TaxRequest,
    TaxResult,
    compute_invoice_tax,
    set_tax_engine,
)


def _customer(app, external_id: str, country: str, **fields) -> None:
    app.do("customer.upsert", {"source": "crm", "external_id": external_id, "name": f"Customer {external_id}",
                               "country": country, **fields})


def _compute(app, entity: str, external_id: str, lines, date: str = "2026-01-31", currency: str = "EUR"):
    with app.unit_of_work(write=False) as uow:
        customer = get_customer(uow, external_id)
        return compute_invoice_tax(uow, seller_entity=entity, customer=customer, currency=currency, date=date,
                                   lines=lines)


def test_domestic_invoice_groups_and_allocates(app, de01) -> None:
    _customer(app, "C-DE", "DE")
    result = _compute(app, de01, "C-DE", [TaxLineInput(1, 1001, "saas"), TaxLineInput(2, 1001, "services"),
                                          TaxLineInput(3, 1001, "saas"), TaxLineInput(4, 5000, "ebooks")])
    assert result.held == ()
    assert result.groups == (
        TaxGroup("standard", Decimal("0.19"), "S", 3003, 571, None, None),
        TaxGroup("reduced", Decimal("0.07"), "AA", 5000, 350, None, None),
    )
    assert result.lines[0] == TaxLineResult(1, "standard", Decimal("0.19"), 191, "S", "DE", 1001)
    assert [x.tax_minor for x in result.lines] == [191, 190, 190, 350]
    assert result.tax_minor == 921 and result.mentions == ()


def test_eu_reverse_charge(app, de01) -> None:
    _customer(app, "C-FR", "FR", tax_id="FR40303265045")
    result = _compute(app, de01, "C-FR", [TaxLineInput(1, 120000, "saas")])
    assert result.groups == (TaxGroup("reverse_charge", Decimal(0), "AE", 120000, 0, "Reverse charge",
                                      "Reverse charge: VAT to be accounted for by the customer (Article 196 of"
                                      " Directive 2006/112/EC)"),)
    assert result.mentions == ("Reverse charge: VAT to be accounted for by the customer (Article 196 of"
                               " Directive 2006/112/EC)",)


def test_b2c_digital_at_the_buyers_rate(app, de01) -> None:
    _customer(app, "C-FR2", "FR")
    result = _compute(app, de01, "C-FR2", [TaxLineInput(1, 4999, "saas")])
    assert [(x.rate, x.tax_minor, x.jurisdiction) for x in result.lines] == [(Decimal("0.2"), 1000, "FR")]


def test_exempt_customer_everywhere(app, us01) -> None:
    _customer(app, "C-EX", "US", region="NY", tax_exempt=True, exemption_ref="ST-119-0042")
    result = _compute(app, us01, "C-EX", [TaxLineInput(1, 10000, "saas")], currency="USD")
    assert [(g.treatment, g.category, g.tax_minor) for g in result.groups] == [("exempt", "E", 0)]
    assert result.mentions == ("Tax exempt: exemption certificate ST-119-0042",)


@pytest.mark.parametrize(("region", "tax"), [("NY", 400), ("WA", 650), ("PA", 600), ("TX", 500), ("CA", 0),
                                             ("OR", 0), ("DE", 0)])
def test_us_states(app, us01, region, tax) -> None:
    _customer(app, f"C-{region}", "US", region=region)
    result = _compute(app, us01, f"C-{region}", [TaxLineInput(1, 10000, "saas")], currency="USD")
    assert result.held == () and result.tax_minor == tax


def test_us_customer_without_state_is_held(app, us01) -> None:
    _customer(app, "C-US", "US")
    result = _compute(app, us01, "C-US", [TaxLineInput(1, 10000, "saas"), TaxLineInput(2, 100, "saas")],
                      currency="USD")
    assert result.held == ((1, "the US customer has no state (region): sales tax depends on it"),
                           (2, "the US customer has no state (region): sales tax depends on it"))
    assert result.lines == () and result.groups == ()


def test_queries(app, de01) -> None:
    _customer(app, "C-FR3", "FR", tax_id="FR40303265045")
    out = app.query("tax_determination", {"entity": de01, "customer": "C-FR3", "date": "2026-02-01",
                                          "amount": "100.00"})
    assert out["treatment"] == "reverse_charge" and out["category"] == "AE" and out["tax"] == "0.00"
    assert out["rule"] == "eu_b2b_reverse_charge"
    rates = app.query("tax_rules", {"date": "2020-08-01", "country": "DE"})
    assert {(r["class"], r["rate"]) for r in rates["vat"]} == {("standard", "0.16"), ("reduced", "0.05")}


def test_an_external_engine_replaces_the_rules(app, de01) -> None:
    _customer(app, "C-DE2", "DE")

    class Flat:
        name = "flat"

        def compute(self, request: TaxRequest) -> TaxResult:
            lines = tuple(TaxLineResult(x.line_no, "standard", Decimal("0.1"), x.net_minor // 10, "S", "XX",
                                        x.net_minor) for x in request.lines)
            total = sum(x.tax_minor for x in lines)
            return TaxResult(lines, (TaxGroup("standard", Decimal("0.1"), "S", 0, total, None, None),), (), ())

    previous = set_tax_engine(Flat())
    try:
        result = _compute(app, de01, "C-DE2", [TaxLineInput(1, 1000, "saas")])
    finally:
        set_tax_engine(previous)
    assert result.tax_minor == 100
    assert isinstance(RulesEngine().rules.version, int)
