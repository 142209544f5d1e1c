"""``make soak``: correctness under faults that do not fit CI; results in bench/soak.json.

1. **Worker soak** (PostgreSQL): 4 ``closeloop worker`` processes against
   20,000 events over 2,000 aggregates (10 each, so order matters); one worker
   is killed with SIGKILL half-way. Checked: every event delivered, every
   effect exactly once (the effect table has no unique key, so a double would
   show), per-aggregate order kept, no lease left behind.
2. **Dispatcher fault injection** (SQLite and PostgreSQL): >= 30 trials each.
   A trial posts sales and payments through handlers that write journal
   entries (payments wait, NotReady, until their sale is posted; a few
   deliveries fail transiently and are retried). A dispatcher process is
   killed at random points — ``os._exit`` from inside the delivery path at a
   random hook call (after the claim, before/after a handler, before/after the
   commit) or SIGKILL from outside after a random time — and restarted until
   the outbox is empty. Checked: no event lost (all done), no journal entry
   doubled (exactly one per event), the ledger balanced with the expected
   totals, the hash chain intact.

CI runs a tenth (tests/soak): a few in-process trials (the crash is simulated
by closing the connection and raising out of the delivery path) and, on
PostgreSQL, a 2,000-event worker soak.

    python -m closeloop.bench.soak [--trials 30] [--events 20000] [--skip-workers] [--output bench/soak.json]

Importing this module registers the soak's handlers (``soak.*`` events).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from closeloop.core.events import Event, NotReady, handles
from closeloop.core.money import format_minor
from closeloop.ledger.model import EntryDraft, LineDraft

ENTITY = "SOAK"
DAY = "2026-01-15"
KILLS_PER_TRIAL = 4  # then one uninterrupted run finishes the trial


# ----------------------------------------------------------------------------- the soak's handlers


def transient(ev: Event, percent: int = 5) -> bool:
    """A deterministic transient failure: some events fail their first attempts, then succeed."""
    return ev.attempts < 2 and (ev.id * 7919 + ev.attempts * 104729) % 100 < percent


@handles("soak.work", "soak.effect")
def soak_effect(uow: Any, ev: Event) -> None:
    uow.execute("INSERT INTO soak_effect (event_id, aggregate, n, pid) VALUES (?,?,?,?)",
                (ev.id, ev.aggregate_id, int(ev.payload["n"]), os.getpid()))


@handles("soak.sale", "soak.post_sale")
def post_sale(uow: Any, ev: Event) -> None:
    from closeloop.ledger.service import post_entries

    if transient(ev):
        raise ConnectionError(f"soak: transient failure of event {ev.id}")
    amount = int(ev.payload["amount"])
    post_entries(uow, [EntryDraft(ENTITY, DAY, f"sale {ev.aggregate_id}", (
        LineDraft("accounts_receivable", amount), LineDraft("revenue", -amount)),
        reference=f"soak:sale:{ev.aggregate_id}")], event_id=ev.id)


@handles("soak.payment", "soak.post_payment")
def post_payment(uow: Any, ev: Event) -> None:
    from closeloop.ledger.service import post_entries

    sale = ev.payload["sale"]
    if uow.one("SELECT 1 FROM journal_entry WHERE reference = ?", (f"soak:sale:{sale}",)) is None:
        raise NotReady(f"sale {sale} is not posted yet")
    if transient(ev):
        raise ConnectionError(f"soak: transient failure of event {ev.id}")
    amount = int(ev.payload["amount"])
    post_entries(uow, [EntryDraft(ENTITY, DAY, f"payment for {sale}", (
        LineDraft("cash", amount), LineDraft("accounts_receivable", -amount)))], event_id=ev.id)


# ----------------------------------------------------------------------------- dispatcher fault injection


def _app(url: str, **kw: Any) -> Any:
    from closeloop.app import App

    return App(url, actor="soak", source="soak", migrate=False, **kw)


def configure(app: Any) -> Any:
    """Fast retries and short leases, so a trial's crashes resolve in seconds."""
    return app.dispatcher.configure(max_attempts=50, base_delay_seconds=0.01, max_delay_seconds=0.2,
                                    lease_seconds=1.0, batch_size=25, events_per_transaction=5)


def setup_trial(url: str, sales: int, seed: int) -> dict[str, int]:
    """The entity, then payments emitted *before* their sales for half the customers (they must wait)."""
    rng = random.Random(seed)
    app = _app(url, dispatch="worker")
    try:
        app.do("entity.create", {"code": ENTITY, "name": "Soak Co", "country": "US", "currency": "USD"})
        expected = {"sales": 0, "payments": 0, "events": 0}
        with app.unit_of_work(actor="soak") as uow:
            for i in range(sales):
                customer = f"C{i:05d}"
                amount = rng.randint(100, 100_000)
                paid = rng.randint(1, amount)
                early = i % 2 == 0
                if early:
                    uow.emit("soak.payment", "payment", f"P{i:05d}", {"sale": customer, "amount": paid})
                uow.emit("soak.sale", "sale", customer, {"amount": amount})
                if not early:
                    uow.emit("soak.payment", "payment", f"P{i:05d}", {"sale": customer, "amount": paid})
                expected["sales"] += amount
                expected["payments"] += paid
                expected["events"] += 2
        return expected
    finally:
        app.close()


def verify_trial(url: str, expected: dict[str, int]) -> list[str]:
    """Every problem found (empty when the trial is clean)."""
    app = _app(url)
    problems: list[str] = []
    try:
        with app.unit_of_work(write=False) as uow:
            open_events = uow.all("SELECT id, type, status, last_error FROM event WHERE type LIKE 'soak.%'"
                                  " AND status <> 'done'")
            if open_events:
                problems.append(f"{len(open_events)} events not delivered, e.g. {open_events[:3]}")
            doubled = uow.all("SELECT event_id, COUNT(*) FROM journal_entry WHERE event_id IS NOT NULL"
                              " GROUP BY event_id HAVING COUNT(*) > 1")
            if doubled:
                problems.append(f"journal entries doubled for events {doubled[:5]}")
            posted = int(uow.scalar("SELECT COUNT(DISTINCT event_id) FROM journal_entry WHERE event_id IS NOT NULL"))
            if posted != expected["events"]:
                problems.append(f"{posted} events posted, expected {expected['events']}")
            deliveries = uow.all("SELECT event_id, handler, COUNT(*) FROM event_delivery GROUP BY event_id, handler"
                                 " HAVING COUNT(*) > 1")
            if deliveries:
                problems.append(f"doubled delivery records {deliveries[:5]}")
        tb = app.query("trial_balance", {"entity": ENTITY})
        if not tb["balanced"]:
            problems.append(f"trial balance not balanced: {tb['debits']} vs {tb['credits']}")
        accounts = tb["accounts"]
        want = {"1000": expected["payments"], "1100": expected["sales"] - expected["payments"],
                "4000": -expected["sales"]}
        for code, minor in want.items():
            got = accounts.get(code, "0.00")
            if got != format_minor(minor, "USD"):
                problems.append(f"account {code} is {got}, expected {format_minor(minor, 'USD')}")
        verify = app.query("ledger_verify", {"entity": ENTITY})
        if not verify["ok"]:
            problems.append(f"ledger_verify: {verify['problems'][:3]}")
    finally:
        app.close()
    return problems


def _pending(url: str) -> int:
    app = _app(url)
    try:
        with app.unit_of_work(write=False) as uow:
            return int(uow.scalar("SELECT COUNT(*) FROM event WHERE type LIKE 'soak.%' AND status <> 'done'"))
    finally:
        app.close()


def dispatch_child(url: str, crash_after: int | None) -> int:
    """A dispatcher process: drain the outbox; with ``crash_after``, die (os._exit) at that hook call."""
    from closeloop.core import events

    calls = {"n": 0}
    if crash_after is not None:
        def crash(point: str) -> None:
            calls["n"] += 1
            if calls["n"] >= crash_after:
                os._exit(137)  # like SIGKILL: no cleanup, no finally, no commit

        events.set_fault_hook(crash)
    app = _app(url)
    configure(app)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        app.dispatch()
        with app.unit_of_work(write=False) as uow:
            left = int(uow.scalar("SELECT COUNT(*) FROM event WHERE type LIKE 'soak.%' AND status = 'pending'"))
        if not left:
            app.close()
            return 0
        time.sleep(0.05)
    app.close()
    return 3


def run_trial_process(url: str, sales: int, seed: int) -> dict[str, Any]:
    """A trial with real processes: crashes inside the delivery path and SIGKILLs from outside."""
    rng = random.Random(seed)
    expected = setup_trial(url, sales, seed)
    kills = {"hook": 0, "sigkill": 0}
    for attempt in range(KILLS_PER_TRIAL):
        pending = _pending(url)
        if not pending:
            break
        if attempt == 0 or rng.random() < 0.5:
            crash_after = rng.randint(1, pending * 3)  # hook calls: before/after each handler, each commit
            cmd = [sys.executable, "-m", "closeloop.bench.soak", "--child", url, "--crash-after", str(crash_after)]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, stderr = proc.communicate(timeout=300)
            if proc.returncode == 137:
                kills["hook"] += 1
            elif proc.returncode != 0:
                raise RuntimeError(f"dispatcher child failed ({proc.returncode}): {stderr[-2000:]}")
        else:
            cmd = [sys.executable, "-m", "closeloop.bench.soak", "--child", url]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                proc.wait(timeout=rng.uniform(1.0, 4.0))  # imports take a second or two: kill during delivery
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills["sigkill"] += 1
            else:
                if proc.returncode != 0:
                    raise RuntimeError(f"dispatcher child failed ({proc.returncode})")
    if _pending(url):  # a last, uninterrupted run to finish
        subprocess.run([sys.executable, "-m", "closeloop.bench.soak", "--child", url], check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
    problems = verify_trial(url, expected)
    return {"seed": seed, "events": expected["events"], "kills": kills, "problems": problems, "ok": not problems}


class SimulatedCrash(BaseException):
    """Raised from the fault hook in-process: not an Exception, so no handler code catches it."""


def run_trial_inprocess(url: str, sales: int, seed: int) -> dict[str, Any]:
    """The CI variant: the crash closes the connection (the database rolls back, leases stay) and unwinds."""
    import logging

    from closeloop.core import events

    logging.getLogger("closeloop.events").setLevel(logging.CRITICAL)  # the crashes are the point

    rng = random.Random(seed)
    expected = setup_trial(url, sales, seed)
    crashes = 0
    for _ in range(40):
        app = _app(url)
        configure(app)
        crash_after = rng.randint(1, expected["events"] * 3) if crashes < 4 else None
        state = {"calls": 0, "crashed": False}

        def crash(point: str, app: Any = app, state: dict[str, Any] = state, at: int | None = crash_after) -> None:
            state["calls"] += 1
            if at is not None and state["calls"] >= at and not state["crashed"]:
                state["crashed"] = True
                for conn in app._connections:  # the process dies: its connections drop, uncommitted work is lost
                    conn.invalidate()
                raise SimulatedCrash(point)

        events.set_fault_hook(crash)
        try:
            while not state["crashed"]:
                app.dispatcher.run()
                if state["crashed"]:
                    break
                with app.unit_of_work(write=False) as uow:
                    left = int(uow.scalar("SELECT COUNT(*) FROM event WHERE type LIKE 'soak.%'"
                                          " AND status = 'pending'"))
                if not left:
                    break
                time.sleep(0.02)
        except SimulatedCrash:
            pass
        finally:
            events.set_fault_hook(None)
            crashes += int(state["crashed"])
            with contextlib.suppress(Exception):  # connections already dropped
                app.close()
        if not state["crashed"] and not _pending(url):
            break
    problems = verify_trial(url, expected)
    return {"seed": seed, "events": expected["events"], "kills": {"simulated": crashes}, "problems": problems,
            "ok": not problems}


def fault_injection(base_url: str | None, trials: int, sales: int, *, mode: str = "process",
                    seed: int = 1) -> dict[str, Any]:
    from closeloop.scenarios.fresh import fresh_database

    results = []
    started = time.perf_counter()
    for t in range(trials):
        with fresh_database(base_url) as url:
            run = run_trial_process if mode == "process" else run_trial_inprocess
            results.append(run(url, sales, seed + t))
    return {"trials": trials, "mode": mode, "events_per_trial": 2 * sales,
            "kills": {k: sum(r["kills"].get(k, 0) for r in results) for k in ("hook", "sigkill", "simulated")},
            "failed": [r for r in results if not r["ok"]], "ok": all(r["ok"] for r in results),
            "seconds": round(time.perf_counter() - started, 1)}


# ----------------------------------------------------------------------------- worker soak (PostgreSQL)


def worker_soak(base_url: str, events: int, workers: int = 4, aggregates: int | None = None,
                lease_seconds: float = 5.0) -> dict[str, Any]:
    from closeloop.scenarios.fresh import fresh_database

    aggregates = aggregates or max(1, events // 10)
    started = time.perf_counter()
    with fresh_database(base_url) as url:
        app = _app(url, dispatch="worker")
        procs: list[subprocess.Popen[str]] = []
        try:
            with app.unit_of_work() as uow:
                uow.execute("CREATE TABLE soak_effect (seq BIGSERIAL PRIMARY KEY, event_id BIGINT NOT NULL,"
                            " aggregate VARCHAR(32) NOT NULL, n INTEGER NOT NULL, pid INTEGER NOT NULL)")
            procs = [subprocess.Popen(
                [sys.executable, "-m", "closeloop.integration.worker", "--db", url, "--import", "closeloop.bench.soak",
                 "--per-transaction", "1", "--batch", "20", "--poll", "0.05", "--lease", str(lease_seconds),
                 "--no-webhooks", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for _ in range(workers)]
            ready = time.monotonic() + 120
            while time.monotonic() < ready:
                with app.unit_of_work(write=False) as uow:
                    n = int(uow.scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"))
                if n >= workers + 1:
                    break
                time.sleep(0.1)
            with app.unit_of_work() as uow:
                uow.emit_many("soak.work", "account", [(f"A{i % aggregates:05d}", None, {"n": i // aggregates})
                                                       for i in range(events)])
            victim = procs[0]
            killed_at = None
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                with app.unit_of_work(write=False) as uow:
                    done = int(uow.scalar("SELECT COUNT(*) FROM event WHERE type = 'soak.work' AND status = 'done'"))
                if killed_at is None and done >= events // 2:
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    killed_at = done
                if done >= events:
                    break
                time.sleep(0.05)
            for p in procs[1:]:
                p.send_signal(signal.SIGTERM)
            exit_codes = [p.wait(60) for p in procs[1:]]
            with app.unit_of_work(write=False) as uow:
                not_done = int(uow.scalar("SELECT COUNT(*) FROM event WHERE type = 'soak.work' AND status <> 'done'"))
                effects = int(uow.scalar("SELECT COUNT(*) FROM soak_effect"))
                doubles = uow.all("SELECT event_id, COUNT(*) FROM soak_effect GROUP BY event_id HAVING COUNT(*) <> 1")
                per_worker = {int(pid): int(n) for pid, n in uow.all("SELECT pid, COUNT(*) FROM soak_effect GROUP BY pid")}
                leases = int(uow.scalar("SELECT COUNT(*) FROM event WHERE claimed_by IS NOT NULL"))
                order_breaks = int(uow.scalar(
                    "SELECT COUNT(*) FROM (SELECT aggregate, n, LAG(n) OVER (PARTITION BY aggregate ORDER BY seq)"
                    " AS prev FROM soak_effect) x WHERE prev IS NOT NULL AND prev >= n"))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            app.close()
    problems = []
    if not_done:
        problems.append(f"{not_done} events not delivered")
    if effects != events or doubles:
        problems.append(f"{effects} effects for {events} events; doubled {doubles[:5]}")
    if order_breaks:
        problems.append(f"{order_breaks} effects out of aggregate order")
    if leases:
        problems.append(f"{leases} leases left")
    if any(code != 0 for code in exit_codes):
        problems.append(f"surviving workers exited with {exit_codes}")
    return {"events": events, "aggregates": aggregates, "workers": workers, "killed_after_done": killed_at,
            "killed_worker_pid": procs[0].pid if procs else None, "effects_per_worker": per_worker,
            "lease_seconds": lease_seconds, "problems": problems, "ok": not problems,
            "seconds": round(time.perf_counter() - started, 1)}


# ----------------------------------------------------------------------------- make soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop.bench.soak")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--crash-after", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--sales", type=int, default=40, help="sales per trial (each with a payment)")
    parser.add_argument("--events", type=int, default=20_000, help="events in the worker soak")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--output", default="bench/soak.json")
    args = parser.parse_args(argv)
    if args.child:
        return dispatch_child(args.child, args.crash_after)

    from closeloop.devtools.pgcluster import ClusterError, TempCluster
    from closeloop.scenarios.fresh import drop_templates

    report: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "platform": platform.platform()}}
    print(f"fault injection on SQLite: {args.trials} trials ...", flush=True)
    report["fault_injection_sqlite"] = fault_injection(None, args.trials, args.sales)
    print(json.dumps({k: v for k, v in report["fault_injection_sqlite"].items() if k != "failed"}), flush=True)
    if not args.skip_postgres:
        try:
            with TempCluster() as cluster:
                try:
                    print(f"fault injection on PostgreSQL: {args.trials} trials ...", flush=True)
                    report["fault_injection_postgresql"] = fault_injection(cluster.url, args.trials, args.sales)
                    print(json.dumps({k: v for k, v in report["fault_injection_postgresql"].items()
                                      if k != "failed"}), flush=True)
                    if not args.skip_workers:
                        print(f"worker soak: {args.events} events, 4 workers, one SIGKILLed ...", flush=True)
                        report["worker_soak"] = worker_soak(cluster.url, args.events)
                        print(json.dumps(report["worker_soak"]), flush=True)
                finally:
                    drop_templates()
        except ClusterError as exc:
            report["postgresql"] = f"skipped: {exc}"
    drop_templates()
    ok = all(v.get("ok", True) for v in report.values() if isinstance(v, dict) and "ok" in v)
    report["ok"] = ok
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}: {'all checks passed' if ok else 'FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
