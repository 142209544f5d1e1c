"""posting.invoices: 100,000 invoice.issued events posted through the rules into the ledger.

The events (three lines each, three entities and currencies, a year of dates) are appended
to the outbox first; the timed part is their delivery to the posting handler by the
dispatcher — rule lookup, FX conversion, the ledger's checks, balances, hash chain and the
delivery records — until every event is done. Only the posting handler is subscribed during
the run (billing's other subscribers are measured by their own workloads). The baseline
writes exactly the journal_entry and journal_line rows the run produced, with raw sqlite3
executemany into tables with the same columns and keys.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from datetime import date, timedelta
from typing import Any

from closeloop import areas
from closeloop.app import App
from closeloop.bench.ledger import BASELINE_SCHEMA, baseline_connect
from closeloop.bench.runner import BenchContext, median, result, workload
from closeloop.core import events as events_module
from closeloop.core.clock import ScenarioClock

ENTITIES = (("US01", "USD", "US"), ("DE01", "EUR", "DE"), ("UK01", "GBP", "GB"))


def payloads(n: int, seed: int = 5) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        entity, currency, _ = ENTITIES[i % 3]
        day = (date(2026, 1, 1) + timedelta(days=rng.randrange(360))).isoformat()
        nets = [rng.randint(1_000, 500_000) for _ in range(3)]
        taxes = [n * 19 // 100 for n in nets]
        def dec(m: int) -> str:
            return f"{m // 100}.{m % 100:02d}"
        out.append((entity, {
            "invoice": f"INV-{entity}-{i:07d}", "entity": entity, "customer": f"C{i % 5000:05d}",
            "currency": currency, "date": day, "due_date": day, "subtotal": dec(sum(nets)), "tax": dec(sum(taxes)),
            "total": dec(sum(nets) + sum(taxes)), "credit_created": "0.00",
            "lines": [{"line_no": k + 1, "description": f"Line {k + 1}", "revenue_role": "revenue",
                       "treatment": "ratable", "net": dec(nets[k]), "tax": dec(taxes[k]), "tax_treatment": "standard",
                       "product_family": "platform"} for k in range(3)]}))
    return out


def setup(path: str, items: list[tuple[str, dict[str, Any]]]) -> App:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    app = App(path, clock=ScenarioClock(date(2026, 1, 1)), actor="bench", dispatch="worker")
    for code, currency, country in ENTITIES:
        app.do("entity.create", {"code": code, "name": code, "country": country, "currency": currency})
    with app.unit_of_work() as uow:
        for start in range(0, len(items), 10_000):
            chunk = items[start:start + 10_000]
            for entity in {e for e, _ in chunk}:
                uow.emit_many("invoice.issued", "invoice", [(p["invoice"], e, p) for e, p in chunk if e == entity])
    return app


@workload("posting.invoices")
def posting_invoices(ctx: BenchContext) -> list[dict[str, Any]]:
    n = ctx.size(100_000)
    items = payloads(n)
    areas.load()  # register every handler first, then keep only posting's for the run
    saved = events_module._HANDLERS.get("invoice.issued", [])
    events_module._HANDLERS["invoice.issued"] = [h for h in saved if h.name == "posting"]
    ours_runs, base_runs = [], []
    lines = entries = 0
    try:
        for _ in range(1 if n >= 100_000 else 3):
            app = setup(str(ctx.workdir / "posting.db"), items)
            start = time.perf_counter()
            while app.dispatch().handled:
                pass
            ours_runs.append(time.perf_counter() - start)
            with app.unit_of_work(write=False) as uow:
                entries = int(uow.scalar("SELECT COUNT(*) FROM journal_entry"))
                lines = int(uow.scalar("SELECT COUNT(*) FROM journal_line"))
                rows_e = uow.all("SELECT * FROM journal_entry ORDER BY id")
                rows_l = uow.all("SELECT * FROM journal_line ORDER BY entry_id, line_no")
                pending = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status <> 'done'"))
            app.close()
            assert entries == n and pending == 0, (entries, pending)
            con = baseline_connect(str(ctx.workdir / "posting_baseline.db"))
            start = time.perf_counter()
            per = max(1, round(len(rows_l) / max(1, len(rows_e)) * 500))
            for k in range(0, -(-len(rows_e) // 500)):
                con.execute("BEGIN")
                con.executemany("INSERT INTO journal_entry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                rows_e[k * 500:(k + 1) * 500])
                con.executemany("INSERT INTO journal_line VALUES (?,?,?,?,?,?,?,?)", rows_l[k * per:(k + 1) * per])
                con.execute("COMMIT")
            con.execute("BEGIN")
            con.executemany("INSERT INTO journal_line VALUES (?,?,?,?,?,?,?,?)", rows_l[-(-len(rows_e) // 500) * per:])
            con.execute("COMMIT")
            base_runs.append(time.perf_counter() - start)
            con.close()
    finally:
        events_module._HANDLERS["invoice.issued"] = saved
    ours, theirs = median(ours_runs), median(base_runs)
    ratio = theirs / ours
    return [result("posting.invoices", n=n, unit="invoice.issued events", seconds=ours, goal="ratio >= 0.20",
                   met=ratio >= 0.20, ratio=ratio, lines=lines, lines_per_second=round(lines / ours, 1),
                   baseline={"name": "sqlite.executemany", "seconds": round(theirs, 4), "rate": round(n / theirs, 1),
                             "wrote": f"{entries} journal_entry + {lines} journal_line rows in transactions of 500"},
                   notes="dispatcher delivering the outbox to the posting handler only: rule version by date, "
                         "FX conversion, ledger checks, balances, hash chain, delivery records")]


_ = (BASELINE_SCHEMA, sqlite3)
