"""Secrets are never logged and never stored in clear: API keys, session tokens and passwords (hashed), the
Stripe and CRM webhook secrets (configuration only), outbound webhook signing secrets (encrypted with the
secret key, shown once, redacted from the audit log and the API's replay store; deliveries are still signed
so that they verify with the original secret).

"Logged" covers every place a secret could be written: the audit log (command payloads and results),
the outbox (event payloads), the exception queue, authentication events, any other table, and the log
records and console output of the process."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from closeloop.auth.users import add_user, create_key, create_session, sha256, verify_password
from closeloop.collections.connectors import stripe
from closeloop.core.errors import CloseloopError
from closeloop.customers import webhook as crm_webhook
from closeloop.integration import secret_box
from closeloop.integration.webhooks import Outcome, WebhookSender, verify_signature
from closeloop.integration.worker import uow_factory
from tests.conftest import TEST_DATABASE
from tests.integration.test_webhooks_delivery import secret_key_on_postgresql  # noqa: F401 - autouse
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


def test_outbound_webhook_secret_is_not_in_the_audit_log(app):
    secret = "outbound-secret-0123456789abcdef"
    result = app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook",
                                          "event_types": ["period.closed"], "secret": secret})
    assert result["secret"] == secret  # shown once, to the caller
    app.do("webhook.rotate_secret", {"name": "erp", "secret": secret[::-1]})
    # refusals are audited with their payload and error: redacted too
    for bad in ({"name": "erp2", "secret": secret + "x" * 300},  # too long
                {"name": "erp", "secret": secret + "-again"},  # a conflict
                {"name": "erp3", "secret": secret + "-3", "nonsense": 1}):  # an unknown field
        with pytest.raises(Exception):  # noqa: B017 - refused; the point is what is written
            app.do("webhook.subscribe", {"url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"], **bad})
    audit = app.query("audit", {"command": "webhook.subscribe"})
    assert len(audit["items"]) == 4 and secret not in json.dumps(audit)
    assert all(item["payload"]["secret"] == "[redacted]" for item in audit["items"])
    with app.unit_of_work(write=False) as uow:
        for part in (secret, secret[::-1], secret[4:20]):
            assert uow.scalar("SELECT COUNT(*) FROM audit_log WHERE payload LIKE ? OR result LIKE ?",
                              (f"%{part}%", f"%{part}%")) == 0
    assert where(app, secret) == [] and where(app, secret[::-1]) == []


def test_a_secret_that_looks_like_json_or_repeats_elsewhere_is_scrubbed_and_the_record_stays_valid(app):
    secret = 'abc", "x": "0123456789abcdef\\'
    with pytest.raises(CloseloopError):  # the URL repeats the secret and is refused, naming it
        app.do("webhook.subscribe", {"name": "erp", "url": "ftp://" + secret, "event_types": ["*"], "secret": secret})
    app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/" + secret, "event_types": ["*"],
                                 "secret": secret})
    items = app.query("audit", {"command": "webhook.subscribe"})["items"]
    assert len(items) == 2 and secret not in json.dumps(items) and "0123456789abcdef" not in json.dumps(items)
    assert [i["payload"]["url"] for i in items] == ["ftp://[redacted]", "http://127.0.0.1:9/[redacted]"]
    assert [line for line in where(app, "0123456789abcdef") if not line.startswith("webhook_subscription:")] == []


def test_outbound_webhook_secret_is_not_stored_in_clear_and_deliveries_verify(app, us01, logs, capsys):
    secret = "outbound-secret-0123456789abcdef"
    app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"],
                                 "secret": secret})
    with app.unit_of_work(write=False) as uow:
        raw = uow.scalar("SELECT secret FROM webhook_subscription WHERE name = 'erp'")
    assert raw != secret and raw.startswith("fernet:") and secret not in dump(app)
    [item] = app.query("webhooks", {})["items"]
    assert item["secret"] == "****cdef"  # queries show a masked form
    app.do("period.close", {"entity": "US01", "period": "2026-01"})
    sent = deliver(app)
    assert len(sent) == 1
    body, headers = sent[0]
    assert verify_signature(secret, body, headers["X-Closeloop-Signature"])  # signed with the original secret
    assert not verify_signature(raw, body, headers["X-Closeloop-Signature"])
    assert logged(logs, capsys, secret) == []


def test_idempotent_replay_store_keeps_no_secret(app, us01):
    from fastapi.testclient import TestClient

    from closeloop.api.server import create_server

    with app.unit_of_work() as uow:
        add_user(uow, "ops", ["admin"])
        key = create_key(uow, "ops")
    client = TestClient(create_server(app=app), raise_server_exceptions=False)
    request = {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["period.closed"]}
    headers = {"X-API-Key": key, "Idempotency-Key": "subscribe-1"}
    response = client.post("/api/v1/commands/webhook.subscribe", json=request, headers=headers)
    assert response.status_code == 200, response.text
    secret = response.json()["secret"]
    assert len(secret) == 64 and "replay_note" not in response.json()
    with app.unit_of_work(write=False) as uow:
        stored = " ".join(str(r) for r in uow.all("SELECT * FROM api_idempotency"))
    assert secret not in stored and "[redacted]" in stored
    replay = client.post("/api/v1/commands/webhook.subscribe", json=request, headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["secret"] == "[redacted]" and "webhook.rotate_secret" in replay.json()["replay_note"]
    assert {k: v for k, v in replay.json().items() if k not in ("secret", "replay_note")} == {
        k: v for k, v in response.json().items() if k != "secret"}
    # the same key with another request is still a conflict
    other = client.post("/api/v1/commands/webhook.subscribe", json={**request, "name": "erp2"}, headers=headers)
    assert other.status_code == 409
    # a caller-chosen secret: neither the response nor the request is kept in clear
    chosen = "chosen-secret-0123456789abcdefgh"
    response = client.post("/api/v1/commands/webhook.subscribe", json={**request, "name": "erp3", "secret": chosen},
                           headers={"X-API-Key": key, "Idempotency-Key": "subscribe-3"})
    assert response.status_code == 200 and response.json()["secret"] == chosen
    assert where(app, chosen) == [] and where(app, secret) == []


# --------------------------------------------------------------------------- the secret key


def deliver(app: Any) -> list[tuple[bytes, dict[str, str]]]:
    """Send due webhook deliveries to a recorder (status 200); returns (body, headers) per request."""
    sent: list[tuple[bytes, dict[str, str]]] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
        sent.append((body, headers))
        return Outcome(200, None, 1)

    WebhookSender(uow_factory(app), worker_id="test", post=post).run()
    return sent


def failures(app: Any) -> list[str]:
    sent: list[Any] = []
    WebhookSender(uow_factory(app), worker_id="test", post=lambda *a: sent.append(a) or Outcome(200, None, 1)).run()
    assert sent == []
    return [d["last_error"] for d in app.query("webhook_deliveries", {"status": "pending"})["items"]]


@pytest.mark.skipif(TEST_DATABASE is not None, reason="the key file beside the database is SQLite's")
def test_sqlite_key_file_is_created_beside_the_database_with_mode_0600(app, monkeypatch):
    monkeypatch.delenv(secret_box.ENV_KEY, raising=False)
    monkeypatch.delenv(secret_box.ENV_KEY_FILE, raising=False)
    with app.unit_of_work(write=False) as uow:
        path = secret_box.sqlite_file(uow) + ".key"
    assert not os.path.exists(path)
    app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["probe.pinged"],
                                 "secret": "outbound-secret-0123456789abcdef"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keys = [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    assert len(keys) == 1 and Fernet(keys[0])  # a valid key
    app.do("probe.emit", {"probe": "p"})
    [(body, headers)] = deliver(app)
    assert verify_signature("outbound-secret-0123456789abcdef", body, headers["X-Closeloop-Signature"])
    # the key file lost: the delivery fails (retried, then a sync_failed exception), it does not crash the sender
    os.rename(path, path + ".lost")
    app.do("probe.emit", {"probe": "p"})
    [error] = failures(app)
    assert "cannot sign" in error and "does not exist" in error and not os.path.exists(path)


def test_without_a_key_on_postgresql_subscribing_is_refused(app, monkeypatch):
    monkeypatch.delenv(secret_box.ENV_KEY, raising=False)
    monkeypatch.delenv(secret_box.ENV_KEY_FILE, raising=False)
    assert secret_box.key_source({}, is_sqlite=False) is None
    with pytest.raises(secret_box.SecretKeyError) as err:
        secret_box.keyring(None)
    assert secret_box.ENV_KEY in err.value.message and err.value.code == "validation_error"
    if TEST_DATABASE is None:
        return
    with pytest.raises(CloseloopError) as refused:
        app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["*"],
                                     "secret": "outbound-secret-0123456789abcdef"})
    assert refused.value.details["field"] == secret_box.ENV_KEY
    assert where(app, "outbound-secret-0123456789abcdef") == []


def test_a_malformed_key_is_named(app):
    app.services.config["secret_key"] = "not-a-key"
    with pytest.raises(CloseloopError) as err:
        app.do("webhook.subscribe", {"name": "erp", "url": "http://127.0.0.1:9/hook", "event_types": ["*"]})
    assert "not a Fernet key" in err.value.message and "not-a-key" not in err.value.message


def test_key_rotation_and_plain_text_rows_of_older_versions(app, monkeypatch, tmp_path):
    old, new = secret_box.generate_key(), secret_box.generate_key()
    key_file = tmp_path / "keys"
    key_file.write_text(old + "\n")
    monkeypatch.delenv(secret_box.ENV_KEY, raising=False)
    monkeypatch.setenv(secret_box.ENV_KEY_FILE, str(key_file))
    first, legacy = "first-secret-0123456789abcdef", "legacy-secret-0123456789abcdef"
    app.do("webhook.subscribe", {"name": "a", "url": "http://127.0.0.1:9/a", "event_types": ["probe.pinged"],
                                 "secret": first})
    app.do("webhook.subscribe", {"name": "b", "url": "http://127.0.0.1:9/b", "event_types": ["probe.pinged"]})
    with app.unit_of_work() as uow:  # a row as versions before encryption wrote it
        uow.execute("UPDATE webhook_subscription SET secret = ?, secret_hint = NULL WHERE name = 'b'", (legacy,))
    assert deliver_all(app, {"a": first, "b": legacy}) == {"a": 1, "b": 1}

    # rotate: the new key first, the old one kept to decrypt; reseal; then the old key can go
    key_file.write_text(f"{new}\n{old}\n")
    result = app.do("webhook.reseal", {})
    assert (result["resealed"], result["were_plain_text"]) == (2, 1) and str(key_file) in result["key"]
    key_file.write_text(new + "\n")
    with app.unit_of_work(write=False) as uow:
        stored = dict(uow.all("SELECT name, secret FROM webhook_subscription"))
    assert all(v.startswith("fernet:") for v in stored.values()) and legacy not in dump(app)
    assert Fernet(new).decrypt(stored["b"][len("fernet:"):].encode()).decode() == legacy
    assert [i["secret"] for i in app.query("webhooks", {})["items"]] == ["****cdef", "****cdef"]
    assert deliver_all(app, {"a": first, "b": legacy}) == {"a": 1, "b": 1}

    # a key that is not the one the secrets were encrypted with: deliveries fail and say why
    key_file.write_text(old + "\n")
    app.do("probe.emit", {"probe": "p"})
    errors = failures(app)
    assert len(errors) == 2 and all("another key" in e for e in errors)
    assert all(first not in e and legacy not in e for e in errors)


def deliver_all(app: Any, secrets: dict[str, str]) -> dict[str, int]:
    """Emit a probe event, deliver it, and count the signatures that verify per subscription's secret."""
    app.do("probe.emit", {"probe": "p"})
    counts = dict.fromkeys(secrets, 0)
    for body, headers in deliver(app):
        for name, secret in secrets.items():
            if verify_signature(secret, body, headers["X-Closeloop-Signature"]):
                counts[name] += 1
    return counts


def test_the_migration_encrypts_existing_plain_text_secrets(db_url, monkeypatch):
    from alembic import command

    from closeloop.core.db import alembic_config, create_engine

    if TEST_DATABASE is not None:
        monkeypatch.setenv(secret_box.ENV_KEY, secret_box.generate_key())
    engine = create_engine(db_url)
    try:
        cfg = alembic_config(engine)
        command.downgrade(cfg, "integration_0001")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO webhook_subscription (name, url, secret, event_types, active, created_at, created_by)"
                " VALUES ('old', 'http://127.0.0.1:9/h', 'plain-secret-0123456789abcdef', '[\"*\"]', true,"
                " '2026-01-01T00:00:00Z', 'tester')")
        command.upgrade(cfg, "heads")
        with engine.connect() as conn:
            stored, hint = conn.exec_driver_sql("SELECT secret, secret_hint FROM webhook_subscription").one()
            source = secret_box.key_source(None, is_sqlite=engine.dialect.name == "sqlite",
                                           database_file=secret_box.sqlite_file(conn)
                                           if engine.dialect.name == "sqlite" else "")
        assert stored.startswith("fernet:") and hint == "cdef"
        assert secret_box.unseal_with(secret_box.keyring(source), stored) == "plain-secret-0123456789abcdef"
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the audit log's redaction


def test_redaction_declared_fields_and_the_name_safety_net():
    from closeloop.app import audit_payload, declared_secrets, redact
    from closeloop.core import registry

    op = registry.get("webhook.subscribe", "command")
    assert declared_secrets(op.input) == {"secret"}
    assert declared_secrets(registry.get("webhook.rotate_secret", "command").input) == {"secret"}
    assert declared_secrets(registry.get("journal.post", "command").input) == frozenset()
    value, found = redact({"name": "x", "secret": None, "config": {"client_secret": "abcdefgh12345678",
                                                                   "items": [{"API-Key": "k" * 20, "n": 1}]},
                           "password": "", "csrf_token": "t" * 20, "tokens_used": 5})
    assert value == {"name": "x", "secret": None, "config": {"client_secret": "[redacted]",
                                                            "items": [{"API-Key": "[redacted]", "n": 1}]},
                     "password": "", "csrf_token": "[redacted]", "tokens_used": 5}
    assert sorted(found) == sorted(["abcdefgh12345678", "k" * 20, "t" * 20])
    # a declared field is redacted whatever its name; its value is scrubbed wherever else it appears
    text, found = audit_payload(op, {"name": "x", "secret": 'quote"and\\slash-0123', "url": 'quote"and\\slash-0123'})
    assert found == ['quote"and\\slash-0123'] and "slash" not in text
    # nothing secret-looking: the payload is written as it is
    text, found = audit_payload(registry.get("journal.post", "command"), {"entity": "US01", "memo": "m"})
    assert (json.loads(text), found) == ({"entity": "US01", "memo": "m"}, [])
