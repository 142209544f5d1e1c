"""The variations register: a local deviation from the standard process is active only while an
approved variation record covers it.

A variation (a regional billing rule, a country tax rule, a business-unit approval rule, a
CRM stage) is registered with its classification (strategic, regulatory, legacy), owner,
reason and review date; a second person approves it. Areas that apply a local deviation
ask :func:`variation_active` first. ``variations.review`` (a dated run) expires variations
past their review date and opens a ``variation_expired`` exception for each.
"""

from __future__ import annotations

from typing import Any

from closeloop.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from closeloop.core.exception_queue import open_exception
from closeloop.core.periods import iso, parse_date
from closeloop.core.registry import command, payload, query

CLASSIFICATIONS = ("strategic", "regulatory", "legacy")
AREAS = ("billing", "tax", "approval", "crm", "collections", "revenue", "ledger")


def variation_active(uow: Any, variation_id: str) -> bool:
    """True while the variation is approved and not past its review date."""
    row = uow.one("SELECT status, review_date FROM variation WHERE variation_id = ?", (variation_id,))
    return bool(row) and row[0] == "approved" and row[1] >= uow.today().isoformat()


@payload
class VariationRegister:
    variation_id: str
    title: str
    area: str
    scope: str
    classification: str
    owner: str
    reason: str
    review_date: str


@command("variation.register", VariationRegister, roles=("implementation", "admin", "controller"),
         summary="Register a local deviation from the standard process (needs a second person's approval)")
def variation_register(uow: Any, cmd: VariationRegister) -> dict[str, Any]:
    if cmd.classification not in CLASSIFICATIONS:
        raise ValidationError(f"classification must be one of {', '.join(CLASSIFICATIONS)}", field="classification")
    if cmd.area not in AREAS:
        raise ValidationError(f"area must be one of {', '.join(AREAS)}", field="area")
    review = iso(parse_date(cmd.review_date, field="review_date"))
    if review <= uow.today().isoformat():
        raise ValidationError("the review date must be in the future", field="review_date")
    if not cmd.reason.strip():
        raise ValidationError("a variation needs a reason", field="reason")
    if uow.one("SELECT 1 FROM variation WHERE variation_id = ?", (cmd.variation_id,)):
        raise ConflictError(f"variation {cmd.variation_id} already exists", field="variation_id")
    uow.execute("INSERT INTO variation (variation_id, title, area, scope, classification, owner, reason, review_date,"
                " status, proposed_by, created_at) VALUES (?,?,?,?,?,?,?,?,'proposed',?,?)",
                (cmd.variation_id, cmd.title, cmd.area, cmd.scope, cmd.classification, cmd.owner, cmd.reason, review,
                 uow.actor, uow.now()))
    uow.emit("variation.registered", "variation", cmd.variation_id, {"variation_id": cmd.variation_id,
             "classification": cmd.classification, "area": cmd.area, "scope": cmd.scope})
    return {"variation_id": cmd.variation_id, "status": "proposed"}


@payload
class VariationDecide:
    variation_id: str
    approver: str | None = None


@command("variation.approve", VariationDecide, roles=("implementation", "admin", "controller"),
         summary="Approve a registered variation (not by the person who registered it)")
def variation_approve(uow: Any, cmd: VariationDecide) -> dict[str, Any]:
    row = uow.one("SELECT status, proposed_by FROM variation WHERE variation_id = ?", (cmd.variation_id,))
    if row is None:
        raise NotFoundError(f"variation {cmd.variation_id} does not exist", field="variation_id")
    if row[0] != "proposed":
        raise ConflictError(f"variation {cmd.variation_id} is already {row[0]}", field="variation_id")
    approver = cmd.approver or uow.actor
    if approver == row[1]:
        raise ForbiddenError(f"{approver} registered variation {cmd.variation_id}; a second person must approve it",
                             field="approver")
    uow.execute("UPDATE variation SET status = 'approved', approved_by = ? WHERE variation_id = ?",
                (approver, cmd.variation_id))
    uow.emit("variation.approved", "variation", cmd.variation_id, {"variation_id": cmd.variation_id,
             "approved_by": approver})
    return {"variation_id": cmd.variation_id, "status": "approved", "approved_by": approver}


@payload
class VariationsReview:
    as_of: str | None = None


@command("variations.review", VariationsReview, roles=("implementation", "admin", "controller"),
         summary="Expire variations past their review date, each with a variation_expired exception")
def variations_review(uow: Any, cmd: VariationsReview) -> dict[str, Any]:
    day = iso(parse_date(cmd.as_of, field="as_of")) if cmd.as_of else uow.today().isoformat()
    expired = []
    for variation_id, owner, review in uow.all(
            "SELECT variation_id, owner, review_date FROM variation WHERE status = 'approved' AND review_date < ?",
            (day,)):
        uow.execute("UPDATE variation SET status = 'expired' WHERE variation_id = ?", (variation_id,))
        open_exception(uow, "variation_expired", record_type="variation", record_id=variation_id,
                       message=f"variation {variation_id} passed its review date {review}; renew or retire it"
                               f" (owner {owner})", dedup_key=f"variation:{variation_id}")
        expired.append(variation_id)
    return {"as_of": day, "expired": expired}


@payload
class VariationsQuery:
    status: str | None = None


@query("variations", VariationsQuery, summary="The variations register")
def variations(uow: Any, q: VariationsQuery) -> dict[str, Any]:
    sql = ("SELECT variation_id, title, area, scope, classification, owner, reason, review_date, status, proposed_by,"
           " approved_by FROM variation")
    params: list[Any] = []
    if q.status:
        sql += " WHERE status = ?"
        params.append(q.status)
    keys = ("variation_id", "title", "area", "scope", "classification", "owner", "reason", "review_date", "status",
            "proposed_by", "approved_by")
    items = [dict(zip(keys, row, strict=True)) for row in uow.all(sql + " ORDER BY variation_id", params)]
    today = uow.today().isoformat()
    for item in items:
        item["active"] = item["status"] == "approved" and item["review_date"] >= today
    by_class = {c: sum(1 for i in items if i["classification"] == c) for c in CLASSIFICATIONS}
    return {"count": len(items), "items": items, "by_classification": by_class}
