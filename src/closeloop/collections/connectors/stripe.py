"""Stripe-shaped payment-provider events: signature verification and mapping to provider actions.

Signature scheme (Stripe's): header ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` with
``hex = HMAC-SHA256(secret, "<t>." + raw body)``; the timestamp must be within the tolerance of now
(replays of old deliveries are refused); several ``v1`` values are accepted (secret rotation); the
comparison is constant-time. Verification works on the exact bytes received, before parsing.

Events mapped (``data.object`` of each):

- ``payment_intent.succeeded`` / ``charge.succeeded`` (a charge without a payment intent) /
  ``invoice.paid`` (without a payment intent): a receipt;
- ``payment_intent.payment_failed`` / ``charge.failed`` / ``invoice.payment_failed``: a failed payment;
- ``charge.refunded``: refunds, each by its refund id (``refunds.data``) or, without the list, the
  cumulative ``amount_refunded``;
- ``charge.dispute.created`` / ``charge.dispute.closed`` (won: rejected, lost: credited);
- ``payout.paid``: a payout (its net amount; the fees of the payments it settles come from their
  balance transactions).

Amounts are Stripe's integer amounts in the currency's smallest unit, which are closeloop's minor
units; currencies are upper-cased. The closeloop customer and invoice come from ``metadata``
(``customer``/``closeloop_customer``, ``invoice``/``closeloop_invoice``) or, for the customer, the
Stripe customer id linked with ``payer.link``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from closeloop.core.errors import ForbiddenError, ValidationError

DEFAULT_TOLERANCE = 300
HANDLED = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.succeeded", "charge.failed",
           "charge.refunded", "charge.dispute.created", "charge.dispute.closed", "payout.paid", "invoice.paid",
           "invoice.payment_failed", "refund.created", "refund.updated", "charge.refund.updated")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for a body (what Stripe sends; for tests and simulators)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str | None, *, now: float, tolerance: int = DEFAULT_TOLERANCE) -> int:
    """Check a ``Stripe-Signature`` header; returns its timestamp, raises ``forbidden`` naming why."""
    if not secret:
        raise ForbiddenError("no provider webhook secret is configured (CLOSELOOP_STRIPE_WEBHOOK_SECRET);"
                             " refusing unsigned events", field="signature")
    if not header:
        raise ForbiddenError("the request has no Stripe-Signature header", field="signature")
    timestamps, signatures = [], []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    try:
        timestamp = int(timestamps[0])
    except (IndexError, ValueError):
        raise ForbiddenError("Stripe-Signature has no valid t= timestamp", field="signature") from None
    if not signatures:
        raise ForbiddenError("Stripe-Signature has no v1= signature", field="signature")
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise ForbiddenError("the Stripe-Signature does not match the body", field="signature")
    if abs(now - timestamp) > tolerance:
        raise ForbiddenError(f"the signature's timestamp {timestamp} is more than {tolerance}s from now"
                             " (a replayed or delayed delivery)", field="signature", timestamp=timestamp)
    return timestamp


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"the webhook body is not UTF-8 JSON: {exc}", field="body") from None
    if not isinstance(doc, dict):
        raise ValidationError("the webhook body must be an event object", field="body")
    return doc


@dataclass(frozen=True, slots=True)
class ProviderAction:
    """What one provider event means for collections.

    kind: receipt, failure, refund, dispute_opened, dispute_closed, payout, ignored
    payment_ref: the provider payment (pi_... or ch_...) it concerns; charge: the charge id
    refunds: (refund id, amount) pairs; amount_refunded: the cumulative refunded amount
    """

    kind: str
    event_id: str
    event_type: str
    created: int
    object_id: str
    payment_ref: str | None = None
    charge: str | None = None
    amount: int = 0
    currency: str = ""
    customer_ref: str | None = None
    customer: str | None = None
    invoice: str | None = None
    description: str = ""
    reason: str | None = None
    outcome: str | None = None
    fee: int = 0
    refunds: tuple[tuple[str, int], ...] = ()
    amount_refunded: int = 0
    date: str = ""
    note: str = ""
    metadata: tuple[tuple[str, str], ...] = field(default=())


def _meta(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, Mapping) else {}


def _day(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ts), UTC).date().isoformat()
    except (TypeError, ValueError, OSError):
        return ""


def _fee(obj: Mapping[str, Any]) -> int:
    bt = obj.get("balance_transaction")
    if isinstance(bt, Mapping) and bt.get("fee") is not None:
        return int(bt["fee"])
    charges = obj.get("charges")
    if isinstance(charges, Mapping):
        return sum(_fee(c) for c in charges.get("data") or [] if isinstance(c, Mapping))
    latest = obj.get("latest_charge")
    if isinstance(latest, Mapping):
        return _fee(latest)
    return 0


def _charge_id(obj: Mapping[str, Any]) -> str | None:
    latest = obj.get("latest_charge")
    if isinstance(latest, str):
        return latest
    if isinstance(latest, Mapping):
        return str(latest.get("id"))
    charges = obj.get("charges")
    if isinstance(charges, Mapping):
        data = charges.get("data") or []
        if data and isinstance(data[0], Mapping):
            return str(data[0].get("id"))
    charge = obj.get("charge")
    if isinstance(charge, str):
        return charge
    if isinstance(charge, Mapping):
        return str(charge.get("id"))
    return None


def _ref(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return str(value.get("id")) if value.get("id") else None
    return str(value) if value else None


def map_event(event: Mapping[str, Any]) -> ProviderAction:
    """One Stripe event (envelope ``{id, type, created, data: {object}}``) as a provider action."""
    event_id = str(event.get("id") or "").strip()
    kind = str(event.get("type") or "")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not event_id or not kind or not isinstance(obj, Mapping):
        raise ValidationError("a provider event needs id, type and data.object", field="event",
                              record=event_id or None)
    created = int(event.get("created") or obj.get("created") or 0)
    meta = _meta(obj)
    base: dict[str, Any] = {
        "event_id": event_id, "event_type": kind, "created": created, "object_id": str(obj.get("id") or ""),
        "currency": str(obj.get("currency") or "").upper(), "customer_ref": _ref(obj.get("customer")),
        "customer": meta.get("closeloop_customer") or meta.get("customer") or meta.get("customer_external_id"),
        "invoice": meta.get("closeloop_invoice") or meta.get("invoice") or meta.get("invoice_number"),
        "description": str(obj.get("description") or obj.get("statement_descriptor") or ""),
        "date": _day(created) or _day(obj.get("created")), "metadata": tuple(sorted(meta.items())),
    }
    if kind == "payment_intent.succeeded":
        return ProviderAction(kind="receipt", payment_ref=str(obj["id"]), charge=_charge_id(obj),
                              amount=int(obj.get("amount_received") or obj.get("amount") or 0), fee=_fee(obj), **base)
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        reason = (error.get("message") or error.get("code") or "payment failed") if isinstance(error, Mapping) \
            else "payment failed"
        return ProviderAction(kind="failure", payment_ref=str(obj["id"]), charge=_charge_id(obj),
                              amount=int(obj.get("amount") or 0), reason=str(reason), **base)
    if kind in ("charge.succeeded", "charge.failed"):
        if obj.get("payment_intent"):
            return ProviderAction(kind="ignored", note="the payment intent's own event carries this charge", **base)
        if kind == "charge.succeeded":
            return ProviderAction(kind="receipt", payment_ref=str(obj["id"]), charge=str(obj["id"]),
                                  amount=int(obj.get("amount_captured") or obj.get("amount") or 0), fee=_fee(obj),
                                  **base)
        return ProviderAction(kind="failure", payment_ref=str(obj["id"]), charge=str(obj["id"]),
                              amount=int(obj.get("amount") or 0),
                              reason=str(obj.get("failure_message") or obj.get("failure_code") or "charge failed"),
                              **base)
    if kind == "charge.refunded":
        refunds_obj = obj.get("refunds")
        refunds: list[tuple[str, int]] = []
        if isinstance(refunds_obj, Mapping):
            for r in refunds_obj.get("data") or []:
                if isinstance(r, Mapping) and r.get("id") and r.get("status", "succeeded") in ("succeeded", "pending"):
                    refunds.append((str(r["id"]), int(r.get("amount") or 0)))
        return ProviderAction(kind="refund", payment_ref=_ref(obj.get("payment_intent")) or str(obj["id"]),
                              charge=str(obj["id"]), amount=int(obj.get("amount") or 0), refunds=tuple(refunds),
                              amount_refunded=int(obj.get("amount_refunded") or 0), **base)
    if kind in ("refund.created", "refund.updated", "charge.refund.updated"):
        status = str(obj.get("status") or "succeeded")
        if status not in ("succeeded", "pending"):
            return ProviderAction(kind="ignored", note=f"refund {obj.get('id')} is {status}", **base)
        return ProviderAction(kind="refund", payment_ref=_ref(obj.get("payment_intent")) or _ref(obj.get("charge")),
                              charge=_ref(obj.get("charge")), amount=int(obj.get("amount") or 0),
                              refunds=((str(obj["id"]), int(obj.get("amount") or 0)),), **base)
    if kind in ("charge.dispute.created", "charge.dispute.closed"):
        status = str(obj.get("status") or "")
        outcome = None
        if kind == "charge.dispute.closed":
            outcome = {"won": "rejected", "lost": "credit", "warning_closed": "rejected"}.get(status, "rejected")
        return ProviderAction(kind="dispute_opened" if kind.endswith("created") else "dispute_closed",
                              payment_ref=_ref(obj.get("payment_intent")) or _ref(obj.get("charge")),
                              charge=_ref(obj.get("charge")), amount=int(obj.get("amount") or 0),
                              reason=str(obj.get("reason") or "general"), outcome=outcome, note=status, **base)
    if kind == "payout.paid":
        return ProviderAction(kind="payout", amount=int(obj.get("amount") or 0),
                              **{**base, "date": _day(obj.get("arrival_date")) or base["date"]})
    if kind == "invoice.paid":
        if obj.get("payment_intent"):
            return ProviderAction(kind="ignored", note="the payment intent's own event carries this payment", **base)
        return ProviderAction(kind="receipt", payment_ref=str(obj["id"]), charge=_ref(obj.get("charge")),
                              amount=int(obj.get("amount_paid") or 0), **base)
    if kind == "invoice.payment_failed":
        return ProviderAction(kind="failure", payment_ref=_ref(obj.get("payment_intent")) or str(obj["id"]),
                              amount=int(obj.get("amount_due") or obj.get("amount_remaining") or 0),
                              reason=f"invoice payment failed (attempt {obj.get('attempt_count') or 1})", **base)
    return ProviderAction(kind="ignored", note=f"event type {kind} is not used by collections", **base)
