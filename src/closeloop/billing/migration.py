"""Billing's side of a migration from a legacy system: open legacy invoices and billed-through dates.

The migration (``closeloop.rollout.migration``) calls :func:`record_open_invoices` to bring each open
legacy invoice into billing's receivables as an issued invoice with its **legacy number**, date, due
date, total, tax and open balance (a part already paid in the legacy system is ``paid``). Nothing is
re-billed or re-taxed: the invoice has one line, kind ``legacy``, outside any contract, so the
generator never looks at it, and no ``invoice.issued`` is emitted (posting and revenue recognition
must not book it again). ``invoice.migrated`` records it for lineage; the migration posts its
receivable to the ledger itself (reference ``invoice.issued:<number>``, so the receivables subledger
sees it as an open item). From then on it is an ordinary open invoice: payments, credit memos,
dunning, aging and the customer's open balance all work on it.

Billed-through dates: a migrated contract is activated with its original start, so the bill run
must not bill again the periods the legacy system billed. The migration emits ``contract.migrated
{contract_id, billed_through}`` right after the contract's activation (same aggregate, so it is
delivered after ``contract.activated`` reached billing); :func:`on_contract_migrated` then moves the
subscription's ``scan_from`` and ``next_date`` to the first day not billed, exactly as a completed
bill run as of that day would have left them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from closeloop.billing.service import _LINE_INSERT, invoice_ids, line_ids
from closeloop.core.errors import ValidationError
from closeloop.core.events import Event, NotReady, handles
from closeloop.core.money import format_minor
from closeloop.core.uow import dumps

ONE_DAY = timedelta(days=1)
LINE_KIND = "legacy"
_OWN_NUMBER = re.compile(r"^(INV|CM)-[A-Za-z0-9_]+-\d{6,}$")


@dataclass(frozen=True, slots=True)
class LegacyInvoice:
    """An open legacy invoice as billing stores it (amounts in minor units of ``currency``)."""

    number: str
    customer_id: int
    customer: str  # the account's external id (a merged legacy id is given as its survivor)
    entity: str
    currency: str
    date: str
    due_date: str
    subtotal: int
    tax: int
    total: int
    balance: int  # still open at cutover; total - balance was paid in the legacy system
    description: str = ""


def number_clash(number: str) -> str | None:
    """Why a legacy number cannot be kept (it looks like closeloop's own gapless numbers), or None."""
    if _OWN_NUMBER.match(number):
        return (f"legacy invoice number {number} has the form of closeloop's own numbers (INV-<entity>-NNNNNN);"
                " prefix legacy numbers (e.g. LEG-...) so the sequences cannot collide")
    if len(number) > 40 or not number.strip() or any(c.isspace() for c in number):
        return f"invoice number {number!r} must be 1-40 characters without spaces"
    return None


def existing_numbers(uow: Any, numbers: Iterable[str]) -> set[str]:
    """The numbers among ``numbers`` that billing already has (any kind, any status)."""
    wanted = sorted(set(numbers))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in uow.all(f"SELECT number FROM billing_invoice WHERE number IN ({marks})", chunk))
    return found


def _next_seqs(uow: Any, customer_ids: Sequence[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for cid, seq in uow.all(f"SELECT customer_id, MAX(seq) FROM billing_invoice WHERE customer_id IN ({marks})"
                                " GROUP BY customer_id", chunk):
            out[int(cid)] = int(seq or 0)
    return out


def record_open_invoices(uow: Any, invoices: Sequence[LegacyInvoice], *, system: str = "legacy") -> dict[str, int]:
    """Store open legacy invoices as issued billing invoices keeping their numbers; returns {number: id}.

    The caller has validated them (numbers free and not clashing, 0 < balance <= total, customers
    resolved). Each customer's invoices take the next ``seq`` numbers in date order."""
    if not invoices:
        return {}
    ordered = sorted(invoices, key=lambda i: (i.customer_id, i.date, i.number))
    seqs = _next_seqs(uow, [i.customer_id for i in ordered])
    first_id = invoice_ids(uow, len(ordered))
    first_line = line_ids(uow, len(ordered))
    now = uow.now()
    inv_rows: list[tuple[Any, ...]] = []
    line_rows: list[tuple[Any, ...]] = []
    events: list[tuple[str, str | None, dict[str, Any]]] = []
    out: dict[str, int] = {}
    mention = f"Migrated from {system}: legacy invoice; tax as invoiced there"
    mentions = dumps([mention])
    for n, inv in enumerate(ordered):
        invoice_id = first_id + n
        seq = seqs.get(inv.customer_id, 0) + 1
        seqs[inv.customer_id] = seq
        paid = inv.total - inv.balance
        status = "partially_paid" if paid > 0 else "open"
        terms = max(0, (date.fromisoformat(inv.due_date) - date.fromisoformat(inv.date)).days)
        treatment = "standard" if inv.tax else "out_of_scope"
        breakdown = dumps([{"treatment": treatment, "rate": "0", "category": "S" if inv.tax else "O",
                            "taxable": inv.subtotal, "tax": inv.tax, "exemption_reason": None, "mention": None}])
        inv_rows.append((invoice_id, inv.number, "invoice", inv.customer_id, inv.customer, seq, inv.entity,
                         inv.currency, inv.date, inv.due_date, status, inv.subtotal, inv.tax, inv.total, 0, 0, paid, 0,
                         0, inv.balance, None, f"migrated from {system}", breakdown, mentions, None, None, terms, now,
                         now))
        description = inv.description or f"Legacy invoice {inv.number}"
        line_rows.append((first_line + n, invoice_id, 1, LINE_KIND, description, None, None, None, None, "1", None,
                          inv.subtotal, inv.tax, treatment, None, "S" if inv.tax else "O", None, None, "revenue",
                          "point_in_time", None, None, None, None, inv.date, None, None, 0, 0, 0, 0,
                          f"legacy:{inv.number}", None))
        cur = inv.currency
        events.append((inv.number, inv.entity, {
            "invoice": inv.number, "entity": inv.entity, "customer": inv.customer, "currency": cur, "date": inv.date,
            "due_date": inv.due_date, "total": format_minor(inv.total, cur), "tax": format_minor(inv.tax, cur),
            "balance": format_minor(inv.balance, cur), "paid": format_minor(paid, cur), "system": system}))
        out[inv.number] = invoice_id
    uow.executemany(
        "INSERT INTO billing_invoice (id, number, kind, customer_id, customer, seq, entity, currency, date,"
        " due_date, status, subtotal, tax, total, credit_created, credit_applied, paid, credited, written_off,"
        " balance, original_id, reason, tax_breakdown, mentions, held_reason, run_id, payment_terms_days,"
        " issued_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inv_rows)
    uow.executemany(_LINE_INSERT, line_rows)
    uow.emit_many("invoice.migrated", "invoice", events)
    return out


def refuse_void(uow: Any, inv: Mapping[str, Any]) -> None:
    """``invoice.void`` is refused on a migrated legacy invoice: the migration posted its receivable to the ledger
    itself (no ``invoice.issued``, so the void path's "posted" check cannot see it), and a void would leave that
    receivable in the GL with no open invoice behind it."""
    if uow.one("SELECT 1 FROM billing_line WHERE invoice_id = ? AND kind = ?", (int(inv["id"]), LINE_KIND)):
        raise ValidationError(
            f"invoice {inv['number']} is a legacy invoice ({inv['reason'] or 'migrated'}): its receivable is in the"
            " ledger (posted by the migration), so it cannot be voided; issue a credit memo or write it off instead",
            field="invoice", record=inv["number"])


# --------------------------------------------------------------------------- billed-through dates


@handles("contract.migrated", "billing")
def on_contract_migrated(uow: Any, ev: Event) -> None:
    """Continue a migrated contract's billing from the first day the legacy system did not bill."""
    p = ev.payload
    cid = str(p["contract_id"])
    row = uow.one(f"SELECT start, scan_from FROM billing_subscription WHERE contract_id = ?{uow.for_update()}",
                  (cid,))
    if row is None:
        raise NotReady(f"contract {cid} has no subscription in billing yet (contract.activated not handled)")
    first = (date.fromisoformat(str(p["billed_through"])) + ONE_DAY).isoformat()
    if first <= row[0]:
        return  # nothing was billed by the legacy system: bill from the start
    uow.execute("UPDATE billing_subscription SET scan_from = ?, next_date = ?, updated_at = ? WHERE contract_id = ?",
                (first, first, uow.now(), cid))


def continuation(uow: Any, contract_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where billing will continue each contract: {contract_id: {scan_from, next_date, start}} (missing ones are
    not known to billing yet)."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(contract_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for cid, scan_from, next_date, first in uow.all(
                f"SELECT contract_id, scan_from, next_date, start FROM billing_subscription WHERE contract_id IN"
                f" ({marks})", chunk):
            out[cid] = {"scan_from": scan_from, "next_date": next_date, "start": first}
    return out


def open_balances(uow: Any) -> dict[tuple[str, str], int]:
    """Open invoice balances per (entity, currency): billing's side of the AR tie-out."""
    return {(e, c): int(b or 0) for e, c, b in uow.all(
        "SELECT entity, currency, SUM(balance) FROM billing_invoice WHERE kind = 'invoice' AND status IN"
        " ('open', 'partially_paid') GROUP BY entity, currency")}
