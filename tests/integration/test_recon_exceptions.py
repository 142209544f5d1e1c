"""The exception workflow the recon breaks (and every other kind) go through: playbooks, age and SLA,
assignment and history; and the audit query over the commands involved."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeloop.control.exceptions import playbook
from closeloop.core.errors import CloseloopError
from closeloop.core.exception_queue import KINDS, open_exception


def test_every_exception_kind_has_a_playbook():
    for kind in KINDS:
        text = playbook(kind)
        assert text and text.startswith(f"# {kind}"), kind
        assert "## How to resolve" in text
    assert playbook("nonsense") is None


def test_queue_age_sla_assignment_and_history(app, clock):
    with app.unit_of_work() as uow:
        first = open_exception(uow, "recon_break", record_type="recon_break", record_id="r:1", message="differs",
                               amount=500, currency="USD", entity="US01")
        second = open_exception(uow, "sync_failed", record_type="event", record_id="9", message="dead")
    clock.set(clock.today() + timedelta(days=3))  # past sync_failed's 24 h SLA and recon_break's 48 h
    with app.unit_of_work() as uow:
        open_exception(uow, "dispute", record_type="invoice", record_id="INV-1", message="disputed")
    queue = app.query("exception_queue", {})
    assert queue["count"] == 3 and queue["by_kind"] == {"dispute": 1, "recon_break": 1, "sync_failed": 1}
    ages = {i["kind"]: (i["age_days"], i["overdue"]) for i in queue["items"]}
    assert ages == {"recon_break": (3, True), "sync_failed": (3, True), "dispute": (0, False)}
    assert app.query("exception_queue", {"overdue": True})["count"] == 2
    assert app.query("exception_queue", {"overdue": False})["items"][0]["kind"] == "dispute"

    app.do("exception.assign", {"exception": first, "assignee": "carol", "reason": "ledger team"}, actor="dan")
    app.do("exception.assign", {"exception": first, "assignee": "erin"}, actor="carol")
    assert app.query("exception_queue", {"assignee": "erin"})["items"][0]["id"] == first
    app.do("exception.resolve", {"exception": first, "action": "accept", "reason": "rounding, explained"},
           actor="erin")
    detail = app.query("exception", {"exception": first})
    assert detail["status"] == "resolved" and detail["resolution"] == "accept"
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("opened", "tester"), ("assign", "dan"), ("assign", "carol"), ("accept", "erin")]
    assert detail["history"][2]["details"] == {"from": "carol", "to": "erin"}
    assert detail["playbook"].startswith("# recon_break") and detail["age_days"] == 3
    with pytest.raises(CloseloopError) as exc:
        app.do("exception.assign", {"exception": first, "assignee": "x"})
    assert exc.value.code == "conflict"
    assert app.query("exception_queue", {"status": "resolved"})["count"] == 1
    assert second in [i["id"] for i in app.query("exception_queue", {"kind": "sync_failed"})["items"]]


def test_audit_filters_by_actor_command_outcome_and_dates(app, us01, clock):
    app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
        {"account": "cash", "debit": "1.00"}, {"account": "3000", "credit": "1.00"}]}, actor="alice")
    clock.set(clock.today() + timedelta(days=10))
    with pytest.raises(CloseloopError):
        app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "lines": [
            {"account": "cash", "debit": "1.00"}, {"account": "3000", "credit": "2.00"}]}, actor="bob")
    assert app.query("audit", {"actor": "alice"})["count"] == 1
    refused = app.query("audit", {"outcome": "refused"})
    assert [(i["actor"], i["outcome"]) for i in refused["items"]] == [("bob", "unbalanced")]
    assert refused["items"][0]["result"]["code"] == "unbalanced"
    assert app.query("audit", {"command": "journal.*"})["count"] == 2
    assert app.query("audit", {"command": "journal.*", "since": "2026-01-05"})["count"] == 1
    assert app.query("audit", {"until": "2026-01-01"})["count"] == 2  # entity.create and alice's journal
    assert app.query("audit", {"outcome": "ok", "payloads": False})["items"][0].get("payload") is None
