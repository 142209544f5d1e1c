"""E-invoice commands, queries and the hook on issued invoices.

- ``einvoice.export`` {invoice, format?}: the invoice's (or credit memo's) e-invoice in ``facturx``
  (a Factur-X PDF/A-3 with the CII XML embedded) or ``ubl`` (UBL 2.1 / Peppol BIS 3.0 XML); the
  customer's preferred format when none is given, else ``ubl``. The first export stores it; every
  later export returns the stored bytes, so an e-invoice never changes (a correction is a credit memo).
- ``customer.einvoice_format`` {customer, format: facturx|ubl|none}: the customer's preferred format.
  For such customers the e-invoice is made and stored when the invoice is issued (handler on
  ``invoice.issued`` / ``credit_memo.issued``).
- queries ``einvoice`` {invoice, format?} (what is stored) and ``ubl_read`` {content} (a UBL
  invoice or credit note read into its figures, e.g. a supplier's).

Billing may call :func:`attach_einvoice` inside its issue transaction to make the invoice and its
e-invoice one unit (a document that breaks a rule refuses the issue); the event hook is the
fallback that needs no change to billing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from closeloop.core.errors import NotFoundError, ValidationError
from closeloop.core.events import Event, handles
from closeloop.core.registry import command, payload, query
from closeloop.einvoice import cii, model, ubl

log = logging.getLogger("closeloop.einvoice")

MEDIA = {"facturx": ("application/pdf", "pdf"), "ubl": ("application/xml", "xml")}
DocumentProvider = Callable[[Any, str], Mapping[str, Any]]
_PROVIDER: DocumentProvider | None = None


def set_document_provider(fn: DocumentProvider | None) -> DocumentProvider | None:
    """Where invoice documents come from (default: ``closeloop.billing.service.invoice_document``)."""
    global _PROVIDER
    previous, _PROVIDER = _PROVIDER, fn
    return previous


def invoice_document(uow: Any, number: Any) -> Mapping[str, Any]:
    if _PROVIDER is not None:
        return _PROVIDER(uow, number)
    try:
        from closeloop.billing.service import invoice_document as billing_document  # type: ignore[attr-defined]
    except ImportError:
        raise NotFoundError(f"invoice {number!r}: billing does not provide invoice documents yet",
                            field="invoice", record=number) from None
    return billing_document(uow, number)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- generation (pure but for I/O)


def render(doc: Mapping[str, Any], fmt: str, *, pdf: bytes | None = None) -> bytes:
    """The e-invoice bytes of ``doc`` in ``fmt``, after every business rule of the format holds."""
    model.require(model.check_export(doc, fmt), number=str(doc.get("number")), fmt=fmt)
    data = model.en16931(doc)
    try:
        if fmt == "ubl":
            xml = ubl.build_ubl(data)
            cii.check_ubl(xml, credit=model.is_credit(doc))
            return xml
        return cii.build_pdf(doc, cii.build_cii(data), pdf)
    except cii.FacturXError as exc:
        raise ValidationError(f"e-invoice {doc.get('number')} for {fmt}: the schema refused it: {exc}",
                              field="format", record=str(doc.get("number")), format=fmt) from None


def figures(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The figures an e-invoice must carry, from the document (what the round trip compares)."""
    sign = -1 if model.is_credit(doc) and model.dec(doc.get("total")) < 0 else 1
    return {
        "number": doc["number"], "currency": doc["currency"],
        "subtotal": model.dec(doc["subtotal"]) * sign, "tax": model.dec(doc["tax"]) * sign,
        "total": model.dec(doc["total"]) * sign,
        "amount_due": (model.dec(doc["total"]) * sign if model.is_credit(doc)
                       else model.dec(doc["total"]) - model.dec(doc.get("credit_applied"))),
        "breakdown": sorted((model.category(g), model.dec(g["rate"]) * 100, model.dec(g["taxable"]) * sign,
                             model.dec(g["tax"]) * sign) for g in doc.get("tax_breakdown") or []),
        "lines": [(str(x["line_no"]), model.dec(x["net"]) * sign) for x in doc.get("lines") or []],
    }


def figures_of(read: ubl.UblDocument) -> dict[str, Any]:
    """The same figures from a read UBL document."""
    return {
        "number": read.number, "currency": read.currency, "subtotal": read.tax_exclusive, "tax": read.tax_total,
        "total": read.tax_inclusive, "amount_due": read.payable,
        "breakdown": sorted((b.category, b.percent if b.percent is not None else Decimal(0), b.taxable, b.tax)
                            for b in read.breakdown),
        "lines": [(x.id, x.net) for x in read.lines],
    }


# --------------------------------------------------------------------------- storage


def _stored(uow: Any, number: str, fmt: str) -> dict[str, Any] | None:
    rows = uow.dicts("SELECT invoice, format, kind, status, media_type, filename, content, sha256, problems,"
                     " created_at, origin FROM einvoice_document WHERE invoice = ? AND format = ?", (number, fmt))
    return rows[0] if rows else None


def _store(uow: Any, doc: Mapping[str, Any], fmt: str, content: bytes | None, problems: list[str],
           origin: str) -> dict[str, Any]:
    number = str(doc["number"])
    media = MEDIA[fmt][0]
    kind = "credit_memo" if model.is_credit(doc) else "invoice"
    row = {"invoice": number, "format": fmt, "kind": kind, "status": "stored" if content is not None else "failed",
           "media_type": media, "filename": f"{number}.{'facturx.pdf' if fmt == 'facturx' else 'ubl.xml'}",
           "content": content, "sha256": hashlib.sha256(content).hexdigest() if content is not None else None,
           "problems": json.dumps(problems) if problems else None, "created_at": uow.now(), "origin": origin}
    uow.execute("DELETE FROM einvoice_document WHERE invoice = ? AND format = ? AND status = 'failed'", (number, fmt))
    uow.execute("INSERT INTO einvoice_document (invoice, format, kind, status, media_type, filename, content, sha256,"
                " problems, created_at, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                tuple(row.values()))
    return row


def attach_einvoice(uow: Any, doc: Mapping[str, Any], fmt: str, *, pdf: bytes | None = None,
                    origin: str = "issue") -> dict[str, Any]:
    """Make and store ``doc``'s e-invoice in ``fmt`` in the caller's unit of work (refuses on any rule).
    An e-invoice already stored is returned unchanged."""
    existing = _stored(uow, str(doc["number"]), fmt)
    if existing is not None and existing["status"] == "stored":
        return existing
    model.require(model.check_issue(doc), number=str(doc["number"]))
    return _store(uow, doc, fmt, render(doc, fmt, pdf=pdf), [], origin)


def _result(row: Mapping[str, Any]) -> dict[str, Any]:
    content = bytes(row["content"]) if row.get("content") is not None else None
    out = {k: row[k] for k in ("invoice", "format", "kind", "status", "media_type", "filename", "sha256",
                               "created_at", "origin")}
    if content is not None:
        if row["format"] == "ubl":
            out.update(encoding="utf-8", content=content.decode("utf-8"))
        else:
            out.update(encoding="base64", content=base64.b64encode(content).decode("ascii"))
    if row.get("problems"):
        out["problems"] = json.loads(row["problems"])
    return out


# --------------------------------------------------------------------------- preferences


def _customer_id(uow: Any, external_id: str) -> int:
    from closeloop.customers.service import get_customer

    return get_customer(uow, external_id).id


def preferred_format(uow: Any, customer_external_id: str) -> str | None:
    try:
        cid = _customer_id(uow, customer_external_id)
    except NotFoundError:
        return None
    row = uow.one("SELECT format FROM einvoice_preference WHERE customer_id = ?", (cid,))
    return None if row is None else str(row[0])


@payload
class CustomerEinvoiceFormat:
    customer: str
    format: str


@command("customer.einvoice_format", CustomerEinvoiceFormat, roles=("billing", "sales_ops", "admin"),
         summary="Set a customer's preferred e-invoice format (facturx, ubl or none)")
def customer_einvoice_format(uow: Any, cmd: CustomerEinvoiceFormat) -> dict[str, Any]:
    fmt = cmd.format.lower()
    if fmt not in (*model.FORMATS, "none"):
        raise ValidationError(f"format {cmd.format!r} is not an e-invoice format; use facturx, ubl or none",
                              field="format", value=cmd.format)
    cid = _customer_id(uow, cmd.customer)
    uow.execute("DELETE FROM einvoice_preference WHERE customer_id = ?", (cid,))
    if fmt != "none":
        uow.execute("INSERT INTO einvoice_preference (customer_id, format, updated_at, updated_by) VALUES (?,?,?,?)",
                    (cid, fmt, uow.now(), getattr(uow, "actor", "") or ""))
    return {"customer": cmd.customer, "format": None if fmt == "none" else fmt}


# --------------------------------------------------------------------------- export


@payload
class EinvoiceExport:
    invoice: str | dict[str, Any]  # a number, or {customer, seq} as in scenarios
    format: str | None = None


@command("einvoice.export", EinvoiceExport, roles=("billing", "controller", "collections", "admin"),
         summary="The e-invoice of an invoice or credit memo (Factur-X PDF or UBL XML), stored at first export")
def einvoice_export(uow: Any, cmd: EinvoiceExport) -> dict[str, Any]:
    doc = invoice_document(uow, cmd.invoice)
    customer = str((doc.get("buyer") or {}).get("customer") or "")
    fmt = (cmd.format or preferred_format(uow, customer) or "ubl").lower()
    if fmt not in model.FORMATS:
        raise ValidationError(f"format {cmd.format!r} is not an e-invoice format; use facturx or ubl",
                              field="format", value=cmd.format)
    if doc.get("status") in ("held", "draft"):
        raise ValidationError(f"invoice {cmd.invoice} is {doc.get('status')}: only issued invoices have an"
                              " e-invoice", field="invoice", record=cmd.invoice)
    return _result(attach_einvoice(uow, doc, fmt, origin="export"))


@payload
class EinvoiceQuery:
    invoice: str | dict[str, Any]
    format: str | None = None


@query("einvoice", EinvoiceQuery, summary="The e-invoices stored with an invoice or credit memo")
def einvoice(uow: Any, q: EinvoiceQuery) -> dict[str, Any]:
    number = q.invoice if isinstance(q.invoice, str) else str(invoice_document(uow, q.invoice)["number"])
    rows = uow.dicts("SELECT invoice, format, kind, status, media_type, filename, content, sha256, problems,"
                     " created_at, origin FROM einvoice_document WHERE invoice = ? ORDER BY format",
                     (number,))
    items = [_result(r) for r in rows if q.format is None or r["format"] == q.format]
    return {"invoice": number, "count": len(items), "items": items}


@payload
class UblRead:
    content: str


@query("ubl_read", UblRead, summary="Read a UBL 2.1 invoice or credit note into its figures")
def ubl_read(uow: Any, q: UblRead) -> dict[str, Any]:
    try:
        read = ubl.read_ubl(q.content)
    except ubl.UblError as exc:
        raise ValidationError(f"ubl_read: {exc}", field="content") from None

    def s(v: Decimal | None) -> str | None:
        return None if v is None else str(v)

    return {
        "kind": read.kind, "number": read.number, "type_code": read.type_code, "issue_date": read.issue_date,
        "due_date": read.due_date, "currency": read.currency, "seller": read.seller.name, "seller_vat": read.seller.vat_id,
        "buyer": read.buyer.name, "buyer_vat": read.buyer.vat_id, "billing_references": list(read.billing_references),
        "subtotal": s(read.tax_exclusive), "tax": s(read.tax_total), "total": s(read.tax_inclusive),
        "prepaid": s(read.prepaid), "payable": s(read.payable),
        "breakdown": [{"category": b.category, "percent": s(b.percent), "taxable": s(b.taxable), "tax": s(b.tax),
                       "exemption_reason": b.exemption_reason} for b in read.breakdown],
        "lines": [{"id": x.id, "name": x.name, "quantity": s(x.quantity), "net": s(x.net), "price": s(x.price),
                   "category": x.category, "percent": s(x.percent)} for x in read.lines],
        "problems": ubl.consistency(read),
    }


# --------------------------------------------------------------------------- the hook on issue


def _on_issued(uow: Any, number: str, customer: str) -> None:
    fmt = preferred_format(uow, customer)
    if fmt is None or _stored(uow, number, fmt) is not None:
        return
    doc = invoice_document(uow, number)
    problems = model.check_export(doc, fmt)
    if problems:
        log.warning("e-invoice %s (%s) not made: %s", number, fmt, "; ".join(p.text() for p in problems))
        _store(uow, doc, fmt, None, [p.text() for p in problems], "issue")
        return
    _store(uow, doc, fmt, render(doc, fmt), [], "issue")


@handles("invoice.issued", "einvoice")
def on_invoice_issued(uow: Any, ev: Event) -> None:
    _on_issued(uow, str(ev.payload["invoice"]), str(ev.payload.get("customer") or ""))


@handles("credit_memo.issued", "einvoice")
def on_credit_memo_issued(uow: Any, ev: Event) -> None:
    _on_issued(uow, str(ev.payload["credit_memo"]), str(ev.payload.get("customer") or ""))
