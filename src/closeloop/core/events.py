"""Business events: the record handlers receive, the handler registry, and in-process delivery.

Areas subscribe to each other only here: ``@handles("invoice.issued", "posting")``
registers a function ``(uow, event) -> None``. Commands append events to the
outbox (:meth:`UnitOfWork.emit`) in their own transaction; after the commit
the :class:`Dispatcher` delivers each pending event to every handler
registered for its type, each in a transaction of its own that also records
the delivery, so a handler's effect happens once even when delivery repeats.

Delivery contract (the same for the in-process dispatcher and for workers):
- events of one aggregate are delivered in id order; a failing event holds
  back the later events of its aggregate, never those of other aggregates;
- a handler that raises :class:`NotReady` (its prerequisite is not handled
  yet) is retried later without counting as a failure;
- any other exception is retried with exponential backoff and jitter; after
  ``max_attempts`` the event is dead-lettered and the dead-letter hooks run
  (the control area opens a ``sync_failed`` exception from one).
"""

from __future__ import annotations

import json
import random
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol


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


class NotReady(Exception):
    """Raised by a handler whose prerequisite has not been handled yet; the event waits and retries."""


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    event_type: str
    fn: Callable[[Any, Event], None]


_HANDLERS: dict[str, list[Handler]] = {}
_DEAD_LETTER_HOOKS: list[Callable[[Any, Event, str], None]] = []


def handles(event_type: str, name: str) -> Callable[[Callable[[Any, Event], None]], Callable[[Any, Event], None]]:
    def register(fn: Callable[[Any, Event], None]) -> Callable[[Any, Event], None]:
        handlers = _HANDLERS.setdefault(event_type, [])
        if not any(h.name == name for h in handlers):
            handlers.append(Handler(name, event_type, fn))
        return fn

    return register


def on_dead_letter(fn: Callable[[Any, Event, str], None]) -> Callable[[Any, Event, str], None]:
    if fn not in _DEAD_LETTER_HOOKS:
        _DEAD_LETTER_HOOKS.append(fn)
    return fn


def has_handlers(event_type: str) -> bool:
    return bool(_HANDLERS.get(event_type))


def handlers_for(event_type: str) -> list[Handler]:
    return list(_HANDLERS.get(event_type, ()))


def all_handlers() -> dict[str, list[Handler]]:
    return {k: list(v) for k, v in _HANDLERS.items()}


EVENT_COLUMNS = (
    "id, type, version, aggregate_type, aggregate_id, entity, payload, source, actor, occurred_at,"
    " recorded_at, correlation_id, causation_id, attempts"
)


def event_from_row(row: Any) -> Event:
    return Event(
        id=int(row[0]),
        type=row[1],
        version=int(row[2]),
        aggregate_type=row[3],
        aggregate_id=row[4],
        entity=row[5],
        payload=json.loads(row[6]),
        source=row[7],
        actor=row[8],
        occurred_at=row[9],
        recorded_at=row[10],
        correlation_id=row[11],
        causation_id=row[12],
        attempts=int(row[13] or 0),
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
    errors: list[str] = field(default_factory=list)


class Dispatcher:
    """Delivers pending outbox events to their handlers, in order per aggregate."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        max_attempts: int = 5,
        base_delay_seconds: float = 1.0,
        batch_size: int = 500,
        rng: random.Random | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.max_attempts = max_attempts
        self.base_delay_seconds = base_delay_seconds
        self.batch_size = batch_size
        self.rng = rng or random.Random(0)

    def run(self, *, max_rounds: int = 1000) -> DeliveryReport:
        report = DeliveryReport()
        for _ in range(max_rounds):
            progressed = self._round(report)
            if not progressed:
                break
        return report

    def _pending(self) -> Iterator[Event]:
        with self.uow_factory(actor="system", source="system", causation_id=None, correlation_id=None) as uow:
            now = uow.now()
            rows = uow.all(
                f"SELECT {EVENT_COLUMNS} FROM event WHERE status = 'pending'"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
                (now, self.batch_size),
            )
            held = uow.all(
                "SELECT DISTINCT aggregate_type, aggregate_id FROM event WHERE status = 'pending'"
                " AND next_attempt_at IS NOT NULL AND next_attempt_at > ?",
                (now,),
            )
        self._held = {(a, b) for a, b in held}
        return iter([event_from_row(r) for r in rows])

    def _round(self, report: DeliveryReport) -> bool:
        progressed = False
        blocked: set[tuple[str, str]] = set()
        for ev in self._pending():
            key = (ev.aggregate_type, ev.aggregate_id)
            if key in blocked or key in self._held:
                continue
            outcome = self.deliver(ev, report)
            if outcome == "done":
                progressed = True
            else:
                blocked.add(key)
        return progressed

    def deliver(self, ev: Event, report: DeliveryReport) -> str:
        """Run every handler of ``ev`` that has not run yet; returns done, waiting, failed or dead."""
        for handler in handlers_for(ev.type):
            try:
                with self.uow_factory(
                    actor=ev.actor, source="system", causation_id=ev.id, correlation_id=ev.correlation_id
                ) as uow:
                    done = uow.one(
                        "SELECT 1 FROM event_delivery WHERE event_id = ? AND handler = ?", (ev.id, handler.name)
                    )
                    if done:
                        continue
                    handler.fn(uow, ev)
                    uow.execute(
                        "INSERT INTO event_delivery (event_id, handler, delivered_at) VALUES (?,?,?)",
                        (ev.id, handler.name, uow.now()),
                    )
            except NotReady as exc:
                report.waiting += 1
                self._retry_later(ev, f"waiting: {exc}", count_attempt=False)
                return "waiting"
            except Exception as exc:  # noqa: BLE001 - any handler failure is recorded, never lost
                message = f"{handler.name}: {type(exc).__name__}: {exc}"
                report.errors.append(message)
                if ev.attempts + 1 >= self.max_attempts:
                    report.dead += 1
                    self._dead_letter(ev, message + "\n" + traceback.format_exc(limit=5))
                    return "dead"
                report.failed += 1
                self._retry_later(ev, message, count_attempt=True)
                return "failed"
        with self.uow_factory(actor="system", source="system", causation_id=None, correlation_id=None) as uow:
            uow.execute("UPDATE event SET status = 'done', claimed_by = NULL, lease_until = NULL WHERE id = ?", (ev.id,))
        report.delivered += 1
        return "done"

    def _retry_later(self, ev: Event, message: str, *, count_attempt: bool) -> None:
        attempts = ev.attempts + (1 if count_attempt else 0)
        delay = self.base_delay_seconds * (2 ** max(attempts - 1, 0))
        delay *= 0.5 + self.rng.random()  # jitter
        with self.uow_factory(actor="system", source="system", causation_id=None, correlation_id=None) as uow:
            at = datetime.fromisoformat(uow.now().replace("Z", "+00:00")) + timedelta(seconds=delay)
            uow.execute(
                "UPDATE event SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (attempts, message[:4000], at.isoformat(timespec="microseconds").replace("+00:00", "Z"), ev.id),
            )

    def _dead_letter(self, ev: Event, message: str) -> None:
        with self.uow_factory(actor="system", source="system", causation_id=ev.id, correlation_id=ev.correlation_id) as uow:
            uow.execute(
                "UPDATE event SET status = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (message[:4000], ev.id),
            )
            for hook in _DEAD_LETTER_HOOKS:
                hook(uow, ev, message)
