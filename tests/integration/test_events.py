"""The outbox and its in-process delivery: once per handler, in order per aggregate, retries, dead letter."""

from __future__ import annotations

import pytest

from closeloop.core import events as ev
from closeloop.core.events import NotReady


@pytest.fixture
def recorder():
    seen: list[tuple[str, str]] = []
    failures = {"left": 0}
    dead: list[int] = []

    def handler(uow, event):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("downstream unavailable")
        seen.append((event.type, event.payload["journal"]))
        # the handler's own write commits with its delivery record
        uow.execute("INSERT INTO id_block (name, next_value) VALUES (?, 1)", (f"seen-{event.id}",))

    def hook(uow, event, message):
        dead.append(event.id)

    ev._HANDLERS.setdefault("journal.posted", []).append(ev.Handler("test-recorder", "journal.posted", handler))
    ev._DEAD_LETTER_HOOKS.append(hook)
    yield seen, failures, dead
    ev._HANDLERS["journal.posted"] = [h for h in ev._HANDLERS["journal.posted"] if h.name != "test-recorder"]
    if not ev._HANDLERS["journal.posted"]:
        del ev._HANDLERS["journal.posted"]
    ev._DEAD_LETTER_HOOKS.remove(hook)


def post(app, memo):
    return app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "memo": memo, "lines": [
        {"account": "cash", "debit": "1.00"}, {"account": "3000", "credit": "1.00"}]})


def test_delivered_once_even_when_redelivered(app, us01, recorder):
    seen, _, _ = recorder
    post(app, "a")
    post(app, "b")
    assert seen == [("journal.posted", "JE-US01-0000001"), ("journal.posted", "JE-US01-0000002")]
    # force a repeated delivery of a delivered event: the delivery record stops a second effect
    with app.unit_of_work() as uow:
        uow.execute("UPDATE event SET status = 'pending' WHERE type = 'journal.posted'")
    report = app.dispatch()
    assert report.delivered == 2
    assert len(seen) == 2
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM id_block WHERE name LIKE 'seen-%'") == 2
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE status <> 'done'") == 0


def test_failure_is_retried_later_and_holds_back_its_aggregate(app, us01, recorder, clock):
    seen, failures, dead = recorder
    failures["left"] = 1
    post(app, "a")
    assert seen == []
    with app.unit_of_work(write=False) as uow:
        status, attempts, error = uow.one("SELECT status, attempts, last_error FROM event WHERE type='journal.posted'")
    assert (status, attempts) == ("pending", 1) and "downstream unavailable" in error
    from datetime import timedelta
    clock.set(clock.today() + timedelta(days=1))  # past the backoff
    app.dispatch()
    assert seen == [("journal.posted", "JE-US01-0000001")]
    assert dead == []


def test_dead_letter_after_max_attempts(app, us01, recorder, clock):
    seen, failures, dead = recorder
    failures["left"] = 99
    post(app, "a")
    from datetime import timedelta
    for _ in range(6):
        clock.set(clock.today() + timedelta(days=1))
        app.dispatch()
    with app.unit_of_work(write=False) as uow:
        status, attempts = uow.one("SELECT status, attempts FROM event WHERE type='journal.posted'")
    assert status == "dead" and attempts == 5
    assert len(dead) == 1 and seen == []


def test_not_ready_waits_without_counting_a_failure(app, us01):
    calls = []

    def waiting(uow, event):
        calls.append(event.id)
        if len(calls) == 1:
            raise NotReady("invoice not posted yet")

    ev._HANDLERS.setdefault("journal.posted", []).append(ev.Handler("test-wait", "journal.posted", waiting))
    try:
        post(app, "a")
        with app.unit_of_work(write=False) as uow:
            assert uow.one("SELECT status, attempts FROM event WHERE type='journal.posted'") == ("pending", 0)
        app.clock.set(app.clock.today().replace(day=2))
        app.dispatch()
        with app.unit_of_work(write=False) as uow:
            assert uow.one("SELECT status FROM event WHERE type='journal.posted'")[0] == "done"
    finally:
        ev._HANDLERS["journal.posted"] = [h for h in ev._HANDLERS["journal.posted"] if h.name != "test-wait"]
        if not ev._HANDLERS["journal.posted"]:
            del ev._HANDLERS["journal.posted"]
