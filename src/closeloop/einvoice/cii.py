"""Factur-X / ZUGFeRD (CII, EN 16931 profile): the XML made by the factur-x library, in a PDF/A-3.

:func:`build_cii` hands the EN 16931 data (:func:`closeloop.einvoice.model.en16931`) to
``facturx.generate_cii_xml``, which writes the Cross Industry Invoice and validates it against the
EN 16931 XSD the library ships. :func:`build_pdf` embeds it, with ``facturx.generate_from_binary``
(XMP metadata, the ``factur-x.xml`` attachment with AFRelationship, PDF/A-3 identification), in a
visual PDF: the invoice PDF billing renders when it offers one, else :func:`text_pdf`, a plain
one-page-per-60-lines rendering of the document made here.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import facturx

from closeloop.einvoice.model import dec, percent

LEVEL = "en16931"
logging.getLogger("factur-x").setLevel(logging.ERROR)


class FacturXError(ValueError):
    """The factur-x library refused the data (its message is kept)."""


def build_cii(data: Mapping[str, Any]) -> bytes:
    """CII XML (EN 16931 profile) from EN 16931 data, validated against the library's XSD."""
    try:
        xml = facturx.generate_cii_xml(copy.deepcopy(dict(data)), level=LEVEL, check_xsd=True, check_schematron=False)
    except Exception as exc:  # noqa: BLE001 - the library raises plain Exception/ValueError
        raise FacturXError(str(exc)) from None
    return bytes(xml)


def check_cii(xml: bytes) -> None:
    """Validate CII XML against the EN 16931 Factur-X XSD shipped with the library (raises FacturXError)."""
    try:
        facturx.xml_check_xsd(xml, flavor="factur-x", level=LEVEL)
    except Exception as exc:  # noqa: BLE001
        raise FacturXError(str(exc)) from None


def check_ubl(xml: bytes, *, credit: bool) -> None:
    """Validate UBL XML against the UBL 2.1 XSD shipped with the library (raises FacturXError)."""
    try:
        facturx.xml_check_xsd(xml, flavor="ubl-2.1-creditnote" if credit else "ubl-2.1-invoice")
    except Exception as exc:  # noqa: BLE001
        raise FacturXError(str(exc)) from None


def build_pdf(doc: Mapping[str, Any], xml: bytes, pdf: bytes | None = None) -> bytes:
    """A Factur-X PDF/A-3: ``pdf`` (or :func:`text_pdf` of the document) with the CII XML embedded."""
    base = pdf or text_pdf(document_lines(doc))
    seller = (doc.get("seller") or {}).get("name") or ""
    kind = "Credit memo" if doc.get("kind") == "credit_memo" else "Invoice"
    metadata = {"author": seller, "keywords": "Factur-X, e-invoice", "title": f"{seller}: {kind} {doc['number']}",
                "subject": f"Factur-X {kind.lower()} {doc['number']} dated {doc['date']} issued by {seller}"}
    try:
        out = facturx.generate_from_binary(base, xml, flavor="factur-x", level=LEVEL, check_xsd=True,
                                           pdf_metadata=metadata, lang="en")
    except Exception as exc:  # noqa: BLE001
        raise FacturXError(str(exc)) from None
    return bytes(out)


def xml_from_pdf(pdf: bytes) -> bytes:
    """The CII XML embedded in a Factur-X PDF (checked against the XSD)."""
    _name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    if not xml:
        raise FacturXError("the PDF carries no Factur-X XML")
    return bytes(xml)


# --------------------------------------------------------------------------- a plain visual PDF


def document_lines(doc: Mapping[str, Any]) -> list[str]:
    """The document as text lines for the visual part of the PDF."""
    seller, buyer = doc.get("seller") or {}, doc.get("buyer") or {}
    cur = doc.get("currency", "")
    kind = "CREDIT MEMO" if doc.get("kind") == "credit_memo" else "INVOICE"
    out = [f"{kind} {doc['number']}", "", f"Date: {doc['date']}" + (f"   Due: {doc['due_date']}" if doc.get("due_date")
                                                                      else "")]
    if doc.get("original_invoice"):
        out.append(f"Credits invoice {doc['original_invoice']}" + (f": {doc['reason']}" if doc.get("reason") else ""))
    for role, party in (("Seller", seller), ("Buyer", buyer)):
        addr = party.get("address") or {}
        place = ", ".join(str(x) for x in (addr.get("street"), addr.get("postal_code") or party.get("postal_code"),
                                           addr.get("city"), party.get("country")) if x)
        out.append(f"{role}: {party.get('name') or ''}" + (f"  VAT/tax id {party['tax_id']}" if party.get("tax_id")
                                                            else ""))
        out.append(f"        {place}")
    out += ["", f"{'#':>3}  {'Description':<44}{'Qty':>8}{'Net':>14}{'VAT':>7}{'Tax':>12}"]
    for line in doc.get("lines") or []:
        out.append(f"{line['line_no']:>3}  {str(line.get('description') or '')[:43]:<44}{str(line.get('quantity')):>8}"
                   f"{str(line.get('net')):>14}{percent(line.get('tax_rate')) + '%':>7}{str(line.get('tax')):>12}")
        if line.get("period_start"):
            out.append(f"     service period {line['period_start']} to {line.get('period_end')}")
    out += ["", "VAT breakdown:"]
    for g in doc.get("tax_breakdown") or []:
        out.append(f"  {g.get('category')} {percent(g.get('rate'))}%  taxable {g.get('taxable')} {cur}"
                   f"  tax {g.get('tax')} {cur}" + (f"  ({g['exemption_reason']})" if g.get("exemption_reason") else ""))
    out += ["", f"Subtotal {doc.get('subtotal')} {cur}   Tax {doc.get('tax')} {cur}   Total {doc.get('total')} {cur}"]
    if dec(doc.get("credit_applied")) or dec(doc.get("wallet_applied")):
        out.append(f"Credit applied {doc.get('credit_applied')} {cur}"
                   + (f"   Prepaid credits {doc['wallet_applied']} {cur}" if doc.get("wallet_applied") else "")
                   + f"   Amount due {doc.get('amount_due')} {cur}")
    for mention in doc.get("mentions") or []:
        out.append(str(mention))
    return out


def _escape(text: str) -> str:
    safe = text.encode("latin-1", "replace").decode("latin-1")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(lines: Sequence[str]) -> bytes:
    """A small, valid PDF (A4, Courier 9 pt) showing ``lines``, 60 to a page."""
    pages = [list(lines[i:i + 60]) for i in range(0, max(len(lines), 1), 60)] or [[]]
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    font_obj = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>")
    kids = []
    for page in pages:
        stream = "BT /F1 9 Tf 11 TL 40 800 Td " + " ".join(f"({_escape(t)}) Tj T*" for t in page) + " ET"
        data = stream.encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
        content_no = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 %d 0 R >> >>"
                       b" /Contents %d 0 R >>" % (font_obj, content_no))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for no, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % no + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
