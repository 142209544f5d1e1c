"""The collections CLI end to end: bank import, payments, aging, statement (HTML/PDF), dunning, disputes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app as cli_app
from closeloop.collections.connectors.camt import write_camt053
from tests.unit.test_collections_connectors import FIXTURES

runner = CliRunner()


def run(db, *args):
    return runner.invoke(cli_app, ["--db", db, "--user", "ops", *args], catch_exceptions=False)


def jrun(db, *args):
    result = run(db, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def db(db_url):
    for name, payload in (
        ("entity.create", {"code": "US01", "name": "Acme", "country": "US", "currency": "USD"}),
        ("customer.upsert", {"source": "crm", "external_id": "SF-1", "name": "Globex", "country": "US",
                             "region": "OR", "email": "ap@globex.example"}),
        ("product.create", {"sku": "pro", "name": "Pro", "treatment": "ratable"}),
        ("price.create", {"price_id": "pro", "sku": "pro", "currency": "USD", "model": "flat", "amount": "100.00",
                          "period": "month", "timing": "advance"}),
        ("quote.create", {"quote_id": "Q1", "customer": "SF-1", "start": "2026-01-01", "term_months": 12,
                          "lines": [{"line_id": "L1", "price_id": "pro", "quantity": 1}]}),
        ("quote.accept", {"quote_id": "Q1", "contract_id": "C1"}),
        ("billing.run", {"as_of": "2026-02-01"}),
    ):
        result = run(db_url, "do", name, json.dumps(payload))
        assert result.exit_code == 0, result.output
    return db_url


def test_collections_commands(db, tmp_path):
    statement = tmp_path / "jan.xml"
    statement.write_bytes(write_camt053("DE89370400440532013000", "USD", [
        {"amount": 10000, "date": "2026-01-20", "remittance": "INV-US01-000001"},
        {"amount": 1234, "date": "2026-01-21", "remittance": "who knows"}]))
    report = jrun(db, "bank", "import", str(statement), "--format", "camt053")
    assert (report["receipts"], report["applied"], report["unapplied"]) == (2, 1, 1)
    text = run(db, "bank", "import", str(statement)).output
    assert "already" not in text or "0 receipts" in text
    payments = jrun(db, "payments", "list")
    assert payments["count"] == 2 and payments["totals"]["USD"]["unapplied"] == "12.34"
    aging = jrun(db, "aging", "--as-of", "2026-03-15")
    assert aging["d1_30"] == "100.00" and aging["total"] == "100.00"  # February's invoice, due 3 March
    assert "AR aging as of 2026-03-15" in run(db, "aging", "--as-of", "2026-03-15").output
    html, pdf = tmp_path / "st.html", tmp_path / "st.pdf"
    data = jrun(db, "statement", "SF-1", "--as-of", "2026-03-15", "--html", str(html), "--pdf", str(pdf))
    assert data["totals"]["USD"]["open"] == "100.00"
    assert "INV-US01-000002" in html.read_text() and pdf.read_bytes().startswith(b"%PDF")
    dunning = jrun(db, "dunning", "run", "--as-of", "2026-03-25")
    assert [a["step"] for a in dunning["actions"]] == ["reminder_3"] and dunning["skipped"] == 2
    opened = jrun(db, "disputes", "open", "D-1", "INV-US01-000002", "40.00", "--reason", "seats")
    assert opened["status"] == "opened"
    assert jrun(db, "disputes", "resolve", "D-1", "rejected")["status"] == "resolved_rejected"
    refused = run(db, "bank", "import", str(FIXTURES / "billion_laughs.xml"))
    assert refused.exit_code == 3 and "unsafe XML" in refused.output
