"""Migration workload: ``migration.import`` of a seeded legacy data set, tie-outs included.

The data set is the sample generator's (``closeloop.rollout.legacy_sample``) at 100,000 customers
(``--quick``: 10,000) with about two open invoices per customer (200,000), 70% of the customers on a
contract, a contact for most, three entities and currencies, and its planted problems (1% of the rows
per kind), imported with ``accept_valid`` on SQLite: reading and validating every file (the CRM
importer's plan for customers, with duplicate detection), merging the duplicates, the AR and
billed-through tie-outs, then customers, contracts (quote, approval, acceptance, ``contract.migrated``),
open invoices into billing and the collections index, their receivables and the opening balances in
the ledger, and the rejected rows' exceptions. Then the events are delivered (billing's subscriptions
with their billed-through dates, revenue's plans, ...) and the post-migration check runs
(``migration_verify``: AR subledger = GL AR per entity and currency, every contract continuing from its
billed-through date). Each part is timed; peak memory is the process's maximum resident set.

The baseline writes the rows the migration's result consists of — customer, contract and contract-line,
invoice and invoice-line, journal entry and journal-line rows, already parsed — with raw ``sqlite3``
``executemany`` into tables with the same keys: the embedded storage limit.
"""

from __future__ import annotations

import csv
import sqlite3
import time
from datetime import date
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, peak_rss_mb, result, workload


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def baseline(folder: Path, db: Path) -> tuple[float, int]:
    """Raw executemany of the parsed rows the migration writes; (seconds, rows)."""
    customers = _rows(folder / "customers.csv")
    contracts = _rows(folder / "contracts.csv")
    lines = _rows(folder / "contract_lines.csv")
    invoices = _rows(folder / "open_invoices.csv")
    ob = _rows(folder / "opening_balances.csv")

    def cents(value: str | None) -> int:  # the baseline's own parse, not closeloop's
        return int(round(float(value or 0) * 100))

    _fresh(db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(
        "CREATE TABLE customer (id INTEGER PRIMARY KEY, external_id TEXT, name TEXT, country TEXT, region TEXT,"
        " postal_code TEXT, tax_id TEXT, email TEXT, parent TEXT, entity TEXT, currency TEXT);"
        "CREATE TABLE contract (contract_id TEXT PRIMARY KEY, customer TEXT, start TEXT, term INTEGER,"
        " billed_through TEXT);"
        "CREATE TABLE contract_line (contract_id TEXT, line_id TEXT, price_id TEXT, quantity TEXT,"
        " PRIMARY KEY (contract_id, line_id));"
        "CREATE TABLE invoice (id INTEGER PRIMARY KEY, number TEXT UNIQUE, customer TEXT, entity TEXT, currency TEXT,"
        " date TEXT, due_date TEXT, total INTEGER, tax INTEGER, balance INTEGER);"
        "CREATE TABLE invoice_line (id INTEGER PRIMARY KEY, invoice_id INTEGER, line_no INTEGER, net INTEGER,"
        " tax INTEGER);"
        "CREATE TABLE journal_entry (id INTEGER PRIMARY KEY, entity TEXT, date TEXT, reference TEXT);"
        "CREATE TABLE journal_line (entry_id INTEGER, line_no INTEGER, account TEXT, amount INTEGER,"
        " PRIMARY KEY (entry_id, line_no));")
    start = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO customer (external_id, name, country, region, postal_code, tax_id, email, parent,"
                    " entity, currency) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(r["legacy_id"], r["name"], r["country"], r["region"], r["postal_code"], r["tax_id"],
                      r["email"], r["parent_id"], r["entity"], r["currency"]) for r in customers])
    con.executemany("INSERT OR IGNORE INTO contract VALUES (?,?,?,?,?)",
                    [(r["contract_id"], r["customer_id"], r["start"], int(r["term_months"]), r["billed_through"])
                     for r in contracts])
    con.executemany("INSERT OR IGNORE INTO contract_line VALUES (?,?,?,?)",
                    [(r["contract_id"], r["line_id"], r["price_id"], r["quantity"]) for r in lines])
    con.executemany("INSERT OR IGNORE INTO invoice (id, number, customer, entity, currency, date, due_date, total, tax,"
                    " balance) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(n, r["number"], r["customer_id"], r["entity"], r["currency"], r["date"], r["due_date"],
                      cents(r["total"]), cents(r["tax"]), cents(r["balance"])) for n, r in enumerate(invoices, 1)])
    con.executemany("INSERT INTO invoice_line (invoice_id, line_no, net, tax) VALUES (?,?,?,?)",
                    [(n, 1, cents(r["total"]) - cents(r["tax"]), cents(r["tax"])) for n, r in enumerate(invoices, 1)])
    con.executemany("INSERT INTO journal_entry (id, entity, date, reference) VALUES (?,?,?,?)",
                    [(n, r["entity"], "2026-01-31", f"invoice.issued:{r['number']}") for n, r in
                     enumerate(invoices, 1)] + [(len(invoices) + k, e, "2026-01-31", f"migration:opening:{e}")
                                                for k, e in enumerate(sorted({r["entity"] for r in ob}), 1)])
    jl = [(n, 1, "1100", cents(r["balance"])) for n, r in enumerate(invoices, 1)]
    jl += [(n, 2, "1190", -cents(r["balance"])) for n, r in enumerate(invoices, 1)]
    ob_ids = {e: len(invoices) + k for k, e in enumerate(sorted({r["entity"] for r in ob}), 1)}
    counters: dict[str, int] = {}
    for r in ob:
        counters[r["entity"]] = counters.get(r["entity"], 0) + 1
        jl.append((ob_ids[r["entity"]], counters[r["entity"]], r["account"], cents(r["debit"]) - cents(r["credit"])))
    con.executemany("INSERT INTO journal_line VALUES (?,?,?,?)", jl)
    con.execute("COMMIT")
    seconds = time.perf_counter() - start
    con.close()
    rows = len(customers) + len(contracts) + len(lines) + 2 * len(invoices) + len(invoices) + len(ob_ids) + len(jl)
    return seconds, rows


@workload("migration.import")
def migration_import(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock
    from closeloop.rollout.legacy_sample import generate

    n = ctx.size(100_000)
    folder = ctx.workdir / f"legacy_{n}"
    planted = generate(folder, customers=n, seed=7, invoices_per_customer=2.0 / 0.85)
    db = ctx.workdir / f"migration_{n}.db"
    _fresh(db)
    app = App(f"sqlite:///{db}", clock=ScenarioClock(date(2026, 2, 1)), actor="bench", dispatch="worker")
    t0 = time.perf_counter()
    report = app.do("migration.import", {"dir": str(folder), "accept_valid": True})
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    delivered = app.dispatch()
    t_dispatch = time.perf_counter() - t1
    t2 = time.perf_counter()
    verify = app.query("migration_verify", {})
    t_verify = time.perf_counter() - t2
    seconds = t_import + t_dispatch + t_verify
    rss = peak_rss_mb()
    app.close()
    found_ok = report["problem_counts"] == planted["problems"] and report["duplicates"]["merged"] == planted[
        "duplicates"]
    base_seconds, base_rows = baseline(folder, ctx.workdir / f"migration_base_{n}.db")
    created = report["created"]
    out = result(
        "migration.import", n=n, unit="customers", seconds=seconds,
        baseline={"name": "sqlite3.executemany", "seconds": round(base_seconds, 4),
                  "rate": round(n / base_seconds, 1),
                  "wrote": f"{base_rows} parsed rows: customers, contracts and lines, invoices and lines, journal"
                           " entries and lines (no validation, matching, tie-outs, events, balances or audit chain)"},
        ratio=base_seconds / seconds if seconds else None,
        goal="seconds and peak memory with tie-outs (no target in issue 9); the report finds every planted problem",
        met=found_ok and bool(verify["passed"]),
        notes=(f"{planted['invoices']} open invoices, {planted['contracts']} contracts, planted problems"
               f" {sum(planted['problems'].values())}; import (validation, merges, tie-outs, writes) {t_import:.1f} s,"
               f" event delivery {t_dispatch:.1f} s, post-migration check {t_verify:.1f} s; verify passed:"
               f" {verify['passed']}; planted problems found exactly: {found_ok}"),
        parts={"import": round(t_import, 2), "deliver_events": round(t_dispatch, 2), "verify": round(t_verify, 2)},
        invoices=planted["invoices"], contracts=planted["contracts"], created=created,
        events_delivered=getattr(delivered, "delivered", None))
    out["peak_rss_mb"] = rss
    return [out]
