"""Inbound webhooks over HTTP: authenticated by their signatures, idempotent, refusing forgeries."""

from __future__ import annotations

import json
import time
from datetime import date

from closeloop.collections.connectors.stripe import sign as stripe_sign
from closeloop.customers.webhook import sign as crm_sign
from tests.api.conftest import make_server
from tests.integration.collections_helpers import company
from tests.integration.test_collections_provider import SECRET, envelope, sample
from tests.unit.test_collections_connectors import needs_samples


def test_crm_webhook_applies_signed_events_once_and_refuses_forgeries(app):
    server = make_server(app)
    app.services.config["crm_webhook_secret"] = "crm-secret"
    client = server.client()
    event = {"id": "evt-crm-1", "type": "account.upserted", "source": "crm",
             "data": {"external_id": "SF-900", "name": "Webhook Corp", "country": "DE"}}
    raw = json.dumps(event).encode()
    signed = {"X-Closeloop-Signature": crm_sign("crm-secret", raw, int(time.time())),
              "Content-Type": "application/json"}
    first = client.post("/api/v1/webhooks/crm", content=raw, headers=signed)
    assert first.status_code == 200, first.text
    assert app.query("customer", {"external_id": "SF-900"})["name"] == "Webhook Corp"
    again = client.post("/api/v1/webhooks/crm", content=raw, headers=signed)
    assert again.status_code == 200 and app.query("customers", {})["count"] == 1
    forged = client.post("/api/v1/webhooks/crm", content=raw.replace(b"Webhook Corp", b"Evil Corp"),
                         headers=signed)
    assert forged.status_code == 403 and forged.json()["code"] == "forbidden"
    unsigned = client.post("/api/v1/webhooks/crm", content=raw, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 403
    assert app.query("customer", {"external_id": "SF-900"})["name"] == "Webhook Corp"


@needs_samples
def test_payment_webhook_over_http(app, clock):
    app.services.config["stripe_webhook_secret"] = SECRET
    invoices = company(app, clock, {"SF-1": "20.00"})
    app.do("payer.link", {"account": "cus_6lsBvm5rJ0zyHc", "customer": "SF-1"})
    clock.set(date(2026, 1, 10))
    server = make_server(app)
    client = server.client()
    raw = json.dumps(envelope("evt_http_1", "payment_intent.succeeded",
                              sample("dj-stripe-payment_intent_pi_fakefakefakefakefake0001.json"))).encode()
    header = stripe_sign(SECRET, raw, int(clock.now().timestamp()))
    ok = client.post("/api/v1/webhooks/payments", content=raw,
                     headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "applied"
    assert app.query("invoice", {"number": invoices["SF-1"]})["status"] == "paid"
    bad = client.post("/api/v1/webhooks/payments", content=raw,
                      headers={"Stripe-Signature": stripe_sign("whsec_wrong", raw, int(clock.now().timestamp())),
                               "Content-Type": "application/json"})
    assert bad.status_code == 403 and bad.json()["code"] == "forbidden"
    assert app.query("payments", {})["count"] == 1
