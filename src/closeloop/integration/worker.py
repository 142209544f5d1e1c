"""``closeloop worker``: a process that delivers outbox events, sends webhooks and takes its share of the
areas' pending work units (bill-run partitions: closeloop.core.work) against the shared database.

Run as many as the database allows, on as many machines: on PostgreSQL they
claim events with ``FOR UPDATE SKIP LOCKED`` and leases, so adding workers adds
throughput and never duplicates an effect; a worker that dies (even SIGKILL)
leaves leases that expire after ``lease_seconds``, and the others take its
events over. On SQLite the writer lock serialises workers (one is enough).

SIGTERM or SIGINT stops the worker gracefully: it finishes the transaction in
flight, gives back the leases it has not used, and exits 0.

    python -m closeloop.integration.worker --db URL [--import MODULE] [--exit-when-idle]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from closeloop.core.events import DeliveryReport, Dispatcher
from closeloop.core.work import run_work_sources
from closeloop.integration.webhooks import SendReport, WebhookSender

log = logging.getLogger("closeloop.worker")


def uow_factory(app: Any) -> Any:
    """The dispatcher's unit-of-work factory over an App."""

    def factory(*, actor: str, source: str, causation_id: int | None, correlation_id: str | None) -> Any:
        return app.unit_of_work(actor=actor, source=source, causation_id=causation_id,
                                correlation_id=correlation_id)

    return factory


@dataclass
class WorkerOptions:
    batch_size: int = 100
    events_per_transaction: int = 1
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    max_attempts: int = 5
    base_delay_seconds: float = 1.0
    webhooks: bool = True
    exit_when_idle: bool = False
    idle_grace_seconds: float = 0.0  # with exit_when_idle: stay this long idle before exiting
    max_seconds: float | None = None


class Worker:
    def __init__(self, app: Any, options: WorkerOptions | None = None) -> None:
        self.app = app
        self.options = options or WorkerOptions()
        o = self.options
        factory = uow_factory(app)
        self.dispatcher = Dispatcher(factory, max_attempts=o.max_attempts, base_delay_seconds=o.base_delay_seconds,
                                     batch_size=o.batch_size, events_per_transaction=o.events_per_transaction,
                                     lease_seconds=o.lease_seconds)
        self.sender = WebhookSender(factory, worker_id=self.dispatcher.worker_id)
        self.report = DeliveryReport()
        self.sent = SendReport()
        self._stop = threading.Event()

    @property
    def worker_id(self) -> str:
        return self.dispatcher.worker_id

    def stop(self, *_: Any) -> None:
        self._stop.set()
        self.dispatcher.stop_requested = True

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> DeliveryReport:
        o = self.options
        started = time.monotonic()
        idle_since: float | None = None
        failures = 0
        log.info("worker %s started", self.worker_id)
        try:
            while not self._stop.is_set():
                if o.max_seconds is not None and time.monotonic() - started > o.max_seconds:
                    break
                try:
                    # shared units first (a bill run's partitions), then a round of the outbox
                    taken = run_work_sources(self.app, self.worker_id)
                    taken += self.dispatcher.run_once(self.report)
                    if o.webhooks and not self._stop.is_set():
                        taken += self.sender.run_once(self.sent)
                    failures = 0
                    del self.report.errors[:-100], self.sent.errors[:-100]
                except Exception as exc:  # noqa: BLE001 - e.g. the database restarting: back off and go on
                    failures += 1
                    log.warning("worker %s: delivery round failed (%s: %s)", self.worker_id, type(exc).__name__, exc)
                    self.report.errors.append(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(min(30.0, o.poll_seconds * 2 ** min(failures, 6)))
                    continue
                if taken:
                    idle_since = None
                    continue
                now = time.monotonic()
                idle_since = idle_since or now
                if o.exit_when_idle and now - idle_since >= o.idle_grace_seconds:
                    break
                self._stop.wait(o.poll_seconds)
        finally:
            self.dispatcher.release_leases()
        log.info("worker %s stopped: %s", self.worker_id, self.report.to_dict())
        return self.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop.integration.worker")
    parser.add_argument("--db", default=None)
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        help="extra module registering handlers (repeatable)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--per-transaction", type=int, default=1)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--exit-when-idle", action="store_true")
    parser.add_argument("--idle-grace", type=float, default=0.0)
    parser.add_argument("--no-webhooks", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for module in args.imports:
        importlib.import_module(module)
    from closeloop.app import App

    app = App(args.db, actor="worker", source="system", dispatch="worker")
    worker = Worker(app, WorkerOptions(batch_size=args.batch, events_per_transaction=args.per_transaction,
                                       lease_seconds=args.lease, poll_seconds=args.poll,
                                       webhooks=not args.no_webhooks, exit_when_idle=args.exit_when_idle,
                                       idle_grace_seconds=args.idle_grace))
    worker.install_signals()
    try:
        report = worker.run()
    finally:
        app.close()
    print(f"worker {worker.worker_id}: {report.to_dict() | {'webhooks': worker.sent.to_dict()}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
