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

The file is read by ``core.boundary.csv_rows``: any line end (CRLF, LF, a lone CR), cells bounded in size,
NUL refused, each naming the file and line.

**Amounts: decimal comma or decimal point.** Each amount says which mark is its decimal when it can
(``1.234,56`` and ``1,234.56``; ``150,00`` and ``150.00``, since a thousands separator groups three
digits; ``1.234.567`` groups thousands). One that cannot tell (``1,234`` or ``1.234``: a thousand, or one
and a bit) takes ``options.decimal`` when given, else the mark the other amounts of the column show, if
they agree; otherwise it is refused as ambiguous, naming the line and the column. An amount whose own
mark contradicts ``options.decimal`` is refused too. Nothing is ever scaled silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from closeloop.collections.connectors import MAX_MAJOR_DIGITS, Statement, StatementLine, checked
from closeloop.core.boundary import csv_rows
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


def _decode(data: bytes, name: str) -> str:
    boms = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
            (b"\xfe\xff", "utf-16"))
    for bom, encoding in boms:
        if data.startswith(bom):
            try:
                return data.decode(encoding).lstrip("\ufeff")
            except UnicodeDecodeError as exc:
                raise _refuse(name, f"not readable as {encoding.upper()} ({exc.reason} at byte {exc.start})") from None
    try:
        return data.decode("utf-8-sig").lstrip("\ufeff")
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


_SPACES = str.maketrans("", "", " \u00a0\u202f\u2009")
_NUMBER = re.compile(r"^[0-9.,']*[0-9][0-9.,']*$")


def _sign(text: str) -> tuple[bool, str]:
    """(negative, the digits and marks) of an amount cell: ``-150,00``, ``+150.00``, ``150,00-``, ``(150.00)``."""
    raw = text.translate(_SPACES)
    negative = False
    if raw.startswith("(") and raw.endswith(")"):
        negative, raw = True, raw[1:-1]
    if raw.endswith("-"):
        negative, raw = not negative, raw[:-1]
    elif raw[:1] in "+-" and raw:
        negative, raw = raw[0] == "-", raw[1:]
    return negative, raw


def own_mark(body: str) -> str | None:
    """The decimal mark an amount shows by itself (``,`` or ``.``), None when it cannot tell (``1,234``, or no
    mark at all). Raises ValueError for what is no amount (letters, a misplaced separator)."""
    if not _NUMBER.match(body):
        raise ValueError("is not a number (digits with a decimal comma or point)")
    marks = [c for c in body if c in ".,"]
    if not marks:
        return None
    if len(set(marks)) == 2:  # both: the last one is the decimal mark, the other groups thousands
        decimal = marks[-1]
        if marks.count(decimal) > 1:
            raise ValueError(f"has {decimal!r} twice besides {'.' if decimal == ',' else ','!r}")
        _groups(body.partition(decimal)[0], "." if decimal == "," else ",")
        return decimal
    mark = marks[0]
    if len(marks) > 1:  # 1.234.567: the mark groups thousands, the decimal is the other one
        _groups(body.partition("," if mark == "." else ".")[0], mark)
        return "," if mark == "." else "."
    whole, _, frac = body.replace("'", "").partition(mark)
    if len(frac) != 3 or not whole or len(whole) > 3 or whole.startswith("0"):
        return mark  # a thousands separator groups exactly three digits after one to three before
    return None


def _groups(whole: str, group: str) -> list[str]:
    """The digit groups of an amount's whole part; thousands separators stand before each group of three."""
    groups = re.split(r"[',]" if group == "," else r"['.]", whole)
    if len(groups) > 1 and (not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:])):
        raise ValueError(f"groups its digits wrongly (a thousands separator {group!r} or \"'\" must stand before"
                         " each group of three digits)")
    return groups


def read_amount(body: str, decimal: str, currency: str) -> int:
    """Minor units of an amount whose decimal mark is known; grouping checked, range and decimals checked."""
    group = "." if decimal == "," else ","
    whole, _, frac = body.partition(decimal)
    if decimal in frac or group in frac or "'" in frac:
        raise ValueError(f"has a separator after its decimal mark {decimal!r}")
    digits = "".join(_groups(whole, group)).lstrip("0")
    exp = exponent(currency)
    if len(digits) > MAX_MAJOR_DIGITS:
        raise ValueError(f"is out of range (at most {MAX_MAJOR_DIGITS} digits before the decimals)")
    if len(frac.rstrip("0")) > exp:
        raise ValueError(f"has more decimals than {currency} allows ({exp})")
    return int(digits or "0") * int(10**exp) + int(frac[:exp].ljust(exp, "0") or "0")


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


def _row_amount(body: str, currency: str, decimal: str | None, column_mark: str | None, *, mixed: bool) -> int:
    """Minor units of an unsigned amount: its own decimal mark, else options.decimal, else the column's."""
    if not _NUMBER.match(body):
        raise ValueError("is not a number (digits with a decimal comma or point)")
    if not any(c in ".," for c in body):
        return read_amount(body, ".", currency)  # whole units (apostrophes may group them)
    mark = own_mark(body)
    if mark and decimal and mark != decimal:
        raise ValueError(f"uses {mark!r} as its decimal mark, but options.decimal is {decimal!r}")
    mark = mark or decimal or column_mark
    if mark is None:
        why = ("the column mixes decimal commas and decimal points" if mixed
               else "no other amount of the column shows its decimal mark")
        raise ValueError(f"is ambiguous: {body[-4]!r} may be a decimal mark or a thousands separator and {why};"
                         " set options.decimal to ',' or '.'")
    return read_amount(body, mark, currency)


def _header(text: str, name: str, delimiter: str | None) -> list[str]:
    """The field names of a file with a header and no rows: a one-cell dummy row makes the reader give them."""
    for row in csv_rows(text.rstrip("\r\n") + "\n\u2063", record=name, delimiter=delimiter):
        return [k for k in row if k is not None]
    return []


def parse_csv(data: bytes, name: str = "statement.csv", mapping: dict[str, Any] | None = None,
              currency: str | None = None) -> list[Statement]:
    text = _decode(data, name)
    if not text.strip():
        raise _refuse(name, "the file is empty")
    options = dict((mapping or {}).get("options") or {})
    delimiter = options.get("delimiter") or None
    decimal = options.get("decimal")
    if decimal not in (None, ",", "."):
        raise _refuse(name, f"options.decimal {str(decimal)[:20]!r} must be ',' or '.'", field_name="options.decimal")
    rows: list[tuple[int, dict[str | None, Any]]] = []
    reader: Iterator[dict[str | None, Any]] = csv_rows(text, record=name, delimiter=delimiter)  # type: ignore[assignment]
    for n, row in enumerate(reader, 2):
        rows.append((n, row))
    raw_headers = [k for k in rows[0][1] if k is not None] if rows else _header(text, name, delimiter)
    by_name = {h.strip(): h for h in raw_headers}
    headers = list(by_name)
    cols = _resolve_mapping(headers, mapping, name)
    fixed_currency = options.get("currency") or currency
    amount_column = ", ".join(cols["amount"])
    problems: list[tuple[int, str]] = []
    lines: list[StatementLine] = []
    accounts: set[str] = set()

    def get(row: dict[str | None, Any], key: str) -> str | None:
        if key not in cols:
            return None
        values = [v.strip() for c in cols[key] if isinstance(v := row.get(by_name[c]), str) and v.strip()]
        return " ".join(values) if values else None

    # the decimal mark each amount shows by itself, and the one the column agrees on
    marks: dict[int, str | None] = {}
    for n, row in rows:
        try:
            marks[n] = own_mark(_sign(get(row, "amount") or "")[1])
        except ValueError:
            marks[n] = None  # reported with the row below
    shown = {m for m in marks.values() if m}
    column_mark = shown.pop() if len(shown) == 1 else None

    for n, row in rows:
        if not any(isinstance(v, str) and v.strip() for v in row.values()):
            continue
        try:
            ccy = (get(row, "currency") or fixed_currency or "").upper()
            if not ccy:
                raise ValueError("no currency (map a column or set options.currency)")
            text_amount = get(row, "amount") or ""
            if not text_amount:
                raise ValueError(f"column {amount_column!r}: no amount")
            negative, body = _sign(text_amount)
            try:
                signed = _row_amount(body, ccy, decimal, column_mark, mixed=len(shown) > 1)
            except ValueError as exc:
                raise ValueError(f"column {amount_column!r}: amount {text_amount[:40]!r} {exc}") from None
            signed = -signed if negative else signed
            word = (get(row, "direction") or "").strip().lower()
            if word in CREDIT_WORDS:
                direction, amount = "credit", abs(signed)
            elif word in DEBIT_WORDS:
                direction, amount = "debit", abs(signed)
            elif word:
                raise ValueError(f"direction {word[:40]!r} is neither credit nor debit")
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
        except (ValueError, ValidationError) as exc:
            reason = exc.message if isinstance(exc, ValidationError) else str(exc)
            problems.append((n, f"line {n}: {reason}"))
    if problems:
        raise _refuse(name, f"{len(problems)} row(s) cannot be read: " + "; ".join(p for _, p in problems[:20]),
                      errors=[p for _, p in problems[:200]], line=problems[0][0])
    currencies = {line.currency for line in lines}
    return checked([Statement(format="csv", statement_id=name[:128], account=", ".join(sorted(accounts)),
                              currency=currencies.pop() if len(currencies) == 1 else None, lines=tuple(lines),
                              version="csv")], name)
