"""``Idempotency-Key`` on every POST: the same key and the same request give the same response.

A key is scoped to the authenticated principal. The first request claims the
key (a row with no status) in its own transaction, runs, and stores its
response; a retry with the same method, path and body gets the stored
response back (header ``Idempotent-Replayed: true``); the same key with a
different request is ``409 conflict``, and so is a retry while the first is
still running. A 5xx response is not stored, so the client may retry it. A
claim left by a crashed process is taken over after :data:`STALE_AFTER`.

No secret is kept: a stored response has every secret field (named as the
audit log's safety net names them, :func:`closeloop.app.is_secret_name`:
``secret``, ``password``, ``*_token``, ...) written as ``[redacted]``, plus a
``replay_note`` saying so, and that is what a replay returns. A secret shown
once (the signing secret in ``webhook.subscribe``'s response) is therefore
shown only in the first response; a client that lost it gives the
subscription a new one with ``webhook.rotate_secret``. The request itself is
kept only as a SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from closeloop.core.errors import ConflictError, ValidationError

REPLAY_NOTE = ("a replay of the stored response: secrets it held are not kept and read [redacted]; a lost webhook"
               " signing secret is replaced with webhook.rotate_secret")

KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
STALE_AFTER = timedelta(minutes=10)


def check_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise ValidationError("Idempotency-Key must be 1-200 printable ASCII characters without spaces",
                              field="Idempotency-Key")
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def claim(app: Any, principal: str, key: str, method_path: str, digest: str) -> tuple[int, Any] | None:
    """Claim the key; returns the stored (status, body) when this request was already answered."""
    with app.unit_of_work() as uow:
        row = uow.one("SELECT method_path, request_hash, status, response, created_at FROM api_idempotency"
                      f" WHERE principal = ? AND key = ?{uow.for_update()}", (principal, key))
        now = _now()
        if row is None:
            cur = uow.execute("INSERT INTO api_idempotency (principal, key, method_path, request_hash, created_at)"
                              " VALUES (?,?,?,?,?) ON CONFLICT (principal, key) DO NOTHING",
                              (principal, key, method_path[:300], digest, now.isoformat()))
            if cur.rowcount == 0:  # a concurrent request claimed it first
                raise ConflictError(f"a request with Idempotency-Key {key!r} is still being processed; retry later",
                                    field="Idempotency-Key", record=key)
            return None
        stored_path, stored_hash, status, response, created = row
        if stored_hash != digest or stored_path != method_path[:300]:
            raise ConflictError(
                f"Idempotency-Key {key!r} was already used for a different request ({stored_path}); use a new key"
                " for a new request", field="Idempotency-Key", record=key)
        if status is None:
            if now - datetime.fromisoformat(created) < STALE_AFTER:
                raise ConflictError(f"a request with Idempotency-Key {key!r} is still being processed; retry later",
                                    field="Idempotency-Key", record=key)
            uow.execute("UPDATE api_idempotency SET created_at = ? WHERE principal = ? AND key = ?",
                        (now.isoformat(), principal, key))
            return None
        return int(status), json.loads(response)


def stored_form(body: Any) -> Any:
    """The response as it is kept for replays: secrets redacted (and noted)."""
    from closeloop.app import redact, scrub

    redacted, found = redact(body)
    if not found:
        return body
    if isinstance(redacted, dict):
        redacted["replay_note"] = REPLAY_NOTE
    return scrub(redacted, found)  # a secret repeated under an innocent name too


def store(app: Any, principal: str, key: str, status: int, body: Any) -> None:
    body = stored_form(body)
    with app.unit_of_work() as uow:
        if status >= 500:
            uow.execute("DELETE FROM api_idempotency WHERE principal = ? AND key = ?", (principal, key))
        else:
            uow.execute("UPDATE api_idempotency SET status = ?, response = ? WHERE principal = ? AND key = ?",
                        (status, json.dumps(body, default=str), principal, key))


def release(app: Any, principal: str, key: str) -> None:
    with app.unit_of_work() as uow:
        uow.execute("DELETE FROM api_idempotency WHERE principal = ? AND key = ? AND status IS NULL",
                    (principal, key))
