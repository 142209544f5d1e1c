"""Collections benchmark: ``collections.cash_application``.

A seeded generator builds open invoices (through billing's own invoice writer) and a camt.053
statement of the same number of lines with a fixed mix — 40% invoice number in the remittance
(plain, ISO 11649 RF or QR reference), 25% exact amount only (the payer's IBAN is known), 10% one
payment for several invoices (half listing them, half by amount only), 10% partial or over
payments by reference, 5% in another currency (EUR for USD invoices), 10% noise from unknown payers
that must stay unapplied. ``bank.import`` is timed as a user runs it: parse the file, record every
line and payment, match, apply through billing, write applications and the outbox events (their
delivery to posting is not part of the figure). The generator's truth gives the share auto-matched
(of the matchable lines) and the share wrongly matched (of all lines). The peer is raw ``sqlite3``
``executemany`` of exactly the rows the import's result consists of (bank lines, payments,
applications) into equivalent tables.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, median, result, workload

ENTITY = "US01"
RATE = Decimal("1.10")  # 1 EUR = 1.10 USD


def _setup(app: Any, n_invoices: int, n_lines: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[set[str]]]:
    """Customers, invoices and the statement plan. Returns (entries, truth per line)."""
    from closeloop.billing.model import Account, Charge, DraftInvoice
    from closeloop.billing.service import _Writer
    from closeloop.collections.model import qr_reference, rf_reference
    from closeloop.collections.service import link_payer, record_invoices
    from closeloop.customers.service import upsert_customer

    rng = random.Random(seed)
    n_customers = max(10, n_invoices // 5)
    app.do("entity.create", {"code": ENTITY, "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.do("fx.rate", {"base": "EUR", "quote": "USD", "date": "2026-01-01", "rate": str(RATE)})
    customers: list[tuple[int, str, str]] = []
    with app.unit_of_work() as uow:
        for i in range(n_customers):
            ext = f"BC-{i:06d}"
            upsert_customer(uow, ext, {"name": f"Bench customer {i}", "country": "US", "region": "OR",
                                       "currency": "USD", "entity": ENTITY}, kind="create", detect=False)
            iban = f"DE{10 + i % 89:02d}BENCH{i:012d}"
            customers.append((0, ext, iban))
            link_payer(uow, iban, ext, "registered")
        ids = {ext: int(cid) for cid, ext in uow.all("SELECT id, external_id FROM customer")}
    customers = [(ids[ext], ext, iban) for _, ext, iban in customers]

    kinds = (["ref"] * 40 + ["exact"] * 25 + ["multi"] * 10 + ["partial"] * 10 + ["fx"] * 5 + ["noise"] * 10)
    plan: list[tuple[str, int, list[int]]] = []  # kind, customer index, invoice amounts
    needed = 0
    for _ in range(n_lines):
        kind = rng.choice(kinds)
        ci = rng.randrange(len(customers))
        if kind == "noise":
            plan.append((kind, ci, []))
            continue
        count = rng.choice((2, 3)) if kind == "multi" else 1
        plan.append((kind, ci, [rng.randint(5_000, 999_999) for _ in range(count)]))
        needed += count
    extra = max(0, n_invoices - needed)  # open invoices nobody pays in this statement
    drafts: list[tuple[int, int]] = [(ci, amt) for _, ci, amts in plan for amt in amts]
    drafts += [(rng.randrange(len(customers)), rng.randint(5_000, 999_999)) for _ in range(extra)]
    day = date(2026, 1, 1)
    numbers: list[str] = []
    with app.unit_of_work() as uow:
        for start in range(0, len(drafts), 5000):
            writer = _Writer(uow, None)
            chunk = drafts[start:start + 5000]
            writer.prepare(sorted({customers[ci][0] for ci, _ in chunk}))
            writer.reserve(len(chunk), len(chunk))
            for ci, amount in chunk:
                cid, ext, _ = customers[ci]
                charge = Charge(contract_id=f"BENCH-{ext}", line_id="L1", version=1, kind="one_time",
                                description="Bench services", amount=amount, natural=day, scheduled=True)
                numbers.append(writer.add(DraftInvoice(Account(cid, ext, ENTITY, "USD"), day, (charge,)))["number"])
            record_invoices(uow, [p for _, _, p in writer.issued])
            writer.flush()
    entries: list[dict[str, Any]] = []
    truth: list[set[str]] = []
    pos = 0
    for kind, ci, amts in plan:
        _cid, ext, iban = customers[ci]
        invs = numbers[pos:pos + len(amts)]
        pos += len(amts)
        total = sum(amts)
        entry: dict[str, Any] = {"date": "2026-01-20", "payer": f"Customer {ext}"}
        if kind == "ref":
            style = rng.random()
            if style < 0.6:
                entry["remittance"] = rng.choice(("Invoice {n}", "{n}", "Payment {l} thank you", "RE: {n} / acct"))\
                    .format(n=invs[0], l=invs[0].lower())
            elif style < 0.8:
                entry["reference"] = rf_reference(invs[0])
            else:
                entry["reference"] = qr_reference(invs[0])
            entry["amount"] = total
            entry["iban"] = iban if rng.random() < 0.5 else f"XX00UNKNOWN{rng.randrange(10**9):09d}"
        elif kind == "exact":
            entry.update(amount=total, remittance=rng.choice(("January", "monthly fee", "thanks", "")), iban=iban)
        elif kind == "multi":
            if rng.random() < 0.5:
                entry["remittance"] = "Invoices " + ", ".join(invs)
            else:
                entry["remittance"] = "several invoices"
            entry.update(amount=total, iban=iban)
        elif kind == "partial":
            if rng.random() < 0.5:
                amount = int(total * rng.uniform(0.3, 0.9))
            else:
                amount = total + rng.randint(100, 5_000)
            entry.update(amount=amount, remittance=f"part payment {invs[0]}", iban=iban)
        elif kind == "fx":
            eur = int((Decimal(total) / RATE).to_integral_value())
            entry.update(amount=eur, currency="EUR", remittance=f"{invs[0]} EUR", iban=iban)
        else:  # noise: unknown payers, random amounts, no invoice reference
            entry.update(amount=rng.randint(100, 500_000), remittance=rng.choice(
                ("supplier refund", "transfer", "interest", "ATM deposit", "order 55123")),
                iban=f"NL00NOISE{rng.randrange(10**10):010d}")
        entries.append(entry)
        truth.append(set(invs) if kind != "noise" else set())
    return entries, truth


def _baseline(path: Path, lines: int, payments: int, applications: int) -> float:
    if path.exists():
        path.unlink()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE line (id INTEGER PRIMARY KEY, statement_id INT, entity TEXT, booking_date TEXT,"
                " direction TEXT, amount INT, currency TEXT, remittance TEXT, payer_account TEXT, status TEXT,"
                " fingerprint TEXT)")
    con.execute("CREATE TABLE payment (id INTEGER PRIMARY KEY, number TEXT UNIQUE, entity TEXT, customer TEXT,"
                " currency TEXT, amount INT, applied INT, date TEXT, status TEXT, remittance TEXT)")
    con.execute("CREATE TABLE application (id INTEGER PRIMARY KEY, payment_id INT, invoice TEXT, amount INT,"
                " date TEXT, reason TEXT)")
    con.execute("CREATE INDEX ix_line_fp ON line (entity, fingerprint)")
    con.execute("CREATE INDEX ix_app_payment ON application (payment_id)")
    started = time.perf_counter()
    with con:
        con.executemany("INSERT INTO line VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        ((i, 1, ENTITY, "2026-01-20", "credit", 1000 + i, "USD", f"Invoice {i}", f"DE{i}", "payment",
                          f"{i:064d}") for i in range(lines)))
        con.executemany("INSERT INTO payment VALUES (?,?,?,?,?,?,?,?,?,?)",
                        ((i, f"PAY-{i:07d}", ENTITY, f"C{i % 1000}", "USD", 1000 + i, 1000 + i, "2026-01-20", "applied",
                          f"Invoice {i}") for i in range(payments)))
        con.executemany("INSERT INTO application VALUES (?,?,?,?,?,?)",
                        ((i, i, f"INV-{i}", 1000 + i, "2026-01-20", "reference") for i in range(applications)))
    seconds = time.perf_counter() - started
    con.close()
    path.unlink()
    return seconds


@workload("collections.cash_application")
def cash_application(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.app import App
    from closeloop.collections.connectors.camt import write_camt053
    from closeloop.core.clock import ScenarioClock

    n = ctx.size(100_000)
    db = ctx.workdir / "collections_cash.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    clock = ScenarioClock(date(2026, 1, 1))
    app = App(f"sqlite:///{db}", clock=clock, actor="bench", dispatch="worker")
    try:
        setup_started = time.perf_counter()
        entries, truth = _setup(app, n, n)
        statement = ctx.workdir / "collections_cash.xml"
        statement.write_bytes(write_camt053("DE89370400440532013000", "USD", entries, statement_id="BENCH-1"))
        setup_seconds = time.perf_counter() - setup_started
        clock.set(date(2026, 1, 21))
        cpu_started = time.process_time()
        seconds, report = _timed(lambda: app.do("bank.import", {"format": "camt053", "file": str(statement),
                                                               "entity": ENTITY}))
        cpu_seconds = time.process_time() - cpu_started
        with app.unit_of_work(write=False) as uow:
            applied: dict[int, set[str]] = {}
            for entry, invoice in uow.all(
                    "SELECT l.entry, a.invoice FROM collections_application a JOIN collections_payment p"
                    " ON p.id = a.payment_id JOIN collections_bank_line l ON l.id = p.bank_line_id"):
                applied.setdefault(int(entry) - 1, set()).add(invoice)
            counts = {k: int(v) for k, v in uow.all("SELECT status, COUNT(*) FROM collections_bank_line GROUP BY status")}
            n_apps = int(uow.scalar("SELECT COUNT(*) FROM collections_application"))
            n_pay = int(uow.scalar("SELECT COUNT(*) FROM collections_payment"))
    finally:
        app.close()
    matchable = [i for i, t in enumerate(truth) if t]
    auto = sum(1 for i in matchable if i in applied)
    wrong = sum(1 for i, got in applied.items() if got != truth[i])
    auto_share = auto / len(matchable) if matchable else 0.0
    wrong_share = wrong / len(truth)
    base_runs = [_baseline(ctx.workdir / "collections_peer.db", len(entries), n_pay, n_apps) for _ in range(3)]
    base = median(base_runs)
    rows_written = len(entries) + n_pay + n_apps
    ratio = (rows_written / seconds) / (rows_written / base) if base > 0 else None
    met = len(entries) / seconds >= 100_000 / 30 and auto_share >= 0.95 and wrong_share <= 0.001
    statement.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return [result(
        "collections.cash_application", n=len(entries), unit="statement lines", seconds=seconds,
        goal="under 30 s for 100,000 lines on SQLite, >= 95% of matchable lines auto-matched, <= 0.1% wrong",
        met=met, baseline={"name": "sqlite.executemany", "seconds": round(base, 4),
                           "rate": round(len(entries) / base, 1),
                           "rows": rows_written, "wrote": "bank lines, payments and applications"},
        ratio=ratio, open_invoices=n, auto_matched_share=round(auto_share, 4), wrongly_matched_share=round(
            wrong_share, 5), matchable_lines=len(matchable), wrong_lines=wrong, line_statuses=counts,
        applications=n_apps, unapplied_receipts=report["unapplied"], setup_seconds=round(setup_seconds, 1),
        cpu_seconds=round(cpu_seconds, 2), load_average=round(os.getloadavg()[0], 1),
        notes="bank.import of a generated camt.053 (parse, record lines and payments, match, apply through billing,"
              " write applications and outbox events); event delivery to posting is not timed")]


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value
