"""A small order-to-cash company for the web pages' tests and screenshots, built through the vocabulary.

Two entities (US01 in USD, DE01 in EUR, with addresses and tax ids so e-invoices can be made), a
customer hierarchy with a suspected duplicate and a system-of-record conflict, a catalogue, quotes
(accepted, and two waiting for a sales manager's approval), contracts with an amendment, three
monthly bill runs, a payment applied by reference and one left unapplied, a failed card payment
in dunning, a dispute, a credit memo, revenue recognition, a reconciliation run, January closed
for US01, a rollout wave plan (W1 live, W2 no-go, W3 ready) and a variation waiting for approval. The clock ends on 10 March 2026.

    from closeloop.web.sample import build_sample
    facts = build_sample(app, clock)          # app: an App on a fresh database, clock: its ScenarioClock
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

from closeloop.core.errors import CloseloopError

WAVE_PLAN = """
waves:
  - wave: W1
    name: US and Germany core
    scope: {entities: [US01, DE01]}
    gates:
      - {measure: open_exceptions, kind: tax_undetermined, max: 0}
      - {measure: scenarios_passing}
      - {measure: data_quality_score, min: "60"}
  - wave: W2
    name: Usage billing
    scope: {capabilities: [usage_billing]}
    gates:
      - {measure: data_quality_score, min: "95"}
      - {measure: open_exceptions, max: 0}
  - wave: W3
    name: FX revaluation
    scope: {capabilities: [revenue_automation]}
    gates:
      - {measure: scenarios_passing}
capabilities:
  usage_billing: [usage.record]
  revenue_automation: [fx.revalue]
"""

ENTITIES = [
    {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD", "region": "CA", "tax_id": "12-3456789",
     "address": {"street": "1 Market Street", "city": "San Francisco", "postal_code": "94105"}},
    {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR", "tax_id": "DE136695976",
     "address": {"street": "Friedrichstrasse 100", "city": "Berlin", "postal_code": "10117"}},
]

CUSTOMERS = [
    {"source": "crm", "external_id": "ACME-TOP", "name": "Acme Holdings Inc", "country": "US", "region": "CA",
     "entity": "US01", "currency": "USD", "postal_code": "19801",
     "address": {"street": "1 Acme Plaza", "city": "Wilmington"}},
    {"source": "crm", "external_id": "SF-001", "name": "Globex LLC", "country": "US", "region": "OR",
     "entity": "US01", "currency": "USD", "parent": "ACME-TOP", "postal_code": "97201", "tax_id": "04-2103594",
     "email": "ap@globex.example", "address": {"street": "500 Howard Street", "city": "Portland"}},
    {"source": "crm", "external_id": "SF-002", "name": "Initech", "country": "US", "region": "OR", "entity": "US01",
     "currency": "USD", "parent": "ACME-TOP", "postal_code": "97205",
     "address": {"street": "4120 Freidrich Lane", "city": "Portland"}},
    {"source": "migration", "external_id": "LEGACY-77", "name": "GLOBEX", "country": "US", "postal_code": "97201",
     "address": {"street": "500 Howard Street", "city": "Portland"}, "tax_id": "042103594",
     "email": "billing@globex.com"},
    {"source": "crm", "external_id": "SF-DE1", "name": "Muster AG", "country": "DE", "entity": "DE01",
     "currency": "EUR", "tax_id": "DE811907980", "postal_code": "80331", "email": "rechnung@muster.example",
     "address": {"street": "Marienplatz 1", "city": "München"}},
]


def build_sample(app: Any, clock: Any, *, actor: str | None = None) -> dict[str, Any]:
    """Build the company; returns the records made (invoice numbers, quotes waiting for approval...)."""

    def do(name: str, payload: dict[str, Any], who: str | None = None) -> dict[str, Any]:
        return app.do(name, payload, actor=who or actor)  # type: ignore[no-any-return]

    def at(day: str) -> None:
        clock.set(date.fromisoformat(day))

    at("2026-01-01")
    existing = {e["code"] for e in app.query("entities", {}, actor=actor)["entities"]}
    for ent in ENTITIES:
        if ent["code"] not in existing:
            do("entity.create", ent)
    for cust in CUSTOMERS:
        do("customer.upsert", cust)
    with contextlib.suppress(CloseloopError):  # billing may not rename what the CRM owns: a not_owner exception
        do("customer.upsert", {"source": "billing", "external_id": "SF-002", "name": "Initech Billing Dept"})
    do("product.create", {"sku": "seat", "name": "Seat licence", "treatment": "ratable", "ssp": "12.00"})
    do("price.create", {"price_id": "seat-usd", "sku": "seat", "currency": "USD", "model": "per_unit",
                        "amount": "10.00", "period": "month", "timing": "advance"})
    do("price.create", {"price_id": "seat-eur", "sku": "seat", "currency": "EUR", "model": "per_unit",
                        "amount": "9.00", "period": "month", "timing": "advance"})

    def quote(quote_id: str, customer: str, price: str, quantity: int, discount: int = 0) -> None:
        line: dict[str, Any] = {"line_id": "L1", "price_id": price, "quantity": quantity}
        if discount:
            line["discount_pct"] = discount
        do("quote.create", {"quote_id": quote_id, "customer": customer, "start": "2026-01-01", "term_months": 12,
                            "lines": [line]})

    quote("Q-1001", "SF-001", "seat-usd", 10)
    do("quote.accept", {"quote_id": "Q-1001", "contract_id": "C-1001"})
    quote("Q-1003", "SF-DE1", "seat-eur", 5)
    do("quote.accept", {"quote_id": "Q-1003", "contract_id": "C-1003"})
    quote("Q-1002", "SF-002", "seat-usd", 20, discount=25)  # waits for a sales manager (discount over 20%)
    quote("Q-1004", "SF-002", "seat-usd", 8, discount=30)
    do("billing.run", {"as_of": "2026-01-01"})

    at("2026-01-20")
    do("payment.receive", {"customer": "SF-001", "amount": "100.00", "currency": "USD",
                           "reference": "INV-US01-000001"})
    at("2026-02-01")
    do("contract.amend", {"contract_id": "C-1001", "effective": "2026-02-01",
                          "changes": [{"line_id": "L1", "quantity": 15}], "reason": "upsell: five more seats"})
    do("billing.run", {"as_of": "2026-02-01"})
    at("2026-02-03")
    do("revrec.run", {"through": "2026-01-31"})
    at("2026-02-05")
    do("dispute.open", {"dispute_id": "D-1", "invoice": "INV-US01-000002", "amount": "50.00",
                        "reason": "five seats were never used", "reason_code": "billing_error"})
    do("payment.fail", {"customer": "SF-DE1", "invoice": "INV-DE01-000001", "amount": "53.55",
                        "reason": "card_declined"})
    at("2026-02-06")
    do("payment.receive", {"customer": "SF-001", "amount": "30.00", "currency": "USD", "reference": "thanks"})
    do("invoice.credit", {"invoice": "INV-DE01-000002", "amount": "9.00", "reason": "one seat not delivered"})
    do("recon.run", {"as_of": "2026-01-31"})
    close = do("close.run", {"entity": "US01", "period": "2026-01"})
    at("2026-03-01")
    do("billing.run", {"as_of": "2026-03-01"})
    do("dunning.run", {"as_of": "2026-03-01"})
    at("2026-03-02")
    do("revrec.run", {"through": "2026-02-28"})
    do("waves.plan", {"body": WAVE_PLAN})
    do("waves.record_scenarios", {"passed": 47, "failed": 0})
    do("wave.golive", {"wave": "W1"})  # the entities stay live; W2 (no-go) and W3 (go) wait
    do("variation.register", {"variation_id": "VAR-DE-1", "title": "German invoices state the delivery month",
                              "area": "billing", "scope": "entity DE01", "classification": "regulatory",
                              "owner": "billing-de", "reason": "UStG section 14 requires the date of supply",
                              "review_date": "2026-12-31"}, who="alice" if actor is None else actor)
    at("2026-03-10")
    return {"entities": [e["code"] for e in ENTITIES], "customers": [c["external_id"] for c in CUSTOMERS],
            "pending_quotes": ["Q-1002", "Q-1004"], "contracts": ["C-1001", "C-1003"],
            "invoice": "INV-US01-000001", "invoice_de": "INV-DE01-000001", "dispute": "D-1",
            "closed": close.get("locked")}
