"""The exception workflow over core's queue: playbooks, age and SLA, assignment, history.

Core keeps the queue itself (``open_exception``, the ``exceptions`` query,
``exception.resolve``). This module adds what the people working it need:

- ``exception`` query: one exception with its history of actions, its age,
  SLA state and the **playbook** of its kind (``docs/playbooks/<kind>.md``:
  what it means, who owns it, how to resolve it);
- ``exception_queue`` query: the queue with age (days since opened, on the
  business calendar), ``overdue`` (past the kind's SLA), and counts by kind;
- ``exception.assign``: give an exception to a person (history records who
  assigned it to whom and why).
"""

from __future__ import annotations

import json
import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from closeloop.core.errors import ConflictError, ValidationError
from closeloop.core.exception_queue import COLUMNS, KINDS, exception_dict, get_exception, kind_config
from closeloop.core.registry import Limit, command, payload, query


def playbook_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("CLOSELOOP_PLAYBOOKS"):
        dirs.append(Path(os.environ["CLOSELOOP_PLAYBOOKS"]))
    import closeloop

    package = Path(closeloop.__file__).resolve().parent
    dirs += [package.parents[1] / "docs" / "playbooks", package / "playbooks"]
    return dirs


@lru_cache(maxsize=32)
def playbook(kind: str) -> str | None:
    """The Markdown playbook of an exception kind, or None when none is shipped."""
    if kind not in KINDS:
        return None
    for folder in playbook_dirs():
        path = folder / f"{kind}.md"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def _age(uow: Any, item: dict[str, Any]) -> dict[str, Any]:
    today = uow.today()
    opened = date.fromisoformat(item["opened_on"])
    end = date.fromisoformat(item["resolved_at"][:10]) if item.get("resolved_at") else today
    now = uow.now()
    overdue = item["status"] == "open" and bool(item.get("due_at")) and now > item["due_at"]
    return {"age_days": max((end - opened).days, 0), "overdue": overdue,
            "sla_hours": int(kind_config()[item["kind"]]["sla_hours"]) if item["kind"] in kind_config() else None}


@payload
class ExceptionQuery:
    exception: int
    playbook: bool = True


@query("exception", ExceptionQuery, summary="One exception with its history, age, SLA state and playbook")
def exception(uow: Any, q: ExceptionQuery) -> dict[str, Any]:
    item = get_exception(uow, q.exception)
    item.update(_age(uow, item))
    item["history"] = [
        {"at": at, "actor": actor, "action": action, "reason": reason, "details": json.loads(details) if details
         else None}
        for at, actor, action, reason, details in uow.all(
            "SELECT at, actor, action, reason, details FROM exception_action WHERE exception_id = ? ORDER BY id",
            (q.exception,))]
    if q.playbook:
        item["playbook"] = playbook(item["kind"])
    return item


@payload
class ExceptionQueueQuery:
    kind: str | None = None
    status: str | None = "open"
    owner_role: str | None = None
    assignee: str | None = None
    entity: str | None = None
    overdue: bool | None = None
    limit: Limit = 200


@query("exception_queue", ExceptionQueueQuery,
       summary="The exception queue with age, SLA and overdue flags, and counts by kind")
def exception_queue(uow: Any, q: ExceptionQueueQuery) -> dict[str, Any]:
    if q.kind is not None and q.kind not in KINDS:
        raise ValidationError(f"unknown exception kind {q.kind!r}; kinds are {', '.join(KINDS)}", field="kind")
    where, params = [], []
    for column, value in (("kind", q.kind), ("status", q.status), ("owner_role", q.owner_role),
                          ("assignee", q.assignee), ("entity", q.entity)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.overdue is not None:
        where.append("status = 'open' AND due_at " + ("<" if q.overdue else ">=") + " ?")
        params.append(uow.now())
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    by_kind = {k: int(n) for k, n in uow.all(f"SELECT kind, COUNT(*) FROM exception_item{clause} GROUP BY kind",
                                             params)}
    rows = uow.all(f"SELECT {COLUMNS} FROM exception_item{clause} ORDER BY due_at, id LIMIT ?",
                   [*params, min(q.limit, 10_000)])
    items = []
    for row in rows:
        item = exception_dict(row)
        item.update(_age(uow, item))
        items.append(item)
    return {"count": sum(by_kind.values()), "by_kind": by_kind,
            "overdue": sum(1 for i in items if i["overdue"]), "items": items}


@payload
class ExceptionAssign:
    exception: int
    assignee: str
    reason: str | None = None


@command("exception.assign", ExceptionAssign, summary="Assign an open exception to a person")
def exception_assign(uow: Any, cmd: ExceptionAssign) -> dict[str, Any]:
    item = get_exception(uow, cmd.exception)
    if item["status"] != "open":
        raise ConflictError(f"exception {cmd.exception} is already {item['status']}", field="exception",
                            record=str(cmd.exception))
    if not cmd.assignee.strip():
        raise ValidationError("assignee must name a person", field="assignee")
    uow.execute("UPDATE exception_item SET assignee = ? WHERE id = ?", (cmd.assignee, cmd.exception))
    uow.execute("INSERT INTO exception_action (exception_id, at, actor, action, reason, details) VALUES (?,?,?,?,?,?)",
                (cmd.exception, uow.now(), uow.actor, "assign", cmd.reason or f"assigned to {cmd.assignee}",
                 json.dumps({"from": item.get("assignee"), "to": cmd.assignee})))
    uow.emit("exception.reassigned", "exception", str(cmd.exception),
             {"id": cmd.exception, "kind": item["kind"], "assignee": cmd.assignee, "previous": item.get("assignee")},
             entity=item["entity"])
    return {"exception": cmd.exception, "assignee": cmd.assignee, "previous": item.get("assignee")}
