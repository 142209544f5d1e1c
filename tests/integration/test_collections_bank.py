"""bank.import: every shared sample file imports; statements apply receipts; duplicates, reversals, payouts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from closeloop.collections.connectors.camt import write_camt053
from closeloop.collections.model import qr_reference, rf_reference
from closeloop.core.errors import CloseloopError
from tests.integration.collections_helpers import balance, company, events
from tests.unit.test_collections_connectors import FIXTURES, SAMPLES, needs_samples

IBAN = "DE89370400440532013000"


@needs_samples
def test_every_sample_statement_imports(app, clock, us01):
    totals = {}
    for folder, fmt in (("camt053", "camt053"), ("mt940", "mt940")):
        for path in sorted((SAMPLES / folder).iterdir()):
            report = app.do("bank.import", {"format": fmt, "file": str(path), "entity": "US01"})
            assert report["lines"] > 0, path.name
            totals[path.name] = report
    v4 = totals["camt_parser-053-valid_example_v4.xml"]
    assert (v4["lines"], v4["receipts"], v4["returned"]) == (32, 24, 2)
    assert v4["unapplied"] == 24 and v4["exceptions"] == 24 + 2  # nobody known: all held; 2 reversals unmatched
    cmxl = totals["mt940-cmxl-mt940.sta"]
    assert cmxl["receipts"] == 7 and cmxl["lines"] == 16
    # nothing is lost: every credit line is either a payment, a payout, a duplicate or ignored with a reason
    lines = app.query("bank_lines", {"limit": 100_000})["lines"]
    assert all(ln["status"] in ("payment", "returned", "ignored", "payout", "duplicate") for ln in lines)
    assert all(ln["note"] for ln in lines if ln["status"] == "ignored")
    # importing a file again changes nothing
    again = app.do("bank.import", {"format": "camt053", "file": str(SAMPLES / "camt053" /
                                                                    "camt_parser-053-valid_example_v4.xml"),
                                   "entity": "US01"})
    assert again["receipts"] == 0 and again["statements"][0]["status"] == "already_imported"


def test_statement_applies_by_reference_rf_qr_and_payer_account(app, clock):
    inv = company(app, clock, {"SF-1": "100.00", "SF-2": "250.00", "SF-3": "75.50", "SF-4": "40.00"})
    app.do("payer.link", {"account": "DE44 5001 0517 5407 3249 31", "customer": "SF-4"})
    clock.set(date(2026, 1, 20))
    data = write_camt053(IBAN, "USD", [
        {"amount": 10000, "date": "2026-01-19", "remittance": f"Invoice {inv['SF-1']} thank you", "payer": "One",
         "iban": "FR7630006000011234567890189"},
        {"amount": 25000, "date": "2026-01-19", "reference": rf_reference(inv["SF-2"]), "payer": "Two"},
        {"amount": 7550, "date": "2026-01-19", "reference": qr_reference(inv["SF-3"]), "payer": "Three"},
        {"amount": 4000, "date": "2026-01-19", "remittance": "monthly", "iban": "DE44500105175407324931"},
        {"amount": 999, "date": "2026-01-19", "remittance": "unknown transfer", "payer": "Stranger"},
        {"amount": 1500, "date": "2026-01-19", "direction": "debit", "remittance": "bank fees"},
    ])
    report = app.do("bank.import", {"format": "camt053", "content": data.decode(), "file": "jan.xml",
                                    "entity": "US01"})
    assert (report["lines"], report["receipts"], report["applied"], report["unapplied"], report["ignored"]) == (
        6, 5, 4, 1, 1)
    reasons = [p["reason"] for p in report["payments"]]
    assert reasons == ["reference", "reference", "reference", "exact_amount", "unknown_customer"]
    assert all(app.query("invoice", {"number": n})["status"] == "paid" for n in inv.values())
    assert balance(app, "cash") == "475.49" and balance(app, "unapplied_cash") == "-9.99"  # the debit is not a receipt
    # the payer account that paid by reference is remembered for next time
    clock.set(date(2026, 2, 1))
    app.do("billing.run", {"as_of": "2026-02-01"})
    data = write_camt053(IBAN, "USD", [{"amount": 10000, "date": "2026-02-03", "remittance": "feb",
                                        "iban": "FR7630006000011234567890189"}], statement_id="STMT-2")
    report = app.do("bank.import", {"format": "camt053", "content": data.decode(), "entity": "US01"})
    assert report["payments"][0]["customer"] == "SF-1" and report["payments"][0]["reason"] == "exact_amount"


def test_bank_reversal_reopens_the_invoice(app, clock):
    inv = company(app, clock, {"SF-1": "300.00"})
    data = write_camt053(IBAN, "USD", [{"amount": 30000, "date": "2026-01-10", "remittance": inv["SF-1"],
                                        "end_to_end": "E2E-77", "iban": "GB29NWBK60161331926819"}])
    app.do("bank.import", {"format": "camt053", "content": data.decode(), "entity": "US01"})
    assert app.query("invoice", {"number": inv["SF-1"]})["status"] == "paid"
    back = write_camt053(IBAN, "USD", [{"amount": 30000, "date": "2026-01-12", "direction": "debit", "reversal": True,
                                        "remittance": "RETURN " + inv["SF-1"], "end_to_end": "E2E-77",
                                        "iban": "GB29NWBK60161331926819"}], statement_id="STMT-R")
    report = app.do("bank.import", {"format": "camt053", "content": back.decode(), "entity": "US01"})
    assert report["returned"] == 1
    view = app.query("invoice", {"number": inv["SF-1"]})
    assert (view["status"], view["balance"]) == ("open", "300.00")
    amounts = [e["amount"] for e in events(app, "payment.applied")]
    assert amounts == ["300.00", "-300.00"]
    assert balance(app, "cash") == "0.00" and balance(app, "accounts_receivable") == "300.00"
    assert balance(app, "unapplied_cash") == "0.00"


def test_csv_statement_with_mapping(app, clock):
    inv = company(app, clock, {"SF-1": "100.00"})
    content = f"Datum;Betrag;Zweck;Name\n15.01.2026;100,00;{inv['SF-1']};Globex\n"
    report = app.do("bank.import", {"format": "csv", "content": content, "currency": "USD", "entity": "US01",
                                    "mapping": {"date": "Datum", "amount": "Betrag", "remittance": "Zweck",
                                                "payer_name": "Name",
                                                "options": {"decimal": ",", "date_format": "%d.%m.%Y"}}})
    assert report["applied"] == 1


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml", "truncated.xml", "wrong_namespace.xml"])
def test_hostile_files_are_refused_and_write_nothing(app, clock, us01, name):
    with pytest.raises(CloseloopError) as err:
        app.do("bank.import", {"format": "camt053", "file": str(FIXTURES / name), "entity": "US01"})
    assert err.value.code == "validation_error"
    assert app.query("bank_lines", {})["count"] == 0
    assert app.query("payments", {})["count"] == 0


def test_missing_file_and_bad_format(app, clock, us01):
    with pytest.raises(CloseloopError) as err:
        app.do("bank.import", {"format": "camt053", "file": str(Path("/nonexistent/x.xml"))})
    assert err.value.code == "not_found"
    with pytest.raises(CloseloopError) as err:
        app.do("bank.import", {"format": "bai2", "content": "x"})
    assert err.value.code == "validation_error"
