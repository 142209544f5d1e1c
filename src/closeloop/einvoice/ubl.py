"""UBL 2.1 Invoice and CreditNote (Peppol BIS Billing 3.0): writer (lxml) and reader.

:func:`build_ubl` writes the EN 16931 data (:func:`closeloop.einvoice.model.en16931`) as a UBL
Invoice (type 380) or CreditNote (381) in the element order the UBL 2.1 schema prescribes, with
the Peppol BIS 3.0 customization and profile. :func:`read_ubl` parses any UBL 2.1 invoice or
credit note (the XRechnung samples, other senders, closeloop's own output) into a frozen
:class:`UblDocument` whose amounts are Decimals exactly as printed. Parsing refuses DTDs, entities
and network access (defusedxml-style hardening through lxml's parser options).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lxml import etree

NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
PEPPOL_CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PEPPOL_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
NS = {"cac": CAC, "cbc": CBC}


class UblError(ValueError):
    """The bytes are not a UBL 2.1 Invoice or CreditNote (the message says why)."""


# --------------------------------------------------------------------------- writer


def _el(parent: etree._Element, ns: str, tag: str, text: Any = None, **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, f"{{{ns}}}{tag}", **attrs)
    if text is not None:
        node.text = str(text)
    return node


def _cbc(parent: etree._Element, tag: str, text: Any = None, **attrs: str) -> etree._Element:
    return _el(parent, CBC, tag, text, **attrs)


def _cac(parent: etree._Element, tag: str) -> etree._Element:
    return _el(parent, CAC, tag)


def _amount(parent: etree._Element, tag: str, value: str, currency: str) -> None:
    _cbc(parent, tag, value, currencyID=currency)


def _tax_category(parent: etree._Element, tag: str, cat: str, pct: str, reason: str | None = None,
                  code: str | None = None) -> None:
    node = _cac(parent, tag)
    _cbc(node, "ID", cat)
    if cat != "O":  # BR-O-05/BR-O-10: category O carries no rate
        _cbc(node, "Percent", pct)
    if code:
        _cbc(node, "TaxExemptionReasonCode", code)
    if reason:
        _cbc(node, "TaxExemptionReason", reason)
    _cbc(_cac(node, "TaxScheme"), "ID", "VAT")


def _party(parent: etree._Element, tag: str, p: Mapping[str, Any], *, omit_vat: bool) -> None:
    party = _cac(_cac(parent, tag), "Party")
    if p.get("einvoicing_addr"):
        _cbc(party, "EndpointID", p["einvoicing_addr"], schemeID=p.get("einvoicing_addr_schemeid") or "EM")
    if p.get("name"):
        _cbc(_cac(party, "PartyName"), "Name", p["name"])
    addr = _cac(party, "PostalAddress")
    for key, name in (("addr_l1", "StreetName"), ("addr_l2", "AdditionalStreetName"), ("city", "CityName"),
                      ("postcode", "PostalZone"), ("country_subdivision", "CountrySubentity")):
        if p.get(key):
            _cbc(addr, name, p[key])
    _cbc(_cac(addr, "Country"), "IdentificationCode", p.get("country_code"))
    if p.get("vat_identifier") and not omit_vat:
        scheme = _cac(party, "PartyTaxScheme")
        _cbc(scheme, "CompanyID", p["vat_identifier"])
        _cbc(_cac(scheme, "TaxScheme"), "ID", "VAT")
    if p.get("tax_identifier") and not omit_vat:
        scheme = _cac(party, "PartyTaxScheme")
        _cbc(scheme, "CompanyID", p["tax_identifier"])
        _cbc(_cac(scheme, "TaxScheme"), "ID", "FC")  # BT-32: seller tax registration
    legal = _cac(party, "PartyLegalEntity")
    _cbc(legal, "RegistrationName", p.get("name"))


def build_ubl(data: Mapping[str, Any]) -> bytes:
    """UBL 2.1 XML (UTF-8, with declaration) for EN 16931 data; a 381 type is written as a CreditNote."""
    credit = data["BT-3"] == "381"
    root_ns = NS_CREDIT if credit else NS_INVOICE
    root = etree.Element(f"{{{root_ns}}}{'CreditNote' if credit else 'Invoice'}",
                         nsmap={None: root_ns, "cac": CAC, "cbc": CBC})
    cur = data["BT-5"]
    _cbc(root, "CustomizationID", PEPPOL_CUSTOMIZATION)
    _cbc(root, "ProfileID", PEPPOL_PROFILE)
    _cbc(root, "ID", data["BT-1"])
    _cbc(root, "IssueDate", data["BT-2"])
    if not credit and data.get("BT-9"):
        _cbc(root, "DueDate", data["BT-9"])
    _cbc(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", data["BT-3"])
    for note in data.get("BG-1") or []:
        _cbc(root, "Note", note["BT-22"])
    _cbc(root, "DocumentCurrencyCode", cur)
    _cbc(root, "BuyerReference", data.get("BT-10"))
    if data.get("BT-73") and data.get("BT-74"):
        period = _cac(root, "InvoicePeriod")
        _cbc(period, "StartDate", data["BT-73"])
        _cbc(period, "EndDate", data["BT-74"])
    for ref in data.get("BG-3") or []:
        doc_ref = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
        _cbc(doc_ref, "ID", ref["BT-25"])
        if ref.get("BT-26"):
            _cbc(doc_ref, "IssueDate", ref["BT-26"])
    only_o = {g["BT-118"] for g in data.get("BG-23") or []} == {"O"}
    _party(root, "AccountingSupplierParty", data["BG-4"], omit_vat=only_o)
    _party(root, "AccountingCustomerParty", data["BG-7"], omit_vat=only_o)
    if data.get("BT-72"):
        _cbc(_cac(root, "Delivery"), "ActualDeliveryDate", data["BT-72"])
    if data.get("BT-20"):
        _cbc(_cac(root, "PaymentTerms"), "Note", data["BT-20"])
    for allowance in data.get("BG-20") or []:  # document-level allowances (a coupon's discount lines)
        node = _cac(root, "AllowanceCharge")
        _cbc(node, "ChargeIndicator", "false")
        if allowance.get("reason_code"):
            _cbc(node, "AllowanceChargeReasonCode", allowance["reason_code"])
        if allowance.get("reason"):
            _cbc(node, "AllowanceChargeReason", allowance["reason"])
        _amount(node, "Amount", allowance["amount"], cur)
        _tax_category(node, "TaxCategory", allowance["vat_category_code"], allowance.get("vat_rate") or "0")
    total = _cac(root, "TaxTotal")
    _amount(total, "TaxAmount", data.get("BT-110") or "0", cur)
    for g in data.get("BG-23") or []:
        sub = _cac(total, "TaxSubtotal")
        _amount(sub, "TaxableAmount", g["BT-116"], cur)
        _amount(sub, "TaxAmount", g["BT-117"], cur)
        _tax_category(sub, "TaxCategory", g["BT-118"], g["BT-119"], g.get("BT-120"), g.get("BT-121"))
    money = _cac(root, "LegalMonetaryTotal")
    _amount(money, "LineExtensionAmount", data["BT-106"], cur)
    _amount(money, "TaxExclusiveAmount", data["BT-109"], cur)
    _amount(money, "TaxInclusiveAmount", data["BT-112"], cur)
    if data.get("BT-107"):
        _amount(money, "AllowanceTotalAmount", data["BT-107"], cur)
    if data.get("BT-113"):
        _amount(money, "PrepaidAmount", data["BT-113"], cur)
    _amount(money, "PayableAmount", data["BT-115"], cur)
    for line in data.get("BG-25") or []:
        node = _cac(root, "CreditNoteLine" if credit else "InvoiceLine")
        _cbc(node, "ID", line["BT-126"])
        _cbc(node, "CreditedQuantity" if credit else "InvoicedQuantity", line["BT-129"], unitCode=line["BT-130"])
        _amount(node, "LineExtensionAmount", line["BT-131"], cur)
        if line.get("BT-134") and line.get("BT-135"):
            period = _cac(node, "InvoicePeriod")
            _cbc(period, "StartDate", line["BT-134"])
            _cbc(period, "EndDate", line["BT-135"])
        item = _cac(node, "Item")
        _cbc(item, "Name", line["BT-153"])
        if line.get("BT-155"):
            _cbc(_cac(item, "SellersItemIdentification"), "ID", line["BT-155"])
        _tax_category(item, "ClassifiedTaxCategory", line["BT-151"], line["BT-152"])
        price = _cac(node, "Price")
        _amount(price, "PriceAmount", line["BT-146"], cur)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class UblParty:
    name: str | None
    vat_id: str | None
    country: str | None
    city: str | None
    postal_code: str | None
    street: str | None
    endpoint: str | None


@dataclass(frozen=True, slots=True)
class UblTaxSubtotal:
    category: str
    percent: Decimal | None
    taxable: Decimal
    tax: Decimal
    exemption_reason: str | None
    exemption_code: str | None


@dataclass(frozen=True, slots=True)
class UblLine:
    id: str
    name: str | None
    quantity: Decimal
    unit_code: str | None
    net: Decimal
    price: Decimal | None
    base_quantity: Decimal | None
    category: str | None
    percent: Decimal | None
    period_start: str | None
    period_end: str | None
    sellers_id: str | None
    allowances: Decimal  # line-level and price allowances (informational)


@dataclass(frozen=True, slots=True)
class UblDocument:
    """A UBL invoice or credit note as printed. ``kind``: invoice or credit_note."""

    kind: str
    customization: str | None
    profile: str | None
    number: str
    type_code: str
    issue_date: str
    due_date: str | None
    currency: str
    notes: tuple[str, ...]
    buyer_reference: str | None
    billing_references: tuple[str, ...]
    seller: UblParty
    buyer: UblParty
    tax_total: Decimal
    breakdown: tuple[UblTaxSubtotal, ...]
    line_extension: Decimal
    tax_exclusive: Decimal
    tax_inclusive: Decimal
    allowance_total: Decimal
    charge_total: Decimal
    prepaid: Decimal
    rounding: Decimal
    payable: Decimal
    lines: tuple[UblLine, ...]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=True)


def _text(node: etree._Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path, NS)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _dec(node: etree._Element | None, path: str) -> Decimal | None:
    text = _text(node, path)
    return Decimal(text) if text not in (None, "") else None


def _party_of(root: etree._Element, tag: str) -> UblParty:
    party = root.find(f"cac:{tag}/cac:Party", NS)
    vat = None
    if party is not None:
        for scheme in party.findall("cac:PartyTaxScheme", NS):
            if _text(scheme, "cac:TaxScheme/cbc:ID") == "VAT":
                vat = _text(scheme, "cbc:CompanyID")
    name = _text(party, "cac:PartyLegalEntity/cbc:RegistrationName") or _text(party, "cac:PartyName/cbc:Name")
    addr = party.find("cac:PostalAddress", NS) if party is not None else None
    return UblParty(name, vat, _text(addr, "cac:Country/cbc:IdentificationCode"), _text(addr, "cbc:CityName"),
                    _text(addr, "cbc:PostalZone"), _text(addr, "cbc:StreetName"), _text(party, "cbc:EndpointID"))


def read_ubl(content: bytes | str) -> UblDocument:
    """Parse a UBL 2.1 Invoice or CreditNote; amounts are Decimals exactly as the file prints them."""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        raise UblError(f"not well-formed XML: {exc}") from None
    if root.tag == f"{{{NS_INVOICE}}}Invoice":
        kind, line_tag, qty_tag, type_tag = "invoice", "InvoiceLine", "InvoicedQuantity", "InvoiceTypeCode"
    elif root.tag == f"{{{NS_CREDIT}}}CreditNote":
        kind, line_tag, qty_tag, type_tag = "credit_note", "CreditNoteLine", "CreditedQuantity", "CreditNoteTypeCode"
    else:
        raise UblError(f"the root element {root.tag} is neither a UBL 2.1 Invoice nor a CreditNote")
    currency = _text(root, "cbc:DocumentCurrencyCode") or ""
    tax_total = Decimal(0)
    breakdown: list[UblTaxSubtotal] = []
    for total in root.findall("cac:TaxTotal", NS):
        amount = total.find("cbc:TaxAmount", NS)
        if amount is not None and amount.get("currencyID", currency) != currency:
            continue  # the VAT total in the accounting currency (BT-111)
        tax_total = _dec(total, "cbc:TaxAmount") or Decimal(0)
        for sub in total.findall("cac:TaxSubtotal", NS):
            cat = sub.find("cac:TaxCategory", NS)
            breakdown.append(UblTaxSubtotal(
                _text(cat, "cbc:ID") or "", _dec(cat, "cbc:Percent"), _dec(sub, "cbc:TaxableAmount") or Decimal(0),
                _dec(sub, "cbc:TaxAmount") or Decimal(0), _text(cat, "cbc:TaxExemptionReason"),
                _text(cat, "cbc:TaxExemptionReasonCode")))
    money = root.find("cac:LegalMonetaryTotal", NS)
    lines = []
    for node in root.findall(f"cac:{line_tag}", NS):
        allowances = Decimal(0)
        for ac in node.findall("cac:AllowanceCharge", NS) + node.findall("cac:Price/cac:AllowanceCharge", NS):
            amount = _dec(ac, "cbc:Amount") or Decimal(0)
            allowances += -amount if _text(ac, "cbc:ChargeIndicator") == "true" else amount
        qty = node.find(f"cbc:{qty_tag}", NS)
        lines.append(UblLine(
            _text(node, "cbc:ID") or "", _text(node, "cac:Item/cbc:Name"),
            Decimal(qty.text.strip()) if qty is not None and qty.text else Decimal(0),
            qty.get("unitCode") if qty is not None else None, _dec(node, "cbc:LineExtensionAmount") or Decimal(0),
            _dec(node, "cac:Price/cbc:PriceAmount"), _dec(node, "cac:Price/cbc:BaseQuantity"),
            _text(node, "cac:Item/cac:ClassifiedTaxCategory/cbc:ID"),
            _dec(node, "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent"),
            _text(node, "cac:InvoicePeriod/cbc:StartDate"), _text(node, "cac:InvoicePeriod/cbc:EndDate"),
            _text(node, "cac:Item/cac:SellersItemIdentification/cbc:ID"), allowances))
    due = _text(root, "cbc:DueDate") or _text(root, "cac:PaymentMeans/cbc:PaymentDueDate")
    zero = Decimal(0)
    return UblDocument(
        kind=kind, customization=_text(root, "cbc:CustomizationID"), profile=_text(root, "cbc:ProfileID"),
        number=_text(root, "cbc:ID") or "", type_code=_text(root, f"cbc:{type_tag}") or "",
        issue_date=_text(root, "cbc:IssueDate") or "", due_date=due, currency=currency,
        notes=tuple(n.text.strip() for n in root.findall("cbc:Note", NS) if n.text),
        buyer_reference=_text(root, "cbc:BuyerReference"),
        billing_references=tuple(x.text.strip() for x in root.findall(
            "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", NS) if x.text),
        seller=_party_of(root, "AccountingSupplierParty"), buyer=_party_of(root, "AccountingCustomerParty"),
        tax_total=tax_total, breakdown=tuple(breakdown),
        line_extension=_dec(money, "cbc:LineExtensionAmount") or zero,
        tax_exclusive=_dec(money, "cbc:TaxExclusiveAmount") or zero,
        tax_inclusive=_dec(money, "cbc:TaxInclusiveAmount") or zero,
        allowance_total=_dec(money, "cbc:AllowanceTotalAmount") or zero,
        charge_total=_dec(money, "cbc:ChargeTotalAmount") or zero,
        prepaid=_dec(money, "cbc:PrepaidAmount") or zero,
        rounding=_dec(money, "cbc:PayableRoundingAmount") or zero,
        payable=_dec(money, "cbc:PayableAmount") or zero,
        lines=tuple(lines),
    )


def consistency(doc: UblDocument) -> list[str]:
    """The EN 16931 total rules (BR-CO-10..16) on a read document; empty when they all hold."""
    problems = []
    line_sum = sum((x.net for x in doc.lines), Decimal(0))
    if line_sum != doc.line_extension:
        problems.append(f"BR-CO-10: sum of line net amounts {line_sum} != LineExtensionAmount {doc.line_extension}")
    expected_excl = doc.line_extension - doc.allowance_total + doc.charge_total
    if expected_excl != doc.tax_exclusive:
        problems.append(f"BR-CO-13: TaxExclusiveAmount {doc.tax_exclusive} != {expected_excl}")
    if doc.tax_exclusive + doc.tax_total != doc.tax_inclusive:
        problems.append(f"BR-CO-15: TaxInclusiveAmount {doc.tax_inclusive} != {doc.tax_exclusive} + {doc.tax_total}")
    if sum((b.tax for b in doc.breakdown), Decimal(0)) != doc.tax_total:
        problems.append("BR-CO-14: TaxTotal != sum of the TaxSubtotal amounts")
    if doc.tax_inclusive - doc.prepaid + doc.rounding != doc.payable:
        problems.append(f"BR-CO-16: PayableAmount {doc.payable} != {doc.tax_inclusive} - {doc.prepaid}")
    return problems
