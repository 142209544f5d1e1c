"""The demo's contracts: every pattern runs through the public vocabulary for the demo customers."""

from __future__ import annotations

from datetime import date

from rich.console import Console

from closeloop.contracts.demo import create_demo_contracts
from tests.fixtures.contracts.helpers import events


def test_demo_contracts(app, clock):
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.do("entity.create", {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR"})
    customers = []
    for i, (country, entity, currency) in enumerate([("US", "US01", "USD"), ("DE", "DE01", "EUR"),
                                                     ("US", "US01", "USD"), ("FR", "DE01", "EUR"),
                                                     ("US", "US01", "USD"), ("US", None, None)], 1):
        ext = f"DEMO-{i}"
        app.do("customer.upsert", {"source": "crm", "external_id": ext, "name": f"Customer {i}", "country": country,
                                   **({"entity": entity, "currency": currency} if entity else {})})
        customers.append(ext)
    clock.set(date(2026, 1, 10))
    console = Console(record=True, width=140)
    out = create_demo_contracts(app, customers, console)
    assert out["start"] == "2026-01-01" and (out["products"], out["prices"]) == (6, 18)
    assert [d["contract_id"] for d in out["contracts"]] == ["DC-001", "DC-002", "DC-003", "DC-004", "DC-005"]
    assert out["skipped"] == [{"customer": "DEMO-6", "reason": out["skipped"][0]["reason"]}]
    assert "entity is required" in out["skipped"][0]["reason"]
    assert (out["amendments"], out["renewals"], out["cancellations"], out["approvals"],
            out["quotes_changed_after_approval"]) == (2, 1, 1, 2, 1)
    assert [d["currency"] for d in out["contracts"]] == ["USD", "EUR", "USD", "EUR", "GBP"]
    assert out["contracts"][2]["tcv"] == "27000.00"  # 24,000 project + 1,200 support + 12 x 150 seats (as of start)
    types = [e["type"] for e in events(app, "contract.")]
    assert types.count("contract.activated") == 5 and types.count("contract.cancelled") == 1
    assert "DC-005" in console.export_text()
    gbp = app.query("contract", {"contract_id": "DC-005", "as_of": "2026-02-01"})
    assert (gbp["currency"], gbp["entity"], gbp["mrr"]) == ("GBP", "US01", "239.17")  # 20 x 8.00 + 950 / 12
