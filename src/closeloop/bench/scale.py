"""scale.bill_run_workers: the billing company scaled out on PostgreSQL with 1, 2 and 4 ``closeloop worker``s.

Data (seeded, the billing workloads' generator): three entities and currencies, ``n`` customers imported
through ``customer.import``, one contract each (flat, per-seat, or base fee plus tiered usage in
arrears), ``usage_per_customer`` usage events per customer on average through the batch API. The data
set is built once in a database that then serves as the template of one fresh database per worker
count (``CREATE DATABASE ... TEMPLATE``), so every configuration starts from the same state.

Timed, per worker count (workers started first and idle, as in production):

- the bill run: ``billing.run {as_of, workers: true}`` starts it; the workers claim its partitions
  (``FOR UPDATE SKIP LOCKED``, one transaction each), issue the invoices and deliver every event they
  produce (posting into the ledger, revenue's billing handler, ...) until the outbox is empty;
- the revenue run: ``revrec.run`` through the month end (one transaction by design: one consistent run
  and one ``revenue.recognized`` event per entity, currency and period), its events delivered by the
  workers.

Beside each figure: the CPU the workers and the server used (cores = CPU seconds / wall seconds; the
server shares this machine's cores with the workers). The books of every configuration must be the
single worker's: invoice count and totals, trial balances of every entity, recognised revenue; nothing
pending or unposted. The peer is the single worker: speed-up = rate with k workers / rate with one.
``python -m closeloop.bench.scale --customers 100000 --usage-per-customer 100`` runs the x100 size once
(make soak records it in bench/soak.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, peak_rss_mb, result, workload

AS_OF = "2026-02-01"
THROUGH = "2026-01-31"


def _admin(url: str) -> Any:
    import sqlalchemy as sa

    from closeloop.core.db import resolve_url

    return sa.create_engine(sa.make_url(resolve_url(url)).set(database="postgres"), isolation_level="AUTOCOMMIT",
                            poolclass=sa.pool.NullPool)


def _db_url(url: str, name: str) -> str:
    import sqlalchemy as sa

    from closeloop.core.db import resolve_url

    return sa.make_url(resolve_url(url)).set(database=name).render_as_string(hide_password=False)


def build_template(cluster_url: str, n: int, usage: int, workdir: Path) -> dict[str, Any]:
    """The data set in database ``scale_base`` (migrated, customers, contracts, usage)."""
    from closeloop.bench import billing as bb

    admin = _admin(cluster_url)
    with admin.connect() as conn:
        conn.exec_driver_sql('DROP DATABASE IF EXISTS "scale_base" WITH (FORCE)')
        conn.exec_driver_sql('CREATE DATABASE "scale_base"')
    admin.dispose()
    url = _db_url(cluster_url, "scale_base")
    start = time.perf_counter()
    app, customers = bb.setup(str(workdir / "unused.db"), n, workdir, url=url)
    contracts_seconds = time.perf_counter() - start
    events = bb.usage_events(customers, usage)
    ingest_seconds = bb.ingest(app, events)
    app.close()
    return {"setup_seconds": round(time.perf_counter() - start, 1), "contracts_seconds": round(contracts_seconds, 1),
            "usage_events": usage, "usage_ingest_seconds": round(ingest_seconds, 1)}


def _wait_until(app: Any, done: Any, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with app.unit_of_work(write=False) as uow:
            if done(uow):
                return
        time.sleep(0.05)
    raise TimeoutError("the workers did not finish in time")


def _outbox_empty(uow: Any) -> bool:
    return not int(uow.scalar("SELECT COUNT(*) FROM event WHERE status IN ('pending', 'failed')"))


def run_config(cluster_url: str, data_dir: Path, workers: int) -> dict[str, Any]:
    from closeloop.app import App
    from closeloop.bench.events import _cpu_seconds, _server_cpu, stop_workers
    from closeloop.core.clock import ScenarioClock

    name = f"scale_w{workers}"
    admin = _admin(cluster_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "scale_base"')
    url = _db_url(cluster_url, name)
    from datetime import date

    app = App(url, clock=ScenarioClock(date.fromisoformat(AS_OF)), actor="bench", dispatch="worker", migrate=False)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "closeloop.integration.worker", "--db", url, "--batch", "200", "--per-transaction",
         "50", "--poll", "0.05", "--lease", "120", "--no-webhooks", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    out: dict[str, Any] = {"workers": workers}
    try:
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:  # the clock starts once every worker is connected and polling
            with app.unit_of_work(write=False) as uow:
                connected = int(uow.scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"))
            if connected >= workers + 1 or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        for phase, start_phase, finished in (
                ("bill_run", lambda: app.do("billing.run", {"as_of": AS_OF, "workers": True}),
                 lambda uow: _outbox_empty(uow) and not int(uow.scalar(
                     "SELECT COUNT(*) FROM billing_run WHERE status = 'running'"))),
                ("revenue_run", lambda: app.do("revrec.run", {"through": THROUGH}), _outbox_empty)):
            cpu0 = {p.pid: _cpu_seconds(p.pid) for p in procs}
            server0 = _server_cpu(data_dir)
            t0 = time.perf_counter()
            summary = start_phase()
            _wait_until(app, finished, 3600)
            seconds = time.perf_counter() - t0
            worker_cpu = sum(_cpu_seconds(p.pid) - cpu0[p.pid] for p in procs)
            server_cpu = sum(v - server0.get(pid, 0.0) for pid, v in _server_cpu(data_dir).items())
            out[phase] = {"seconds": round(seconds, 3), "workers_cpu_cores": round(worker_cpu / seconds, 2),
                          "server_cpu_cores": round(server_cpu / seconds, 2)}
            if phase == "revenue_run":
                out[phase]["lines"] = summary.get("lines")
        out["books"] = books(app)
        out["bill_run"]["rate"] = round(out["books"]["invoices"] / out["bill_run"]["seconds"], 1)
    finally:
        stop_workers(procs, 60)
        app.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return out


def books(app: Any) -> dict[str, Any]:
    """What every configuration must agree on."""
    with app.unit_of_work(write=False) as uow:
        invoices, total = uow.one("SELECT COUNT(*), COALESCE(SUM(total), 0) FROM billing_invoice WHERE number IS NOT"
                                  " NULL")
        pending = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status <> 'done'"))
        entities = [r[0] for r in uow.all("SELECT code FROM legal_entity ORDER BY code")]
    trial = {}
    for ent in entities:
        tb = app.query("trial_balance", {"entity": ent})
        trial[ent] = {"balanced": tb["balanced"],
                      "rows": sorted((r["code"], r["debit"], r["credit"]) for r in tb["rows"])}
    unposted = app.query("exceptions", {"kind": "unposted_event", "status": "open"})["count"]
    return {"invoices": int(invoices), "invoice_total_minor": int(total), "events_not_done": pending,
            "unposted": unposted, "trial_balances": trial}


def measure(n: int, usage_per_customer: int, workdir: Path, worker_counts: tuple[int, ...] = (1, 2, 4)
            ) -> dict[str, Any]:
    from closeloop.devtools.pgcluster import TempCluster

    with TempCluster(fsync=True) as cluster:
        setup = build_template(cluster.url, n, n * usage_per_customer, workdir)
        print(json.dumps({"setup": setup}), file=sys.stderr, flush=True)  # progress of a long (soak) run
        runs = []
        for k in worker_counts:
            runs.append(run_config(cluster.url, cluster.data, k))
            print(json.dumps({f: v for f, v in runs[-1].items() if f != "books"}), file=sys.stderr, flush=True)
    first = runs[0]["books"]
    identical = all(r["books"] == first for r in runs)
    healthy = first["events_not_done"] == 0 and first["unposted"] == 0 and all(
        t["balanced"] for t in first["trial_balances"].values())
    for r in runs:
        r["same_books_as_one_worker"] = r["books"] == first
        r["books"] = {k: v for k, v in r["books"].items() if k != "trial_balances"}
    return {"customers": n, "setup": setup, "runs": runs, "identical": identical, "healthy": healthy}


def _row(m: dict[str, Any], name: str) -> dict[str, Any]:
    runs = {r["workers"]: r for r in m["runs"]}
    one = runs[min(runs)]
    most = runs[max(runs)]
    speedup = {str(k): round(one["bill_run"]["seconds"] / r["bill_run"]["seconds"], 2) for k, r in runs.items()}
    revenue_speedup = {str(k): round(one["revenue_run"]["seconds"] / r["revenue_run"]["seconds"], 2)
                       for k, r in runs.items()}
    invoices = one["books"]["invoices"]
    return result(
        name, n=invoices, unit="invoices (bill run by workers)", seconds=most["bill_run"]["seconds"],
        baseline={"name": "the same bill run with 1 worker", "seconds": one["bill_run"]["seconds"],
                  "rate": one["bill_run"]["rate"], "wrote": "the same rows (the same data and run)"},
        ratio=most["bill_run"]["rate"] / one["bill_run"]["rate"],
        goal="throughput, speed-up and CPU recorded at 1, 2 and 4 workers; books identical to one worker's",
        met=m["identical"] and m["healthy"], customers=m["customers"], setup=m["setup"], runs=m["runs"],
        bill_run_speedup=speedup, revenue_run_speedup=revenue_speedup,
        notes="PostgreSQL (TempCluster, fsync on) on this machine's 2 cores shared by the server and the workers;"
              " rate and seconds of the row are the 4-worker bill run, ratio = its rate / one worker's; the revenue"
              " run is one transaction by design (workers only deliver its events)")


@workload("scale.bill_run_workers")
def bill_run_workers(ctx: BenchContext) -> list[dict[str, Any]]:
    m = measure(ctx.size(10_000), 100, ctx.workdir)
    row = _row(m, "scale.bill_run_workers")
    row["peak_rss_mb"] = peak_rss_mb()
    return [row]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop.bench.scale")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--usage-per-customer", type=int, default=100)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--output", default="bench/soak.json")
    args = parser.parse_args(argv)
    workdir = Path(os.environ.get("CLOSELOOP_BENCH_DATA", "bench/data"))
    workdir.mkdir(parents=True, exist_ok=True)
    m = measure(args.customers, args.usage_per_customer, workdir,
                tuple(int(k) for k in args.workers.split(",")))
    row = _row(m, "scale.x100_bill_run_workers")
    path = Path(args.output)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["scale_x100"] = row
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: row[k] for k in ("n", "seconds", "ratio", "met", "bill_run_speedup",
                                          "revenue_run_speedup")}, indent=2))
    return 0 if row["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
