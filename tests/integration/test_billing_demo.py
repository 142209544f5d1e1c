"""The demo year's billing over the demo contracts: usage, milestones and monthly bill runs."""

from __future__ import annotations

from datetime import date

from rich.console import Console

from closeloop.billing.demo import run_demo_billing
from closeloop.contracts.demo import create_demo_contracts


def test_demo_billing(app, clock):
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.do("entity.create", {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR"})
    customers = []
    for i, (country, region, entity, currency) in enumerate([("US", "NY", "US01", "USD"), ("DE", None, "DE01", "EUR"),
                                                             ("US", "OR", "US01", "USD"), ("FR", None, "DE01", "EUR"),
                                                             ("US", "WA", "US01", "USD")], 1):
        ext = f"DEMO-{i}"
        app.do("customer.upsert", {"source": "crm", "external_id": ext, "name": f"Customer {i}", "country": country,
                                   "entity": entity, "currency": currency, **({"region": region} if region else {})})
        customers.append(ext)
    clock.set(date(2026, 1, 10))
    create_demo_contracts(app, customers, Console(record=True))
    console = Console(record=True, width=120)
    out = run_demo_billing(app, "2026-07-01", console)
    assert out["bill_runs"] == 6 and out["held"] == 0
    assert out["invoices"] >= 25 and out["usage_events"] > 0 and out["usage_duplicates"] > 0
    assert out["milestones_completed"] >= 2
    assert (out["invoices"], out["usage_events"], out["usage_duplicates"], out["milestones_completed"]) == (34, 60, 5, 2)
    assert out["invoice_totals"] == {"EUR": "5483.22", "GBP": "2204.55", "USD": "29716.89"}
    assert "bill run 2026-07-01" in console.export_text()
    assert app.query("billing_preview", {"as_of": "2026-07-01"})["count"] == 0
    assert app.query("exceptions", {"kind": "unposted_event", "status": "open"})["count"] == 0
    assert app.query("ledger_verify", {})["ok"]
