"""A bill run shared by `closeloop worker` processes: the command starts it, workers bill its partitions
(one transaction each), the run completes once all are done, and the result is the inline run's."""

from __future__ import annotations

import threading

import pytest

from closeloop.billing import service as billing
from closeloop.core.errors import CloseloopError
from closeloop.integration.worker import Worker, WorkerOptions
from tests.conftest import TEST_DATABASE
from tests.integration.test_billing_service import setup_company

CUSTOMERS = tuple(f"SF-{i}" for i in range(1, 8))


@pytest.fixture
def small_partitions():
    old = billing.PARTITION_SIZE, billing.WORKER_PARTITION_SIZE
    billing.PARTITION_SIZE = billing.WORKER_PARTITION_SIZE = 2
    yield
    billing.PARTITION_SIZE, billing.WORKER_PARTITION_SIZE = old


def invoices(app):
    with app.unit_of_work(write=False) as uow:
        return uow.all("SELECT c.external_id, i.date, i.total, i.status FROM billing_invoice i JOIN customer c"
                       " ON c.id = i.customer_id ORDER BY c.external_id, i.date")


def drain(app, count):
    def work():
        Worker(app, WorkerOptions(batch_size=20, poll_seconds=0.01, exit_when_idle=True, idle_grace_seconds=0.2,
                                  webhooks=False, max_seconds=120)).run()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_bill_the_partitions_and_complete_the_run(app, clock, small_partitions, workers):
    if workers > 1 and not (TEST_DATABASE or "").startswith("postgres"):
        workers = 1  # SQLite's writer lock serialises workers: one is the configuration there
    setup_company(app, clock, customers=CUSTOMERS)
    started = app.do("billing.run", {"as_of": "2026-01-01", "workers": True})
    assert started["status"] == "running" and started["partitions"] == 4 and started["invoices"] == 0
    assert invoices(app) == []
    # the next run waits for this one
    with pytest.raises(CloseloopError) as err:
        app.do("billing.run", {"as_of": "2026-01-02"})
    assert err.value.code == "conflict" and err.value.details["run"] == started["run"]
    drain(app, workers)
    (run,) = [r for r in app.query("billing_runs", {})["items"] if r["run"] == started["run"]]
    assert run["status"] == "completed" and run["invoices"] == 7 and run["held"] == 0
    got = invoices(app)
    assert [(c, d, t) for c, d, t, _ in got] == [(c, "2026-01-01", 10400) for c in CUSTOMERS]
    numbers = sorted(r[0] for r in _numbers(app))
    assert numbers == [f"INV-US01-{k:06d}" for k in range(1, 8)]
    # every invoice's events were delivered by the workers: posted to the ledger
    assert app.query("balance", {"role": "accounts_receivable", "entity": "US01"})["amount"] == "728.00"


def _numbers(app):
    with app.unit_of_work(write=False) as uow:
        return uow.all("SELECT number FROM billing_invoice WHERE number IS NOT NULL")


def test_a_run_without_due_customers_completes_at_once(app, clock):
    setup_company(app, clock, customers=("SF-1",))
    app.do("billing.run", {"as_of": "2026-01-01"})
    again = app.do("billing.run", {"as_of": "2026-01-01", "workers": True})
    assert again["status"] == "completed" and again["invoices"] == 0
