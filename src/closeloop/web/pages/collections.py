"""Collections: AR aging by bucket as of a date, dunning status of overdue invoices (and a dated dunning run),
disputes (open, review, resolve with the cycle-time figures), payments and unapplied cash.

Queries: ar_aging, dunning, collection_emails, disputes, dispute, payments, payment, invoice.
Commands: dunning.run, dispute.open, dispute.review, dispute.resolve, payment.apply.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.web.charts import bar_chart
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
    today,
)

nav = NavEntry("Collections", "/collections", order=50)
router = APIRouter()
BUCKETS = (("current", "Current"), ("d1_30", "1–30 days"), ("d31_60", "31–60 days"), ("d61_90", "61–90 days"),
           ("over_90", "Over 90 days"))
DISPUTE_STATUSES = ("opened", "under_review", "resolved_credit", "resolved_rejected")
REASON_CODES = ("billing_error", "service_issue", "pricing", "duplicate", "fraudulent", "product_not_received",
                "not_as_described", "general", "other")


def _entity(request: Request) -> tuple[list[dict[str, Any]], str | None]:
    """Aging and dunning are per entity (one functional currency): the chosen one, else the first visible."""
    entities, entity = entity_choice(request)
    return entities, entity or (entities[0]["code"] if entities else None)


@router.get("/collections")
@page
def aging(request: Request) -> Response:
    entities, entity = _entity(request)
    as_of = parse_day(request.query_params.get("as_of"), "as_of") or today(request).isoformat()
    report = run_query(request, "ar_aging", {"as_of": as_of, "entity": entity}) if entity else None
    chart = None
    rows: list[dict[str, Any]] = []
    pager = None
    bucket = request.query_params.get("bucket") or ""
    if report:
        chart = bar_chart([(label, report[key]) for key, label in BUCKETS], title="AR aging by bucket")
        items = [i for i in report.get("invoices", []) if not bucket or i["bucket"] == bucket]
        items.sort(key=lambda i: (-int(i.get("days_past_due") or 0), i["invoice"]))
        rows, pager = paginate(items, request)
    return render(request, "collections_aging.html", tab="aging", entities=entities, entity=entity, as_of=as_of,
                  report=report, chart=chart, rows=rows, pager=pager, buckets=BUCKETS, bucket=bucket)


@router.get("/collections/dunning")
@page
def dunning(request: Request) -> Response:
    entities, entity = _entity(request)
    as_of = today(request).isoformat()
    report = run_query(request, "ar_aging", {"as_of": as_of, "entity": entity}) if entity else None
    overdue = [i for i in (report or {}).get("invoices", []) if int(i.get("days_past_due") or 0) > 0]
    overdue.sort(key=lambda i: (-int(i["days_past_due"]), i["invoice"]))
    rows, pager = paginate(overdue, request)
    for row in rows:  # the dunning case of each invoice on the page only
        try:
            row["dunning"] = run_query(request, "dunning", {"invoice": row["invoice"]})
        except CloseloopError:
            row["dunning"] = {"status": "none", "steps": []}
    mine = {i["invoice"] for i in (report or {}).get("invoices", [])}  # reminders of this entity's open invoices
    emails = [e for e in run_query(request, "collection_emails", {}).get("emails", []) if e.get("invoice") in mine]
    return render(request, "collections_dunning.html", tab="dunning", entities=entities, entity=entity,
                  as_of=as_of, rows=rows, pager=pager, emails=list(reversed(emails))[:20],
                  can_run=can(request, "dunning.run"))


@router.post("/collections/dunning/run")
@form_action
def dunning_run(request: Request, form: dict[str, Any]) -> Response:
    as_of = parse_day(form.get("as_of"), "as_of") or today(request).isoformat()
    result = run_command(request, "dunning.run", {"as_of": as_of})
    return redirect("/collections/dunning", flash=f"dunning run as of {as_of}: {result.get('retries', 0)} retries,"
                    f" {result.get('reminders', 0)} reminders, {result.get('suspensions', 0)} suspensions,"
                    f" {result.get('disputed_excluded', 0)} disputed excluded")


@router.get("/collections/disputes")
@page
def disputes(request: Request) -> Response:
    status = request.query_params.get("status", "")
    data = run_query(request, "disputes", {"status": status or None})
    items = sorted(data.get("items", []), key=lambda d: (d["status"].startswith("resolved"), d["opened"]),
                   reverse=False)
    rows, pager = paginate(items, request)
    on = today(request).isoformat()
    for d in rows:
        d["overdue"] = not d["status"].startswith("resolved") and bool(d.get("sla_due")) and d["sla_due"] < on
    return render(request, "collections_disputes.html", tab="disputes", rows=rows, pager=pager, stats=data,
                  state=status, statuses=DISPUTE_STATUSES, reason_codes=REASON_CODES,
                  can_act=can(request, "dispute.resolve"), can_open=can(request, "dispute.open"),
                  invoice=request.query_params.get("invoice", ""))


@router.post("/collections/disputes/open")
@form_action
def dispute_open(request: Request, form: dict[str, Any]) -> Response:
    payload = {"dispute_id": form.get("dispute_id", "").strip(), "invoice": form.get("invoice", "").strip(),
               "amount": form.get("amount", "").strip(), "reason": form.get("reason", "").strip(),
               "reason_code": form.get("reason_code") or None}
    for key in ("dispute_id", "invoice", "amount", "reason"):
        if not payload[key]:
            raise ValidationError(f"{key.replace('_', ' ')} is required", field=key)
    result = run_command(request, "dispute.open", payload)
    return redirect("/collections/disputes", flash=f"dispute {result['dispute_id']} opened on {result['invoice']},"
                    f" resolve by {result.get('sla_due')}")


@router.post("/collections/disputes/{dispute_id}/review")
@form_action
def dispute_review(request: Request, form: dict[str, Any], dispute_id: str) -> Response:
    payload: dict[str, Any] = {"dispute_id": dispute_id}
    if form.get("owner"):
        payload["owner"] = form["owner"]
    result = run_command(request, "dispute.review", payload)
    return redirect("/collections/disputes", flash=f"dispute {dispute_id} {result['status'].replace('_', ' ')}"
                    f" (owner {result.get('owner')})")


@router.post("/collections/disputes/{dispute_id}/resolve")
@form_action
def dispute_resolve(request: Request, form: dict[str, Any], dispute_id: str) -> Response:
    outcome = form.get("outcome", "")
    if outcome not in ("credit", "rejected"):
        raise ValidationError("outcome must be credit or rejected", field="outcome")
    payload: dict[str, Any] = {"dispute_id": dispute_id, "outcome": outcome}
    if form.get("amount"):
        payload["amount"] = form["amount"]
    if form.get("note"):
        payload["note"] = form["note"]
    result = run_command(request, "dispute.resolve", payload)
    memo = f", credit memo {result['credit_memo']}" if result.get("credit_memo") else ""
    return redirect("/collections/disputes", flash=f"dispute {dispute_id} {result['status'].replace('_', ' ')}"
                    f" after {result.get('cycle_days')} day(s){memo}")


@router.get("/collections/payments")
@page
def payments(request: Request) -> Response:
    entities, entity = entity_choice(request)
    q = request.query_params
    filters = {"customer": q.get("customer", "").strip(), "status": q.get("status", "")}
    items = per_entity(request, "payments", {**filters, "limit": 10000}, entity, list_key="payments")
    items.sort(key=lambda p: (p["date"], p["payment"]), reverse=True)
    unapplied: dict[str, Decimal] = {}
    for p in items:
        if Decimal(p.get("unapplied") or 0):
            unapplied[p["currency"]] = unapplied.get(p["currency"], Decimal(0)) + Decimal(p["unapplied"])
    rows, pager = paginate(items, request)
    return render(request, "collections_payments.html", tab="payments", rows=rows, pager=pager, entities=entities,
                  entity=entity, filters=filters, unapplied=unapplied,
                  statuses=("applied", "partially_applied", "unapplied", "refunded"))


@router.get("/collections/payments/{payment_id}")
@page
def payment(request: Request, payment_id: str) -> Response:
    p = run_query(request, "payment", {"payment": payment_id})
    open_invoices: list[dict[str, Any]] = []
    if can(request, "payment.apply") and Decimal(p.get("unapplied") or 0) > 0:
        open_invoices = [i for i in run_query(request, "invoices", {"customer": p["customer"], "entity": p["entity"],
                                                                     "limit": 500})["items"]
                         if i["status"] in ("open", "partially_paid") and i["currency"] == p["currency"]]
    return render(request, "collections_payment.html", tab="payments", p=p, open_invoices=open_invoices)


@router.post("/collections/payments/{payment_id}/apply")
@form_action
def payment_apply(request: Request, form: dict[str, Any], payment_id: str) -> Response:
    payload: dict[str, Any] = {"payment": payment_id, "invoice": form.get("invoice", "")}
    if form.get("amount"):
        payload["amount"] = form["amount"]
    result = run_command(request, "payment.apply", payload)
    return redirect(f"/collections/payments/{payment_id}", flash=f"applied to {form.get('invoice')}: unapplied now"
                    f" {result.get('unapplied', '?')}")
