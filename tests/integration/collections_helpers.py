"""Shared set-up for the collections tests: a company with customers billed through billing's own commands."""

from __future__ import annotations

import json
from datetime import date
from typing import Any


def company(app: Any, clock: Any, customers: dict[str, str], *, start: str = "2026-01-01", entity: str = "US01",
            currency: str = "USD", country: str = "US", region: str | None = "OR", maker_checker: bool = False,
            bill: bool = True, terms: int = 30) -> dict[str, str]:
    """customers: {external_id: monthly price}. Bills the first month on ``start`` (OR: no sales tax).
    Returns {external_id: invoice number}."""
    clock.set(date.fromisoformat(start))
    app.do("entity.create", {"code": entity, "name": "Acme Inc", "country": country, "currency": currency,
                             "maker_checker": maker_checker})
    app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
    for n, (ext, price) in enumerate(customers.items(), 1):
        price_id = f"pro-{n}"
        app.do("price.create", {"price_id": price_id, "sku": "pro", "currency": currency, "model": "flat",
                                "amount": price, "period": "month", "timing": "advance"})
        app.do("customer.upsert", {"source": "crm", "external_id": ext, "name": f"Customer {ext}", "country": country,
                                   **({"region": region} if region else {}), "email": f"ap@{ext.lower()}.example",
                                   "payment_terms_days": terms, "currency": currency, "entity": entity})
        app.do("quote.create", {"quote_id": f"Q-{ext}", "customer": ext, "entity": entity, "currency": currency,
                                "start": start, "term_months": 12,
                                "lines": [{"line_id": "L1", "price_id": price_id, "quantity": 1}]})
        app.do("quote.accept", {"quote_id": f"Q-{ext}", "contract_id": f"C-{ext}"})
    if bill:
        app.do("billing.run", {"as_of": start, "entity": entity})
    return {ext: app.query("invoice", {"customer": ext, "seq": 1})["number"] for ext in customers} if bill else {}


def events(app: Any, type_: str) -> list[dict[str, Any]]:
    with app.unit_of_work(write=False) as uow:
        return [json.loads(r[0]) for r in uow.all("SELECT payload FROM event WHERE type = ? ORDER BY id", (type_,))]


def balance(app: Any, role: str, entity: str = "US01") -> str:
    return app.query("balance", {"role": role, "entity": entity})["amount"]
