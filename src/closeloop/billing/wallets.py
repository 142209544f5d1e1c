"""Prepaid credits (wallets): ``wallet.topup``, ``wallet.apply``, the ``wallet`` query, expiry.

A wallet (:class:`closeloop.billing.drawdown.Wallet`) holds credits a customer bought, in one currency
at a rate (the value of one credit: 1 for a wallet in money, e.g. 1.5 for Lago's "1 credit = $1.50").

- ``wallet.topup {customer, credits | amount, wallet?, rate?, currency?, entity?, expires?, applies_to?,
  auto_topup?: {threshold, credits}, date?}`` creates the wallet on its first top-up and issues a
  **top-up invoice** (one line "Prepaid credits", not taxed: an advance payment, category O) through the
  ordinary invoice path (numbered, ``invoice.issued``, collectable); the credits are usable at once.
  The top-up invoice's posting books the receivable against deferred revenue (the contract liability);
  ``wallet.topped_up`` records it (it moves no money of its own).
- Each later invoice of the customer in the wallet's currency and entity is paid from the wallet **after
  tax**, at issue (:func:`closeloop.billing.drawdown.draw`): ``wallet.applied`` (posted: Dr deferred
  revenue, Cr receivable). A wallet whose draw-down leaves it at or below ``auto_topup.threshold``
  credits is topped up with ``auto_topup.credits`` at once (a top-up invoice of its own).
- ``wallet.apply {wallet, invoice, amount?}`` applies a wallet to an invoice already open; more than the
  wallet holds (a draw-down below zero) or than the invoice owes is ``insufficient_amount``.
- On its ``expires`` date (the first day the credits can no longer be used) the rest of the balance
  lapses: the bill run whose ``as_of`` reaches it emits ``wallet.expired`` (posted: Dr deferred revenue,
  Cr revenue — breakage, recognised when the customer can no longer use the credits).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.billing.drawdown import APPLIES_TO, Wallet, amount_of, credits_of
from closeloop.billing.model import Account, Charge, DraftInvoice, dec_plain
from closeloop.core.errors import ConflictError, InsufficientAmountError, NotFoundError, ValidationError
from closeloop.core.money import check_currency, format_minor, to_minor
from closeloop.core.periods import parse_date
from closeloop.core.registry import command, payload, query

ROLES = ("billing", "admin")
_COLS = ("wallet_id, customer_id, entity, currency, rate, balance, applies_to, expires, threshold, topup_credits,"
         " status, created")


def _wallet(r: Sequence[Any]) -> Wallet:
    return Wallet(wallet_id=r[0], customer_id=int(r[1]), entity=r[2], currency=r[3], rate=Decimal(r[4]),
                  balance=int(r[5]), applies_to=r[6], expires=None if r[7] is None else date.fromisoformat(r[7]),
                  threshold=None if r[8] is None else int(r[8]),
                  topup_credits=None if r[9] is None else Decimal(r[9]), status=r[10],
                  created=date.fromisoformat(r[11]))


def load_wallets(uow: Any, customer_ids: Sequence[int]) -> list[Wallet]:
    """The active wallets of customers (one query per chunk of ids)."""
    out: list[Wallet] = []
    ids = list(customer_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        out += [_wallet(r) for r in uow.all(f"SELECT {_COLS} FROM billing_wallet WHERE customer_id IN ({marks})"
                                            " AND status = 'active' ORDER BY wallet_id", chunk)]
    return out


def get_wallet(uow: Any, wallet_id: str, *, lock: bool = False) -> Wallet:
    row = uow.one(f"SELECT {_COLS} FROM billing_wallet WHERE wallet_id = ?{uow.for_update() if lock else ''}",
                  (wallet_id,))
    if row is None:
        raise NotFoundError(f"wallet {wallet_id!r} does not exist; wallet.topup creates it", field="wallet",
                            record=wallet_id)
    return _wallet(row)


def topup_draft(account: Account, w: Wallet, credits: Decimal, day: date) -> tuple[DraftInvoice, int]:
    """A top-up invoice of ``credits`` for a wallet: (the draft, its amount in minor units)."""
    amount = amount_of(credits, w.rate, w.currency)
    charge = Charge(contract_id=None, line_id=w.wallet_id, version=0, kind="wallet_topup",  # type: ignore[arg-type]
                    description=f"Prepaid credits: {dec_plain(credits)} credits at {dec_plain(w.rate)} {w.currency}"
                                f" (wallet {w.wallet_id})",
                    amount=amount, natural=day, scheduled=True, quantity=credits, unit_price=w.rate,
                    service_from=day, tax_code="prepaid_credit", revenue_role="revenue", treatment="prepaid",
                    ref=f"wallet:{w.wallet_id}")
    return DraftInvoice(account, day, (charge,)), amount


# --------------------------------------------------------------------------- wallet.topup


@payload
class AutoTopup:
    threshold: Decimal
    credits: Decimal


@payload
class WalletTopup:
    customer: str
    wallet: str | None = None
    credits: Decimal | None = None
    amount: Decimal | None = None
    rate: Decimal | None = None
    currency: str | None = None
    entity: str | None = None
    expires: str | None = None
    applies_to: str | None = None
    auto_topup: AutoTopup | None = None
    date: str | None = None


@command("wallet.topup", WalletTopup, roles=ROLES,
         summary="Buy prepaid credits (credits or amount): creates the wallet on first use, issues a top-up invoice")
def wallet_topup(uow: Any, cmd: WalletTopup) -> dict[str, Any]:
    from closeloop.billing.service import _Writer
    from closeloop.contracts.pricing import selling_entity
    from closeloop.customers.service import get_customer

    cust = get_customer(uow, cmd.customer)
    day = parse_date(cmd.date, field="date") if cmd.date else uow.today()
    wallet_id = cmd.wallet or f"W-{cust.external_id}"
    row = uow.one(f"SELECT {_COLS} FROM billing_wallet WHERE wallet_id = ?{uow.for_update()}", (wallet_id,))
    existing = None if row is None else _wallet(row)
    if (cmd.credits is None) == (cmd.amount is None):
        raise ValidationError("give credits or amount (one of them)", field="credits")
    if existing is not None:
        if existing.customer_id != int(cust.id):
            raise ConflictError(f"wallet {wallet_id} belongs to another customer", field="wallet", record=wallet_id)
        if existing.status != "active":
            raise ValidationError(f"wallet {wallet_id} expired on {existing.expires}; top up a new wallet",
                                  field="wallet", record=wallet_id, reason="expired")
        for name, given, have in (("currency", cmd.currency, existing.currency), ("entity", cmd.entity, existing.entity),
                                  ("rate", cmd.rate, existing.rate)):
            if given is not None and given != have:
                raise ValidationError(f"wallet {wallet_id} has {name} {have}; a top-up cannot change it ({given})",
                                      field=name, record=wallet_id)
    entity = existing.entity if existing else selling_entity(uow, cmd.entity, cust)
    from closeloop.core.entities import get_entity

    currency = existing.currency if existing else (cmd.currency or getattr(cust, "currency", None)
                                                    or get_entity(uow, entity).currency)
    check_currency(currency)
    rate = existing.rate if existing else (cmd.rate if cmd.rate is not None else Decimal(1))
    if rate <= 0:
        raise ValidationError(f"a credit's value (rate) is above zero ({rate})", field="rate")
    if cmd.applies_to is not None and cmd.applies_to not in APPLIES_TO:
        raise ValidationError(f"applies_to is {' or '.join(APPLIES_TO)} ({cmd.applies_to!r})", field="applies_to")
    credits = cmd.credits if cmd.credits is not None else None
    if cmd.amount is not None:
        amount = to_minor(cmd.amount, currency, field="amount")
        credits = credits_of(amount, rate, currency)
    assert credits is not None
    if credits <= 0:
        raise ValidationError(f"a top-up buys credits above zero ({credits})", field="credits")
    expires = parse_date(cmd.expires, field="expires") if cmd.expires else (existing.expires if existing else None)
    if expires is not None and expires <= day:
        raise ValidationError(f"credits expiring {expires} could not be used after a top-up on {day}", field="expires")
    threshold = topup = None
    if cmd.auto_topup is not None:
        if cmd.auto_topup.threshold < 0 or cmd.auto_topup.credits <= 0:
            raise ValidationError("auto_topup: threshold is 0 or more credits, credits above zero", field="auto_topup")
        threshold, topup = amount_of(cmd.auto_topup.threshold, rate, currency), cmd.auto_topup.credits
    elif existing is not None:
        threshold, topup = existing.threshold, existing.topup_credits
    applies_to = cmd.applies_to or (existing.applies_to if existing else "usage")
    if existing is None:
        uow.execute(f"INSERT INTO billing_wallet ({_COLS}, customer, created_at) VALUES (?,?,?,?,?,0,?,?,?,?,'active',?,?,?)",
                    (wallet_id, int(cust.id), entity, currency, dec_plain(rate), applies_to,
                     None if expires is None else expires.isoformat(), threshold,
                     None if topup is None else dec_plain(topup), day.isoformat(), cust.external_id, uow.now()))
    else:
        uow.execute("UPDATE billing_wallet SET applies_to = ?, expires = ?, threshold = ?, topup_credits = ?"
                    " WHERE wallet_id = ?", (applies_to, None if expires is None else expires.isoformat(), threshold,
                                             None if topup is None else dec_plain(topup), wallet_id))
    w = get_wallet(uow, wallet_id)
    terms = int(getattr(cust, "payment_terms_days", None) or 30)
    account = Account(int(cust.id), cust.external_id, entity, currency, terms)
    draft, amount = topup_draft(account, w, credits, day)
    writer = _Writer(uow, None)
    writer.prepare([int(cust.id)])
    inv = writer.add(draft)
    after = w.balance + amount
    uow.execute("UPDATE billing_wallet SET balance = ? WHERE wallet_id = ?", (after, wallet_id))
    uow.execute("INSERT INTO billing_wallet_txn (wallet_id, kind, date, amount, credits, invoice_id, invoice,"
                " balance_after, auto, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (wallet_id, "topup", day.isoformat(), amount, dec_plain(credits), inv["id"], inv["number"], after, False,
                 uow.now()))
    writer.flush()
    uow.emit("wallet.topped_up", "wallet", wallet_id, {
        "wallet": wallet_id, "customer": cust.external_id, "entity": entity, "currency": currency,
        "date": day.isoformat(), "amount": format_minor(amount, currency), "credits": dec_plain(credits),
        "invoice": inv["number"], "balance": format_minor(after, currency), "auto": False}, entity=entity)
    return {**wallet_view(uow, wallet_id), "invoice": inv["number"], "topped_up": format_minor(amount, currency)}


# --------------------------------------------------------------------------- wallet.apply


@payload
class WalletApply:
    wallet: str
    invoice: Any
    amount: Decimal | None = None


@command("wallet.apply", WalletApply, roles=ROLES + ("collections",),
         summary="Pay an open invoice from a wallet (never more than the wallet holds or the invoice owes)")
def wallet_apply(uow: Any, cmd: WalletApply) -> dict[str, Any]:
    from closeloop.billing.service import OPEN_STATUSES, _status, find_invoice

    w = get_wallet(uow, cmd.wallet, lock=True)
    inv = find_invoice(uow, cmd.invoice, lock=True)
    cur = w.currency
    if int(inv["customer_id"]) != w.customer_id or inv["currency"] != cur or inv["entity"] != w.entity:
        raise ValidationError(f"wallet {w.wallet_id} ({w.entity}, {cur}) cannot pay invoice {inv['number']} of"
                              f" {inv['customer']} ({inv['entity']}, {inv['currency']})", field="invoice",
                              record=inv["number"])
    if inv["status"] not in OPEN_STATUSES:
        raise ValidationError(f"invoice {inv['number']} is {inv['status']}: a wallet pays open invoices",
                              field="invoice", record=inv["number"])
    day = uow.today()
    if not (w.status == "active" and (w.expires is None or day < w.expires)):
        raise ValidationError(f"wallet {w.wallet_id} expired on {w.expires}", field="wallet", record=w.wallet_id,
                              reason="expired")
    balance = int(inv["balance"])
    want = min(w.balance, balance) if cmd.amount is None else to_minor(cmd.amount, cur, field="amount")
    if want <= 0:
        raise InsufficientAmountError(f"wallet {w.wallet_id} holds nothing" if w.balance <= 0
                                      else "an amount to apply is above zero", field="amount",
                                      available=format_minor(w.balance, cur))
    if want > w.balance:
        raise InsufficientAmountError(f"{format_minor(want, cur)} is more than wallet {w.wallet_id} holds"
                                      f" ({format_minor(w.balance, cur)}): a wallet never goes below zero",
                                      field="amount", available=format_minor(w.balance, cur))
    if want > balance:
        raise InsufficientAmountError(f"{format_minor(want, cur)} is more than invoice {inv['number']} owes"
                                      f" ({format_minor(balance, cur)})", field="amount",
                                      balance=format_minor(balance, cur))
    after = w.balance - want
    left = balance - want
    status = _status(int(inv["total"]), left, int(inv["paid"]) + 1, int(inv["credited"]), int(inv["written_off"]))
    uow.execute("UPDATE billing_wallet SET balance = ? WHERE wallet_id = ?", (after, w.wallet_id))
    uow.execute("UPDATE billing_invoice SET wallet_applied = wallet_applied + ?, balance = ?, status = ? WHERE id = ?",
                (want, left, status, inv["id"]))
    credits = credits_of(want, w.rate, cur)
    uow.execute("INSERT INTO billing_wallet_txn (wallet_id, kind, date, amount, credits, invoice_id, invoice,"
                " balance_after, auto, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (w.wallet_id, "drawdown", day.isoformat(), -want, dec_plain(credits), inv["id"], inv["number"], after,
                 False, uow.now()))
    uow.emit("wallet.applied", "wallet", w.wallet_id, {
        "wallet": w.wallet_id, "invoice": inv["number"], "customer": inv["customer"], "entity": w.entity,
        "currency": cur, "date": day.isoformat(), "amount": format_minor(want, cur), "credits": dec_plain(credits),
        "balance": format_minor(after, cur)}, entity=w.entity)
    return {"wallet": w.wallet_id, "invoice": inv["number"], "applied": format_minor(want, cur),
            "balance": format_minor(after, cur), "invoice_balance": format_minor(left, cur), "status": status}


# --------------------------------------------------------------------------- expiry


def expire_due(uow: Any, as_of: date, entity: str | None = None) -> int:
    """Expire every active wallet whose ``expires`` is on or before ``as_of``: what is left lapses (breakage),
    ``wallet.expired`` dated the expiry day. Returns how many wallets expired (running it again: none)."""
    sql = f"SELECT {_COLS}, customer FROM billing_wallet WHERE status = 'active' AND expires IS NOT NULL AND expires <= ?"
    params: list[Any] = [as_of.isoformat()]
    if entity:
        sql += " AND entity = ?"
        params.append(entity)
    rows = uow.all(sql + f" ORDER BY wallet_id{uow.for_update()}", params)
    for r in rows:
        w = _wallet(r)
        assert w.expires is not None
        uow.execute("UPDATE billing_wallet SET balance = 0, status = 'expired' WHERE wallet_id = ?", (w.wallet_id,))
        if w.balance <= 0:
            continue
        day = w.expires.isoformat()
        credits = credits_of(w.balance, w.rate, w.currency)
        uow.execute("INSERT INTO billing_wallet_txn (wallet_id, kind, date, amount, credits, invoice_id, invoice,"
                    " balance_after, auto, created_at) VALUES (?,?,?,?,?,NULL,NULL,0,?,?)",
                    (w.wallet_id, "expiry", day, -w.balance, dec_plain(credits), True, uow.now()))
        uow.emit("wallet.expired", "wallet", w.wallet_id, {
            "wallet": w.wallet_id, "customer": r[12], "entity": w.entity, "currency": w.currency, "date": day,
            "amount": format_minor(w.balance, w.currency), "credits": dec_plain(credits)}, entity=w.entity)
    return len(rows)


# --------------------------------------------------------------------------- query


def wallet_view(uow: Any, wallet_id: str) -> dict[str, Any]:
    w = get_wallet(uow, wallet_id)
    cur = w.currency
    txns = uow.all("SELECT kind, date, amount, credits, invoice, balance_after, auto FROM billing_wallet_txn"
                   " WHERE wallet_id = ? ORDER BY id", (wallet_id,))
    customer = uow.scalar("SELECT customer FROM billing_wallet WHERE wallet_id = ?", (wallet_id,))
    out: dict[str, Any] = {
        "wallet": w.wallet_id, "customer": customer, "entity": w.entity, "currency": cur, "rate": dec_plain(w.rate),
        "balance": format_minor(w.balance, cur), "credits": dec_plain(w.credits()), "status": w.status,
        "applies_to": w.applies_to, "expires": None if w.expires is None else w.expires.isoformat(),
        "topped_up": format_minor(sum(int(t[2]) for t in txns if t[0] == "topup"), cur),
        "consumed": format_minor(-sum(int(t[2]) for t in txns if t[0] == "drawdown"), cur),
        "expired": format_minor(-sum(int(t[2]) for t in txns if t[0] == "expiry"), cur),
        "transactions": [{"kind": t[0], "date": t[1], "amount": format_minor(int(t[2]), cur), "credits": t[3],
                          "invoice": t[4], "balance": format_minor(int(t[5]), cur), "auto": bool(t[6])} for t in txns]}
    if w.threshold is not None and w.topup_credits is not None:
        out["auto_topup"] = {"threshold": dec_plain(credits_of(w.threshold, w.rate, cur)),
                             "credits": dec_plain(w.topup_credits)}
    return out


@payload
class WalletQuery:
    wallet: str | None = None
    customer: str | None = None


@query("wallet", WalletQuery, summary="A wallet (or a customer's wallets): balance, credits, status, transactions")
def wallet_query(uow: Any, q: WalletQuery) -> dict[str, Any]:
    if q.wallet:
        return wallet_view(uow, q.wallet)
    if not q.customer:
        raise ValidationError("give wallet or customer", field="wallet")
    from closeloop.customers.service import get_customer

    cust = get_customer(uow, q.customer)
    ids = [r[0] for r in uow.all("SELECT wallet_id FROM billing_wallet WHERE customer_id = ? ORDER BY wallet_id",
                                 (cust.id,))]
    if not ids:
        raise NotFoundError(f"customer {q.customer} has no wallet", field="customer", record=q.customer)
    views = [wallet_view(uow, i) for i in ids]
    return {**(views[0] if len(views) == 1 else {}), "count": len(views), "wallets": views}
