"""CRM change events: signed delivery, idempotent by event id, applied through the same rules as customer.upsert."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from closeloop.core.errors import CloseloopError
from closeloop.customers.demo import import_demo_accounts
from closeloop.customers.webhook import receive, sign

NOW = 1_767_225_600
SECRET = "whsec-test"


def deliver(app, events):
    body = json.dumps(events).encode()
    return receive(app, body, {"X-Closeloop-Signature": sign(SECRET, body, NOW)}, secret=SECRET, now=NOW)


def test_events_are_applied_once_and_a_changed_payload_under_a_known_id_is_a_conflict(app):
    created = {"id": "evt-1", "type": "account.upserted", "source": "crm",
               "data": {"external_id": "SF-9", "name": "Hooli", "country": "US", "region": "CA"}}
    (first,) = deliver(app, created)
    assert (first["status"], first["external_id"]) == ("applied", "SF-9")
    (again,) = deliver(app, created)
    assert again["duplicate"] is True and again["external_id"] == "SF-9"
    with app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM event WHERE type = 'customer.created'") == 1
    changed = {**created, "data": {**created["data"], "name": "Hooli XYZ"}}
    (clash,) = deliver(app, changed)
    assert (clash["status"], clash["error"]) == ("refused", "conflict")


def test_batches_governance_deletion_and_merge(app):
    results = deliver(app, [
        {"id": "e1", "type": "account.upserted", "data": {"external_id": "A", "name": "Alpha", "country": "DE"}},
        {"id": "e2", "type": "account.upserted", "data": {"external_id": "B", "name": "Alpha GmbH", "country": "DE"}},
        {"id": "e3", "type": "account.upserted", "data": {"external_id": "A", "payment_terms_days": 10}},
        {"id": "e4", "type": "account.merged", "data": {"external_id": "B", "survivor": "A"}},
        {"id": "e5", "type": "account.deleted", "data": {"external_id": "A"}},
        {"id": "e6", "type": "account.renamed", "data": {"external_id": "A"}},
    ])
    assert [r["status"] for r in results] == ["applied", "applied", "refused", "applied", "applied", "refused"]
    assert results[2]["error"] == "not_owner"
    assert results[5]["error"] == "validation_error"
    assert app.query("customer", {"external_id": "B"})["merged_into"] == "A"
    assert app.query("customer", {"external_id": "A"})["status"] == "inactive"


def test_unsigned_or_tampered_deliveries_are_forbidden(app):
    body = b'{"id":"x","type":"account.upserted","data":{"external_id":"Z","name":"Z","country":"US"}}'
    with pytest.raises(CloseloopError) as exc:
        receive(app, body + b" ", {"X-Closeloop-Signature": sign(SECRET, body, NOW)}, secret=SECRET, now=NOW)
    assert exc.value.code == "forbidden"
    assert app.query("customers", {})["count"] == 0


def test_demo_import_is_seeded(app):
    report = import_demo_accounts(app, Console(file=io.StringIO()))
    assert (report["rows_read"], report["created"], report["rejected"], report["suspected_duplicates"]) == (
        300, 290, 10, 16)
    assert (report["planted_duplicates"], report["planted_bad_rows"]) == (18, 8)
    assert report["quality"]["score"] == "93.4"
    assert app.query("exceptions", {"kind": "import_rejected"})["count"] == 10
