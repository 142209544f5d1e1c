"""Quotes and contracts: quote list and detail (versions, approval rules and status, approve and accept),
contract list and detail as of a date (TCV/ACV/MRR, lines, terms) with the amendments timeline.

Queries: quotes, quote (with version), contracts, contract (with as_of), contract_history, subscriptions,
revenue_schedule. Commands: quote.approve (the approver is the signed-in user), quote.accept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.web.kit import (
    NavEntry,
    can,
    entity_choice,
    form_action,
    page,
    paginate,
    parse_day,
    per_entity,
    redirect,
    render,
    run_command,
    run_query,
)

nav = NavEntry("Contracts", "/contracts", order=30, also=("/quotes",))
router = APIRouter()
QUOTE_STATUSES = ("pending_approval", "approved", "accepted")
CONTRACT_STATUSES = ("active", "cancelled", "expired")


@router.get("/quotes")
@page
def quotes(request: Request) -> Response:
    q = request.query_params
    filters = {"customer": q.get("customer", "").strip(), "status": q.get("status", "")}
    items = run_query(request, "quotes", filters)["items"]
    rows, pager = paginate(list(reversed(items)), request)
    pending = sum(1 for i in items if i["status"] == "pending_approval")
    return render(request, "quotes.html", tab="quotes", rows=rows, pager=pager, filters=filters, pending=pending,
                  statuses=QUOTE_STATUSES)


@router.get("/quotes/{quote_id}")
@page
def quote(request: Request, quote_id: str) -> Response:
    version = request.query_params.get("version") or None
    if version is not None and not version.isdigit():
        raise ValidationError("version must be a whole number", field="version")
    current = run_query(request, "quote", {"quote_id": quote_id})
    shown = current if version is None or int(version) == current["current_version"] else \
        run_query(request, "quote", {"quote_id": quote_id, "version": int(version)})
    return render(request, "quote.html", tab="quotes", q=shown, current=current,
                  can_approve=can(request, "quote.approve") and current["status"] == "pending_approval",
                  can_accept=can(request, "quote.accept") and current["status"] == "approved")


@router.post("/quotes/{quote_id}/approve")
@form_action
def approve(request: Request, form: dict[str, Any], quote_id: str) -> Response:
    payload: dict[str, Any] = {"quote_id": quote_id, "approver": request.state.user.name}  # only oneself
    if form.get("comment"):
        payload["comment"] = form["comment"]
    result = run_command(request, "quote.approve", payload)
    pending = ", ".join(result.get("pending_approvals") or [])
    return redirect(f"/quotes/{quote_id}", flash=f"approved by {request.state.user.name}: quote is {result['status']}"
                    + (f" (still needs {pending})" if pending else ""))


@router.post("/quotes/{quote_id}/accept")
@form_action
def accept(request: Request, form: dict[str, Any], quote_id: str) -> Response:
    contract_id = form.get("contract_id", "").strip()
    if not contract_id:
        raise ValidationError("name the new contract", field="contract_id")
    result = run_command(request, "quote.accept", {"quote_id": quote_id, "contract_id": contract_id})
    return redirect(f"/contracts/{result['contract_id']}", flash=f"quote {quote_id} accepted: contract"
                    f" {result['contract_id']} is {result['status']}")


@router.get("/contracts")
@page
def contracts(request: Request) -> Response:
    q = request.query_params
    entities, entity = entity_choice(request)
    as_of = parse_day(q.get("as_of"), "as_of")
    filters = {"customer": q.get("customer", "").strip(), "status": q.get("status", ""), "as_of": as_of}
    items = per_entity(request, "contracts", filters, entity)
    rows, pager = paginate(items, request)
    totals: dict[str, dict[str, Any]] = {}
    from decimal import Decimal

    for i in items:
        if i["status"] != "active":
            continue
        t = totals.setdefault(i["currency"], {"tcv": Decimal(0), "acv": Decimal(0), "mrr": Decimal(0), "count": 0})
        for k in ("tcv", "acv", "mrr"):
            t[k] += Decimal(str(i.get(k) or 0))
        t["count"] += 1
    return render(request, "contracts.html", tab="contracts", rows=rows, pager=pager, filters=filters,
                  entities=entities, entity=entity, totals=totals, statuses=CONTRACT_STATUSES)


@router.get("/contracts/{contract_id}")
@page
def contract(request: Request, contract_id: str) -> Response:
    as_of = parse_day(request.query_params.get("as_of"), "as_of")
    view = run_query(request, "contract", {"contract_id": contract_id, "as_of": as_of})
    history = run_query(request, "contract_history", {"contract_id": contract_id})["items"]
    schedule = None
    try:
        schedule = run_query(request, "revenue_schedule", {"contract": contract_id})
    except CloseloopError:
        schedule = None  # revenue has no schedule yet (or the user may not read it)
    return render(request, "contract.html", tab="contracts", k=view, history=history, as_of=as_of or "",
                  schedule=schedule)
