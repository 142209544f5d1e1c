"""Outbound webhooks against a real HTTP receiver on 127.0.0.1: signed deliveries, retries with backoff, the
delivery log, dead deliveries as sync_failed exceptions, order per aggregate, and the CRM loop-back."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from closeloop.core.errors import CloseloopError
from closeloop.integration import crm, secret_box
from closeloop.integration.webhooks import WebhookSender, sign, verify_signature
from closeloop.integration.worker import uow_factory
from tests.conftest import TEST_DATABASE

SECRET = "s3cret-for-tests-0123456789"


@pytest.fixture(autouse=True)
def secret_key_on_postgresql(monkeypatch):
    """Signing secrets are encrypted at rest: PostgreSQL needs a configured key (SQLite has its key file)."""
    if TEST_DATABASE is not None and not os.environ.get(secret_box.ENV_KEY):
        monkeypatch.setenv(secret_box.ENV_KEY, secret_box.generate_key())


class Receiver:
    """Records every request; answers with the next scripted status (200 when the script is empty)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                code = receiver.script.pop(0) if receiver.script else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def sender(app, **kw):
    return WebhookSender(uow_factory(app), worker_id="test-sender", **kw)


def later(clock, days=1):
    clock.set(clock.today() + timedelta(days=days))


def test_signed_delivery_reaches_the_receiver_once(app, receiver):
    sub = app.do("webhook.subscribe", {"name": "crm", "url": receiver.url, "event_types": ["probe.*"],
                                       "secret": SECRET})
    assert sub["secret"] == SECRET
    event_id = app.do("probe.emit", {"probe": "p1"})["event"]
    report = sender(app).run()
    assert report.sent == 1 and len(receiver.requests) == 1
    req = receiver.requests[0]
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert verify_signature(SECRET, req["body"], headers["x-closeloop-signature"])
    assert not verify_signature("wrong-secret-0123456789", req["body"], headers["x-closeloop-signature"])
    assert not verify_signature(SECRET, req["body"] + b" ", headers["x-closeloop-signature"])
    assert headers["x-closeloop-event"] == "probe.pinged" and headers["x-closeloop-event-id"] == str(event_id)
    body = json.loads(req["body"])
    assert (body["event_id"], body["type"], body["aggregate"], body["data"]["probe"]) == (
        event_id, "probe.pinged", {"type": "probe", "id": "p1"}, "p1")
    assert sender(app).run().sent == 0  # delivered: never sent again
    [delivery] = app.query("webhook_deliveries", {"subscription": "crm"})["items"]
    assert delivery["status"] == "delivered" and [a["status_code"] for a in delivery["log"]] == [200]
    assert app.query("webhooks", {})["items"][0]["deliveries"] == {"delivered": 1}


def test_signature_rejects_stale_timestamps():
    body = b'{"a":1}'
    old = int(time.time()) - 3600
    assert not verify_signature(SECRET, body, sign(SECRET, old, body))
    assert verify_signature(SECRET, body, sign(SECRET, old, body), now=old + 10)
    assert not verify_signature(SECRET, body, "garbage")


def test_subscription_validation(app, receiver):
    for bad, field in (({"url": "ftp://x"}, "url"), ({"event_types": ["nope.never"]}, "event_types"),
                       ({"event_types": []}, "event_types"), ({"secret": "short"}, "secret"),
                       ({"secret": "x" * 257}, "secret")):
        payload = {"name": "x", "url": receiver.url, "event_types": ["probe.pinged"], **bad}
        with pytest.raises(CloseloopError) as exc:
            app.do("webhook.subscribe", payload)
        assert exc.value.code == "validation_error" and exc.value.details["field"] == field
    app.do("webhook.subscribe", {"name": "x", "url": receiver.url, "event_types": ["*"]})
    with pytest.raises(CloseloopError) as exc:
        app.do("webhook.subscribe", {"name": "x", "url": receiver.url, "event_types": ["*"]})
    assert exc.value.code == "conflict"


def test_failures_retry_with_backoff_and_a_keeps_failing_delivery_is_a_sync_failed_exception(app, clock, receiver):
    app.do("webhook.subscribe", {"name": "erp", "url": receiver.url, "event_types": ["probe.pinged"],
                                 "secret": SECRET})
    receiver.script = [500, 503, 500]
    app.do("probe.emit", {"probe": "p1"})
    s = sender(app, max_attempts=3, base_delay_seconds=60)
    assert s.run().failed == 1
    assert s.run().failed == 0  # backing off: nothing due yet
    [d] = app.query("webhook_deliveries", {})["items"]
    assert (d["status"], d["attempts"], d["last_status"]) == ("pending", 1, 500) and d["next_attempt_at"]
    later(clock)
    assert s.run().failed == 1
    later(clock)
    assert s.run().dead == 1
    [d] = app.query("webhook_deliveries", {})["items"]
    assert (d["status"], d["attempts"], [a["status_code"] for a in d["log"]]) == ("dead", 3, [500, 503, 500])
    [exc] = app.query("exceptions", {"kind": "sync_failed", "status": "open"})["items"]
    assert exc["record"] == {"webhook_delivery": str(d["id"])} and "erp" in exc["message"]
    app.do("webhook.retry", {"delivery": d["id"], "reason": "receiver fixed"})
    assert s.run().sent == 1
    assert app.query("exceptions", {"kind": "sync_failed", "status": "open"})["count"] == 0
    assert len(receiver.requests) == 4
    assert len({r["headers"]["X-Closeloop-Delivery"] for r in receiver.requests}) == 1  # receivers dedupe on it


def test_unreachable_receiver_is_logged_and_resolving_with_retry_requeues(app, clock):
    app.do("webhook.subscribe", {"name": "down", "url": "http://127.0.0.1:9/hooks", "event_types": ["probe.pinged"]})
    app.do("probe.emit", {"probe": "p1"})
    s = sender(app, max_attempts=1, timeout_seconds=2)
    assert s.run().dead == 1
    [d] = app.query("webhook_deliveries", {})["items"]
    assert d["last_status"] is None and d["log"][0]["error"]
    [exc] = app.query("exceptions", {"kind": "sync_failed"})["items"]
    result = app.do("exception.resolve", {"exception": exc["id"], "action": "retry", "reason": "try again"})
    assert result["webhook_delivery"]["status"] == "pending"


def test_deliveries_of_one_aggregate_go_in_order(app, clock, receiver):
    app.do("webhook.subscribe", {"name": "crm", "url": receiver.url, "event_types": ["probe.pinged"]})
    receiver.script = [500]
    first = app.do("probe.emit", {"probe": "acct-1", "note": "first"})["event"]
    second = app.do("probe.emit", {"probe": "acct-1", "note": "second"})["event"]
    other = app.do("probe.emit", {"probe": "acct-2"})["event"]
    s = sender(app)
    s.run()
    sent = [json.loads(r["body"])["event_id"] for r in receiver.requests]
    assert sent == [first, other]  # the second of acct-1 waits behind the failed first
    later(clock)
    s.run()
    sent = [json.loads(r["body"])["event_id"] for r in receiver.requests]
    assert sent == [first, other, first, second]


def test_unsubscribe_skips_pending_deliveries(app, receiver):
    app.do("webhook.subscribe", {"name": "old", "url": receiver.url, "event_types": ["probe.pinged"]})
    app.do("probe.emit", {"probe": "p"})
    assert app.do("webhook.unsubscribe", {"name": "old"})["skipped_deliveries"] == 1
    assert sender(app).run().sent == 0
    app.do("probe.emit", {"probe": "p"})
    assert app.query("webhook_deliveries", {})["count"] == 1  # nothing new for an inactive subscription


def test_crm_loop_sends_the_account_view_when_it_changes(app, receiver):
    balances = {"ACME": "100.00"}

    @crm.account_fact("test_open_balance")
    def open_balance(uow, account):
        if account not in balances:
            raise crm.FactUnavailable(account)
        return balances[account]

    crm.crm_trigger("probe.pinged", lambda e: e.payload.get("note"))
    try:
        app.do("webhook.subscribe", {"name": "salesforce", "url": receiver.url,
                                     "event_types": ["crm.account_updated"], "secret": SECRET})
        app.do("probe.emit", {"probe": "p", "note": "ACME"})
        app.do("probe.emit", {"probe": "p", "note": "ACME"})  # same view: nothing new to tell the CRM
        balances["ACME"] = "40.00"
        app.do("probe.emit", {"probe": "p", "note": "ACME"})
        app.do("probe.emit", {"probe": "p"})  # no account in this event: no CRM update
        sender(app).run()
        bodies = [json.loads(r["body"]) for r in receiver.requests]
        assert [b["type"] for b in bodies] == ["crm.account_updated", "crm.account_updated"]
        assert [b["data"]["test_open_balance"] for b in bodies] == ["100.00", "40.00"]
        assert bodies[0]["aggregate"] == {"type": "customer", "id": "ACME"}
        assert all(verify_signature(SECRET, r["body"], r["headers"]["X-Closeloop-Signature"])
                   for r in receiver.requests)
        cause = bodies[1]["data"]["cause"]
        assert app.query("event", {"event": cause["event"]})["type"] == "probe.pinged"
    finally:
        crm._FACTS.pop("test_open_balance", None)
        crm._TRIGGERS.pop("probe.pinged", None)
        from closeloop.core import events as ev

        ev._HANDLERS["probe.pinged"] = [h for h in ev._HANDLERS["probe.pinged"] if h.name != "crm.account_state"]
