"""Bank statements as CSV with a column mapping.

The mapping names, for each field of a statement line, the CSV column that holds it
(or several, joined, for ``remittance``)::

    {"date": "Booking date", "amount": "Amount", "currency": "Currency",
     "remittance": ["Purpose", "Reference"], "payer_name": "Counterparty", "payer_account": "IBAN",
     "direction": "D/C",                      # optional: else the amount's sign decides
     "options": {"decimal": ",", "date_format": "%d.%m.%Y", "delimiter": ";", "currency": "EUR"}}

Without a mapping, columns are recognised by common header names (``date``,
``booking date``, ``amount``, ``currency``, ``reference``, ``remittance``,
``description``, ``payer``, ``iban``...). Every row that cannot be read is reported
with its line number; a file with such rows is refused whole.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.collections.connectors import Statement, StatementLine
from closeloop.core.errors import ValidationError
from closeloop.core.money import exponent

FIELDS = ("date", "value_date", "amount", "currency", "direction", "remittance", "reference", "payer_name",
          "payer_account", "bank_reference", "end_to_end", "account")
SYNONYMS: dict[str, tuple[str, ...]] = {
    "date": ("date", "booking date", "booking_date", "bookingdate", "buchungstag", "transaction date", "datum"),
    "value_date": ("value date", "value_date", "valuta", "wertstellung"),
    "amount": ("amount", "betrag", "value", "montant"),
    "currency": ("currency", "ccy", "währung", "waehrung", "devise"),
    "direction": ("direction", "d/c", "credit/debit", "cdtdbtind", "type"),
    "remittance": ("remittance", "remittance information", "purpose", "description", "verwendungszweck",
                   "details", "memo", "narrative"),
    "reference": ("reference", "creditor reference", "ref", "structured reference"),
    "payer_name": ("payer", "payer name", "counterparty", "name", "debtor", "auftraggeber"),
    "payer_account": ("iban", "payer account", "counterparty iban", "account number", "debtor iban"),
    "bank_reference": ("bank reference", "transaction id", "id"),
    "end_to_end": ("end to end id", "end_to_end", "endtoendid", "end-to-end id"),
    "account": ("account", "our account", "statement account"),
}
CREDIT_WORDS = {"c", "cr", "crdt", "credit", "h", "haben", "in", "+"}
DEBIT_WORDS = {"d", "dr", "dbit", "debit", "s", "soll", "out", "-"}


def _refuse(name: str, reason: str, **details: Any) -> ValidationError:
    return ValidationError(f"{name}: {reason}", field="file", record=name, **details)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _resolve_mapping(headers: list[str], mapping: dict[str, Any] | None, name: str) -> dict[str, list[str]]:
    lowered = {h.strip().lower(): h for h in headers}
    out: dict[str, list[str]] = {}
    if mapping:
        unknown = sorted(set(mapping) - set(FIELDS) - {"options"})
        if unknown:
            raise _refuse(name, f"unknown mapping field(s) {', '.join(unknown)}; fields are {', '.join(FIELDS)}")
        for key, value in mapping.items():
            if key == "options":
                continue
            cols = [value] if isinstance(value, str) else list(value or [])
            missing = [c for c in cols if c not in headers and c.strip().lower() not in lowered]
            if missing:
                raise _refuse(name, f"mapping {key}: column(s) {', '.join(map(repr, missing))} not in the header"
                              f" ({', '.join(headers)})", field_name=key)
            out[key] = [c if c in headers else lowered[c.strip().lower()] for c in cols]
    else:
        for key, names in SYNONYMS.items():
            for candidate in names:
                if candidate in lowered:
                    out[key] = [lowered[candidate]]
                    break
    for required in ("date", "amount"):
        if required not in out:
            raise _refuse(name, f"no {required} column: give a mapping (header is {', '.join(headers)})")
    return out


def _amount(text: str, decimal: str, currency: str) -> int:
    raw = text.strip().replace(" ", "").replace("\u00a0", "")
    raw = raw.replace(".", "").replace(",", ".") if decimal == "," else raw.replace(",", "")
    negative = raw.endswith("-")
    raw = raw.rstrip("-")
    value = Decimal(raw)
    if negative:
        value = -value
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidOperation(f"more decimals than {currency} allows")
    return int(scaled)


def _date(text: str, fmt: str | None) -> str:
    text = text.strip()
    if fmt:
        return datetime.strptime(text, fmt).date().isoformat()
    for candidate in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y%m%d"):
        try:
            return datetime.strptime(text[:10] if candidate == "%Y-%m-%d" else text, candidate).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"date {text!r} is not ISO (YYYY-MM-DD); give options.date_format")


def parse_csv(data: bytes, name: str = "statement.csv", mapping: dict[str, Any] | None = None,
              currency: str | None = None) -> list[Statement]:
    text = _decode(data)
    if not text.strip():
        raise _refuse(name, "the file is empty")
    options = dict((mapping or {}).get("options") or {})
    delimiter = options.get("delimiter")
    if not delimiter:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = list(reader)
    headers = [h.strip() for h in rows[0]]
    cols = _resolve_mapping(headers, mapping, name)
    index = {h: i for i, h in enumerate(headers)}
    decimal = options.get("decimal", ".")
    fixed_currency = options.get("currency") or currency
    problems: list[str] = []
    lines: list[StatementLine] = []
    accounts: set[str] = set()

    def get(row: list[str], key: str) -> str | None:
        if key not in cols:
            return None
        values = [row[index[c]].strip() for c in cols[key] if index[c] < len(row) and row[index[c]].strip()]
        return " ".join(values) if values else None

    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            ccy = (get(row, "currency") or fixed_currency or "").upper()
            if not ccy:
                raise ValueError("no currency (map a column or set options.currency)")
            signed = _amount(get(row, "amount") or "", decimal, ccy)
            word = (get(row, "direction") or "").strip().lower()
            if word in CREDIT_WORDS:
                direction, amount = "credit", abs(signed)
            elif word in DEBIT_WORDS:
                direction, amount = "debit", abs(signed)
            elif word:
                raise ValueError(f"direction {word!r} is neither credit nor debit")
            else:
                direction, amount = ("credit" if signed >= 0 else "debit"), abs(signed)
            day = _date(get(row, "date") or "", options.get("date_format"))
            value_day = get(row, "value_date")
            reference = get(row, "reference")
            account = get(row, "account")
            if account:
                accounts.add(account)
            lines.append(StatementLine(
                entry=n - 1, detail=1, booking_date=day,
                value_date=_date(value_day, options.get("date_format")) if value_day else None,
                direction=direction, amount=amount, currency=ccy,
                remittance=tuple(x for x in (get(row, "remittance"),) if x),
                references=(reference,) if reference else (), end_to_end=get(row, "end_to_end"),
                bank_reference=get(row, "bank_reference"), payer_name=get(row, "payer_name"),
                payer_account=(get(row, "payer_account") or "").replace(" ", "") or None,
            ))
        except (ValueError, InvalidOperation, ValidationError) as exc:
            reason = exc.message if isinstance(exc, ValidationError) else str(exc)
            problems.append(f"line {n}: {reason}")
    if problems:
        raise _refuse(name, f"{len(problems)} row(s) cannot be read: " + "; ".join(problems[:20]),
                      errors=problems)
    currencies = {line.currency for line in lines}
    return [Statement(format="csv", statement_id=name, account=", ".join(sorted(accounts)),
                      currency=currencies.pop() if len(currencies) == 1 else None, lines=tuple(lines), version="csv")]
