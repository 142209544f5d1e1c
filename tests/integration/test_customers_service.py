"""Customer master services on a fresh database: upsert, system of record, hierarchy, duplicates, merge, unmerge."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.core.errors import CloseloopError
from closeloop.customers import service
from closeloop.customers.service import customer_by_id, get_customer


def up(app, ext, source="crm", **fields):
    return app.do("customer.upsert", {"external_id": ext, "source": source, **fields})


def refused(fn, *args, **kwargs) -> CloseloopError:
    with pytest.raises(CloseloopError) as exc:
        fn(*args, **kwargs)
    return exc.value


def events(app, type_):
    with app.unit_of_work(write=False) as uow:
        return uow.all("SELECT aggregate_id, payload FROM event WHERE type = ? ORDER BY id", (type_,))


@pytest.fixture
def hooks():
    """Clean balance providers and reference holders around a test."""
    saved_b, saved_r = dict(service._BALANCE_PROVIDERS), dict(service._REFERENCE_HOLDERS)
    service._BALANCE_PROVIDERS.clear()
    service._REFERENCE_HOLDERS.clear()
    yield
    service._BALANCE_PROVIDERS.clear()
    service._BALANCE_PROVIDERS.update(saved_b)
    service._REFERENCE_HOLDERS.clear()
    service._REFERENCE_HOLDERS.update(saved_r)


def test_create_normalises_and_the_query_returns_the_record(app, us01):
    result = up(app, "SF-001", name=" Globex  LLC ", country="United States", region="California",
                postal_code="94105", tax_id="042103594", entity="US01", currency="USD", email="AP@Globex.COM")
    assert result == {"id": 1, "external_id": "SF-001", "status": "created", "changed": [],
                      "warnings": [{"field": "country", "reason": "'United States' read as US"}]}
    c = app.query("customer", {"external_id": "SF-001"})
    assert {k: c[k] for k in ("id", "name", "status", "parent", "tax_id", "merged_into", "open_balance",
                              "credit_balance", "country", "region", "tax_id_valid", "payment_terms_days", "email",
                              "entity", "currency")} == {
        "id": 1, "name": "Globex LLC", "status": "active", "parent": None, "tax_id": "04-2103594",
        "merged_into": None, "open_balance": "0.00", "credit_balance": "0.00", "country": "US", "region": "CA",
        "tax_id_valid": True, "payment_terms_days": 30, "email": "AP@globex.com", "entity": "US01",
        "currency": "USD"}
    with app.unit_of_work(write=False) as uow:
        got = get_customer(uow, "SF-001")
        assert (got.id, got.country, got.tax_id_valid, got.merged_into) == (1, "US", True, None)
        assert customer_by_id(uow, 1) == got
        err = refused(get_customer, uow, "SF-404")
        assert (err.code, err.details["record"], err.message) == ("not_found", "SF-404",
                                                                  "customer 'SF-404' does not exist")
    (payload,) = [p for _, p in events(app, "customer.created")]
    assert '"external_id":"SF-001"' in payload and '"tax_id":"04-2103594"' in payload


@pytest.mark.parametrize("fields, field, reason", [
    ({"country": "Atlantis"}, "country", "'Atlantis' is not an ISO 3166 country"),
    ({"country": "DE", "tax_id": "DE136695977"}, "tax_id",
     "'DE136695977' is not a valid tax id for DE: checksum does not match (eu.vat)"),
    ({"country": "US", "email": "ap at globex"}, "email", "'ap at globex' is not an email address"),
    ({"country": "US", "currency": "XYZ"}, "currency", "'XYZ' is not an ISO 4217 currency"),
])
def test_invalid_values_are_validation_errors_naming_the_field(app, fields, field, reason):
    err = refused(up, app, "SF-9", name="Bad Co", **fields)
    assert err.code == "validation_error"
    assert err.details["field"] == field and err.details["record"] == "SF-9"
    assert err.message == f"customer SF-9: {field}: {reason}"
    assert app.query("customers", {})["count"] == 0


def test_parent_must_exist_and_cycles_are_refused(app):
    err = refused(up, app, "SF-2", name="Child", country="US", parent="SF-1")
    assert (err.code, err.details["field"]) == ("not_found", "parent")
    up(app, "SF-1", name="Top", country="US")
    up(app, "SF-2", name="Child", country="US", parent="SF-1")
    up(app, "SF-3", name="Grandchild", country="US", parent="SF-2")
    err = refused(up, app, "SF-1", parent="SF-3")
    assert err.code == "validation_error"
    assert err.message == "customer SF-1: parent SF-3 would make a cycle (SF-1 -> SF-3 -> SF-2 -> SF-1)"
    err = refused(up, app, "SF-1", parent="SF-1")
    assert err.message == "customer SF-1: parent cannot be the account itself"
    assert app.query("customer", {"external_id": "SF-1"})["parent"] is None


def test_system_of_record_all_refused_is_not_owner_and_keeps_the_exceptions(app):
    up(app, "SF-1", name="Globex", country="US", payment_terms_days=30)
    err = refused(up, app, "SF-1", source="billing", name="Globex Billing Name")
    assert err.code == "not_owner"
    assert err.message == ("customer SF-1: source billing does not own name (owned by crm); nothing was changed")
    assert err.details["refused"] == [{"field": "name", "owners": ["crm"], "old": "Globex",
                                       "new": "Globex Billing Name"}]
    assert app.query("customer", {"external_id": "SF-1"})["name"] == "Globex"
    exc = app.query("exceptions", {"kind": "not_owner"})
    assert exc["count"] == 1
    item = exc["items"][0]
    assert (item["record"], item["owner_role"], item["status"]) == ({"customer": "SF-1"}, "sales_ops", "open")
    assert item["message"] == ('customer SF-1: field name is owned by crm; source billing may not change it'
                               ' ("Globex" -> "Globex Billing Name")')
    # the same refusal again updates the open exception instead of doubling it
    refused(up, app, "SF-1", source="billing", name="Globex Billing Name")
    assert app.query("exceptions", {"kind": "not_owner"})["count"] == 1


def test_mixed_update_applies_owned_fields_and_reports_the_others(app):
    up(app, "SF-1", name="Globex", country="US")
    result = up(app, "SF-1", source="billing", name="Other", payment_terms_days=45, currency="USD")
    assert result["status"] == "updated"
    assert result["changed"] == ["currency", "payment_terms_days"]
    assert result["refused"] == [{"field": "name", "owners": ["crm"]}]
    c = app.query("customer", {"external_id": "SF-1"})
    assert (c["name"], c["payment_terms_days"], c["currency"]) == ("Globex", 45, "USD")
    assert app.query("exceptions", {"kind": "not_owner"})["count"] == 1
    # crm cannot change billing's payment terms; an unchanged value is no change at all
    assert up(app, "SF-1", payment_terms_days=45)["status"] == "unchanged"
    err = refused(up, app, "SF-1", payment_terms_days=60)
    assert err.code == "not_owner"
    # a person in closeloop (the trusted interface source) may correct any field
    assert app.do("customer.upsert", {"external_id": "SF-1", "payment_terms_days": 60})["changed"] == [
        "payment_terms_days"]
    history = app.query("customer_history", {"external_id": "SF-1"})["changes"]
    assert [(h["source"], h["field"], h["old"], h["new"]) for h in history] == [
        ("billing", "currency", None, "USD"), ("billing", "payment_terms_days", 30, 45),
        ("closeloop", "payment_terms_days", 45, 60)]


def test_unknown_source_is_refused(app):
    err = refused(up, app, "SF-1", source="stripe", name="X", country="US")
    assert (err.code, err.details["field"]) == ("validation_error", "source")


def test_registry_changes_are_effective_dated_and_audited(app, clock):
    up(app, "SF-1", name="Globex", country="US")
    app.do("governance.set_owner", {"entity_type": "customer", "field": "payment_terms_days",
                                    "owners": ["crm", "billing"], "effective": "2026-02-01",
                                    "reason": "sales negotiates terms"})
    assert refused(up, app, "SF-1", payment_terms_days=60).code == "not_owner"
    clock.set(date(2026, 2, 1))
    assert up(app, "SF-1", payment_terms_days=60)["changed"] == ["payment_terms_days"]
    sor = app.query("system_of_record", {"entity_type": "customer", "history": True})
    assert sor["version"] == "1.1"
    assert sor["entities"]["customer"]["fields"]["payment_terms_days"] == ["crm", "billing"]
    (change,) = sor["changes"]
    assert {k: change[k] for k in ("field", "owners", "previous", "effective", "reason", "actor")} == {
        "field": "payment_terms_days", "owners": ["crm", "billing"], "previous": ["billing"],
        "effective": "2026-02-01", "reason": "sales negotiates terms", "actor": "tester"}
    before = app.query("system_of_record", {"entity_type": "customer", "as_of": "2026-01-15"})
    assert before["entities"]["customer"]["fields"]["payment_terms_days"] == ["billing"]


def test_override_file_is_read_over_the_shipped_registry(app, tmp_path):
    path = tmp_path / "sor.yaml"
    path.write_text("version: 7\nentities:\n  customer:\n    fields:\n      name: [crm, billing]\n")
    app.services.config["system_of_record_file"] = str(path)
    up(app, "SF-1", name="Globex", country="US")
    assert up(app, "SF-1", source="billing", name="Globex Corp")["changed"] == ["name"]
    assert app.query("system_of_record", {})["version"] == "1+7.0"


def test_commands_given_a_merged_id_act_on_the_survivor(app):
    up(app, "SF-1", name="Globex", country="US", postal_code="94105")
    up(app, "HS-77", name="Globex Inc", country="US", postal_code="94105", email="ap@globex.com")
    merged = app.do("customer.merge", {"survivor": "SF-1", "merged": "HS-77", "reason": "same company"})
    assert merged["status"] == "merged" and merged["changed"] == ["email"]
    m = app.query("customer", {"external_id": "HS-77"})
    assert (m["status"], m["merged_into"]) == ("merged", "SF-1")
    result = up(app, "HS-77", region="NY")
    assert result["external_id"] == "SF-1" and result["acted_on"] == "SF-1"
    assert app.query("customer", {"external_id": "SF-1"})["region"] == "NY"
    with app.unit_of_work(write=False) as uow:
        assert get_customer(uow, "HS-77").external_id == "SF-1"
        assert get_customer(uow, "HS-77", follow_merge=False).status == "merged"


def test_merge_errors(app):
    up(app, "A", name="Alpha", country="US")
    up(app, "B", name="Beta", country="US")
    up(app, "C", name="Gamma", country="US")
    err = refused(app.do, "customer.merge", {"survivor": "A", "merged": "A"})
    assert (err.code, err.message) == ("validation_error", "cannot merge customer A into itself")
    app.do("customer.merge", {"survivor": "A", "merged": "B"})
    err = refused(app.do, "customer.merge", {"survivor": "B", "merged": "C"})
    assert err.code == "validation_error" and err.details["field"] == "survivor"
    err = refused(app.do, "customer.merge", {"survivor": "C", "merged": "B"})
    assert (err.code, err.message) == ("validation_error", "customer B is already merged into A")
    assert refused(app.do, "customer.merge", {"survivor": "A", "merged": "Z"}).code == "not_found"


def test_merge_survivorship_children_reference_holders_and_unmerge(app, hooks):
    up(app, "SF-1", name="Globex", country="US", postal_code="94105")
    up(app, "SF-2", name="Globex Corporation", country="US", postal_code="94105",
       address={"street": "500 Howard St", "city": "San Francisco"}, email="ap@globex.com", payment_terms_days=45)
    up(app, "SF-3", name="Globex East", country="US", parent="SF-2")
    app.do("contact.upsert", {"external_id": "C-1", "customer": "SF-2", "first_name": "Amy", "last_name": "Taylor",
                              "email": "amy@globex.com"})
    invoices = {10: 2, 11: 2, 12: 1}  # invoice id -> customer id, kept by a fictional billing area

    def repoint(uow, merged_id, survivor_id):
        ids = [i for i, c in invoices.items() if c == merged_id]
        for i in ids:
            invoices[i] = survivor_id
        return ids

    def restore(uow, merged_id, survivor_id, ids):
        for i in ids:
            invoices[i] = merged_id

    new_refs = {"n": 0}
    service.register_reference_holder("invoices", repoint, restore=restore,
                                      new_references=lambda uow, sid, since: new_refs["n"])
    result = app.do("customer.merge", {"survivor": "SF-1", "merged": "SF-2", "reason": "duplicate"})
    assert result["fields"]["name"] == {"value": "Globex", "from": "survivor", "rule": "source_priority"}
    assert result["fields"]["address"]["from"] == "merged"
    assert result["fields"]["payment_terms_days"] == {"value": 30, "from": "survivor", "rule": "survivor"}
    assert result["changed"] == ["address", "email"]
    assert (result["children_moved"], result["contacts_moved"], result["repointed"]) == (1, 1, {"invoices": 2})
    assert invoices == {10: 1, 11: 1, 12: 1}
    assert app.query("customer", {"external_id": "SF-3"})["parent"] == "SF-1"
    assert [c["external_id"] for c in app.query("customer", {"external_id": "SF-1"})["contacts"]] == ["C-1"]
    (payload,) = [p for _, p in events(app, "customer.merged")]
    assert '"merged":"SF-2"' in payload and '"repointed":{"invoices":2}' in payload
    # a new reference to the survivor since the merge blocks the unmerge
    new_refs["n"] = 1
    err = refused(app.do, "customer.unmerge", {"merged": "SF-2", "reason": "not the same"})
    assert err.code == "conflict"
    assert err.message == "cannot unmerge SF-2: 1 invoices reference survivor SF-1 since the merge"
    new_refs["n"] = 0
    undone = app.do("customer.unmerge", {"merged": "SF-2", "reason": "not the same"})
    assert undone["restored"] == ["address", "email"] and undone["status"] == "active"
    assert invoices == {10: 2, 11: 2, 12: 1}
    s1, s2 = (app.query("customer", {"external_id": x}) for x in ("SF-1", "SF-2"))
    assert (s1["email"], s1["address"]) == (None, None)
    assert (s2["status"], s2["merged_into"], s2["email"]) == ("active", None, "ap@globex.com")
    assert app.query("customer", {"external_id": "SF-3"})["parent"] == "SF-2"
    assert [c["external_id"] for c in s2["contacts"]] == ["C-1"]
    assert len(events(app, "customer.unmerged")) == 1
    assert refused(app.do, "customer.unmerge", {"merged": "SF-2", "reason": "again"}).code == "validation_error"


def test_duplicates_are_listed_with_explained_scores_and_can_be_dismissed(app):
    up(app, "SF-1", name="Initech Inc.", country="US", postal_code="94105",
       address={"street": "500 Howard Street", "city": "San Francisco"})
    result = up(app, "HS-5", name="INITECH", country="USA", postal_code="94105",
                address={"street": "500 Howard St", "city": "San Francisco"})
    assert result["suspected_duplicates"] == [{"external_id": "SF-1", "score": "10.00", "decision": "match"}]
    dups = app.query("customer_duplicates", {})
    assert dups["count"] == 1
    item = dups["items"][0]
    assert (item["a"], item["b"], item["score"], item["decision"]) == ("SF-1", "HS-5", "10.00", "match")
    assert {f["field"]: f["points"] for f in item["fields"]} == {
        "name": 5.0, "street": 2.0, "city": 1.0, "postal_code": 1.5, "country": 0.5, "tax_id": 0.0, "domain": 0.0,
        "phone": 0.0}
    assert app.query("customer_quality", {})["uniqueness"] == "0.0"
    app.do("customer.dismiss_duplicate", {"a": "HS-5", "b": "SF-1", "reason": "two legal entities"})
    assert app.query("customer_duplicates", {})["count"] == 0
    assert app.do("customer.find_duplicates", {})["added"] == 0  # a dismissed pair is not listed again


def test_full_scan_finds_duplicates_among_stored_accounts(app):
    for n, name in enumerate(["Wayne Enterprises", "Wayne Enterprises Inc", "Stark Industries"], 1):
        up(app, f"SF-{n}", name=name, country="US", postal_code="10001")
    with app.unit_of_work() as uow:
        uow.execute("DELETE FROM customer_duplicate")
    scan = app.do("customer.find_duplicates", {})
    assert (scan["scanned"], scan["suspects"], scan["added"]) == (3, 1, 1)


def test_hierarchy_roll_up_uses_the_balance_providers(app, hooks):
    up(app, "TOP", name="Acme Holdings", country="US", currency="USD")
    up(app, "EU", name="Acme Europe", country="DE", parent="TOP", currency="EUR")
    up(app, "FR", name="Acme France", country="FR", parent="EU", currency="EUR")
    up(app, "US", name="Acme US", country="US", parent="TOP", currency="USD")
    with app.unit_of_work(write=False) as uow:
        ids = {c: get_customer(uow, c).id for c in ("TOP", "EU", "FR", "US")}
    book = {ids["EU"]: (100_00, 0, "EUR"), ids["FR"]: (250_50, 10_00, "EUR"), ids["US"]: (75_25, 0, "USD"),
            ids["TOP"]: [(1_000_00, 0, "USD")]}
    service.register_balance_provider(lambda uow, cids: {c: book[c] for c in cids if c in book}, name="test")
    h = app.query("customer_hierarchy", {"external_id": "FR"})
    assert (h["top"], h["ancestors"]) == ("TOP", ["EU", "TOP"])
    assert (h["open_balance"], h["credit_balance"]) == ("250.50", "10.00")
    assert h["top_rollup"]["balances"] == [
        {"currency": "EUR", "open_balance": "350.50", "credit_balance": "10.00"},
        {"currency": "USD", "open_balance": "1075.25", "credit_balance": "0.00"}]
    assert h["top_rollup"]["open_balance"] == "1075.25"  # the top parent's currency
    eu = app.query("customer_hierarchy", {"external_id": "EU"})
    assert eu["rollup"]["open_balance"] == "350.50"
    assert [(d["external_id"], d["depth"], d["open_balance"]) for d in eu["descendants"]] == [("FR", 1, "250.50")]
    top = app.query("customer_hierarchy", {"external_id": "TOP"})
    assert [(d["external_id"], d["depth"], d["rollup_open_balance"]) for d in top["descendants"]] == [
        ("EU", 1, "350.50"), ("FR", 2, "250.50"), ("US", 1, "75.25")]
    assert app.query("customer", {"external_id": "FR"})["open_balance"] == "250.50"
    with app.unit_of_work(write=False) as uow:
        assert [c.external_id for c in service.ancestors(uow, "FR")] == ["EU", "TOP"]
        assert [(c.external_id, d) for c, d in service.descendants(uow, "TOP")] == [("EU", 1), ("FR", 2), ("US", 1)]


def test_aliases_resolve_to_the_account(app):
    up(app, "SF-1", name="Globex", country="US")
    app.do("customer.link", {"external_id": "SF-1", "alias": "NETSUITE-4411", "system": "netsuite"})
    assert app.query("customer", {"external_id": "NETSUITE-4411"})["external_id"] == "SF-1"
    assert up(app, "NETSUITE-4411", region="NY")["external_id"] == "SF-1"
    up(app, "SF-2", name="Other", country="US")
    assert refused(app.do, "customer.link", {"external_id": "SF-2", "alias": "NETSUITE-4411"}).code == "conflict"
