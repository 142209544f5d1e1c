"""The receivables subledger as the ledger records it: per-invoice AR read from posted journal lines.

Every journal entry posted for an event that concerns an invoice carries the
reference ``<event type>:<invoice number>`` (``invoice.issued:INV-1``,
``payment.applied:INV-1``, ``credit_memo.issued:INV-1``, ``invoice.written_off:INV-1``,
``credit.applied:INV-1``), so the accounts_receivable lines grouped by that
suffix are the AR open items, exact as of any date. Collections reads them for
realised FX differences (what an invoice's receivable was booked at), AR aging
and DSO. Read-only; no table of its own.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from closeloop.ledger.service import accounts

INVOICE_EVENTS = ("invoice.issued", "credit_memo.issued", "credit.applied", "invoice.written_off",
                  "payment.applied", "wallet.applied")


def _ar_account(uow: Any, entity: str) -> int | None:
    acct = accounts(uow, entity).get("accounts_receivable")
    return None if acct is None else acct.id


def booked_receivable(uow: Any, invoice_number: str) -> tuple[int, int, str] | None:
    """What the invoice's receivable was booked at when it was issued: (functional minor,
    transaction minor, transaction currency); None when ``invoice.issued`` is not posted yet."""
    rows = uow.all(
        "SELECT e.entity, l.account_id, l.amount, l.txn_amount, l.currency FROM journal_entry e"
        " JOIN journal_line l ON l.entry_id = e.id WHERE e.reference = ?",
        (f"invoice.issued:{invoice_number}",),
    )
    if not rows:
        return None
    functional = txn = 0
    currency = None
    for entity, account_id, amount, txn_amount, cur in rows:
        if int(account_id) != _ar_account(uow, entity):
            continue
        functional += int(amount)
        txn += int(txn_amount)
        currency = cur
    if currency is None:
        return None
    return functional, txn, currency


def ar_open_items(uow: Any, entity: str, as_of: date | None = None) -> dict[str, tuple[int, int, str]]:
    """{invoice: (functional minor, transaction minor, currency)} of the non-zero AR items of an entity
    as of a date (inclusive), from the posted journal lines.

    The database sums the lines per invoice and returns only invoices that may be open (a year of a large
    company holds millions of AR lines and few open items); an invoice whose AR lines are in more than one
    transaction currency is summed per currency here (its currency is the one it was issued in)."""
    account_id = _ar_account(uow, entity)
    if account_id is None:
        return {}
    where, params = _ar_lines_where(uow, entity, account_id, as_of)
    _, kind, invoice = _reference_parts(uow)
    issued = f"CASE WHEN {kind} = 'invoice.issued' THEN l.currency END"
    out: dict[str, tuple[int, int, str]] = {}
    mixed: list[str] = []
    for number, f, t, low, high in uow.all(
            f"SELECT {invoice} AS invoice, SUM(l.amount), SUM(l.txn_amount), MIN(l.currency), MAX(l.currency)"
            f" FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id WHERE {where} GROUP BY {invoice}"
            " HAVING SUM(l.amount) <> 0 OR SUM(l.txn_amount) <> 0 OR MIN(l.currency) <> MAX(l.currency)", params):
        if not number:
            continue
        if low != high:
            mixed.append(number)
        else:
            out[number] = (int(f), int(t), low)
    for start in range(0, len(mixed), 500):
        chunk = mixed[start:start + 500]
        functional: dict[str, int] = {}
        txn: dict[str, dict[str, int]] = {}
        issued_in: dict[str, str] = {}
        for number, currency, f, t, issued_currency in uow.all(
                f"SELECT {invoice} AS invoice, l.currency, SUM(l.amount), SUM(l.txn_amount), MAX({issued})"
                f" FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id WHERE {where}"
                f" AND e.reference IN ({', '.join('?' * (len(chunk) * len(INVOICE_EVENTS)))})"
                f" GROUP BY {invoice}, l.currency",
                [*params, *(f"{kind}:{n}" for n in chunk for kind in INVOICE_EVENTS)]):
            functional[number] = functional.get(number, 0) + int(f)
            txn.setdefault(number, {})[currency] = int(t)
            if issued_currency:
                issued_in[number] = issued_currency
        for number, f in functional.items():
            per = txn[number]
            currency = issued_in.get(number) or max(per, key=lambda c: abs(per[c]))
            t = per.get(currency, 0)
            if f != 0 or t != 0:
                out[number] = (f, t, currency)
    return out


def _reference_parts(uow: Any) -> tuple[str, str, str]:
    """SQL for a reference ``<event type>:<invoice number>``: (position of the first colon, the event type
    before it, the invoice number after it)."""
    if uow.dialect.is_sqlite:
        colon = "instr(e.reference, ':')"
        return colon, f"substr(e.reference, 1, {colon} - 1)", f"substr(e.reference, {colon} + 1)"
    colon = "strpos(e.reference, ':')"
    return colon, "split_part(e.reference, ':', 1)", f"substr(e.reference, {colon} + 1)"


def _ar_lines_where(uow: Any, entity: str, account_id: int, as_of: date | None) -> tuple[str, list[Any]]:
    """The entity's accounts_receivable lines of entries posted for an event about an invoice (reference
    ``<event type>:<invoice number>``, the event type one of INVOICE_EVENTS, compared exactly)."""
    colon, kind, _ = _reference_parts(uow)
    where = (f"e.entity = ? AND l.account_id = ? AND {colon} > 0"
             f" AND {kind} IN ({', '.join('?' * len(INVOICE_EVENTS))})")
    params: list[Any] = [entity, account_id, *INVOICE_EVENTS]
    if as_of is not None:
        where += " AND e.date <= ?"
        params.append(as_of.isoformat())
    return where, params


def ar_balance(uow: Any, entity: str, as_of: date | None = None) -> int:
    """The accounts_receivable balance of an entity in its functional currency (debit positive)."""
    account_id = _ar_account(uow, entity)
    if account_id is None:
        return 0
    sql = ("SELECT COALESCE(SUM(l.amount), 0) FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
           " WHERE e.entity = ? AND l.account_id = ?")
    params: list[Any] = [entity, account_id]
    if as_of is not None:
        sql += " AND e.date <= ?"
        params.append(as_of.isoformat())
    return int(uow.scalar(sql, params) or 0)


def invoiced_between(uow: Any, entity: str, start: date, end: date) -> int:
    """Receivables booked by issued invoices with a date in [start, end], functional minor units."""
    account_id = _ar_account(uow, entity)
    if account_id is None:
        return 0
    return int(uow.scalar(
        "SELECT COALESCE(SUM(l.amount), 0) FROM journal_entry e JOIN journal_line l ON l.entry_id = e.id"
        " WHERE e.entity = ? AND l.account_id = ? AND e.date >= ? AND e.date <= ? AND l.amount > 0"
        " AND e.reference LIKE 'invoice.issued:%'",
        (entity, account_id, start.isoformat(), end.isoformat())) or 0)
