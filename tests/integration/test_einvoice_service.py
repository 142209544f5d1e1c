"""E-invoice commands on a database: stored once and never changed, preferred formats, the issue hook."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from closeloop.core.errors import CloseloopError
from closeloop.einvoice import cii, service, ubl

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "einvoice"


@pytest.fixture
def documents():
    docs = {}
    for name in ("reverse_charge_invoice", "domestic_invoice", "credit_memo"):
        doc = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        docs[doc["number"]] = doc

    def provide(uow, number):
        if number not in docs:
            raise CloseloopError(f"invoice {number!r} does not exist", code="not_found")
        return docs[number]

    previous = service.set_document_provider(provide)
    yield docs
    service.set_document_provider(previous)


def _customers(app) -> None:
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-FR-001", "name": "Client SA", "country": "FR",
                               "tax_id": "FR40303265045"})
    app.do("customer.upsert", {"source": "crm", "external_id": "SF-DE-007", "name": "Kunde GmbH", "country": "DE"})


def test_export_is_stored_once_and_never_changes(app, documents) -> None:
    _customers(app)
    first = app.do("einvoice.export", {"invoice": "DE01-2026-000001", "format": "facturx"})
    assert (first["format"], first["media_type"], first["origin"], first["encoding"]) == (
        "facturx", "application/pdf", "export", "base64")
    pdf = base64.b64decode(first["content"])
    cii.check_cii(cii.xml_from_pdf(pdf))
    documents["DE01-2026-000001"]["lines"][0]["description"] = "changed after issue"
    again = app.do("einvoice.export", {"invoice": "DE01-2026-000001", "format": "facturx"})
    assert again["sha256"] == first["sha256"] and again["content"] == first["content"]
    stored = app.query("einvoice", {"invoice": "DE01-2026-000001"})
    assert stored["count"] == 1 and stored["items"][0]["sha256"] == first["sha256"]


def test_ubl_export_reads_back(app, documents) -> None:
    _customers(app)
    out = app.do("einvoice.export", {"invoice": "DE01-CM-2026-000001", "format": "ubl"})
    read = ubl.read_ubl(out["content"])
    assert (read.kind, str(read.payable), read.billing_references) == ("credit_note", "297.50", ("DE01-2026-000001",))
    parsed = app.query("ubl_read", {"content": out["content"]})
    assert (parsed["total"], parsed["tax"], parsed["problems"]) == ("297.50", "47.50", [])


def test_preferred_format_and_the_issue_hook(app, documents) -> None:
    _customers(app)
    assert app.do("customer.einvoice_format", {"customer": "SF-DE-007", "format": "ubl"}) == {
        "customer": "SF-DE-007", "format": "ubl"}
    with app.unit_of_work() as uow:
        service._on_issued(uow, "DE01-2026-000002", "SF-DE-007")  # what invoice.issued triggers
        service._on_issued(uow, "DE01-2026-000001", "SF-FR-001")  # no preference: nothing made
    stored = app.query("einvoice", {"invoice": "DE01-2026-000002"})
    assert [(x["format"], x["origin"], x["status"]) for x in stored["items"]] == [("ubl", "issue", "stored")]
    assert app.query("einvoice", {"invoice": "DE01-2026-000001"})["count"] == 0
    # the default format of an export is the customer's preference
    assert app.do("einvoice.export", {"invoice": "DE01-2026-000002"})["format"] == "ubl"
    with pytest.raises(CloseloopError) as exc:
        app.do("customer.einvoice_format", {"customer": "SF-DE-007", "format": "pdf"})
    assert exc.value.code == "validation_error"


def test_missing_address_is_refused_with_field_and_format(app, documents) -> None:
    _customers(app)
    documents["DE01-2026-000001"]["buyer"]["address"] = None
    documents["DE01-2026-000001"]["buyer"]["postal_code"] = None
    with pytest.raises(CloseloopError) as exc:
        app.do("einvoice.export", {"invoice": "DE01-2026-000001", "format": "ubl"})
    assert exc.value.code == "validation_error"
    assert "buyer.address.city: is required by the ubl format" in exc.value.message
    assert app.query("einvoice", {"invoice": "DE01-2026-000001"})["count"] == 0  # nothing half-way
