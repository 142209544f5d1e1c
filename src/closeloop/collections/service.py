"""Payments and cash application: commands, queries and the functions other collections modules share.

Commands: ``payment.receive``, ``payment.apply``, ``payment.refund``, ``payment.fail`` (dunning.py),
``bank.import``, ``payer.link``, ``invoice.write_off``, ``collections.approve`` / ``collections.reject``.
Queries: ``payment``, ``payments``, ``bank_statement``.

Every receipt becomes a ``collections_payment`` row and a ``payment.received`` event; cash
application (:mod:`closeloop.collections.model`) decides what to apply; each application calls
billing's ``apply_payment_to_invoice`` (billing owns balances and statuses) and emits
``payment.applied`` with the realised FX difference in the functional currency (AR as booked at
the invoice's rate, read from the ledger, minus its value at the payment date). Short payments
within tolerance are written off through billing's ``write_off_invoice`` (which emits
``invoice.written_off``). A receipt nobody can place is kept unapplied with a
``low_confidence_match`` exception, never dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from closeloop.billing import service as billing
from closeloop.collections import model
from closeloop.collections.connectors import Statement, StatementLine
from closeloop.collections.model import Allocation, InvoiceBook, Match, OpenInvoice, Receipt
from closeloop.collections.settings import match_rules, settings
from closeloop.core.entities import get_entity, list_entities
from closeloop.core.errors import (
    ConflictError,
    ForbiddenError,
    InsufficientAmountError,
    NotFoundError,
    ValidationError,
)
from closeloop.core.events import Event, handles
from closeloop.core.exception_queue import close_exception, on_resolve, open_exception
from closeloop.core.fx import convert
from closeloop.core.money import check_currency, format_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import Limit, command, payload, query
from closeloop.core.uow import dumps
from closeloop.customers.service import Customer, get_customer

PAYMENT_ROLES = ("collections", "billing", "admin")
OPEN_STATUSES = ("open", "partially_paid")
_PAYMENT_COLS = ("id, number, entity, customer, currency, amount, applied, refunded, date, channel, origin, reference,"
                 " remittance, payer_name, payer_account, provider_ref, fee, payout, status, match_reason,"
                 " match_confidence, match_detail, proposal, exception_id, bank_line_id, created_at")
_PAYMENT_FIELDS = [c.strip() for c in _PAYMENT_COLS.split(",")]


def fmt(minor: int, currency: str) -> str:
    return format_minor(int(minor), currency)


def _today(uow: Any, value: str | None, field: str = "date") -> str:
    return parse_date(value, field=field).isoformat() if value else uow.today().isoformat()


# =========================================================================== the invoice index


def record_invoices(uow: Any, payloads: Iterable[Mapping[str, Any]]) -> int:
    """Remember issued invoices (number, owner, currency, dates, total) for matching, dunning and aging."""
    rows = []
    for p in payloads:
        number = str(p["invoice"])
        cur = str(p["currency"])
        rows.append((number, model.normalize(number), model.digits_key(number), p["entity"], str(p["customer"]),
                     cur, str(p["date"]), str(p.get("due_date") or p["date"]), to_minor(str(p["total"]), cur)))
    if rows:
        uow.executemany("INSERT INTO collections_invoice (number, norm, digits, entity, customer, currency, date,"
                        " due_date, total) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (number) DO NOTHING", rows)
    return len(rows)


@handles("invoice.issued", "collections")
def on_invoice_issued(uow: Any, ev: Event) -> None:
    record_invoices(uow, [ev.payload])
    total = to_minor(str(ev.payload["total"]), str(ev.payload["currency"]))
    if total > 0:
        apply_credit_on_account(uow, str(ev.payload["customer"]), str(ev.payload["invoice"]))


def invoice_info(uow: Any, number: str) -> dict[str, Any] | None:
    row = uow.one("SELECT number, entity, customer, currency, date, due_date, total FROM collections_invoice"
                  " WHERE number = ?", (number,))
    if row is None:
        return None
    return dict(zip(("number", "entity", "customer", "currency", "date", "due_date", "total"), row, strict=True))


def resolve_invoice(uow: Any, ref: Any, field: str = "invoice") -> dict[str, Any]:
    """Billing's invoice (by number or ``{customer, seq}``)."""
    inv = billing.find_invoice(uow, ref, field=field)
    if inv["kind"] != "invoice":
        raise ValidationError(f"{inv['number']} is a credit memo, not an invoice", field=field, record=inv["number"])
    return inv


# =========================================================================== customers and payers


def find_customer(uow: Any, ref: str | None) -> Customer | None:
    if not ref:
        return None
    try:
        return get_customer(uow, str(ref))
    except NotFoundError:
        return None


def payer_customers(uow: Any, accounts: Iterable[str]) -> dict[str, str]:
    wanted = sorted({a for a in accounts if a})
    out: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for account, customer in uow.all(f"SELECT account, customer FROM collections_payer WHERE account IN ({marks})",
                                         chunk):
            out[account] = customer
    return out


def link_payer(uow: Any, account: str, customer: str, origin: str) -> None:
    uow.execute("INSERT INTO collections_payer (account, customer, origin, created_at) VALUES (?,?,?,?)"
                " ON CONFLICT (account) DO NOTHING", (account, customer, origin, uow.now()))


@payload
class PayerLink:
    account: str
    customer: str


@command("payer.link", PayerLink, roles=PAYMENT_ROLES, summary="Remember that a bank account (IBAN) or provider"
         " customer id pays for a customer")
def payer_link(uow: Any, cmd: PayerLink) -> dict[str, Any]:
    cust = get_customer(uow, cmd.customer)
    account = cmd.account.replace(" ", "").upper() if not cmd.account.startswith("cus_") else cmd.account
    uow.execute("INSERT INTO collections_payer (account, customer, origin, created_at) VALUES (?,?,?,?)"
                " ON CONFLICT (account) DO UPDATE SET customer = excluded.customer, origin = excluded.origin",
                (account, cust.external_id, "registered", uow.now()))
    return {"account": account, "customer": cust.external_id}


# =========================================================================== the book of open invoices


def _disputed(uow: Any, numbers: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for start in range(0, len(numbers), 500):
        chunk = list(numbers[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for inv, amount in uow.all(f"SELECT invoice, SUM(amount) FROM collections_dispute WHERE invoice IN ({marks})"
                                   " AND status IN ('opened', 'under_review') GROUP BY invoice", chunk):
            out[inv] = int(amount)
    return out


def open_items(uow: Any, customers: Iterable[str], *, entity: str | None = None) -> list[OpenInvoice]:
    """Billing's open invoices of these customers (external ids; merged ids follow their survivor)."""
    out: list[OpenInvoice] = []
    seen: set[int] = set()
    for ext in sorted(set(customers)):
        cust = find_customer(uow, ext)
        if cust is None or cust.id in seen:
            continue
        seen.add(cust.id)
        for r in billing.open_invoices(uow, cust.id, entity=entity):
            if r["kind"] != "invoice" or not r["number"]:
                continue
            out.append(OpenInvoice(number=r["number"], customer=cust.external_id, entity=r["entity"],
                                   currency=r["currency"], balance=int(r["balance"]), date=r["date"],
                                   due_date=r["due_date"], total=int(r["total"])))
    return out


def referenced_customers(uow: Any, receipts: Sequence[Receipt]) -> set[str]:
    """The owners of every invoice a receipt's text or references could name (from the invoice index)."""
    norms: set[str] = set()
    digits: set[str] = set()
    for r in receipts:
        if r.invoice:
            norms.add(model.normalize(r.invoice))
        for kind, key in model.candidate_references(r.text, r.references):
            (digits if kind == "qr" else norms).add(key)
    owners: set[str] = set()
    keys = len(norms) + len(digits)
    if keys > 2000 and int(uow.scalar("SELECT COUNT(*) FROM collections_invoice") or 0) <= 4 * keys:
        # a large statement against a comparable index: one scan beats thousands of look-ups
        for norm, dig, customer in uow.all("SELECT norm, digits, customer FROM collections_invoice"):
            if norm in norms or dig in digits:
                owners.add(customer)
        return owners
    for column, values in (("norm", sorted(norms)), ("digits", sorted(digits))):
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            marks = ",".join("?" * len(chunk))
            owners.update(c for (c,) in uow.all(
                f"SELECT DISTINCT customer FROM collections_invoice WHERE {column} IN ({marks})", chunk))
    return owners


def build_book(uow: Any, receipts: Sequence[Receipt], entity: str | None = None) -> InvoiceBook:
    customers = {r.customer for r in receipts if r.customer} | referenced_customers(uow, receipts)
    items = open_items(uow, customers, entity=entity)
    disputed = _disputed(uow, [i.number for i in items]) if items else {}
    if disputed:
        items = [OpenInvoice(**{**{f: getattr(i, f) for f in i.__dataclass_fields__}, "disputed": disputed[i.number]})
                 if i.number in disputed else i for i in items]
    return InvoiceBook.of(items)


def converter_for(uow: Any, day: str) -> model.Converter:
    def conv(minor: int, source: str, target: str) -> int:
        try:
            return convert(uow, minor, source, target, day)
        except NotFoundError as exc:
            raise LookupError(exc.message) from None

    return conv


# =========================================================================== FX difference


@dataclass
class FxState:
    """Applications of this unit of work, so several in one command share the booked receivable."""

    applied: dict[str, int] = field(default_factory=dict)
    booked: dict[str, tuple[int, int]] = field(default_factory=dict)


def fx_state(uow: Any) -> FxState:
    state = uow.cache.get("collections_fx")
    if state is None:
        state = uow.cache["collections_fx"] = FxState()
    return state  # type: ignore[no-any-return]


def _booked(uow: Any, inv: Mapping[str, Any], functional: str) -> tuple[int, int]:
    from closeloop.ledger.subledger import booked_receivable

    found = booked_receivable(uow, inv["number"])
    if found is not None and found[1] != 0 and found[2] == inv["currency"]:
        return found[0], found[1]
    total = int(inv["total"])
    return convert(uow, total, inv["currency"], functional, inv["date"]), total


def fx_difference(uow: Any, inv: Mapping[str, Any], amount: int, day: str) -> int:
    """AR as booked at the invoice's rate minus its value at ``day``'s rate, functional minor units,
    for ``amount`` (invoice currency) applied now. Successive partial applications share the booked
    amount cumulatively, so the last one clears the receivable exactly."""
    functional = get_entity(uow, inv["entity"]).currency
    cur = inv["currency"]
    if cur == functional or amount == 0:
        return 0
    state = fx_state(uow)
    number = inv["number"]
    if number not in state.booked:
        state.booked[number] = _booked(uow, inv, functional)
        state.applied[number] = int(uow.scalar(
            "SELECT COALESCE(SUM(amount), 0) FROM collections_application WHERE invoice = ?", (number,)) or 0)
    booked_f, booked_t = state.booked[number]
    before = state.applied[number]
    after = before + amount
    state.applied[number] = after

    def share(part: int) -> int:
        return int((Decimal(booked_f) * part / Decimal(booked_t)).to_integral_value(rounding=ROUND_HALF_UP))

    booked_portion = share(after) - share(before)
    return booked_portion - convert(uow, amount, cur, functional, day)


# =========================================================================== payments


def payment_number(uow: Any, count: int = 1) -> int:
    return uow.next_ids("collections_payment_number", count, gapless=True)


def get_payment(uow: Any, number: str, *, lock: bool = False) -> dict[str, Any]:
    row = uow.one(f"SELECT {_PAYMENT_COLS} FROM collections_payment WHERE number = ?"
                  f"{uow.for_update() if lock else ''}", (number,))
    if row is None:
        raise NotFoundError(f"payment {number!r} does not exist", field="payment", record=number)
    return dict(zip(_PAYMENT_FIELDS, row, strict=True))


def entity_for(uow: Any, given: str | None, customer: Customer | None, invoice: Mapping[str, Any] | None) -> str:
    if given:
        return get_entity(uow, given).code
    if invoice is not None:
        return str(invoice["entity"])
    if customer is not None and customer.entity:
        return customer.entity
    entities = list_entities(uow)
    if len(entities) == 1:
        return entities[0].code
    raise ValidationError("the payment's legal entity cannot be told (give entity)", field="entity")


@dataclass
class NewPayment:
    entity: str
    customer: str | None
    currency: str
    amount: int
    date: str
    channel: str
    origin: str
    reference: str | None = None
    remittance: str | None = None
    payer_name: str | None = None
    payer_account: str | None = None
    provider_ref: str | None = None
    fee: int = 0
    bank_line_id: int | None = None
    number: str | None = None


def insert_payments(uow: Any, items: Sequence[NewPayment], *, ids: Sequence[int] | None = None,
                    outcomes: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
    """Insert payments (with their match outcome when known) and emit their ``payment.received`` events.
    Ids are explicit (reserved from the id block, or given), so no read-back is needed; returns them."""
    if not items:
        return []
    if ids is None:
        ids = reserve_payments(uow, items)
    now = uow.now()
    rows = []
    events = []
    for i, p in enumerate(items):
        o = outcomes[i] if outcomes is not None else {}
        rows.append((ids[i], p.number, p.entity, o.get("customer") or p.customer, p.currency, p.amount,
                     o.get("applied", 0), 0, p.date, p.channel, p.origin, p.reference, p.remittance, p.payer_name,
                     p.payer_account, p.provider_ref, p.fee, None, o.get("status", "unapplied"), o.get("reason"),
                     o.get("confidence"), o.get("detail"), o.get("proposal"), o.get("exception_id"), p.bank_line_id,
                     now))
        body: dict[str, Any] = {"payment": p.number, "entity": p.entity, "currency": p.currency, "date": p.date,
                                "amount": fmt(p.amount, p.currency), "channel": p.channel}
        if p.customer:
            body["customer"] = p.customer
        if p.reference:
            body["reference"] = p.reference[:200]
        events.append((p.number, p.entity, body))
    uow.executemany(
        "INSERT INTO collections_payment (id, number, entity, customer, currency, amount, applied, refunded, date,"
        " channel, origin, reference, remittance, payer_name, payer_account, provider_ref, fee, payout, status,"
        " match_reason, match_confidence, match_detail, proposal, exception_id, bank_line_id, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    uow.emit_many("payment.received", "payment", events)
    return list(ids)


def reserve_payments(uow: Any, items: Sequence[NewPayment]) -> list[int]:
    """Explicit ids and numbers for new payments (numbers ``PAY-0000001`` in one gapless block)."""
    first_id = uow.next_ids("collections_payment", len(items), table="collections_payment")
    first = payment_number(uow, len(items))
    for i, p in enumerate(items):
        p.number = p.number or f"PAY-{first + i:07d}"
    return list(range(first_id, first_id + len(items)))


def payment_status(amount: int, applied: int, refunded: int) -> str:
    if refunded >= amount and amount > 0:
        return "refunded"
    if applied <= 0:
        return "unapplied"
    if applied + refunded >= amount:
        return "applied"
    return "partially_applied"


@dataclass
class Applier:
    """Applies allocations for one command: billing updates, application rows, payment.applied events,
    short-pay write-offs, dunning stops. Rows and events are written together by :meth:`flush`."""

    uow: Any
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    settled: set[str] = field(default_factory=set)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, payment_id: int, payment: str, day: str, alloc: Allocation, reason: str,
              confidence: Decimal | str, inv: Mapping[str, Any] | None = None) -> int:
        uow = self.uow
        inv = inv or billing.find_invoice(uow, alloc.invoice)
        result = billing.apply_payment_to_invoice(uow, alloc.invoice, alloc.amount, reference=payment)
        fx = fx_difference(uow, inv, alloc.amount, day)
        cur = inv["currency"]
        self.rows.append((payment_id, alloc.invoice, inv["entity"], inv["customer"], cur, alloc.amount,
                          alloc.payment_amount, fx, alloc.write_off, day, reason, str(confidence), uow.actor,
                          uow.now()))
        self.events.append((payment, inv["entity"], {
            "payment": payment, "invoice": alloc.invoice, "entity": inv["entity"], "customer": inv["customer"],
            "currency": cur, "date": day, "amount": fmt(alloc.amount, cur),
            "fx_difference": fmt(fx, get_entity(uow, inv["entity"]).currency)}))
        balance = int(result["balance_minor"])
        if alloc.write_off:
            written = billing.write_off_invoice(uow, alloc.invoice, alloc.write_off,
                                                str(settings()["write_off"]["short_pay_reason"]))
            balance -= alloc.write_off
            del written
        if balance <= 0:
            self.settled.add(alloc.invoice)
        self.invoices[alloc.invoice] = dict(inv)
        return fx

    def flush(self) -> None:
        uow = self.uow
        if self.rows:
            uow.executemany(
                "INSERT INTO collections_application (payment_id, invoice, entity, customer, currency, amount,"
                " payment_amount, fx_difference, write_off, date, reason, confidence, actor, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", self.rows)
        if self.events:
            uow.emit_many("payment.applied", "payment", self.events)
        if self.settled:
            from closeloop.collections.dunning import stop_dunning

            stop_dunning(uow, sorted(self.settled), "paid")
        self.rows, self.events, self.settled = [], [], set()


def _allocations_json(allocs: Sequence[Allocation], book: InvoiceBook | None = None) -> str:
    return dumps([{"invoice": a.invoice, "amount": a.amount, "payment_amount": a.payment_amount,
                   "write_off": a.write_off} for a in allocs])


def _inv_of(book: InvoiceBook | None, number: str) -> dict[str, Any] | None:
    found = book.invoices.get(number) if book is not None else None
    if found is None:
        return None
    return {"number": found.number, "entity": found.entity, "customer": found.customer, "currency": found.currency,
            "total": found.total, "date": found.date}


def settle(uow: Any, applier: Applier, pay: Mapping[str, Any], match: Match, *,
           learn: str | None = None, book: InvoiceBook | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Act on a match: applications, the exception of an unplaced receipt, a learned payer account.
    Returns (the payment's outcome columns, the result shown to the caller)."""
    applied = 0
    for alloc in match.allocations:
        applier.apply(int(pay["id"]), pay["number"], pay["date"], alloc, match.reason, match.confidence,
                      _inv_of(book, alloc.invoice))
        applied += alloc.payment_amount
    status = payment_status(int(pay["amount"]), applied, 0)
    exception_id = None
    customer = match.customer or pay.get("customer")
    if not match.allocations and match.reason not in ("no_open_invoice", "invoice_not_open", "not_a_receipt"):
        what = {"unknown_customer": "the payer is not a known customer",
                "no_match": "no open invoice matches"}.get(match.reason, "the match is uncertain")
        proposal = ""
        if match.proposal:
            proposal = "; proposed: " + ", ".join(f"{a.invoice} {fmt(a.amount, pay['currency'])}" for a in
                                                  match.proposal)
        exception_id = open_exception(
            uow, "low_confidence_match", record_type="payment", record_id=pay["number"], entity=pay["entity"],
            amount=int(pay["amount"]), currency=pay["currency"],
            message=f"payment {pay['number']} of {fmt(pay['amount'], pay['currency'])} {pay['currency']}"
                    f"{' from ' + customer if customer else ''} is held unapplied: {what} ({match.reason},"
                    f" confidence {match.confidence}){proposal}. Apply it with payment.apply, or accept the"
                    " proposal by resolving this exception with accept.",
            details={"reason": match.reason, "confidence": str(match.confidence), "detail": match.detail,
                     "proposal": json.loads(_allocations_json(match.proposal)) if match.proposal else []},
            dedup_key=f"low_confidence_match:{pay['number']}")
    if learn and customer and match.allocations and match.reason.startswith(("reference", "invoice_given")) \
            and settings()["cash_application"].get("learn_payer_accounts", True):
        link_payer(uow, learn, customer, "learned")
    outcome = {"applied": applied, "status": status, "customer": customer, "reason": match.reason,
               "confidence": str(match.confidence), "detail": match.detail[:2000] or None,
               "proposal": _allocations_json(match.proposal) if match.proposal else None,
               "exception_id": exception_id}
    currency_of = {a.invoice: (_inv_of(book, a.invoice) or applier.invoices.get(a.invoice) or {}).get(
        "currency", pay["currency"]) for a in match.allocations}
    out = {"payment": pay["number"], "status": status, "customer": customer, "reason": match.reason,
           "confidence": str(match.confidence), "detail": match.detail,
           "applied": [{"invoice": a.invoice, "amount": fmt(a.amount, currency_of[a.invoice]),
                        "write_off": fmt(a.write_off, currency_of[a.invoice])} for a in match.allocations],
           "unapplied": fmt(int(pay["amount"]) - applied, pay["currency"]),
           **({"exception": exception_id} if exception_id else {})}
    return outcome, out


def record_match(uow: Any, applier: Applier, pay: Mapping[str, Any], match: Match, *,
                 learn: str | None = None, book: InvoiceBook | None = None) -> dict[str, Any]:
    """Persist a match for a payment already inserted (unapplied): applications, status, exception."""
    o, out = settle(uow, applier, pay, match, learn=learn, book=book)
    uow.execute("UPDATE collections_payment SET applied = ?, status = ?, customer = COALESCE(customer, ?),"
                " match_reason = ?, match_confidence = ?, match_detail = ?, proposal = ?, exception_id = ?"
                " WHERE id = ?", (o["applied"], o["status"], o["customer"], o["reason"], o["confidence"], o["detail"],
                                  o["proposal"], o["exception_id"], pay["id"]))
    return out


def receive(uow: Any, p: NewPayment, *, invoice: str | None = None, references: Sequence[str] = (),
            unknown_customer_ref: str | None = None) -> dict[str, Any]:
    """Record one receipt, run cash application on it and persist the outcome."""
    (payment_id,) = insert_payments(uow, [p])
    pay = {"id": payment_id, "number": p.number, "amount": p.amount, "currency": p.currency, "date": p.date,
           "entity": p.entity, "customer": p.customer}
    receipt = Receipt(id=str(p.number), amount=p.amount, currency=p.currency, date=p.date, customer=p.customer,
                      text=" ".join(x for x in (p.reference, p.remittance) if x), references=tuple(references),
                      invoice=invoice, entity=p.entity)
    applier = Applier(uow)
    if p.customer is None and unknown_customer_ref is not None:
        match = Match(receipt.id, None, (), p.amount, "unknown_customer", Decimal("0.00"),
                      f"customer {unknown_customer_ref!r} does not exist; held unapplied until it is identified")
    else:
        book = build_book(uow, [receipt], entity=p.entity)
        match = model.match_receipt(receipt, book, match_rules(), converter_for(uow, p.date))
    out = record_match(uow, applier, pay, match, learn=p.payer_account,
                       book=book if p.customer is not None or unknown_customer_ref is None else None)
    applier.flush()
    return out


@payload
class PaymentReceive:
    customer: str
    amount: Decimal
    currency: str
    reference: str = ""
    date: str | None = None
    invoice: Any = None
    entity: str | None = None
    channel: str = "bank"
    payer_account: str | None = None
    provider_ref: str | None = None


@command("payment.receive", PaymentReceive, roles=PAYMENT_ROLES,
         summary="Record a received payment and apply it (named invoice, reference, amount, combination)")
def payment_receive(uow: Any, cmd: PaymentReceive) -> dict[str, Any]:
    cur = check_currency(cmd.currency)
    amount = to_minor(cmd.amount, cur)
    if amount <= 0:
        raise ValidationError("a received payment has a positive amount", field="amount")
    if cmd.channel not in ("bank", "provider"):
        raise ValidationError("channel must be bank or provider", field="channel")
    cust = find_customer(uow, cmd.customer)
    inv = resolve_invoice(uow, cmd.invoice) if cmd.invoice not in (None, "") else None
    entity = entity_for(uow, cmd.entity, cust, inv)
    p = NewPayment(entity=entity, customer=cust.external_id if cust else None, currency=cur, amount=amount,
                   date=_today(uow, cmd.date), channel=cmd.channel, origin="manual", reference=cmd.reference or None,
                   payer_account=cmd.payer_account, provider_ref=cmd.provider_ref)
    return receive(uow, p, invoice=inv["number"] if inv else None,
                   unknown_customer_ref=None if cust else cmd.customer)


# =========================================================================== manual application


def unapplied_of(pay: Mapping[str, Any]) -> int:
    return int(pay["amount"]) - int(pay["applied"]) - int(pay["refunded"])


def apply_to(uow: Any, applier: Applier, pay: Mapping[str, Any], inv: Mapping[str, Any], amount_inv: int | None,
             reason: str, day: str | None = None) -> Allocation:
    """Apply (part of) a payment's unapplied cash to an invoice; returns the allocation made."""
    left = unapplied_of(pay)
    if left <= 0:
        raise InsufficientAmountError(f"payment {pay['number']} has nothing left to apply", field="payment",
                                      record=pay["number"])
    if inv["status"] not in OPEN_STATUSES:
        raise ValidationError(f"invoice {inv['number']} is {inv['status']}: payments apply to open invoices",
                              field="invoice", record=inv["number"])
    day = day or uow.today().isoformat()
    conv = converter_for(uow, day)
    balance = int(inv["balance"])
    in_inv = left if pay["currency"] == inv["currency"] else conv(left, pay["currency"], inv["currency"])
    amount = min(balance, in_inv) if amount_inv is None else amount_inv
    if amount <= 0:
        raise ValidationError("the amount to apply is positive", field="amount")
    if amount > balance:
        raise InsufficientAmountError(f"{fmt(amount, inv['currency'])} is more than invoice {inv['number']}'s balance"
                                      f" ({fmt(balance, inv['currency'])})", field="amount")
    if amount > in_inv:
        raise InsufficientAmountError(f"{fmt(amount, inv['currency'])} is more than what payment {pay['number']}"
                                      f" has left ({fmt(left, pay['currency'])} {pay['currency']})", field="amount")
    pay_amount = amount if pay["currency"] == inv["currency"] else min(left, conv(amount, inv["currency"],
                                                                                   pay["currency"]))
    alloc = Allocation(inv["number"], amount, pay_amount)
    applier.apply(int(pay["id"]), pay["number"], day, alloc, reason, "1.00", inv)
    applied = int(pay["applied"]) + pay_amount
    uow.execute("UPDATE collections_payment SET applied = ?, status = ?, customer = COALESCE(customer, ?)"
                " WHERE id = ?", (applied, payment_status(int(pay["amount"]), applied, int(pay["refunded"])),
                                  inv["customer"], pay["id"]))
    return alloc


@payload
class PaymentApply:
    payment: str
    invoice: Any
    amount: Decimal | None = None


@command("payment.apply", PaymentApply, roles=PAYMENT_ROLES,
         summary="Apply a payment's unapplied cash (or customer credit from an overpayment) to an open invoice")
def payment_apply(uow: Any, cmd: PaymentApply) -> dict[str, Any]:
    pay = get_payment(uow, cmd.payment, lock=True)
    inv = resolve_invoice(uow, cmd.invoice)
    if pay["customer"] and pay["customer"] != inv["customer"]:
        owner = find_customer(uow, pay["customer"])
        if owner is None or owner.external_id != inv["customer"]:
            raise ValidationError(f"invoice {inv['number']} belongs to {inv['customer']}, payment {pay['number']}"
                                  f" to {pay['customer']}", field="invoice", record=inv["number"])
    amount = None if cmd.amount is None else to_minor(cmd.amount, inv["currency"])
    applier = Applier(uow)
    alloc = apply_to(uow, applier, pay, inv, amount, "manual")
    applier.flush()
    if pay["exception_id"]:
        close_exception(uow, int(pay["exception_id"]), "adjust", f"applied by {uow.actor} to {inv['number']}")
    after = get_payment(uow, pay["number"])
    return {"payment": pay["number"], "invoice": inv["number"], "applied": fmt(alloc.amount, inv["currency"]),
            "status": after["status"], "unapplied": fmt(unapplied_of(after), pay["currency"])}


def apply_credit_on_account(uow: Any, customer: str, invoice: str) -> list[dict[str, Any]]:
    """Overpayments and unplaced cash of a customer, applied oldest first to a newly issued invoice."""
    cust = find_customer(uow, customer)
    if cust is None:
        return []
    rows = uow.all(f"SELECT {_PAYMENT_COLS} FROM collections_payment WHERE customer = ? AND amount > applied + refunded"
                   " AND status IN ('partially_applied', 'unapplied') AND exception_id IS NULL ORDER BY date, id",
                   (cust.external_id,))
    if not rows:
        return []
    out = []
    applier = Applier(uow)
    for row in rows:
        pay = dict(zip(_PAYMENT_FIELDS, row, strict=True))
        inv = billing.find_invoice(uow, invoice)
        if inv["status"] not in OPEN_STATUSES or int(inv["balance"]) <= 0:
            break
        if pay["currency"] != inv["currency"] or pay["entity"] != inv["entity"]:
            continue
        alloc = apply_to(uow, applier, pay, inv, None, "credit_on_account", uow.today().isoformat())
        out.append({"payment": pay["number"], "invoice": invoice, "amount": fmt(alloc.amount, inv["currency"])})
    applier.flush()
    return out


@on_resolve("low_confidence_match", "accept")
def _accept_proposal(uow: Any, item: dict[str, Any], cmd: Any) -> dict[str, Any]:
    number = item["record"].get("payment")
    if not number:
        return {}
    pay = get_payment(uow, number, lock=True)
    proposal = json.loads(pay["proposal"] or "[]")
    if not proposal:
        # Accepting nothing would close the exception and leave the cash unapplied with nobody told.
        raise ValidationError(f"payment {number} has no proposed match to accept: apply it with payment.apply"
                              " (naming the invoices), or refund it", field="action", record=number)
    applier = Applier(uow)
    done = []
    for p in proposal:
        inv = billing.find_invoice(uow, p["invoice"])
        if inv["status"] not in OPEN_STATUSES:
            continue
        amount = min(int(p["amount"]), int(inv["balance"]))
        alloc = Allocation(p["invoice"], amount, min(int(p["payment_amount"]), unapplied_of(pay)),
                           write_off=min(int(p.get("write_off", 0)), int(inv["balance"]) - amount))
        applier.apply(int(pay["id"]), pay["number"], pay["date"], alloc, f"accepted:{pay['match_reason']}", "1.00",
                      inv)
        pay["applied"] = int(pay["applied"]) + alloc.payment_amount
        done.append({"invoice": alloc.invoice, "amount": fmt(alloc.amount, inv["currency"])})
    if not done:
        raise ValidationError(f"payment {number}: none of the proposed invoices is still open; apply it with"
                              " payment.apply (naming the invoices), or refund it", field="action", record=number)
    applier.flush()
    uow.execute("UPDATE collections_payment SET applied = ?, status = ?, proposal = NULL,"
                " customer = COALESCE(customer, ?) WHERE id = ?",
                (pay["applied"], payment_status(int(pay["amount"]), int(pay["applied"]), int(pay["refunded"])),
                 applier.invoices[done[0]["invoice"]]["customer"] if done else None, pay["id"]))
    return {"applied": done}


# =========================================================================== reversal and refunds


def reverse_payment(uow: Any, pay: Mapping[str, Any], amount: int, reason: str, *, refund: bool = True
                    ) -> dict[str, Any]:
    """Undo ``amount`` of a payment (a returned bank payment, a lost chargeback): its applications are
    undone newest first (billing's unapply_payment and a negative payment.applied), then the cash
    leaves (payment.refunded)."""
    cur = pay["currency"]
    if amount <= 0 or amount > int(pay["amount"]) - int(pay["refunded"]):
        raise InsufficientAmountError(f"cannot reverse {fmt(amount, cur)} of payment {pay['number']}"
                                      f" ({fmt(int(pay['amount']) - int(pay['refunded']), cur)} left)",
                                      field="amount", record=pay["number"])
    need_unapply = max(0, amount - unapplied_of(pay))
    undone = []
    applier = Applier(uow)
    if need_unapply:
        rows = uow.all("SELECT invoice, currency, SUM(amount), SUM(payment_amount), SUM(fx_difference) FROM"
                       " collections_application WHERE payment_id = ? GROUP BY invoice, currency ORDER BY MAX(id) DESC",
                       (pay["id"],))
        left = need_unapply
        for invoice, inv_cur, inv_amount, pay_amount, fx_total in rows:
            if left <= 0 or int(pay_amount) <= 0:
                continue
            take_pay = min(left, int(pay_amount))
            take_inv = int(inv_amount) if take_pay == int(pay_amount) else int(
                (Decimal(int(inv_amount)) * take_pay / int(pay_amount)).to_integral_value(rounding=ROUND_HALF_UP))
            fx = -int((Decimal(int(fx_total)) * take_pay / int(pay_amount)).to_integral_value(rounding=ROUND_HALF_UP))
            billing.unapply_payment(uow, invoice, take_inv)
            inv = billing.find_invoice(uow, invoice)
            day = uow.today().isoformat()
            applier.rows.append((pay["id"], invoice, inv["entity"], inv["customer"], inv_cur, -take_inv, -take_pay, fx,
                                 0, day, f"reversed:{reason}"[:64], "1.00", uow.actor, uow.now()))
            applier.events.append((pay["number"], inv["entity"], {
                "payment": pay["number"], "invoice": invoice, "entity": inv["entity"], "customer": inv["customer"],
                "currency": inv_cur, "date": day, "amount": fmt(-take_inv, inv_cur),
                "fx_difference": fmt(fx, get_entity(uow, inv["entity"]).currency)}))
            undone.append({"invoice": invoice, "amount": fmt(take_inv, inv_cur)})
            left -= take_pay
        applier.flush()
    applied = int(pay["applied"]) - need_unapply
    refunded = int(pay["refunded"]) + (amount if refund else 0)
    if refund:
        body: dict[str, Any] = {"payment": pay["number"], "entity": pay["entity"], "currency": cur,
                                "date": uow.today().isoformat(), "amount": fmt(amount, cur), "channel": pay["channel"]}
        if pay.get("customer"):
            body["customer"] = pay["customer"]
        uow.emit("payment.refunded", "payment", pay["number"], body, entity=pay["entity"])
    status = "reversed" if refunded >= int(pay["amount"]) and reason != "refund" else payment_status(
        int(pay["amount"]), applied, refunded)
    uow.execute("UPDATE collections_payment SET applied = ?, refunded = ?, status = ? WHERE id = ?",
                (applied, refunded, status, pay["id"]))
    return {"payment": pay["number"], "reversed": fmt(amount, cur), "unapplied_from": undone, "status": status}


def _approval_needed(uow: Any, entity: str, amount: int, currency: str, kind: str) -> bool:
    if not get_entity(uow, entity).maker_checker:
        return False
    threshold = to_minor(str(settings()["approvals"][f"{kind}_threshold"]), currency)
    return amount > threshold


def _request(uow: Any, kind: str, target: str, entity: str, currency: str, amount: int, reason: str
             ) -> dict[str, Any]:
    request_id = uow.scalar(
        "INSERT INTO collections_request (kind, target, entity, currency, amount, reason, status, maker, created_at)"
        " VALUES (?,?,?,?,?,?,'pending',?,?) RETURNING id",
        (kind, target, entity, currency, amount, reason, uow.actor, uow.now()))
    uow.emit(f"{kind}.requested", kind, target, {"request": int(request_id), "target": target, "entity": entity,
             "currency": currency, "amount": fmt(amount, currency), "maker": uow.actor}, entity=entity)
    return {"request": int(request_id), "status": "pending_approval", kind.replace("_off", "_off"): target,
            "amount": fmt(amount, currency), "maker": uow.actor}


def do_refund(uow: Any, pay: Mapping[str, Any], amount: int, reason: str) -> dict[str, Any]:
    left = unapplied_of(pay)
    if amount > left:
        raise InsufficientAmountError(
            f"a refund of {fmt(amount, pay['currency'])} is more than payment {pay['number']} has unapplied"
            f" ({fmt(left, pay['currency'])}); unapply it first or refund less", field="amount",
            record=pay["number"], refundable=fmt(left, pay["currency"]))
    out = reverse_payment(uow, pay, amount, "refund")
    out["refunded"] = out.pop("reversed")
    out["reason"] = reason
    return out


@payload
class PaymentRefund:
    payment: str
    reason: str
    amount: Decimal | None = None


@command("payment.refund", PaymentRefund, roles=PAYMENT_ROLES,
         summary="Refund unapplied cash of a payment (e.g. an overpayment); a second person approves large ones")
def payment_refund(uow: Any, cmd: PaymentRefund) -> dict[str, Any]:
    pay = get_payment(uow, cmd.payment, lock=True)
    cur = pay["currency"]
    amount = unapplied_of(pay) if cmd.amount is None else to_minor(cmd.amount, cur)
    if amount <= 0:
        raise InsufficientAmountError(f"payment {pay['number']} has nothing to refund", field="amount",
                                      record=pay["number"])
    if amount > unapplied_of(pay):
        do_refund(uow, pay, amount, cmd.reason)  # raises insufficient_amount naming what is refundable
    if _approval_needed(uow, pay["entity"], amount, cur, "refund"):
        return _request(uow, "refund", pay["number"], pay["entity"], cur, amount, cmd.reason)
    return do_refund(uow, pay, amount, cmd.reason)


# =========================================================================== write-offs


def do_write_off(uow: Any, inv: Mapping[str, Any], amount: int | None, reason: str) -> dict[str, Any]:
    out = billing.write_off_invoice(uow, inv["number"], amount, reason)
    from closeloop.collections.dunning import stop_dunning

    if out.get("status") not in OPEN_STATUSES:
        stop_dunning(uow, [inv["number"]], "written off")
    return out


@payload
class InvoiceWriteOff:
    invoice: Any
    reason: str
    amount: Decimal | None = None


@command("invoice.write_off", InvoiceWriteOff, roles=PAYMENT_ROLES + ("controller",),
         summary="Write off (part of) an invoice to bad debt; above the threshold a second person approves")
def invoice_write_off(uow: Any, cmd: InvoiceWriteOff) -> dict[str, Any]:
    if not cmd.reason.strip():
        raise ValidationError("a write-off needs a reason", field="reason")
    inv = resolve_invoice(uow, cmd.invoice)
    cur = inv["currency"]
    if inv["status"] not in OPEN_STATUSES:
        raise ValidationError(f"invoice {inv['number']} is {inv['status']}: only open invoices are written off",
                              field="invoice", record=inv["number"])
    amount = int(inv["balance"]) if cmd.amount is None else to_minor(cmd.amount, cur)
    if amount <= 0 or amount > int(inv["balance"]):
        raise InsufficientAmountError(f"{fmt(amount, cur)} is more than invoice {inv['number']}'s balance"
                                      f" ({fmt(int(inv['balance']), cur)})", field="amount", record=inv["number"])
    if _approval_needed(uow, inv["entity"], amount, cur, "write_off"):
        return _request(uow, "write_off", inv["number"], inv["entity"], cur, amount, cmd.reason)
    return do_write_off(uow, inv, amount, cmd.reason)


@payload
class RequestDecide:
    request: int
    approver: str | None = None
    reason: str | None = None


def _pending(uow: Any, request_id: int) -> dict[str, Any]:
    row = uow.one(f"SELECT id, kind, target, entity, currency, amount, reason, status, maker FROM collections_request"
                  f" WHERE id = ?{uow.for_update()}", (request_id,))
    if row is None:
        raise NotFoundError(f"no write-off or refund request {request_id}", field="request", record=str(request_id))
    req = dict(zip(("id", "kind", "target", "entity", "currency", "amount", "reason", "status", "maker"), row,
                   strict=True))
    if req["status"] != "pending":
        raise ConflictError(f"request {request_id} is already {req['status']}", field="request",
                            record=str(request_id))
    return req


@command("collections.approve", RequestDecide, roles=("collections", "controller", "admin"),
         summary="Approve a pending write-off or refund (a different person than its maker)")
def collections_approve(uow: Any, cmd: RequestDecide) -> dict[str, Any]:
    req = _pending(uow, cmd.request)
    approver = cmd.approver or uow.actor
    if approver == req["maker"]:
        raise ForbiddenError(f"request {req['id']} was made by {req['maker']}; a second person must approve it",
                             field="approver", record=str(req["id"]), maker=req["maker"])
    if req["kind"] == "write_off":
        inv = resolve_invoice(uow, req["target"])
        out = do_write_off(uow, inv, int(req["amount"]), str(req["reason"]))
    else:
        pay = get_payment(uow, req["target"], lock=True)
        out = do_refund(uow, pay, int(req["amount"]), str(req["reason"]))
    uow.execute("UPDATE collections_request SET status = 'approved', decided_by = ?, decided_at = ? WHERE id = ?",
                (approver, uow.now(), req["id"]))
    return {**out, "request": req["id"], "approved_by": approver, "maker": req["maker"]}


@command("collections.reject", RequestDecide, roles=("collections", "controller", "admin"),
         summary="Reject a pending write-off or refund")
def collections_reject(uow: Any, cmd: RequestDecide) -> dict[str, Any]:
    req = _pending(uow, cmd.request)
    uow.execute("UPDATE collections_request SET status = 'rejected', decided_by = ?, decided_at = ? WHERE id = ?",
                (cmd.approver or uow.actor, uow.now(), req["id"]))
    return {"request": req["id"], "status": "rejected"}


# =========================================================================== bank statements


def read_statement(fmt_name: str, data: bytes, name: str, mapping: dict[str, Any] | None = None,
                   currency: str | None = None) -> list[Statement]:
    if fmt_name in ("camt053", "camt054", "camt"):
        from closeloop.collections.connectors.camt import parse_camt

        return parse_camt(data, name)
    if fmt_name == "mt940":
        from closeloop.collections.connectors.mt940 import parse_mt940

        return parse_mt940(data, name)
    if fmt_name == "csv":
        from closeloop.collections.connectors.csv_statement import parse_csv

        return parse_csv(data, name, mapping, currency)
    raise ValidationError(f"format {fmt_name!r} must be camt053, camt054, mt940 or csv", field="format")


def _fingerprint(st: Statement, line: StatementLine) -> str:
    key = "|".join(str(x) for x in (st.account, line.booking_date, line.direction, line.amount, line.currency,
                                    line.bank_reference, line.end_to_end, line.text, line.entry, line.detail,
                                    line.reversal))
    return hashlib.sha256(key.encode()).hexdigest()


def _is_payout_line(line: StatementLine) -> bool:
    text = " ".join((line.text, " ".join(line.references), line.payer_name or "")).upper()
    return any(marker in text for marker in settings()["provider"]["payout_markers"])


@payload
class BankImport:
    format: str
    file: str | None = None
    entity: str | None = None
    content: str | None = None  # the file's text, instead of a path (scenarios, API)
    mapping: dict[str, Any] | None = None  # CSV column mapping
    currency: str | None = None  # CSV without a currency column


def _read_file(cmd: BankImport) -> tuple[bytes, str]:
    if cmd.content is not None:
        try:
            return cmd.content.encode("utf-8"), cmd.file or f"inline.{cmd.format}"
        except UnicodeEncodeError:
            raise ValidationError("content is not valid Unicode text (an unpaired surrogate)", field="content",
                                  record=cmd.file) from None
    if not cmd.file:
        raise ValidationError("give file (a path) or content", field="file")
    path = Path(cmd.file)
    if not path.is_file():
        base = os.environ.get("CLOSELOOP_FILES_DIR")
        if base and (Path(base) / cmd.file).is_file():
            path = Path(base) / cmd.file
        else:
            raise NotFoundError(f"file {cmd.file!r} does not exist", field="file", record=cmd.file)
    return path.read_bytes(), path.name


@command("bank.import", BankImport, roles=PAYMENT_ROLES,
         summary="Import a bank statement (camt.053/054, MT940, CSV) and apply its receipts")
def bank_import(uow: Any, cmd: BankImport) -> dict[str, Any]:
    data, name = _read_file(cmd)
    if len(name) > 300 or "\x00" in name:  # the file name is recorded with the statement (300 characters)
        raise ValidationError(f"the file name {name[:40]!r}... is {len(name)} characters long or contains a NUL"
                              " character; at most 300 characters are accepted", field="file")
    statements = read_statement(cmd.format.lower(), data, name, cmd.mapping, cmd.currency)
    digest = hashlib.sha256(data).hexdigest()
    entity = cmd.entity
    if entity is None:
        entities = list_entities(uow)
        if len(entities) != 1:
            raise ValidationError("several legal entities exist: give the entity whose account the statement is",
                                  field="entity")
        entity = entities[0].code
    get_entity(uow, entity)
    return import_statements(uow, statements, entity=entity, file_name=name, digest=digest)


def import_statements(uow: Any, statements: Sequence[Statement], *, entity: str, file_name: str, digest: str
                      ) -> dict[str, Any]:
    """Record statements and their lines; receipts become payments and go through cash application."""
    report: dict[str, Any] = {"file": file_name, "entity": entity, "statements": [], "lines": 0, "receipts": 0,
                              "applied": 0, "partially_applied": 0, "unapplied": 0, "payouts": 0, "returned": 0,
                              "ignored": 0, "duplicates": 0, "exceptions": 0, "payments": []}
    pending: list[tuple[int, Statement, StatementLine]] = []
    line_rows: list[tuple[Any, ...]] = []
    for st in statements:
        if uow.one("SELECT 1 FROM collections_statement WHERE entity = ? AND sha256 = ? AND statement_id = ?",
                   (entity, digest, st.statement_id)):
            report["statements"].append({"statement": st.statement_id, "status": "already_imported"})
            report["duplicates"] += len(st.lines)
            continue
        stmt_id = int(uow.scalar(
            "INSERT INTO collections_statement (entity, format, file_name, sha256, statement_id, account, currency,"
            " opening_balance, closing_balance, lines, imported_at, actor) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            " RETURNING id", (entity, st.format, file_name, digest, st.statement_id, st.account, st.currency,
                              st.opening_balance, st.closing_balance, len(st.lines), uow.now(), uow.actor)))
        report["statements"].append({"statement": st.statement_id, "format": st.format, "account": st.account,
                                     "lines": len(st.lines), "status": "imported"})
        for line in st.lines:
            pending.append((stmt_id, st, line))
    report["lines"] = len(pending)
    if not pending:
        return report
    fingerprints = [_fingerprint(st, line) for _, st, line in pending]
    seen: set[str] = set()
    for start in range(0, len(fingerprints), 500):
        chunk = fingerprints[start:start + 500]
        marks = ",".join("?" * len(chunk))
        seen.update(f for (f,) in uow.all(f"SELECT fingerprint FROM collections_bank_line WHERE entity = ? AND"
                                          f" fingerprint IN ({marks})", [entity, *chunk]))
    receipts: list[tuple[int, StatementLine, str]] = []
    first_line = uow.next_ids("collections_bank_line", len(pending), table="collections_bank_line")
    payers = payer_customers(uow, [line.payer_account for _, _, line in pending
                                   if line.payer_account and line.direction == "credit"])
    reversals: list[tuple[int, StatementLine]] = []
    payout_lines: list[tuple[int, StatementLine]] = []
    for i, ((stmt_id, st, line), fp) in enumerate(zip(pending, fingerprints, strict=True)):
        line_id = first_line + i
        status, note = "payment", None
        if fp in seen:
            status, note = "duplicate", "this line was imported before (same account, date, amount, references)"
            report["duplicates"] += 1
        elif line.status not in ("BOOK", "BOOKED"):
            status, note = "ignored", f"entry status {line.status} (not booked)"
        elif line.reversal and line.direction == "debit":
            status = "returned"
            reversals.append((line_id, line))
        elif line.reversal:
            status, note = "ignored", "reversal of an outgoing payment (money back to us, not a customer receipt)"
        elif line.direction == "debit":
            status, note = "ignored", "a debit: money out, not a receipt"
        elif _is_payout_line(line):
            status = "payout"
            payout_lines.append((line_id, line))
        else:
            try:
                check_currency(line.currency)
            except ValidationError:
                status, note = "ignored", f"currency {line.currency!r} is not an ISO 4217 currency in use"
        seen.add(fp)
        if line.notes:
            note = "; ".join(x for x in (note, *line.notes) if x)
        if status == "payment":
            receipts.append((line_id, line, st.account))
        elif status == "ignored":
            report["ignored"] += 1
        line_rows.append((line_id, stmt_id, entity, line.entry, line.detail, line.booking_date, line.value_date,
                          line.direction, bool(line.reversal), line.amount, line.currency, line.text[:4000] or None,
                          " ".join(line.references)[:2000] or None, line.end_to_end, line.bank_reference,
                          line.payer_name, line.payer_account, status, None, None, note, fp))
    news = [NewPayment(entity=entity, customer=payers.get(line.payer_account or ""), currency=line.currency,
                       amount=line.amount, date=line.booking_date, channel="bank", origin="bank",
                       reference=(line.end_to_end or (line.references[0] if line.references else None)),
                       remittance=line.text[:4000] or None, payer_name=line.payer_name,
                       payer_account=line.payer_account, bank_line_id=line_id) for line_id, line, _ in receipts]
    payment_ids = reserve_payments(uow, news) if news else []
    by_line = {line_id: pid for (line_id, _, _), pid in zip(receipts, payment_ids, strict=True)}
    line_rows = [(*row[:18], by_line.get(row[0]), *row[19:]) for row in line_rows]
    uow.executemany(
        "INSERT INTO collections_bank_line (id, statement_id, entity, entry, detail, booking_date, value_date,"
        " direction, reversal, amount, currency, remittance, refs, end_to_end, bank_reference, payer_name,"
        " payer_account, status, payment_id, payout, note, fingerprint) VALUES"
        " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", line_rows)
    if receipts:
        _apply_bank_receipts(uow, entity, receipts, news, payment_ids, report)
    for line_id, line in payout_lines:
        from closeloop.collections.provider import match_payout_line

        match_payout_line(uow, entity, line_id, line)
        report["payouts"] += 1
    for line_id, line in reversals:
        if not _bank_reversal(uow, entity, line_id, line):
            report["exceptions"] += 1
        report["returned"] += 1
    return report


def _apply_bank_receipts(uow: Any, entity: str, receipts: Sequence[tuple[int, StatementLine, str]],
                         news: Sequence[NewPayment], ids: Sequence[int], report: dict[str, Any]) -> None:
    """Match every receipt of a statement against one book, then write payments, applications and
    their events set-based (payment.received before payment.applied in the outbox)."""
    rs = [Receipt(id=str(p.number), amount=p.amount, currency=p.currency, date=p.date, customer=p.customer,
                  text=line.text, references=tuple(line.references) + ((line.end_to_end,) if line.end_to_end else ()),
                  entity=entity) for p, (_, line, _) in zip(news, receipts, strict=True)]
    book = build_book(uow, rs, entity=entity)
    rules = match_rules()
    applier = Applier(uow)
    convs: dict[str, model.Converter] = {}
    report["receipts"] += len(rs)
    outcomes = []
    for pid, p, r in zip(ids, news, rs, strict=True):
        conv = convs.get(p.date) or convs.setdefault(p.date, converter_for(uow, p.date))
        match = model.match_receipt(r, book, rules, conv)
        pay = {"id": pid, "number": p.number, "amount": p.amount, "currency": p.currency, "date": p.date,
               "entity": entity, "customer": p.customer}
        outcome, out = settle(uow, applier, pay, match, learn=p.payer_account, book=book)
        outcomes.append(outcome)
        report[out["status"] if out["status"] in ("applied", "partially_applied", "unapplied") else "unapplied"] += 1
        if "exception" in out:
            report["exceptions"] += 1
        if len(report["payments"]) < 200:
            report["payments"].append(out)
    insert_payments(uow, news, ids=ids, outcomes=outcomes)
    applier.flush()


def _bank_reversal(uow: Any, entity: str, line_id: int, line: StatementLine) -> bool:
    """A debit reversal: the bank took back a credit. Find the payment it booked and reverse it
    (True); else an exception names the line (False)."""
    candidates = []
    if line.end_to_end:
        candidates = uow.all(f"SELECT {_PAYMENT_COLS} FROM collections_payment WHERE entity = ? AND reference = ?"
                             " AND amount = ? AND currency = ? AND status NOT IN ('reversed', 'refunded')",
                             (entity, line.end_to_end, line.amount, line.currency))
    if not candidates and line.payer_account:
        candidates = uow.all(f"SELECT {_PAYMENT_COLS} FROM collections_payment WHERE entity = ? AND payer_account = ?"
                             " AND amount = ? AND currency = ? AND status NOT IN ('reversed', 'refunded')"
                             " ORDER BY date DESC, id DESC", (entity, line.payer_account, line.amount, line.currency))
    if len(candidates) >= 1 and (line.end_to_end or len(candidates) == 1):
        pay = dict(zip(_PAYMENT_FIELDS, candidates[0], strict=True))
        out = reverse_payment(uow, pay, line.amount, "returned by the bank")
        uow.execute("UPDATE collections_bank_line SET payment_id = ?, note = ? WHERE id = ?",
                    (pay["id"], f"reverses payment {pay['number']}", line_id))
        del out
        return True
    uow.execute("UPDATE collections_bank_line SET note = ? WHERE id = ?",
                ("a reversal whose original payment is not found; the cash left the bank", line_id))
    open_exception(uow, "low_confidence_match", record_type="bank_line", record_id=str(line_id), entity=entity,
                   amount=line.amount, currency=line.currency,
                   message=f"the bank reversed {fmt(line.amount, line.currency)} {line.currency} on {line.booking_date}"
                           f" ({line.text[:120]}) but no payment it reverses was found; find it and refund it"
                           " (payment.refund) or book the difference",
                   dedup_key=f"bank_reversal:{line_id}")
    return False


# =========================================================================== queries


def payment_view(uow: Any, pay: Mapping[str, Any]) -> dict[str, Any]:
    cur = pay["currency"]
    apps = uow.all("SELECT invoice, currency, amount, payment_amount, fx_difference, write_off, date, reason,"
                   " confidence FROM collections_application WHERE payment_id = ? ORDER BY id", (pay["id"],))
    return {"payment": pay["number"], "entity": pay["entity"], "customer": pay["customer"], "currency": cur,
            "amount": fmt(pay["amount"], cur), "applied": fmt(pay["applied"], cur),
            "refunded": fmt(pay["refunded"], cur), "unapplied": fmt(unapplied_of(pay), cur),
            "date": pay["date"], "channel": pay["channel"], "origin": pay["origin"], "status": pay["status"],
            "reference": pay["reference"], "payer_name": pay["payer_name"], "payer_account": pay["payer_account"],
            "provider_ref": pay["provider_ref"], "fee": fmt(pay["fee"], cur), "payout": pay["payout"],
            "reason": pay["match_reason"], "confidence": pay["match_confidence"], "detail": pay["match_detail"],
            "proposal": json.loads(pay["proposal"]) if pay["proposal"] else [],
            "applications": [{"invoice": a[0], "currency": a[1], "amount": fmt(a[2], a[1]),
                              "payment_amount": fmt(a[3], cur), "write_off": fmt(a[5], a[1]), "date": a[6],
                              "reason": a[7], "confidence": a[8]} for a in apps]}


@payload
class PaymentQuery:
    payment: str


@query("payment", PaymentQuery, summary="One payment: amount, applied, unapplied, applications and why")
def payment_query(uow: Any, q: PaymentQuery) -> dict[str, Any]:
    return payment_view(uow, get_payment(uow, q.payment))


@payload
class PaymentsQuery:
    customer: str | None = None
    status: str | None = None
    entity: str | None = None
    limit: Limit = 500


@query("payments", PaymentsQuery, summary="Payments by customer, status, entity: count, totals per currency, list")
def payments_query(uow: Any, q: PaymentsQuery) -> dict[str, Any]:
    where, params = [], []
    if q.customer:
        cust = find_customer(uow, q.customer)
        where.append("customer = ?")
        params.append(cust.external_id if cust else q.customer)
    for column, value in (("status", q.status), ("entity", q.entity)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {_PAYMENT_COLS} FROM collections_payment" + (" WHERE " + " AND ".join(where) if where else "")
    rows = [dict(zip(_PAYMENT_FIELDS, r, strict=True)) for r in uow.all(sql + " ORDER BY id", params)]
    totals: dict[str, list[int]] = {}
    for r in rows:
        t = totals.setdefault(r["currency"], [0, 0])
        t[0] += int(r["amount"])
        t[1] += unapplied_of(r)
    return {"count": len(rows),
            "totals": {c: {"amount": fmt(a, c), "unapplied": fmt(u, c)} for c, (a, u) in sorted(totals.items())},
            "payments": [{"payment": r["number"], "customer": r["customer"], "date": r["date"],
                          "currency": r["currency"], "amount": fmt(r["amount"], r["currency"]),
                          "unapplied": fmt(unapplied_of(r), r["currency"]), "status": r["status"],
                          "reason": r["match_reason"], "confidence": r["match_confidence"]}
                         for r in rows[: min(q.limit, 10_000)]]}


@payload
class BankLinesQuery:
    statement: int | None = None
    status: str | None = None
    limit: Limit = 1000


@query("bank_lines", BankLinesQuery, summary="Imported bank statement lines and what became of each")
def bank_lines_query(uow: Any, q: BankLinesQuery) -> dict[str, Any]:
    where, params = [], []
    if q.statement is not None:
        where.append("l.statement_id = ?")
        params.append(q.statement)
    if q.status:
        where.append("l.status = ?")
        params.append(q.status)
    rows = uow.all(
        "SELECT l.id, l.statement_id, l.booking_date, l.direction, l.reversal, l.amount, l.currency, l.remittance,"
        " l.payer_name, l.status, p.number, l.payout, l.note FROM collections_bank_line l LEFT JOIN"
        " collections_payment p ON p.id = l.payment_id" + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY l.id LIMIT ?", [*params, min(q.limit, 100_000)])
    return {"count": len(rows), "lines": [
        {"id": int(r[0]), "statement": int(r[1]), "date": r[2], "direction": r[3], "reversal": bool(r[4]),
         "amount": fmt(r[5], r[6]), "currency": r[6], "remittance": r[7], "payer": r[8], "status": r[9],
         "payment": r[10], "payout": r[11], "note": r[12]} for r in rows]}


# =========================================================================== customer credit (balances)


def _credit_balances(uow: Any, customer_ids: Sequence[int]) -> dict[int, list[tuple[int, int, str]]]:
    """Unapplied cash of identified customers (overpayments): their credit, applicable later or refundable."""
    from closeloop.customers.service import external_ids

    exts = external_ids(uow, customer_ids)
    by_ext = {v: k for k, v in exts.items()}
    out: dict[int, list[tuple[int, int, str]]] = {}
    names = list(by_ext)
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for customer, cur, left in uow.all(
                f"SELECT customer, currency, SUM(amount - applied - refunded) FROM collections_payment"
                f" WHERE customer IN ({marks}) AND status IN ('unapplied', 'partially_applied') GROUP BY customer,"
                " currency", chunk):
            if int(left or 0) > 0:
                out.setdefault(by_ext[customer], []).append((0, int(left), cur))
    return out


_REPOINTED = (("collections_payment", "id"), ("collections_invoice", "number"), ("collections_dispute", "dispute_id"),
              ("collections_dunning_case", "id"), ("collections_failure", "id"), ("collections_payer", "account"))


def _repoint(uow: Any, merged_id: int, survivor_id: int) -> list[str]:
    """A merge moves the merged account's payments, invoices known to collections, disputes, dunning
    cases, failures and payer accounts to the survivor (its collector assignment is not moved)."""
    from closeloop.customers.service import customer_by_id

    merged, survivor = customer_by_id(uow, merged_id).external_id, customer_by_id(uow, survivor_id).external_id
    moved = []
    for table, key in _REPOINTED:
        rows = uow.all(f"SELECT {key} FROM {table} WHERE customer = ?", (merged,))
        moved += [f"{table}:{r[0]}" for r in rows]
        uow.execute(f"UPDATE {table} SET customer = ? WHERE customer = ?", (survivor, merged))
    return moved


def _restore(uow: Any, merged_id: int, survivor_id: int, ids: Any) -> None:
    from closeloop.customers.service import customer_by_id

    merged = customer_by_id(uow, merged_id).external_id
    for table, key in _REPOINTED:
        values = [str(x).split(":", 1)[1] for x in ids or () if str(x).startswith(f"{table}:")]
        uow.executemany(f"UPDATE {table} SET customer = ? WHERE {key} = ?",
                        [(merged, int(v) if key == "id" else v) for v in values])


def _new_references(uow: Any, survivor_id: int, since: str) -> int:
    from closeloop.customers.service import customer_by_id

    survivor = customer_by_id(uow, survivor_id).external_id
    return int(uow.scalar("SELECT COUNT(*) FROM collections_payment WHERE customer = ? AND created_at >= ?",
                          (survivor, since)) or 0)


def _register() -> None:
    from closeloop.customers.service import register_balance_provider, register_reference_holder

    register_balance_provider(_credit_balances, name="collections")
    register_reference_holder("collections", _repoint, restore=_restore, new_references=_new_references)


_register()

