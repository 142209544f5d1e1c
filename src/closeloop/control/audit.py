"""The audit trail: every command (refusals included) with who, when, from which source, and its outcome.

The App writes one ``audit_log`` row per command in the command's own
transaction (and one for each refusal, kept when the command rolls back).
The ``audit`` query (and ``closeloop audit``) filters it by actor, command
(exact, or a prefix ending in ``.*``), source, outcome (``ok``, ``refused`` =
anything but ok, or one error code), business or timestamp date range and
correlation id. The ledger's own hash chain is verified as a reconciliation
control (rule ``ledger_audit_chain``).
"""

from __future__ import annotations

import json
from typing import Any

from closeloop.core.periods import parse_date
from closeloop.core.registry import Limit, payload, query


@payload
class AuditQuery:
    actor: str | None = None
    command: str | None = None
    source: str | None = None
    outcome: str | None = None
    since: str | None = None  # YYYY-MM-DD (inclusive), on the recorded timestamp
    until: str | None = None  # YYYY-MM-DD (inclusive)
    correlation_id: str | None = None
    after: int | None = None  # audit ids greater than this (paging)
    limit: Limit = 100
    payloads: bool = True


@query("audit", AuditQuery, roles=("controller", "admin", "implementation", "read_only"),
       summary="The command audit log filtered by actor, command, source, outcome, dates, correlation")
def audit(uow: Any, q: AuditQuery) -> dict[str, Any]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("actor", q.actor), ("source", q.source), ("correlation_id", q.correlation_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.command is not None:
        if q.command.endswith(".*"):
            where.append("command >= ? AND command < ?")
            prefix = q.command[:-1]
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        else:
            where.append("command = ?")
            params.append(q.command)
    if q.outcome is not None:
        if q.outcome == "refused":
            where.append("outcome <> 'ok'")
        else:
            where.append("outcome = ?")
            params.append(q.outcome)
    if q.since is not None:
        where.append("at >= ?")
        params.append(parse_date(q.since, field="since").isoformat())
    if q.until is not None:
        day = parse_date(q.until, field="until").isoformat()
        where.append("at < ?")
        params.append(day + "T99")  # every timestamp of that day sorts below this
    if q.after is not None:
        where.append("id > ?")
        params.append(q.after)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    count = int(uow.scalar(f"SELECT COUNT(*) FROM audit_log{clause}", params))
    rows = uow.all(f"SELECT id, at, business_date, actor, source, command, payload, outcome, result, correlation_id"
                   f" FROM audit_log{clause} ORDER BY id LIMIT ?", [*params, min(q.limit, 10_000)])
    items = []
    for audit_id, at, business_date, actor, source, command, text, outcome, result, corr in rows:
        item: dict[str, Any] = {"id": int(audit_id), "at": at, "business_date": business_date, "actor": actor,
                                "source": source, "command": command, "outcome": outcome,
                                "correlation_id": corr}
        if q.payloads:
            item["payload"] = _json(text)
            if result:
                item["result"] = _json(result)
        items.append(item)
    return {"count": count, "items": items}


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
