"""The system-of-record registry, pure parts: validation of registry files, merging, decisions."""

from __future__ import annotations

import pytest

from closeloop.core import governance


def _registry(doc=None, version="1.0"):
    base = governance.shipped_document()
    return governance._build(governance._merge(base, doc), version, ("test",))


def test_shipped_registry_is_valid_and_covers_every_entity_type():
    doc = governance.shipped_document()
    assert governance.validate_document(doc, "shipped") == []
    assert set(governance.ENTITY_TYPES) <= set(doc["entities"])


def test_owner_decisions():
    reg = _registry()
    changes = {"name": ("Globex", "Globex Corp"), "payment_terms_days": (30, 45), "tax_id": (None, "DE136695976")}
    allowed, refused = governance.decide(reg, "customer", changes, "billing")
    assert sorted(allowed) == ["payment_terms_days", "tax_id"] and sorted(refused) == ["name"]
    allowed, refused = governance.decide(reg, "customer", changes, "crm")
    # crm may fill the empty tax id (fill_empty) but not change payment terms owned by billing
    assert sorted(allowed) == ["name", "tax_id"] and sorted(refused) == ["payment_terms_days"]
    allowed, refused = governance.decide(reg, "customer", changes, "closeloop")
    assert sorted(allowed) == ["name", "payment_terms_days", "tax_id"] and refused == {}
    assert reg.owners("customer", "unlisted_field") == ("crm",)
    assert reg.owners("journal", "lines") == ("finance",)


def test_unknown_sources_and_entity_types_are_refused():
    reg = _registry()
    with pytest.raises(Exception) as exc:
        reg.check_source("stripe")
    assert exc.value.code == "validation_error" and exc.value.details["field"] == "source"
    with pytest.raises(Exception) as exc:
        reg.rules("spaceship")
    assert exc.value.details["field"] == "entity_type"


def test_override_documents_are_validated_and_merged_field_by_field():
    base = governance.shipped_document()
    errors = governance.validate_document({"version": 2, "entities": {"customer": {"fields": {"name": "sap"}},
                                                                      "rocket": {"default": "crm"}},
                                           "colour": 1}, "override.yaml", base=base)
    assert errors == [
        "override.yaml: unknown key 'colour'",
        "override.yaml: entities.customer.fields.name: unknown source(s) sap; sources are billing, closeloop, crm,"
        " finance, migration, system",
        "override.yaml: entities.rocket: unknown entity type; known: contract, customer, invoice, journal,"
        " opportunity, payment, quote",
    ]
    reg = _registry({"version": 2, "entities": {"customer": {"fields": {"payment_terms_days": ["finance",
                                                                                                "billing"]}}}})
    assert reg.owners("customer", "payment_terms_days") == ("finance", "billing")
    assert reg.owners("customer", "name") == ("crm",)
