"""Disputes: ``dispute.open``, ``dispute.review``, ``dispute.resolve``; queries ``dispute`` and ``disputes``.

Lifecycle (a state machine as data, :data:`TRANSITIONS`): ``opened`` -> ``under_review`` ->
``resolved_credit`` (billing issues a credit memo for the disputed amount) or ``resolved_rejected``.
Each dispute has an owner, a reason code, an SLA due date (``config/collections.yaml``), and a
``dispute`` exception that stays open until it is resolved. While open, its amount is excluded
from dunning. The cycle time (days from opened to resolved) is recorded for the
``dispute_cycle_days_median`` / ``_p90`` KPIs (:func:`cycle_days`).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from closeloop.billing import service as billing
from closeloop.collections.service import PAYMENT_ROLES, fmt, resolve_invoice
from closeloop.collections.settings import settings
from closeloop.core.errors import ConflictError, InsufficientAmountError, NotFoundError, ValidationError
from closeloop.core.exception_queue import close_exception, open_exception
from closeloop.core.money import to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query

STATUSES = ("opened", "under_review", "resolved_credit", "resolved_rejected")
OPEN = ("opened", "under_review")
TRANSITIONS = {
    "opened": {"under_review", "resolved_credit", "resolved_rejected"},
    "under_review": {"resolved_credit", "resolved_rejected"},
}
OUTCOMES = {"credit": "resolved_credit", "rejected": "resolved_rejected"}
_COLS = ("dispute_id, invoice, entity, customer, currency, amount, reason, reason_code, owner, status, opened,"
         " review_started, resolved, sla_due, cycle_days, credit_memo, resolution_note, provider_ref, exception_id")
_FIELDS = [c.strip() for c in _COLS.split(",")]


def get_dispute(uow: Any, dispute_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = uow.one(f"SELECT {_COLS} FROM collections_dispute WHERE dispute_id = ?{uow.for_update() if lock else ''}",
                  (dispute_id,))
    if row is None:
        raise NotFoundError(f"dispute {dispute_id!r} does not exist", field="dispute_id", record=dispute_id)
    return dict(zip(_FIELDS, row, strict=True))


def _move(d: dict[str, Any], to: str) -> None:
    if to not in TRANSITIONS.get(d["status"], set()):
        raise ConflictError(f"dispute {d['dispute_id']} is {d['status']}; it cannot become {to}",
                            field="dispute_id", record=d["dispute_id"], status=d["status"])


def open_dispute(uow: Any, dispute_id: str, inv: dict[str, Any], amount: int, reason: str, *,
                 reason_code: str | None = None, owner: str | None = None, provider_ref: str | None = None,
                 day: str | None = None) -> dict[str, Any]:
    cfg = settings()["disputes"]
    if uow.one("SELECT 1 FROM collections_dispute WHERE dispute_id = ?", (dispute_id,)):
        raise ConflictError(f"dispute {dispute_id} already exists", field="dispute_id", record=dispute_id)
    if inv["status"] in ("held", "void"):
        raise ValidationError(f"invoice {inv['number']} is {inv['status']}: only issued invoices are disputed",
                              field="invoice", record=inv["number"])
    cur = inv["currency"]
    if amount <= 0:
        raise ValidationError("a disputed amount is positive", field="amount")
    already = int(uow.scalar("SELECT COALESCE(SUM(amount), 0) FROM collections_dispute WHERE invoice = ? AND status IN"
                             " ('opened', 'under_review')", (inv["number"],)) or 0)
    if amount + already > int(inv["total"]):
        raise InsufficientAmountError(f"{fmt(amount, cur)} (plus {fmt(already, cur)} already disputed) is more than"
                                      f" invoice {inv['number']}'s total {fmt(int(inv['total']), cur)}",
                                      field="amount", record=inv["number"])
    code = (reason_code or "general").lower()
    if code not in cfg["reason_codes"]:
        raise ValidationError(f"reason_code {code!r} must be one of {', '.join(cfg['reason_codes'])}",
                              field="reason_code")
    opened = day or uow.today().isoformat()
    sla_due = (date.fromisoformat(opened) + timedelta(days=int(cfg["sla_days"]))).isoformat()
    owner = owner or str(cfg["default_owner"])
    exception_id = open_exception(
        uow, "dispute", record_type="dispute", record_id=dispute_id, entity=inv["entity"], amount=amount,
        currency=cur, message=f"{inv['customer']} disputes {fmt(amount, cur)} {cur} of invoice {inv['number']}:"
                              f" {reason} ({code}); owner {owner}, resolve by {sla_due} with dispute.resolve"
                              " (credit or rejected)",
        details={"invoice": inv["number"], "reason_code": code, "owner": owner, "sla_due": sla_due},
        dedup_key=f"dispute:{dispute_id}")
    uow.execute(f"INSERT INTO collections_dispute ({_COLS}, created_at) VALUES"
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (dispute_id, inv["number"], inv["entity"], inv["customer"], cur, amount, reason, code, owner, "opened",
                 opened, None, None, sla_due, None, None, None, provider_ref, exception_id, uow.now()))
    uow.emit("dispute.opened", "dispute", dispute_id, {
        "dispute_id": dispute_id, "invoice": inv["number"], "customer": inv["customer"], "entity": inv["entity"],
        "currency": cur, "amount": fmt(amount, cur), "reason": reason, "reason_code": code, "owner": owner,
        "date": opened, "sla_due": sla_due}, entity=inv["entity"])
    return dispute_view(get_dispute(uow, dispute_id))


def resolve_dispute(uow: Any, d: dict[str, Any], outcome: str, *, amount: int | None = None,
                    note: str | None = None, day: str | None = None) -> dict[str, Any]:
    if outcome not in OUTCOMES:
        raise ValidationError(f"outcome {outcome!r} must be credit or rejected", field="outcome")
    status = OUTCOMES[outcome]
    _move(d, status)
    resolved = day or uow.today().isoformat()
    if resolved < d["opened"] or resolved > uow.today().isoformat():
        raise ValidationError(f"dispute {d['dispute_id']} opened on {d['opened']}: its resolution date {resolved}"
                              " must be on or after that and not in the future", field="date")
    credit_memo = None
    cur = d["currency"]
    if outcome == "credit":
        credit = int(d["amount"]) if amount is None else amount
        if credit <= 0 or credit > int(d["amount"]):
            raise InsufficientAmountError(f"a credit of {fmt(credit, cur)} must be positive and at most the disputed"
                                          f" {fmt(int(d['amount']), cur)}", field="amount", record=d["dispute_id"])
        inv = billing.find_invoice(uow, d["invoice"])
        total, subtotal = int(inv["total"]), int(inv["subtotal"])
        # the disputed amount includes tax: credit its net share, billing reverses the tax proportionally
        net = credit if total == subtotal or total == 0 else int(
            (Decimal(credit) * subtotal / total).to_integral_value(rounding=ROUND_HALF_UP))
        memo = billing.issue_credit_memo(uow, d["invoice"], amount_minor=net,
                                         reason=f"dispute {d['dispute_id']}: {d['reason']}", source="dispute.resolve")
        credit_memo = memo.get("credit_memo") or memo.get("number")
        from closeloop.collections.dunning import stop_dunning

        after = billing.find_invoice(uow, d["invoice"])
        if after["status"] not in ("open", "partially_paid"):
            stop_dunning(uow, [d["invoice"]], f"credited by dispute {d['dispute_id']}")
    cycle = (date.fromisoformat(resolved) - date.fromisoformat(d["opened"])).days
    uow.execute("UPDATE collections_dispute SET status = ?, resolved = ?, cycle_days = ?, credit_memo = ?,"
                " resolution_note = ? WHERE dispute_id = ?", (status, resolved, cycle, credit_memo, note,
                                                             d["dispute_id"]))
    if d["exception_id"]:
        close_exception(uow, int(d["exception_id"]), "resolved", f"dispute {outcome}" + (f": {note}" if note else ""))
    uow.emit("dispute.resolved", "dispute", d["dispute_id"], {
        "dispute_id": d["dispute_id"], "invoice": d["invoice"], "customer": d["customer"], "entity": d["entity"],
        "outcome": outcome, "status": status, "amount": fmt(int(d["amount"]), cur), "currency": cur,
        "credit_memo": credit_memo, "date": resolved, "cycle_days": cycle}, entity=d["entity"])
    return dispute_view(get_dispute(uow, d["dispute_id"]))


def dispute_view(d: dict[str, Any]) -> dict[str, Any]:
    cur = d["currency"]
    out = {"dispute_id": d["dispute_id"], "invoice": d["invoice"], "customer": d["customer"], "entity": d["entity"],
           "status": d["status"],
           "amount": fmt(int(d["amount"]), cur), "currency": cur, "reason": d["reason"],
           "reason_code": d["reason_code"], "owner": d["owner"], "opened": d["opened"], "sla_due": d["sla_due"],
           "review_started": d["review_started"], "resolved": d["resolved"], "cycle_days": d["cycle_days"],
           "credit_memo": d["credit_memo"], "provider_ref": d["provider_ref"]}
    return out


@payload
class DisputeOpen:
    dispute_id: str
    invoice: Any
    amount: Decimal
    reason: str
    reason_code: str | None = None
    owner: str | None = None
    date: str | None = None  # the day the customer raised it (default today)


@command("dispute.open", DisputeOpen, roles=PAYMENT_ROLES, summary="Open a dispute on (part of) an invoice")
def dispute_open(uow: Any, cmd: DisputeOpen) -> dict[str, Any]:
    if not cmd.dispute_id.strip() or len(cmd.dispute_id) > 128:
        raise ValidationError("dispute_id is required (at most 128 characters)", field="dispute_id")
    if not cmd.reason.strip():
        raise ValidationError("say what the customer disputes", field="reason")
    inv = resolve_invoice(uow, cmd.invoice)
    day = parse_date(cmd.date).isoformat() if cmd.date else None
    if day and day > uow.today().isoformat():
        raise ValidationError(f"date {day} is in the future", field="date")
    return open_dispute(uow, cmd.dispute_id.strip(), inv, to_minor(cmd.amount, inv["currency"]), cmd.reason.strip(),
                        reason_code=cmd.reason_code, owner=cmd.owner, day=day)


@payload
class DisputeReview:
    dispute_id: str
    owner: str | None = None


@command("dispute.review", DisputeReview, roles=PAYMENT_ROLES, summary="Start reviewing a dispute (optionally re-own it)")
def dispute_review(uow: Any, cmd: DisputeReview) -> dict[str, Any]:
    d = get_dispute(uow, cmd.dispute_id, lock=True)
    _move(d, "under_review")
    uow.execute("UPDATE collections_dispute SET status = 'under_review', review_started = ?, owner = ?"
                " WHERE dispute_id = ?", (uow.today().isoformat(), cmd.owner or d["owner"], d["dispute_id"]))
    uow.emit("dispute.under_review", "dispute", d["dispute_id"], {"dispute_id": d["dispute_id"],
             "owner": cmd.owner or d["owner"], "date": uow.today().isoformat()}, entity=d["entity"])
    return dispute_view(get_dispute(uow, d["dispute_id"]))


@payload
class DisputeResolve:
    dispute_id: str
    outcome: str
    amount: Decimal | None = None
    note: str | None = None
    date: str | None = None  # the day it was resolved (default today)


@command("dispute.resolve", DisputeResolve, roles=PAYMENT_ROLES,
         summary="Resolve a dispute: credit (a credit memo for the disputed amount) or rejected")
def dispute_resolve(uow: Any, cmd: DisputeResolve) -> dict[str, Any]:
    d = get_dispute(uow, cmd.dispute_id, lock=True)
    amount = None if cmd.amount is None else to_minor(cmd.amount, d["currency"])
    return resolve_dispute(uow, d, cmd.outcome, amount=amount, note=cmd.note,
                           day=parse_date(cmd.date).isoformat() if cmd.date else None)


@payload
class DisputeQuery:
    dispute_id: str


@query("dispute", DisputeQuery, summary="One dispute: status, amount, opened, resolved, cycle_days")
def dispute_query(uow: Any, q: DisputeQuery) -> dict[str, Any]:
    return dispute_view(get_dispute(uow, q.dispute_id))


def percentile(values: list[int], pct: int) -> Decimal | None:
    """Nearest-rank percentile (pct of 50 = the median by the lower-middle rule for even counts)."""
    if not values:
        return None
    ordered = sorted(values)
    if pct == 50:
        mid = len(ordered) // 2
        value = Decimal(ordered[mid]) if len(ordered) % 2 else (Decimal(ordered[mid - 1]) + ordered[mid]) / 2
        return value.quantize(Decimal("0.1"))
    rank = max(1, -(-pct * len(ordered) // 100))
    return Decimal(ordered[rank - 1]).quantize(Decimal("0.1"))


def cycle_days(uow: Any, *, start: str | None = None, end: str | None = None) -> list[int]:
    """Cycle times (days) of the disputes resolved in [start, end] (ISO dates, inclusive)."""
    sql = "SELECT cycle_days FROM collections_dispute WHERE resolved IS NOT NULL"
    params: list[Any] = []
    if start:
        sql += " AND resolved >= ?"
        params.append(start)
    if end:
        sql += " AND resolved <= ?"
        params.append(end)
    return [int(r[0]) for r in uow.all(sql, params)]


@payload
class DisputesQuery:
    status: str | None = None
    customer: str | None = None
    invoice: str | None = None


@query("disputes", DisputesQuery, summary="Disputes with their status, owner, SLA and cycle-time statistics")
def disputes_query(uow: Any, q: DisputesQuery) -> dict[str, Any]:
    where, params = [], []
    for column, value in (("status", q.status), ("customer", q.customer), ("invoice", q.invoice)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    rows = uow.all(f"SELECT {_COLS} FROM collections_dispute" + (" WHERE " + " AND ".join(where) if where else "")
                   + " ORDER BY opened, dispute_id", params)
    items = [dispute_view(dict(zip(_FIELDS, r, strict=True))) for r in rows]
    cycles = [int(i["cycle_days"]) for i in items if i["cycle_days"] is not None]
    today = uow.today().isoformat()
    median = percentile(cycles, 50)
    p90 = percentile(cycles, 90)
    return {"count": len(items), "open": sum(1 for i in items if i["status"] in OPEN),
            "overdue": sum(1 for i in items if i["status"] in OPEN and i["sla_due"] < today),
            "cycle_days_median": str(median) if median is not None else None,
            "cycle_days_p90": str(p90) if p90 is not None else None, "disputes": items, "items": items}
