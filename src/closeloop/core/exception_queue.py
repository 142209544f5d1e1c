"""The exception queue: one model for every difference that needs a person.

Any area opens an exception with :func:`open_exception` (kind, the record it
concerns, a message naming what is wrong, amount at stake); the kind's owner
role, severity and SLA come from ``config/exceptions.yaml``. A ``dedup_key``
makes re-detection idempotent: the open exception is updated, not doubled.
Resolution actions (``exception.resolve``: retry, release, accept, adjust,
reassign) are recorded in the exception's history; an area can attach what
an action does for its kind with :func:`on_resolve` (e.g. billing releases a
held invoice on ``release``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.money import format_minor
from closeloop.core.registry import Limit, command, payload, query
from closeloop.core.uow import dumps

KINDS = (
    "sync_failed", "not_owner", "recon_break", "tax_undetermined", "dispute", "low_confidence_match",
    "import_rejected", "unposted_event", "opportunity_unconvertible", "variation_expired",
)
ACTIONS = ("retry", "release", "accept", "adjust", "reassign")

_RESOLVERS: dict[tuple[str, str], Callable[[Any, dict[str, Any], Any], dict[str, Any] | None]] = {}


@lru_cache(maxsize=1)
def kind_config() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((resources.files("closeloop") / "config" / "exceptions.yaml").read_text())
    kinds = data["kinds"]
    missing = set(KINDS) - set(kinds)
    if missing:
        raise RuntimeError(f"config/exceptions.yaml lacks kinds {sorted(missing)}")
    return dict(kinds)


def on_resolve(kind: str, action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach an area's effect to a resolution action: ``fn(uow, exception, cmd) -> dict | None``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        _RESOLVERS[(kind, action)] = fn
        return fn

    return register


def open_exception(
    uow: Any,
    kind: str,
    *,
    record_type: str,
    record_id: str,
    message: str,
    entity: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    details: dict[str, Any] | None = None,
    dedup_key: str | None = None,
    severity: str | None = None,
    owner_role: str | None = None,
) -> int:
    """Open (or, with the same open ``dedup_key``, update) an exception; returns its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown exception kind {kind!r}")
    cfg = kind_config()[kind]
    if dedup_key:
        row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'", (dedup_key,))
        if row:
            uow.execute("UPDATE exception_item SET message = ?, amount = ?, currency = ?, details = ? WHERE id = ?",
                        (message, amount, currency, dumps(details) if details else None, row[0]))
            return int(row[0])
    now = uow.now()
    due = (datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(hours=int(cfg["sla_hours"])))
    exc_id = uow.scalar(
        "INSERT INTO exception_item (kind, status, severity, owner_role, entity, record_type, record_id, message,"
        " amount, currency, details, dedup_key, opened_at, opened_on, due_at, correlation_id)"
        " VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (kind, severity or cfg["severity"], owner_role or cfg["owner_role"], entity, record_type, str(record_id),
         message, amount, currency, dumps(details) if details else None, dedup_key, now, uow.today().isoformat(),
         due.isoformat(timespec="seconds").replace("+00:00", "Z"), uow.correlation_id),
    )
    uow.execute("INSERT INTO exception_action (exception_id, at, actor, action, reason) VALUES (?,?,?,?,?)",
                (exc_id, now, uow.actor, "opened", message))
    uow.emit("exception.opened", "exception", str(exc_id), {"id": int(exc_id), "kind": kind, "record_type":
             record_type, "record_id": str(record_id), "entity": entity}, entity=entity)
    return int(exc_id)


def close_exception(uow: Any, exception_id: int, resolution: str, reason: str) -> None:
    """Mark resolved (used by areas that auto-close, e.g. a reconciliation break that no longer exists)."""
    uow.execute(
        "UPDATE exception_item SET status = 'resolved', resolved_at = ?, resolved_on = ?, resolution = ?"
        " WHERE id = ? AND status = 'open'", (uow.now(), uow.today().isoformat(), resolution, exception_id))
    uow.execute("INSERT INTO exception_action (exception_id, at, actor, action, reason) VALUES (?,?,?,?,?)",
                (exception_id, uow.now(), uow.actor, resolution, reason))


COLUMNS = ("id, kind, status, severity, owner_role, assignee, entity, record_type, record_id, message, amount,"
           " currency, details, opened_at, opened_on, due_at, resolved_at, resolution")


def exception_dict(row: Any) -> dict[str, Any]:
    (exc_id, kind, status, severity, owner, assignee, entity, rtype, rid, message, amount, currency, details,
     opened_at, opened_on, due_at, resolved_at, resolution) = row
    item = {"id": int(exc_id), "kind": kind, "status": status, "severity": severity, "owner_role": owner,
            "assignee": assignee, "entity": entity, "record": {rtype: rid}, "message": message,
            "opened_at": opened_at, "opened_on": opened_on, "due_at": due_at, "resolved_at": resolved_at,
            "resolution": resolution, "details": json.loads(details) if details else {}}
    if amount is not None:
        item["amount"] = format_minor(int(amount), currency) if currency else str(amount)
        item["currency"] = currency
    return item


def get_exception(uow: Any, exception_id: int) -> dict[str, Any]:
    row = uow.one(f"SELECT {COLUMNS} FROM exception_item WHERE id = ?", (exception_id,))
    if row is None:
        raise NotFoundError(f"exception {exception_id} does not exist", field="exception", record=str(exception_id))
    return exception_dict(row)


@payload
class ExceptionsQuery:
    kind: str | None = None
    status: str | None = None
    owner_role: str | None = None
    entity: str | None = None
    record_type: str | None = None
    record_id: str | None = None
    limit: Limit = 500


@query("exceptions", ExceptionsQuery, summary="The exception queue, filtered by kind, status, owner, entity, record")
def exceptions(uow: Any, q: ExceptionsQuery) -> dict[str, Any]:
    if q.kind is not None and q.kind not in KINDS:
        raise ValidationError(f"unknown exception kind {q.kind!r}; kinds are {', '.join(KINDS)}", field="kind")
    where, params = [], []
    for column, value in (("kind", q.kind), ("status", q.status), ("owner_role", q.owner_role),
                          ("entity", q.entity), ("record_type", q.record_type), ("record_id", q.record_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {COLUMNS} FROM exception_item"
    if where:
        sql += " WHERE " + " AND ".join(where)
    count = uow.scalar("SELECT COUNT(*) FROM exception_item" + (" WHERE " + " AND ".join(where) if where else ""),
                       params)
    rows = uow.all(sql + " ORDER BY id LIMIT ?", [*params, min(q.limit, 10_000)])
    return {"count": int(count), "items": [exception_dict(r) for r in rows]}


@payload
class ExceptionResolve:
    exception: int
    action: str
    reason: str
    assignee: str | None = None


@command("exception.resolve", ExceptionResolve, summary="Act on an exception: retry, release, accept, adjust, reassign")
def exception_resolve(uow: Any, cmd: ExceptionResolve) -> dict[str, Any]:
    if cmd.action not in ACTIONS:
        raise ValidationError(f"action {cmd.action!r} must be one of {', '.join(ACTIONS)}", field="action")
    if not cmd.reason.strip():
        raise ValidationError("a reason is required to act on an exception", field="reason")
    item = get_exception(uow, cmd.exception)
    if item["status"] != "open":
        raise ConflictError(f"exception {cmd.exception} is already {item['status']}", field="exception",
                            record=str(cmd.exception))
    outcome: dict[str, Any] = {}
    if cmd.action == "reassign":
        if not cmd.assignee:
            raise ValidationError("reassign needs an assignee", field="assignee")
        uow.execute("UPDATE exception_item SET assignee = ? WHERE id = ?", (cmd.assignee, cmd.exception))
    else:
        effect = _RESOLVERS.get((item["kind"], cmd.action))
        if effect is None and cmd.action in ("retry", "release", "adjust"):
            raise ValidationError(f"action {cmd.action} does not apply to a {item['kind']} exception"
                                  " (use accept with a reason, or reassign)", field="action")
        if effect is not None:
            outcome = effect(uow, item, cmd) or {}
        uow.execute(
            "UPDATE exception_item SET status = 'resolved', resolved_at = ?, resolved_on = ?, resolution = ?"
            " WHERE id = ?", (uow.now(), uow.today().isoformat(), cmd.action, cmd.exception))
    uow.execute("INSERT INTO exception_action (exception_id, at, actor, action, reason, details) VALUES (?,?,?,?,?,?)",
                (cmd.exception, uow.now(), uow.actor, cmd.action, cmd.reason, dumps(outcome) if outcome else None))
    uow.emit("exception.resolved" if cmd.action != "reassign" else "exception.reassigned", "exception",
             str(cmd.exception), {"id": cmd.exception, "kind": item["kind"], "action": cmd.action,
                                  "reason": cmd.reason}, entity=item["entity"])
    return {"exception": cmd.exception, "status": "open" if cmd.action == "reassign" else "resolved",
            "action": cmd.action, **outcome}
