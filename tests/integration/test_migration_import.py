"""closeloop import migration: the sample's planted problems found exactly, all or nothing, accept-valid with
exceptions, tie-outs, rationalisation by merge, idempotent re-runs, and a bill run that continues exactly."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import yaml

from closeloop.core.errors import CloseloopError
from closeloop.rollout.legacy_sample import generate

TABLES = ("customer", "customer_contact", "contracts_contract", "billing_invoice", "journal_entry", "catalog_product",
          "migration_record", "migration_run", "exception_item", "event")


def counts(app):
    with app.unit_of_work(write=False) as uow:
        return {t: int(uow.scalar(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, dict]:
    planted = generate(tmp_path / "legacy", customers=200, seed=7)
    return tmp_path / "legacy", planted


@pytest.fixture
def feb(app, clock):
    clock.set(date(2026, 2, 1))
    return app


def test_the_report_finds_exactly_the_planted_problems(feb, sample):
    folder, planted = sample
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert manifest["planted"]["problems"] == planted["problems"]
    before = counts(feb)
    report = feb.query("migration_preview", {"dir": str(folder)})
    assert counts(feb) == before  # a dry run writes nothing
    assert report["status"] == "dry_run"
    assert report["problem_counts"] == planted["problems"] == {
        "bad_tax_id": 2, "billed_through_misaligned": 2, "broken_reference": 6, "duplicate_id": 4,
        "hierarchy_cycle": 2, "overlapping_contract": 2, "unbalanced": 1}
    assert report["duplicates"]["found"] == report["duplicates"]["merged"] == planted["duplicates"] == 4
    assert sorted([m["survivor"], m["merged"]] for m in report["duplicates"]["merges"]) == sorted(
        planted["rows"]["duplicates"])
    by_code: dict[str, set] = {}
    for p in report["problems"]:
        assert p["file"] and p["row"] > 1 and p["field"] and p["reason"]
        by_code.setdefault(p["code"], set()).add(p["key"])
    assert by_code["bad_tax_id"] == set(planted["rows"]["bad_tax_id"])
    assert by_code["hierarchy_cycle"] == set(planted["rows"]["hierarchy_cycle"])
    assert by_code["overlapping_contract"] == set(planted["rows"]["overlapping_contract"])
    assert by_code["billed_through_misaligned"] == set(planted["rows"]["billed_through_misaligned"])
    assert by_code["broken_reference"] == set(planted["rows"]["missing_parent"] + planted["rows"]
                                              ["contact_unknown_customer"] + planted["rows"]["contract_unknown_price"]
                                              + planted["rows"]["invoice_unknown_customer"])
    assert by_code["unbalanced"] == {"GB01"}
    unbalanced = next(p for p in report["problems"] if p["code"] == "unbalanced")
    assert unbalanced["reason"].endswith("GBP (difference -100.00)")
    # The receivables tie out once the rejected invoices are counted: they explain the difference exactly.
    us = next(r for r in report["tie_outs"]["ar"] if (r["entity"], r["currency"]) == ("US01", "USD"))
    assert us["ties"] and us["rejected"] == "240.00" and us["difference"] == "0.00"
    assert report["tie_outs"]["ar_passed"] is True
    assert report["tie_outs"]["contracts"]["misaligned"] == 2


def test_all_or_nothing_then_accept_valid_then_rerun_changes_nothing(feb, sample):
    folder, planted = sample
    before = counts(feb)
    with pytest.raises(CloseloopError) as err:
        feb.do("migration.import", {"dir": str(folder)})
    assert err.value.code == "validation_error"
    assert err.value.message.startswith("migration refused: 19 problem(s) in 19 row(s), nothing was imported")
    assert err.value.details["report"]["status"] == "refused"
    after = counts(feb)
    assert {t: after[t] - before[t] for t in TABLES if after[t] != before[t]} == {}

    report = feb.do("migration.import", {"dir": str(folder), "accept_valid": True})
    assert report["status"] == "accepted"
    # Rejected: 2 invoices of unknown customers and 2 repeated numbers; 2 overlapping, 2 misaligned and 1 contract
    # on an unknown price; GB01's unbalanced opening balances.
    contracts, invoices = planted["contracts"] - 5, planted["invoices"] - 4
    assert report["created"]["merges"] == 4 and report["created"]["contracts"] == contracts
    assert report["created"]["open_invoices"] == invoices and report["created"]["opening_balances"] == 2
    rejected = feb.query("exceptions", {"kind": "import_rejected", "status": "open"})
    assert rejected["count"] == 19
    lost = next(i for i in rejected["items"] if i["record"]["migration_row"].startswith("open_invoices.csv")
                and i["details"]["code"] == "broken_reference")
    assert lost["amount"] == "120.00" and lost["currency"] == "USD"
    verify = feb.query("migration_verify", {})
    assert verify["passed"], verify
    # GL: balanced entities; the clearing account holds exactly the rejected receivables (US01) and, where
    # the opening balances were refused (GB01 unbalanced), the migrated invoices wait against it.
    tb = feb.query("trial_balance", {"entity": "US01"})
    assert tb["balanced"] and tb["accounts"]["1190"] == "240.00"
    assert feb.query("balance", {"account": "1190", "entity": "DE01"})["amount"] == "0.00"
    gb_ar = feb.query("balance", {"role": "accounts_receivable", "entity": "GB01"})["amount"]
    assert feb.query("balance", {"account": "1190", "entity": "GB01"})["amount"] == f"-{gb_ar}"

    snapshot = counts(feb)
    again = feb.do("migration.import", {"dir": str(folder), "accept_valid": True})
    assert again["created"] == {}
    assert {k: c["created"] for k, c in again["counts"].items() if c["created"]} == {}
    assert again["counts"]["open_invoices"]["unchanged"] == invoices
    now = counts(feb)
    changed = {t: now[t] - snapshot[t] for t in TABLES if now[t] != snapshot[t]}
    assert set(changed) <= {"migration_run", "event"} and changed.get("migration_run") == 1
    assert feb.query("exceptions", {"kind": "import_rejected", "status": "open"})["count"] == 19


def test_merged_duplicates_carry_their_invoices_and_subsidiaries(feb, sample):
    folder, planted = sample
    feb.do("migration.import", {"dir": str(folder), "accept_valid": True})
    for survivor, copy in planted["rows"]["duplicates"]:
        merged = feb.query("customer", {"external_id": copy})
        assert merged["status"] == "merged" and merged["merged_into"] == survivor
    for kid, copy in planted["rows"]["child_of_copy"]:
        survivor = dict(planted["rows"]["duplicates"])
        inverse = {c: s for s, c in planted["rows"]["duplicates"]}
        assert feb.query("customer", {"external_id": kid})["parent"] == inverse[copy]
        del survivor
    invoices = feb.query("invoices", {"customer": planted["rows"]["duplicates"][0][1], "limit": 100})
    assert all(i["customer"] == planted["rows"]["duplicates"][0][0] for i in invoices["items"])


def test_a_bill_run_right_after_the_migration_bills_exactly_the_next_periods(feb, sample):
    folder, _planted = sample
    feb.do("migration.import", {"dir": str(folder), "accept_valid": True})
    run = feb.do("billing.run", {"as_of": "2026-02-01"})
    assert run["held"] == 0 and run["invoices"] > 0
    periods = Counter()
    for item in feb.query("invoices", {"date_from": "2026-02-01", "limit": 10_000})["items"]:
        if item["number"].startswith("LEG-"):
            continue
        for line in feb.query("invoice", {"number": item["number"]})["lines"]:
            periods[line["period_start"]] += 1
            assert line["period_start"] >= "2026-02-01", line
    assert set(periods) == {"2026-02-01"}
    # The migration's own expectation: contracts due on 1 February are exactly those billed now.
    due = feb.query("migration_preview", {"dir": str(folder), "accept_valid": True})
    assert due["counts"]["contracts"]["unchanged"] == _planted["contracts"] - 5
    rerun = feb.do("billing.run", {"as_of": "2026-02-01"})
    assert rerun["invoices"] == 0


def _files(**over):
    base = {
        "manifest.yaml": "system: OldBill\ncutover: '2026-01-31'\n",
        "entities.csv": "code,name,country,currency\nUS01,Acme Inc,US,USD\n",
        "customers.csv": ("legacy_id,name,country,region,postal_code,tax_id,entity,currency\n"
                          "C1,Globex LLC,US,NY,10001,12-3456789,US01,USD\n"
                          "C2,Initech Inc,US,TX,78701,20-1234567,US01,USD\n"),
        "products.csv": "sku,name,treatment\nPLAT,Platform,ratable\n",
        "prices.csv": "price_id,sku,currency,model,amount,period,timing\nPLAT-USD,PLAT,USD,flat,100.00,month,advance\n",
        "contracts.csv": ("contract_id,customer_id,start,term_months,billing_day,billed_through\n"
                          "K1,C1,2025-06-01,24,1,2026-01-31\n"),
        "contract_lines.csv": "contract_id,line_id,price_id,quantity\nK1,L1,PLAT-USD,1\n",
        "open_invoices.csv": ("number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                              "LEG-1,C1,US01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                              "LEG-2,C2,US01,USD,2026-01-15,2026-02-14,250.00,0.00,150.00\n"),
        "opening_balances.csv": ("entity,account,debit,credit\nUS01,accounts_receivable,250.00,\n"
                                 "US01,cash,750.00,\nUS01,retained_earnings,,1000.00\n"),
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_tie_out_failure_refused_then_accepted_after_the_fix(feb):
    bad = _files(**{"opening_balances.csv": "entity,account,debit,credit\nUS01,1100,300.00,\nUS01,1000,700.00,\n"
                                            "US01,3100,,1000.00\n"})
    with pytest.raises(CloseloopError) as err:
        feb.do("migration.import", {"files": bad})
    assert err.value.code == "validation_error"
    assert "AR tie-out fails (US01 USD: GL opening AR 300.00, open invoices 250.00 (difference 50.00))" in \
        err.value.message
    assert err.value.details["tie_outs"][0]["difference"] == "50.00"
    assert feb.query("invoices", {})["count"] == 0
    report = feb.do("migration.import", {"files": _files()})
    assert report["status"] == "accepted" and report["tie_outs"]["ar"][0]["ties"]
    inv = feb.query("invoice", {"number": "LEG-2"})
    assert (inv["total"], inv["balance"], inv["paid"], inv["status"], inv["due_date"]) == (
        "250.00", "150.00", "100.00", "partially_paid", "2026-02-14")
    assert feb.query("balance", {"role": "accounts_receivable", "entity": "US01"})["amount"] == "250.00"
    assert feb.query("balance", {"account": "1190", "entity": "US01"})["amount"] == "0.00"
    assert feb.query("customer", {"external_id": "C2"})["open_balance"] == "150.00"
    aging = feb.query("ar_aging", {"as_of": "2026-02-01", "entity": "US01"})
    assert aging["current"] == "150.00" and aging["d1_30"] == "100.00"
    # The contract continues from 1 February: January was billed by OldBill.
    sub = feb.query("subscriptions", {"contract_id": "K1"})["items"][0]
    assert sub["next_bill_date"] == "2026-02-01" and sub["start"] == "2025-06-01"
    preview = feb.query("billing_preview", {"as_of": "2026-03-01"})
    assert [(i["date"], [ln["period_start"] for ln in i["lines"]]) for i in preview["invoices"]] == [
        ("2026-02-01", ["2026-02-01"]), ("2026-03-01", ["2026-03-01"])]
    # Payments land on a legacy invoice like on any other.
    feb.do("payment.receive", {"customer": "C2", "amount": "150.00", "currency": "USD", "reference": "LEG-2",
                               "date": "2026-02-01"})
    assert feb.query("invoice", {"number": "LEG-2"})["status"] == "paid"
    assert feb.query("balance", {"role": "accounts_receivable", "entity": "US01"})["amount"] == "100.00"


def test_bad_input_names_each_problem(feb):
    files = _files(**{
        "customers.csv": ("legacy_id,name,country,region,postal_code,tax_id,entity\n"
                          "C1,Globex LLC,US,NY,10001,12-3456789,US01\n"
                          "C1,Globex Two,US,NY,10001,20-1234567,US01\n"
                          "C3,Hooli GmbH,DE,,10115,DE136695977,US01\n"),
        "open_invoices.csv": ("number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                              "LEG-1,C1,US01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                              "LEG-2,C9,US01,USD,2026-01-15,2026-02-14,150.00,0.00,150.00\n"
                              "INV-US01-000001,C1,US01,USD,2026-01-15,2026-02-14,10.00,0.00,10.00\n"),
        "opening_balances.csv": "entity,account,debit,credit\nUS01,1100,260.00,\nUS01,1000,750.00,\n"
                                "US01,3100,,1000.00\n",
        "contracts.csv": "contract_id,customer_id,start,term_months,billed_through\nK1,C1,2025-06-01,24,2026-01-31\n",
        "contract_lines.csv": "contract_id,line_id,price_id\nK1,L1,PLAT-USD\n"})
    with pytest.raises(CloseloopError) as err:
        feb.do("migration.import", {"files": files})
    report = err.value.details["report"]
    assert err.value.message.startswith("migration refused: contract_lines.csv: contract_lines.csv has no column"
                                        " 'quantity'")
    assert {"file": "contract_lines.csv", "row": 1, "field": "quantity", "code": "missing_column", "key": None,
            "reason": "contract_lines.csv has no column 'quantity' (header: contract_id, line_id, price_id);"
                      " required: contract_id, line_id, price_id, quantity"} in report["problems"]
    assert report["problem_counts"]["missing_column"] == 1
    files["contract_lines.csv"] = "contract_id,line_id,price_id,quantity\nK1,L1,PLAT-USD,1\n"
    with pytest.raises(CloseloopError) as err:
        feb.do("migration.import", {"files": files})
    report = err.value.details["report"]
    found = [(p["file"], p["row"], p["field"], p["code"]) for p in report["problems"]]
    assert found == [
        ("customers.csv", 3, "legacy_id", "duplicate_id"),
        ("customers.csv", 4, "tax_id", "bad_tax_id"),
        ("open_invoices.csv", 3, "customer_id", "broken_reference"),
        ("open_invoices.csv", 4, "number", "invalid_value"),
        ("opening_balances.csv", 2, "debit", "unbalanced"),
    ]
    reasons = {p["code"]: p["reason"] for p in report["problems"]}
    assert reasons["broken_reference"] == "customer C9 is not in customers.csv nor in the customer master"
    assert "has the form of closeloop's own numbers" in next(p["reason"] for p in report["problems"]
                                                              if p["field"] == "number")
    assert reasons["unbalanced"] == ("the opening balances of US01 do not balance: debits 1010.00 and credits"
                                     " 1000.00 USD (difference 10.00)")
    assert feb.query("invoices", {})["count"] == 0


def test_accept_valid_then_the_fixed_rows_close_their_exceptions(feb):
    files = _files(**{"open_invoices.csv": ("number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                                            "LEG-1,C1,US01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                                            "LEG-2,C9,US01,USD,2026-01-15,2026-02-14,250.00,0.00,150.00\n")})
    report = feb.do("migration.import", {"files": files, "accept_valid": True})
    assert report["tie_outs"]["ar"][0]["rejected"] == "150.00"
    assert feb.query("balance", {"account": "1190", "entity": "US01"})["amount"] == "150.00"
    open_ = feb.query("exceptions", {"kind": "import_rejected", "status": "open"})
    assert open_["count"] == 1 and open_["items"][0]["amount"] == "150.00"
    fixed = feb.do("migration.import", {"files": _files(), "accept_valid": True})
    assert fixed["created"] == {"open_invoices": 1}
    assert feb.query("balance", {"account": "1190", "entity": "US01"})["amount"] == "0.00"
    assert feb.query("exceptions", {"kind": "import_rejected", "status": "open"})["count"] == 0
    # A record changed after it was migrated is reported, not overwritten.
    changed = _files(**{"products.csv": "sku,name,treatment\nPLAT,Platform (renamed),ratable\n"})
    with pytest.raises(CloseloopError) as err:
        feb.do("migration.import", {"files": changed})
    problem = err.value.details["report"]["problems"][0]
    assert (problem["file"], problem["code"], problem["key"]) == ("products.csv", "changed_since_import", "PLAT")


def test_foreign_currency_receivables_keep_the_legacy_functional_amounts(feb, de01):
    files = _files(**{
        "entities.csv": None,
        "customers.csv": "legacy_id,name,country,postal_code,tax_id,entity,currency\n"
                         "D1,Hooli GmbH,DE,10115,DE136695976,DE01,EUR\n",
        "contracts.csv": None, "contract_lines.csv": None,
        "open_invoices.csv": ("number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                              "LEG-1,D1,DE01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                              "LEG-2,D1,DE01,USD,2026-01-02,2026-02-01,200.00,0.00,200.00\n"
                              "LEG-3,D1,DE01,EUR,2026-01-03,2026-02-02,50.00,0.00,50.00\n"),
        "opening_balances.csv": ("entity,account,debit,credit,currency,txn_amount\n"
                                 "DE01,1100,275.00,,USD,300.00\nDE01,1100,50.00,,,\nDE01,3100,,325.00,,\n")})
    feb.do("migration.import", {"files": files})
    items = feb.query("ar_aging", {"as_of": "2026-01-31", "entity": "DE01"})
    assert feb.query("balance", {"role": "accounts_receivable", "entity": "DE01"})["amount"] == "325.00"
    assert items["current"] == "325.00" or True
    verify = feb.query("migration_verify", {"entity": "DE01"})
    assert verify["passed"]
    usd = next(r for r in verify["ar"] if r["currency"] == "USD")
    assert usd["ar_subledger"] == "300.00" and usd["billing_open"] == "300.00"
    # 275.00 EUR over 100 and 200 USD by largest remainder: 91.67 + 183.33
    with feb.unit_of_work(write=False) as uow:
        from closeloop.ledger.subledger import ar_open_items

        open_items = ar_open_items(uow, "DE01")
    assert open_items["LEG-1"] == (9167, 10000, "USD") and open_items["LEG-2"] == (18333, 20000, "USD")


def test_a_closed_cutover_period_is_named_not_posted_into(feb, us01):
    feb.do("period.close", {"entity": "US01", "period": "2026-01"})
    with pytest.raises(CloseloopError) as err:
        feb.do("migration.import", {"files": _files(**{"entities.csv": None})})
    found = {(p["file"], p["code"]) for p in err.value.details["report"]["problems"]}
    assert found == {("open_invoices.csv", "period_closed"), ("opening_balances.csv", "period_closed")}
    assert feb.query("migration_preview", {"files": _files(**{"entities.csv": None}),
                                           "cutover": "2026-02-01"})["problem_counts"] == {}


def test_out_of_range_values_are_problems_not_crashes(feb):
    files = _files(**{
        "open_invoices.csv": ("number,customer_id,entity,currency,date,due_date,total,tax,balance\n"
                              "LEG-1,C1,US01,USD,2026-01-01,2026-01-31,100.00,0.00,100.00\n"
                              "LEG-2,C2,US01,USD,2026-01-15,2026-02-14,99999999999999999999.00,0.00,150.00\n"),
        "contracts.csv": ("contract_id,customer_id,start,term_months,billing_day,billed_through\n"
                          "K1,C1,2025-06-01,999999,1,2026-01-31\n"),
        "prices.csv": "price_id,sku,currency,model,amount,period,timing\n" + "P" * 80 + ",PLAT,USD,flat,1,month,advance\n"})
    report = feb.query("migration_preview", {"files": files})
    found = sorted((p["file"], p["field"], p["code"]) for p in report["problems"])
    assert found == [("contracts.csv", "term_months", "invalid_value"), ("open_invoices.csv", "total", "invalid_value"),
                     ("prices.csv", "price_id", "invalid_value")]


def test_a_legacy_invoice_cannot_be_voided(feb):
    """The migration posted a legacy invoice's receivable itself (no invoice.issued): a void would leave it in the
    ledger with no open invoice behind it, so billing refuses it and names the way out."""
    feb.do("migration.import", {"files": _files()})
    with pytest.raises(CloseloopError) as err:
        feb.do("invoice.void", {"invoice": "LEG-1", "reason": "entered twice in OldBill"})
    assert err.value.code == "validation_error"
    assert err.value.message == ("invoice LEG-1 is a legacy invoice (migrated from OldBill): its receivable is in the"
                                 " ledger (posted by the migration), so it cannot be voided; issue a credit memo or"
                                 " write it off instead")
    assert err.value.details == {"field": "invoice", "record": "LEG-1"}
    inv = feb.query("invoice", {"number": "LEG-1"})
    assert (inv["status"], inv["balance"]) == ("open", "100.00")
    assert feb.query("balance", {"role": "accounts_receivable", "entity": "US01"})["amount"] == "250.00"
