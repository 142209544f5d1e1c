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
    as of a date (inclusive), from the posted journal lines."""
    account_id = _ar_account(uow, entity)
    if account_id is None:
        return {}
    sql = ("SELECT e.reference, l.amount, l.txn_amount, l.currency FROM journal_entry e"
           " JOIN journal_line l ON l.entry_id = e.id WHERE e.entity = ? AND l.account_id = ?"
           " AND e.reference IS NOT NULL")
    params: list[Any] = [entity, account_id]
    if as_of is not None:
        sql += " AND e.date <= ?"
        params.append(as_of.isoformat())
    functional: dict[str, int] = {}
    txn: dict[str, dict[str, int]] = {}
    issued_in: dict[str, str] = {}
    for reference, amount, txn_amount, currency in uow.all(sql, params):
        kind, _, invoice = str(reference).partition(":")
        if kind not in INVOICE_EVENTS or not invoice:
            continue
        functional[invoice] = functional.get(invoice, 0) + int(amount)
        per = txn.setdefault(invoice, {})
        per[currency] = per.get(currency, 0) + int(txn_amount)
        if kind == "invoice.issued":
            issued_in[invoice] = currency
    out: dict[str, tuple[int, int, str]] = {}
    for invoice, f in functional.items():
        per = txn[invoice]
        currency = issued_in.get(invoice) or max(per, key=lambda c: abs(per[c]))
        t = per.get(currency, 0)
        if f != 0 or t != 0:
            out[invoice] = (f, t, currency)
    return out


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
