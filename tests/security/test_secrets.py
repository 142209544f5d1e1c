"""Secrets are never logged and never stored in clear: API keys, session tokens and passwords (hashed), the
Stripe and CRM webhook secrets (configuration only), outbound webhook signing secrets.

"Logged" covers every place a secret could be written: the audit log (command payloads and results),
the outbox (event payloads), the exception queue, authentication events, any other table, and the log
records and console output of the process."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from closeloop.auth.users import add_user, create_key, create_session, sha256, verify_password
from closeloop.collections.connectors import stripe
from closeloop.customers import webhook as crm_webhook
from tests.security import samples


def dump(app: Any) -> str:
    """Every row of every table as text."""
    from closeloop.core.db import metadata

    parts = []
    with app.unit_of_work(write=False) as uow:
        for table in metadata.sorted_tables:
            for row in uow.all(f'SELECT * FROM "{table.name}"'):
                parts.append(f"{table.name}: " + " | ".join(str(v) for v in row))
    return "\n".join(parts)


def where(app: Any, secret: str) -> list[str]:
    return [line[:160] for line in dump(app).splitlines() if secret in line]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def logged(logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], secret: str) -> list[str]:
    captured = capsys.readouterr()
    texts = [r.getMessage() + " " + str(r.exc_info or "") for r in logs.records] + [captured.out, captured.err]
    return [t[:160] for t in texts if secret in t]


def test_api_keys_are_stored_hashed_and_never_logged(app, us01, logs, capsys):
    from fastapi.testclient import TestClient

    from closeloop.api.server import create_server

    with app.unit_of_work() as uow:
        add_user(uow, "keyholder", ["controller"])
        key = create_key(uow, "keyholder", label="ci")
    client = TestClient(create_server(app=app), raise_server_exceptions=False)
    good = client.get("/api/v1/queries/trial_balance", params={"entity": "US01"}, headers={"X-API-Key": key})
    assert good.status_code == 200
    wrong = key[:-4] + "AAAA"
    for headers in ({"X-API-Key": wrong}, {"X-API-Key": key + "x"}, {"Authorization": f"Bearer {wrong}"}):
        denied = client.get("/api/v1/queries/trial_balance", params={"entity": "US01"}, headers=headers)
        assert denied.status_code in (401, 403)
        assert wrong not in denied.text and key not in denied.text
    client.post("/api/v1/commands/journal.post", json={"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "1.00"}, {"account": "4000", "credit": "1.00"}]}, headers={"X-API-Key": key})
    secret_part = key.split("_", 2)[2]
    assert where(app, secret_part) == [] and where(app, wrong.split("_", 2)[2]) == []
    assert sha256(key) in dump(app)  # what is stored is the digest
    assert logged(logs, capsys, secret_part) == []


def test_passwords_and_session_tokens_are_stored_hashed(app):
    password = "Correct-Horse-Battery-42"
    with app.unit_of_work() as uow:
        user = add_user(uow, "pw_user", ["read_only"], password=password)
        token, csrf = create_session(uow, user)
    with app.unit_of_work() as uow:
        assert verify_password(uow, "pw_user", password) is not None
        assert verify_password(uow, "pw_user", "wrong-password-99") is None
        stored = uow.scalar("SELECT password_hash FROM auth_user WHERE name = 'pw_user'")
    assert stored.startswith("$argon2id$")
    assert where(app, password) == [] and where(app, token) == []
    assert where(app, "wrong-password-99") == []


def test_the_stripe_webhook_secret_is_never_written(app, us01, logs, capsys):
    secret = "whsec_stripe_0123456789abcdefghij"
    app.services.config["stripe_webhook_secret"] = secret
    now = int(app.clock.now().timestamp())
    body = json.dumps(samples.STRIPE_EVENT).encode()
    app.do("customer.upsert", {"source": "crm", "external_id": "001A000001", "name": "Globex", "country": "US",
                               "region": "OR"})
    app.do("provider.webhook", {"body": body.decode(), "signature": stripe.sign(secret, body, now)})
    for signature in ("t=1,v1=00", stripe.sign(secret, body, now - 7200), stripe.sign(secret, body + b" ", now)):
        with pytest.raises(Exception):  # noqa: B017 - forbidden; the point here is what is written
            app.do("provider.webhook", {"body": body.decode(), "signature": signature})
    assert where(app, secret) == []
    assert logged(logs, capsys, secret) == []


def test_the_crm_webhook_secret_is_never_written(app, logs, capsys):
    secret = "crm-secret-0123456789abcdefghij"
    now = int(time.time())
    body = json.dumps(samples.CRM_EVENT).encode()
    crm_webhook.receive(app, body, {"X-Closeloop-Signature": crm_webhook.sign(secret, body, now)}, secret=secret,
                        now=now)
    with pytest.raises(Exception):  # noqa: B017
        crm_webhook.receive(app, body, {"X-Closeloop-Signature": "t=1,v1=00"}, secret=secret, now=now)
    assert where(app, secret) == []
    assert logged(logs, capsys, secret) == []


def test_outbound_webhook_deliveries_carry_signatures_not_the_secret(app, us01):
    secret = "outbound-secret-0123456789abcdef"
    app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"],
                                 "secret": secret})
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    listed = app.query("webhooks", {})
    assert secret not in json.dumps(listed)
    with app.unit_of_work(write=False) as uow:
        deliveries = uow.all("SELECT * FROM webhook_delivery")
    assert deliveries and secret not in " ".join(str(r) for r in deliveries)


@pytest.mark.xfail(strict=True, reason="integration: webhook.subscribe's payload, secret included, is written to"
                   " the audit log (audit_log.payload), readable by every role the audit query allows")
def test_outbound_webhook_secret_is_not_in_the_audit_log(app):
    secret = "outbound-secret-0123456789abcdef"
    app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"],
                                 "secret": secret})
    audit = app.query("audit", {"command": "webhook.subscribe"})
    assert secret not in json.dumps(audit)
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM audit_log WHERE payload LIKE ?", (f"%{secret}%",)) == 0


@pytest.mark.xfail(strict=True, reason="integration: outbound webhook signing secrets are stored in clear"
                   " (webhook_subscription.secret); they must be recoverable to sign, so they need encryption at"
                   " rest with a key kept outside the database (e.g. CLOSELOOP_SECRET_KEY)")
def test_outbound_webhook_secret_is_not_stored_in_clear(app):
    secret = "outbound-secret-0123456789abcdef"
    app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"],
                                 "secret": secret})
    with app.unit_of_work(write=False) as uow:
        raw = uow.scalar("SELECT secret FROM webhook_subscription WHERE name = 'erp'")
    assert raw != secret and secret not in dump(app)


@pytest.mark.xfail(strict=True, reason="api: a POST with an Idempotency-Key stores its whole response; for"
                   " webhook.subscribe that is the signing secret, kept in clear in api_idempotency.response")
def test_idempotent_replay_store_keeps_no_secret(app, us01):
    from fastapi.testclient import TestClient

    from closeloop.api.server import create_server

    with app.unit_of_work() as uow:
        add_user(uow, "ops", ["admin"])
        key = create_key(uow, "ops")
    client = TestClient(create_server(app=app), raise_server_exceptions=False)
    response = client.post("/api/v1/commands/webhook.subscribe",
                           json={"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"]},
                           headers={"X-API-Key": key, "Idempotency-Key": "subscribe-1"})
    assert response.status_code == 200, response.text
    secret = response.json()["secret"]
    with app.unit_of_work(write=False) as uow:
        stored = " ".join(str(r) for r in uow.all("SELECT * FROM api_idempotency"))
    assert secret not in stored
