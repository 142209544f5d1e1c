"""Customers: search the master, an account with its hierarchy and roll-up, duplicates to review (merge or
dismiss, with the explained score), system-of-record conflicts (``not_owner`` exceptions), the data-quality
score, and a CRM import that runs in the background with its progress page.

Queries: customers, customer, customer_hierarchy, customer_history, customer_duplicates, customer_quality,
customer_imports, exceptions (kind not_owner), invoices, contracts. Commands: customer.merge,
customer.dismiss_duplicate, customer.find_duplicates, customer.import.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from closeloop.core.errors import CloseloopError, ValidationError
from closeloop.web.kit import (
    NavEntry,
    Upload,
    can,
    form_action,
    page,
    paginate,
    redirect,
    render,
    require,
    run_command,
    run_query,
)
from closeloop.web.pages.jobs import start_job

nav = NavEntry("Customers", "/customers", order=20)
router = APIRouter()
IMPORT_FORMATS = ("salesforce", "hubspot")


def _tabs(request: Request) -> dict[str, Any]:
    return {"can_merge": can(request, "customer.merge"), "can_dismiss": can(request, "customer.dismiss_duplicate"),
            "can_import": can(request, "customer.import"), "can_scan": can(request, "customer.find_duplicates")}


@router.get("/customers")
@page
def customers(request: Request) -> Response:
    q = request.query_params
    filters = {"search": q.get("search", "").strip(), "status": q.get("status", ""),
               "country": q.get("country", "").strip()}
    data = run_query(request, "customers", {**filters, "limit": 10000})
    rows, pager = paginate(data["items"], request)
    quality = run_query(request, "customer_quality")
    imports = run_query(request, "customer_imports", {"limit": 5}).get("items", [])
    return render(request, "customers.html", tab="list", rows=rows, pager=pager, filters=filters, quality=quality,
                  imports=imports, formats=IMPORT_FORMATS, **_tabs(request))


@router.get("/customers/duplicates")
@page
def duplicates(request: Request) -> Response:
    status = request.query_params.get("status", "open")
    data = run_query(request, "customer_duplicates", {"status": status or None, "limit": 10000})
    rows, pager = paginate(data["items"], request, size=10)
    return render(request, "customers_duplicates.html", tab="duplicates", rows=rows, pager=pager, state=status,
                  quality=run_query(request, "customer_quality"), **_tabs(request))


@router.get("/customers/conflicts")
@page
def conflicts(request: Request) -> Response:
    status = request.query_params.get("status", "open")
    data = run_query(request, "exceptions", {"kind": "not_owner", "status": status or None, "limit": 10000})
    rows, pager = paginate(data["items"], request)
    registry = run_query(request, "system_of_record", {"entity_type": "customer"})
    return render(request, "customers_conflicts.html", tab="conflicts", rows=rows, pager=pager, state=status,
                  registry=registry, **_tabs(request))


@router.get("/customers/{external_id}")
@page
def customer(request: Request, external_id: str) -> Response:
    account = run_query(request, "customer", {"external_id": external_id})  # refused outside the user's entities
    tree = run_query(request, "customer_hierarchy", {"external_id": external_id})
    whole = tree if tree["top"] in (None, tree["external_id"]) else \
        run_query(request, "customer_hierarchy", {"external_id": tree["top"]})  # the whole tree from its top
    history = run_query(request, "customer_history", {"external_id": external_id, "limit": 50})
    invoices = run_query(request, "invoices", {"customer": account["external_id"], "limit": 10000,
                                               "entity": account.get("entity")})["items"] \
        if account["status"] != "merged" else []
    contracts = run_query(request, "contracts", {"customer": account["external_id"],
                                                 "entity": account.get("entity")})["items"] \
        if account["status"] != "merged" else []
    duplicates = run_query(request, "customer_duplicates", {"customer": account["external_id"], "status": "open"})
    conflicts = run_query(request, "exceptions", {"kind": "not_owner", "record_type": "customer",
                                                  "record_id": account["external_id"], "status": "open"})
    return render(request, "customer.html", tab="list", c=account, tree=tree, whole=whole, history=history,
                  invoices=invoices[-20:], invoice_count=len(invoices), contracts=contracts,
                  duplicates=duplicates["items"], conflicts=conflicts["items"], **_tabs(request))


@router.post("/customers/duplicates/merge")
@form_action
def merge(request: Request, form: dict[str, Any]) -> Response:
    survivor, merged = form.get("survivor", ""), form.get("merged", "")
    result = run_command(request, "customer.merge", {"survivor": survivor, "merged": merged,
                                                     "reason": form.get("reason", "")})
    changed = ", ".join(result.get("changed") or []) or "nothing"
    return redirect(f"/customers/{survivor}", flash=f"{merged} merged into {survivor} (took over: {changed})")


@router.post("/customers/duplicates/dismiss")
@form_action
def dismiss(request: Request, form: dict[str, Any]) -> Response:
    run_command(request, "customer.dismiss_duplicate", {"a": form.get("a", ""), "b": form.get("b", ""),
                                                        "reason": form.get("reason", "")})
    return redirect("/customers/duplicates", flash=f"{form.get('a')} and {form.get('b')} kept as distinct accounts")


@router.post("/customers/duplicates/scan")
@form_action
def scan(request: Request, form: dict[str, Any]) -> Response:
    return start_job(request, "Duplicate scan", "customer.find_duplicates", {}, back="/customers/duplicates")


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _store_upload(request: Request, upload: Any, prefix: str) -> str:
    """Keep an uploaded file in the API's upload folder under a plain generated name; returns the name."""
    if not isinstance(upload, Upload) or not upload.data:
        raise ValidationError("choose a file to import", field="file")
    api = getattr(request.app.state, "api", None)
    if api is None:
        raise ValidationError("uploads need the API's upload folder (closeloop serve)", field="file")
    stem = _SAFE.sub("_", upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip("._-")[:60] or "upload"
    name = f"{prefix}-{request.state.user.name}-{time.time_ns()}-{stem}"[:128]
    name = _SAFE.sub("_", name)
    api.upload(name, upload.data)
    return name


@router.post("/customers/import")
@form_action
def import_accounts(request: Request, form: dict[str, Any]) -> Response:
    fmt = form.get("format", "")
    require(request, "customer.import", {"file": "upload", "format": fmt or IMPORT_FORMATS[0]})
    if fmt not in IMPORT_FORMATS:
        raise ValidationError(f"format must be one of {', '.join(IMPORT_FORMATS)}", field="format")
    payload: dict[str, Any] = {"file": _store_upload(request, form.get("file"), "crm"), "format": fmt,
                               "accept_valid": form.get("accept_valid") == "1"}
    if isinstance(form.get("mapping"), Upload) and form["mapping"].data:
        payload["mapping"] = _store_upload(request, form["mapping"], "mapping")
    from closeloop.core import registry

    payload = request.app.state.api.prepare(registry.operations()["customer.import"], payload, request.state.user)
    expected = ""
    try:
        preview = run_query(request, "customer_import_preview", payload)
        expected = (f"{preview.get('rows_read', '?')} rows: {preview.get('created', 0)} to create,"
                    f" {preview.get('updated', 0)} to update, {preview.get('rejected', 0)} rejected")
    except CloseloopError:
        pass  # the import itself reports what is wrong
    return start_job(request, "CRM import", "customer.import", payload, back="/customers", expected=expected)
