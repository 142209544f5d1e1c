"""Several dispatchers on one database: parallel across aggregates, ordered within one, each effect once;
on PostgreSQL, claims with FOR UPDATE SKIP LOCKED, leases that expire, and the fencing check."""

from __future__ import annotations

import threading

import pytest

from closeloop.core import events as ev
from closeloop.core.events import DeliveryReport, Dispatcher, wall_iso
from closeloop.integration.worker import uow_factory
from tests.conftest import TEST_DATABASE

postgres_only = pytest.mark.skipif(not (TEST_DATABASE or "").startswith("postgres"),
                                   reason="leases and SKIP LOCKED claims are PostgreSQL's (SQLite's writer lock serialises)")


@pytest.fixture
def recorder():
    lock = threading.Lock()
    log: list[tuple[str, int, str]] = []

    def handler(uow, e):
        uow.execute("INSERT INTO id_block (name, next_value) VALUES (?, 1)", (f"fx-{e.id}",))
        with lock:
            log.append((e.aggregate_id, int(e.payload["n"]), uow.actor))

    ev._HANDLERS.setdefault("work.item", []).append(ev.Handler("test.work", "work.item", handler))
    yield log
    ev._HANDLERS.pop("work.item", None)


def emit_items(app, aggregates=8, per=6):
    with app.unit_of_work() as uow:
        for n in range(per):
            for a in range(aggregates):
                uow.emit("work.item", "work", f"W{a}", {"n": n})
    return aggregates * per


def dispatcher(app, name, **kw):
    return Dispatcher(uow_factory(app), worker_id=name, batch_size=kw.pop("batch_size", 5),
                      events_per_transaction=kw.pop("events_per_transaction", 1), **kw)


def drain_in_threads(app, count):
    reports = [DeliveryReport() for _ in range(count)]

    def work(i):
        d = dispatcher(app, f"w{i}")
        for _ in range(200):
            if not d.run_once(reports[i]) and not _open(app):
                break

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return reports


def _open(app):
    with app.unit_of_work(write=False) as uow:
        return int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'"))


def test_concurrent_dispatchers_deliver_each_event_once_in_aggregate_order(app, recorder):
    total = emit_items(app)
    reports = drain_in_threads(app, 3)
    assert sum(r.delivered for r in reports) == total
    assert len(recorder) == total  # no handler ran twice
    for agg in {a for a, _, _ in recorder}:
        assert [n for a, n, _ in recorder if a == agg] == list(range(6))
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM id_block WHERE name LIKE 'fx-%'") == total
        assert uow.scalar("SELECT COUNT(*) FROM event_delivery WHERE handler = 'test.work'") == total
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE claimed_by IS NOT NULL") == 0


@postgres_only
def test_claims_take_only_the_head_of_each_aggregate_and_skip_locked_rows(app, recorder):
    emit_items(app, aggregates=3, per=3)
    with app.unit_of_work() as uow:
        rows = uow.all(ev.CLAIM_POSTGRES, (uow.now(), wall_iso(), 100))
        heads = sorted(r[4] for r in rows)
        assert heads == ["W0", "W1", "W2"]  # one per aggregate, however many are pending
        # while these rows are locked by this claim, another claimer sees nothing eligible
        other = app.engine.raw_connection()
        try:
            cur = other.cursor()
            cur.execute(ev.CLAIM_POSTGRES.replace("?", "%s"), (uow.now(), wall_iso(), 100))
            assert cur.fetchall() == []
            other.rollback()
        finally:
            other.close()


@postgres_only
def test_a_dead_workers_lease_expires_and_another_worker_takes_over(app, recorder):
    emit_items(app, aggregates=2, per=2)
    # a worker claimed both heads and died (SIGKILL: nothing released)
    with app.unit_of_work() as uow:
        uow.execute("UPDATE event SET claimed_by = 'dead-host:1:abc', lease_until = ? WHERE aggregate_id IN"
                    " ('W0', 'W1') AND payload LIKE '%\"n\":0%'", (wall_iso(60),))
    survivor = dispatcher(app, "survivor")
    report = DeliveryReport()
    assert survivor.run_once(report) == 0  # the leases are still valid: nothing to take, nothing out of order
    assert recorder == []
    with app.unit_of_work() as uow:
        uow.execute("UPDATE event SET lease_until = ? WHERE claimed_by = 'dead-host:1:abc'", (wall_iso(-1),))
    while survivor.run_once(report):
        pass
    assert report.delivered == 4
    assert sorted((a, n) for a, n, _ in recorder) == [("W0", 0), ("W0", 1), ("W1", 0), ("W1", 1)]
    assert {actor for _, _, actor in recorder} == {"tester"}  # handlers act as the event's actor


@postgres_only
def test_fencing_a_lease_taken_over_is_not_processed_twice(app, recorder):
    emit_items(app, aggregates=1, per=1)
    slow = dispatcher(app, "slow")
    fast = dispatcher(app, "fast")

    def steal(point):
        if point == "claimed":
            # the slow worker's lease expired while it paused; the fast one claimed and delivered the event
            with app.unit_of_work() as uow:
                uow.execute("UPDATE event SET lease_until = ?", (wall_iso(-1),))
            ev.set_fault_hook(None)
            fast.run_once(DeliveryReport())

    ev.set_fault_hook(steal)
    report = DeliveryReport()
    try:
        slow.run_once(report)
    finally:
        ev.set_fault_hook(None)
    assert report.lost == 1 and report.delivered == 0
    assert len(recorder) == 1


@postgres_only
def test_graceful_stop_gives_back_unused_leases(app, recorder):
    emit_items(app, aggregates=4, per=1)
    d = dispatcher(app, "stopping", batch_size=4)

    def stop_after_first(point):
        if point == "after_commit":
            d.stop_requested = True

    ev.set_fault_hook(stop_after_first)
    try:
        d.run_once(DeliveryReport())
    finally:
        ev.set_fault_hook(None)
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'done' AND type = 'work.item'") == 1
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE claimed_by IS NOT NULL") == 0
