"""Surrogate keys and worker transactions: what lets workers overlap on PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from closeloop.core.events import Event, transaction_chunks
from tests.conftest import TEST_DATABASE

on_postgres = pytest.mark.skipif(not (TEST_DATABASE or "").startswith("postgres"),
                                 reason="SQLite continues each table's own key under its writer lock")


@on_postgres
def test_a_key_block_does_not_wait_for_another_open_transaction(app):
    with app.unit_of_work() as first:
        a = first.next_ids("journal_entry", 5)
        got: list[int] = []

        def other() -> None:
            with app.unit_of_work() as second:
                got.append(second.next_ids("journal_entry", 3))

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        # the second transaction reserved and committed while the first is still open
        assert not t.is_alive() and got == [a + 5]
    with app.unit_of_work() as third:
        assert third.next_ids("journal_entry", 1) == a + 8


@on_postgres
def test_a_rolled_back_block_is_not_handed_out_again(app):
    with pytest.raises(RuntimeError), app.unit_of_work() as uow:
        first = uow.next_ids("billing_invoice", 2)
        raise RuntimeError("refused")
    with app.unit_of_work() as uow:
        assert uow.next_ids("billing_invoice", 1) == first + 2  # unique, not gapless


def test_a_gapless_series_rolls_back_with_its_transaction(app):
    with pytest.raises(RuntimeError), app.unit_of_work() as uow:
        first = uow.next_ids("collections_payment_number", 2, gapless=True)
        raise RuntimeError("refused")
    with app.unit_of_work() as uow:
        assert uow.next_ids("collections_payment_number", 1, gapless=True) == first


@on_postgres
def test_the_allocator_survives_a_lost_connection(app):
    with app.unit_of_work() as uow:
        start = uow.next_ids("revenue_schedule", 1)
    app.services.allocate_ids._conn.close()  # as after a server restart
    with app.unit_of_work() as uow:
        assert uow.next_ids("revenue_schedule", 1) == start + 1


def _event(i: int, entity: str | None) -> Event:
    return Event(id=i, type="invoice.issued", version=1, aggregate_type="invoice", aggregate_id=str(i),
                 entity=entity, payload={}, source="s", actor="a", occurred_at="", recorded_at="",
                 correlation_id=None, causation_id=None)


def test_worker_transactions_hold_one_entity_each_in_id_order():
    events = [_event(i, e) for i, e in enumerate(["US01", "DE01", "US01", None, "UK01", "US01", "DE01"], 1)]
    chunks = transaction_chunks(events, 2, "worker-a")
    assert sorted(ev.id for c in chunks for ev in c) == list(range(1, 8))  # every event once
    for chunk in chunks:
        assert len({ev.entity for ev in chunk}) == 1 and len(chunk) <= 2
        assert [ev.id for ev in chunk] == sorted(ev.id for ev in chunk)
    by_entity = {c[0].entity: [ev.id for x in chunks if x[0].entity == c[0].entity for ev in x] for c in chunks}
    assert by_entity == {"DE01": [2, 7], "UK01": [5], "US01": [1, 3, 6], None: [4]}


def test_workers_start_at_different_entities():
    events = [_event(i, e) for i, e in enumerate(["DE01", "UK01", "US01"] * 2, 1)]
    firsts = {transaction_chunks(events, 10, f"worker-{k}")[0][0].entity for k in range(12)}
    assert firsts == {"DE01", "UK01", "US01"}
