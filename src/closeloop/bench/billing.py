"""Billing workloads: ``billing.bill_run``, ``billing.rerun`` and ``usage.ingest``.

Data (seeded, the same for everyone): three legal entities (US01 USD, DE01 EUR, GB01 GBP), customers
imported through ``customer.import`` (US states NY, WA, PA, OR; Germany; France with VAT numbers;
the UK), and one contract per customer: a flat plan (40%), a per-seat plan (30%, 1-50 seats) or a
flat base fee plus tiered API usage billed in arrears (30%). Contracts start on 1 January 2026,
billing day 1, so the run as of 1 February issues two invoices per subscription (January in
advance, February in advance with January's usage in arrears). The subscriptions are written as
billing's contract-event handler writes them (the contracts area's own commands would take longer
than the workload itself); usage goes through the batch API.

- ``billing.bill_run``: from ``billing.run`` until every invoice is issued, its events delivered
  and its journals posted, beside raw ``sqlite3`` executemany of exactly the rows the run wrote
  (invoices, lines, outbox events, event deliveries, journal entries and lines, balances and
  billing bookkeeping rows) into tables of the same shape.
- ``billing.rerun``: the same run again creates nothing; its time against the first run's.
- ``usage.ingest``: the batch API (validation, idempotency by key, coverage by subscription) beside
  raw executemany of the same rows into a table with the same unique key.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import sqlite3
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, median, peak_rss_mb, result, workload

START = date(2026, 1, 1)
AS_OF = "2026-02-01"
ENTITIES = (("US01", "Acme Inc", "US", "USD", "12-3456789"), ("DE01", "Acme GmbH", "DE", "EUR", "DE136695976"),
            ("GB01", "Acme Ltd", "GB", "GBP", "GB980780684"))
# (country, spelled, state, postal code, entity, currency)
PLACES = (("US", "United States", "NY", "10017", "US01", "USD"), ("US", "United States", "WA", "98101", "US01", "USD"),
          ("US", "United States", "PA", "19103", "US01", "USD"), ("US", "United States", "OR", "97201", "US01", "USD"),
          ("DE", "Germany", "", "10115", "DE01", "EUR"), ("FR", "France", "", "75008", "DE01", "EUR"),
          ("GB", "United Kingdom", "", "SW1A 1AA", "GB01", "GBP"))
HEADERS = ["ID", "ISDELETED", "MASTERRECORDID", "NAME", "TYPE", "PARENTID", "BILLINGSTREET", "BILLINGCITY",
           "BILLINGSTATE", "BILLINGPOSTALCODE", "BILLINGCOUNTRY", "PHONE", "WEBSITE", "VAT_NUMBER__C",
           "LASTMODIFIEDDATE"]
MAPPING = "fields:\n  tax_id: VAT_NUMBER__C\n"
USAGE_BATCH = 50_000


def _fr_vat(rng: random.Random) -> str:
    from stdnum import luhn

    digits = str(rng.randint(10_000_000, 99_999_999))
    siren = int(digits + luhn.calc_check_digit(digits))
    key = (12 + 3 * (siren % 97)) % 97
    return f"FR{key:02d}{siren}"


def write_customers(n: int, path: Path, seed: int = 5) -> list[tuple[str, int]]:
    """A Salesforce account export of ``n`` customers; returns (external id, place index) per row."""
    rng = random.Random(seed)
    out = []
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(HEADERS)
        for k in range(n):
            place = k % len(PLACES)
            country, spelled, state, postcode, _, _ = PLACES[place]
            ext = f"001B{k:011d}AAA"
            vat = _fr_vat(rng) if country == "FR" else ""
            w.writerow([ext, "false", "", f"Bench Customer {k:06d} {rng.choice(('Inc', 'Ltd', 'SA', 'GmbH'))}",
                        "Customer", "", f"{rng.randint(1, 999)} Main Street", f"City{k % 97}", state, postcode,
                        spelled, "", "", vat, "2025-12-01T10:00:00.000Z"])
            out.append((ext, place))
    return out


def _terms(model: str, currency: str, **kw: Any) -> Any:
    from closeloop.catalog.model import PriceTerms

    return PriceTerms(model=model, currency=currency, **kw)


def plans(currency: str) -> dict[str, tuple[Any, ...]]:
    """Price terms per plan in a currency: flat, per_seat, usage (base fee + tiered API calls)."""
    from closeloop.catalog.model import Tier

    flat = _terms("flat", currency, period="month", timing="advance", amount=Decimal("49.00"), price_id=f"basic-{currency}")
    seat = _terms("per_unit", currency, period="month", timing="advance", amount=Decimal("12.00"),
                  price_id=f"seat-{currency}")
    base = _terms("flat", currency, period="month", timing="advance", amount=Decimal("20.00"),
                  price_id=f"base-{currency}")
    api = _terms("tiered", currency, period="month", timing="arrears", metric="api_calls", aggregation="sum",
                 tiers=(Tier(Decimal(100), Decimal("0.05")), Tier(Decimal(1000), Decimal("0.03")),
                        Tier(None, Decimal("0.01"), Decimal("2.00"))), price_id=f"api-{currency}")
    return {"flat": (flat,), "per_seat": (seat,), "usage": (base, api)}


def setup(db: str, n_customers: int, workdir: Path, url: str | None = None) -> tuple[Any, list[tuple[str, int, str]]]:
    """A migrated database with entities, catalogue, customers and subscriptions; returns (app, customers).
    ``db`` is a SQLite file (recreated) unless ``url`` names another (empty) database."""
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock

    if url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    app = App(url or f"sqlite:///{db}", clock=ScenarioClock(START), actor="bench", dispatch="worker")
    for code, name, country, cur, tax_id in ENTITIES:
        app.do("entity.create", {"code": code, "name": name, "country": country, "currency": cur, "tax_id": tax_id,
                                 "address": {"street": "1 Bench Way", "city": "Benchville"}})
    for sku, name, treatment in (("basic", "Basic plan", "ratable"), ("seat", "Seat licence", "ratable"),
                                 ("base", "Platform base fee", "ratable"), ("api", "API calls", "usage")):
        app.do("product.create", {"sku": sku, "name": name, "treatment": treatment})
    for _, _, _, cur, _ in ENTITIES:
        for terms in [t for group in plans(cur).values() for t in group]:
            sku = terms.price_id.split("-")[0]
            body = {"price_id": terms.price_id, "sku": sku, "currency": cur, "model": terms.model,
                    "period": terms.period, "timing": terms.timing}
            if terms.amount is not None:
                body["amount"] = str(terms.amount)
            if terms.tiers:
                body.update(metric=terms.metric, aggregation="sum", tiers=[
                    {"up_to": None if t.up_to is None else str(t.up_to), "unit_amount": str(t.unit_amount),
                     "flat_amount": str(t.flat_amount)} for t in terms.tiers])
            app.do("price.create", body)
    csv_path = workdir / f"billing_customers_{n_customers}.csv"
    rows = write_customers(n_customers, csv_path)
    mapping = workdir / "billing_customers_mapping.yaml"
    mapping.write_text(MAPPING)
    app.do("customer.import", {"file": str(csv_path), "format": "salesforce", "mapping": str(mapping),
                               "source": "crm"})
    customers = seed_subscriptions(app, rows)
    app.dispatch()  # customer events; nothing of billing's yet
    app.clock.set(date.fromisoformat(AS_OF))  # usage of January is recorded, then billed, on 1 February
    return app, customers


def seed_subscriptions(app: Any, rows: list[tuple[str, int]]) -> list[tuple[str, int, str]]:
    """One contract per customer, announced as the contracts area announces it: a ``contract.activated``
    event with the contracts area's own payload, delivered to every subscriber (billing builds its
    subscription from it, revenue recognition its obligations). Quoting 100,000 deals through the
    contracts commands would take longer than the workload itself, so the events are written directly."""
    from closeloop.contracts.model import Change, ContractLine, ProductRef, replay
    from closeloop.contracts.service import _contract_payload

    products = {"basic": ProductRef("basic", "Basic plan", "ratable", "saas"),
                "seat": ProductRef("seat", "Seat licence", "ratable", "saas"),
                "base": ProductRef("base", "Platform base fee", "ratable", "saas"),
                "api": ProductRef("api", "API calls", "usage", "saas")}
    rng = random.Random(9)
    out = []
    with app.unit_of_work() as uow:
        ids = dict(uow.all("SELECT external_id, id FROM customer"))
    events = []
    for k, (ext, place) in enumerate(rows):
        _, _, _, _, entity, cur = PLACES[place]
        kind = ("flat", "flat", "flat", "flat", "per_seat", "per_seat", "per_seat", "usage", "usage", "usage")[k % 10]
        lines = []
        for i, terms in enumerate(plans(cur)[kind], 1):
            qty = Decimal(rng.randint(1, 50)) if kind == "per_seat" else Decimal(1)
            sku = terms.price_id.split("-")[0]
            lines.append(ContractLine(line_id=f"L{i}", product=products[sku], list_terms=terms, quantity=qty,
                                      performing_entity=entity, start=START))
        contract = f"C-{k:07d}"
        cid = int(ids[ext])
        change = Change(seq=1, kind="activation", effective=START, recorded_on=START, ref=f"Q-{k}",
                        lines=tuple(lines), term_months=12)
        header = {"contract_id": contract, "quote_id": f"Q-{k}", "quote_version": 1, "opportunity": None,
                  "customer": ext, "customer_id": cid, "entity": entity, "currency": cur, "billing_day": 1,
                  "auto_renew": False, "renewal_term_months": None, "renewal_uplift_pct": None}
        events.append((contract, entity, _contract_payload(header, None, replay([change]), change)))
        out.append((ext, cid, kind))
    for s in range(0, len(events), 5000):
        with app.unit_of_work() as uow:
            uow.emit_many("contract.activated", "contract", events[s:s + 5000])
        app.dispatch()
    return out


def usage_events(customers: list[tuple[str, int, str]], n: int, seed: int = 13) -> list[dict[str, Any]]:
    metered = [ext for ext, _, kind in customers if kind == "usage"]
    rng = random.Random(seed)
    events = []
    for i in range(n):
        day = 1 + rng.randrange(31)
        events.append({"customer": metered[i % len(metered)], "metric": "api_calls",
                       "quantity": rng.randint(1, 120), "at": f"2026-01-{day:02d}T{rng.randrange(24):02d}:00:00Z",
                       "key": f"evt-{i:08d}"})
    return events


def ingest(app: Any, events: list[dict[str, Any]]) -> float:
    from closeloop.billing.usage import record_batch

    start = time.perf_counter()
    for s in range(0, len(events), USAGE_BATCH):
        with app.unit_of_work() as uow:
            record_batch(uow, events[s:s + USAGE_BATCH])
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- baselines

WROTE = ("billing_invoice", "billing_line", "billing_run", "billing_run_partition", "billing_credit",
         "billing_credit_use", "billing_sequence", "event", "event_delivery", "journal_entry", "journal_line",
         "ledger_balance", "exception_item", "exception_action")


def copy_rows_baseline(db: str, base: str, since_ids: dict[str, int]) -> tuple[float, int, dict[str, int]]:
    """Raw executemany of exactly the rows the run added, into tables of the same shape (same DDL)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{base}{suffix}").unlink(missing_ok=True)
    src = sqlite3.connect(db)
    dst = sqlite3.connect(base, isolation_level=None)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.execute("PRAGMA synchronous=NORMAL")
    batches: list[tuple[str, list[tuple[Any, ...]]]] = []
    counts: dict[str, int] = {}
    for table in WROTE:
        ddl = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        if ddl is None:
            continue
        dst.execute(ddl[0])
        rows = src.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 - fixed table names
        rows = rows[since_ids.get(table, 0):]
        if rows:
            batches.append((f"INSERT INTO {table} VALUES ({','.join('?' * len(rows[0]))})", rows))
            counts[table] = len(rows)
    src.close()
    start = time.perf_counter()
    dst.execute("BEGIN")
    for sql, rows in batches:
        dst.executemany(sql, rows)
    dst.execute("COMMIT")
    seconds = time.perf_counter() - start
    dst.close()
    return seconds, sum(counts.values()), counts


def _row_counts(db: str) -> dict[str, int]:
    con = sqlite3.connect(db)
    out = {}
    for table in WROTE:
        with contextlib.suppress(sqlite3.OperationalError):
            out[table] = int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
    con.close()
    return out


# ----------------------------------------------------------------------------- workloads


_STATE: dict[str, Any] = {}


def _bill_run(ctx: BenchContext) -> dict[str, Any]:
    n = ctx.size(100_000)
    n_usage = ctx.size(1_000_000)
    db = str(ctx.workdir / f"billing_run_{n}.db")
    t0 = time.perf_counter()
    app, customers = setup(db, n, ctx.workdir)
    ingest(app, usage_events(customers, n_usage))
    setup_seconds = time.perf_counter() - t0
    before = _row_counts(db)
    start = time.perf_counter()
    summary = app.do("billing.run", {"as_of": AS_OF})
    run_seconds = time.perf_counter() - start
    report = app.dispatch()
    seconds = time.perf_counter() - start
    rss = peak_rss_mb()
    start = time.perf_counter()
    again = app.do("billing.run", {"as_of": AS_OF})
    app.dispatch()
    rerun_seconds = time.perf_counter() - start
    posted = app.query("trial_balance", {"entity": "US01"})["balanced"]
    unposted = app.query("exceptions", {"kind": "unposted_event", "status": "open"})["count"]
    app.close()
    base_seconds, base_rows, counts = copy_rows_baseline(db, str(ctx.workdir / f"billing_run_base_{n}.db"), before)
    return {"n": n, "usage": n_usage, "summary": summary, "seconds": seconds, "run_seconds": run_seconds,
            "dispatch": report.to_dict() if hasattr(report, "to_dict") else {}, "rss": rss,
            "rerun_seconds": rerun_seconds, "rerun": again, "posted_balanced": posted, "unposted": unposted,
            "base_seconds": base_seconds, "base_rows": base_rows, "counts": counts, "setup_seconds": setup_seconds}


@workload("billing.bill_run")
def billing_bill_run(ctx: BenchContext) -> list[dict[str, Any]]:
    r = _STATE.get("run") or _bill_run(ctx)
    _STATE["run"] = r
    return [_bill_run_row(r), *_rerun_rows(r)]


def _bill_run_row(r: dict[str, Any]) -> dict[str, Any]:
    invoices = r["summary"]["invoices"] + r["summary"]["held"]
    rows = r["base_rows"]
    ours = rows / r["seconds"]
    base = rows / r["base_seconds"]
    ratio = ours / base
    return result(
        "billing.bill_run", n=invoices, unit="invoices", seconds=r["seconds"],
        baseline={"name": "sqlite3.executemany", "seconds": round(r["base_seconds"], 4),
                  "rate": round(invoices / r["base_seconds"], 1), "rows": rows,
                  "wrote": "exactly the rows the run added: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items())},
        ratio=ratio, goal="ratio >= 0.10 (rows/s against raw executemany of the same rows)", met=ratio >= 0.10,
        notes=(f"{r['n']} subscriptions (flat, per-seat, base + tiered usage), {r['usage']} usage events, 3 entities"
               f" and currencies, tax on every invoice; run {r['run_seconds']:.1f}s, event delivery and posting"
               f" {r['seconds'] - r['run_seconds']:.1f}s; ledger balanced: {r['posted_balanced']}, unposted"
               f" {r['unposted']}; setup (not timed) {r['setup_seconds']:.0f}s"),
        subscriptions=r["n"], run_seconds=round(r["run_seconds"], 3))


@workload("billing.rerun")
def billing_rerun(ctx: BenchContext) -> list[dict[str, Any]]:
    """Measured by the same process as billing.bill_run (which reports both rows); alone it runs both."""
    r = _STATE.get("run") or _bill_run(ctx)
    _STATE["run"] = r
    return _rerun_rows(r)


def _rerun_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    share = r["rerun_seconds"] / r["seconds"] if r["seconds"] else None
    created = r["rerun"]["invoices"] + r["rerun"]["held"]
    return [result("billing.rerun", n=r["n"], unit="subscriptions", seconds=r["rerun_seconds"],
                   baseline={"name": "billing.bill_run (the first run)", "seconds": round(r["seconds"], 4)},
                   ratio=share, goal="creates nothing and takes < 10% of the first run",
                   met=created == 0 and share is not None and share < 0.10,
                   notes=f"second run as of {AS_OF}: {created} invoices created")]


RAW_USAGE = ("CREATE TABLE usage (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, customer_id INTEGER NOT NULL,"
             " metric TEXT NOT NULL, at TEXT NOT NULL, day TEXT NOT NULL, quantity TEXT NOT NULL, qty_micro INTEGER"
             " NOT NULL, properties TEXT, recorded_at TEXT NOT NULL);"
             " CREATE INDEX ix_usage ON usage (customer_id, metric, day)")


@workload("usage.ingest")
def usage_ingest(ctx: BenchContext) -> list[dict[str, Any]]:
    n = ctx.size(1_000_000)
    subs = max(1000, ctx.size(100_000) // 10)
    db = str(ctx.workdir / f"usage_ingest_{subs}.db")
    app, customers = setup(db, subs, ctx.workdir)
    events = usage_events(customers, n)
    ids = {ext: cid for ext, cid, _ in customers}
    raw = [(e["key"], ids[e["customer"]], e["metric"], e["at"], e["at"][:10], str(e["quantity"]),
            int(e["quantity"]) * 1_000_000, None, "2026-02-01T00:00:00Z") for e in events]
    ours, base = [], []
    for _attempt in range(3):
        with app.unit_of_work() as uow:
            uow.execute("DELETE FROM billing_usage")
        ours.append(ingest(app, events))
        path = str(ctx.workdir / "usage_ingest_base.db")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(RAW_USAGE)
        start = time.perf_counter()
        for s in range(0, len(raw), USAGE_BATCH):
            con.execute("BEGIN")
            con.executemany("INSERT INTO usage (key, customer_id, metric, at, day, quantity, qty_micro, properties,"
                            " recorded_at) VALUES (?,?,?,?,?,?,?,?,?)", raw[s:s + USAGE_BATCH])
            con.execute("COMMIT")
        base.append(time.perf_counter() - start)
        con.close()
    # idempotency: the same events again are all duplicates
    start = time.perf_counter()
    from closeloop.billing.usage import record_batch

    with app.unit_of_work() as uow:
        again = record_batch(uow, events[:USAGE_BATCH])
    dup_seconds = time.perf_counter() - start
    app.close()
    seconds, base_seconds = median(ours), median(base)
    ratio = base_seconds / seconds
    return [result("usage.ingest", n=n, unit="events", seconds=seconds,
                   baseline={"name": "sqlite3.executemany", "seconds": round(base_seconds, 4),
                             "rate": round(n / base_seconds, 1),
                             "wrote": "the same usage rows into a table with the same unique key and index"},
                   ratio=ratio, goal="ratio >= 0.3", met=ratio >= 0.3,
                   notes=(f"batches of {USAGE_BATCH} through closeloop.billing.usage.record_batch (customer, metric,"
                          f" quantity and time checks, coverage by subscription, key idempotency); replaying"
                          f" {USAGE_BATCH} events: {again['duplicates']} duplicates in {dup_seconds:.2f}s;"
                          f" median of {len(ours)}"))]


if os.environ.get("CLOSELOOP_BENCH_DEBUG"):  # pragma: no cover
    print("billing bench module loaded")
