"""Billing service on a fresh database: events against the catalogue, dry runs, crash and resume,
partitions, usage batches, voids, documents, numbering, balances and the collections API."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from closeloop.core.errors import CloseloopError

FIELD_TYPES = {"str": str, "int": int, "bool": bool}


def check_payload(event_type: str, payload: dict[str, Any]) -> None:
    """The payload has exactly the catalogue's fields with their types, and satisfies its identities."""
    from closeloop.posting.service import catalogue

    schema = catalogue()[event_type]

    def check(fields: dict[str, Any], data: dict[str, Any], where: str) -> None:
        required = {k for k, v in fields.items() if not (isinstance(v, str) and v.endswith("?"))}
        assert required <= set(data), f"{where}: missing {sorted(required - set(data))}"
        assert set(data) <= set(fields), f"{where}: unknown fields {sorted(set(data) - set(fields))}"
        for name, kind in fields.items():
            if name not in data or data[name] is None:
                continue
            value = data[name]
            if isinstance(kind, dict):
                assert isinstance(value, list)
                for i, item in enumerate(value):
                    check(kind["items"], item, f"{where}.{name}[{i}]")
                continue
            base = kind.rstrip("?")
            if base == "amount":
                assert isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value), (where, name, value)
            elif base == "date":
                assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), (where, name, value)
            elif base in FIELD_TYPES:
                assert isinstance(value, FIELD_TYPES[base]), (where, name, value)

    check(dict(schema.fields), payload, event_type)
    for identity in schema.identities:
        left, right = (side.strip() for side in identity.split("="))

        def value(expr: str) -> Decimal:
            total = Decimal(0)
            for sign, term in re.findall(r"([+-]?)\s*([\w.()]+)", expr):
                m = re.fullmatch(r"sum\((\w+)\.(\w+)\)", term)
                v = sum((Decimal(x[m.group(2)]) for x in payload[m.group(1)]), Decimal(0)) if m else Decimal(
                    payload[term])
                total += -v if sign == "-" else v
            return total

        assert value(left) == value(right), (event_type, identity)


def events(app, type_: str) -> list[dict[str, Any]]:
    import json

    with app.unit_of_work(write=False) as uow:
        return [json.loads(r[0]) for r in uow.all("SELECT payload FROM event WHERE type = ? ORDER BY id", (type_,))]


def setup_company(app, clock, *, customers=("SF-1",), region="NY", start="2026-01-01", price="100.00",
                  metered=False) -> None:
    from datetime import date

    clock.set(date.fromisoformat(start))
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD",
                             "tax_id": "12-3456789", "address": {"street": "1 Main St", "city": "Albany"}})
    app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
    app.do("price.create", {"price_id": "pro", "sku": "pro", "currency": "USD", "model": "flat", "amount": price,
                            "period": "month", "timing": "advance"})
    if metered:
        app.do("product.create", {"sku": "api", "name": "API calls", "treatment": "usage"})
        app.do("price.create", {"price_id": "api", "sku": "api", "currency": "USD", "model": "usage",
                                "amount": "0.01", "period": "month", "timing": "arrears", "metric": "calls"})
    for n, ext in enumerate(customers, 1):
        app.do("customer.upsert", {"source": "crm", "external_id": ext, "name": f"Customer {ext}", "country": "US",
                                   "region": region, "email": f"ap@{ext.lower()}.example"})
        lines = [{"line_id": "L1", "price_id": "pro", "quantity": 1}]
        if metered:
            lines.append({"line_id": "U1", "price_id": "api", "quantity": 1})
        app.do("quote.create", {"quote_id": f"Q-{n}", "customer": ext, "start": start, "term_months": 12,
                                "billing_day": 1, "lines": lines})
        app.do("quote.accept", {"quote_id": f"Q-{n}", "contract_id": f"C-{n}"})


def test_issued_events_match_the_catalogue_and_post(app, clock):
    setup_company(app, clock, customers=("SF-1", "SF-2"))
    result = app.do("billing.run", {"as_of": "2026-01-01"})
    assert result["invoices"] == 2 and result["first"] == "INV-US01-000001" and result["last"] == "INV-US01-000002"
    issued = events(app, "invoice.issued")
    assert [p["invoice"] for p in issued] == ["INV-US01-000001", "INV-US01-000002"]
    for p in issued:
        check_payload("invoice.issued", p)
        assert p["total"] == "104.00" and p["lines"][0]["period_end"] == "2026-01-31"
    # NY 4%: 2 x 104.00 receivable, 8.00 tax payable
    assert app.query("balance", {"role": "accounts_receivable", "entity": "US01"})["amount"] == "208.00"
    assert app.query("balance", {"role": "tax_payable", "entity": "US01"})["amount"] == "-8.00"
    app.do("invoice.credit", {"invoice": "INV-US01-000001", "amount": "10.00", "reason": "goodwill"})
    check_payload("credit_memo.issued", events(app, "credit_memo.issued")[0])
    # a cancellation credit becomes customer credit, applied to the next invoice at issue
    app.do("contract.cancel", {"contract_id": "C-2", "effective": "2026-01-11"})
    from datetime import date

    clock.set(date(2026, 2, 1))
    app.do("billing.run", {"as_of": "2026-02-01"})
    neg = app.query("invoice", {"customer": "SF-2", "seq": 2})
    # 21 unused days of 31: 100 x 21/31 = 67.74 net, 4% tax 2.71
    assert (neg["subtotal"], neg["tax"], neg["total"], neg["credit_created"]) == ("-67.74", "-2.71", "-70.45", "70.45")
    for p in events(app, "invoice.issued"):
        check_payload("invoice.issued", p)
    assert app.query("customer", {"external_id": "SF-2"})["credit_balance"] == "70.45"
    app.do("credit.apply", {"customer": "SF-2", "invoice": {"customer": "SF-2", "seq": 1}})
    for p in events(app, "credit.applied"):
        check_payload("credit.applied", p)
    assert app.query("invoice", {"customer": "SF-2", "seq": 1})["balance"] == "33.55"
    assert app.query("ledger_verify", {})["ok"]


def test_dry_run_and_preview_save_nothing_and_match_the_run(app, clock):
    setup_company(app, clock, customers=("SF-1", "SF-2", "SF-3"))
    dry = app.do("billing.run", {"as_of": "2026-03-01", "dry_run": True})
    preview = app.query("billing_preview", {"as_of": "2026-03-01"})
    assert dry["count"] == preview["count"] == 9 and dry["totals"] == {"USD": "936.00"}
    assert app.query("invoices", {})["count"] == 0
    run = app.do("billing.run", {"as_of": "2026-03-01"})
    assert run["invoices"] == 9
    assert app.query("invoices", {})["total"] == "936.00"
    assert [i["date"] for i in app.query("invoices", {"customer": "SF-1"})["items"]] == [
        "2026-01-01", "2026-02-01", "2026-03-01"]
    assert app.do("billing.run", {"as_of": "2026-03-01"})["invoices"] == 0
    assert app.query("billing_preview", {"as_of": "2026-03-01"})["count"] == 0


def snapshot(app) -> list[tuple[Any, ...]]:
    with app.unit_of_work(write=False) as uow:
        return [tuple(r) for r in uow.all(
            "SELECT i.number, i.customer, i.date, i.total, i.tax, l.line_no, l.net, l.description FROM billing_invoice i"
            " JOIN billing_line l ON l.invoice_id = i.id ORDER BY i.number, l.line_no")]


def test_a_crash_part_way_then_a_rerun_gives_the_invoices_of_an_uninterrupted_run(app, clock, db_url):
    from closeloop.billing import service

    setup_company(app, clock, customers=tuple(f"SF-{i}" for i in range(1, 8)))
    service._FAULT["after_partitions"] = 2
    old = service.PARTITION_SIZE
    service.PARTITION_SIZE = 2
    try:
        with pytest.raises(RuntimeError):
            app.do("billing.run", {"as_of": "2026-02-01"})
        assert app.query("invoices", {})["count"] == 0  # nothing partially billed
        service._FAULT["after_partitions"] = None
        app.do("billing.run", {"as_of": "2026-02-01"})
    finally:
        service._FAULT["after_partitions"] = None
        service.PARTITION_SIZE = old
    once = snapshot(app)
    assert len({r[0] for r in once}) == 14
    # the same run in committed partitions, interrupted after two of them and resumed
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock
    from closeloop.scenarios.fresh import fresh_database
    from tests.conftest import TEST_DATABASE

    with fresh_database(TEST_DATABASE) as url:
        other_clock = ScenarioClock(clock.today())
        other = App(url, clock=other_clock, actor="tester", migrate=False)
        try:
            setup_company(other, other_clock, customers=tuple(f"SF-{i}" for i in range(1, 8)))
            first = service.run_in_partitions(other, "2026-02-01", partition_size=2, stop_after=2)
            assert first["status"] == "interrupted"
            resumed = service.run_in_partitions(other, "2026-02-01", partition_size=2, run_id=first["run"])
            assert resumed["status"] == "completed"
            assert snapshot(other) == once
            assert other.query("billing_runs", {})["items"][0]["status"] == "completed"
        finally:
            other.close()


def test_usage_batches_are_all_or_nothing_and_report_every_problem(app, clock):
    from datetime import date

    setup_company(app, clock, metered=True)
    clock.set(date(2026, 1, 20))
    good = [{"customer": "SF-1", "metric": "calls", "quantity": "10", "at": "2026-01-05", "key": f"k{i}"}
            for i in range(5)]
    assert app.do("usage.record", {"events": good}) == {"accepted": 5, "duplicates": 0}
    bad = good + [{"customer": "SF-1", "metric": "calls", "quantity": "1.0000001", "at": "2026-01-05", "key": "x1"},
                  {"customer": "SF-1", "metric": "calls", "quantity": "1", "at": "2026-02-05", "key": "x2"},
                  {"customer": "SF-1", "metric": "calls", "quantity": "11", "at": "2026-01-05", "key": "k0"}]
    with pytest.raises(CloseloopError) as err:
        app.do("usage.record", {"events": bad})
    assert err.value.code == "validation_error"
    assert [e["field"] for e in err.value.details["errors"]] == ["events[5].quantity", "events[6].at", "events[7].key"]
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM billing_usage") == 5
    with pytest.raises(CloseloopError) as err:
        app.do("usage.record", {"events": good[:1] + bad[-1:]})
    assert err.value.code == "conflict"
    assert app.do("usage.record", {"events": good}) == {"accepted": 0, "duplicates": 5}
    clock.set(date(2026, 2, 1))
    app.do("billing.run", {"as_of": "2026-02-01"})
    inv = app.query("invoice", {"customer": "SF-1", "seq": 2})
    assert [(ln["quantity"], ln["amount"]) for ln in inv["lines"]] == [("1", "100.00"), ("50", "0.50")]


def test_void_only_before_posting_and_the_charges_become_billable_again(app, clock):
    setup_company(app, clock)
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    app.do("billing.run", {"as_of": "2026-01-01"})  # posting fails: January is closed
    assert app.query("exceptions", {"kind": "unposted_event"})["count"] == 1
    result = app.do("invoice.void", {"invoice": "INV-US01-000001", "reason": "wrong period"})
    assert result == {"invoice": "INV-US01-000001", "status": "void"}
    check_payload("invoice.voided", events(app, "invoice.voided")[0])
    from datetime import date

    clock.set(date(2026, 2, 1))
    app.do("billing.run", {"as_of": "2026-02-01"})
    items = app.query("invoices", {"customer": "SF-1"})["items"]
    assert [(i["number"], i["status"], i["date"]) for i in items] == [
        ("INV-US01-000001", "void", "2026-01-01"), ("INV-US01-000002", "open", "2026-01-01"),
        ("INV-US01-000003", "open", "2026-02-01")]
    with pytest.raises(CloseloopError) as err:
        app.do("invoice.void", {"invoice": "INV-US01-000003"})
    assert err.value.code == "validation_error" and "posted" in err.value.message


def test_document_html_and_pdf(app, clock):
    setup_company(app, clock)
    app.do("billing.run", {"as_of": "2026-01-01"})
    from closeloop.billing.documents import render_html, render_pdf
    from closeloop.billing.service import invoice_document

    with app.unit_of_work(write=False) as uow:
        doc = invoice_document(uow, "INV-US01-000001")
    assert set(doc) == {"number", "kind", "date", "due_date", "currency", "status", "seller", "buyer", "lines",
                        "tax_breakdown", "subtotal", "tax", "total", "credit_applied", "amount_due", "mentions",
                        "payment_terms_days", "original_invoice", "reason"}
    assert doc["seller"] == {"entity": "US01", "name": "Acme Inc", "country": "US", "tax_id": "12-3456789",
                             "address": {"street": "1 Main St", "city": "Albany"}}
    assert doc["buyer"]["customer"] == "SF-1" and doc["buyer"]["region"] == "NY"
    assert doc["lines"] == [{"line_no": 1, "description": "Pro plan", "sku": "pro", "quantity": "1",
                             "unit_price": "100", "net": "100.00", "tax": "4.00", "tax_treatment": "standard",
                             "tax_rate": "0.04", "tax_category": "S", "period_start": "2026-01-01",
                             "period_end": "2026-01-31"}]
    assert doc["tax_breakdown"] == [{"treatment": "standard", "rate": "0.04", "category": "S", "taxable": "100.00",
                                     "tax": "4.00"}]
    assert (doc["total"], doc["amount_due"], doc["payment_terms_days"]) == ("104.00", "104.00", 30)
    html = render_html(doc)
    assert "INV-US01-000001" in html and "2026-01-01 &ndash; 2026-01-31" in html and "4%" in html
    pdf = render_pdf(doc)
    assert pdf.startswith(b"%PDF")
    app.do("invoice.credit", {"invoice": "INV-US01-000001", "reason": "cancelled"})
    with app.unit_of_work(write=False) as uow:
        memo = invoice_document(uow, "CM-US01-000001")
    assert (memo["kind"], memo["original_invoice"], memo["reason"], memo["total"]) == (
        "credit_memo", "INV-US01-000001", "cancelled", "104.00")


def test_numbers_are_gapless_per_entity_and_sequence(app, clock):
    setup_company(app, clock, customers=("SF-1",))
    app.do("entity.create", {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR"})
    app.do("price.create", {"price_id": "pro-eur", "sku": "pro", "currency": "EUR", "model": "flat",
                            "amount": "90.00", "period": "month", "timing": "advance"})
    app.do("customer.upsert", {"source": "crm", "external_id": "DE-1", "name": "Kunde GmbH", "country": "DE",
                               "tax_id": "DE136695976", "currency": "EUR", "entity": "DE01"})
    app.do("quote.create", {"quote_id": "Q-DE", "customer": "DE-1", "entity": "DE01", "currency": "EUR",
                            "start": "2026-01-01", "term_months": 12, "lines": [{"line_id": "L1", "price_id": "pro-eur",
                                                                               "quantity": 1}]})
    app.do("quote.accept", {"quote_id": "Q-DE", "contract_id": "C-DE"})
    app.do("billing.run", {"as_of": "2026-02-01"})
    numbers = sorted(i["number"] for i in app.query("invoices", {"limit": 100})["items"])
    assert numbers == ["INV-DE01-000001", "INV-DE01-000002", "INV-US01-000001", "INV-US01-000002"]
    de = app.query("invoice", {"number": "INV-DE01-000001"})
    assert (de["tax"], de["lines"][0]["tax_treatment"]) == ("17.10", "standard")  # domestic German VAT 19%


def test_collections_api(app, clock):
    from closeloop.billing import service

    setup_company(app, clock)
    app.do("billing.run", {"as_of": "2026-01-01"})
    with app.unit_of_work() as uow:
        cust = uow.scalar("SELECT id FROM customer WHERE external_id = 'SF-1'")
        assert [i["number"] for i in service.open_invoices(uow, cust)] == ["INV-US01-000001"]
        assert service.apply_payment_to_invoice(uow, "INV-US01-000001", 4000)["status"] == "partially_paid"
        with pytest.raises(CloseloopError) as err:
            service.apply_payment_to_invoice(uow, "INV-US01-000001", 10000)
        assert err.value.code == "insufficient_amount"
        service.write_off_invoice(uow, "INV-US01-000001", None, "bankrupt")
    inv = app.query("invoice", {"number": "INV-US01-000001"})
    assert (inv["paid"], inv["written_off"], inv["balance"], inv["status"]) == ("40.00", "64.00", "0.00",
                                                                               "written_off")
    check_payload("invoice.written_off", events(app, "invoice.written_off")[0])


def test_a_charge_and_its_credit_in_one_run_are_linked(app, clock):
    setup_company(app, clock, customers=("SF-1", "SF-2"))
    from datetime import date

    clock.set(date(2026, 1, 20))
    app.do("contract.cancel", {"contract_id": "C-1", "effective": "2026-01-21"})
    clock.set(date(2026, 2, 1))
    app.do("billing.run", {"as_of": "2026-02-01"})
    with app.unit_of_work(write=False) as uow:
        rows = uow.all("SELECT l.id, l.kind, l.net, l.credit_of, l.credited FROM billing_line l JOIN billing_invoice i"
                       " ON i.id = l.invoice_id WHERE i.customer = 'SF-1' ORDER BY l.id")
    (charge_id, _, net, _, credited), (_, kind, credit, credit_of, _) = rows
    assert (net, kind, credit, credit_of, credited) == (10000, "credit", -3548, charge_id, 3548)
    assert app.do("billing.run", {"as_of": "2026-02-01"})["invoices"] == 0


def test_two_workers_share_a_bill_run_without_duplicating_or_gaps(app, clock, db_url):
    import threading

    from closeloop.app import App
    from closeloop.billing import service

    setup_company(app, clock, customers=tuple(f"SF-{i}" for i in range(1, 11)))
    with app.unit_of_work() as uow:
        run_id, parts = service.start_run(uow, clock.today(), None, partition_size=2)
    assert parts == 5
    errors: list[BaseException] = []

    def work(name: str) -> None:
        worker = App(db_url, clock=clock, actor=name, migrate=False)
        try:
            service.run_in_partitions(worker, clock.today().isoformat(), run_id=run_id, worker=name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            worker.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = sorted(i["number"] for i in app.query("invoices", {"limit": 100})["items"])
    assert numbers == [f"INV-US01-{n:06d}" for n in range(1, 11)]
    assert app.query("billing_runs", {})["items"][0]["status"] == "completed"
    assert app.do("billing.run", {"as_of": clock.today().isoformat()})["invoices"] == 0
