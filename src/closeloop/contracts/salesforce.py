"""Salesforce Opportunity / OpportunityLineItem records -> ``opportunity.upsert`` payloads. Pure.

Reads what Salesforce produces: Data Loader CSV exports (UPPERCASE quoted API names), report or
workbench CSVs with API names in any case, and REST / outbound-webhook JSON (an Opportunity
sObject, optionally with ``OpportunityLineItems: {records: [...]}``, or ``{"Opportunity": ...,
"OpportunityLineItems": [...]}``). The field names read for each value come from the mapping's
``salesforce`` section (config/opportunity_mapping.yaml). Every problem of a record is returned,
named by field, so an import can report the file line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.core.boundary import parse_json
from closeloop.core.errors import ValidationError

_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


@dataclass(frozen=True, slots=True)
class Record:
    """One source record: its fields and where it came from (file and line, for reports)."""

    fields: Mapping[str, Any]
    file: str
    line: int


def lookup(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The first of ``names`` present and not empty, case-insensitive; dotted names walk nested objects."""
    folded = {str(k).lower(): v for k, v in record.items()}
    for name in names:
        parts = name.lower().split(".")
        value: Any = folded.get(parts[0])
        for part in parts[1:]:
            if not isinstance(value, Mapping):
                value = None
                break
            value = {str(k).lower(): v for k, v in value.items()}.get(part)
        if value is not None and value != "":
            return value
    return None


def parse_day(value: Any) -> str | None:
    """ISO date from Salesforce forms: 2026-03-31, 2026-03-31T00:00:00.000Z, 3/31/2026."""
    text = str(value).strip()
    m = _US_DATE.match(text)
    if m:
        try:
            return date(int(m.group(3)), int(m.group(1)), int(m.group(2))).isoformat()
        except ValueError:
            return None
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        return None


def parse_decimal(value: Any) -> Decimal | None:
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def parse_bool(value: Any) -> bool | None:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y"):
        return True
    if text in ("false", "0", "no", "n"):
        return False
    return None


def opportunity_payload(opp: Mapping[str, Any], items: Iterable[Mapping[str, Any]], mapping: Mapping[str, Any]
                        ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The ``opportunity.upsert`` payload of one opportunity and its line items, and its problems."""
    names = mapping["salesforce"]["opportunity"]
    item_names = mapping["salesforce"]["line_item"]
    problems: list[dict[str, str]] = []

    def bad(field: str, reason: str) -> None:
        problems.append({"field": field, "reason": reason})

    out: dict[str, Any] = {}
    ext = lookup(opp, names["external_id"])
    if ext is None:
        bad("external_id", f"no opportunity id (looked for {', '.join(names['external_id'])})")
    out["external_id"] = str(ext or "")
    customer = lookup(opp, names["customer"])
    if customer is None:
        bad("customer", f"no account (looked for {', '.join(names['customer'])})")
    out["customer"] = f"{mapping.get('customer_prefix') or ''}{customer or ''}"
    stage = lookup(opp, names["stage"])
    if stage is None:
        bad("stage", "no stage")
    out["stage"] = str(stage or "")
    close = lookup(opp, names["close_date"])
    day = parse_day(close) if close is not None else None
    if day is None:
        bad("close_date", f"{close!r} is not a date")
    out["close_date"] = day or ""
    currency = lookup(opp, names["currency"])
    if currency is None:
        bad("currency", "no currency (CurrencyIsoCode)")
    out["currency"] = str(currency or "").upper()
    for key in ("name", "price_book", "entity"):
        value = lookup(opp, names.get(key, ()))
        if value is not None:
            out[key] = str(value)
    amount = lookup(opp, names.get("amount", ()))
    if amount is not None:
        if parse_decimal(amount) is None:
            bad("amount", f"{amount!r} is not a number")
        else:
            out["amount"] = str(parse_decimal(amount))
    for key in ("term_months", "billing_day"):
        value = lookup(opp, names.get(key, ()))
        if value is not None:
            num = parse_decimal(value)
            if num is None or num != num.to_integral_value():
                bad(key, f"{value!r} is not a whole number")
            else:
                out[key] = int(num)
    start = lookup(opp, names.get("start", ()))
    if start is not None:
        if parse_day(start) is None:
            bad("start", f"{start!r} is not a date")
        else:
            out["start"] = parse_day(start)
    renew = lookup(opp, names.get("auto_renew", ()))
    if renew is not None:
        flag = parse_bool(renew)
        if flag is None:
            bad("auto_renew", f"{renew!r} is not true or false")
        else:
            out["auto_renew"] = flag
    lines = []
    for i, item in enumerate(items):
        where = f"lines[{i}]"
        line: dict[str, Any] = {}
        code = lookup(item, item_names["product_code"])
        if code is None:
            bad(f"{where}.sku", "no product code")
        line["sku"] = str(code or "")
        qty = lookup(item, item_names["quantity"])
        q = parse_decimal(qty) if qty is not None else None
        if q is None:
            bad(f"{where}.quantity", f"{qty!r} is not a quantity")
        line["quantity"] = str(q if q is not None else 0)
        line_id = lookup(item, item_names.get("line_id", ()))
        if line_id is not None:
            line["line_id"] = str(line_id)
        price_id = lookup(item, item_names.get("price_id", ()))
        if price_id is not None:
            line["price_id"] = str(price_id)
        unit = lookup(item, item_names.get("unit_price", ()))
        if unit is not None:
            u = parse_decimal(unit)
            if u is None:
                bad(f"{where}.unit_amount", f"{unit!r} is not an amount")
            else:
                line["unit_amount"] = str(u)
        list_price = lookup(item, item_names.get("list_price", ()))
        if list_price is not None and parse_decimal(list_price) is not None:
            line["list_amount"] = str(parse_decimal(list_price))
        disc = lookup(item, item_names.get("discount", ()))
        if disc is not None:
            d = parse_decimal(disc)
            if d is None:
                bad(f"{where}.discount_pct", f"{disc!r} is not a percentage")
            else:
                line["discount_pct"] = str(d)
        lines.append(line)
    out["lines"] = lines
    return out, problems


def webhook_records(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Mapping[str, Any]], list[dict[str, str]]]:
    """The opportunity, its line items and the problems of the line items, from a webhook/REST body (the
    shapes in the module docstring). Line items that are not a list of objects (or ``{records: [...]}``)
    are a problem naming ``OpportunityLineItems``: dropping them would upsert the opportunity without them."""
    if "Opportunity" in body and isinstance(body["Opportunity"], Mapping):
        opp = body["Opportunity"]
        items = body.get("OpportunityLineItems") or opp.get("OpportunityLineItems") or []
    else:
        opp = body
        items = body.get("OpportunityLineItems") or []
    where = "OpportunityLineItems"
    if isinstance(items, Mapping):
        items, where = items.get("records") or [], "OpportunityLineItems.records"
    if not isinstance(items, list):
        return opp, [], [{"field": where, "reason": f"must be a list of line items, not {_kind(items)}"}]
    problems = [{"field": f"{where}[{i}]", "reason": f"must be a line item object, not {_kind(item)}"}
                for i, item in enumerate(items) if not isinstance(item, Mapping)]
    return opp, [i for i in items if isinstance(i, Mapping)], problems


def _kind(value: Any) -> str:
    """What a JSON value is, for a message: ``a number (1)``, ``text ('abc')``."""
    kind = {bool: "true or false", int: "a number", float: "a number", str: "text"}.get(type(value), "a value")
    text = repr(value) if isinstance(value, str) else str(value)
    return f"{kind} ({text[:40] + '...' if len(text) > 40 else text})"


def read_csv_records(text: str, name: str) -> list[Record]:
    """Rows of a CSV export (the dialect sniffed among , ; tab |), each with the line it starts on.

    Read with the importers' guards (closeloop.customers.importers.read_csv_cells): any line end, cells up to
    a million characters, no NUL; a file that cannot be read is a ValidationError naming file and line."""
    from closeloop.customers.importers import read_csv_cells

    first = re.split(r"\r\n|\r|\n", text[:4096], maxsplit=1)[0]
    try:
        dialect: Any = csv.Sniffer().sniff(first or ",", delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    records, broken = read_csv_cells(text, name, dialect=dialect)
    if broken is not None:
        line, reason = broken
        raise ValidationError(f"file {name} line {line}: not readable as CSV ({reason})", field="file", record=name,
                              line=line)
    if not records:
        return []
    header = [h.strip() for h in records[0][1]]
    out = []
    for line, cells in records[1:]:
        if not any(c.strip() for c in cells):
            continue
        out.append(Record({k: v.strip() for k, v in zip(header, cells, strict=False) if k}, name, line))
    return out


def read_json_records(text: str, name: str) -> list[Record]:
    """Opportunities of a JSON export: a list, ``{records: [...]}`` (REST / tree) or one object. Hostile JSON
    (too deep, numbers beyond 64 bits, NUL, unpaired surrogates) is a ValidationError naming the file."""
    data = parse_json(text, record=name)
    if isinstance(data, Mapping):
        data = data.get("records", [data]) if "records" in data else [data]
    if not isinstance(data, list):
        raise ValidationError(f"file {name}: records must be a list of opportunities", field="records", record=name)
    return [Record(r, name, i + 1) for i, r in enumerate(data) if isinstance(r, Mapping)]
