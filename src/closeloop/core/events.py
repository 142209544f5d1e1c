"""Business events: the record handlers receive, the handler registry, and the dispatcher that delivers them.

Areas subscribe to each other only here: ``@handles("invoice.issued", "posting")``
registers a function ``(uow, event) -> None``. Commands append events to the
outbox (:meth:`UnitOfWork.emit`) in their own transaction; after the commit
the :class:`Dispatcher` delivers each pending event to every handler
registered for its type.

Delivery contract (the same in-process, ``App.dispatch()`` after each command,
and in ``closeloop worker`` processes):

- **At least once, effect exactly once.** A handler runs inside a savepoint of
  the delivering transaction, and the same savepoint writes the
  ``event_delivery`` row (event id, handler name). The handler's writes and its
  delivery record commit together or not at all, and a handler whose delivery
  record exists is never run again for that event: redelivery (a crash before
  the event was marked done, an expired lease) repeats nothing.
- **Ordered per aggregate, parallel across aggregates.** Events of one
  aggregate (``aggregate_type``, ``aggregate_id``) are delivered in id order:
  an event is eligible only when no earlier event of its aggregate is still
  pending or dead. A failing, waiting or dead event holds back the later
  events of its aggregate, never those of other aggregates.
- **Retries.** A handler that raises is retried with exponential backoff and
  jitter (``base_delay_seconds * 2**(attempts-1)``, times 0.5-1.5, capped at
  ``max_delay_seconds``). After ``max_attempts`` failures the event is dead:
  it stays in the outbox with its error, the dead-letter hooks run in the same
  transaction (the integration area opens a ``sync_failed`` exception from
  one), and it waits for ``event.retry``, ``event.replay`` or ``event.skip``.
- **Not ready.** A handler that raises :class:`NotReady` (its prerequisite is
  not handled yet) is retried later without counting a failure; it is never
  applied out of order or dropped. In a draining run (``run()``) waiting events
  are woken whenever another event was delivered.
- **Schemas.** An event type may declare its payload schema
  (:func:`register_schema`). A payload that fails it (or is not JSON) cannot
  succeed by retrying: it is dead-lettered at once, with the validation errors.

Claims. On SQLite the writer lock (``BEGIN IMMEDIATE``) serialises
dispatchers: the eligible events are selected and delivered in one
transaction, so a crash rolls everything back and there is nothing to expire.
On PostgreSQL a dispatcher claims a batch with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (only the oldest open event of each aggregate is eligible), writes a
lease (``claimed_by``, ``lease_until``, wall-clock time) and commits; it then
delivers the batch, each transaction re-locking the event row and checking the
lease is still its own (a fencing check). A worker that dies leaves leases that
expire after ``lease_seconds``; another worker then claims the events again.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger("closeloop.events")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    entity: str | None
    payload: dict[str, Any]
    source: str
    actor: str
    occurred_at: str
    recorded_at: str
    correlation_id: str | None
    causation_id: int | None
    attempts: int = 0
    last_error: str | None = None
    payload_error: str | None = None  # set when the stored payload is not a JSON object


class NotReady(Exception):
    """Raised by a handler whose prerequisite has not been handled yet; the event waits and retries."""


class PayloadInvalid(Exception):
    """An event's payload fails the schema of its type; retrying cannot help, so it is dead-lettered."""


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    event_type: str
    fn: Callable[[Any, Event], None]
    # Optional: the same effect for several events of this type at once (see handles_batch).
    batch_fn: Callable[[Any, list[Event]], None] | None = None


_HANDLERS: dict[str, list[Handler]] = {}
_DEAD_LETTER_HOOKS: list[Callable[[Any, Event, str], None]] = []
_RECOVERED_HOOKS: list[Callable[[Any, Event], None]] = []
_SCHEMAS: dict[tuple[str, int], Callable[[dict[str, Any]], None]] = {}


def handles(event_type: str, name: str) -> Callable[[Callable[[Any, Event], None]], Callable[[Any, Event], None]]:
    def register(fn: Callable[[Any, Event], None]) -> Callable[[Any, Event], None]:
        handlers = _HANDLERS.setdefault(event_type, [])
        if not any(h.name == name for h in handlers):
            handlers.append(Handler(name, event_type, fn))
        return fn

    return register


def handles_batch(event_type: str, name: str) -> Callable[[Callable[[Any, list[Event]], None]],
                                                          Callable[[Any, list[Event]], None]]:
    """Give an already registered handler a batch form: ``fn(uow, events)`` with the effect of
    calling the handler on each event in order. The dispatcher uses it for runs of consecutive
    events of the type; if it raises, its writes are undone and the events go one by one."""

    def register(fn: Callable[[Any, list[Event]], None]) -> Callable[[Any, list[Event]], None]:
        handlers = _HANDLERS.get(event_type, [])
        for i, h in enumerate(handlers):
            if h.name == name:
                handlers[i] = replace(h, batch_fn=fn)
                return fn
        raise RuntimeError(f"handles_batch: no handler {name!r} for {event_type} is registered yet")

    return register


def on_dead_letter(fn: Callable[[Any, Event, str], None]) -> Callable[[Any, Event, str], None]:
    """Run ``fn(uow, event, error)`` in the transaction that dead-letters an event."""
    if fn not in _DEAD_LETTER_HOOKS:
        _DEAD_LETTER_HOOKS.append(fn)
    return fn


def on_recovered(fn: Callable[[Any, Event], None]) -> Callable[[Any, Event], None]:
    """Run ``fn(uow, event)`` in the transaction that delivers an event which had failed or waited before."""
    if fn not in _RECOVERED_HOOKS:
        _RECOVERED_HOOKS.append(fn)
    return fn


def register_schema(event_type: str, schema: Any, *, version: int = 1) -> None:
    """Declare the payload schema of an event type: a pydantic-validatable type (TypedDict, dataclass,
    model) or a callable ``(payload) -> None`` that raises ``ValueError`` on a bad payload."""
    if isinstance(schema, type) or hasattr(schema, "__annotations__") and not callable(schema):
        from pydantic import TypeAdapter

        adapter = TypeAdapter(schema)

        def check(payload: dict[str, Any]) -> None:
            adapter.validate_python(payload)

        _SCHEMAS[(event_type, version)] = check
    elif callable(schema):
        _SCHEMAS[(event_type, version)] = schema
    else:
        raise TypeError(f"schema of {event_type} must be a type or a callable")


def event_schema(event_type: str, *, version: int = 1) -> Callable[[Any], Any]:
    """Decorator form of :func:`register_schema` for a TypedDict or dataclass."""

    def register(schema: Any) -> Any:
        register_schema(event_type, schema, version=version)
        return schema

    return register


def check_payload(ev: Event) -> str | None:
    """The reason ``ev``'s payload cannot be delivered, or None when it is acceptable."""
    if ev.payload_error is not None:
        return ev.payload_error
    check = _SCHEMAS.get((ev.type, ev.version))
    if check is None:
        return None
    try:
        check(ev.payload)
    except Exception as exc:  # noqa: BLE001 - pydantic.ValidationError, ValueError, TypeError...
        text = str(exc).replace("\n", "; ")
        return f"payload does not match the schema of {ev.type} v{ev.version}: {text}"
    return None


def has_handlers(event_type: str) -> bool:
    return bool(_HANDLERS.get(event_type))


def handlers_for(event_type: str) -> list[Handler]:
    return list(_HANDLERS.get(event_type, ()))


def all_handlers() -> dict[str, list[Handler]]:
    return {k: list(v) for k, v in _HANDLERS.items()}


EVENT_COLUMNS = (
    "id, type, version, aggregate_type, aggregate_id, entity, payload, source, actor, occurred_at,"
    " recorded_at, correlation_id, causation_id, attempts, last_error"
)


def event_from_row(row: Any) -> Event:
    payload: Any
    problem = None
    try:
        payload = json.loads(row[6])
        if not isinstance(payload, dict):
            problem, payload = "payload is not a JSON object", {}
    except (TypeError, ValueError) as exc:
        problem, payload = f"payload is not valid JSON: {exc}", {}
    return Event(
        id=int(row[0]),
        type=row[1],
        version=int(row[2]),
        aggregate_type=row[3],
        aggregate_id=row[4],
        entity=row[5],
        payload=payload,
        source=row[7],
        actor=row[8],
        occurred_at=row[9],
        recorded_at=row[10],
        correlation_id=row[11],
        causation_id=row[12],
        attempts=int(row[13] or 0),
        last_error=row[14] if len(row) > 14 else None,
        payload_error=problem,
    )


class UnitOfWorkFactory(Protocol):
    def __call__(
        self, *, actor: str, source: str, causation_id: int | None, correlation_id: str | None
    ) -> AbstractContextManager[Any]: ...


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    waiting: int = 0
    dead: int = 0
    lost: int = 0  # claimed events whose lease another dispatcher took over (not processed here)
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.delivered + self.failed + self.waiting + self.dead

    def to_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "waiting": self.waiting, "dead": self.dead,
                "lost": self.lost, "errors": list(self.errors)}


# --------------------------------------------------------------------------- fault injection (soak tests)

_FAULT_HOOK: Callable[[str], None] | None = None


def set_fault_hook(fn: Callable[[str], None] | None) -> None:
    """Install ``fn(point)``, called at named points of delivery (the soak's crash injection); None removes it.

    Points: ``claimed`` (after a PostgreSQL claim commits), ``before_handler``, ``after_handler`` (handler
    ran, delivery not yet recorded), ``before_commit`` (a batch delivered, not committed), ``after_commit``.
    """
    global _FAULT_HOOK
    _FAULT_HOOK = fn


def _fault(point: str) -> None:
    if _FAULT_HOOK is not None:
        _FAULT_HOOK(point)


# --------------------------------------------------------------------------- time


def wall_iso(offset_seconds: float = 0.0) -> str:
    """Wall-clock UTC timestamp (leases; never business time) in the outbox's ISO format."""
    at = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def add_seconds(timestamp: str, seconds: float) -> str:
    at = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def backoff_seconds(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base * 2**(attempts-1), capped, times a factor in [0.5, 1.5)."""
    delay = min(cap, base * (2 ** max(attempts - 1, 0)))
    return delay * (0.5 + rng.random())


def _waits(last_error: str | None) -> int:
    """How many times in a row the event waited (NotReady), kept in the ``waiting #N:`` error prefix."""
    if last_error and last_error.startswith("waiting #"):
        number = last_error[len("waiting #"):].split(":", 1)[0]
        if number.isdigit():
            return int(number)
    return 0


# --------------------------------------------------------------------------- the dispatcher

ELIGIBLE_SQLITE = (
    f"SELECT {EVENT_COLUMNS} FROM event e WHERE e.status = 'pending'"
    " AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= ?)"
    " AND NOT EXISTS (SELECT 1 FROM event p WHERE p.aggregate_type = e.aggregate_type"
    " AND p.aggregate_id = e.aggregate_id AND p.id < e.id AND p.status IN ('pending', 'dead')"
    " AND (p.status = 'dead' OR p.next_attempt_at > ?))"
    " ORDER BY e.id LIMIT ?"
)

# Only the oldest open event of an aggregate may be claimed: a concurrent claim cannot see another
# dispatcher's uncommitted lease, but it does see that an earlier event of the aggregate is still open.
CLAIM_POSTGRES = (
    f"SELECT {EVENT_COLUMNS} FROM event e WHERE e.status = 'pending'"
    " AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= ?)"
    " AND (e.lease_until IS NULL OR e.lease_until < ?)"
    " AND NOT EXISTS (SELECT 1 FROM event p WHERE p.aggregate_type = e.aggregate_type"
    " AND p.aggregate_id = e.aggregate_id AND p.id < e.id AND p.status IN ('pending', 'dead'))"
    " ORDER BY e.id LIMIT ? FOR UPDATE OF e SKIP LOCKED"
)


def transaction_chunks(events: list[Event], per: int, worker_id: str) -> list[list[Event]]:
    """A claimed batch cut into transactions of at most ``per`` events, each of one entity.

    A transaction's events lock their entity's hot rows (the ledger's chain head and balances, the
    invoice number series) until it commits; one entity per transaction means two workers never
    hold each other's entities (no deadlock) and work on different entities at the same time. Each
    worker starts at a different entity (rotated by its id) so that workers pipeline rather than
    queue. The claim takes at most one event per aggregate, so regrouping keeps each aggregate's
    order; within an entity the id order is kept.
    """
    groups: dict[str | None, list[Event]] = {}
    for ev in events:
        groups.setdefault(ev.entity, []).append(ev)
    order = sorted(groups, key=lambda e: (e is None, e or ""))
    if len(order) > 1:
        turn = zlib.crc32(worker_id.encode()) % len(order)
        order = order[turn:] + order[:turn]
    return [groups[e][i:i + per] for e in order for i in range(0, len(groups[e]), per)]


class Dispatcher:
    """Delivers pending outbox events to their handlers (see the module docstring for the contract)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        max_attempts: int = 5,
        base_delay_seconds: float = 1.0,
        max_delay_seconds: float = 3600.0,
        batch_size: int = 500,
        events_per_transaction: int | None = None,
        lease_seconds: float = 60.0,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.max_attempts = max_attempts
        self.base_delay_seconds = base_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self.batch_size = batch_size
        self.events_per_transaction = events_per_transaction
        self.lease_seconds = lease_seconds
        self._worker_id = worker_id
        self._pid = os.getpid()
        self.rng = rng or random.Random(0)
        self.stop_requested = False
        self._last_limit = batch_size

    def configure(self, **options: Any) -> Dispatcher:
        for name, value in options.items():
            if value is None:
                continue
            if name == "worker_id":
                self._worker_id = value
            elif not hasattr(self, name) or name.startswith("_"):
                raise TypeError(f"unknown dispatcher option {name!r}")
            else:
                setattr(self, name, value)
        return self

    @property
    def worker_id(self) -> str:
        if self._worker_id is None or self._pid != os.getpid():  # a forked child is a different worker
            self._pid = os.getpid()
            self._worker_id = f"{socket.gethostname()[:32]}:{self._pid}:{uuid.uuid4().hex[:6]}"
        return self._worker_id

    def _uow(self) -> AbstractContextManager[Any]:
        return self.uow_factory(actor="system", source="system", causation_id=None, correlation_id=None)

    # ------------------------------------------------------------------ driving

    def run(self, *, max_rounds: int = 1000) -> DeliveryReport:
        """Deliver until nothing more is eligible now (the embedded mode calls this after each command).

        When anything was delivered, events waiting for a prerequisite (NotReady) are woken and the run
        goes on: the prerequisite may be what was just delivered.
        """
        report = DeliveryReport()
        rounds = 0
        while rounds < max_rounds:
            progressed = False
            while rounds < max_rounds:
                rounds += 1
                before = report.delivered + report.dead
                try:
                    selected = self.run_once(report)
                except Exception as exc:  # noqa: BLE001 - infrastructure failure: nothing is lost, events stay pending
                    log.exception("event delivery round failed")
                    report.errors.append(f"dispatcher: {type(exc).__name__}: {exc}")
                    return report
                moved = report.delivered + report.dead > before
                progressed = progressed or moved
                if not selected or (not moved and selected < self._last_limit):
                    break
            if not (progressed and self._wake_waiting()):
                break
        return report

    def _round_size(self) -> int:
        return min(self.batch_size, self.events_per_transaction or self.batch_size)

    def run_once(self, report: DeliveryReport) -> int:
        """One round: select (SQLite) or claim (PostgreSQL) a batch and deliver it; returns how many were taken."""
        with self._uow() as uow:
            if uow.dialect.is_sqlite:
                now = uow.now()
                self._last_limit = self._round_size()
                rows = uow.all(ELIGIBLE_SQLITE, (now, now, self._last_limit))
                if rows:
                    self._deliver_batch(uow, [event_from_row(r) for r in rows], report, fenced=False)
                    _fault("before_commit")
                sqlite = True
            else:
                sqlite = False
                self._last_limit = self.batch_size
                rows = uow.all(CLAIM_POSTGRES, (uow.now(), wall_iso(), self.batch_size))
                if rows:
                    lease = wall_iso(self.lease_seconds)
                    uow.executemany("UPDATE event SET claimed_by = ?, lease_until = ? WHERE id = ?",
                                    [(self.worker_id, lease, int(r[0])) for r in rows])
        if sqlite:
            if rows:
                _fault("after_commit")
            return len(rows)
        if not rows:
            return 0
        _fault("claimed")
        claimed_at = time.monotonic()
        events = [event_from_row(r) for r in rows]
        chunks = transaction_chunks(events, self.events_per_transaction or 20, self.worker_id)
        done = 0
        try:
            for chunk in chunks:
                if self.stop_requested:
                    break
                if time.monotonic() - claimed_at > self.lease_seconds / 2:
                    self._renew_leases()
                    claimed_at = time.monotonic()
                with self._uow() as uow:
                    self._deliver_batch(uow, chunk, report, fenced=True)
                    _fault("before_commit")
                _fault("after_commit")
                done += len(chunk)
        finally:
            if done < len(events):
                self.release_leases()
        return len(events)

    def _renew_leases(self) -> None:
        with self._uow() as uow:
            uow.execute("UPDATE event SET lease_until = ? WHERE claimed_by = ? AND status = 'pending'",
                        (wall_iso(self.lease_seconds), self.worker_id))

    def release_leases(self) -> None:
        """Give back the claims of this dispatcher that it has not delivered (graceful stop)."""
        try:
            with self._uow() as uow:
                if not uow.dialect.is_sqlite:
                    uow.execute("UPDATE event SET claimed_by = NULL, lease_until = NULL"
                                " WHERE claimed_by = ? AND status = 'pending'", (self.worker_id,))
        except Exception:  # noqa: BLE001 - the leases expire by themselves
            log.warning("could not release event leases of %s", self.worker_id, exc_info=True)

    def _wake_waiting(self) -> bool:
        """Make events that wait for a prerequisite due now (something was delivered that may be it)."""
        with self._uow() as uow:
            now = uow.now()
            rows = uow.all("SELECT id FROM event WHERE status = 'pending' AND next_attempt_at > ?"
                           " AND last_error LIKE 'waiting #%'", (now,))
            if rows:
                uow.executemany("UPDATE event SET next_attempt_at = NULL WHERE id = ?", [(r[0],) for r in rows])
        return bool(rows)

    # ------------------------------------------------------------------ delivery

    def _deliver_batch(self, uow: Any, events: list[Event], report: DeliveryReport, *, fenced: bool) -> None:
        ids = [ev.id for ev in events]
        marks = ",".join("?" * len(ids))
        delivered = {(int(a), b) for a, b in uow.all(
            f"SELECT event_id, handler FROM event_delivery WHERE event_id IN ({marks})", ids)}
        if not fenced:
            self._deliver_runs(uow, events, delivered)
        blocked: set[tuple[str, str]] = set()
        done: list[Event] = []
        me = self.worker_id if fenced else None
        for ev in events:
            key = (ev.aggregate_type, ev.aggregate_id)
            if key in blocked:
                continue
            if fenced:
                row = uow.one("SELECT status, claimed_by FROM event WHERE id = ? FOR UPDATE", (ev.id,))
                if row is None or row[0] != "pending" or row[1] != me:
                    report.lost += 1
                    blocked.add(key)
                    continue
            uow.actor, uow.source = ev.actor, "system"
            uow.causation_id, uow.correlation_id = ev.id, ev.correlation_id
            outcome = self._deliver(uow, ev, delivered, report)
            if outcome == "done":
                done.append(ev)
            else:
                blocked.add(key)
        if done:
            uow.executemany("UPDATE event SET status = 'done', claimed_by = NULL, lease_until = NULL WHERE id = ?",
                            [(ev.id,) for ev in done])
            report.delivered += len(done)
            for ev in done:
                if ev.last_error is not None and _RECOVERED_HOOKS:
                    uow.causation_id, uow.correlation_id = ev.id, ev.correlation_id
                    for hook in _RECOVERED_HOOKS:
                        self._guarded(uow, "recovered", lambda h=hook, e=ev: h(uow, e))  # type: ignore[misc]

    def _deliver_runs(self, uow: Any, events: list[Event], delivered: set[tuple[int, str]]) -> None:
        """Runs first: for each run of consecutive events of one type, each handler takes the run's
        events in one savepoint — in one call when it has a batch form, else event by event — in
        id order (so the order per aggregate holds), and their delivery records are written
        together. On any failure (NotReady included) the savepoint is undone and those events are
        delivered one by one below, where failures, waits and dead letters are accounted."""
        start = 0
        while start < len(events):
            end = start
            while end < len(events) and events[end].type == events[start].type:
                end += 1
            run = events[start:end]
            start = end
            if len(run) < 2:
                continue
            for handler in handlers_for(run[0].type):
                todo = [ev for ev in run if (ev.id, handler.name) not in delivered and check_payload(ev) is None]
                if len(todo) < 2:
                    continue
                with self._savepoint(uow) as sp:
                    try:
                        if handler.batch_fn is not None:
                            uow.causation_id = None
                            handler.batch_fn(uow, todo)
                        else:
                            # no batch form: the handler event by event, but in one savepoint with one
                            # write of the delivery records (the per-event path below is the fallback)
                            for ev in todo:
                                uow.actor, uow.source = ev.actor, "system"
                                uow.causation_id, uow.correlation_id = ev.id, ev.correlation_id
                                _fault("before_handler")
                                handler.fn(uow, ev)
                                _fault("after_handler")
                        now = uow.now()
                        uow.executemany("INSERT INTO event_delivery (event_id, handler, delivered_at) VALUES (?,?,?)",
                                        [(ev.id, handler.name, now) for ev in todo])
                    except Exception:  # noqa: BLE001 - the one-by-one path records what fails, and why
                        sp.rollback()
                        log.info("batch %s of %d %s events fell back to one by one", handler.name, len(todo),
                                 run[0].type, exc_info=True)
                        continue
                delivered.update((ev.id, handler.name) for ev in todo)

    def _deliver(self, uow: Any, ev: Event, delivered: set[tuple[int, str]], report: DeliveryReport) -> str:
        """Run every handler of ``ev`` that has not run yet; returns done, waiting, failed or dead."""
        problem = check_payload(ev)
        if problem is not None:
            report.errors.append(f"event {ev.id}: {problem}")
            report.dead += 1
            self._dead_letter(uow, ev, problem)
            return "dead"
        for handler in handlers_for(ev.type):
            if (ev.id, handler.name) in delivered:
                continue
            with self._savepoint(uow) as sp:
                try:
                    _fault("before_handler")
                    handler.fn(uow, ev)
                    _fault("after_handler")
                    uow.execute("INSERT INTO event_delivery (event_id, handler, delivered_at) VALUES (?,?,?)",
                                (ev.id, handler.name, uow.now()))
                except NotReady as exc:
                    sp.rollback()
                    report.waiting += 1
                    self._wait(uow, ev, f"{handler.name}: {exc}")
                    return "waiting"
                except Exception as exc:  # noqa: BLE001 - any handler failure is recorded, never lost
                    sp.rollback()
                    message = f"{handler.name}: {type(exc).__name__}: {exc}"
                    report.errors.append(f"event {ev.id}: {message}")
                    if ev.attempts + 1 >= self.max_attempts:
                        report.dead += 1
                        self._dead_letter(uow, ev, message + "\n" + traceback.format_exc(limit=8))
                        return "dead"
                    report.failed += 1
                    self._retry_later(uow, ev, message)
                    return "failed"
            delivered.add((ev.id, handler.name))
        return "done"

    def _savepoint(self, uow: Any) -> _Savepoint:
        return _Savepoint(uow)

    def _guarded(self, uow: Any, what: str, fn: Callable[[], None]) -> None:
        """Run a hook in a savepoint; a failing hook is logged and never blocks delivery bookkeeping."""
        with self._savepoint(uow) as sp:
            try:
                fn()
            except Exception:  # noqa: BLE001
                sp.rollback()
                log.exception("%s hook failed", what)

    def _retry_later(self, uow: Any, ev: Event, message: str) -> None:
        attempts = ev.attempts + 1
        delay = backoff_seconds(attempts, self.base_delay_seconds, self.max_delay_seconds, self.rng)
        uow.execute(
            "UPDATE event SET attempts = ?, last_error = ?, next_attempt_at = ?, claimed_by = NULL,"
            " lease_until = NULL WHERE id = ?",
            (attempts, message[:4000], add_seconds(uow.now(), delay), ev.id),
        )

    def _wait(self, uow: Any, ev: Event, message: str) -> None:
        waits = _waits(ev.last_error) + 1
        delay = backoff_seconds(min(waits, 9), self.base_delay_seconds, min(self.max_delay_seconds, 300.0), self.rng)
        uow.execute(
            "UPDATE event SET last_error = ?, next_attempt_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
            (f"waiting #{waits}: {message}"[:4000], add_seconds(uow.now(), delay), ev.id),
        )

    def _dead_letter(self, uow: Any, ev: Event, message: str) -> None:
        uow.execute(
            "UPDATE event SET status = 'dead', attempts = attempts + 1, last_error = ?, next_attempt_at = NULL,"
            " claimed_by = NULL, lease_until = NULL WHERE id = ?",
            (message[:4000], ev.id),
        )
        uow.causation_id, uow.correlation_id = ev.id, ev.correlation_id
        dead = replace(ev, attempts=ev.attempts + 1, last_error=message[:4000])
        for hook in _DEAD_LETTER_HOOKS:
            self._guarded(uow, "dead-letter", lambda h=hook: h(uow, dead, message))  # type: ignore[misc]


class _Savepoint:
    """``SAVEPOINT``/``RELEASE``/``ROLLBACK TO`` around one handler, on both engines.

    On rollback the unit of work's pending cache fills are dropped too, so a value read by a handler
    whose writes were undone never reaches the App's shared caches.
    """

    _counter = 0

    def __init__(self, uow: Any) -> None:
        _Savepoint._counter += 1
        self.uow = uow
        self.name = f"cl_sp_{_Savepoint._counter}"
        self.rolled_back = False

    def __enter__(self) -> _Savepoint:
        self._after = len(getattr(self.uow, "_after_commit", ()))
        self._emitted = len(getattr(self.uow, "emitted", ()))
        self.uow.execute(f"SAVEPOINT {self.name}")
        return self

    def rollback(self) -> None:
        self.uow.execute(f"ROLLBACK TO SAVEPOINT {self.name}")
        self.rolled_back = True
        after = getattr(self.uow, "_after_commit", None)
        if isinstance(after, list):
            del after[self._after:]
        emitted = getattr(self.uow, "emitted", None)
        if isinstance(emitted, list):
            del emitted[self._emitted:]
        cache = getattr(self.uow, "cache", None)
        if isinstance(cache, dict):
            cache.clear()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.uow.execute(f"RELEASE SAVEPOINT {self.name}")


def pending_events(uow: Any, limit: int = 500) -> Iterator[Event]:
    """Pending events in id order (for reports and tools; delivery uses the dispatcher's own claims)."""
    for row in uow.all(f"SELECT {EVENT_COLUMNS} FROM event WHERE status = 'pending' ORDER BY id LIMIT ?", (limit,)):
        yield event_from_row(row)
