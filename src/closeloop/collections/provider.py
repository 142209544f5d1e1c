"""Payment-provider events (Stripe-shaped): verified webhooks, idempotent by event id, out-of-order safe.

``provider.webhook {body, signature}`` verifies the ``Stripe-Signature`` over the exact body with
the secret ``CLOSELOOP_STRIPE_WEBHOOK_SECRET`` (or ``app.services.config["stripe_webhook_secret"]``)
and a tolerance; a bad signature is refused (``forbidden``) and the refusal is in the audit log,
with no other change. ``provider.event {event}`` applies an event already verified (a replay tool,
tests, the demo).

Idempotency: the event id is recorded with a digest of its payload in the same transaction as its
effect; a redelivery returns the first outcome and changes nothing; the same id with another
payload is a ``conflict``.

Out of order: state decides, not arrival order. A refund or a dispute for a payment not received
yet waits (``waiting``) and is applied when the payment arrives; a failure of a payment intent that
has succeeded is stale; a dispute closed before it was opened is opened and closed; refunds are
applied once per refund id (or by the cumulative amount refunded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from closeloop.billing import service as billing
from closeloop.collections.connectors import StatementLine
from closeloop.collections.connectors.stripe import ProviderAction, map_event, parse_body, verify
from closeloop.collections.service import (
    _PAYMENT_COLS,
    _PAYMENT_FIELDS,
    NewPayment,
    entity_for,
    find_customer,
    fmt,
    receive,
    reverse_payment,
)
from closeloop.collections.settings import settings
from closeloop.core.errors import ConflictError, ValidationError
from closeloop.core.exception_queue import open_exception
from closeloop.core.money import check_currency
from closeloop.core.registry import command, payload
from closeloop.core.uow import dumps

log = logging.getLogger("closeloop.collections.provider")
ROLES = ("collections", "implementation", "admin")
_REASON_CODES = {"fraudulent": "fraudulent", "product_not_received": "product_not_received",
                 "product_unacceptable": "not_as_described", "duplicate": "duplicate", "credit_not_processed": "other",
                 "subscription_canceled": "service_issue", "unrecognized": "fraudulent", "general": "general"}


def secret_for(uow: Any) -> str:
    configured = (uow.services.config.get("stripe_webhook_secret") if uow.services is not None else None)
    return str(configured or os.environ.get("CLOSELOOP_STRIPE_WEBHOOK_SECRET") or "")


def _payment_by_ref(uow: Any, *refs: str | None) -> dict[str, Any] | None:
    for ref in refs:
        if not ref:
            continue
        row = uow.one(f"SELECT {_PAYMENT_COLS} FROM collections_payment WHERE provider_ref = ? OR provider_ref LIKE ?"
                      " OR provider_ref LIKE ? ORDER BY id LIMIT 1", (ref, f"{ref}|%", f"%|{ref}"))
        if row is not None:
            return dict(zip(_PAYMENT_FIELDS, row, strict=True))
    return None


def _customer_of(uow: Any, action: ProviderAction) -> tuple[Any, str | None]:
    if action.customer:
        cust = find_customer(uow, action.customer)
        if cust is not None:
            return cust, None
    if action.customer_ref:
        row = uow.one("SELECT customer FROM collections_payer WHERE account = ?", (action.customer_ref,))
        cust = find_customer(uow, row[0] if row else action.customer_ref)
        if cust is not None:
            return cust, None
    return None, action.customer or action.customer_ref or "(no customer on the event)"


# --------------------------------------------------------------------------- the actions


def _receipt(uow: Any, a: ProviderAction, entity: str | None) -> tuple[str, dict[str, Any]]:
    found = _payment_by_ref(uow, a.payment_ref, a.charge)
    if found is not None:
        return "applied", {"payment": found["number"], "note": "this payment is already recorded"}
    cust, unknown = _customer_of(uow, a)
    invoice = None
    if a.invoice:
        try:
            inv = billing.find_invoice(uow, a.invoice)
            invoice = inv["number"]
        except Exception:  # noqa: BLE001 - an unknown invoice in metadata is left to cash application
            invoice = None
    ent = entity_for(uow, entity, cust, None)
    ref = a.payment_ref if not a.charge or a.charge == a.payment_ref else f"{a.payment_ref}|{a.charge}"
    p = NewPayment(entity=ent, customer=cust.external_id if cust else None, currency=check_currency(a.currency),
                   amount=a.amount, date=a.date, channel="provider", origin="provider",
                   reference=" ".join(x for x in (a.description, a.invoice or "") if x) or None,
                   provider_ref=ref, fee=a.fee, payer_account=a.customer_ref)
    out = receive(uow, p, invoice=invoice, unknown_customer_ref=unknown if cust is None else None)
    if invoice and out["status"] in ("applied", "partially_applied"):
        from closeloop.collections.dunning import stop_dunning

        stop_dunning(uow, [invoice], f"paid by {p.number} ({a.payment_ref})")
    return "applied", out


def _failure(uow: Any, a: ProviderAction) -> tuple[str, dict[str, Any]]:
    if _payment_by_ref(uow, a.payment_ref, a.charge) is not None:
        return "stale", {"note": f"{a.payment_ref} has succeeded; this failure is older news"}
    cust, unknown = _customer_of(uow, a)
    inv = None
    if a.invoice:
        try:
            inv = billing.find_invoice(uow, a.invoice)
        except Exception:  # noqa: BLE001
            inv = None
    if inv is None and cust is not None:
        candidates = [r for r in billing.open_invoices(uow, cust.id, currency=a.currency.upper() or None)
                      if int(r["balance"]) == a.amount]
        inv = candidates[0] if len(candidates) == 1 else None
    if inv is None:
        exc = open_exception(uow, "low_confidence_match", record_type="provider_event", record_id=a.event_id,
                             message=f"a failed provider payment ({a.payment_ref}, {fmt(a.amount, a.currency)}"
                                     f" {a.currency}) names no invoice we can find{f' for {unknown}' if unknown else ''};"
                                     " record it with payment.fail", amount=a.amount, currency=a.currency,
                             dedup_key=f"provider_failure:{a.event_id}")
        return "unplaced", {"exception": exc}
    from closeloop.collections.dunning import record_failure

    return "applied", record_failure(uow, inv, a.amount, a.reason or "payment failed", a.date, a.payment_ref)


def _refund(uow: Any, a: ProviderAction) -> tuple[str, dict[str, Any]]:
    pay = _payment_by_ref(uow, a.payment_ref, a.charge)
    if pay is None:
        return "waiting", {"waiting_for": a.payment_ref or a.charge}
    done = {r for (r,) in uow.all("SELECT refund_id FROM collections_provider_refund WHERE payment_id = ?",
                                  (pay["id"],))}
    todo = [(rid, amt) for rid, amt in a.refunds if rid not in done]
    if not a.refunds:
        delta = a.amount_refunded - int(pay["refunded"])
        todo = [(f"{a.charge}:{a.amount_refunded}", delta)] if delta > 0 else []
    results = []
    for refund_id, amount in todo:
        left = int(pay["amount"]) - int(pay["refunded"])
        if amount > left:
            exc = open_exception(
                uow, "low_confidence_match", record_type="payment", record_id=pay["number"], entity=pay["entity"],
                amount=amount, currency=pay["currency"],
                message=f"provider refund {refund_id} of {fmt(amount, pay['currency'])} is larger than what payment"
                        f" {pay['number']} has left ({fmt(left, pay['currency'])}); not booked — check the provider",
                dedup_key=f"refund_too_large:{refund_id}")
            results.append({"refund": refund_id, "status": "refused", "exception": exc})
            continue
        out = reverse_payment(uow, pay, amount, "refund")
        uow.execute("INSERT INTO collections_provider_refund (refund_id, payment_id, amount, created_at)"
                    " VALUES (?,?,?,?)", (refund_id, pay["id"], amount, uow.now()))
        results.append({"refund": refund_id, "amount": fmt(amount, pay["currency"]), "status": out["status"]})
        pay = _payment_by_ref(uow, a.payment_ref, a.charge) or pay
    return "applied", {"payment": pay["number"], "refunds": results}


def _dispute_invoice(uow: Any, pay: Mapping[str, Any], a: ProviderAction) -> dict[str, Any] | None:
    row = uow.one("SELECT invoice FROM collections_application WHERE payment_id = ? AND amount > 0 ORDER BY id LIMIT 1",
                  (pay["id"],))
    number = row[0] if row else a.invoice
    if not number:
        return None
    try:
        return billing.find_invoice(uow, number)
    except Exception:  # noqa: BLE001
        return None


def _open(uow: Any, a: ProviderAction, pay: Mapping[str, Any]) -> dict[str, Any] | None:
    from closeloop.collections.disputes import open_dispute

    inv = _dispute_invoice(uow, pay, a)
    if inv is None:
        return None
    amount = min(a.amount, int(inv["total"]))
    return open_dispute(uow, a.object_id, inv, amount, f"card dispute ({a.reason}) on {a.payment_ref}",
                        reason_code=_REASON_CODES.get(a.reason or "general", "other"), provider_ref=a.charge,
                        day=a.date or None)


def _dispute(uow: Any, a: ProviderAction) -> tuple[str, dict[str, Any]]:
    from closeloop.collections.disputes import get_dispute, resolve_dispute

    pay = _payment_by_ref(uow, a.payment_ref, a.charge)
    if pay is None:
        return "waiting", {"waiting_for": a.payment_ref or a.charge}
    existing = uow.one("SELECT status FROM collections_dispute WHERE dispute_id = ?", (a.object_id,))
    if a.kind == "dispute_opened":
        if existing is not None:
            return "applied", {"dispute_id": a.object_id, "note": f"already {existing[0]}"}
        opened = _open(uow, a, pay)
        if opened is None:
            exc = open_exception(uow, "dispute", record_type="payment", record_id=pay["number"], entity=pay["entity"],
                                 amount=a.amount, currency=pay["currency"],
                                 message=f"card dispute {a.object_id} on payment {pay['number']}, which is applied to"
                                         " no invoice: open it with dispute.open once the invoice is known",
                                 dedup_key=f"dispute:{a.object_id}")
            return "unplaced", {"exception": exc}
        return "applied", opened
    if existing is None:
        opened = _open(uow, a, pay)
        if opened is None:
            return "unplaced", {"note": "no invoice to dispute"}
    d = get_dispute(uow, a.object_id, lock=True)
    if d["status"] not in ("opened", "under_review"):
        return "applied", {"dispute_id": a.object_id, "note": f"already {d['status']}"}
    if a.outcome == "credit":
        # the card network took the money back: undo the application, the cash left the clearing account
        amount = min(int(d["amount"]), int(pay["amount"]) - int(pay["refunded"]))
        if amount > 0:
            reverse_payment(uow, pay, amount, "chargeback")
    today = uow.today().isoformat()
    day = max(d["opened"], min(a.date or today, today))
    return "applied", resolve_dispute(uow, d, a.outcome or "rejected", note=f"provider: {a.note}", day=day)


def _payout(uow: Any, a: ProviderAction, entity: str | None) -> tuple[str, dict[str, Any]]:
    if uow.one("SELECT 1 FROM collections_payout WHERE payout = ?", (a.object_id,)):
        return "applied", {"payout": a.object_id, "note": "already recorded"}
    cur = check_currency(a.currency)
    ent = entity_for(uow, entity, None, None)
    settled = uow.all("SELECT id, fee FROM collections_payment WHERE entity = ? AND channel = 'provider' AND currency = ?"
                      " AND payout IS NULL AND fee > 0", (ent, cur))
    fees = sum(int(f) for _, f in settled)
    uow.executemany("UPDATE collections_payment SET payout = ? WHERE id = ?", [(a.object_id, pid) for pid, _ in settled])
    gross = a.amount + fees
    day = a.date or uow.today().isoformat()
    uow.execute("INSERT INTO collections_payout (payout, entity, currency, gross, fees, net, date, bank_line_id,"
                " created_at) VALUES (?,?,?,?,?,?,?,NULL,?)", (a.object_id, ent, cur, gross, fees, a.amount, day,
                                                               uow.now()))
    uow.emit("payout.paid", "payout", a.object_id, {"payout": a.object_id, "entity": ent, "currency": cur,
             "date": day, "gross": fmt(gross, cur), "fees": fmt(fees, cur), "net": fmt(a.amount, cur)}, entity=ent)
    line = uow.one("SELECT id FROM collections_bank_line WHERE entity = ? AND status = 'payout' AND payout IS NULL"
                   " AND amount = ? AND currency = ? ORDER BY (CASE WHEN remittance LIKE ? THEN 0 ELSE 1 END), id"
                   " LIMIT 1", (ent, a.amount, cur, f"%{a.object_id}%"))
    if line is not None:
        _link(uow, a.object_id, int(line[0]))
    return "applied", {"payout": a.object_id, "gross": fmt(gross, cur), "fees": fmt(fees, cur),
                       "net": fmt(a.amount, cur), "payments": len(settled),
                       "bank_line": int(line[0]) if line is not None else None}


def _link(uow: Any, payout: str, line_id: int) -> None:
    uow.execute("UPDATE collections_payout SET bank_line_id = ? WHERE payout = ?", (line_id, payout))
    uow.execute("UPDATE collections_bank_line SET payout = ?, note = ? WHERE id = ?",
                (payout, f"provider payout {payout}", line_id))


def match_payout_line(uow: Any, entity: str, line_id: int, line: StatementLine) -> str | None:
    """A bank credit that carries a provider payout: link it to the payout of that net amount."""
    rows = uow.all("SELECT payout FROM collections_payout WHERE entity = ? AND bank_line_id IS NULL AND net = ?"
                   " AND currency = ? ORDER BY date", (entity, line.amount, line.currency))
    text = line.text.upper()
    chosen = next((p for (p,) in rows if p.upper() in text), rows[0][0] if rows else None)
    if chosen is None:
        uow.execute("UPDATE collections_bank_line SET note = ? WHERE id = ?",
                    ("a provider payout whose payout.paid event has not arrived yet", line_id))
        return None
    _link(uow, chosen, line_id)
    return chosen


# --------------------------------------------------------------------------- applying an event


def _apply(uow: Any, action: ProviderAction, entity: str | None) -> tuple[str, dict[str, Any]]:
    if action.kind == "ignored":
        return "ignored", {"note": action.note}
    if action.kind in ("receipt", "refund", "failure", "payout") and action.amount < 0:
        raise ValidationError(f"event {action.event_id}: negative amount", field="event.data.object.amount")
    if action.kind == "receipt":
        return _receipt(uow, action, entity)
    if action.kind == "failure":
        return _failure(uow, action)
    if action.kind == "refund":
        return _refund(uow, action)
    if action.kind in ("dispute_opened", "dispute_closed"):
        return _dispute(uow, action)
    if action.kind == "payout":
        return _payout(uow, action, entity)
    return "ignored", {"note": f"unhandled action {action.kind}"}


def handle_event(uow: Any, event: Mapping[str, Any], entity: str | None = None) -> dict[str, Any]:
    action = map_event(event)
    digest = hashlib.sha256(dumps(dict(event)).encode()).hexdigest()
    seen = uow.one("SELECT payload_sha256, status, result FROM collections_provider_event WHERE event_id = ?",
                   (action.event_id,))
    if seen is not None:
        if seen[0] != digest:
            raise ConflictError(f"provider event {action.event_id} was received before with a different payload",
                                field="event.id", record=action.event_id)
        return {"id": action.event_id, "type": action.event_type, "status": seen[1], "duplicate": True,
                **json.loads(seen[2] or "{}")}
    status, result = _apply(uow, action, entity)
    waiting_for = result.pop("waiting_for", None) if status == "waiting" else None
    uow.execute("INSERT INTO collections_provider_event (event_id, provider, type, object_id, created, payload_sha256,"
                " payload, status, result, waiting_for, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (action.event_id, "stripe", action.event_type, action.object_id, action.created, digest,
                 dumps(dict(event)), status, dumps(result), waiting_for, uow.now()))
    woken = []
    if action.kind == "receipt" and status == "applied":
        woken = _wake(uow, [r for r in (action.payment_ref, action.charge) if r], entity)
    out = {"id": action.event_id, "type": action.event_type, "status": status, **result}
    if woken:
        out["woken"] = woken
    return out


def _wake(uow: Any, refs: list[str], entity: str | None) -> list[dict[str, Any]]:
    marks = ",".join("?" * len(refs))
    rows = uow.all(f"SELECT event_id, payload FROM collections_provider_event WHERE status = 'waiting' AND waiting_for"
                   f" IN ({marks}) ORDER BY created, event_id", refs)
    out = []
    for event_id, text in rows:
        action = map_event(json.loads(text))
        status, result = _apply(uow, action, entity)
        result.pop("waiting_for", None)
        uow.execute("UPDATE collections_provider_event SET status = ?, result = ?, waiting_for = NULL"
                    " WHERE event_id = ?", (status, dumps(result), event_id))
        out.append({"id": event_id, "type": action.event_type, "status": status})
    return out


@payload
class ProviderEvent:
    event: dict[str, Any]
    entity: str | None = None


@command("provider.event", ProviderEvent, roles=ROLES,
         summary="Apply one verified payment-provider event (Stripe shape), idempotent by event id")
def provider_event(uow: Any, cmd: ProviderEvent) -> dict[str, Any]:
    return handle_event(uow, cmd.event, cmd.entity)


@payload
class ProviderWebhook:
    body: str
    signature: str | None = None
    entity: str | None = None


@command("provider.webhook", ProviderWebhook, roles=ROLES,
         summary="Receive a signed payment-provider webhook (Stripe-Signature verified over the raw body)")
def provider_webhook(uow: Any, cmd: ProviderWebhook) -> dict[str, Any]:
    body = cmd.body.encode("utf-8")
    tolerance = int(settings()["provider"].get("signature_tolerance_seconds", 300))
    try:
        verify(secret_for(uow), body, cmd.signature, now=uow.clock.now().timestamp(), tolerance=tolerance)
    except Exception as exc:
        log.warning("provider webhook refused: %s", getattr(exc, "message", exc))
        raise
    return handle_event(uow, parse_body(body), cmd.entity)


def receive_webhook(app: Any, body: bytes, headers: Mapping[str, str], *, entity: str | None = None
                    ) -> dict[str, Any]:
    """For an HTTP endpoint: the raw body and headers of a provider delivery, verified and applied."""
    signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
    return app.do("provider.webhook", {"body": body.decode("utf-8"), "signature": signature, "entity": entity})

