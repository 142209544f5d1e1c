"""Crash safety: SIGKILL a seeded order-to-cash workload at random points, restart it, and check the books.

A **trial** runs a seeded company (two legal entities, a CRM export, contracts,
usage, three monthly bill runs, event delivery, payments posted from provider
events, revenue runs and two period closes) in a child process and kills it
with SIGKILL in the phase the trial targets:

- ``crm_import``: ``customer.import`` of a Salesforce CSV (with rejected rows);
- ``bill_run``: a bill run in partitions (one transaction per partition, resumed after a crash);
- ``event_delivery``: the dispatcher draining the bill run's events (postings, revenue, intercompany);
- ``posting``: payments from Stripe-shaped provider events, posted as they are applied;
- ``revenue_run``: ``revrec.run`` and the posting of what it recognises;
- ``close``: ``close.run`` of each entity's month (gates, lock, events).

The kill is either at a **fault point** (``closeloop.core.faults``: before or
after a commit, after an outbox write, before/after a handler, in the
dispatcher's commit) chosen at random among the points an uninterrupted run
passes in that phase, at a random pass; or **from outside** after a random
delay from the phase's start (up to the phase's duration in the uninterrupted
run). The workload is then restarted (a phase finished before the crash is not
repeated; the interrupted one is simply run again, as an operator would) until
it completes, sometimes after a second kill.

Checks after each trial (every problem is named):

1. the ledger: every entity's trial balance is balanced and ``ledger_verify``
   finds the hash chain intact and the maintained balances equal to the lines;
2. invoice numbers are gapless per entity and sequence (INV, CM), and the
   sequence's next value follows the last number;
3. the outbox: no event pending or dead, every event delivered exactly once to
   each of its handlers, no handler delivery without its event;
4. postings: no event posted more journal entries than in the uninterrupted run
   (one posting per event and handler);
5. identical results: trial balances, the journal (as a multiset of entries),
   invoices with their lines, payments, customers, revenue and deferred revenue by
   period, period locks, business events by type and aggregate, and exceptions by
   kind equal those of an uninterrupted run of the same seeded workload.

Children are forked from the harness (the imports are already done, so a trial
costs its work, not interpreter start-up); ``--exec`` starts them as fresh
interpreters instead.

    python -m closeloop.bench.crash [--sqlite 200] [--postgres 60] [--seeds 3] [--output bench/soak.json]

Results are merged into ``bench/soak.json`` under ``crash_sqlite`` and
``crash_postgresql`` (other keys are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

WORKLOADS = ("crm_import", "bill_run", "event_delivery", "posting", "revenue_run", "close")
ENTITIES = (("US01", "Acme Inc", "US", "USD"), ("DE01", "Acme GmbH", "DE", "EUR"))
BILL_DAYS = ("2026-01-01", "2026-02-01", "2026-03-01")
MONTHS = (("2026-01", "2026-01-31"), ("2026-02", "2026-02-28"))
PARTITION_SIZE = 3
LEASE_SECONDS = 1.5
CRM_SECRET = "crash-suite-crm-webhook-secret"
EXIT_DONE = 0
EXIT_FAILED = 3


# =========================================================================== the seeded workload


@dataclass(frozen=True)
class Size:
    customers: int = 10
    bad_rows: int = 2


@dataclass(frozen=True)
class Phase:
    name: str  # unique: kind@date
    kind: str  # one of WORKLOADS, or setup / contracts / usage
    day: str


def plan(size: Size) -> list[Phase]:
    """The phases of the workload in order, each on its business date."""
    phases = [Phase("setup", "setup", "2026-01-01"), Phase("crm_import", "crm_import", "2026-01-01"),
              Phase("crm_webhook", "crm_import", "2026-01-01"), Phase("contracts", "contracts", "2026-01-01")]

    def bill(day: str) -> None:
        phases.append(Phase(f"bill_run@{day}", "bill_run", day))
        phases.append(Phase(f"event_delivery@{day}", "event_delivery", day))

    bill(BILL_DAYS[0])
    for i, (period, _end) in enumerate(MONTHS):
        phases.append(Phase(f"usage@{period}", "usage", f"{period}-20"))
        phases.append(Phase(f"posting@{period}", "posting", f"{period}-25"))
        nxt = BILL_DAYS[i + 1]
        bill(nxt)
        phases.append(Phase(f"revenue_run@{period}", "revenue_run", nxt[:8] + "03"))
        phases.append(Phase(f"close@{period}", "close", nxt[:8] + "05"))
    return phases


def customers(seed: int, size: Size) -> list[dict[str, Any]]:
    """The CRM's accounts (valid ones first in id order) and the deals each will sign."""
    rng = random.Random(seed)
    out = []
    for k in range(size.customers):
        us = rng.random() < 0.6
        out.append({
            "id": f"001CRASH{k:07d}", "name": f"{rng.choice(_NAMES)} {rng.choice(_NAMES)} {k} {rng.choice(_FORMS)}",
            "street": f"{rng.randint(1, 999)} {rng.choice(('Main St', 'Oak Ave', 'Hauptstrasse', 'Market St'))}",
            "city": "Portland" if us else "Berlin", "state": rng.choice(("OR", "NY", "TX")) if us else "",
            "postal": rng.choice(("97201", "10017", "73301")) if us else "10115",
            "country": "US" if us else "DE", "currency": "USD" if us else "EUR", "entity": "US01" if us else "DE01",
            "seats": rng.randint(1, 20), "usage": rng.random() < 0.6, "setup": rng.random() < 0.35,
            "usage_qty": [rng.randint(100, 3000) for _ in MONTHS],
            "pays": rng.choice(("full", "full", "part", "none")),
        })
    return out


_NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Nimbus", "Quartz", "Zephyr", "Boreal",
          "Cobalt", "Lumen", "Orchid", "Summit", "Tundra", "Willow", "Harbor", "Kestrel")
_FORMS = ("Inc", "LLC", "GmbH", "Ltd", "AG", "Corp")


def write_crm_file(folder: Path, seed: int, size: Size) -> tuple[Path, Path]:
    """A Salesforce Data Loader CSV (Windows-1252) with ``size.bad_rows`` rows that are rejected."""
    path = folder / f"crm_accounts_{seed}.csv"
    mapping = folder / "crm_mapping.yaml"
    mapping.write_text("fields:\n  entity: ENTITY__C\n")
    rng = random.Random(seed * 31 + 7)
    rows = [["ID", "NAME", "BILLINGSTREET", "BILLINGCITY", "BILLINGSTATE", "BILLINGPOSTALCODE", "BILLINGCOUNTRY",
             "CURRENCYISOCODE", "ENTITY__C"]]
    for c in customers(seed, size):
        rows.append([c["id"], c["name"], c["street"], c["city"], c["state"], c["postal"], c["country"], c["currency"],
                     c["entity"]])
    for b in range(size.bad_rows):
        bad = ("country", "currency")[(b + rng.randrange(2)) % 2]
        rows.append([f"001CRASHBAD{b:04d}", f"Broken {b} Ltd", "1 Nowhere", "Atlantis", "",
                     "00000", "Atlantis" if bad == "country" else "US", "USD" if bad == "country" else "ZZQ", "US01"])
    with path.open("w", encoding="cp1252", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return path, mapping


class Workload:
    """Runs the phases not done yet on an App; each phase can be run again after a crash inside it."""

    def __init__(self, app: Any, clock: Any, seed: int, size: Size, folder: Path,
                 announce: Any = None) -> None:
        self.app, self.clock, self.seed, self.size, self.folder = app, clock, seed, size, folder
        self.announce = announce or (lambda phase, event: None)
        self.customers = customers(seed, size)

    # ---------------------------------------------------------------- progress

    def done(self) -> set[str]:
        with self.app.unit_of_work(write=False) as uow:
            return {r[0] for r in uow.all("SELECT phase FROM crash_progress")}

    def mark(self, phase: Phase) -> None:
        with self.app.unit_of_work() as uow:
            uow.execute("INSERT INTO crash_progress (phase, done_at) VALUES (?, ?)", (phase.name, uow.now()))

    def run(self) -> None:
        # Short leases and retry delays: a killed dispatcher's claims on PostgreSQL expire in seconds.
        self.app.dispatcher.configure(lease_seconds=LEASE_SECONDS, base_delay_seconds=0.05, max_delay_seconds=1.0)
        done = self.done()
        # A restarted process first delivers what a killed one left in the outbox (as a worker would).
        self.drain()
        for phase in plan(self.size):
            if phase.name in done:
                continue
            self.clock.set(date.fromisoformat(phase.day))
            self.announce(phase, "start")
            getattr(self, f"_{phase.name.split('@')[0]}")(phase)
            self.mark(phase)
            self.announce(phase, "end")

    # ---------------------------------------------------------------- phases

    def _exists(self, query: str, where: dict[str, Any]) -> bool:
        from closeloop.core.errors import CloseloopError

        try:
            self.app.query(query, where)
            return True
        except CloseloopError as err:
            if str(err.code) == "not_found":
                return False
            raise

    def _setup(self, phase: Phase) -> None:
        app = self.app
        have = {e["code"] for e in app.query("entities", {})["entities"]}
        for code, name, country, currency in ENTITIES:
            if code not in have:
                app.do("entity.create", {"code": code, "name": name, "country": country, "currency": currency})
        catalogue = [
            ({"sku": "seat", "name": "Platform seat", "treatment": "ratable"},
             [{"price_id": f"seat-{ccy.lower()}", "sku": "seat", "currency": ccy, "model": "per_unit",
               "amount": amount, "period": "month", "timing": "advance"}
              for ccy, amount in (("USD", "49.00"), ("EUR", "45.00"))]),
            ({"sku": "api", "name": "API calls", "treatment": "usage"},
             [{"price_id": f"api-{ccy.lower()}", "sku": "api", "currency": ccy, "model": "tiered", "period": "month",
               "timing": "arrears", "metric": "api_calls", "aggregation": "sum",
               "tiers": [{"up_to": 1000, "unit_amount": "0.10"}, {"up_to": None, "unit_amount": "0.05",
                                                                   "flat_amount": "5.00"}]}
              for ccy in ("USD", "EUR")]),
            ({"sku": "onboarding", "name": "Onboarding", "treatment": "point_in_time"},
             [{"price_id": f"onboarding-{ccy.lower()}", "sku": "onboarding", "currency": ccy, "model": "flat",
               "amount": amount, "period": "one_time", "timing": "advance"}
              for ccy, amount in (("USD", "500.00"), ("EUR", "450.00"))]),
        ]
        for product, prices in catalogue:
            if not self._exists("product", {"sku": product["sku"]}):
                app.do("product.create", product)
            for price in prices:
                if not self._exists("price", {"price_id": price["price_id"]}):
                    app.do("price.create", price)

    def _crm_import(self, phase: Phase) -> None:
        """The CRM export (re-importing it after a crash finds every row unchanged)."""
        path, mapping = write_crm_file(self.folder, self.seed, self.size)
        self.app.do("customer.import", {"file": str(path), "format": "salesforce", "mapping": str(mapping),
                                        "accept_valid": True, "source": "crm"})

    def _crm_webhook(self, phase: Phase) -> None:
        """A few signed CRM webhook deliveries (idempotent by event id), after the export.

        A phase of its own: re-importing the export after them would revert their changes (the import has no
        last-modified check: tests/soak/test_crash_findings.py)."""
        from closeloop.customers import webhook

        now = int(datetime.fromisoformat(phase.day + "T12:00:00+00:00").timestamp())
        for k, c in enumerate(self.customers[:3]):
            body = json.dumps({"id": f"crm-evt-{self.seed}-{k}", "type": "account.upserted", "source": "crm",
                               "occurred_at": f"{phase.day}T10:00:00Z",
                               "data": {"external_id": c["id"], "name": c["name"] + " (renamed)",
                                        "website": f"https://c{k}.example.org"}}).encode()
            headers = {"X-Closeloop-Signature": webhook.sign(CRM_SECRET, body, now)}
            for result in webhook.receive(self.app, body, headers, secret=CRM_SECRET, now=now):
                if result.get("status") != "applied":
                    raise RuntimeError(f"CRM webhook event refused: {result}")

    def _contracts(self, phase: Phase) -> None:
        for n, c in enumerate(self.customers):
            quote, contract = f"Q-{n:03d}", f"C-{n:03d}"
            if self._exists("contract", {"contract_id": contract}):
                continue
            ccy = c["currency"].lower()
            lines = [{"line_id": "SEATS", "price_id": f"seat-{ccy}", "quantity": c["seats"]}]
            if c["usage"]:
                lines.append({"line_id": "API", "price_id": f"api-{ccy}", "quantity": 1})
            if c["setup"]:
                lines.append({"line_id": "ONB", "price_id": f"onboarding-{ccy}", "quantity": 1})
            if not self._exists("quote", {"quote_id": quote}):
                self.app.do("quote.create", {"quote_id": quote, "customer": c["id"], "entity": c["entity"],
                                             "currency": c["currency"], "start": "2026-01-01", "term_months": 12,
                                             "lines": lines})
            self.app.do("quote.accept", {"quote_id": quote, "contract_id": contract})

    def _usage(self, phase: Phase) -> None:
        month = phase.name.split("@")[1]
        index = [p for p, _ in MONTHS].index(month)
        events = []
        for n, c in enumerate(self.customers):
            if not c["usage"]:
                continue
            total = c["usage_qty"][index]
            first = total // 3
            for part, (qty, day) in enumerate(((first, "05"), (total - first, "18"))):
                events.append({"customer": c["id"], "metric": "api_calls", "quantity": qty,
                               "at": f"{month}-{day}", "key": f"u-{month}-{n}-{part}"})
        for start in range(0, len(events), 4):  # several commands: a crash can fall between batches
            self.app.do("usage.record", {"events": events[start:start + 4]})

    def _bill_run(self, phase: Phase) -> None:
        """A bill run in partitions, one transaction each (as workers run it); a crashed run is resumed."""
        from closeloop.billing import service as billing
        from closeloop.core.periods import parse_date

        as_of = phase.day
        day = parse_date(as_of, field="as_of")
        app = self.app
        app.dispatch_mode = "worker"  # the bill run's events wait for the event_delivery phase
        try:
            runs = app.query("billing_runs", {})["items"]
            running = [r for r in runs if r["as_of"] == as_of and r["status"] == "running"]
            if running:
                run_id = int(running[0]["run"])
            else:
                with app.unit_of_work() as uow:
                    run_id, _ = billing.start_run(uow, day, None, PARTITION_SIZE)
            while True:
                with app.unit_of_work() as uow:
                    part = billing.claim_partition(uow, run_id, "crash")
                    if part is None:
                        break
                    billing.bill_partition(uow, run_id, part, billing.partition_customers(uow, run_id, part), day,
                                           None)
            with app.unit_of_work() as uow:
                billing.finish_run(uow, run_id)
        finally:
            app.dispatch_mode = "inline"

    def drain(self, timeout: float = 120.0) -> None:
        """Deliver until the outbox is empty, waiting out the leases a killed dispatcher left (PostgreSQL)."""
        deadline = time.monotonic() + timeout
        while True:
            self.app.dispatch()
            if not self._pending():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self._pending()} events still pending after {timeout}s")
            time.sleep(0.1)

    def _event_delivery(self, phase: Phase) -> None:
        self.drain()

    def _pending(self) -> int:
        with self.app.unit_of_work(write=False) as uow:
            return int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'"))

    def _posting(self, phase: Phase) -> None:
        """Payments for the month's invoices as Stripe events (idempotent by event id), posted as applied."""
        month = phase.name.split("@")[1]
        stamp = int(datetime.fromisoformat(phase.day + "T12:00:00+00:00").timestamp())
        for c in self.customers:
            if c["pays"] == "none":
                continue
            invoices = self.app.query("invoices", {"customer": c["id"]})
            for inv in invoices["items"]:
                # The amount comes from the invoice's total, never its balance: after a crash the event is sent
                # again and must be the same event (the provider's id is the idempotency key).
                if inv["date"][:7] != month:
                    continue
                total = to_minor_text(inv["total"])
                amount = total if c["pays"] == "full" else total // 2
                if amount <= 0:
                    continue
                pi = f"pi_{self.seed}_{inv['number']}"
                event = {"id": f"evt_{self.seed}_{inv['number']}", "type": "payment_intent.succeeded",
                         "created": stamp,
                         "data": {"object": {"id": pi, "object": "payment_intent", "amount": amount,
                                             "amount_received": amount, "currency": c["currency"].lower(),
                                             "created": stamp, "latest_charge": f"ch_{self.seed}_{inv['number']}",
                                             "metadata": {"closeloop_customer": c["id"],
                                                          "closeloop_invoice": inv["number"]}}}}
                self.app.do("provider.event", {"event": event, "entity": c["entity"]})

    def _revenue_run(self, phase: Phase) -> None:
        month = phase.name.split("@")[1]
        through = dict(MONTHS)[month]
        self.app.do("revrec.run", {"through": through})

    def _close(self, phase: Phase) -> None:
        month = phase.name.split("@")[1]
        self.drain()  # the events_delivered gate: a controller closes once the outbox is empty
        for code, *_ in ENTITIES:
            self.app.do("close.run", {"entity": code, "period": month})


def to_minor_text(text: str) -> int:
    from decimal import Decimal

    return int((Decimal(str(text)) * 100).to_integral_value())


def prepare(url: str) -> None:
    """The harness's own progress table (which phases are complete)."""
    from closeloop.app import App

    app = App(url, migrate=False)
    try:
        with app.unit_of_work() as uow:
            uow.execute("CREATE TABLE IF NOT EXISTS crash_progress (phase VARCHAR(64) PRIMARY KEY,"
                        " done_at VARCHAR(40) NOT NULL)")
    finally:
        app.close()


# =========================================================================== the child process


def child_main(url: str, seed: int, size: Size, folder: Path, *, target: str | None, kill: dict[str, Any] | None,
               counts_path: str | None, out: Any) -> int:
    """Run the workload to the end (or until killed). Writes ``PHASE name start|end t`` lines to ``out``."""
    import logging

    from closeloop.app import App
    from closeloop.core import faults
    from closeloop.core.clock import ScenarioClock

    logging.getLogger("closeloop").setLevel(logging.CRITICAL)
    counts: dict[str, Counter[str]] = {}
    state: dict[str, Any] = {"phase": None}

    def count(point: str) -> None:
        phase = state["phase"]
        if phase is not None:
            counts.setdefault(phase, Counter())[point] += 1

    def announce(phase: Phase, event: str) -> None:
        out.write(f"PHASE {phase.name} {phase.kind} {event} {time.monotonic():.6f}\n")
        out.flush()
        if event == "start":
            state["phase"] = phase.name
            if kill and kill["mode"] == "point" and phase.kind == target and phase.name == kill["phase"]:
                faults.arm(kill["point"], int(kill["n"]))
        else:
            state["phase"] = None
            if kill and kill["mode"] == "point" and phase.kind == target:
                faults.install(count if counts_path else None)

    if counts_path:
        faults.install(count)
    clock = ScenarioClock(date(2026, 1, 1))
    app = App(url, clock=clock, actor="crash", source="closeloop", migrate=False)
    try:
        Workload(app, clock, seed, size, folder, announce).run()
    finally:
        app.close()
    if counts_path:
        Path(counts_path).write_text(json.dumps({k: dict(v) for k, v in counts.items()}))
    return EXIT_DONE


@dataclass
class ChildResult:
    returncode: int
    phases: list[tuple[str, str, str, float]] = field(default_factory=list)
    error: str = ""

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def last_phase(self) -> str | None:
        return self.phases[-1][0] if self.phases else None


def _spawn(url: str, seed: int, size: Size, folder: Path, *, target: str | None, kill: dict[str, Any] | None,
           counts_path: str | None, use_exec: bool) -> tuple[int, int, int]:
    """Start a child; returns (pid, stdout fd, stderr fd)."""
    if use_exec:
        args = [sys.executable, "-m", "closeloop.bench.crash", "--child", url, "--seed", str(seed), "--customers",
                str(size.customers), "--folder", str(folder)]
        if target:
            args += ["--target", target]
        if kill:
            args += ["--kill", json.dumps(kill)]
        if counts_path:
            args += ["--counts", counts_path]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        _procs[proc.pid] = proc
        return proc.pid, os.dup(proc.stdout.fileno()), os.dup(proc.stderr.fileno())
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = EXIT_FAILED
        try:
            os.close(out_r)
            os.close(err_r)
            os.setpgid(0, 0)
            with os.fdopen(out_w, "w") as out:
                try:
                    code = child_main(url, seed, size, folder, target=target, kill=kill, counts_path=counts_path,
                                      out=out)
                except BaseException:  # noqa: BLE001 - report and exit non-zero
                    os.write(err_w, traceback.format_exc().encode()[-8000:])
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


_procs: dict[int, Any] = {}


def run_child(url: str, seed: int, size: Size, folder: Path, *, target: str | None = None,
              kill: dict[str, Any] | None = None, counts_path: str | None = None, use_exec: bool = False,
              timeout: float = 600.0) -> ChildResult:
    """Run a child to its end; with ``kill['mode'] == 'delay'`` SIGKILL it ``kill['delay']`` seconds after the
    target phase starts."""
    pid, out_fd, err_fd = _spawn(url, seed, size, folder, target=target, kill=kill, counts_path=counts_path,
                                 use_exec=use_exec)
    result = ChildResult(returncode=0)
    buf, err = b"", b""
    deadline = time.monotonic() + timeout
    kill_at: float | None = None
    open_fds = {out_fd, err_fd}
    while open_fds:
        wait = 0.5 if kill_at is None else min(0.5, max(0.0, kill_at - time.monotonic()))
        ready, _, _ = select.select(list(open_fds), [], [], wait)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                os.close(fd)
                continue
            if fd == err_fd:
                err += chunk
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                parts = line.decode().split()
                if len(parts) == 5 and parts[0] == "PHASE":
                    result.phases.append((parts[1], parts[2], parts[3], float(parts[4])))
                    if (kill and kill["mode"] == "delay" and kill_at is None and parts[3] == "start"
                            and parts[1] == kill["phase"]):
                        kill_at = time.monotonic() + float(kill["delay"])
        now = time.monotonic()
        if kill_at is not None and now >= kill_at:
            _kill(pid)
            kill_at = float("inf")  # killed: keep reading until the pipes close
        if now > deadline:
            _kill(pid)
            result.error = f"child timed out after {timeout}s"
            break
    result.returncode = _reap(pid)
    if err:
        result.error = (result.error + "\n" + err.decode(errors="replace")).strip()
    return result


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> int:
    proc = _procs.pop(pid, None)
    if proc is not None:
        return int(proc.wait())
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# =========================================================================== checks


# Known differences that are not about money: a revenue run repeated after a crash records an empty run and
# takes the next run number, so later runs are numbered one higher (tests/soak/test_crash_findings.py). The
# comparison reads run numbers as RR-# unless ``strict``.
KNOWN_DIFFERENCES = ((re.compile(r"RR-\d{6}"), "RR-#"),)
# Events that record an operator's action rather than a change: re-running an import after a crash records
# the second import too (docs/customers.md: a re-import writes its own history record). Compared by presence.
ACTION_EVENTS = ("customer.imported",)


def _known(text: str, strict: bool) -> str:
    if not strict:
        for pattern, repl in KNOWN_DIFFERENCES:
            text = pattern.sub(repl, text)
    return text


def snapshot(url: str, *, strict: bool = False) -> dict[str, Any]:
    """Everything an uninterrupted run and a crashed-and-completed run must agree on (no ids, no timestamps)."""
    from closeloop.app import App

    app = App(url, migrate=False)
    snap: dict[str, Any] = {}
    try:
        snap["trial_balance"] = {code: app.query("trial_balance", {"entity": code})["accounts"] for code, *_ in ENTITIES}
        with app.unit_of_work(write=False) as uow:
            accounts = {int(i): (e, c) for i, e, c in uow.all("SELECT id, entity, code FROM ledger_account")}
            lines: dict[int, list[tuple[Any, ...]]] = {}
            for entry_id, account_id, amount, cur, txn in uow.all(
                    "SELECT entry_id, account_id, amount, currency, txn_amount FROM journal_line"
                    " ORDER BY entry_id, line_no"):
                lines.setdefault(int(entry_id), []).append((accounts[int(account_id)][1], int(amount), cur, int(txn)))
            # Surrogate keys (a customer's id) come from sequences, which PostgreSQL does not roll back:
            # a crashed run may number them differently, so an all-digit aggregate id is compared as '#'.
            events = {int(r[0]): (r[1], r[2], "#" if str(r[3]).isdigit() else r[3]) for r in uow.all(
                "SELECT id, type, aggregate_type, aggregate_id FROM event")}
            journal = []
            for entry_id, entity, day, memo, reference, event_id in uow.all(
                    "SELECT id, entity, date, memo, reference, event_id FROM journal_entry"):
                origin = None if event_id is None else list(events.get(int(event_id), ("?", "?", str(event_id))))
                journal.append(_known(json.dumps([entity, day, memo, reference, origin, lines.get(int(entry_id), [])]),
                                      strict))
            snap["journal"] = sorted(journal)
            counted = Counter(_known(json.dumps(list(v)), strict) for v in events.values())
            snap["events"] = sorted((k, 1 if json.loads(k)[0] in ACTION_EVENTS else n) for k, n in counted.items())
            snap["exceptions"] = sorted(
                json.dumps([k, s, rt, rid]) for k, s, rt, rid in uow.all(
                    "SELECT kind, status, record_type, record_id FROM exception_item"))
        invoices = []
        listed = app.query("invoices", {"limit": 10000})["items"] + app.query(
            "invoices", {"limit": 10000, "kind": "credit_memo"})["items"]
        for inv in listed:
            full = app.query("invoice", {"invoice": inv["number"]})
            invoices.append(_strip(full))
        snap["invoices"] = sorted(invoices, key=lambda i: str(i.get("number")))
        payments = app.query("payments", {"limit": 10000})
        snap["payments"] = sorted((_strip(p) for p in payments["payments"]),
                                  key=lambda p: json.dumps(p, sort_keys=True))
        custs = app.query("customers", {"limit": 10000})
        snap["customers"] = sorted((_strip(app.query("customer", {"external_id": c["external_id"]}))
                                    for c in custs["items"]), key=lambda c: str(c.get("external_id")))
        snap["revenue"] = {}
        for code, *_ in ENTITIES:
            for period, end in MONTHS:
                snap["revenue"][f"{code} {period}"] = {
                    "revenue": _strip(app.query("revenue", {"entity": code, "period": period})),
                    "deferred": _strip(app.query("deferred_revenue", {"entity": code, "as_of": end})),
                    "locked": app.query("close_status", {"entity": code, "period": period})["locked"]}
    finally:
        app.close()
    return snap


_VOLATILE = {"id", "run", "run_id", "at", "created_at", "updated_at", "received_at", "recorded_at", "issued_at",
             "posted_at", "import_id", "payment_id", "entry_id", "event_id", "application_id", "changed_at",
             "customer_id"}


def _strip(value: Any) -> Any:
    """Drop surrogate ids and wall-clock timestamps, keep business content."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE and not k.endswith("_at")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def invariants(url: str) -> list[str]:
    """The checks that hold whatever happened: ledger, numbering, outbox, postings."""
    from closeloop.app import App
    from closeloop.core.events import handlers_for

    app = App(url, migrate=False)
    problems: list[str] = []
    try:
        for code, *_ in ENTITIES:
            tb = app.query("trial_balance", {"entity": code})
            if not tb["balanced"]:
                problems.append(f"{code}: trial balance not balanced ({tb['debits']} vs {tb['credits']})")
        verify = app.query("ledger_verify", {})
        if not verify["ok"]:
            problems.append(f"ledger_verify: {verify['problems'][:5]}")
        with app.unit_of_work(write=False) as uow:
            numbers: dict[tuple[str, str], list[int]] = {}
            for (number,) in uow.all("SELECT number FROM billing_invoice WHERE number IS NOT NULL"):
                m = re.fullmatch(r"(INV|CM)-(\w+)-(\d+)", number)
                if m is None:
                    problems.append(f"invoice number {number!r} is not <INV|CM>-<entity>-<n>")
                    continue
                numbers.setdefault((m.group(2), m.group(1)), []).append(int(m.group(3)))
            nexts = {(e, "INV" if k == "invoice" else "CM"): int(v) for e, k, v in uow.all(
                "SELECT entity, kind, next_value FROM billing_sequence")}
            for key, got in sorted(numbers.items()):
                got.sort()
                if got != list(range(1, len(got) + 1)):
                    missing = sorted(set(range(1, max(got) + 1)) - set(got))
                    dup = sorted(n for n, c in Counter(got).items() if c > 1)
                    problems.append(f"invoice numbers of {key[0]} {key[1]} not gapless: missing {missing[:10]},"
                                    f" duplicated {dup[:10]}")
                if nexts.get(key) != len(got) + 1:
                    problems.append(f"sequence {key[0]} {key[1]} next value {nexts.get(key)}, {len(got)} issued")
            open_events = uow.all("SELECT id, type, status, last_error FROM event WHERE status <> 'done'")
            if open_events:
                problems.append(f"{len(open_events)} events not delivered: {[tuple(r) for r in open_events[:5]]}")
            deliveries: dict[int, list[str]] = {}
            for event_id, handler in uow.all("SELECT event_id, handler FROM event_delivery"):
                deliveries.setdefault(int(event_id), []).append(handler)
            types = {int(i): t for i, t in uow.all("SELECT id, type FROM event")}
            wrong = []
            for event_id, typ in types.items():
                want = sorted(h.name for h in handlers_for(typ))
                got_h = sorted(deliveries.get(event_id, []))
                if got_h != want:
                    wrong.append((event_id, typ, got_h, want))
            orphans = sorted(set(deliveries) - set(types))
            if wrong:
                problems.append(f"{len(wrong)} events not delivered exactly once per handler: {wrong[:5]}")
            if orphans:
                problems.append(f"deliveries without their event: {orphans[:5]}")
    finally:
        app.close()
    return problems


def compare(baseline: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for key in baseline:
        if baseline[key] != got.get(key):
            problems.append(f"{key} differs from the uninterrupted run: {_first_difference(baseline[key], got.get(key))}")
    return problems


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            extra = [x for x in b if x not in a][:2]
            lost = [x for x in a if x not in b][:2]
            return f"{path}: {len(a)} items expected, {len(b)} found; extra {extra}, missing {lost}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: expected {str(a)[:300]}, found {str(b)[:300]}"


# =========================================================================== trials


@dataclass
class Baseline:
    seed: int
    snapshot: dict[str, Any]
    counts: dict[str, dict[str, int]]
    durations: dict[str, float]
    seconds: float


def baseline(base_url: str | None, seed: int, size: Size, folder: Path, *, use_exec: bool = False,
             strict: bool = False) -> Baseline:
    from closeloop.scenarios.fresh import fresh_database

    started = time.perf_counter()
    with fresh_database(base_url) as url:
        prepare(url)
        counts_path = str(folder / f"counts_{seed}.json")
        result = run_child(url, seed, size, folder, counts_path=counts_path, use_exec=use_exec)
        if result.returncode != 0:
            raise RuntimeError(f"the uninterrupted run failed ({result.returncode}): {result.error[-3000:]}")
        problems = invariants(url)
        if problems:
            raise RuntimeError(f"the uninterrupted run breaks the invariants: {problems}")
        snap = snapshot(url, strict=strict)
    starts = {p[0]: p[3] for p in result.phases if p[2] == "start"}
    durations = {p[0]: p[3] - starts[p[0]] for p in result.phases if p[2] == "end"}
    counts = json.loads(Path(counts_path).read_text())
    return Baseline(seed, snap, counts, durations, time.perf_counter() - started)


def choose_kill(rng: random.Random, target: str, base: Baseline, size: Size) -> dict[str, Any]:
    phases = [p.name for p in plan(size) if p.kind == target]
    phase = rng.choice(phases)
    points = {k: v for k, v in base.counts.get(phase, {}).items() if v > 0}
    last = phase == plan(size)[-1].name  # a delay could outlast the whole run: kill at a point instead
    if points and (rng.random() < 0.6 or last):
        point = rng.choice(sorted(points))
        return {"mode": "point", "phase": phase, "point": point, "n": rng.randint(1, points[point])}
    return {"mode": "delay", "phase": phase, "delay": round(rng.uniform(0.0, max(0.05, base.durations.get(phase, 0.5))
                                                                         * 0.9), 4)}


def trial(base_url: str | None, base: Baseline, target: str, trial_seed: int, size: Size, folder: Path, *,
          use_exec: bool = False, max_kills: int = 3, strict: bool = False) -> dict[str, Any]:
    from closeloop.scenarios.fresh import fresh_database

    rng = random.Random(trial_seed)
    started = time.perf_counter()
    kills: list[dict[str, Any]] = []
    problems: list[str] = []
    with fresh_database(base_url) as url:
        prepare(url)
        completed = False
        for attempt in range(max_kills):
            if attempt > 0 and rng.random() < 0.5:
                break
            kill = choose_kill(rng, target, base, size)
            result = run_child(url, base.seed, size, folder, target=target, kill=kill, use_exec=use_exec)
            if result.killed:
                kills.append({**kill, "in": result.last_phase()})
            elif result.returncode == 0:
                completed = True
                break
            else:
                problems.append(f"the workload failed after a restart ({result.returncode}): {result.error[-2000:]}")
                break
        if not problems and not completed:
            result = run_child(url, base.seed, size, folder, use_exec=use_exec)
            if result.returncode != 0:
                problems.append(f"the workload failed after a restart ({result.returncode}): {result.error[-2000:]}")
        if not problems:
            problems += invariants(url)
            problems += compare(base.snapshot, snapshot(url, strict=strict))
    return {"workload": target, "seed": base.seed, "trial_seed": trial_seed, "kills": kills, "ok": not problems,
            "problems": problems, "seconds": round(time.perf_counter() - started, 2)}


def suite(base_url: str | None, trials: int, *, seeds: int = 2, size: Size | None = None, first_seed: int = 1,
          workloads: tuple[str, ...] = WORKLOADS, use_exec: bool = False, progress: Any = None,
          strict: bool = False) -> dict[str, Any]:
    """``trials`` trials spread evenly over the workloads, on ``seeds`` seeded companies."""
    size = size or Size()
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="closeloop-crash-"))
    bases = [baseline(base_url, first_seed + s, size, folder, use_exec=use_exec, strict=strict) for s in range(seeds)]
    results = []
    for t in range(trials):
        target = workloads[t % len(workloads)]
        base = bases[(t // len(workloads)) % len(bases)]
        r = trial(base_url, base, target, first_seed * 1000 + t, size, folder, use_exec=use_exec, strict=strict)
        results.append(r)
        if progress:
            progress(r)
    by_workload: dict[str, dict[str, int]] = {}
    for r in results:
        w = by_workload.setdefault(r["workload"], {"trials": 0, "kills": 0, "failed": 0})
        w["trials"] += 1
        w["kills"] += len(r["kills"])
        w["failed"] += int(not r["ok"])
    modes = Counter(k["mode"] for r in results for k in r["kills"])
    points = Counter(k["point"] for r in results for k in r["kills"] if k["mode"] == "point")
    return {"trials": trials, "seeds": seeds, "customers": size.customers, "workloads": by_workload,
            "kills": sum(len(r["kills"]) for r in results), "kill_modes": dict(modes), "kill_points": dict(points),
            "trials_without_kill": sum(1 for r in results if not r["kills"]),
            "baseline_seconds": [round(b.seconds, 1) for b in bases],
            "failed": [r for r in results if not r["ok"]], "ok": all(r["ok"] for r in results),
            "children": "exec" if use_exec else "fork", "strict": strict,
            "known_differences": [] if strict else [p.pattern for p, _ in KNOWN_DIFFERENCES],
            "seconds": round(time.perf_counter() - started, 1)}


# =========================================================================== make soak


def merge_results(path: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into the JSON file at ``path``, keeping every other key (other soaks write there too)."""
    try:
        current = json.loads(path.read_text())
        if not isinstance(current, dict):
            current = {}
    except (FileNotFoundError, ValueError):
        current = {}
    current.update(update)
    checks = [v.get("ok") for v in current.values() if isinstance(v, dict) and "ok" in v]
    current["ok"] = all(checks) if checks else current.get("ok", True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop.bench.crash", description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", type=int, default=200, help="trials on SQLite")
    parser.add_argument("--postgres", type=int, default=60, help="trials on PostgreSQL (a throwaway cluster)")
    parser.add_argument("--seeds", type=int, default=3, help="seeded companies (each has its uninterrupted run)")
    parser.add_argument("--customers", type=int, default=16)
    parser.add_argument("--workload", action="append", choices=WORKLOADS, help="only these workloads")
    parser.add_argument("--exec", dest="use_exec", action="store_true", help="children as fresh interpreters")
    parser.add_argument("--strict", action="store_true", help="compare run numbers too (see KNOWN_DIFFERENCES)")
    parser.add_argument("--output", default="bench/soak.json")
    # the child side of --exec
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--kill", help=argparse.SUPPRESS)
    parser.add_argument("--counts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = Size(customers=args.customers)
    if args.child:
        return child_main(args.child, args.seed, size, Path(args.folder), target=args.target,
                          kill=json.loads(args.kill) if args.kill else None, counts_path=args.counts, out=sys.stdout)

    from closeloop import areas
    from closeloop.devtools.pgcluster import ClusterError, TempCluster
    from closeloop.scenarios.fresh import drop_templates

    areas.load()
    workloads = tuple(args.workload or WORKLOADS)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}

    def progress(r: dict[str, Any]) -> None:
        kills = ", ".join(f"{k['mode']}:{k.get('point', k.get('delay'))}@{k['phase']}" for k in r["kills"]) or "none"
        print(f"  {r['workload']:<15} seed {r['seed']} {'ok  ' if r['ok'] else 'FAIL'} kills: {kills}"
              f" ({r['seconds']}s)", flush=True)
        for p in r["problems"]:
            print(f"      {p[:400]}", flush=True)

    update: dict[str, Any] = {}
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if args.sqlite:
        print(f"crash suite on SQLite: {args.sqlite} trials ...", flush=True)
        update["crash_sqlite"] = {"generated_at": stamp, "machine": machine, "database": "sqlite",
                                  **suite(None, args.sqlite, seeds=args.seeds, size=size, workloads=workloads,
                                          use_exec=args.use_exec, progress=progress, strict=args.strict)}
        merge_results(Path(args.output), update)
    if args.postgres:
        print(f"crash suite on PostgreSQL: {args.postgres} trials ...", flush=True)
        try:
            with TempCluster() as cluster:
                try:
                    update["crash_postgresql"] = {
                        "generated_at": stamp, "machine": machine, "database": "postgresql",
                        **suite(cluster.url, args.postgres, seeds=args.seeds, size=size, workloads=workloads,
                                use_exec=args.use_exec, progress=progress, strict=args.strict)}
                finally:
                    drop_templates()
        except ClusterError as exc:
            update["crash_postgresql"] = {"skipped": str(exc)}
        merge_results(Path(args.output), update)
    drop_templates()
    ok = all(v.get("ok", True) for v in update.values())
    for key, value in update.items():
        print(f"{key}: {json.dumps({k: v for k, v in value.items() if k not in ('failed', 'machine')})}")
    print(f"wrote {args.output}: {'all checks passed' if ok else 'FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
