"""Migration: reading legacy files (pure), the seeded sample data set, legacy invoice numbers."""

from __future__ import annotations

import csv
from pathlib import Path

from closeloop.billing.migration import number_clash
from closeloop.rollout.legacy_sample import generate
from closeloop.rollout.migration import SPEC, digest_row, read_table


def test_missing_columns_are_named_with_the_header():
    table, problems = read_table(SPEC["open_invoices"], b"number,customer_id,total\nLEG-1,C1,10.00\n", None)
    assert table is None
    assert [(p.file, p.row, p.field, p.code) for p in problems] == [
        ("open_invoices.csv", 1, "entity", "missing_column"), ("open_invoices.csv", 1, "currency", "missing_column"),
        ("open_invoices.csv", 1, "date", "missing_column"), ("open_invoices.csv", 1, "due_date", "missing_column"),
        ("open_invoices.csv", 1, "balance", "missing_column")]
    assert problems[0].reason.startswith("open_invoices.csv has no column 'entity' (header: number, customer_id,"
                                         " total)")


def test_rows_keep_their_line_numbers_and_bad_rows_are_named():
    raw = ('\ufefflegacy_id,name,country\nC1,"Globex\nLLC",US\n\nC2,Initech,US,extra\nC3,Hooli,DE\n'
           ).encode("utf-8")
    table, problems = read_table(SPEC["customers"], raw, None)
    assert table is not None
    assert [(line, row["legacy_id"]) for line, row in table.rows] == [(2, "C1"), (6, "C3")]
    assert table.rows[0][1]["name"] == "Globex\nLLC"
    assert [(p.row, p.field, p.reason) for p in problems] == [(5, "(row)", "has 4 fields where the header has 3")]


def test_windows_1252_files_are_read():
    table, problems = read_table(SPEC["customers"], "legacy_id,name,country\nC1,Müller GmbH,DE\n".encode("cp1252"),
                                 None)
    assert not problems and table is not None and table.rows[0][1]["name"] == "Müller GmbH"


def test_row_digest_ignores_empty_cells_and_column_order():
    assert digest_row({"a": "1", "b": "", "c": "x"}) == digest_row({"c": "x", "a": "1"})
    assert digest_row({"a": "1"}) != digest_row({"a": "2"})


def test_legacy_numbers_must_not_look_like_closeloops_own():
    assert number_clash("LEG-000123") is None
    assert "has the form of closeloop's own numbers" in (number_clash("INV-US01-000123") or "")
    assert number_clash("CM-DE01-000001") is not None
    assert "without spaces" in (number_clash("LEG 1") or "")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_sample_is_seeded_and_lists_what_it_planted(tmp_path):
    a = generate(tmp_path / "a", customers=300, seed=11)
    b = generate(tmp_path / "b", customers=300, seed=11)
    generate(tmp_path / "c", customers=300, seed=12)
    for name in ("customers.csv", "open_invoices.csv", "contracts.csv", "opening_balances.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert a == b
    assert a["problems"] == {"bad_tax_id": 3, "billed_through_misaligned": 3, "broken_reference": 8,
                             "duplicate_id": 6, "hierarchy_cycle": 2, "overlapping_contract": 3, "unbalanced": 1}
    assert a["duplicates"] == 6
    clean = generate(tmp_path / "clean", customers=300, seed=11, clean=True)
    assert clean["problems"] == {} and clean["duplicates"] == 0


def test_the_sample_books_balance_and_its_receivables_are_its_invoices(tmp_path):
    from decimal import Decimal

    generate(tmp_path, customers=200, seed=3, clean=True)
    ob = _read(tmp_path / "opening_balances.csv")
    for entity in ("US01", "DE01", "GB01"):
        lines = [x for x in ob if x["entity"] == entity]
        assert sum(Decimal(x["debit"] or 0) for x in lines) == sum(Decimal(x["credit"] or 0) for x in lines)
    invoices = _read(tmp_path / "open_invoices.csv")
    ar = {}
    for x in ob:
        if x["account"] == "1100":
            ar[(x["entity"], x["currency"] or {"US01": "USD", "DE01": "EUR", "GB01": "GBP"}[x["entity"]])] = \
                Decimal(x["txn_amount"] or x["debit"])
    opened: dict[tuple[str, str], Decimal] = {}
    for i in invoices:
        opened[(i["entity"], i["currency"])] = opened.get((i["entity"], i["currency"]), Decimal(0)) + Decimal(
            i["balance"])
    assert ar == opened
    assert len({i["number"] for i in invoices}) == len(invoices)
    assert all(Decimal(i["balance"]) <= Decimal(i["total"]) for i in invoices)
