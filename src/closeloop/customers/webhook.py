"""CRM change events by webhook: HMAC-signed, idempotent by event id.

The REST layer hands :func:`receive` the raw body and headers; verification happens on
the exact bytes, before any parsing. Two signature schemes are accepted:

- **closeloop** (default): header ``X-Closeloop-Signature: t=<unix seconds>,v1=<hex>``
  where ``hex = HMAC-SHA256(secret, "<t>." + body)``; several ``v1=`` values may be given
  while a secret is rotated. The timestamp must be within ``tolerance`` seconds.
- **hubspot** (v3): ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(secret, method + uri +
  body + timestamp)) with ``X-HubSpot-Request-Timestamp`` in milliseconds.

The verified body is one CRM event (or a list of them)::

    {"id": "evt-001", "type": "account.upserted" | "account.deleted" | "account.merged",
     "source": "crm", "occurred_at": "2026-01-05T10:00:00Z",
     "data": {"external_id": "...", "name": "...", ...customer.upsert fields,
              "survivor": "..." (account.merged)}}

``crm.event`` applies it through the same service functions as ``customer.upsert`` and
``customer.merge``; the event id is recorded in the same transaction, so a redelivery
returns the first outcome and changes nothing, and a different payload under a known id
is a ``conflict``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from closeloop.core.boundary import check_tree, parse_json
from closeloop.core.errors import ConflictError, ForbiddenError, ValidationError
from closeloop.core.registry import command, payload
from closeloop.core.uow import dumps
from closeloop.customers.model import FIELDS, source_time
from closeloop.customers.service import CustomerMerge, customer_merge, get_customer, upsert_customer

EVENT_TYPES = ("account.upserted", "account.deleted", "account.merged")
DEFAULT_TOLERANCE = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The closeloop signature header value for ``body`` at ``timestamp`` (for senders and tests)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    low = name.lower()
    for key, value in headers.items():
        if key.lower() == low:
            return value
    return None


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, now: float, tolerance: int = DEFAULT_TOLERANCE,
           method: str = "POST", uri: str = "") -> str:
    """Check the signature of a webhook request; returns the scheme used, raises ForbiddenError."""
    if not secret:
        raise ForbiddenError("no webhook secret is configured; refusing unsigned CRM events", field="secret")
    sig = _header(headers, "X-Closeloop-Signature")
    if sig is not None:
        parts: dict[str, list[str]] = {}
        for item in sig.split(","):
            key, _, value = item.strip().partition("=")
            parts.setdefault(key, []).append(value)
        try:
            timestamp = int(parts["t"][0])
        except (KeyError, ValueError):
            raise ForbiddenError("X-Closeloop-Signature has no valid t= timestamp", field="signature") from None
        if abs(now - timestamp) > tolerance:
            raise ForbiddenError(f"webhook timestamp {timestamp} is more than {tolerance}s from now (replay?)",
                                 field="signature")
        expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
            raise ForbiddenError("webhook signature does not match the body", field="signature")
        return "closeloop"
    hub = _header(headers, "X-HubSpot-Signature-v3")
    if hub is not None:
        stamp = _header(headers, "X-HubSpot-Request-Timestamp") or ""
        try:
            millis = int(stamp)
        except ValueError:
            raise ForbiddenError("X-HubSpot-Request-Timestamp is missing or not a number", field="signature") from None
        if abs(now * 1000 - millis) > tolerance * 1000:
            raise ForbiddenError(f"HubSpot timestamp {millis} is more than {tolerance}s from now (replay?)",
                                 field="signature")
        message = method.encode() + uri.encode() + body + stamp.encode()
        expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, hub):
            raise ForbiddenError("HubSpot v3 signature does not match the request", field="signature")
        return "hubspot"
    raise ForbiddenError("the request is not signed (X-Closeloop-Signature or X-HubSpot-Signature-v3)",
                         field="signature")


def parse(body: bytes) -> list[dict[str, Any]]:
    """The events of a verified body. Hostile JSON (nested too deep, a number beyond 64 bits, a NUL or an
    unpaired surrogate in a text) is a validation error naming the body, before anything is applied."""
    try:
        doc = parse_json(body, record="CRM webhook body")
    except ValidationError as err:
        raise ValidationError(err.message, **{"field": "body", **err.details}) from None
    events = doc if isinstance(doc, list) else [doc]
    if not events or not all(isinstance(e, dict) for e in events):
        raise ValidationError("webhook body must be an event object or a list of them", field="body")
    return events


def receive(app: Any, body: bytes, headers: Mapping[str, str], *, secret: str, now: float,
            tolerance: int = DEFAULT_TOLERANCE, method: str = "POST", uri: str = "") -> list[dict[str, Any]]:
    """Verify, parse and apply a webhook delivery; one result per event (applied, duplicate, or the error)."""
    verify(secret, body, headers, now=now, tolerance=tolerance, method=method, uri=uri)
    results = []
    for event in parse(body):
        try:
            results.append(app.do("crm.event", {"event": event}, source=str(event.get("source") or "crm")))
        except Exception as exc:  # noqa: BLE001 - each event of a batch stands alone
            code = getattr(exc, "code", "internal_error")
            results.append({"id": event.get("id"), "status": "refused", "error": str(code),
                            "message": getattr(exc, "message", str(exc))})
    return results


@payload
class CrmEvent:
    event: dict[str, Any]
    source: str | None = None


@command("crm.event", CrmEvent, roles=("sales_ops", "implementation", "admin"),
         summary="Apply one CRM change event (webhook), idempotent by event id")
def crm_event(uow: Any, cmd: CrmEvent) -> dict[str, Any]:
    event = check_tree(cmd.event, record="CRM event")  # crm.event is also called without the webhook's parse
    event_id = str(event.get("id") or "").strip()
    if not event_id or len(event_id) > 200:
        raise ValidationError("a CRM event needs an id (at most 200 characters)", field="event.id")
    digest = hashlib.sha256(dumps(event).encode()).hexdigest()
    seen = uow.one("SELECT payload_sha256, result FROM crm_webhook_event WHERE event_id = ?", (event_id,))
    if seen is not None:
        if seen[0] != digest:
            raise ConflictError(f"CRM event {event_id} was already received with a different payload",
                                field="event.id", record=event_id)
        return {**json.loads(seen[1]), "duplicate": True}
    kind = event.get("type")
    data = event.get("data")
    if kind not in EVENT_TYPES:
        raise ValidationError(f"event {event_id}: type {kind!r} must be one of {', '.join(EVENT_TYPES)}",
                              field="event.type", record=event_id)
    if not isinstance(data, dict) or not data.get("external_id"):
        raise ValidationError(f"event {event_id}: data.external_id is required", field="event.data.external_id",
                              record=event_id)
    ext = str(data["external_id"])
    occurred = event.get("occurred_at")
    try:
        stamp = source_time(occurred) if occurred not in (None, "") else None
    except ValueError as exc:
        raise ValidationError(f"event {event_id}: occurred_at {exc}", field="event.occurred_at",
                              record=event_id) from None
    if kind == "account.upserted":
        unknown = sorted(set(data) - set(FIELDS) - {"external_id", "system"})
        if unknown:
            raise ValidationError(f"event {event_id}: unknown field(s) {', '.join(unknown)}", field=f"event.data.{unknown[0]}",
                                  record=event_id)
        outcome = upsert_customer(uow, ext, {k: v for k, v in data.items() if k in FIELDS}, kind="webhook",
                                  system=data.get("system"), modified_at=stamp)
        result = {**outcome.to_dict(), "id": event_id, "outcome": outcome.status, "status": "applied"}
    elif kind == "account.deleted":
        c = get_customer(uow, ext, field="event.data.external_id")
        outcome = upsert_customer(uow, c.external_id, {"status": "inactive"}, kind="webhook", modified_at=stamp)
        result = {**outcome.to_dict(), "id": event_id, "outcome": outcome.status, "status": "applied"}
    else:
        survivor = data.get("survivor")
        if not survivor:
            raise ValidationError(f"event {event_id}: account.merged needs data.survivor", field="event.data.survivor",
                                  record=event_id)
        merged = customer_merge(uow, CustomerMerge(survivor=str(survivor), merged=ext,
                                                   reason=f"merged in the CRM (event {event_id})"))
        result = {"id": event_id, "status": "applied", "merge_id": merged["merge_id"], "survivor": merged["survivor"],
                  "merged": merged["merged"]}
    uow.execute("INSERT INTO crm_webhook_event (event_id, received_at, payload_sha256, status, result)"
                " VALUES (?,?,?,?,?)", (event_id, uow.now(), digest, "applied", dumps(result)))
    return result
