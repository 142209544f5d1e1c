"""Invoices and credit memos: list with filters, one invoice with its lines, tax, payments applied, credit
memos and dunning; the document as HTML and PDF (billing's renderer), e-invoices (Factur-X, UBL), and
bill runs (preview, run in the background with a progress page).

Queries: invoices, invoice, credit_memo, payments, payment, dunning, disputes, einvoice, billing_runs,
billing_preview. Commands: einvoice.export, billing.run.

The document itself is billing's: ``closeloop.billing.documents`` renders it (the same HTML and PDF as
``closeloop invoice show --html | pdf``). The page first reads the invoice through the ``invoice``
query, so roles and entity scope apply (and the read is refused and audited otherwise), then asks
billing's renderer for that number in a read-only unit of work.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.web.kit import (
    NavEntry,
    can,
    closeloop,
    download,
    entity_choice,
    form_action,
    page,
    paginate,
    parse_day,
    per_entity,
    render,
    run_command,
    run_query,
    today,
)
from closeloop.web.pages.jobs import start_job

nav = NavEntry("Invoices", "/invoices", order=40, also=("/credit-memos", "/billing"))
router = APIRouter()
STATUSES = ("held", "open", "partially_paid", "paid", "credited", "written_off", "void", "issued")
EINVOICE_FORMATS = {"facturx": "Factur-X (PDF/A-3 with CII XML)", "ubl": "UBL 2.1 (Peppol BIS 3.0 XML)"}
# The document page carries billing's own inline stylesheet and no script: its own, narrower policy.
DOCUMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"


def _list(request: Request, kind: str) -> Response:
    q = request.query_params
    entities, entity = entity_choice(request)
    filters = {"customer": q.get("customer", "").strip(), "status": q.get("status", ""),
               "date_from": parse_day(q.get("date_from"), "date_from"), "date_to": parse_day(q.get("date_to"), "date_to")}
    items = per_entity(request, "invoices", {**filters, "kind": kind, "limit": 10000}, entity)
    items.sort(key=lambda i: (i["date"], i["number"] or ""), reverse=True)
    totals: dict[str, dict[str, Any]] = {}
    from decimal import Decimal

    for i in items:
        t = totals.setdefault(i["currency"], {"total": Decimal(0), "balance": Decimal(0), "count": 0})
        t["total"] += Decimal(i["total"])
        t["balance"] += Decimal(i["balance"])
        t["count"] += 1
    rows, pager = paginate(items, request)
    return render(request, "invoices.html", tab="credit_memos" if kind == "credit_memo" else "invoices", rows=rows,
                  pager=pager, filters=filters, entities=entities, entity=entity, totals=totals, statuses=STATUSES,
                  kind=kind, can_run=can(request, "billing.run"))


@router.get("/invoices")
@page
def invoices(request: Request) -> Response:
    return _list(request, "invoice")


@router.get("/credit-memos")
@page
def credit_memos(request: Request) -> Response:
    return _list(request, "credit_memo")


def _payments_applied(request: Request, inv: dict[str, Any]) -> list[dict[str, Any]]:
    """The payments applied to the invoice: its customer's payments, each read for its applications."""
    if inv["kind"] != "invoice" or inv.get("paid") in (None, "0", "0.00", "0.000"):
        return []
    out = []
    listed = run_query(request, "payments", {"customer": inv["customer"], "entity": inv["entity"], "limit": 500})
    for p in listed.get("payments") or listed.get("items") or []:
        detail = run_query(request, "payment", {"payment": p["payment"]})
        for a in detail.get("applications") or []:
            if a.get("invoice") == inv["number"]:
                out.append({**a, "payment": p["payment"], "channel": detail.get("channel"),
                            "reference": detail.get("reference")})
    return out


def _document(request: Request, number: str) -> dict[str, Any]:
    """Read the invoice as the user (roles, scope, audit), then billing's document for it."""
    inv = run_query(request, "invoice", {"number": number})
    if not inv["number"]:
        raise ValidationError(f"invoice {number} is held and has no document yet", field="number", record=number)
    return inv


@router.get("/invoices/{number}.pdf")
@page
def pdf(request: Request, number: str) -> Response:
    inv = _document(request, number)
    from closeloop.billing.documents import invoice_pdf

    try:
        with closeloop(request).unit_of_work(write=False) as uow:
            data = invoice_pdf(uow, inv["number"])
    except RuntimeError as exc:  # WeasyPrint or its system libraries are missing
        raise ValidationError(str(exc), field="pdf") from None
    return download(data, f"{inv['number']}.pdf", "application/pdf")


@router.get("/invoices/{number}")
@page
def invoice(request: Request, number: str) -> Response:
    inv = run_query(request, "invoice", {"number": number})
    memos = []
    if inv["kind"] == "invoice" and inv.get("credit_memos"):
        memos = run_query(request, "credit_memo", {"invoice": number})["credit_memos"]
    dunning = None
    disputes: list[dict[str, Any]] = []
    if inv["kind"] == "invoice" and inv["number"]:
        try:
            dunning = run_query(request, "dunning", {"invoice": number})
        except CloseloopError:
            dunning = None  # collections does not know the invoice (held, or not issued to it yet)
        disputes = run_query(request, "disputes", {"invoice": number}).get("items", [])
    stored = run_query(request, "einvoice", {"invoice": number})["items"] if inv["number"] else []
    return render(request, "invoice.html", tab="credit_memos" if inv["kind"] == "credit_memo" else "invoices",
                  inv=inv, memos=memos, payments=_payments_applied(request, inv), dunning=dunning, disputes=disputes,
                  einvoices=[{k: v for k, v in e.items() if k != "content"} for e in stored],
                  formats=EINVOICE_FORMATS, can_export=can(request, "einvoice.export"))


@router.get("/invoices/{number}/document")
@page
def document(request: Request, number: str) -> Response:
    inv = _document(request, number)
    from closeloop.billing.documents import invoice_html

    with closeloop(request).unit_of_work(write=False) as uow:
        html = invoice_html(uow, inv["number"])
    return HTMLResponse(html, headers={"Content-Security-Policy": DOCUMENT_CSP})


def _einvoice_file(item: dict[str, Any]) -> Response:
    content = item.get("content")
    if content is None:
        raise ValidationError(f"the {item.get('format')} e-invoice of {item.get('invoice')} was not stored:"
                              f" {'; '.join(item.get('problems') or [])}", field="format")
    data = base64.b64decode(content) if item.get("encoding") == "base64" else str(content).encode("utf-8")
    return download(data, item.get("filename") or f"{item['invoice']}.{item['format']}", item["media_type"])


@router.get("/invoices/{number}/einvoice/{fmt}")
@page
def einvoice_stored(request: Request, number: str, fmt: str) -> Response:
    if fmt not in EINVOICE_FORMATS:
        raise ValidationError(f"format must be one of {', '.join(EINVOICE_FORMATS)}", field="format")
    items = run_query(request, "einvoice", {"invoice": number, "format": fmt})["items"]
    if not items:
        from closeloop.core.errors import NotFoundError

        raise NotFoundError(f"no {fmt} e-invoice is stored for {number}; export it first", field="format",
                            record=number)
    return _einvoice_file(items[0])


@router.post("/invoices/{number}/einvoice")
@form_action
def einvoice_export(request: Request, form: dict[str, Any], number: str) -> Response:
    fmt = form.get("format") or None
    if fmt is not None and fmt not in EINVOICE_FORMATS:
        raise ValidationError(f"format must be one of {', '.join(EINVOICE_FORMATS)}", field="format")
    result = run_command(request, "einvoice.export", {"invoice": number, "format": fmt})
    return _einvoice_file(result)


@router.get("/billing/runs")
@page
def runs(request: Request) -> Response:
    entities, entity = entity_choice(request)
    as_of = parse_day(request.query_params.get("as_of"), "as_of") or today(request).isoformat()
    preview = None
    if request.query_params.get("preview"):
        preview = run_query(request, "billing_preview", {"as_of": as_of, "entity": entity})
    items = run_query(request, "billing_runs", {"limit": 200})["items"]
    rows, pager = paginate(items, request)
    return render(request, "billing_runs.html", tab="runs", rows=rows, pager=pager, entities=entities, entity=entity,
                  as_of=as_of, preview=preview, can_run=can(request, "billing.run"))


@router.post("/billing/runs")
@form_action
def run(request: Request, form: dict[str, Any]) -> Response:
    as_of = parse_day(form.get("as_of"), "as_of")
    if as_of is None:
        raise ValidationError("a bill run needs its as-of date", field="as_of")
    entity = form.get("entity") or None
    payload: dict[str, Any] = {"as_of": as_of, "entity": entity}
    expected = ""
    try:
        preview = run_query(request, "billing_preview", payload)
        totals = ", ".join(f"{v} {c}" for c, v in preview.get("totals", {}).items())
        expected = f"{preview['count']} invoice(s) to issue" + (f" ({totals})" if totals else "")
    except CloseloopError:
        pass  # the run itself reports the problem
    return start_job(request, f"Bill run as of {as_of}" + (f" for {entity}" if entity else ""), "billing.run",
                     {k: v for k, v in payload.items() if v is not None}, back="/billing/runs", expected=expected)

