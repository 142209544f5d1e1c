"""Operating the outbox: dead letters become ``sync_failed`` exceptions, and people retry, replay or skip events.

- A dead-lettered event opens (or updates) one ``sync_failed`` exception,
  ``record: {event: ID}``, carrying the error; when the event is later
  delivered the exception closes itself (resolution ``retry``).
- ``event.retry`` makes a pending event due now, or gives a dead one a fresh
  set of attempts; ``event.replay`` delivers a past event again (to the
  handlers that have not received it, or, named explicitly, to handlers that
  did: their effect happens again); ``event.skip`` gives up on an event with a
  reason, which unblocks the later events of its aggregate. Each is a command
  (so the audit log records who, when and why) and also leaves an
  ``event_action`` row on the event's own history.
- ``exception.resolve`` on a ``sync_failed`` exception: ``retry`` retries the
  event (or webhook delivery), ``accept`` skips it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.events import (
    EVENT_COLUMNS,
    Event,
    event_from_row,
    handlers_for,
    on_dead_letter,
    on_recovered,
)
from closeloop.core.exception_queue import close_exception, on_resolve, open_exception
from closeloop.core.registry import Limit, command, payload, query
from closeloop.core.uow import dumps

OPERATORS = ("implementation", "admin")
EVENT_STATUSES = ("pending", "done", "dead", "skipped")

# --------------------------------------------------------------------------- dead letter -> exception


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


@on_dead_letter
def open_sync_failed(uow: Any, ev: Event, error: str) -> None:
    open_exception(
        uow, "sync_failed", record_type="event", record_id=str(ev.id), entity=ev.entity,
        message=(f"event {ev.id} ({ev.type} of {ev.aggregate_type} {ev.aggregate_id}) was dead-lettered after"
                 f" {ev.attempts} attempt(s): {_first_line(error)[:500]}"),
        details={"event": ev.id, "type": ev.type, "aggregate_type": ev.aggregate_type,
                 "aggregate_id": ev.aggregate_id, "attempts": ev.attempts, "error": error[:4000]},
        dedup_key=f"event:{ev.id}",
    )


@on_recovered
def close_sync_failed(uow: Any, ev: Event) -> None:
    row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'", (f"event:{ev.id}",))
    if row is not None:
        actor, uow.actor = uow.actor, "system"
        try:
            close_exception(uow, int(row[0]), "retry", f"event {ev.id} was delivered on a later attempt")
        finally:
            uow.actor = actor


# --------------------------------------------------------------------------- finding events


def resolve_event(uow: Any, ref: Any, *, field: str = "event") -> int:
    """An event id from an id (int or digits) or a selector ``{type, aggregate_type?, aggregate_id?, seq?}``
    (the seq-th such event in id order, 1 by default; scenarios cannot know generated ids)."""
    if isinstance(ref, bool):
        raise ValidationError(f"{field} must be an event id or a selector", field=field)
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        event_id = int(ref)
        if uow.one("SELECT 1 FROM event WHERE id = ?", (event_id,)) is None:
            raise NotFoundError(f"event {event_id} does not exist", field=field, record=str(event_id))
        return event_id
    if isinstance(ref, dict):
        unknown = set(ref) - {"type", "aggregate_type", "aggregate_id", "seq"}
        if unknown or "type" not in ref:
            raise ValidationError(f"{field}: a selector has type and optionally aggregate_type, aggregate_id, seq"
                                  f"{'; unknown ' + ', '.join(sorted(unknown)) if unknown else ''}", field=field)
        where, params = ["type = ?"], [ref["type"]]
        for key in ("aggregate_type", "aggregate_id"):
            if ref.get(key) is not None:
                where.append(f"{key} = ?")
                params.append(str(ref[key]))
        seq = int(ref.get("seq") or 1)
        if seq < 1:
            raise ValidationError(f"{field}.seq must be 1 or more", field=f"{field}.seq")
        row = uow.one(f"SELECT id FROM event WHERE {' AND '.join(where)} ORDER BY id LIMIT 1 OFFSET ?",
                      [*params, seq - 1])
        if row is None:
            raise NotFoundError(f"no event matches {json.dumps(ref, sort_keys=True)}", field=field)
        return int(row[0])
    raise ValidationError(f"{field} must be an event id or a selector", field=field)


def load_event(uow: Any, event_id: int, *, lock: bool = False) -> tuple[Event, str]:
    row = uow.one(f"SELECT {EVENT_COLUMNS}, status FROM event WHERE id = ?{uow.for_update() if lock else ''}",
                  (event_id,))
    if row is None:
        raise NotFoundError(f"event {event_id} does not exist", field="event", record=str(event_id))
    return event_from_row(row[:15]), row[15]


def _record_action(uow: Any, event_id: int, action: str, reason: str | None, details: dict[str, Any]) -> None:
    uow.execute("INSERT INTO event_action (event_id, at, actor, action, reason, details) VALUES (?,?,?,?,?,?)",
                (event_id, uow.now(), uow.actor, action, reason, dumps(details)))


def _note_on_exception(uow: Any, event_id: int, action: str, reason: str | None) -> int | None:
    row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'", (f"event:{event_id}",))
    if row is None:
        return None
    uow.execute("INSERT INTO exception_action (exception_id, at, actor, action, reason) VALUES (?,?,?,?,?)",
                (int(row[0]), uow.now(), uow.actor, f"event_{action}", reason or f"event {event_id}: {action}"))
    return int(row[0])


def requeue_event(uow: Any, event_id: int, *, action: str, reason: str | None,
                  rerun: tuple[str, ...] = ()) -> dict[str, Any]:
    """Make an event deliverable now (the shared effect of retry and replay)."""
    ev, status = load_event(uow, event_id, lock=True)
    if action == "retry" and status in ("done", "skipped"):
        raise ConflictError(f"event {event_id} is already {status}; use event.replay to deliver it again",
                            field="event", record=str(event_id))
    known = {h.name for h in handlers_for(ev.type)}
    unknown = [h for h in rerun if h not in known]
    if unknown:
        raise ValidationError(f"event {event_id} ({ev.type}) has no handler {', '.join(unknown)}; its handlers are"
                              f" {', '.join(sorted(known)) or 'none'}", field="handlers")
    for name in rerun:
        uow.execute("DELETE FROM event_delivery WHERE event_id = ? AND handler = ?", (event_id, name))
    attempts = ev.attempts if status == "pending" else 0
    uow.execute("UPDATE event SET status = 'pending', attempts = ?, next_attempt_at = NULL, claimed_by = NULL,"
                " lease_until = NULL WHERE id = ?", (attempts, event_id))
    _record_action(uow, event_id, action, reason, {"status_before": status, "attempts_before": ev.attempts,
                                                   "rerun": list(rerun)})
    exc_id = _note_on_exception(uow, event_id, action, reason)
    uow.dispatch_needed = True
    out: dict[str, Any] = {"event": event_id, "type": ev.type, "previous_status": status, "status": "pending"}
    if exc_id is not None:
        out["exception"] = exc_id
    return out


def skip_event(uow: Any, event_id: int, reason: str) -> dict[str, Any]:
    ev, status = load_event(uow, event_id, lock=True)
    if status in ("done", "skipped"):
        raise ConflictError(f"event {event_id} is already {status}; nothing to skip", field="event",
                            record=str(event_id))
    uow.execute("UPDATE event SET status = 'skipped', next_attempt_at = NULL, claimed_by = NULL, lease_until = NULL"
                " WHERE id = ?", (event_id,))
    _record_action(uow, event_id, "skip", reason, {"status_before": status, "attempts_before": ev.attempts})
    row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'", (f"event:{event_id}",))
    if row is not None:
        close_exception(uow, int(row[0]), "accept", f"event {event_id} skipped: {reason}")
    uow.dispatch_needed = True  # later events of the aggregate are no longer held back
    return {"event": event_id, "type": ev.type, "previous_status": status, "status": "skipped"}


# --------------------------------------------------------------------------- commands


@payload
class EventRetry:
    event: int | dict[str, Any]
    reason: str | None = None


@command("event.retry", EventRetry, roles=OPERATORS,
         summary="Deliver a failing or dead-lettered event again now (a dead one gets a fresh set of attempts)")
def event_retry(uow: Any, cmd: EventRetry) -> dict[str, Any]:
    return requeue_event(uow, resolve_event(uow, cmd.event), action="retry", reason=cmd.reason)


@payload
class EventReplay:
    event: int | dict[str, Any]
    reason: str
    handlers: tuple[str, ...] = ()


@command("event.replay", EventReplay, roles=OPERATORS,
         summary="Deliver a past event again: to handlers that have not received it, or to the named handlers")
def event_replay(uow: Any, cmd: EventReplay) -> dict[str, Any]:
    if not cmd.reason.strip():
        raise ValidationError("a reason is required to replay an event", field="reason")
    return requeue_event(uow, resolve_event(uow, cmd.event), action="replay", reason=cmd.reason,
                         rerun=tuple(cmd.handlers))


@payload
class EventSkip:
    event: int | dict[str, Any]
    reason: str


@command("event.skip", EventSkip, roles=OPERATORS,
         summary="Give up on a pending or dead event (with a reason); later events of its aggregate proceed")
def event_skip(uow: Any, cmd: EventSkip) -> dict[str, Any]:
    if not cmd.reason.strip():
        raise ValidationError("a reason is required to skip an event", field="reason")
    return skip_event(uow, resolve_event(uow, cmd.event), cmd.reason)


@payload
class EventDispatch:
    pass


@command("event.dispatch", EventDispatch, roles=OPERATORS,
         summary="Deliver every event that is due now (the embedded mode; workers do this continuously)")
def event_dispatch(uow: Any, cmd: EventDispatch) -> dict[str, Any]:
    uow.dispatch_needed = True
    return {"pending": int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'"))}


@on_resolve("sync_failed", "retry")
def _retry_from_exception(uow: Any, item: dict[str, Any], cmd: Any) -> dict[str, Any]:
    record = item["record"]
    if "event" in record:
        return {"event": requeue_event(uow, int(record["event"]), action="retry", reason=cmd.reason)}
    if "webhook_delivery" in record:
        from closeloop.integration.webhooks import requeue_delivery

        return {"webhook_delivery": requeue_delivery(uow, int(record["webhook_delivery"]), reason=cmd.reason)}
    raise ValidationError(f"exception {item['id']} concerns {record}; retry applies to events and webhook"
                          " deliveries", field="action")


@on_resolve("sync_failed", "accept")
def _accept_from_exception(uow: Any, item: dict[str, Any], cmd: Any) -> dict[str, Any] | None:
    record = item["record"]
    if "event" in record:
        _, status = load_event(uow, int(record["event"]))
        if status in ("pending", "dead"):
            ev_id = int(record["event"])
            uow.execute("UPDATE event SET status = 'skipped', next_attempt_at = NULL WHERE id = ?", (ev_id,))
            _record_action(uow, ev_id, "skip", cmd.reason, {"status_before": status, "via": f"exception {item['id']}"})
            uow.dispatch_needed = True
            return {"event": ev_id, "event_status": "skipped"}
    if "webhook_delivery" in record:
        from closeloop.integration.webhooks import skip_delivery

        return {"webhook_delivery": skip_delivery(uow, int(record["webhook_delivery"]), cmd.reason)}
    return None


# --------------------------------------------------------------------------- queries


def event_summary(row: Any) -> dict[str, Any]:
    (event_id, type_, version, agg_type, agg_id, entity, status, attempts, next_at, last_error, recorded_at,
     actor, claimed_by, lease_until) = row
    return {"id": int(event_id), "type": type_, "version": int(version), "aggregate": {agg_type: agg_id},
            "entity": entity, "status": status, "attempts": int(attempts), "next_attempt_at": next_at,
            "last_error": last_error, "recorded_at": recorded_at, "actor": actor, "claimed_by": claimed_by,
            "lease_until": lease_until}


SUMMARY_COLUMNS = ("id, type, version, aggregate_type, aggregate_id, entity, status, attempts, next_attempt_at,"
                   " last_error, recorded_at, actor, claimed_by, lease_until")


@payload
class EventsQuery:
    status: str | None = None
    type: str | None = None
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    correlation_id: str | None = None
    after: int | None = None
    limit: Limit = 100


@query("events", EventsQuery, summary="Outbox events filtered by status, type, aggregate, correlation")
def events(uow: Any, q: EventsQuery) -> dict[str, Any]:
    if q.status is not None and q.status not in EVENT_STATUSES:
        raise ValidationError(f"status {q.status!r} must be one of {', '.join(EVENT_STATUSES)}", field="status")
    where, params = [], []
    for column, value in (("status", q.status), ("type", q.type), ("aggregate_type", q.aggregate_type),
                          ("aggregate_id", q.aggregate_id), ("correlation_id", q.correlation_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.after is not None:
        where.append("id > ?")
        params.append(q.after)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    count = int(uow.scalar(f"SELECT COUNT(*) FROM event{clause}", params))
    rows = uow.all(f"SELECT {SUMMARY_COLUMNS} FROM event{clause} ORDER BY id LIMIT ?",
                   [*params, min(q.limit, 10_000)])
    return {"count": count, "items": [event_summary(r) for r in rows]}


@payload
class EventQuery:
    event: int | dict[str, Any]


@query("event", EventQuery, summary="One event: payload, delivery state per handler, operator actions")
def event(uow: Any, q: EventQuery) -> dict[str, Any]:
    event_id = resolve_event(uow, q.event)
    row = uow.one(f"SELECT {SUMMARY_COLUMNS}, payload, source, occurred_at, command_id, causation_id,"
                  " correlation_id, idempotency_key FROM event WHERE id = ?", (event_id,))
    out = event_summary(row[:14])
    payload_text, source, occurred_at, command_id, causation_id, correlation_id, key = row[14:]
    try:
        out["payload"] = json.loads(payload_text)
    except ValueError:
        out["payload"] = payload_text
    out.update({"source": source, "occurred_at": occurred_at, "command_id": command_id,
                "causation_id": causation_id, "correlation_id": correlation_id, "idempotency_key": key})
    delivered = dict(uow.all("SELECT handler, delivered_at FROM event_delivery WHERE event_id = ?", (event_id,)))
    names = [h.name for h in handlers_for(out["type"])]
    out["handlers"] = [{"handler": n, "delivered_at": delivered.get(n)} for n in names] + [
        {"handler": n, "delivered_at": at, "registered": False} for n, at in delivered.items() if n not in names]
    out["actions"] = [
        {"at": at, "actor": actor, "action": action, "reason": reason, "details": json.loads(details or "{}")}
        for at, actor, action, reason, details in uow.all(
            "SELECT at, actor, action, reason, details FROM event_action WHERE event_id = ? ORDER BY id", (event_id,))]
    exc = uow.one("SELECT id, status FROM exception_item WHERE record_type = 'event' AND record_id = ?"
                  " ORDER BY id DESC LIMIT 1", (str(event_id),))
    if exc is not None:
        out["exception"] = {"id": int(exc[0]), "status": exc[1]}
    return out


@payload
class EventBacklogQuery:
    pass


@query("event_backlog", EventBacklogQuery,
       summary="Undelivered events: pending (due, backing off, waiting for a prerequisite), dead, oldest")
def event_backlog(uow: Any, q: EventBacklogQuery) -> dict[str, Any]:
    now = uow.now()
    pending = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending'"))
    backing_off = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending' AND next_attempt_at > ?"
                                 " AND attempts > 0", (now,)))
    waiting = int(uow.scalar("SELECT COUNT(*) FROM event WHERE status = 'pending' AND last_error LIKE 'waiting #%'"
                             " AND attempts = 0"))
    # Undelivered events are read through the partial index on status IN ('pending', 'dead') (the clause is
    # repeated verbatim so SQLite sees it applies; grouping in SQL would make it walk the type index of every
    # event ever recorded instead).
    undelivered = "status IN ('pending', 'dead')"
    dead = int(uow.scalar(f"SELECT COUNT(*) FROM event WHERE {undelivered} AND status = 'dead'"))
    oldest = uow.scalar(f"SELECT MIN(recorded_at) FROM event WHERE {undelivered}")
    by_type = dict(sorted(Counter(t for (t,) in uow.all(f"SELECT type FROM event WHERE {undelivered}")).items()))
    return {"pending": pending, "backing_off": backing_off, "waiting": waiting, "dead": dead,
            "oldest_undelivered_at": oldest, "by_type": by_type, "undelivered": pending + dead}
