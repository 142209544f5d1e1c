"""Event delivery workloads: events.dispatch (in-process, SQLite) and events.dispatch_workers (PostgreSQL).

- ``events.dispatch``: N outbox events over 1,000 aggregates, each handled by
  one handler that writes one row; the embedded dispatcher (``App.dispatch()``)
  delivers them all. Baseline: raw ``sqlite3`` ``executemany`` of exactly the
  rows the delivery consists of (the handler's row, the delivery record, the
  event's status update) in one transaction on equivalent tables. Goal
  >= 5,000 events/s.
- ``events.dispatch_workers``: the same on PostgreSQL (``TempCluster`` with
  fsync and synchronous commit on) with 1, 2 and 4 ``closeloop worker``
  processes, one transaction per event (a commit-bound handler). Workers are
  started first and idle; the timer runs from the commit of the events until
  none is pending. Beside each figure: the CPU the workers and the server used
  (cores = CPU seconds / wall seconds; the server shares the machine's cores).
  Baseline: one psycopg client doing the same three writes per event, one
  transaction each (the server's commit-bound limit for one client). Goal: 2
  workers >= 1.3x one.

Importing this module registers the bench handler (``bench.work`` events) so
worker processes load it with ``--import closeloop.bench.events``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from closeloop.bench.runner import BenchContext, median, result, workload
from closeloop.core.events import Event, handles

AGGREGATES = 1000
EFFECT_TABLE = ("CREATE TABLE IF NOT EXISTS bench_effect (event_id BIGINT PRIMARY KEY, aggregate VARCHAR(32)"
                " NOT NULL, n INTEGER NOT NULL)")


@handles("bench.work", "bench.effect")
def bench_effect(uow: Any, ev: Event) -> None:
    """The benchmark's handler: one row per event (a commit-bound handler when each event is a transaction)."""
    uow.execute("INSERT INTO bench_effect (event_id, aggregate, n) VALUES (?,?,?)",
                (ev.id, ev.aggregate_id, int(ev.payload["n"])))


def emit_events(app: Any, n: int) -> None:
    with app.unit_of_work(actor="bench") as uow:
        uow.execute(EFFECT_TABLE)
    with app.unit_of_work(actor="bench") as uow:
        uow.emit_many("bench.work", "account", [(f"A{i % AGGREGATES:04d}", None, {"n": i}) for i in range(n)])


def check_all_done(app: Any, n: int) -> None:
    with app.unit_of_work(write=False) as uow:
        pending = uow.scalar("SELECT COUNT(*) FROM event WHERE type = 'bench.work' AND status <> 'done'")
        effects = uow.scalar("SELECT COUNT(*) FROM bench_effect")
    if pending or effects != n:
        raise RuntimeError(f"bench: {pending} events undelivered, {effects} effects for {n} events")


# ----------------------------------------------------------------------------- events.dispatch (SQLite)


def _fresh_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")


def closeloop_dispatch_sqlite(workdir: Path, n: int) -> float:
    from closeloop.app import App

    path = workdir / "events_dispatch.db"
    _fresh_sqlite(path)
    app = App(str(path), actor="bench", dispatch="worker")
    try:
        emit_events(app, n)
        start = time.perf_counter()
        report = app.dispatch()
        seconds = time.perf_counter() - start
        if report.errors:
            raise RuntimeError(f"bench dispatch errors: {report.errors[:3]}")
        check_all_done(app, n)
    finally:
        app.close()
    return seconds


BASELINE_SCHEMA = """
CREATE TABLE event (id INTEGER PRIMARY KEY, aggregate_id TEXT NOT NULL, payload TEXT NOT NULL,
  status TEXT NOT NULL);
CREATE TABLE event_delivery (event_id INTEGER NOT NULL, handler TEXT NOT NULL, delivered_at TEXT NOT NULL,
  PRIMARY KEY (event_id, handler));
CREATE TABLE bench_effect (event_id INTEGER PRIMARY KEY, aggregate TEXT NOT NULL, n INTEGER NOT NULL);
"""


def baseline_sqlite(workdir: Path, n: int) -> float:
    path = workdir / "events_dispatch_baseline.db"
    _fresh_sqlite(path)
    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(BASELINE_SCHEMA)
    con.execute("BEGIN")
    con.executemany("INSERT INTO event VALUES (?,?,?,'pending')",
                    [(i + 1, f"A{i % AGGREGATES:04d}", f'{{"n":{i}}}') for i in range(n)])
    con.execute("COMMIT")
    start = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO bench_effect VALUES (?,?,?)", [(i + 1, f"A{i % AGGREGATES:04d}", i) for i in range(n)])
    con.executemany("INSERT INTO event_delivery VALUES (?,?,?)",
                    [(i + 1, "bench.effect", "2026-01-01T00:00:00Z") for i in range(n)])
    con.executemany("UPDATE event SET status = 'done' WHERE id = ?", [(i + 1,) for i in range(n)])
    con.execute("COMMIT")
    seconds = time.perf_counter() - start
    con.close()
    return seconds


@workload("events.dispatch")
def events_dispatch(ctx: BenchContext) -> list[dict[str, Any]]:
    n = ctx.size(50_000)
    ours, base = [], []
    for _ in range(3):
        ours.append(closeloop_dispatch_sqlite(ctx.workdir, n))
        base.append(baseline_sqlite(ctx.workdir, n))
    seconds, baseline_seconds = median(ours), median(base)
    rate = n / seconds
    return [result(
        "events.dispatch", n=n, unit="events", seconds=seconds,
        baseline={"name": "sqlite.executemany", "seconds": round(baseline_seconds, 4),
                  "rate": round(n / baseline_seconds, 1),
                  "wrote": "the handler's row, the delivery record and the status update per event"},
        ratio=baseline_seconds / seconds, goal="rate >= 5000 events/s", met=rate >= 5000,
        notes=f"SQLite, embedded App.dispatch(), one handler writing one row, {AGGREGATES} aggregates;"
              f" median of 3 runs (all: {[round(s, 3) for s in ours]} s)",
    )]


# ----------------------------------------------------------------------------- events.dispatch_workers (PostgreSQL)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pids(data_dir: Path) -> list[int]:
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                pids.append(int(entry.name))
    return pids


def _server_cpu(data_dir: Path) -> dict[int, float]:
    return {pid: _cpu_seconds(pid) for pid in _server_pids(data_dir)}


def stop_workers(procs: list[subprocess.Popen[str]], wait_seconds: float) -> None:
    """SIGTERM (finish the transaction in flight, give back leases), then SIGKILL whoever outlives the wait."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(wait_seconds)
        except subprocess.TimeoutExpired:
            p.kill()


def run_workers(url: str, data_dir: Path, n: int, workers: int) -> dict[str, Any]:
    """Start ``workers`` worker processes idle, commit n events, time until all are delivered."""
    from closeloop.app import App

    app = App(url, actor="bench", dispatch="worker")
    with app.unit_of_work() as uow:
        uow.execute(EFFECT_TABLE)
    env = dict(os.environ)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "closeloop.integration.worker", "--db", url, "--import", "closeloop.bench.events",
         "--per-transaction", "1", "--batch", "50", "--poll", "0.05", "--lease", "60", "--no-webhooks", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    try:
        ready = time.perf_counter() + 120
        while time.perf_counter() < ready:  # the clock starts once every worker is connected and polling
            with app.unit_of_work(write=False) as uow:
                connected = uow.scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()")
            if int(connected) >= workers + 1 or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        worker_cpu0 = {p.pid: _cpu_seconds(p.pid) for p in procs}
        server_cpu0 = _server_cpu(data_dir)
        with app.unit_of_work(actor="bench") as uow:
            uow.emit_many("bench.work", "account", [(f"A{i % AGGREGATES:04d}", None, {"n": i}) for i in range(n)])
        start = time.perf_counter()
        deadline = start + 600
        while time.perf_counter() < deadline:
            with app.unit_of_work(write=False) as uow:
                left = uow.scalar("SELECT COUNT(*) FROM event WHERE type = 'bench.work' AND status = 'pending'")
            if not left:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        worker_cpu = sum(_cpu_seconds(p.pid) - worker_cpu0[p.pid] for p in procs)
        server_now = _server_cpu(data_dir)
        server_cpu = sum(v - server_cpu0.get(pid, 0.0) for pid, v in server_now.items())
        check_all_done(app, n)
    finally:
        stop_workers(procs, 30)
        app.close()
    return {"workers": workers, "seconds": round(seconds, 4), "rate": round(n / seconds, 1),
            "workers_cpu_cores": round(worker_cpu / seconds, 2), "server_cpu_cores": round(server_cpu / seconds, 2)}


def baseline_postgres(url: str, n: int) -> float:
    import psycopg

    from closeloop.core.db import resolve_url

    conninfo = resolve_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=False) as con:
        con.execute("CREATE TABLE base_event (id BIGINT PRIMARY KEY, aggregate_id TEXT, payload TEXT, status TEXT)")
        con.execute("CREATE TABLE base_delivery (event_id BIGINT, handler TEXT, delivered_at TEXT,"
                    " PRIMARY KEY (event_id, handler))")
        con.execute("CREATE TABLE base_effect (event_id BIGINT PRIMARY KEY, aggregate TEXT, n INTEGER)")
        with con.cursor() as cur:
            cur.executemany("INSERT INTO base_event VALUES (%s,%s,%s,'pending')",
                            [(i + 1, f"A{i % AGGREGATES:04d}", f'{{"n":{i}}}') for i in range(n)])
        con.commit()
        start = time.perf_counter()
        for i in range(n):
            con.execute("INSERT INTO base_effect VALUES (%s,%s,%s)", (i + 1, f"A{i % AGGREGATES:04d}", i))
            con.execute("INSERT INTO base_delivery VALUES (%s,'bench.effect','2026-01-01T00:00:00Z')", (i + 1,))
            con.execute("UPDATE base_event SET status = 'done' WHERE id = %s", (i + 1,))
            con.commit()
        return time.perf_counter() - start


@workload("events.dispatch_workers")
def events_dispatch_workers(ctx: BenchContext) -> list[dict[str, Any]]:
    from closeloop.devtools.pgcluster import TempCluster
    from closeloop.scenarios.fresh import drop_templates, fresh_database

    n = ctx.size(10_000)
    runs: list[dict[str, Any]] = []
    with TempCluster(fsync=True) as cluster:
        try:
            for workers in (1, 2, 4):
                with fresh_database(cluster.url) as url:
                    runs.append(run_workers(url, cluster.data, n, workers))
            with fresh_database(cluster.url) as url:
                base_seconds = baseline_postgres(url, n)
        finally:
            drop_templates()
    by = {r["workers"]: r for r in runs}
    ratio2 = by[2]["rate"] / by[1]["rate"]
    return [result(
        "events.dispatch_workers", n=n, unit="events", seconds=by[2]["seconds"],
        baseline={"name": "psycopg transaction per event, 1 client", "seconds": round(base_seconds, 4),
                  "rate": round(n / base_seconds, 1),
                  "wrote": "the handler's row, the delivery record and the status update, one commit each"},
        ratio=ratio2, goal="2 workers >= 1.3x one worker", met=ratio2 >= 1.3,
        runs=runs, scaling={str(k): round(v["rate"] / by[1]["rate"], 2) for k, v in by.items()},
        notes="PostgreSQL (TempCluster, fsync and synchronous_commit on) on this machine's cores, shared with the"
              " workers; one transaction per event; rate and seconds of the row are the 2-worker run; ratio ="
              " 2-worker rate / 1-worker rate; single run per worker count",
    )]
