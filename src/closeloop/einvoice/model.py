"""From closeloop's invoice document to EN 16931 (pure): business rules and the semantic model.

The input is the invoice document billing provides (``closeloop.billing.service.invoice_document``):
a dict with amounts as decimal strings (see docs/einvoice.md for every field). Two steps, both pure:

- :func:`check_issue` and :func:`check_export` return every problem at once as :class:`Problem`
  (field, reason): a reverse-charge line without the buyer's VAT id; a seller without tax id or
  address; a buyer without the address fields the format requires; totals that do not equal the
  lines plus tax. :func:`require` turns them into one ``validation_error`` naming fields and format.
- :func:`en16931` maps the document to the EN 16931 semantic model, keyed by business term
  (``BT-1`` invoice number, ``BG-23`` VAT breakdown...): the factur-x library generates the CII XML
  from it and :mod:`closeloop.einvoice.ubl` the UBL XML, so both formats say the same thing.

Category mapping: the tax engine's ``AA`` (reduced rate) is ``S`` in EN 16931 (a standard-rated
category at a lower rate); exemption reason codes (VATEX) follow the category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.core.errors import ValidationError

FORMATS = ("facturx", "ubl")
FORMAT_NAMES = {"facturx": "Factur-X/ZUGFeRD (CII, EN 16931)", "ubl": "UBL 2.1 (Peppol BIS Billing 3.0)"}
CATEGORY_EN16931 = {"AA": "S"}
VATEX = {"AE": "VATEX-EU-AE", "K": "VATEX-EU-IC", "G": "VATEX-EU-G", "O": "VATEX-EU-O"}
DEFAULT_REASON = {"AE": "Reverse charge", "K": "Intra-community supply", "G": "Export outside the EU",
                  "O": "Not subject to VAT", "E": "Exempt"}

# Address fields each format needs from each party (EN 16931 BR-8/BR-10 country; city and postal
# code as XRechnung BR-DE-8/BR-DE-9 and most Peppol access points require; the seller's street).
REQUIRED_ADDRESS = {
    "facturx": {"seller": ("street", "city", "postal_code"), "buyer": ("city", "postal_code")},
    "ubl": {"seller": ("street", "city", "postal_code"), "buyer": ("city", "postal_code")},
}
# Peppol Electronic Address Scheme for a VAT number, by VAT prefix (BT-34 / BT-49).
EAS_BY_VAT_PREFIX = {
    "AT": "9914", "BE": "9925", "BG": "9926", "CY": "9928", "CZ": "9929", "DE": "9930", "EE": "9931",
    "GB": "9932", "EL": "9933", "HR": "9934", "IE": "9935", "LU": "9938", "LV": "9939", "MT": "9943",
    "NL": "9944", "PL": "9945", "PT": "9946", "RO": "9947", "SI": "9949", "SK": "9950", "SM": "9951",
    "HU": "9910", "IT": "9906", "ES": "9920", "FR": "9957", "LT": "9937", "DK": "0198", "SE": "0007",
    "FI": "0216",
}
VAT_PREFIXES = frozenset(EAS_BY_VAT_PREFIX) | {"XI", "CHE", "NO"}


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    reason: str

    def text(self) -> str:
        return f"{self.field}: {self.reason}"


def dec(value: Any) -> Decimal:
    """A decimal string (or number) from the document as Decimal; missing is zero."""
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(f"e-invoice: {value!r} is not a decimal amount", field="amount") from None


def percent(rate: Any) -> str:
    """A rate as a fraction ("0.19") to the percentage EN 16931 wants ("19", "5.5", "6.25")."""
    value = (dec(rate) * 100).normalize()
    return format(value, "f") if value else "0"


def is_credit(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "credit_memo"


def category(line_or_group: Mapping[str, Any]) -> str:
    raw = str(line_or_group.get("tax_category") or line_or_group.get("category") or "")
    return CATEGORY_EN16931.get(raw, raw)


def _sign(doc: Mapping[str, Any]) -> int:
    """Credit memos are shown with positive amounts; a document that stores them negative is flipped."""
    return -1 if is_credit(doc) and dec(doc.get("total")) < 0 else 1


def _address(party: Mapping[str, Any]) -> dict[str, Any]:
    addr = dict(party.get("address") or {})
    if not addr.get("postal_code") and party.get("postal_code"):
        addr["postal_code"] = party["postal_code"]
    if not addr.get("region") and party.get("region"):
        addr["region"] = party["region"]
    return addr


def vat_id(tax_id: str | None) -> str | None:
    """The tax id when it is a VAT number (an EU, UK, Swiss or Norwegian VAT prefix), else None."""
    if not tax_id:
        return None
    text = str(tax_id).replace(" ", "").upper()
    return text if text[:2] in VAT_PREFIXES or text[:3] in VAT_PREFIXES else None


# --------------------------------------------------------------------------- business rules


def check_issue(doc: Mapping[str, Any]) -> list[Problem]:
    """Rules that must hold when the invoice is issued (the e-invoice is made in the same unit)."""
    problems: list[Problem] = []
    buyer = doc.get("buyer") or {}
    for line in doc.get("lines") or []:
        if (line.get("tax_treatment") == "reverse_charge" or line.get("tax_category") == "AE") \
                and not buyer.get("tax_id"):
            problems.append(Problem(f"lines[{line.get('line_no')}].tax_treatment",
                                    "a reverse-charge line needs the buyer's VAT id (buyer.tax_id), which the"
                                    " invoice must show (Article 226(4) of Directive 2006/112/EC)"))
    return problems


def check_totals(doc: Mapping[str, Any]) -> list[Problem]:
    """Totals equal the lines plus tax, the breakdown equals the lines (never violated, but checked)."""
    problems: list[Problem] = []
    lines = doc.get("lines") or []
    groups = doc.get("tax_breakdown") or []
    subtotal, tax, total = dec(doc.get("subtotal")), dec(doc.get("tax")), dec(doc.get("total"))
    line_net = sum((dec(x.get("net")) for x in lines), Decimal(0))
    line_tax = sum((dec(x.get("tax")) for x in lines), Decimal(0))
    if line_net != subtotal:
        problems.append(Problem("subtotal", f"{subtotal} is not the sum of the line net amounts ({line_net})"))
    if line_tax != tax:
        problems.append(Problem("tax", f"{tax} is not the sum of the line tax amounts ({line_tax})"))
    if subtotal + tax != total:
        problems.append(Problem("total", f"{total} is not subtotal {subtotal} + tax {tax}"))
    due = total - paid_amount(doc)
    if "amount_due" in doc and not is_credit(doc) and max(due, Decimal(0)) != dec(doc.get("amount_due")):
        problems.append(Problem("amount_due", f"{doc.get('amount_due')} is not total {total} - credit and prepaid"
                                f" credits applied {paid_amount(doc)}"))
    if groups:
        g_tax = sum((dec(g.get("tax")) for g in groups), Decimal(0))
        if g_tax != tax:
            problems.append(Problem("tax_breakdown", f"the breakdown's tax {g_tax} is not the invoice tax {tax}"))
        for g in groups:
            members = [x for x in lines if category(x) == category(g) and dec(x.get("tax_rate")) == dec(g.get("rate"))]
            nets = sum((dec(x.get("net")) for x in members), Decimal(0))
            taxes = sum((dec(x.get("tax")) for x in members), Decimal(0))
            where = f"tax_breakdown[{category(g)} {percent(g.get('rate'))}%]"
            if nets != dec(g.get("taxable")):
                problems.append(Problem(where, f"taxable {g.get('taxable')} is not the sum of its lines' net"
                                        f" amounts ({nets}); EN 16931 cannot express a partly taxable base"))
            if taxes != dec(g.get("tax")):
                problems.append(Problem(where, f"tax {g.get('tax')} is not the sum of its lines' tax ({taxes})"))
    return problems


def paid_amount(doc: Mapping[str, Any]) -> Decimal:
    """What was paid before the invoice was issued (BT-113): customer credit and prepaid credits (a wallet)."""
    return dec(doc.get("credit_applied")) + dec(doc.get("wallet_applied"))


def is_allowance(line: Mapping[str, Any], sign: int = 1) -> bool:
    """A coupon's discount line (kind ``discount``, negative): a document-level allowance (BG-20) in EN 16931."""
    return line.get("kind") == "discount" and dec(line.get("net")) * sign < 0


def check_export(doc: Mapping[str, Any], fmt: str) -> list[Problem]:
    """Everything ``fmt`` needs: parties, addresses, tax ids, category rules and totals."""
    if fmt not in FORMATS:
        return [Problem("format", f"{fmt!r} is not an e-invoice format; use {' or '.join(FORMATS)}")]
    name = FORMAT_NAMES[fmt]
    problems = check_issue(doc)
    seller, buyer = doc.get("seller") or {}, doc.get("buyer") or {}
    categories = {category(x) for x in doc.get("lines") or []} | {category(g) for g in doc.get("tax_breakdown") or []}
    only_o = categories == {"O"}
    for role, party in (("seller", seller), ("buyer", buyer)):
        if not party.get("name"):
            problems.append(Problem(f"{role}.name", f"is required by the {fmt} format ({name})"))
        if not party.get("country"):
            problems.append(Problem(f"{role}.country", f"is required by the {fmt} format ({name})"))
        addr = _address(party)
        for key in REQUIRED_ADDRESS[fmt][role]:
            if not addr.get(key):
                problems.append(Problem(f"{role}.address.{key}", f"is required by the {fmt} format ({name})"))
    if not seller.get("tax_id") and not only_o:
        problems.append(Problem("seller.tax_id", f"the seller's tax id is required by the {fmt} format ({name});"
                                " set it with entity.create tax_id"))
    if "O" in categories and len(categories) > 1:
        problems.append(Problem("lines", "EN 16931 BR-O-11..14: an invoice with category O (not subject to VAT)"
                                f" cannot have other categories ({', '.join(sorted(categories - {'O'}))})"))
    for key in ("AE", "K"):
        if key in categories and not vat_id(buyer.get("tax_id")):
            problems.append(Problem("buyer.tax_id", f"category {key} needs the buyer's VAT identifier"
                                    f" (EN 16931 BR-{'AE' if key == 'AE' else 'IC'}-02); it is"
                                    f" {buyer.get('tax_id') or 'missing'}"))
    for g in doc.get("tax_breakdown") or []:
        if category(g) in ("E", "AE", "K", "G", "O") and not (g.get("exemption_reason") or VATEX.get(category(g))):
            problems.append(Problem(f"tax_breakdown[{category(g)}].exemption_reason",
                                    f"category {category(g)} needs an exemption reason (EN 16931 BR-{category(g)}-10)"))
    problems.extend(check_totals(doc))
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.field, p.reason) not in seen:
            seen.add((p.field, p.reason))
            out.append(p)
    return out


def require(problems: list[Problem], *, number: str, fmt: str | None = None) -> None:
    """Raise one ``validation_error`` that names every field, the record and the format."""
    if not problems:
        return
    where = f" for {fmt} ({FORMAT_NAMES.get(fmt, fmt)})" if fmt else ""
    text = "; ".join(p.text() for p in problems)
    raise ValidationError(f"e-invoice {number}{where}: {text}", field=problems[0].field, record=number,
                          format=fmt, errors=[{"field": p.field, "reason": p.reason} for p in problems])


# --------------------------------------------------------------------------- EN 16931 semantic model


def _money(value: Any, sign: int) -> str:
    return format(dec(value) * sign, "f")


def _quantity_and_price(line: Mapping[str, Any], sign: int) -> tuple[str, str]:
    """(quantity, net price) with quantity x price = net (BR-LIN): the price is never negative (BR-27),
    a negative line has a negative quantity; a net that is not quantity x price is shown per unit."""
    net = dec(line.get("net")) * sign
    qty = dec(line.get("quantity") or 1) or Decimal(1)
    price = dec(line.get("unit_price")) if line.get("unit_price") not in (None, "") else None
    if price is not None and price >= 0 and abs(qty) * price == abs(net):
        q = abs(qty) if net >= 0 else -abs(qty)
        return format(q.normalize(), "f"), format(price, "f")
    unit = (abs(net) / abs(qty))
    if unit == unit.quantize(Decimal("0.0001")):
        q = abs(qty) if net >= 0 else -abs(qty)
        return format(q.normalize(), "f"), format(unit.quantize(Decimal("0.0001")).normalize(), "f")
    return ("1" if net >= 0 else "-1"), format(abs(net), "f")


def _party(party: Mapping[str, Any], role: str) -> dict[str, Any]:
    addr = _address(party)
    out: dict[str, Any] = {"name": party.get("name"), "country_code": party.get("country")}
    for src, dst in (("city", "city"), ("postal_code", "postcode"), ("street", "addr_l1"), ("street2", "addr_l2"),
                     ("region", "country_subdivision")):
        if addr.get(src):
            out[dst] = str(addr[src])
    vid = vat_id(party.get("tax_id"))
    if vid:
        out["vat_identifier"] = vid
    elif party.get("tax_id"):
        out["tax_identifier"] = str(party["tax_id"])
    if role == "buyer" and party.get("email"):
        out["einvoicing_addr"] = str(party["email"])
        out["einvoicing_addr_schemeid"] = "EM"
    elif vid and EAS_BY_VAT_PREFIX.get(vid[:2]):
        out["einvoicing_addr"] = vid
        out["einvoicing_addr_schemeid"] = EAS_BY_VAT_PREFIX[vid[:2]]
    return out


def en16931(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document as EN 16931 business terms (the factur-x library's data dict)."""
    sign = _sign(doc)
    credit = is_credit(doc)
    lines = doc.get("lines") or []
    starts = sorted(str(x["period_start"]) for x in lines if x.get("period_start"))
    ends = sorted(str(x["period_end"]) for x in lines if x.get("period_end"))
    notes = [{"BT-22": str(m)} for m in doc.get("mentions") or []]
    if credit and doc.get("reason"):
        notes.append({"BT-22": f"Credit memo: {doc['reason']}"})
    data: dict[str, Any] = {
        "BT-1": str(doc["number"]),
        "BT-2": str(doc["date"]),
        "BT-3": "381" if credit else "380",
        "BT-5": str(doc["currency"]),
        "BT-10": str((doc.get("buyer") or {}).get("customer") or doc["number"]),
        "BT-72": ends[-1] if ends else str(doc["date"]),
        "BG-4": _party(doc.get("seller") or {}, "seller"),
        "BG-7": _party(doc.get("buyer") or {}, "buyer"),
    }
    if notes:
        data["BG-1"] = notes
    if doc.get("due_date") and not credit:
        data["BT-9"] = str(doc["due_date"])
    if doc.get("payment_terms_days") is not None and not credit:
        data["BT-20"] = f"Payment within {int(doc['payment_terms_days'])} days"
    if starts and ends:
        data["BT-73"], data["BT-74"] = starts[0], ends[-1]
    if credit and doc.get("original_invoice"):
        data["BG-3"] = [{"BT-25": str(doc["original_invoice"])}]
    breakdown = []
    for g in doc.get("tax_breakdown") or []:
        cat = category(g)
        entry = {"BT-116": _money(g.get("taxable"), sign), "BT-117": _money(g.get("tax"), sign), "BT-118": cat,
                 "BT-119": percent(g.get("rate"))}
        if cat in ("E", "AE", "K", "G", "O"):
            entry["BT-120"] = str(g.get("exemption_reason") or DEFAULT_REASON[cat])
            if VATEX.get(cat):
                entry["BT-121"] = VATEX[cat]
        breakdown.append(entry)
    data["BG-23"] = breakdown
    # coupons' discount lines are document-level allowances (BG-20): amount, reason, code 95 (discount), the VAT
    # category and rate of the line they discount (BR-CO-13: BT-109 = BT-106 - BT-107)
    allowances = []
    for line in lines:
        if not is_allowance(line, sign):
            continue
        cat = category(line)
        allowance = {"amount": _money(-dec(line.get("net")) * sign, 1), "reason": str(line.get("description") or
                                                                                       "Discount"),
                     "reason_code": "95", "vat_category_code": cat}
        if cat != "O":
            allowance["vat_rate"] = percent(line.get("tax_rate"))
        allowances.append(allowance)
    if allowances:
        data["BG-20"] = allowances
    out_lines = []
    for line in lines:
        if is_allowance(line, sign):
            continue
        qty, price = _quantity_and_price(line, sign)
        entry = {"BT-126": str(line["line_no"]), "BT-129": qty, "BT-130": "C62",
                 "BT-131": _money(line.get("net"), sign), "BT-146": price, "BT-151": category(line),
                 "BT-152": percent(line.get("tax_rate")), "BT-153": str(line.get("description") or line.get("sku")
                                                                          or f"Line {line['line_no']}")}
        if line.get("sku"):
            entry["BT-155"] = str(line["sku"])
        if line.get("period_start") and line.get("period_end"):
            entry["BT-134"], entry["BT-135"] = str(line["period_start"]), str(line["period_end"])
        out_lines.append(entry)
    data["BG-25"] = out_lines
    subtotal, tax, total = (_money(doc.get(k), sign) for k in ("subtotal", "tax", "total"))
    paid = _money(paid_amount(doc), sign) if doc.get("credit_applied") not in (None, "") \
        or doc.get("wallet_applied") else None
    # BR-CO-16: amount due = total - paid; a credit memo's "due" is its total (what is credited)
    due = total if credit else format(dec(total) - dec(paid or 0), "f")
    allowed = sum((dec(a["amount"]) for a in allowances), Decimal(0))
    line_total = format(dec(subtotal) + allowed, "f")
    data.update({"BT-106": line_total, "BT-109": subtotal, "BT-110": tax, "BT-112": total, "BT-115": due})
    if allowances:
        data["BT-107"] = format(allowed, "f")
    if paid is not None and dec(paid) != 0:
        data["BT-113"] = paid
    return data
