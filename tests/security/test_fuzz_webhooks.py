"""Webhook endpoints under hostile input: Stripe-signed payment webhooks (provider.webhook, also over HTTP),
the HMAC-signed CRM webhook (closeloop and HubSpot v3 schemes), and the opportunity webhook.

An unsigned, wrongly signed, replayed or tampered delivery is refused as ``forbidden`` before its body is
read and writes nothing but the refusal's audit row; a signed but malformed body is refused as a
``validation_error`` (or its events one by one), never a crash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.collections.connectors import stripe
from closeloop.core.errors import CloseloopError
from closeloop.customers import webhook as crm_webhook
from tests.security import samples
from tests.security.conftest import FUZZ, Outcome, attempt, check_refusal, run_corpus, table_counts
from tests.security.corpus import inputs, json_variants
from tests.security.findings import known_crash

STRIPE_SECRET = "whsec_test_0123456789abcdef"
CRM_SECRET = "crm-webhook-secret-0123456789"

JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                              st.text(max_size=30)),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=5), max_leaves=25)


@pytest.fixture
def paid(app, us01):
    """A customer with an open invoice, the Stripe webhook secret configured, the clock at the event's time."""
    app.services.config["stripe_webhook_secret"] = STRIPE_SECRET
    app.do("customer.upsert", {"source": "crm", "external_id": "001A000001", "name": "Globex", "country": "US",
                               "region": "OR"})
    return app


def _now(app: Any) -> int:
    return int(app.clock.now().timestamp())


def stripe_delivery(app: Any, body: bytes, *, secret: str = STRIPE_SECRET, at: int | None = None) -> dict[str, Any]:
    return {"body": body.decode("utf-8", errors="surrogateescape"),
            "signature": stripe.sign(secret, body, _now(app) if at is None else at)}


# --------------------------------------------------------------------------- Stripe


def test_a_signed_stripe_event_is_applied_once(paid):
    body = json.dumps(samples.STRIPE_EVENT).encode()
    first = attempt(paid, "provider.webhook", stripe_delivery(paid, body))
    assert not first.refused, first.error
    again = attempt(paid, "provider.webhook", stripe_delivery(paid, body))
    assert again.result["duplicate"] is True


@pytest.mark.parametrize("signature", [
    None, "", "garbage", "t=,v1=", "v1=00", "t=abc,v1=00", "t=1,v1=" + "0" * 64, "t=99999999999999999999,v1=00",
    "t=-1,v1=00", "t=1e9,v1=00", "t=\x00,v1=\x00", "t=" + "9" * 5000 + ",v1=00", ",,,,", "t=1," + "v1=a," * 2000,
])
def test_unsigned_or_garbled_stripe_signatures_are_forbidden(paid, signature):
    body = json.dumps(samples.STRIPE_EVENT).encode()
    out = attempt(paid, "provider.webhook", {"body": body.decode(), "signature": signature})
    assert out.refused and str(out.error.code) == "forbidden", out


def test_tampered_replayed_or_foreign_stripe_deliveries_are_forbidden(paid):
    body = json.dumps(samples.STRIPE_EVENT).encode()
    good = stripe_delivery(paid, body)
    tampered = {**good, "body": good["body"].replace("15000", "1")}
    old = stripe_delivery(paid, body, at=_now(paid) - 3600)
    future = stripe_delivery(paid, body, at=_now(paid) + 3600)
    foreign = stripe_delivery(paid, body, secret="whsec_someone_else")
    for name, delivery in (("tampered", tampered), ("replayed", old), ("future", future), ("foreign", foreign)):
        out = attempt(paid, "provider.webhook", delivery, what=name)
        assert out.refused and str(out.error.code) == "forbidden", (name, out)


def test_no_secret_configured_refuses_everything(app, us01, monkeypatch):
    monkeypatch.delenv("CLOSELOOP_STRIPE_WEBHOOK_SECRET", raising=False)
    body = json.dumps(samples.STRIPE_EVENT).encode()
    out = attempt(app, "provider.webhook", {"body": body.decode(), "signature": stripe.sign("", body, _now(app))})
    assert out.refused and str(out.error.code) == "forbidden"


STRIPE_CASES = [(f"stripe:{name}", data) for name, data in json_variants(json.dumps(samples.STRIPE_EVENT).encode())]


def test_signed_malformed_stripe_bodies_are_refused_cleanly(paid):
    run_corpus(STRIPE_CASES, lambda case, data: attempt(paid, "provider.webhook", stripe_delivery(paid, data),
                                                        what=case, tolerate_known=True))


@FUZZ
@given(data=inputs(json.dumps(samples.STRIPE_EVENT).encode()))
def test_fuzzed_signed_stripe_bodies(paid, data):
    attempt(paid, "provider.webhook", stripe_delivery(paid, data), what=repr(data[:80]), tolerate_known=True)


@FUZZ
@given(event=st.fixed_dictionaries({"id": st.one_of(st.text(max_size=20), JSON), "type": st.one_of(
    st.sampled_from(stripe.HANDLED), JSON), "created": st.one_of(st.integers(0, 2**40), JSON),
    "data": st.one_of(st.fixed_dictionaries({"object": st.dictionaries(st.sampled_from(
        ["id", "amount", "amount_received", "currency", "metadata", "latest_charge", "charges", "refunds",
         "payment_intent", "status", "customer", "balance_transaction", "charge", "amount_refunded",
         "arrival_date", "amount_paid", "created"]), JSON, max_size=8)}), JSON)}))
def test_fuzzed_stripe_event_contents(paid, event):
    attempt(paid, "provider.event", {"event": event}, what=repr(event)[:200], tolerate_known=True)


def test_stripe_webhook_over_http_never_answers_500(paid, us01):
    from tests.api.conftest import make_server

    server = make_server(paid, {"collector": (["collections"], [])})
    client = server.client()
    body = json.dumps(samples.STRIPE_EVENT).encode()
    cases = [stripe_delivery(paid, body), {"body": body.decode(), "signature": "t=1,v1=00"},
             {"body": "{", "signature": stripe.sign(STRIPE_SECRET, b"{", _now(paid))}, {"body": 5}, {},
             {"body": "x" * 2_000_000, "signature": "t=1,v1=0"}]
    for payload in cases:
        response = client.post("/api/v1/commands/provider.webhook", json=payload, headers=server.headers("collector"))
        assert response.status_code < 500, (payload.get("signature"), response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["code"] in ("forbidden", "validation_error", "conflict", "not_found")
    raw = client.post("/api/v1/commands/provider.webhook", content=b"\xff\xfe{not json",
                      headers={**server.headers("collector"), "Content-Type": "application/json"})
    assert raw.status_code in (400, 413, 415, 422), raw.text[:300]


# --------------------------------------------------------------------------- CRM webhook


def crm_sign(body: bytes, now: int, secret: str = CRM_SECRET) -> dict[str, str]:
    return {"X-Closeloop-Signature": crm_webhook.sign(secret, body, now)}


def hubspot_sign(body: bytes, now: int, uri: str = "https://closeloop.example/crm", secret: str = CRM_SECRET
                 ) -> dict[str, str]:
    stamp = str(now * 1000)
    mac = hmac.new(secret.encode(), b"POST" + uri.encode() + body + stamp.encode(), hashlib.sha256).digest()
    return {"X-HubSpot-Signature-v3": base64.b64encode(mac).decode(), "X-HubSpot-Request-Timestamp": stamp}


def receive(app: Any, body: bytes, headers: dict[str, str], *, now: int | None = None, what: str = "") -> Any:
    """The CRM webhook: a refusal of the delivery writes nothing but its audit; each event stands alone."""
    now = int(time.time()) if now is None else now
    before = table_counts(app)
    try:
        results = crm_webhook.receive(app, body, headers, secret=CRM_SECRET, now=now,
                                      uri="https://closeloop.example/crm")
    except CloseloopError as err:
        check_refusal(err, what)
        after = table_counts(app)
        assert {t for t in before if before[t] != after[t]} <= {"audit_log", "auth_event"}, what
        return err
    except Exception as exc:  # noqa: BLE001
        if known_crash(exc):
            return exc
        pytest.fail(f"{what}: the CRM webhook crashed with {type(exc).__name__}: {str(exc)[:300]}")
    for r in results:
        assert r.get("status") in ("applied", "refused") or r.get("duplicate"), (what, r)
        if r.get("status") == "refused":
            assert r["error"] != "internal_error", (what, r)
    return results


def test_a_signed_crm_event_is_applied_and_a_redelivery_changes_nothing(app):
    now = int(time.time())
    body = json.dumps(samples.CRM_EVENT).encode()
    (first,) = receive(app, body, crm_sign(body, now))
    assert first["status"] == "applied"
    (again,) = receive(app, body, crm_sign(body, now))
    assert again["duplicate"] is True
    (hub,) = receive(app, body, hubspot_sign(body, now))
    assert hub["duplicate"] is True


@pytest.mark.parametrize("headers", [
    {}, {"X-Closeloop-Signature": ""}, {"X-Closeloop-Signature": "t=1"}, {"X-Closeloop-Signature": "v1=00"},
    {"X-Closeloop-Signature": "t=abc,v1=00"}, {"X-Closeloop-Signature": "t=" + "9" * 5000 + ",v1=0"},
    {"x-closeloop-signature": "t=1,v1=" + "0" * 64}, {"X-HubSpot-Signature-v3": "AAAA"},
    {"X-HubSpot-Signature-v3": "AAAA", "X-HubSpot-Request-Timestamp": "nan"},
    {"X-HubSpot-Signature-v3": "\x00", "X-HubSpot-Request-Timestamp": "1" * 400},
])
def test_unsigned_or_garbled_crm_deliveries_are_forbidden(app, headers):
    body = json.dumps(samples.CRM_EVENT).encode()
    err = receive(app, body, headers, what=str(headers)[:60])
    assert isinstance(err, CloseloopError) and str(err.code) == "forbidden"


def test_tampered_replayed_or_foreign_crm_deliveries_are_forbidden(app):
    now = int(time.time())
    body = json.dumps(samples.CRM_EVENT).encode()
    for name, (data, headers, at) in {
        "tampered": (body.replace(b"Globex", b"Evil Corp"), crm_sign(body, now), now),
        "replayed": (body, crm_sign(body, now - 3600), now),
        "foreign": (body, crm_sign(body, now, secret="someone-else"), now),
        "hubspot_tampered": (body.replace(b"Globex", b"Evil"), hubspot_sign(body, now), now),
        "hubspot_other_uri": (body, hubspot_sign(body, now, uri="https://evil.example/"), now),
    }.items():
        err = receive(app, data, headers, now=at, what=name)
        assert isinstance(err, CloseloopError) and str(err.code) == "forbidden", (name, err)


CRM_CASES = [(f"crm:{name}", data) for name, data in json_variants(json.dumps(samples.CRM_EVENT).encode())]


def test_signed_malformed_crm_bodies_are_refused_cleanly(app):
    def run(case: str, data: bytes) -> Outcome:
        now = int(time.time())
        out = receive(app, data, crm_sign(data, now), now=now, what=case)
        if isinstance(out, Exception) and not isinstance(out, CloseloopError):
            return Outcome(known=known_crash(out))
        return Outcome(result={"results": out})

    run_corpus(CRM_CASES, run)


@FUZZ
@given(data=inputs(json.dumps([samples.CRM_EVENT, {**samples.CRM_EVENT, "id": "crm-evt-2"}]).encode()))
def test_fuzzed_signed_crm_bodies(app, data):
    now = int(time.time())
    receive(app, data, crm_sign(data, now), now=now, what=repr(data[:80]))


@FUZZ
@given(event=st.fixed_dictionaries(
    {"id": st.one_of(st.text(min_size=1, max_size=20), JSON), "type": st.one_of(st.sampled_from(
        crm_webhook.EVENT_TYPES), JSON), "source": st.one_of(st.just("crm"), JSON),
     "data": st.one_of(st.dictionaries(st.sampled_from(["external_id", "name", "country", "region", "tax_id",
                                                        "parent", "email", "currency", "status", "survivor",
                                                        "payment_terms_days", "address", "unknown"]), JSON,
                                       max_size=6), JSON)}))
def test_fuzzed_crm_event_contents(app, event):
    attempt(app, "crm.event", {"event": event}, what=repr(event)[:200], tolerate_known=True, source="crm")


# --------------------------------------------------------------------------- opportunity webhook


@FUZZ
@given(body=st.one_of(JSON, st.dictionaries(st.sampled_from(
    ["Id", "AccountId", "StageName", "CloseDate", "CurrencyIsoCode", "Name", "Amount", "OpportunityLineItems",
     "Opportunity", "attributes"]), JSON, max_size=8)))
def test_fuzzed_opportunity_webhook(app, body):
    if not isinstance(body, dict):
        body = {"Opportunity": body}
    attempt(app, "opportunity.webhook", {"body": body}, what=repr(body)[:200], tolerate_known=True,
            source="crm")
