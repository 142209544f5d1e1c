"""The close cockpit: gated close, overrides, locking, reopening with approval, year-end close.

``close.run`` evaluates every gate of ``config/close.yaml`` for an entity and period,
records the evidence, and locks the period (the ledger's period lock) only when every
gate passes or carries an override approved by someone other than the person closing,
with a reason. The first close action on a period starts its close cycle; the lock ends
it, and the cycle's duration in days feeds the close-cycle KPI. ``period.close`` remains
the plain lock. Reopening a locked period needs a second person's approval and is audited.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from closeloop.close.gates import close_config, gate_fn
from closeloop.core.entities import get_entity
from closeloop.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from closeloop.core.money import format_minor
from closeloop.core.periods import check_period
from closeloop.core.registry import command, payload, query
from closeloop.ledger.model import PROFIT_AND_LOSS
from closeloop.ledger.reports import _by_id, movements
from closeloop.ledger.service import entity_calendar, period_status, set_period_status


def _start_cycle(uow: Any, entity: str, period: str) -> None:
    uow.execute(
        "INSERT INTO close_cycle (entity, period, status, first_action_at, first_action_on) VALUES (?,?,?,?,?)"
        " ON CONFLICT (entity, period) DO NOTHING",
        (entity, period, "in_progress", uow.now(), uow.today().isoformat()))


def evaluate(uow: Any, entity: str, period: str, *, log: bool) -> list[dict[str, Any]]:
    ent = get_entity(uow, entity)
    check_period(period)
    start, end = entity_calendar(uow, entity).bounds(period)
    overrides = {g: (reason, approver) for g, reason, approver in uow.all(
        "SELECT gate, reason, approver FROM close_override WHERE entity = ? AND period = ? ORDER BY id",
        (entity, period))}
    out = []
    for name in close_config()["gates"]:
        passed, evidence = gate_fn(name)(uow, ent, period, start, end)
        item: dict[str, Any] = {"gate": name, "passed": passed is not False, "evidence": evidence,
                                "applicable": passed is not None}
        if passed is False and name in overrides:
            reason, approver = overrides[name]
            item["overridden"] = {"reason": reason, "approver": approver}
        out.append(item)
        if log:
            uow.execute("INSERT INTO close_gate_log (entity, period, gate, passed, evidence, at) VALUES (?,?,?,?,?,?)",
                        (entity, period, name, passed is not False, evidence, uow.now()))
    return out


def _cycle(uow: Any, entity: str, period: str) -> dict[str, Any] | None:
    row = uow.one("SELECT status, first_action_at, first_action_on, locked_at, locked_on, locked_by, cycle_days"
                  " FROM close_cycle WHERE entity = ? AND period = ?", (entity, period))
    if row is None:
        return None
    keys = ("status", "first_action_at", "first_action_on", "locked_at", "locked_on", "locked_by", "cycle_days")
    return dict(zip(keys, row, strict=True))


@payload
class CloseOverride:
    gate: str
    reason: str
    approver: str


@payload
class CloseRun:
    entity: str
    period: str
    overrides: tuple[CloseOverride, ...] = ()


@command("close.run", CloseRun, roles=("controller", "admin"),
         summary="Evaluate the close gates and lock the period when every gate passes or is overridden")
def close_run(uow: Any, cmd: CloseRun) -> dict[str, Any]:
    get_entity(uow, cmd.entity)
    check_period(cmd.period)
    if period_status(uow, cmd.entity, cmd.period) == "closed":
        return {"entity": cmd.entity, "period": cmd.period, "locked": True, "changed": False,
                "gates": evaluate(uow, cmd.entity, cmd.period, log=False)}
    _start_cycle(uow, cmd.entity, cmd.period)
    known = set(close_config()["gates"])
    for o in cmd.overrides:
        if o.gate not in known:
            raise ValidationError(f"unknown gate {o.gate!r}; gates are {', '.join(sorted(known))}",
                                  field="overrides.gate")
        if not o.reason.strip():
            raise ValidationError(f"the override of {o.gate} needs a reason", field="overrides.reason")
        if o.approver == uow.actor:
            raise ForbiddenError(f"{uow.actor} cannot approve an override of their own close ({o.gate});"
                                 " a second person must approve it", field="overrides.approver")
        uow.execute("INSERT INTO close_override (entity, period, gate, reason, approver, requested_by, at)"
                    " VALUES (?,?,?,?,?,?,?)", (cmd.entity, cmd.period, o.gate, o.reason, o.approver, uow.actor,
                                                uow.now()))
    gates = evaluate(uow, cmd.entity, cmd.period, log=True)
    blocking = [g["gate"] for g in gates if not g["passed"] and "overridden" not in g]
    if blocking:
        uow.emit("close.blocked", "period", f"{cmd.entity}:{cmd.period}",
                 {"entity": cmd.entity, "period": cmd.period, "gates": blocking}, entity=cmd.entity)
        return {"entity": cmd.entity, "period": cmd.period, "locked": False, "blocking": blocking, "gates": gates}
    set_period_status(uow, cmd.entity, cmd.period, "closed", "close.run")
    cycle = _cycle(uow, cmd.entity, cmd.period)
    assert cycle is not None
    days = (uow.today() - date.fromisoformat(cycle["first_action_on"])).days
    uow.execute("UPDATE close_cycle SET status = 'locked', locked_at = ?, locked_on = ?, locked_by = ?, cycle_days = ?"
                " WHERE entity = ? AND period = ?", (uow.now(), uow.today().isoformat(), uow.actor, days,
                                                     cmd.entity, cmd.period))
    uow.emit("period.closed", "period", f"{cmd.entity}:{cmd.period}",
             {"entity": cmd.entity, "period": cmd.period, "gated": True, "cycle_days": days}, entity=cmd.entity)
    return {"entity": cmd.entity, "period": cmd.period, "locked": True, "changed": True, "cycle_days": days,
            "gates": gates}


@payload
class CloseStatusQuery:
    entity: str
    period: str


@query("close_status", CloseStatusQuery, summary="Each close gate of a period with its evidence, and the lock")
def close_status(uow: Any, q: CloseStatusQuery) -> dict[str, Any]:
    get_entity(uow, q.entity)
    return {"entity": q.entity, "period": q.period, "locked": period_status(uow, q.entity, q.period) == "closed",
            "gates": evaluate(uow, q.entity, q.period, log=False), "cycle": _cycle(uow, q.entity, q.period)}


@payload
class CloseStart:
    entity: str
    period: str


@command("close.start", CloseStart, roles=("controller", "admin"),
         summary="Start a period's close cycle (the first close action; close.run also starts it)")
def close_start(uow: Any, cmd: CloseStart) -> dict[str, Any]:
    get_entity(uow, cmd.entity)
    check_period(cmd.period)
    _start_cycle(uow, cmd.entity, cmd.period)
    return {"entity": cmd.entity, "period": cmd.period, "cycle": _cycle(uow, cmd.entity, cmd.period)}


# ----------------------------------------------------------------------------- reopen


@payload
class PeriodReopen:
    entity: str
    period: str
    reason: str


@command("period.reopen", PeriodReopen, roles=("controller", "admin"),
         summary="Ask to reopen a locked period (a second person approves with period.reopen_approve)")
def period_reopen(uow: Any, cmd: PeriodReopen) -> dict[str, Any]:
    get_entity(uow, cmd.entity)
    check_period(cmd.period)
    if period_status(uow, cmd.entity, cmd.period) != "closed":
        raise ConflictError(f"{cmd.entity} {cmd.period} is not closed", field="period")
    if not cmd.reason.strip():
        raise ValidationError("reopening a period needs a reason", field="reason")
    if uow.one("SELECT 1 FROM period_reopen WHERE entity = ? AND period = ? AND status = 'pending'",
               (cmd.entity, cmd.period)):
        raise ConflictError(f"a reopening of {cmd.entity} {cmd.period} is already awaiting approval", field="period")
    uow.execute("INSERT INTO period_reopen (entity, period, reason, requested_by, requested_at, status)"
                " VALUES (?,?,?,?,?,'pending')", (cmd.entity, cmd.period, cmd.reason, uow.actor, uow.now()))
    uow.emit("period.reopen_requested", "period", f"{cmd.entity}:{cmd.period}",
             {"entity": cmd.entity, "period": cmd.period, "reason": cmd.reason}, entity=cmd.entity)
    return {"entity": cmd.entity, "period": cmd.period, "status": "pending_approval"}


@payload
class PeriodReopenApprove:
    entity: str
    period: str
    approver: str | None = None


@command("period.reopen_approve", PeriodReopenApprove, roles=("controller", "admin"),
         summary="Approve a requested reopening (not by its requester); the period opens again")
def period_reopen_approve(uow: Any, cmd: PeriodReopenApprove) -> dict[str, Any]:
    row = uow.one("SELECT id, requested_by, reason FROM period_reopen WHERE entity = ? AND period = ?"
                  " AND status = 'pending'", (cmd.entity, cmd.period))
    if row is None:
        raise NotFoundError(f"no reopening of {cmd.entity} {cmd.period} awaits approval", field="period")
    approver = cmd.approver or uow.actor
    if approver == row[1]:
        raise ForbiddenError(f"{approver} asked to reopen {cmd.entity} {cmd.period}; a second person must approve",
                             field="approver")
    uow.execute("UPDATE period_reopen SET status = 'approved', decided_by = ?, decided_at = ? WHERE id = ?",
                (approver, uow.now(), row[0]))
    set_period_status(uow, cmd.entity, cmd.period, "open", f"reopened: {row[2]}")
    uow.execute("UPDATE close_cycle SET status = 'reopened' WHERE entity = ? AND period = ?",
                (cmd.entity, cmd.period))
    uow.emit("period.reopened", "period", f"{cmd.entity}:{cmd.period}",
             {"entity": cmd.entity, "period": cmd.period, "requested_by": row[1], "approved_by": approver,
              "reason": row[2]}, entity=cmd.entity)
    return {"entity": cmd.entity, "period": cmd.period, "status": "open", "approved_by": approver}


# ----------------------------------------------------------------------------- year-end


@payload
class YearEndClose:
    entity: str
    year: int


@command("close.year_end", YearEndClose, roles=("controller", "admin"),
         summary="Roll the fiscal year's profit and loss into retained earnings")
def close_year_end(uow: Any, cmd: YearEndClose) -> dict[str, Any]:
    ent = get_entity(uow, cmd.entity)
    calendar = entity_calendar(uow, ent.code)
    periods = calendar.periods_of_year(cmd.year)
    start, end = calendar.bounds(periods[0])[0], calendar.bounds(periods[-1])[1]
    if uow.one("SELECT 1 FROM year_end_close WHERE entity = ? AND year = ?", (ent.code, cmd.year)):
        raise ConflictError(f"{ent.code} {cmd.year} is already closed into retained earnings", field="year")
    by_id = _by_id(uow, ent.code)
    lines = []
    net = 0
    for account_id, amount in sorted(movements(uow, ent.code, start, end).items(), key=lambda kv: by_id[kv[0]].code):
        acct = by_id[account_id]
        if acct.type in PROFIT_AND_LOSS and amount:
            lines.append({"account": acct.code, "amount": format_minor(-amount, ent.currency)})
            net -= amount
    uow.execute("INSERT INTO year_end_close (entity, year, net_income, closed_at, closed_by) VALUES (?,?,?,?,?)",
                (ent.code, cmd.year, net, uow.now(), uow.actor))
    if lines:
        uow.emit("year_end.closed", "entity", ent.code, {
            "entity": ent.code, "year": cmd.year, "date": end.isoformat(), "currency": ent.currency,
            "net_income": format_minor(net, ent.currency), "lines": lines}, entity=ent.code)
    return {"entity": ent.code, "year": cmd.year, "date": end.isoformat(),
            "net_income": format_minor(net, ent.currency), "accounts_closed": len(lines)}


_ = json
