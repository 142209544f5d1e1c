"""The delivery contract on both databases: order per aggregate, isolation across aggregates, effect exactly
once, retries, NotReady, schemas, dead letter as a sync_failed exception, retry/replay/skip with an audit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeloop.core import events as ev
from closeloop.core.errors import CloseloopError
from closeloop.core.events import NotReady


@pytest.fixture
def registry():
    """Register test handlers for the duration of a test (and remove them afterwards)."""
    added: list[tuple[str, str]] = []
    schemas: list[tuple[str, int]] = []

    def add(event_type, name, fn):
        ev._HANDLERS.setdefault(event_type, []).append(ev.Handler(name, event_type, fn))
        added.append((event_type, name))

    def schema(event_type, model):
        ev.register_schema(event_type, model)
        schemas.append((event_type, 1))

    add.schema = schema
    yield add
    for event_type, name in added:
        ev._HANDLERS[event_type] = [h for h in ev._HANDLERS.get(event_type, []) if h.name != name]
        if not ev._HANDLERS[event_type]:
            del ev._HANDLERS[event_type]
    for key in schemas:
        ev._SCHEMAS.pop(key, None)


def emit(app, event_type, aggregate, payload, n=1):
    ids = []
    with app.unit_of_work(actor="tester") as uow:
        for _ in range(n):
            ids.append(uow.emit(event_type, "thing", aggregate, payload))
    return ids


def status(app, event_id):
    with app.unit_of_work(write=False) as uow:
        return tuple(uow.one("SELECT status, attempts FROM event WHERE id = ?", (event_id,)))


def effects(app, prefix="fx-"):
    with app.unit_of_work(write=False) as uow:
        return [r[0] for r in uow.all("SELECT name FROM id_block WHERE name LIKE ? ORDER BY next_value, name",
                                      (prefix + "%",))]


def write_effect(uow, name):
    """A handler's own write: a row whose presence proves the effect happened (once: the name is a key)."""
    n = uow.scalar("SELECT COUNT(*) FROM id_block WHERE name LIKE 'fx-%'")
    uow.execute("INSERT INTO id_block (name, next_value) VALUES (?, ?)", (name, int(n) + 1))


def later(clock, days=1):
    clock.set(clock.today() + timedelta(days=days))


def test_order_per_aggregate_and_isolation_across_aggregates(app, clock, registry):
    failing = {"B-2"}

    def handler(uow, e):
        key = f"{e.aggregate_id}-{e.payload['n']}"
        if key in failing:
            raise RuntimeError(f"{key} cannot be handled yet")
        write_effect(uow, f"fx-{key}")

    registry("thing.happened", "test.order", handler)
    with app.unit_of_work(actor="tester") as uow:
        for n in (1, 2, 3):
            for agg in ("A", "B", "C"):
                uow.emit("thing.happened", "thing", agg, {"n": n})
    app.dispatch()
    # B-2 failed: B-3 waits behind it; A and C went through in order
    assert effects(app) == ["fx-A-1", "fx-B-1", "fx-C-1", "fx-A-2", "fx-C-2", "fx-A-3", "fx-C-3"]
    failing.clear()
    later(clock)
    app.dispatch()
    assert effects(app)[-2:] == ["fx-B-2", "fx-B-3"]


def test_failing_handler_keeps_the_others_effects_and_is_retried_alone(app, clock, registry):
    calls = {"first": 0, "second": 0}

    def first(uow, e):
        calls["first"] += 1
        write_effect(uow, f"fx-first-{e.id}")

    def second(uow, e):
        calls["second"] += 1
        write_effect(uow, f"fx-second-{e.id}")  # undone with the savepoint when it raises
        if calls["second"] == 1:
            raise RuntimeError("downstream 503")

    registry("thing.happened", "test.first", first)
    registry("thing.happened", "test.second", second)
    [event_id] = emit(app, "thing.happened", "A", {"n": 1})
    app.dispatch()
    assert status(app, event_id) == ("pending", 1)
    assert effects(app) == [f"fx-first-{event_id}"]
    later(clock)
    app.dispatch()
    assert status(app, event_id) == ("done", 1)
    assert calls == {"first": 1, "second": 2}
    assert effects(app) == [f"fx-first-{event_id}", f"fx-second-{event_id}"]


def test_crash_mid_batch_redelivers_without_doubling_effects(app, registry):
    seen = []

    def handler(uow, e):
        seen.append(e.id)
        write_effect(uow, f"fx-{e.id}")

    registry("thing.happened", "test.crash", handler)
    ids = emit(app, "thing.happened", "A", {"n": 1}) + emit(app, "thing.happened", "B", {"n": 1})
    app.dispatcher.configure(batch_size=500)
    crashes = {"left": 1}

    def crash(point):
        if point == "before_commit" and crashes["left"]:
            crashes["left"] -= 1
            raise KeyboardInterrupt("process killed")  # not an Exception: nothing catches it

    ev.set_fault_hook(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            app.dispatcher.run_once(ev.DeliveryReport())
    finally:
        ev.set_fault_hook(None)
    # PostgreSQL: the claim committed with a lease; a crashed worker's lease must expire first
    with app.unit_of_work() as uow:
        uow.execute("UPDATE event SET lease_until = NULL, claimed_by = NULL")
    assert effects(app) == []  # the batch was rolled back: handlers' writes and delivery records together
    app.dispatch()
    assert sorted(set(seen)) == ids and len(seen) == 4  # each handler ran twice, its effect exists once
    assert effects(app) == [f"fx-{i}" for i in ids]
    assert [status(app, i)[0] for i in ids] == ["done", "done"]


def test_not_ready_waits_and_is_woken_when_its_prerequisite_is_delivered(app, registry):
    posted: set[str] = set()

    def post_invoice(uow, e):
        posted.add(e.payload["invoice"])

    def apply_payment(uow, e):
        if e.payload["invoice"] not in posted:
            raise NotReady(f"invoice {e.payload['invoice']} is not posted yet")
        write_effect(uow, f"fx-paid-{e.payload['invoice']}")

    registry("invoice.test_issued", "test.post", post_invoice)
    registry("payment.test_received", "test.apply", apply_payment)
    with app.unit_of_work() as uow:  # the payment arrives first, on its own aggregate
        pay = uow.emit("payment.test_received", "payment", "P-1", {"invoice": "INV-1"})
    app.dispatch()
    assert status(app, pay) == ("pending", 0)  # waiting, not failing
    with app.unit_of_work() as uow:
        uow.emit("invoice.test_issued", "invoice", "INV-1", {"invoice": "INV-1"})
    app.dispatch()  # same business day: the wait is woken because something was delivered
    assert status(app, pay) == ("done", 0)
    assert effects(app) == ["fx-paid-INV-1"]


def test_dead_letter_opens_sync_failed_and_retry_closes_it(app, clock, registry):
    broken = {"on": True}

    def handler(uow, e):
        if broken["on"]:
            raise ConnectionError("ERP refused the connection")
        write_effect(uow, f"fx-{e.id}")

    registry("thing.happened", "test.erp", handler)
    [event_id] = emit(app, "thing.happened", "A", {"n": 1})
    [held] = emit(app, "thing.happened", "A", {"n": 2})
    for _ in range(5):
        app.dispatch()
        later(clock)
    assert status(app, event_id) == ("dead", 5)
    assert status(app, held) == ("pending", 0)  # held back behind the dead event of its aggregate
    backlog = app.query("event_backlog", {})
    assert (backlog["dead"], backlog["pending"], backlog["undelivered"], backlog["by_type"]) == (
        1, 1, 2, {"thing.happened": 2})
    items = app.query("exceptions", {"kind": "sync_failed", "status": "open"})["items"]
    assert len(items) == 1 and items[0]["record"] == {"event": str(event_id)}
    assert "ERP refused the connection" in items[0]["message"]
    assert items[0]["details"]["attempts"] == 5 and "ConnectionError" in items[0]["details"]["error"]
    app.dispatch()  # dead events are not retried by themselves
    assert status(app, event_id) == ("dead", 5)
    broken["on"] = False
    result = app.do("event.retry", {"event": event_id, "reason": "ERP back up"}, actor="carol")
    assert result["previous_status"] == "dead"
    assert status(app, event_id) == ("done", 0) and status(app, held)[0] == "done"
    assert app.query("exceptions", {"kind": "sync_failed", "status": "open"})["count"] == 0
    detail = app.query("exception", {"exception": items[0]["id"]})
    assert detail["resolution"] == "retry"
    assert [h["action"] for h in detail["history"]] == ["opened", "event_retry", "retry"]
    shown = app.query("event", {"event": event_id})
    assert shown["actions"][0]["actor"] == "carol" and shown["actions"][0]["action"] == "retry"
    assert shown["handlers"] == [{"handler": "test.erp", "delivered_at": shown["handlers"][0]["delivered_at"]}]
    audit = app.query("audit", {"command": "event.retry"})
    assert audit["count"] == 1 and audit["items"][0]["actor"] == "carol"


def test_replay_reruns_named_handlers_and_skip_unblocks_the_aggregate(app, clock, registry):
    runs = []

    def handler(uow, e):
        runs.append(e.id)
        if e.payload.get("poison"):
            raise ValueError("cannot handle this payload")

    registry("thing.happened", "test.replay", handler)
    [done_id] = emit(app, "thing.happened", "A", {"n": 1})
    app.dispatch()
    assert runs == [done_id]
    with pytest.raises(CloseloopError) as exc:
        app.do("event.retry", {"event": done_id})
    assert exc.value.code == "conflict"
    app.do("event.replay", {"event": done_id, "reason": "nothing to re-run"})
    assert runs == [done_id]  # every handler had it: replay delivers to none again
    app.do("event.replay", {"event": done_id, "reason": "handler fixed", "handlers": ["test.replay"]})
    assert runs == [done_id, done_id]
    with pytest.raises(CloseloopError) as exc:
        app.do("event.replay", {"event": done_id, "reason": "x", "handlers": ["nope"]})
    assert exc.value.code == "validation_error"
    [poison] = emit(app, "thing.happened", "B", {"poison": True})
    [after] = emit(app, "thing.happened", "B", {"n": 2})
    app.dispatch()
    assert status(app, after)[0] == "pending"
    with pytest.raises(CloseloopError) as exc:
        app.do("event.skip", {"event": poison, "reason": " "})
    assert exc.value.code == "validation_error"
    app.do("event.skip", {"event": poison, "reason": "bad data from the source"})
    assert status(app, poison)[0] == "skipped" and status(app, after)[0] == "done"
    listed = app.query("events", {"status": "skipped"})
    assert [i["id"] for i in listed["items"]] == [poison]


def test_payload_failing_its_schema_is_dead_lettered_at_once(app, registry):
    from typing_extensions import TypedDict

    class Shipped(TypedDict):
        order: str
        quantity: int

    calls = []
    registry("order.test_shipped", "test.ship", lambda uow, e: calls.append(e.id))
    registry.schema("order.test_shipped", Shipped)
    with app.unit_of_work() as uow:
        good = uow.emit("order.test_shipped", "order", "O-1", {"order": "O-1", "quantity": 2})
        bad = uow.emit("order.test_shipped", "order", "O-2", {"order": "O-2", "quantity": "two"})
        garbled = uow.emit("order.test_shipped", "order", "O-3", {"order": "O-3", "quantity": 1})
        uow.execute("UPDATE event SET payload = ? WHERE id = ?", ("{not json", garbled))
    report = app.dispatch()
    assert calls == [good]
    assert status(app, bad) == ("dead", 1) and status(app, garbled) == ("dead", 1)
    assert report.dead == 2
    items = app.query("exceptions", {"kind": "sync_failed"})["items"]
    assert {i["record"]["event"] for i in items} == {str(bad), str(garbled)}
    assert any("schema of order.test_shipped" in i["message"] for i in items)
    assert any("not valid JSON" in i["message"] for i in items)


def test_exception_resolution_actions_on_sync_failed(app, clock, registry):
    registry("thing.happened", "test.always", lambda uow, e: (_ for _ in ()).throw(RuntimeError("no")))
    app.dispatcher.configure(max_attempts=1)
    try:
        [a] = emit(app, "thing.happened", "A", {})
        [b] = emit(app, "thing.happened", "B", {})
        app.dispatch()
        exc = {i["record"]["event"]: i["id"] for i in app.query("exceptions", {"kind": "sync_failed"})["items"]}
        app.do("exception.resolve", {"exception": exc[str(a)], "action": "accept", "reason": "obsolete"})
        assert status(app, a)[0] == "skipped"
        result = app.do("exception.resolve", {"exception": exc[str(b)], "action": "retry", "reason": "again"})
        assert result["event"]["previous_status"] == "dead"
        assert status(app, b) == ("dead", 1)  # failed again: a new exception opens for it
        assert app.query("exceptions", {"kind": "sync_failed", "status": "open"})["count"] == 1
    finally:
        app.dispatcher.configure(max_attempts=5)


def test_backoff_grows_exponentially_with_jitter(app, clock, registry):
    from datetime import datetime

    registry("thing.happened", "test.backoff", lambda uow, e: (_ for _ in ()).throw(RuntimeError("down")))
    app.dispatcher.configure(base_delay_seconds=10.0)
    try:
        [event_id] = emit(app, "thing.happened", "A", {})
        delays = []
        for _ in range(4):
            app.dispatch()
            with app.unit_of_work(write=False) as uow:
                nxt = uow.scalar("SELECT next_attempt_at FROM event WHERE id = ?", (event_id,))
                now = uow.now()
            delays.append((datetime.fromisoformat(nxt[:-1]) - datetime.fromisoformat(now[:-1])).total_seconds())
            later(clock)
        for attempt, delay in enumerate(delays, 1):
            nominal = 10.0 * 2 ** (attempt - 1)
            assert 0.5 * nominal <= delay <= 1.5 * nominal, (attempt, delay)
    finally:
        app.dispatcher.configure(base_delay_seconds=1.0)


def test_event_selectors_and_backlog(app, clock, registry):
    registry("thing.happened", "test.fail", lambda uow, e: (_ for _ in ()).throw(RuntimeError("x")))
    emit(app, "thing.happened", "A", {}, n=2)
    app.dispatch()
    assert app.query("event", {"event": {"type": "thing.happened", "seq": 2}})["aggregate"] == {"thing": "A"}
    with pytest.raises(CloseloopError) as exc:
        app.query("event", {"event": {"type": "thing.happened", "seq": 3}})
    assert exc.value.code == "not_found"
    backlog = app.query("event_backlog", {})
    assert backlog["pending"] == 2 and backlog["backing_off"] == 1 and backlog["by_type"] == {"thing.happened": 2}


def test_a_database_error_inside_a_handler_is_contained_to_its_event(app, clock, registry):
    """On PostgreSQL a failed statement aborts the transaction: the savepoint restores it for the others."""
    calls = []

    def handler(uow, e):
        calls.append(e.aggregate_id)
        if e.aggregate_id == "B":
            uow.execute("INSERT INTO id_block (name, next_value) VALUES ('dup', 1)")
            uow.execute("INSERT INTO id_block (name, next_value) VALUES ('dup', 1)")  # primary key violation
        write_effect(uow, f"fx-{e.aggregate_id}")

    registry("thing.happened", "test.dberror", handler)
    with app.unit_of_work() as uow:
        ids = [uow.emit("thing.happened", "thing", agg, {}) for agg in ("A", "B", "C")]
    report = app.dispatch()
    assert report.delivered == 2 and report.failed == 1
    assert effects(app) == ["fx-A", "fx-C"]
    assert [status(app, i)[0] for i in ids] == ["done", "pending", "done"]
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM id_block WHERE name = 'dup'") == 0
        error = uow.scalar("SELECT last_error FROM event WHERE id = ?", (ids[1],))
    assert "test.dberror" in error and ("IntegrityError" in error or "UniqueViolation" in error)
