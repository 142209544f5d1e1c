"""What the crash suite found in areas still being built: each test shows the behaviour and fails until it
is fixed (strict xfail), so the fix is noticed. The suite compares run numbers as RR-# meanwhile
(closeloop.bench.crash.KNOWN_DIFFERENCES)."""

from __future__ import annotations

from datetime import date


def test_a_repeated_revenue_run_with_nothing_due_takes_no_run_number(app, us01, clock):
    """Fixed (revenue): revrec.run repeated with nothing due (as after a crash that hit after its commit) records
    no run and takes no run number, so later runs, their revenue.recognized events and journal memos are
    numbered as in an uninterrupted run."""
    app.do("customer.upsert", {"source": "crm", "external_id": "C1", "name": "Globex", "country": "US",
                               "region": "OR"})
    app.do("product.create", {"sku": "seat", "name": "Seat", "treatment": "ratable"})
    app.do("price.create", {"price_id": "seat-usd", "sku": "seat", "currency": "USD", "model": "per_unit",
                            "amount": "31.00", "period": "month", "timing": "advance"})
    app.do("quote.create", {"quote_id": "Q1", "customer": "C1", "start": "2026-01-01", "term_months": 12,
                            "lines": [{"line_id": "L1", "price_id": "seat-usd", "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q1", "contract_id": "K1"})
    app.do("billing.run", {"as_of": "2026-01-01"})
    clock.set(date(2026, 1, 31))
    first = app.do("revrec.run", {"through": "2026-01-31"})
    assert first["lines"] > 0 and first["run"] == "RR-000001"
    again = app.do("revrec.run", {"through": "2026-01-31"})  # the operator re-runs the command after a crash
    assert again["lines"] == 0 and again["run"] is None and again["events"] == []
    assert again["note"] == "nothing due through 2026-01-31: no run recorded"
    app.do("billing.run", {"as_of": "2026-02-01"})
    clock.set(date(2026, 2, 28))
    february = app.do("revrec.run", {"through": "2026-02-28"})
    assert february["run"] == "RR-000002"


def test_reimporting_an_older_export_does_not_revert_a_newer_webhook_update(app, tmp_path):
    """Fixed (customers): re-importing a CRM export, as an operator does after a crash that hit after the
    import, keeps a newer webhook update of the same account; the row is reported stale."""
    export = tmp_path / "accounts.csv"
    export.write_text('"ID","NAME","BILLINGCOUNTRY","LASTMODIFIEDDATE"\r\n'
                      '"001A","Globex Inc","US","2026-01-01T10:00:00.000Z"\r\n')
    app.do("customer.import", {"file": str(export), "format": "salesforce", "source": "crm"})
    app.do("crm.event", {"event": {"id": "evt-1", "type": "account.upserted", "source": "crm",
                                   "occurred_at": "2026-01-05T10:00:00Z",
                                   "data": {"external_id": "001A", "name": "Globex Holdings Inc"}}}, source="crm")
    again = app.do("customer.import", {"file": str(export), "format": "salesforce", "source": "crm"})
    assert app.query("customer", {"external_id": "001A"})["name"] == "Globex Holdings Inc"
    assert (again["updated"], again["stale"]) == (0, 1)
    assert [(s["field"], s["kept"], s["ignored"]) for s in again["stale_fields"]] == [
        ("name", "Globex Holdings Inc", "Globex Inc")]
