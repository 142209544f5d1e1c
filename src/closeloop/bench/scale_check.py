"""The correctness side of scaling out: the same seeded company billed and recognised by 1, 2 and 4 worker
processes on PostgreSQL gives the same books, and so does a run in which a worker is SIGKILLed mid-way.

Each configuration starts from an empty database and runs the crash suite's seeded workload
(closeloop.bench.crash: two entities, a CRM export, contracts, usage, payments, revenue runs, closes), except
that every bill run is shared by the workers (partitions claimed with ``FOR UPDATE SKIP LOCKED``) and every
business event is delivered by the workers (outbox claims and leases), never by the process issuing the
commands. In the ``kill`` configuration one of four workers of each bill run and delivery round is armed
with a fault point and dies with SIGKILL part-way; the others go on, and a supervisor starts new workers
while partitions or events are left (the claims of the dead one expire).

Checked for every configuration: the crash suite's invariants (balanced trial balances, ledger_verify,
gapless invoice numbers per entity and sequence, every event delivered exactly once per handler) and that
its results equal the single-worker run's: invoices per customer and date with their lines, payments,
customers, trial balances, the journal as a multiset, revenue, deferred revenue and period locks, events by
type. Which worker issued which invoice number is free, so invoice numbers are compared through the
(customer, date, amount) they belong to.

    python -m closeloop.bench.scale_check [--customers 1000] [--workers 1,2,4] [--output bench/soak.json]

Timings are recorded beside each configuration; the throughput figures of issue 11 live in ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from closeloop.bench import crash

PARTITION_SIZE = 4
LEASE_SECONDS = 2.0


@dataclass
class Config:
    workers: int
    kill: bool = False

    @property
    def name(self) -> str:
        return f"{self.workers}_workers" + ("_one_killed" if self.kill else "")


# =========================================================================== worker processes


def _worker(url: str, day: str, run_id: int | None, fault: tuple[str, int] | None) -> int:
    """A worker: bill the run's partitions it can claim, then deliver events until none is left."""
    import logging

    from closeloop.app import App
    from closeloop.billing import service as billing
    from closeloop.core import faults
    from closeloop.core.clock import ScenarioClock

    logging.getLogger("closeloop").setLevel(logging.CRITICAL)
    if fault is not None:
        faults.arm(*fault)
    app = App(url, clock=ScenarioClock(date.fromisoformat(day)), actor=f"worker{os.getpid()}", migrate=False,
              dispatch="worker")
    app.dispatcher.configure(lease_seconds=LEASE_SECONDS, base_delay_seconds=0.05, max_delay_seconds=0.5,
                             batch_size=50, events_per_transaction=10)
    try:
        if run_id is not None:
            as_of = date.fromisoformat(day)
            while True:
                with app.unit_of_work() as uow:
                    part = billing.claim_partition(uow, run_id, f"w{os.getpid()}")
                    if part is None:
                        break
                    billing.bill_partition(uow, run_id, part, billing.partition_customers(uow, run_id, part), as_of,
                                           None)
        idle = 0
        while idle < 3:
            report = app.dispatch()
            with app.unit_of_work(write=False) as uow:
                left = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'"))
            if not left:
                break
            idle = 0 if report.handled else idle + 1
            time.sleep(0.05)
    finally:
        app.close()
    return 0


def _fork(fn: Any, *args: Any) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = fn(*args)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _wait(pids: list[int]) -> list[int]:
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    return codes


class Pool:
    """Runs rounds of worker processes until the run's partitions and the outbox are done."""

    def __init__(self, url: str, config: Config, rng: random.Random) -> None:
        self.url, self.config, self.rng = url, config, rng
        self.kills = 0
        self.rounds = 0
        self.failures: list[str] = []

    def _left(self, run_id: int | None) -> tuple[int, int]:
        from closeloop.app import App

        app = App(self.url, migrate=False)
        try:
            with app.unit_of_work(write=False) as uow:
                events = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'"))
                parts = 0 if run_id is None else int(uow.scalar(
                    "SELECT COUNT(*) FROM billing_run_partition WHERE run_id = ? AND status <> 'done'", (run_id,)))
        finally:
            app.close()
        return parts, events

    def _errors(self) -> list[str]:
        from closeloop.app import App

        app = App(self.url, migrate=False)
        try:
            with app.unit_of_work(write=False) as uow:
                return [f"{t} {a}: {str(e)[:200]}" for t, a, e in uow.all(
                    "SELECT type, aggregate_id, last_error FROM event WHERE status <> 'done' ORDER BY id LIMIT 3")]
        finally:
            app.close()

    def work(self, day: str, run_id: int | None = None) -> None:
        first = True
        stuck, last = 0, None
        while True:
            parts, events = self._left(run_id)
            if not parts and not events:
                return
            stuck = stuck + 1 if (parts, events) == last else 0
            last = (parts, events)
            if stuck >= 8:
                raise RuntimeError(f"workers make no progress: {parts} partitions and {events} events left;"
                                   f" {self._errors()}")
            if not first:
                time.sleep(LEASE_SECONDS / 2)  # a dead worker's claims expire
            self.rounds += 1
            pids = []
            for n in range(self.config.workers):
                fault = None
                if first and self.config.kill and n == 0:
                    fault = (self.rng.choice(("uow.commit", "uow.committed", "dispatch.before_handler",
                                              "dispatch.after_handler", "dispatch.before_commit")),
                             self.rng.randint(1, 12))
                pids.append(_fork(_worker, self.url, day, run_id, fault))
            codes = _wait(pids)
            self.kills += sum(1 for c in codes if c == -signal.SIGKILL)
            self.failures += [f"worker exited {c}" for c in codes if c not in (0, -signal.SIGKILL)]
            first = False


# =========================================================================== the workload, shared by workers


class SharedWorkload(crash.Workload):
    """The crash suite's workload, with bill runs and event delivery done by a pool of worker processes."""

    pool: Pool

    def drain(self, timeout: float = 900.0) -> None:
        self.app.engine.dispose()  # no connection crosses a fork
        self.pool.work(self.clock.today().isoformat())

    def _bill_run(self, phase: crash.Phase) -> None:
        from closeloop.billing import service as billing

        with self.app.unit_of_work() as uow:
            run_id, _ = billing.start_run(uow, date.fromisoformat(phase.day), None, PARTITION_SIZE)
        self.app.engine.dispose()
        self.pool.work(phase.day, run_id)
        with self.app.unit_of_work() as uow:
            billing.finish_run(uow, run_id)

    def run(self) -> None:
        self.app.dispatch_mode = "worker"  # the command issuer never delivers events itself
        for phase in crash.plan(self.size):
            self.clock.set(date.fromisoformat(phase.day))
            getattr(self, f"_{phase.name.split('@')[0]}")(phase)
            if phase.kind not in ("bill_run",):
                self.drain()


def run_config(base_url: str, config: Config, seed: int, size: crash.Size, folder: Path) -> dict[str, Any]:
    from closeloop.app import App
    from closeloop.core.clock import ScenarioClock
    from closeloop.scenarios.fresh import fresh_database

    started = time.perf_counter()
    with fresh_database(base_url) as url:
        clock = ScenarioClock(date(2026, 1, 1))
        app = App(url, clock=clock, actor="scale", migrate=False, dispatch="worker")
        pool = Pool(url, config, random.Random(seed * 100 + config.workers))
        try:
            workload = SharedWorkload(app, clock, seed, size, folder)
            workload.pool = pool
            workload.run()
        finally:
            app.close()
        seconds = time.perf_counter() - started
        problems = crash.invariants(url) + pool.failures
        snap = normalised(crash.snapshot(url))
        with_invoices = _count(url)
    return {"config": config.name, "workers": config.workers, "seconds": round(seconds, 1),
            "worker_rounds": pool.rounds, "workers_killed": pool.kills, "problems": problems, "snapshot": snap,
            **with_invoices}


def _count(url: str) -> dict[str, int]:
    from closeloop.app import App

    app = App(url, migrate=False)
    try:
        with app.unit_of_work(write=False) as uow:
            return {"invoices": int(uow.scalar("SELECT COUNT(*) FROM billing_invoice")),
                    "journal_entries": int(uow.scalar("SELECT COUNT(*) FROM journal_entry")),
                    "events": int(uow.scalar("SELECT COUNT(*) FROM event"))}
    finally:
        app.close()


def normalised(snap: dict[str, Any]) -> dict[str, Any]:
    """Invoice numbers replaced by what they number (customer, date, total, and a counter for repeats)."""
    names: dict[str, str] = {}
    seen: dict[str, int] = {}
    for inv in sorted(snap["invoices"], key=lambda i: (str(i.get("customer")), str(i.get("date")), str(i.get("total")),
                                                       json.dumps(i.get("lines"), sort_keys=True, default=str))):
        key = f"{inv.get('kind', 'invoice')}:{inv.get('customer')}:{inv.get('date')}:{inv.get('total')}"
        seen[key] = seen.get(key, 0) + 1
        if inv.get("number"):
            names[str(inv["number"])] = f"<{key}#{seen[key]}>"
    text = json.dumps(snap, sort_keys=True, default=str)
    for number in sorted(names, key=len, reverse=True):
        text = text.replace(number, names[number])
    out = json.loads(text)
    out["invoices"] = sorted(out["invoices"], key=lambda i: json.dumps(i, sort_keys=True))
    out["journal"] = sorted(out["journal"])
    out["events"] = sorted(out["events"], key=lambda e: json.dumps(e))
    out["exceptions"] = sorted(out["exceptions"])
    out["payments"] = sorted(out["payments"], key=lambda p: json.dumps(p, sort_keys=True))
    return out


def scale_check(base_url: str, *, customers: int = 40, workers: tuple[int, ...] = (1, 2, 4), kill: bool = True,
                seed: int = 11, progress: Any = None) -> dict[str, Any]:
    size = crash.Size(customers=customers, bad_rows=2)
    folder = Path(tempfile.mkdtemp(prefix="closeloop-scale-"))
    configs = [Config(w) for w in workers] + ([Config(max(workers), kill=True)] if kill else [])
    results = []
    for config in configs:
        r = run_config(base_url, config, seed, size, folder)
        results.append(r)
        if progress:
            progress(r)
    reference = results[0]["snapshot"]
    for r in results[1:]:
        r["problems"] += crash.compare(reference, r["snapshot"])
    for r in results:
        r.pop("snapshot")
        r["ok"] = not r["problems"]
    return {"customers": customers, "seed": seed, "partition_size": PARTITION_SIZE, "configs": results,
            "ok": all(r["ok"] for r in results)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop.bench.scale_check", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--output", default="bench/soak.json")
    args = parser.parse_args(argv)
    from closeloop import areas
    from closeloop.devtools.pgcluster import ClusterError, TempCluster
    from closeloop.scenarios.fresh import drop_templates

    areas.load()

    def progress(r: dict[str, Any]) -> None:
        print(f"  {r['config']:<22} {'ok  ' if not r['problems'] else 'FAIL'} {r['seconds']}s, {r['invoices']}"
              f" invoices, {r['journal_entries']} journal entries, {r['events']} events, {r['worker_rounds']} worker"
              f" rounds, {r['workers_killed']} killed", flush=True)
        for p in r["problems"]:
            print(f"      {p[:400]}", flush=True)

    print(f"scale correctness on PostgreSQL: {args.customers} customers, workers {args.workers} ...", flush=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        with TempCluster() as cluster:
            try:
                result = scale_check(cluster.url, customers=args.customers,
                                     workers=tuple(int(w) for w in args.workers.split(",")), kill=not args.no_kill,
                                     progress=progress)
            finally:
                drop_templates()
    except ClusterError as exc:
        result = {"skipped": str(exc)}
    crash.merge_results(Path(args.output), {"scale_correctness": {"generated_at": stamp, "machine": machine,
                                                                   "database": "postgresql", **result}})
    print(f"wrote {args.output}: {'all checks passed' if result.get('ok', True) else 'FAILURES'}")
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
