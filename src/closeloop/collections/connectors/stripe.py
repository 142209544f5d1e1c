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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from closeloop.collections.connectors import out_of_range
from closeloop.core.boundary import check_tree, parse_json
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
    """The event of a webhook body: UTF-8 JSON, nested at most 64 deep, integers within 64 bits, clean text
    (core.boundary.parse_json), and an object."""
    doc = parse_json(body, record="webhook body")
    if not isinstance(doc, dict):
        raise ValidationError(f"the webhook body must be an event object, not {type(doc).__name__}", field="body",
                              record="webhook body")
    return doc


# Stripe ids are under 40 characters; two of them joined by "|" (a payment intent and its charge) fit the
# 128-character provider_ref column, and one fits the 64-character payer account.
MAX_ID = 63
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
AMOUNT_KEYS = ("amount", "amount_received", "amount_captured", "amount_refunded", "amount_paid", "amount_due",
               "amount_remaining")


def _refuse(event_id: str | None, path: str, reason: str) -> ValidationError:
    return ValidationError(f"provider event {event_id or '(no id)'}: {path} {reason}", field=path,
                           record=event_id or None)


def _id(value: Any, event_id: str | None, path: str, *, required: bool = False) -> str | None:
    """An id (a string) or an expanded object's id; None when absent and not required."""
    if isinstance(value, Mapping):
        value, path = value.get("id"), f"{path}.id"
    if value is None or value == "":
        if required:
            raise _refuse(event_id, path, "is missing (every Stripe object has an id)")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _refuse(event_id, path, f"must be a string id, not {type(value).__name__}")
    if len(value) > MAX_ID:
        raise _refuse(event_id, path, f"is {len(value)} characters long; at most {MAX_ID} are accepted")
    return value


def _minor(value: Any, event_id: str | None, path: str, currency: str = "") -> int:
    """A Stripe amount: an integer of minor units, not negative, in range; absent is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(event_id, path, f"must be an integer amount in minor units, not {type(value).__name__}"
                                      f" {str(value)[:30]!r}")
    if value < 0:
        raise _refuse(event_id, path, f"must not be negative ({value})")
    if out_of_range(value, currency or "XXX"):
        raise _refuse(event_id, path, f"{value} is out of range")
    return value


def _timestamp(value: Any, event_id: str | None, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP:
        raise _refuse(event_id, path, f"must be a Unix timestamp (seconds), not {str(value)[:30]!r}")
    return value


def check_event(event: Any) -> tuple[str, str, Mapping[str, Any]]:
    """The envelope of an event — ``{id, type, created, data: {object: {id, ...}}}`` — checked field by field:
    (id, type, data.object), or a ValidationError naming the event and the field."""
    if not isinstance(event, Mapping):
        raise ValidationError(f"a provider event must be an object, not {type(event).__name__}", field="event")
    check_tree(event, record=str(event.get("id"))[:MAX_ID] if isinstance(event.get("id"), str) else None)
    raw_id = event.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise _refuse(None, "id", "is missing or not a string: a provider event needs id, type and data.object")
    event_id = raw_id.strip()
    if len(event_id) > MAX_ID:
        raise _refuse(event_id[:MAX_ID], "id", f"is {len(event_id)} characters long; at most {MAX_ID} are accepted")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
        raise _refuse(event_id, "type", "must be an event type such as payment_intent.succeeded: a provider event"
                                        " needs id, type and data.object")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise _refuse(event_id, "data.object", "is missing or not an object: a provider event needs id, type and"
                                               " data.object")
    _id(obj.get("id"), event_id, "data.object.id", required=kind in HANDLED)
    _timestamp(event.get("created"), event_id, "created")
    for key in ("created", "arrival_date"):
        _timestamp(obj.get(key), event_id, f"data.object.{key}")
    currency = obj.get("currency")
    if currency is not None and (not isinstance(currency, str) or len(currency) > 3):
        raise _refuse(event_id, "data.object.currency", f"must be a three-letter currency code, not {str(currency)[:20]!r}")
    for key in AMOUNT_KEYS:
        _minor(obj.get(key), event_id, f"data.object.{key}", str(currency or "").upper())
    for key in ("customer", "payment_intent", "charge", "latest_charge"):
        _id(obj.get(key), event_id, f"data.object.{key}")
    return event_id, kind, obj


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
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_TIMESTAMP:
        return ""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _items(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a Stripe list (``{"data": [...]}``); anything else is no items."""
    data = value.get("data") if isinstance(value, Mapping) else None
    return [item for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []


def _fee(obj: Mapping[str, Any], event_id: str, path: str = "data.object") -> int:
    bt = obj.get("balance_transaction")
    if isinstance(bt, Mapping) and bt.get("fee") is not None:
        return _minor(bt["fee"], event_id, f"{path}.balance_transaction.fee")
    charges = obj.get("charges")
    if isinstance(charges, Mapping):
        return sum(_fee(c, event_id, f"{path}.charges.data[{i}]") for i, c in enumerate(_items(charges)))
    latest = obj.get("latest_charge")
    if isinstance(latest, Mapping):
        return _fee(latest, event_id, f"{path}.latest_charge")
    return 0


def _charge_id(obj: Mapping[str, Any], event_id: str) -> str | None:
    if obj.get("latest_charge"):
        return _id(obj.get("latest_charge"), event_id, "data.object.latest_charge")
    charges = _items(obj.get("charges"))
    if charges:
        return _id(charges[0], event_id, "data.object.charges.data[0]")
    return _id(obj.get("charge"), event_id, "data.object.charge")


def map_event(event: Mapping[str, Any]) -> ProviderAction:
    """One Stripe event (envelope ``{id, type, created, data: {object}}``) as a provider action; the envelope
    and the fields used are checked first (:func:`check_event`), each refusal naming the event and the field."""
    event_id, kind, obj = check_event(event)
    created = event.get("created") or obj.get("created") or 0

    def ref(key: str) -> str | None:
        return _id(obj.get(key), event_id, f"data.object.{key}")

    def amount(*keys: str) -> int:
        for key in keys:
            if obj.get(key):
                return _minor(obj[key], event_id, f"data.object.{key}")
        return 0

    object_id = ref("id") or ""
    meta = _meta(obj)
    base: dict[str, Any] = {
        "event_id": event_id, "event_type": kind, "created": created, "object_id": object_id,
        "currency": str(obj.get("currency") or "").upper(), "customer_ref": ref("customer"),
        "customer": meta.get("closeloop_customer") or meta.get("customer") or meta.get("customer_external_id"),
        "invoice": meta.get("closeloop_invoice") or meta.get("invoice") or meta.get("invoice_number"),
        "description": str(obj.get("description") or obj.get("statement_descriptor") or ""),
        "date": _day(created) or _day(obj.get("created")), "metadata": tuple(sorted(meta.items())),
    }
    if kind == "payment_intent.succeeded":
        return ProviderAction(kind="receipt", payment_ref=object_id, charge=_charge_id(obj, event_id),
                              amount=amount("amount_received", "amount"), fee=_fee(obj, event_id), **base)
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        reason = (error.get("message") or error.get("code") or "payment failed") if isinstance(error, Mapping) \
            else "payment failed"
        return ProviderAction(kind="failure", payment_ref=object_id, charge=_charge_id(obj, event_id),
                              amount=amount("amount"), reason=str(reason), **base)
    if kind in ("charge.succeeded", "charge.failed"):
        if obj.get("payment_intent"):
            return ProviderAction(kind="ignored", note="the payment intent's own event carries this charge", **base)
        if kind == "charge.succeeded":
            return ProviderAction(kind="receipt", payment_ref=object_id, charge=object_id,
                                  amount=amount("amount_captured", "amount"), fee=_fee(obj, event_id),
                                  **base)
        return ProviderAction(kind="failure", payment_ref=object_id, charge=object_id,
                              amount=amount("amount"),
                              reason=str(obj.get("failure_message") or obj.get("failure_code") or "charge failed"),
                              **base)
    if kind == "charge.refunded":
        refunds: list[tuple[str, int]] = []
        for i, r in enumerate(_items(obj.get("refunds"))):
            if r.get("id") and r.get("status", "succeeded") in ("succeeded", "pending"):
                refunds.append((str(_id(r["id"], event_id, f"data.object.refunds.data[{i}].id")),
                                _minor(r.get("amount"), event_id, f"data.object.refunds.data[{i}].amount")))
        return ProviderAction(kind="refund", payment_ref=ref("payment_intent") or object_id,
                              charge=object_id, amount=amount("amount"), refunds=tuple(refunds),
                              amount_refunded=amount("amount_refunded"), **base)
    if kind in ("refund.created", "refund.updated", "charge.refund.updated"):
        status = str(obj.get("status") or "succeeded")
        if status not in ("succeeded", "pending"):
            return ProviderAction(kind="ignored", note=f"refund {object_id} is {status}", **base)
        return ProviderAction(kind="refund", payment_ref=ref("payment_intent") or ref("charge"),
                              charge=ref("charge"), amount=amount("amount"),
                              refunds=((object_id, amount("amount")),), **base)
    if kind in ("charge.dispute.created", "charge.dispute.closed"):
        status = str(obj.get("status") or "")
        outcome = None
        if kind == "charge.dispute.closed":
            outcome = {"won": "rejected", "lost": "credit", "warning_closed": "rejected"}.get(status, "rejected")
        return ProviderAction(kind="dispute_opened" if kind.endswith("created") else "dispute_closed",
                              payment_ref=ref("payment_intent") or ref("charge"),
                              charge=ref("charge"), amount=amount("amount"),
                              reason=str(obj.get("reason") or "general"), outcome=outcome, note=status, **base)
    if kind == "payout.paid":
        return ProviderAction(kind="payout", amount=amount("amount"),
                              **{**base, "date": _day(obj.get("arrival_date")) or base["date"]})
    if kind == "invoice.paid":
        if obj.get("payment_intent"):
            return ProviderAction(kind="ignored", note="the payment intent's own event carries this payment", **base)
        return ProviderAction(kind="receipt", payment_ref=object_id, charge=ref("charge"),
                              amount=amount("amount_paid"), **base)
    if kind == "invoice.payment_failed":
        return ProviderAction(kind="failure", payment_ref=ref("payment_intent") or object_id,
                              amount=amount("amount_due", "amount_remaining"),
                              reason=f"invoice payment failed (attempt {obj.get('attempt_count') or 1})", **base)
    return ProviderAction(kind="ignored", note=f"event type {kind} is not used by collections", **base)
