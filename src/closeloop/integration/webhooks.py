"""Outbound webhooks: subscriptions, signed deliveries, retries, the delivery log, dead deliveries as exceptions.

A subscription names a URL and the event types it wants (exact names,
``prefix.*`` or ``*``) among the **published** event types
(:data:`PUBLISHED_EVENT_TYPES`, extended with :func:`publish`). When a
published event is handled, the ``webhooks`` handler writes one
``webhook_delivery`` row per matching active subscription with the JSON body
frozen (exactly once: it runs under the dispatcher's delivery record).

Sending is separate from handling, so no command ever waits on a remote
server: :class:`WebhookSender` (run by ``closeloop worker`` and by
``closeloop webhooks send``) claims due deliveries with a lease (and ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), POSTs them, logs every attempt in
``webhook_attempt`` and retries failures with exponential backoff and jitter.
Deliveries of one subscription are sent in event order per aggregate. After
``max_attempts`` a delivery is dead and a ``sync_failed`` exception opens
(``record: {webhook_delivery: ID}``); ``webhook.retry`` or resolving the
exception with ``retry`` sends it again.

Each request carries::

    Content-Type: application/json
    X-Closeloop-Delivery: <delivery id>       (stable across retries: receivers dedupe on it)
    X-Closeloop-Event: <event type>
    X-Closeloop-Event-Id: <event id>
    X-Closeloop-Timestamp: <unix seconds>
    X-Closeloop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

:func:`verify_signature` is the receiver's check (constant-time compare,
timestamp tolerance against replays).

The signing secret is shown once, in the result of ``webhook.subscribe`` (or
``webhook.rotate_secret``), and never again: it is a declared secret payload
field (kept out of the audit log), stored encrypted with the key of
:mod:`closeloop.integration.secret_box`, and listings show its last four
characters only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.events import Event, add_seconds, backoff_seconds, handles, wall_iso
from closeloop.core.exception_queue import close_exception, open_exception
from closeloop.core.registry import Limit, command, payload, query
from closeloop.core.uow import dumps
from closeloop.integration import secret_box

log = logging.getLogger("closeloop.webhooks")

OPERATORS = ("implementation", "admin")
SIGNATURE_TOLERANCE_SECONDS = 300
SECRET_MIN, SECRET_MAX = 16, 256
# A payload field the App never writes to the audit log (nor an API replay store) in clear.
SECRET = {"secret": True}

# Event types subscribers may receive. Listed here (the integration area owns the public contract);
# types of areas not built yet are listed so their events flow as soon as they are emitted.
PUBLISHED_EVENT_TYPES: list[str] = [
    "entity.created", "account.created", "period.closed", "journal.reversed", "journal.approved",
    "exception.opened", "exception.resolved", "exception.reassigned",
    "recon.completed", "crm.account_updated", "probe.pinged",
    "customer.created", "customer.updated", "customer.merged",
    "quote.approved", "contract.activated", "contract.amended", "contract.renewed", "contract.cancelled",
    "invoice.issued", "invoice.paid", "invoice.partially_paid", "invoice.credited", "invoice.voided",
    "invoice.written_off", "credit_memo.issued",
    "payment.received", "payment.applied", "payment.failed",
    "dunning.stage_changed", "dispute.opened", "dispute.resolved",
]


def publish(event_type: str) -> None:
    """Make an event type available to webhook subscribers (registers the fan-out handler)."""
    if event_type not in PUBLISHED_EVENT_TYPES:
        PUBLISHED_EVENT_TYPES.append(event_type)
    handles(event_type, "webhooks")(fan_out)


def type_matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


# --------------------------------------------------------------------------- signing


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *, now: float | None = None,
                     tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """The receiver's check of ``X-Closeloop-Signature``: right secret, untouched body, recent timestamp."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


# --------------------------------------------------------------------------- subscriptions


def _check_url(url: str) -> None:
    if not (url.startswith("http://") or url.startswith("https://")) or len(url) > 2000:
        raise ValidationError(f"url {url!r} must be an http:// or https:// URL", field="url")


def _check_types(types: tuple[str, ...]) -> None:
    if not types:
        raise ValidationError("event_types needs at least one event type (or '*')", field="event_types")
    for t in types:
        if t == "*" or t in PUBLISHED_EVENT_TYPES:
            continue
        if t.endswith(".*") and any(p.startswith(t[:-1]) for p in PUBLISHED_EVENT_TYPES):
            continue
        raise ValidationError(f"event type {t!r} is not published to webhooks; published types are"
                              f" {', '.join(PUBLISHED_EVENT_TYPES)}", field="event_types")


def _new_secret(given: str | None) -> str:
    secret = given or secrets.token_hex(32)
    if not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise ValidationError(f"secret must be {SECRET_MIN}-{SECRET_MAX} characters", field="secret")
    return secret


@payload
class WebhookSubscribe:
    name: str
    url: str
    event_types: tuple[str, ...]
    secret: str | None = field(default=None, metadata=SECRET)


@command("webhook.subscribe", WebhookSubscribe, roles=OPERATORS,
         summary="Subscribe a URL to published event types; deliveries are HMAC-SHA256 signed with the secret")
def webhook_subscribe(uow: Any, cmd: WebhookSubscribe) -> dict[str, Any]:
    if not cmd.name or len(cmd.name) > 64:
        raise ValidationError("name must be 1-64 characters", field="name")
    _check_url(cmd.url)
    _check_types(tuple(cmd.event_types))
    if uow.one("SELECT 1 FROM webhook_subscription WHERE name = ?", (cmd.name,)):
        raise ConflictError(f"webhook subscription {cmd.name!r} already exists", field="name", record=cmd.name)
    secret = _new_secret(cmd.secret)
    sub_id = uow.scalar(
        "INSERT INTO webhook_subscription (name, url, secret, secret_hint, event_types, active, created_at,"
        " created_by) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
        (cmd.name, cmd.url, secret_box.seal(uow, secret), secret_box.hint(secret), json.dumps(list(cmd.event_types)),
         True, uow.now(), uow.actor))
    return {"subscription": cmd.name, "id": int(sub_id), "url": cmd.url, "event_types": list(cmd.event_types),
            "secret": secret, "note": "the signing secret is shown only here; it is stored encrypted"}


@payload
class WebhookRotateSecret:
    name: str
    secret: str | None = field(default=None, metadata=SECRET)


@command("webhook.rotate_secret", WebhookRotateSecret, roles=OPERATORS,
         summary="Give a webhook subscription a new signing secret (generated unless given; shown once)")
def webhook_rotate_secret(uow: Any, cmd: WebhookRotateSecret) -> dict[str, Any]:
    row = uow.one(f"SELECT id FROM webhook_subscription WHERE name = ?{uow.for_update()}", (cmd.name,))
    if row is None:
        raise NotFoundError(f"webhook subscription {cmd.name!r} does not exist", field="name", record=cmd.name)
    secret = _new_secret(cmd.secret)
    uow.execute("UPDATE webhook_subscription SET secret = ?, secret_hint = ? WHERE id = ?",
                (secret_box.seal(uow, secret), secret_box.hint(secret), row[0]))
    return {"subscription": cmd.name, "id": int(row[0]), "secret": secret,
            "note": "the new signing secret is shown only here; deliveries are signed with it from now on"}


@payload
class WebhookReseal:
    pass


@command("webhook.reseal", WebhookReseal, roles=OPERATORS,
         summary="Encrypt every stored webhook signing secret with the first secret key (after a key rotation)")
def webhook_reseal(uow: Any, cmd: WebhookReseal) -> dict[str, Any]:
    source = secret_box.source_for(uow)
    ring = secret_box.keyring(source, create=True)
    rows = uow.all(f"SELECT id, secret FROM webhook_subscription ORDER BY id{uow.for_update()}")
    plain = sum(1 for _, stored in rows if not secret_box.is_sealed(stored))
    updates = []
    for sub_id, stored in rows:
        fresh = secret_box.reseal(ring, stored)
        hint = secret_box.hint(secret_box.unseal_with(ring, fresh))
        updates.append((fresh, hint, sub_id))
    uow.executemany("UPDATE webhook_subscription SET secret = ?, secret_hint = ? WHERE id = ?", updates)
    return {"resealed": len(updates), "were_plain_text": plain, "key": source.description if source else None}


@payload
class WebhookUnsubscribe:
    name: str


@command("webhook.unsubscribe", WebhookUnsubscribe, roles=OPERATORS,
         summary="Deactivate a webhook subscription (its pending deliveries are skipped)")
def webhook_unsubscribe(uow: Any, cmd: WebhookUnsubscribe) -> dict[str, Any]:
    row = uow.one("SELECT id, active FROM webhook_subscription WHERE name = ?", (cmd.name,))
    if row is None:
        raise NotFoundError(f"webhook subscription {cmd.name!r} does not exist", field="name", record=cmd.name)
    uow.execute("UPDATE webhook_subscription SET active = ?, disabled_at = ? WHERE id = ?", (False, uow.now(), row[0]))
    skipped = uow.execute("UPDATE webhook_delivery SET status = 'skipped', claimed_by = NULL, lease_until = NULL"
                          " WHERE subscription_id = ? AND status IN ('pending', 'dead')", (row[0],)).rowcount
    return {"subscription": cmd.name, "active": False, "skipped_deliveries": int(skipped or 0)}


@payload
class WebhooksQuery:
    include_inactive: bool = False


@query("webhooks", WebhooksQuery, summary="Webhook subscriptions with their delivery counts by status")
def webhooks(uow: Any, q: WebhooksQuery) -> dict[str, Any]:
    counts: dict[int, dict[str, int]] = {}
    for sub_id, status, n in uow.all("SELECT subscription_id, status, COUNT(*) FROM webhook_delivery"
                                     " GROUP BY subscription_id, status"):
        counts.setdefault(int(sub_id), {})[status] = int(n)
    items = []
    for sub_id, name, url, types, active, created_at, created_by, hint in uow.all(
            "SELECT id, name, url, event_types, active, created_at, created_by, secret_hint FROM webhook_subscription"
            " ORDER BY id"):
        if not active and not q.include_inactive:
            continue
        items.append({"id": int(sub_id), "name": name, "url": url, "event_types": json.loads(types),
                      "active": bool(active), "created_at": created_at, "created_by": created_by,
                      "secret": secret_box.masked(hint), "deliveries": counts.get(int(sub_id), {})})
    return {"count": len(items), "items": items}


@payload
class WebhookDeliveriesQuery:
    subscription: str | None = None
    status: str | None = None
    event: int | None = None
    limit: Limit = 100


@query("webhook_deliveries", WebhookDeliveriesQuery, summary="The webhook delivery log with each attempt")
def webhook_deliveries(uow: Any, q: WebhookDeliveriesQuery) -> dict[str, Any]:
    where, params = [], []
    if q.subscription is not None:
        where.append("s.name = ?")
        params.append(q.subscription)
    if q.status is not None:
        where.append("d.status = ?")
        params.append(q.status)
    if q.event is not None:
        where.append("d.event_id = ?")
        params.append(q.event)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    base = " FROM webhook_delivery d JOIN webhook_subscription s ON s.id = d.subscription_id" + clause
    count = int(uow.scalar("SELECT COUNT(*)" + base, params))
    rows = uow.all("SELECT d.id, s.name, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,"
                   " d.last_status, d.last_error, d.created_at, d.delivered_at" + base + " ORDER BY d.id LIMIT ?",
                   [*params, min(q.limit, 10_000)])
    ids = [int(r[0]) for r in rows]
    attempts: dict[int, list[dict[str, Any]]] = {}
    if ids:
        marks = ",".join("?" * len(ids))
        for delivery_id, at, worker, code, error, ms in uow.all(
                f"SELECT delivery_id, at, worker, status_code, error, duration_ms FROM webhook_attempt"
                f" WHERE delivery_id IN ({marks}) ORDER BY id", ids):
            attempts.setdefault(int(delivery_id), []).append(
                {"at": at, "worker": worker, "status_code": code, "error": error, "duration_ms": ms})
    items = [{"id": int(i), "subscription": name, "event": int(ev), "event_type": et, "status": st,
              "attempts": int(n), "next_attempt_at": nxt, "last_status": code, "last_error": err,
              "created_at": created, "delivered_at": delivered, "log": attempts.get(int(i), [])}
             for i, name, ev, et, st, n, nxt, code, err, created, delivered in rows]
    return {"count": count, "items": items}


def requeue_delivery(uow: Any, delivery_id: int, *, reason: str | None) -> dict[str, Any]:
    row = uow.one(f"SELECT status, attempts FROM webhook_delivery WHERE id = ?{uow.for_update()}", (delivery_id,))
    if row is None:
        raise NotFoundError(f"webhook delivery {delivery_id} does not exist", field="delivery",
                            record=str(delivery_id))
    status, attempts = row
    if status in ("delivered", "skipped"):
        raise ConflictError(f"webhook delivery {delivery_id} is already {status}", field="delivery",
                            record=str(delivery_id))
    uow.execute("UPDATE webhook_delivery SET status = 'pending', attempts = ?, next_attempt_at = NULL,"
                " claimed_by = NULL, lease_until = NULL WHERE id = ?",
                (int(attempts) if status == "pending" else 0, delivery_id))
    return {"delivery": delivery_id, "previous_status": status, "status": "pending", "reason": reason}


def skip_delivery(uow: Any, delivery_id: int, reason: str) -> dict[str, Any]:
    row = uow.one("SELECT status FROM webhook_delivery WHERE id = ?", (delivery_id,))
    if row is None:
        raise NotFoundError(f"webhook delivery {delivery_id} does not exist", field="delivery",
                            record=str(delivery_id))
    uow.execute("UPDATE webhook_delivery SET status = 'skipped', claimed_by = NULL, lease_until = NULL"
                " WHERE id = ? AND status IN ('pending', 'dead')", (delivery_id,))
    return {"delivery": delivery_id, "previous_status": row[0], "status": "skipped", "reason": reason}


@payload
class WebhookRetry:
    delivery: int
    reason: str | None = None


@command("webhook.retry", WebhookRetry, roles=OPERATORS, summary="Send a failing or dead webhook delivery again")
def webhook_retry(uow: Any, cmd: WebhookRetry) -> dict[str, Any]:
    out = requeue_delivery(uow, cmd.delivery, reason=cmd.reason)
    row = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'",
                  (f"webhook_delivery:{cmd.delivery}",))
    if row is not None:
        uow.execute("INSERT INTO exception_action (exception_id, at, actor, action, reason) VALUES (?,?,?,?,?)",
                    (int(row[0]), uow.now(), uow.actor, "delivery_retry", cmd.reason or "webhook.retry"))
    return out


# --------------------------------------------------------------------------- fan-out (an event handler)


def event_body(ev: Event) -> str:
    return dumps({"event_id": ev.id, "type": ev.type, "version": ev.version, "occurred_at": ev.occurred_at,
                  "recorded_at": ev.recorded_at, "aggregate": {"type": ev.aggregate_type, "id": ev.aggregate_id},
                  "entity": ev.entity, "correlation_id": ev.correlation_id, "data": ev.payload})


def fan_out(uow: Any, ev: Event) -> None:
    """Write one delivery per active subscription that wants this event type."""
    subs = [int(sub_id) for sub_id, types in uow.all(
        "SELECT id, event_types FROM webhook_subscription WHERE active = ?", (True,))
        if any(type_matches(p, ev.type) for p in json.loads(types))]
    if not subs:
        return
    body, now = event_body(ev), uow.now()
    uow.executemany(
        "INSERT INTO webhook_delivery (subscription_id, event_id, event_type, aggregate_type, aggregate_id, body,"
        " status, attempts, created_at) VALUES (?,?,?,?,?,?,'pending',0,?)"
        " ON CONFLICT (subscription_id, event_id) DO NOTHING",
        [(s, ev.id, ev.type, ev.aggregate_type, ev.aggregate_id, body, now) for s in subs])


for _type in list(PUBLISHED_EVENT_TYPES):
    publish(_type)


# --------------------------------------------------------------------------- sending


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "dead": self.dead, "lost": self.lost,
                "errors": list(self.errors)}


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    start = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked on subscribe
            response.read(65536)
            code, error = int(response.status), None
    except urllib.error.HTTPError as exc:
        code, error = int(exc.code), f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        code, error = None, f"{type(exc).__name__}: {reason}"
    return Outcome(code, error, int((time.monotonic() - start) * 1000))


CLAIM = (
    "SELECT d.id, d.event_id, d.event_type, d.body, d.attempts, s.url, s.secret FROM webhook_delivery d"
    " JOIN webhook_subscription s ON s.id = d.subscription_id"
    " WHERE d.status = 'pending' AND s.active = ? AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
    " AND (d.lease_until IS NULL OR d.lease_until < ?)"
    " AND NOT EXISTS (SELECT 1 FROM webhook_delivery p WHERE p.subscription_id = d.subscription_id"
    " AND p.aggregate_type = d.aggregate_type AND p.aggregate_id = d.aggregate_id AND p.event_id < d.event_id"
    " AND p.status IN ('pending', 'dead'))"
    " ORDER BY d.id LIMIT ?"
)


class WebhookSender:
    """Claims due webhook deliveries, sends them signed, and records each attempt."""

    def __init__(
        self,
        uow_factory: Any,
        *,
        max_attempts: int = 8,
        base_delay_seconds: float = 30.0,
        max_delay_seconds: float = 6 * 3600.0,
        timeout_seconds: float = 10.0,
        batch_size: int = 20,
        lease_seconds: float = 120.0,
        worker_id: str = "webhooks",
        rng: random.Random | None = None,
        post: Callable[[str, bytes, dict[str, str], float], Outcome] = http_post,
    ) -> None:
        self.uow_factory = uow_factory
        self.max_attempts = max_attempts
        self.base_delay_seconds = base_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id
        self.rng = rng or random.Random()
        self.post = post

    def _uow(self) -> Any:
        return self.uow_factory(actor="system", source="system", causation_id=None, correlation_id=None)

    def run(self, *, max_rounds: int = 100) -> SendReport:
        """Send everything due now (a pass of ``closeloop webhooks send``)."""
        report = SendReport()
        for _ in range(max_rounds):
            if not self.run_once(report):
                break
        return report

    def run_once(self, report: SendReport) -> int:
        with self._uow() as uow:
            lock = "" if uow.dialect.is_sqlite else " FOR UPDATE OF d SKIP LOCKED"
            rows = uow.all(CLAIM + lock, (True, uow.now(), wall_iso(), self.batch_size))
            if rows:
                uow.executemany("UPDATE webhook_delivery SET claimed_by = ?, lease_until = ? WHERE id = ?",
                                [(self.worker_id, wall_iso(self.lease_seconds), int(r[0])) for r in rows])
            secrets_of = self._unseal(uow, {r[6] for r in rows})
        for delivery_id, event_id, event_type, body, attempts, url, stored in rows:
            secret = secrets_of[stored]
            if isinstance(secret, Outcome):  # the secret cannot be decrypted: a failed attempt, retried later
                self._record(int(delivery_id), int(attempts), secret, report)
                continue
            data = body.encode()
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json", "User-Agent": "closeloop-webhooks/1",
                       "X-Closeloop-Delivery": str(delivery_id), "X-Closeloop-Event": event_type,
                       "X-Closeloop-Event-Id": str(event_id), "X-Closeloop-Timestamp": str(timestamp),
                       "X-Closeloop-Signature": sign(secret, timestamp, data)}
            outcome = self.post(url, data, headers, self.timeout_seconds)
            self._record(int(delivery_id), int(attempts), outcome, report)
        return len(rows)

    @staticmethod
    def _unseal(uow: Any, stored: set[str]) -> dict[str, str | Outcome]:
        """The signing secret of each stored value, or the failed Outcome that says why there is none."""
        out: dict[str, str | Outcome] = {}
        for value in stored:
            try:
                out[value] = secret_box.unseal(uow, value)
            except secret_box.SecretKeyError as err:
                out[value] = Outcome(None, f"cannot sign: {err.message}", 0)
        return out

    def _record(self, delivery_id: int, attempts: int, outcome: Outcome, report: SendReport) -> None:
        with self._uow() as uow:
            now = uow.now()
            uow.execute("INSERT INTO webhook_attempt (delivery_id, at, worker, status_code, error, duration_ms)"
                        " VALUES (?,?,?,?,?,?)", (delivery_id, now, self.worker_id, outcome.status_code,
                                                  outcome.error, outcome.duration_ms))
            row = uow.one(f"SELECT status, claimed_by, subscription_id, event_id, event_type FROM webhook_delivery"
                          f" WHERE id = ?{uow.for_update()}", (delivery_id,))
            if row is None or row[0] != "pending" or row[1] != self.worker_id:
                report.lost += 1  # another sender took it over after our lease expired; it records its own try
                return
            if outcome.ok:
                uow.execute("UPDATE webhook_delivery SET status = 'delivered', delivered_at = ?, last_status = ?,"
                            " attempts = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                            (now, outcome.status_code, attempts + 1, delivery_id))
                report.sent += 1
                exc = uow.one("SELECT id FROM exception_item WHERE dedup_key = ? AND status = 'open'",
                              (f"webhook_delivery:{delivery_id}",))
                if exc is not None:
                    close_exception(uow, int(exc[0]), "retry", f"webhook delivery {delivery_id} succeeded")
                return
            attempts += 1
            error = outcome.error or f"HTTP {outcome.status_code}"
            report.errors.append(f"delivery {delivery_id}: {error}")
            if attempts >= self.max_attempts:
                uow.execute("UPDATE webhook_delivery SET status = 'dead', attempts = ?, last_status = ?,"
                            " last_error = ?, next_attempt_at = NULL, claimed_by = NULL, lease_until = NULL"
                            " WHERE id = ?", (attempts, outcome.status_code, error[:4000], delivery_id))
                name = uow.scalar("SELECT name FROM webhook_subscription WHERE id = ?", (row[2],))
                open_exception(
                    uow, "sync_failed", record_type="webhook_delivery", record_id=str(delivery_id),
                    message=(f"webhook delivery {delivery_id} of event {row[3]} ({row[4]}) to subscription"
                             f" {name} failed {attempts} times: {error[:300]}"),
                    details={"delivery": delivery_id, "subscription": name, "event": int(row[3]),
                             "event_type": row[4], "attempts": attempts, "error": error[:4000]},
                    dedup_key=f"webhook_delivery:{delivery_id}")
                report.dead += 1
                return
            delay = backoff_seconds(attempts, self.base_delay_seconds, self.max_delay_seconds, self.rng)
            uow.execute("UPDATE webhook_delivery SET attempts = ?, last_status = ?, last_error = ?,"
                        " next_attempt_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                        (attempts, outcome.status_code, error[:4000], add_seconds(now, delay), delivery_id))
            report.failed += 1
