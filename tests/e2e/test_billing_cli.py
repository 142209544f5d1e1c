"""Billing from the command line: usage import, bill-run (dry and real), invoice list/show/pdf."""

from __future__ import annotations

import json

from closeloop.app import App
from tests.e2e.test_cli import cli


def setup(db: str) -> None:
    app = App(db, actor="tester", migrate=False)
    try:
        app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
        app.do("customer.upsert", {"source": "crm", "external_id": "SF-1", "name": "Globex", "country": "US",
                                   "region": "OR"})
        app.do("product.create", {"sku": "pro", "name": "Pro plan", "treatment": "ratable"})
        app.do("product.create", {"sku": "api", "name": "API calls", "treatment": "usage"})
        app.do("price.create", {"price_id": "pro", "sku": "pro", "currency": "USD", "model": "flat",
                                "amount": "100.00", "period": "month", "timing": "advance"})
        app.do("price.create", {"price_id": "api", "sku": "api", "currency": "USD", "model": "usage",
                                "amount": "0.02", "period": "month", "timing": "arrears", "metric": "calls"})
        app.do("quote.create", {"quote_id": "Q-1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
                                "lines": [{"line_id": "L1", "price_id": "pro", "quantity": 1},
                                          {"line_id": "U1", "price_id": "api", "quantity": 1}]})
        app.do("quote.accept", {"quote_id": "Q-1", "contract_id": "C-1"})
    finally:
        app.close()


def test_usage_import_bill_run_and_invoice_commands(db_url, tmp_path):
    setup(db_url)
    csv_file = tmp_path / "usage.csv"
    csv_file.write_text("customer,metric,quantity,at,key\nSF-1,calls,100,2026-01-05,a1\nSF-1,calls,50,2026-01-20,a2\n")
    jsonl = tmp_path / "usage.jsonl"
    jsonl.write_text(json.dumps({"customer": "SF-1", "metric": "calls", "quantity": 50, "at": "2026-01-20",
                                 "key": "a2"}) + "\n")
    first = cli("usage", "import", str(csv_file), "--json", db=db_url)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"file": str(csv_file), "events": 2, "accepted": 2, "duplicates": 0}
    again = json.loads(cli("usage", "import", str(jsonl), "--json", db=db_url, check=True).stdout)
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    dry = json.loads(cli("bill-run", "--as-of", "2026-02-01", "--dry-run", "--json", db=db_url, check=True).stdout)
    assert dry["count"] == 2 and dry["totals"] == {"USD": "203.00"}
    run = json.loads(cli("bill-run", "--as-of", "2026-02-01", "--json", db=db_url, check=True).stdout)
    assert (run["invoices"], run["first"], run["last"]) == (2, "INV-US01-000001", "INV-US01-000002")
    listed = json.loads(cli("invoice", "list", "--customer", "SF-1", "--json", db=db_url, check=True).stdout)
    assert listed["count"] == 2 and listed["total"] == "203.00"
    shown = json.loads(cli("invoice", "show", "INV-US01-000002", "--json", db=db_url, check=True).stdout)
    assert [(ln["description"], ln["quantity"], ln["amount"]) for ln in shown["lines"]] == [
        ("Pro plan", "1", "100.00"), ("API calls: calls 2026-01-01 to 2026-01-31", "150", "3.00")]
    html = cli("invoice", "show", "INV-US01-000002", "--html", db=db_url)
    assert html.returncode == 0, html.stderr
    assert "<html" in html.stdout and "INV-US01-000002" in html.stdout
    pdf = tmp_path / "inv.pdf"
    made = cli("invoice", "pdf", "INV-US01-000002", "-o", str(pdf), db=db_url)
    assert made.returncode == 0, made.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    refused = cli("bill-run", "--as-of", "2026-01-15", "--json", db=db_url)
    assert refused.returncode == 3 and json.loads(refused.stdout)["error"]["code"] == "validation_error"
    missing = cli("invoice", "show", "INV-NOPE", db=db_url)
    assert missing.returncode == 3


def test_malformed_usage_files_are_refused_with_the_line(db_url, tmp_path):
    setup(db_url)
    cases = {"latin1.csv": "customer,metric,quantity,at,key\nSF-1,calls,1,2026-01-05,caf\xe9\n".encode("latin-1"),
             "bad.jsonl": b'{"customer": "SF-1", "metric": "calls"\n',
             "props.csv": b"customer,metric,quantity,at,key,properties\nSF-1,calls,1,2026-01-05,p1,{oops\n",
             "nul.jsonl": b'{"customer": "SF-1"}\x00\n'}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        res = cli("usage", "import", str(path), "--json", db=db_url)
        assert res.returncode == 3, (name, res.stdout, res.stderr)
        assert json.loads(res.stdout)["error"]["code"] == "validation_error"
    app = App(db_url, actor="tester", migrate=False)
    try:
        from closeloop.core.errors import CloseloopError

        for bad in ({"metric": ["calls"]}, {"customer": {"x": 1}}, {"quantity": 10**13}, {"key": "k\x00"}):
            event = {"customer": "SF-1", "metric": "calls", "quantity": 1, "at": "2026-01-05", "key": "k1", **bad}
            try:
                app.do("usage.record", {"events": [event]})
            except CloseloopError as err:
                assert err.code in ("validation_error", "not_found"), bad
            else:
                raise AssertionError(f"accepted {bad}")
    finally:
        app.close()
