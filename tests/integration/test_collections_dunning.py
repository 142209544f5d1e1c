"""Dunning, disputes, aging, statements and collectors on billing's invoices."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError
from tests.integration.collections_helpers import company, events


def test_failed_card_payment_retries_reminds_and_suspends(app, clock):
    inv = company(app, clock, {"SF-1": "100.00"})  # due 31 January
    clock.set(date(2026, 2, 2))
    failed = app.do("payment.fail", {"customer": "SF-1", "invoice": inv["SF-1"], "amount": "100.00",
                                     "reason": "card_declined"})
    assert failed["policy"] == "card" and failed["policy_started"] is True
    clock.set(date(2026, 2, 3))
    run = app.do("dunning.run", {"as_of": "2026-02-03"})
    assert [(a["step"], a["due_on"]) for a in run["actions"]] == [("retry_1", "2026-02-03"),
                                                                    ("reminder_1", "2026-02-03")]
    assert app.do("dunning.run", {"as_of": "2026-02-03"})["actions"] == []  # a rerun does nothing new
    (email,) = app.query("collection_emails", {"invoice": inv["SF-1"]})["emails"]
    assert email["to"] == "ap@sf-1.example" and email["status"] == "pending"
    assert email["subject"] == f"Payment reminder: invoice {inv['SF-1']} is 3 days overdue"
    assert "100.00 USD" in email["body"] and "RF" in email["body"]
    clock.set(date(2026, 2, 9))
    run = app.do("dunning.run", {"as_of": "2026-02-09"})
    assert [a["step"] for a in run["actions"]] == ["retry_3"]
    assert run["retries"] == 1 and run["skipped"] == 1  # retry_2 (5 Feb) superseded by retry_3 (9 Feb)
    retries = events(app, "payment.retry_requested")
    assert [r["attempt"] for r in retries] == [1, 3]
    clock.set(date(2026, 3, 2))
    run = app.do("dunning.run", {"as_of": "2026-03-02"})
    assert run["suspensions"] == 1 and run["reminders"] == 1
    (suspended,) = events(app, "subscription.suspended")
    assert suspended == {"customer": "SF-1", "entity": "US01", "invoice": inv["SF-1"], "date": "2026-03-02",
                         "reason": "dunning", "days_past_due": 30, "amount": "100.00", "currency": "USD"}
    status = app.query("dunning", {"invoice": inv["SF-1"]})
    assert status["status"] == "completed" and status["stage"] == "suspension" and status["emails"] == 2


def test_a_successful_payment_stops_the_policy(app, clock):
    inv = company(app, clock, {"SF-1": "100.00"})
    clock.set(date(2026, 2, 2))
    app.do("payment.fail", {"customer": "SF-1", "invoice": inv["SF-1"], "amount": "100.00", "reason": "expired"})
    clock.set(date(2026, 2, 3))
    app.do("dunning.run", {"as_of": "2026-02-03"})
    app.do("payment.receive", {"customer": "SF-1", "amount": "100.00", "currency": "USD", "reference": inv["SF-1"],
                               "channel": "provider"})
    assert app.query("dunning", {"invoice": inv["SF-1"]})["status"] == "stopped"
    clock.set(date(2026, 3, 10))
    assert app.do("dunning.run", {"as_of": "2026-03-10"})["actions"] == []


def test_disputed_amount_is_not_dunned_and_dispute_lifecycle(app, clock):
    inv = company(app, clock, {"SF-1": "100.00", "SF-2": "200.00"})
    clock.set(date(2026, 2, 1))
    opened = app.do("dispute.open", {"dispute_id": "D-1", "invoice": {"customer": "SF-1", "seq": 1},
                                     "amount": "100.00", "reason": "service was down", "reason_code": "service_issue"})
    assert (opened["status"], opened["opened"], opened["sla_due"], opened["owner"]) == (
        "opened", "2026-02-01", "2026-02-11", "collections")
    (ev,) = events(app, "dispute.opened")
    assert ev["invoice"] == inv["SF-1"]
    app.do("dispute.open", {"dispute_id": "D-2", "invoice": inv["SF-2"], "amount": "50.00", "reason": "price"})
    clock.set(date(2026, 2, 5))
    run = app.do("dunning.run", {"as_of": "2026-02-05"})
    assert run["disputed_excluded"] == 1
    assert [(a["invoice"], a["amount"]) for a in run["actions"]] == [(inv["SF-2"], "150.00")]
    with pytest.raises(CloseloopError) as err:
        app.do("dispute.open", {"dispute_id": "D-1", "invoice": inv["SF-1"], "amount": "1.00", "reason": "again"})
    assert err.value.code == "conflict"
    with pytest.raises(CloseloopError) as err:
        app.do("dispute.open", {"dispute_id": "D-3", "invoice": inv["SF-2"], "amount": "151.00", "reason": "x"})
    assert err.value.code == "insufficient_amount"
    app.do("dispute.review", {"dispute_id": "D-1", "owner": "carol"})
    clock.set(date(2026, 2, 8))
    done = app.do("dispute.resolve", {"dispute_id": "D-1", "outcome": "credit"})
    assert (done["status"], done["resolved"], done["cycle_days"], done["owner"]) == (
        "resolved_credit", "2026-02-08", 7, "carol")
    assert app.query("invoice", {"number": inv["SF-1"]})["status"] == "credited"
    assert app.query("credit_memo", {"invoice": inv["SF-1"]})["total"] == "100.00"
    clock.set(date(2026, 2, 12))
    rejected = app.do("dispute.resolve", {"dispute_id": "D-2", "outcome": "rejected"})
    assert rejected["cycle_days"] == 11 and rejected["status"] == "resolved_rejected"
    with pytest.raises(CloseloopError) as err:
        app.do("dispute.resolve", {"dispute_id": "D-2", "outcome": "credit"})
    assert err.value.code == "conflict"
    q = app.query("dispute", {"dispute_id": "D-1"})
    assert {k: q[k] for k in ("status", "amount", "opened", "resolved", "cycle_days")} == {
        "status": "resolved_credit", "amount": "100.00", "opened": "2026-02-01", "resolved": "2026-02-08",
        "cycle_days": 7}
    stats = app.query("disputes", {})
    assert (stats["cycle_days_median"], stats["cycle_days_p90"], stats["open"]) == ("9.0", "11.0", 0)
    assert app.query("exceptions", {"kind": "dispute", "status": "open"})["count"] == 0


def test_aging_as_of_any_date_and_dso(app, clock):
    inv = company(app, clock, {"SF-1": "100.00", "SF-2": "200.00"})  # due 31 January
    clock.set(date(2026, 3, 1))
    app.do("billing.run", {"as_of": "2026-03-01"})  # February and March invoices
    app.do("payment.receive", {"customer": "SF-1", "amount": "100.00", "currency": "USD", "reference": inv["SF-1"],
                               "date": "2026-02-15"})
    before = app.query("ar_aging", {"as_of": "2026-02-14"})
    assert {b: before[b] for b in ("current", "d1_30", "d31_60", "d61_90", "over_90")} == {
        "current": "300.00", "d1_30": "300.00", "d31_60": "0.00", "d61_90": "0.00", "over_90": "0.00"}
    later = app.query("ar_aging", {"as_of": "2026-05-15"})
    assert {b: later[b] for b in ("current", "d1_30", "d31_60", "d61_90", "over_90")} == {
        "current": "0.00", "d1_30": "0.00", "d31_60": "300.00", "d61_90": "300.00", "over_90": "200.00"}
    assert later["total"] == "800.00"
    dso = app.query("dso", {"entity": "US01", "as_of": "2026-03-31", "days": 90})
    assert (dso["receivables"], dso["invoiced"], dso["dso_days"]) == ("800.00", "900.00", "80.00")


def test_statement_of_account_and_collectors_by_hierarchy(app, clock):
    inv = company(app, clock, {"PARENT": "100.00", "CHILD": "40.00"})
    app.do("customer.upsert", {"source": "crm", "external_id": "CHILD", "parent": "PARENT", "name": "Customer CHILD",
                               "country": "US"})
    app.do("customer.upsert", {"source": "crm", "external_id": "GRANDCHILD", "parent": "CHILD", "name": "GC",
                               "country": "US"})
    app.do("collector.assign", {"customer": "CHILD", "collector": "dave"})
    assert app.query("collector", {"customer": "GRANDCHILD"})["collector"] == "dave"
    app.do("collector.assign", {"customer": "PARENT", "collector": "erin"})
    child = app.query("collector", {"customer": "GRANDCHILD"})
    assert child == {"customer": "GRANDCHILD", "collector": "erin", "assigned_to": "PARENT", "inherited": True,
                     "top_parent": "PARENT"}
    app.do("payment.receive", {"customer": "CHILD", "amount": "50.00", "currency": "USD", "reference": inv["CHILD"]})
    st = app.query("statement_of_account", {"customer": "CHILD", "as_of": "2026-02-15", "html": True})
    assert st["totals"] == {"USD": {"open": "0.00", "unapplied_credit": "10.00", "net_due": "-10.00"}}
    assert st["collector"] == "erin" and st["invoices"][0]["status"] == "paid"
    assert "<h1>Statement of account</h1>" in st["html"] and inv["CHILD"] in st["html"]


def test_reminder_emails_stay_in_the_outbox_unless_smtp_is_on(app, clock, monkeypatch):
    from closeloop.collections.dunning import send_pending_emails

    company(app, clock, {"SF-1": "100.00"})
    clock.set(date(2026, 2, 5))
    app.do("dunning.run", {"as_of": "2026-02-05"})
    monkeypatch.delenv("CLOSELOOP_SMTP_HOST", raising=False)
    assert send_pending_emails(app) == {"sent": 0, "failed": 0, "enabled": False}
    sent = []

    class FakeSMTP:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def send_message(self, msg):
            sent.append((msg["To"], msg["Subject"]))

    monkeypatch.setenv("CLOSELOOP_SMTP_HOST", "127.0.0.1")
    assert send_pending_emails(app, smtp_factory=FakeSMTP) == {"sent": 1, "failed": 0, "enabled": True}
    assert sent == [("ap@sf-1.example", "Payment reminder: invoice INV-US01-000001 is 5 days overdue")]
    assert app.query("collection_emails", {"status": "sent"})["count"] == 1
