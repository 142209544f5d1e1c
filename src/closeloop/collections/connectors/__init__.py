"""Payment intake connectors: bank statements (camt.053/054, MT940, CSV) and provider webhooks (Stripe).

Every bank format parses into the same frozen records, :class:`Statement` and
:class:`StatementLine` (one line per transaction: a batched camt entry gives one
line per ``TxDtls``), so cash application never sees the file format. Parsers
are pure: bytes in, records out; a file that cannot be read is a
``validation_error`` naming the file, the element or line, and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One transaction of a bank statement.

    amount: positive minor units; direction: ``credit`` (money in) or ``debit``;
    reversal: the bank reversed an earlier entry (camt RvslInd, MT940 RC/RD);
    remittance: unstructured texts; references: structured ones (creditor references,
    referred document numbers); end_to_end: the payer's end-to-end id;
    bank_reference: the bank's own reference (AcctSvcrRef, MT940 bank reference);
    entry / detail: position in the file (entry number, transaction within a batch).
    """

    entry: int
    detail: int
    booking_date: str
    value_date: str | None
    direction: str
    amount: int
    currency: str
    reversal: bool = False
    status: str = "BOOK"
    remittance: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    end_to_end: str | None = None
    bank_reference: str | None = None
    payer_name: str | None = None
    payer_account: str | None = None
    bank_code: str | None = None
    batch_size: int = 1
    original_amount: int | None = None
    original_currency: str | None = None
    notes: tuple[str, ...] = ()  # what reading the line changed (a shortened payer name or remittance)

    @property
    def text(self) -> str:
        return " ".join(t for t in self.remittance if t)


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement (camt.053 Stmt, camt.054 Ntfctn, one MT940 message) of one account."""

    format: str
    statement_id: str
    account: str
    currency: str | None
    lines: tuple[StatementLine, ...]
    opening_balance: int | None = None
    closing_balance: int | None = None
    created: str | None = None
    message_id: str | None = None
    version: str | None = None
    servicer: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())


# --------------------------------------------------------------------------- bounds of what a statement may carry

# An amount of a statement line, a balance or a provider event must stay below 10^15 in major units (the
# REST API's bound for decimals too): far above any real payment, and its minor units (at most 3 decimals)
# fit the 64-bit integers both databases store, with room for sums.
MAX_MAJOR_DIGITS = 15
# Identifiers are refused when longer than their column: shortening one could make two different ones equal.
ID_LIMITS = {"statement_id": 128, "account": 64, "end_to_end": 128, "bank_reference": 128, "payer_account": 64}
# Free text is shortened to its column (a long remittance must not reject a whole statement), with a note.
NAME_LIMIT = 300  # payer_name
REMITTANCE_LIMIT = 4000  # the remittance texts joined
REFERENCE_LIMIT = 140  # one structured reference (ISO 20022 allows 35)
ELLIPSIS = "\u2026"


def amount_limit(currency: str) -> int:
    """The first amount in minor units of ``currency`` that is out of range."""
    from closeloop.core.money import exponent

    return int(10 ** (MAX_MAJOR_DIGITS + exponent(currency)))


def out_of_range(minor: int, currency: str) -> bool:
    try:
        return abs(minor) >= amount_limit(currency)
    except Exception:  # noqa: BLE001 - an unknown currency is refused where the currency is read
        return abs(minor) >= int(10 ** (MAX_MAJOR_DIGITS + 3))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def checked(statements: list[Statement], name: str) -> list[Statement]:
    """Statements as the database can hold them, or a ValidationError naming the file, the statement, the entry
    and the field: no NUL characters, identifiers within their columns, amounts and balances in range, ISO
    dates; payer names, remittance texts and references longer than their columns are shortened, each
    shortening noted on its line (``StatementLine.notes``)."""
    from datetime import date

    from closeloop.core.errors import ValidationError

    def refuse(where: str, field_name: str, reason: str) -> ValidationError:
        return ValidationError(f"{name}: {where}: {field_name} {reason}", field=field_name, record=name)

    out = []
    for number, st in enumerate(statements, 1):
        here = f"statement {st.statement_id[:40] if st.statement_id else number}"
        for key in ("statement_id", "account"):
            value = getattr(st, key) or ""
            if "\x00" in value:
                raise refuse(here, key, "contains a NUL character")
            if len(value) > ID_LIMITS[key]:
                raise refuse(here, key, f"is {len(value)} characters long; at most {ID_LIMITS[key]} are accepted")
        if st.currency is not None and (len(st.currency) != 3 or not st.currency.isalpha()):
            raise refuse(here, "currency", f"{st.currency[:20]!r} is not an ISO 4217 currency code")
        for key in ("opening_balance", "closing_balance"):
            value = getattr(st, key)
            if value is not None and out_of_range(value, st.currency or "XXX"):
                raise refuse(here, key, f"is out of range (at most {MAX_MAJOR_DIGITS} digits before the decimals)")
        lines = []
        for line in st.lines:
            where = f"{here}, entry {line.entry}" + (f" transaction {line.detail}" if line.batch_size > 1 else "")
            if line.amount < 0 or out_of_range(line.amount, line.currency):
                raise refuse(where, "amount", f"is out of range (at most {MAX_MAJOR_DIGITS} digits before the"
                             " decimals)")
            for key in ("booking_date", "value_date"):
                value = getattr(line, key)
                if value is None and key == "value_date":
                    continue
                try:
                    date.fromisoformat(value or "")
                except ValueError:
                    raise refuse(where, key, f"{(value or '')[:20]!r} is not a date (YYYY-MM-DD)") from None
            for key in ("payer_name", "currency", "bank_code", "end_to_end", "bank_reference", "payer_account",
                        "remittance", "references"):
                value = getattr(line, key)
                if any("\x00" in v for v in (value if isinstance(value, tuple) else (value or "",))):
                    raise refuse(where, key, "contains a NUL character")
            for key in ("end_to_end", "bank_reference", "payer_account"):
                value = getattr(line, key) or ""
                if len(value) > ID_LIMITS[key]:
                    raise refuse(where, key, f"is {len(value)} characters long; at most {ID_LIMITS[key]} are"
                                 " accepted")
            notes = list(line.notes)
            changes: dict[str, Any] = {}
            if line.payer_name and len(line.payer_name) > NAME_LIMIT:
                changes["payer_name"] = _shorten(line.payer_name, NAME_LIMIT)
                notes.append(f"payer name shortened from {len(line.payer_name)} to {NAME_LIMIT} characters")
            if len(line.text) > REMITTANCE_LIMIT:
                changes["remittance"] = (_shorten(line.text, REMITTANCE_LIMIT),)
                notes.append(f"remittance shortened from {len(line.text)} to {REMITTANCE_LIMIT} characters")
            if any(len(r) > REFERENCE_LIMIT for r in line.references):
                changes["references"] = tuple(_shorten(r, REFERENCE_LIMIT) for r in line.references)
                notes.append(f"references longer than {REFERENCE_LIMIT} characters shortened")
            if changes:
                line = replace(line, **changes, notes=tuple(notes))
            lines.append(line)
        out.append(st if all(a is b for a, b in zip(lines, st.lines, strict=True)) else replace(st, lines=tuple(lines)))
    return out
