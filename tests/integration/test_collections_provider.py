"""Stripe-shaped provider webhooks: signatures, idempotency, out-of-order delivery, refunds, disputes, payouts.

The event objects are the shared third-party samples (shared/samples/stripe) wrapped in Stripe's envelope."""

from __future__ import annotations

import json
from datetime import date

import pytest

from closeloop.collections.connectors.camt import write_camt053
from closeloop.collections.connectors.stripe import map_event, sign
from closeloop.core.errors import CloseloopError
from tests.integration.collections_helpers import balance, company, events
from tests.integration.test_billing_service import check_payload
from tests.unit.test_collections_connectors import SAMPLES, needs_samples

SECRET = "whsec_test_secret"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / "stripe" / name).read_text())


def envelope(event_id: str, kind: str, obj: dict, created: int = 1767268800) -> dict:
    return {"id": event_id, "object": "event", "api_version": "2024-06-20", "created": created, "livemode": False,
            "type": kind, "data": {"object": obj}}


def deliver(app, clock, event: dict, *, secret: str = SECRET, skew: int = 0, tamper: bool = False) -> dict:
    body = json.dumps(event).encode()
    now = int(clock.now().timestamp()) + skew
    header = sign(secret, body, now)
    if tamper:
        body = body.replace(b'"livemode": false', b'"livemode": true')
    return app.do("provider.webhook", {"body": body.decode(), "signature": header})


@pytest.fixture
def shop(app, clock):
    app.services.config["stripe_webhook_secret"] = SECRET
    inv = company(app, clock, {"SF-1": "20.00", "SF-2": "15.00", "SF-3": "1.00"})
    app.do("payer.link", {"account": "cus_6lsBvm5rJ0zyHc", "customer": "SF-1"})
    app.do("payer.link", {"account": "cus_0dUMWLtzCTagWs", "customer": "SF-2"})
    clock.set(date(2026, 1, 10))
    return inv


@needs_samples
def test_sample_objects_map_to_actions():
    pi = map_event(envelope("evt_1", "payment_intent.succeeded",
                            sample("dj-stripe-payment_intent_pi_fakefakefakefakefake0001.json")))
    assert (pi.kind, pi.amount, pi.currency, pi.payment_ref, pi.charge, pi.customer_ref) == (
        "receipt", 2000, "USD", "pi_fakefakefakefakefake0001", "ch_fakefakefakefakefake0001", "cus_6lsBvm5rJ0zyHc")
    failed = map_event(envelope("evt_2", "payment_intent.payment_failed",
                                sample("stripe-openapi-fixtures3-payment_intent.json")))
    assert (failed.kind, failed.amount, failed.payment_ref) == ("failure", 1099, "pi_1PgafyB7WZ01zgkWSjxsAJo3")
    refund = map_event({"id": "evt_3", "type": "charge.refunded", **{"data": sample("pay-charge.refunded.json")}})
    assert (refund.kind, refund.refunds, refund.amount_refunded) == (
        "refund", (("re_3LQOJoKXBGcbgpbZ10i9Mg75", 500),), 500)
    dispute = map_event(envelope("evt_4", "charge.dispute.created", sample("dj-stripe-dispute_dp_fakefakefakefake01.json")))
    assert (dispute.kind, dispute.amount, dispute.reason, dispute.charge) == (
        "dispute_opened", 1000, "fraudulent", "ch_fakefakefakefakefake0001")
    payout = map_event(envelope("evt_5", "payout.paid", sample("stripe-openapi-fixtures3-payout.json")))
    assert (payout.kind, payout.amount, payout.object_id, payout.date) == (
        "payout", 1100, "po_1Pgc79B7WZ01zgkWu1KToYf4", "2009-02-13")
    plan = map_event(sample("stripe-openapi-fixtures3-event.json"))
    assert plan.kind == "ignored" and plan.event_type == "plan.created"
    failed_invoice = map_event({"id": "evt_6", "type": "invoice.payment_failed",
                                "data": sample("pay-invoice.payment_failed.json")})
    assert (failed_invoice.kind, failed_invoice.amount) == ("failure", 24900)


@needs_samples
def test_signed_payment_is_applied_once(app, clock, shop):
    event = envelope("evt_pi_1", "payment_intent.succeeded",
                     sample("dj-stripe-payment_intent_pi_fakefakefakefakefake0001.json"))
    out = deliver(app, clock, event)
    assert out["status"] == "applied" and out["customer"] == "SF-1" and out["reason"] == "exact_amount"
    assert app.query("invoice", {"number": shop["SF-1"]})["status"] == "paid"
    (received,) = events(app, "payment.received")
    check_payload("payment.received", received)
    assert received["channel"] == "provider" and received["amount"] == "20.00"
    assert balance(app, "payment_clearing") == "20.00" and balance(app, "cash") == "0.00"
    again = deliver(app, clock, event)
    assert again["duplicate"] is True and app.query("payments", {})["count"] == 1
    changed = json.loads(json.dumps(event))
    changed["data"]["object"]["amount_received"] = 1
    with pytest.raises(CloseloopError) as err:
        deliver(app, clock, changed)
    assert err.value.code == "conflict"


@needs_samples
@pytest.mark.parametrize("problem", ["tampered", "stale", "wrong_secret", "no_signature"])
def test_bad_signatures_are_refused_logged_and_change_nothing(app, clock, shop, problem):
    event = envelope("evt_bad", "payment_intent.succeeded",
                     sample("dj-stripe-payment_intent_pi_fakefakefakefakefake0001.json"))
    with pytest.raises(CloseloopError) as err:
        if problem == "tampered":
            deliver(app, clock, event, tamper=True)
        elif problem == "stale":
            deliver(app, clock, event, skew=-3600)
        elif problem == "wrong_secret":
            deliver(app, clock, event, secret="whsec_other")
        else:
            app.do("provider.webhook", {"body": json.dumps(event)})
    assert err.value.code == "forbidden"
    assert app.query("payments", {})["count"] == 0
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM collections_provider_event") == 0
        outcome = uow.scalar("SELECT outcome FROM audit_log WHERE command = 'provider.webhook' ORDER BY id DESC")
    assert outcome == "forbidden"


@needs_samples
def test_refund_before_its_payment_waits_then_applies(app, clock, shop):
    data = sample("pay-charge.refunded.json")
    refund = {"id": "evt_refund_1", "object": "event", "created": 1767268900, "type": "charge.refunded", "data": data}
    waiting = app.do("provider.event", {"event": refund})
    assert waiting["status"] == "waiting" and app.query("payments", {})["count"] == 0
    pi = {"id": "pm_1234", "object": "payment_intent", "amount": 1500, "amount_received": 1500, "currency": "usd",
          "customer": "cus_0dUMWLtzCTagWs", "latest_charge": "ch_chargeid", "metadata": {}, "created": 1767268000}
    out = app.do("provider.event", {"event": envelope("evt_pi_2", "payment_intent.succeeded", pi)})
    assert out["status"] == "applied" and out["woken"] == [
        {"id": "evt_refund_1", "type": "charge.refunded", "status": "applied"}]
    view = app.query("invoice", {"number": shop["SF-2"]})
    assert (view["balance"], view["status"]) == ("5.00", "partially_paid")
    (ev,) = events(app, "payment.refunded")
    check_payload("payment.refunded", ev)
    assert (ev["amount"], ev["channel"]) == ("5.00", "provider")
    assert balance(app, "payment_clearing") == "10.00" and balance(app, "accounts_receivable") == "26.00"
    # the same refund again (another event id) is not applied twice
    again = app.do("provider.event", {"event": {**refund, "id": "evt_refund_2"}})
    assert again["refunds"] == []


@needs_samples
def test_refund_larger_than_the_payment_opens_an_exception(app, clock, shop):
    pi = {"id": "pi_small", "object": "payment_intent", "amount": 100, "amount_received": 100, "currency": "usd",
          "metadata": {"customer": "SF-3", "invoice": shop["SF-3"]}, "latest_charge": "ch_small"}
    app.do("provider.event", {"event": envelope("evt_a", "payment_intent.succeeded", pi)})
    refund = sample("stripe-openapi-fixtures3-refund.json")
    refund = {**refund, "charge": "ch_small", "amount": 5000}
    out = app.do("provider.event", {"event": envelope("evt_b", "refund.created", refund)})
    assert out["refunds"][0]["status"] == "refused"
    assert app.query("exceptions", {"kind": "low_confidence_match", "status": "open"})["count"] == 1
    assert events(app, "payment.refunded") == []


@needs_samples
def test_failure_starts_dunning_and_a_late_failure_after_success_is_stale(app, clock, shop):
    obj = {**sample("stripe-openapi-fixtures3-payment_intent.json"), "amount": 2000,
           "metadata": {"customer": "SF-1", "invoice": shop["SF-1"]}}
    obj["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
    out = app.do("provider.event", {"event": envelope("evt_f1", "payment_intent.payment_failed", obj)})
    assert out["status"] == "applied" and out["reason"] == "Your card was declined." and out["policy"] == "card"
    (failed,) = events(app, "payment.failed")
    assert failed["invoice"] == shop["SF-1"]
    ok = {**obj, "status": "succeeded", "amount_received": 2000, "last_payment_error": None}
    app.do("provider.event", {"event": envelope("evt_s1", "payment_intent.succeeded", ok, created=1767270000)})
    late = app.do("provider.event", {"event": envelope("evt_f2", "payment_intent.payment_failed", obj,
                                                       created=1767260000)})
    assert late["status"] == "stale"
    assert app.query("dunning", {"invoice": shop["SF-1"]})["status"] == "stopped"


@needs_samples
def test_dispute_lost_reverses_the_payment_and_credits_the_invoice(app, clock, shop):
    pi = sample("dj-stripe-payment_intent_pi_fakefakefakefakefake0001.json")
    app.do("provider.event", {"event": envelope("evt_pi", "payment_intent.succeeded", pi)})
    dp = sample("dj-stripe-dispute_dp_fakefakefakefake01.json")
    opened = app.do("provider.event", {"event": envelope("evt_dp1", "charge.dispute.created", dp)})
    assert (opened["status"], opened["dispute_id"], opened["amount"], opened["reason_code"]) == (
        "opened", "dp_1JAyTwJSZQVUcJYgPqasUEn1", "10.00", "fraudulent")
    assert app.query("exceptions", {"kind": "dispute", "status": "open"})["count"] == 1
    clock.set(date(2026, 1, 17))
    lost = app.do("provider.event", {"event": envelope("evt_dp2", "charge.dispute.closed", {**dp, "status": "lost"},
                                                       created=1768651200)})  # 17 January
    assert lost["status"] == "resolved_credit" and lost["cycle_days"] == 16 and lost["credit_memo"]  # opened 1 Jan
    view = app.query("invoice", {"number": shop["SF-1"]})
    assert view["balance"] == "0.00"
    assert balance(app, "payment_clearing") == "10.00"  # 20.00 received, 10.00 taken back
    assert balance(app, "accounts_receivable") == "16.00"  # SF-2 and SF-3 still open
    assert app.query("exceptions", {"kind": "dispute", "status": "open"})["count"] == 0


@needs_samples
def test_dispute_closed_before_opened_and_payout_with_fees_reconciles_to_the_bank(app, clock, shop):
    charge = sample("stripe-openapi-fixtures3-charge.json")
    charge = {**charge, "metadata": {"customer": "SF-3", "invoice": shop["SF-3"]},
              "balance_transaction": {**sample("stripe-openapi-fixtures3-balance_transaction.json"), "fee": 33}}
    out = app.do("provider.event", {"event": envelope("evt_ch", "charge.succeeded", charge)})
    assert out["status"] == "applied" and out["applied"][0]["invoice"] == shop["SF-3"]
    dp = {**sample("stripe-openapi-fixtures3-dispute.json"), "status": "won", "amount": 100}
    closed = app.do("provider.event", {"event": envelope("evt_dpc", "charge.dispute.closed", dp)})
    assert closed["status"] == "resolved_rejected"
    pi = sample("dj-stripe-payment_intent_pi_fakefakefakefakefake0001.json")
    app.do("provider.event", {"event": envelope("evt_pi", "payment_intent.succeeded", pi)})
    # the bank line that carries the payout arrives first, then the payout event
    bank = write_camt053("DE89370400440532013000", "USD", [
        {"amount": 1100, "date": "2026-01-12", "remittance": "STRIPE PAYOUT po_1Pgc79B7WZ01zgkWu1KToYf4"}])
    report = app.do("bank.import", {"format": "camt053", "content": bank.decode(), "entity": "US01"})
    assert report["payouts"] == 1 and report["receipts"] == 0
    payout = sample("stripe-openapi-fixtures3-payout.json")
    paid = app.do("provider.event", {"event": envelope("evt_po", "payout.paid", payout)})
    assert (paid["net"], paid["fees"], paid["gross"], paid["payments"]) == ("11.00", "0.33", "11.33", 1)
    assert paid["bank_line"] is not None
    (ev,) = events(app, "payout.paid")
    check_payload("payout.paid", ev)
    assert balance(app, "cash") == "11.00" and balance(app, "payment_fees") == "0.33"
    assert balance(app, "payment_clearing") == "9.67"  # 21.00 received - 11.33 paid out
