"""SWIFT MT940 customer statements, read with the maintained ``mt-940`` parser.

What this adds around the library: decoding (UTF-8, else Windows-1252), the
SWIFT framing bytes (SOH/ETX) removed, a second pass with the ASN Bank
statement tag for banks that put the counterparty IBAN in the customer
reference (``:61:`` longer than SWIFT allows), remittance taken from the SEPA
``?20-?29`` purpose (parsed by the library), the ``/REMI/`` field of the
Dutch structured ``:86:`` or else the whole ``:86:`` text, and reversals
(``RC``/``RD``) flagged.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import mt940
from mt940 import tags as mt_tags

from closeloop.collections.connectors import Statement, StatementLine, checked
from closeloop.core.errors import ValidationError
from closeloop.core.money import exponent

_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$")
# the amount of each field that carries one (SWIFT: digits with one decimal comma, at most 15 characters)
_AMOUNTS = (re.compile(r"^:(6[0245][FM]?|65):[CD]\d{6}[A-Z]{3}([^A-Z\s]*)"),
            re.compile(r"^:(61):\d{6}(?:\d{4})?R?[CD][A-Z]?([\d,.]*)"),
            re.compile(r"^:(90[CD]):\d{1,5}[A-Z]{3}([^A-Z\s]*)"),
            re.compile(r"^:(34F):[A-Z]{3}[CD]?([^A-Z\s]*)"))
_FIELD = re.compile(r"/(EREF|REMI|NAME|IBAN|BENM|ORDP|CSID|MARF|BIC|ADDR|ISDT|RTRN|PREF|SVCL)/")


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1252 decodes nearly everything
        text = data.decode("latin-1")
    return text.replace("\x01", "").replace("\x03", "").replace("\r\n", "\n").replace("\u00ad", "")


def _structured(details: str) -> dict[str, str]:
    """The ``/KEY/value`` fields of a Dutch-style structured :86: (Rabobank, ING SEPA)."""
    flat = details.replace("\n", "")
    parts = _FIELD.split(flat)
    out: dict[str, str] = {}
    for key, value in zip(parts[1::2], parts[2::2], strict=False):
        value = value.strip().strip("/")
        if value and key not in out:
            out[key] = value
    return out


def _parse(text: str, name: str) -> Any:
    errors = []
    quiet = logging.getLogger("mt940")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return _try(text, name, errors)
    finally:
        quiet.setLevel(level)


def _try(text: str, name: str, errors: list[str]) -> Any:
    for extra in (None, {mt_tags.StatementASNB.id: mt_tags.StatementASNB()}):
        try:
            transactions = mt940.models.Transactions(tags=extra) if extra else mt940.models.Transactions()
            transactions.parse(text)
            return transactions
        except ArithmeticError:  # decimal.InvalidOperation: an amount the library could not convert
            raise _bad_amount(text, name) from None
        except (RuntimeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            errors.append(str(exc).split("\n", 1)[0][:300])
    raise ValidationError(f"{name}: not a readable MT940 statement: {errors[-1]}", field="file", record=name)


def _bad_amount(text: str, name: str) -> ValidationError:
    """The refusal for an amount that is no SWIFT amount (``1,5,0``), naming its line and field."""
    for number, line in enumerate(text.split("\n"), 1):
        for pattern in _AMOUNTS:
            m = pattern.match(line)
            if m is None:
                continue
            amount = m.group(2)
            try:
                Decimal(amount.replace(",", "."))
            except InvalidOperation:
                return ValidationError(f"{name} line {number}: field :{m.group(1)}: amount {amount[:20]!r} is not a"
                                       " SWIFT amount (digits with one decimal comma, such as 150,00)",
                                       field=f":{m.group(1)}:", record=name, line=number)
    return ValidationError(f"{name}: an amount is not a SWIFT amount (digits with one decimal comma, such as"
                           " 150,00)", field="file", record=name)


def _minor(value: Decimal, currency: str, name: str, where: str) -> int:
    try:
        exp = exponent(currency)
    except ValidationError:
        raise ValidationError(f"{name}: {where}: unknown currency {currency[:10]!r}", field="currency",
                              record=name) from None
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValidationError(f"{name}: {where}: amount {value} has more decimals than {currency} allows ({exp})",
                              field="amount", record=name)
    return int(scaled)


def parse_mt940(data: bytes, name: str = "statement.sta") -> list[Statement]:
    text = _decode(data)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ValidationError(f"{name} line {line}: contains a NUL character", field="file", record=name, line=line)
    if ":20:" not in text or ":61:" not in text and ":60F:" not in text and ":60M:" not in text:
        raise ValidationError(f"{name}: not an MT940 statement (no :20: and :60F:/:61: fields)", field="file",
                              record=name)
    transactions = _parse(text, name)
    head = transactions.data
    account = str(head.get("account_identification") or "")
    lines: list[StatementLine] = []
    currency = None
    for n, tx in enumerate(transactions, 1):
        d = tx.data
        amount = d.get("amount")
        if amount is None:
            raise ValidationError(f"{name}: transaction {n} has no amount", field="file", record=name)
        currency = str(amount.currency)
        minor = _minor(Decimal(amount.amount).copy_abs(), currency, name, f"transaction {n} (:61:)")
        status = str(d.get("status") or "")
        reversal = status.startswith("R")
        direction = "credit" if status.endswith("C") else "debit"
        details = str(d.get("transaction_details") or "")
        fields = _structured(details) if "/" in details else {}
        purpose = d.get("purpose")
        remittance: list[str] = []
        if purpose:
            remittance.append(" ".join(str(purpose).split()))
        elif fields.get("REMI"):
            remittance.append(fields["REMI"])
        elif details:
            remittance.append(" ".join(details.split()))
        references = []
        payer_iban = None
        for key in ("end_to_end_reference", "customer_reference"):
            value = d.get(key)
            if key == "customer_reference" and value and _IBAN.match(str(value)):
                payer_iban = str(value)  # ASN Bank and others: the counterparty IBAN, not a reference
                continue
            if value and str(value).upper() not in ("NONREF", "EREF", "NOTPROVIDED"):
                references.append(str(value))
        if fields.get("EREF") and fields["EREF"] not in references:
            references.append(fields["EREF"])
        payer = d.get("applicant_name") or fields.get("NAME") or (d.get("extra_details") if payer_iban else None)
        payer_account = d.get("applicant_iban") or fields.get("IBAN") or payer_iban
        day = d.get("date")
        entry = d.get("entry_date") or day
        lines.append(StatementLine(
            entry=n, detail=1, booking_date=str(entry) if entry else str(day), value_date=str(day) if day else None,
            direction=direction, amount=minor, currency=currency, reversal=reversal, status="BOOK",
            remittance=tuple(remittance), references=tuple(references),
            end_to_end=str(d["end_to_end_reference"]) if d.get("end_to_end_reference") else None,
            bank_reference=str(d["bank_reference"]) if d.get("bank_reference") else None,
            payer_name=str(payer).strip() if payer else None,
            payer_account=str(payer_account).strip() if payer_account else None,
            bank_code=str(d.get("id") or "") or None,
        ))
    opening = head.get("final_opening_balance")
    closing = head.get("final_closing_balance")

    def _bal(value: Any) -> int | None:
        if value is None:
            return None
        amt = value.amount
        return _minor(Decimal(amt.amount), str(amt.currency), name, "balance")

    return checked([Statement(
        format="mt940", statement_id=str(head.get("transaction_reference") or name), account=account,
        currency=currency or (str(closing.amount.currency) if closing is not None else None),
        lines=tuple(lines), opening_balance=_bal(opening), closing_balance=_bal(closing),
        message_id=str(head.get("statement_number") or "") or None, version="mt940",
    )], name)
