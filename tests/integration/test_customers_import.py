"""CRM imports against the real Salesforce samples and our HubSpot fixture: reports, all-or-nothing, re-import."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.core.errors import CloseloopError
from tests.sample_files import samples_dir

SAMPLES = samples_dir() / "salesforce"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "customers"

needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/samples/salesforce is not laid out here")


def counts(report):
    return {k: report[k] for k in ("rows_read", "created", "updated", "unchanged", "rejected", "skipped")}


def table_count(app, table):
    with app.unit_of_work(write=False) as uow:
        return int(uow.scalar(f"SELECT COUNT(*) FROM {table}"))


def do_import(app, files, fmt="salesforce", **extra):
    files = [str(f) for f in (files if isinstance(files, list) else [files])]
    return app.do("customer.import", {"file": files, "format": fmt, **extra})


@needs_samples
def test_data_loader_export_is_all_or_nothing_then_accept_valid_then_idempotent(app):
    path = SAMPLES / "dataloader-accountData.csv"
    with pytest.raises(CloseloopError) as exc:
        do_import(app, path)
    err = exc.value
    assert err.code == "validation_error"
    assert err.message.startswith("import refused: 3 of 423 rows rejected, nothing was imported (first:"
                                  " dataloader-accountData.csv line 422, country: required to create an account)")
    report = err.details["report"]
    assert counts(report) == {"rows_read": 423, "created": 420, "updated": 0, "unchanged": 0, "rejected": 3,
                              "skipped": 0}
    assert report["files"][0]["encoding"] == "cp1252" and report["files"][0]["layout"] == "dataloader_csv"
    assert [(r["row"], r["external_id"], r["field"]) for r in report["rejections"]] == [
        (422, "001x0000002rlXpAAI", "country"), (423, "001x00000032cp3AAA", "country"),
        (424, "001x00000032aQtAAI", "country")]
    assert table_count(app, "customer") == 0 and table_count(app, "event") == 0

    report = do_import(app, path, accept_valid=True)
    assert counts(report) == {"rows_read": 423, "created": 420, "updated": 0, "unchanged": 0, "rejected": 3,
                              "skipped": 0}
    assert report["quality"] == {"score": "89.3", "completeness": "66.4", "validity": "98.3", "uniqueness": "99.5",
                                 "hierarchy": "100.0"}
    assert report["suspected_duplicates"] == 1
    rejected = app.query("exceptions", {"kind": "import_rejected"})
    assert rejected["count"] == 3
    assert rejected["items"][0]["message"] == ("dataloader-accountData.csv line 422 (account 001x0000002rlXpAAI):"
                                               " country: required to create an account")
    # Windows-1252 decoded: the Madrid address keeps its ordinal indicator.
    madrid = [c for c in app.query("customers", {"country": "ES", "limit": 10})["items"]]
    streets = [app.query("customer", {"external_id": c["external_id"]})["address"]["street"] for c in madrid]
    assert any("º" in s for s in streets)
    # US / USA / United States all became US; the Canadian province CN is kept and reported
    assert app.query("customers", {"country": "US", "limit": 1})["count"] == 365  # 358 US, 5 United States, 2 USA
    assert any(w["reason"] == "'CN' is not a region of CA" for w in report["warnings"])

    before = (table_count(app, "customer"), table_count(app, "event"), table_count(app, "exception_item"),
              table_count(app, "customer_change"))
    again = do_import(app, path, accept_valid=True)
    assert counts(again) == {"rows_read": 423, "created": 0, "updated": 0, "unchanged": 420, "rejected": 3,
                             "skipped": 0}
    after = (table_count(app, "customer"), table_count(app, "event"), table_count(app, "exception_item"),
             table_count(app, "customer_change"))
    assert after == before


@needs_samples
def test_dry_run_writes_nothing(app):
    report = app.query("customer_import_preview", {"file": str(SAMPLES / "dataloader-accountData.csv"),
                                                   "format": "salesforce"})
    assert report["dry_run"] is True and report["created"] == 420
    assert table_count(app, "customer") == 0 and table_count(app, "audit_log") == 0


@needs_samples
def test_tree_json_accounts_with_contacts_referencing_them(app):
    report = do_import(app, [SAMPLES / "apex-recipes-Accounts.json", SAMPLES / "apex-recipes-Contacts.csv"])
    assert counts(report) == {"rows_read": 200, "created": 50, "updated": 0, "unchanged": 0, "rejected": 0,
                              "skipped": 0}
    assert report["contacts"] == {"created": 150, "updated": 0, "unchanged": 0, "rejected": 0}
    assert [f["layout"] for f in report["files"]] == ["tree_json", "csv"]
    assert table_count(app, "customer_contact") == 150
    found = app.query("customers", {"search": "Zoonoodle 37"})["items"]
    assert len(found) == 1
    zoo = app.query("customer", {"external_id": found[0]["external_id"]})
    assert (zoo["country"], zoo["region"], zoo["postal_code"]) == ("US", "DE", "19725")
    assert zoo["external_id"].startswith("NK-")  # no Salesforce Id in a tree file: a natural key
    # the same accounts as a lower-case API-name CSV are the same natural keys: nothing new
    again = do_import(app, SAMPLES / "apex-recipes-Accounts.csv")
    assert (again["created"], again["unchanged"]) == (0, 50)


@needs_samples
def test_contacts_without_their_accounts_are_rejected_with_the_reference(app):
    with pytest.raises(CloseloopError) as exc:
        do_import(app, SAMPLES / "apex-recipes-Contacts.csv")
    first = exc.value.details["report"]["rejections"][0]
    assert (first["row"], first["object"], first["field"], first["reason"]) == (
        2, "contact", "account", "account '@AccountRef10' is not in the file")


@needs_samples
def test_report_style_csv_with_bom_labels_and_short_rows(app, tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("defaults:\n  country: US\n")
    report = do_import(app, SAMPLES / "lwc-recipes-Accounts-Contacts.csv", mapping=str(mapping))
    assert report["files"][0]["encoding"] == "utf-8-sig" and report["files"][0]["layout"] == "report_csv"
    assert counts(report) == {"rows_read": 20, "created": 10, "updated": 0, "unchanged": 0, "rejected": 0,
                              "skipped": 4}
    assert report["contacts"]["created"] == 6
    alpha = app.query("customers", {"search": "Alpha Dynamics"})["items"][0]
    contacts = app.query("customer", {"external_id": alpha["external_id"]})["contacts"]
    assert [c["email"] for c in contacts] == ["amy@demo.net", "jennifer@demo.net", "caroline@demo.net"]


@needs_samples
def test_tree_json_without_country_needs_a_default(app, tmp_path):
    files = [SAMPLES / "lwc-recipes-Accounts.json", SAMPLES / "lwc-recipes-Contacts.json"]
    with pytest.raises(CloseloopError) as exc:
        do_import(app, files)
    assert exc.value.details["report"]["rejected"] == 16
    mapping = tmp_path / "m.yaml"
    mapping.write_text("defaults:\n  country: US\n")
    report = do_import(app, files, mapping=str(mapping))
    assert (report["created"], report["contacts"]["created"]) == (10, 6)


@needs_samples
def test_ebikes_tree_file(app):
    report = do_import(app, SAMPLES / "ebikes-lwc-Accounts.json")
    assert report["created"] == 3
    names = sorted(c["name"] for c in app.query("customers", {})["items"])
    assert names == ["Northern Trail Cycling", "Trailblazers", "Wheelworks"]


def test_hubspot_export_with_vat_mapping(app):
    with pytest.raises(CloseloopError) as exc:
        do_import(app, FIXTURES / "hubspot-companies.csv", "hubspot", mapping=str(FIXTURES / "hubspot-mapping.yaml"))
    report = exc.value.details["report"]
    assert [(r["row"], r["external_id"], r["field"], r["reason"]) for r in report["rejections"]] == [
        (9, "HS-5301234008", "country", "'Atlantis' is not an ISO 3166 country"),
        (11, "HS-5301234010", "parent", "parent HS-5309999999 does not exist in the file or the customer master")]
    assert report["quality"]["hierarchy"] == "50.0"
    report = do_import(app, FIXTURES / "hubspot-companies.csv", "hubspot",
                       mapping=str(FIXTURES / "hubspot-mapping.yaml"), accept_valid=True)
    assert counts(report) == {"rows_read": 10, "created": 8, "updated": 0, "unchanged": 0, "rejected": 2,
                              "skipped": 0}
    hamburg = app.query("customer", {"external_id": "HS-5301234002"})
    assert (hamburg["parent"], hamburg["country"], hamburg["region"]) == ("HS-5301234001", "DE", "HH")
    omega = app.query("customer", {"external_id": "HS-5301234007"})
    assert (omega["name"], omega["tax_id"], omega["tax_id_valid"]) == ("Ωmega Systems", "EL094259216", True)
    assert [(d["external_id"], d["other"], d["decision"]) for d in report["duplicates"]] == [
        ("HS-5301234004", "HS-5301234005", "match")]
    listed = app.query("customer_duplicates", {})["items"]
    assert [(d["a"], d["b"]) for d in listed] == [("HS-5301234004", "HS-5301234005")]


def test_salesforce_hierarchy_custom_fields_and_governance_conflicts(app, tmp_path):
    mapping = str(FIXTURES / "salesforce-mapping.yaml")
    report = do_import(app, FIXTURES / "salesforce-hierarchy.csv", mapping=mapping)
    assert counts(report)["created"] == 4
    fr = app.query("customer", {"external_id": "0015g00000Fr001AAA"})
    assert (fr["parent"], fr["tax_id"], fr["payment_terms_days"]) == ("0015g00000EuRo1AAA", "FR40303265045", 30)
    h = app.query("customer_hierarchy", {"external_id": "0015g00000Fr001AAA"})
    assert h["ancestors"] == ["0015g00000EuRo1AAA", "0015g00000HoLd1AAA"]
    # Billing changes the payment terms; the next CRM export still carries the old value.
    app.do("customer.upsert", {"external_id": "0015g00000HoLd1AAA", "source": "billing", "payment_terms_days": 60})
    text = (FIXTURES / "salesforce-hierarchy.csv").read_text().replace('"Acme Holdings Inc."', '"Acme Holdings Corp"')
    changed = tmp_path / "accounts.csv"
    changed.write_text(text)
    report = do_import(app, changed, mapping=mapping)
    assert counts(report) == {"rows_read": 4, "created": 0, "updated": 1, "unchanged": 3, "rejected": 0,
                              "skipped": 0}
    assert [(c["external_id"], c["field"], c["old"], c["new"], c["owners"]) for c in report["conflicts"]] == [
        ("0015g00000HoLd1AAA", "payment_terms_days", 60, 45, ["billing"])]
    top = app.query("customer", {"external_id": "0015g00000HoLd1AAA"})
    assert (top["name"], top["payment_terms_days"]) == ("Acme Holdings Corp", 60)
    assert app.query("exceptions", {"kind": "not_owner"})["count"] == 1


def test_a_parent_cycle_inside_a_file_is_rejected(app, tmp_path):
    path = tmp_path / "cycle.csv"
    path.write_text('"Id","Name","ParentId","BillingCountry"\n"A","Alpha","B","US"\n"B","Beta","A","US"\n'
                    '"C","Gamma","","US"\n')
    with pytest.raises(CloseloopError) as exc:
        do_import(app, path)
    rejections = exc.value.details["report"]["rejections"]
    assert [(r["row"], r["field"], r["reason"]) for r in rejections] == [
        (2, "parent", "parent B would make a cycle (A -> B -> A)"),
        (3, "parent", "parent A would make a cycle (B -> A -> B)")]


@pytest.mark.parametrize("name, expected", [
    ("truncated.csv", (4, "(row)", "truncated or malformed: unexpected end of data (the file ends inside a quoted"
                                   " field?)")),
    ("wrong-delimiter.csv", (3, "(row)", "has 1 field where the header has 3: wrong delimiter (the header uses"
                                         " ';')")),
])
def test_malformed_rows_are_rejected_by_line(app, name, expected):
    with pytest.raises(CloseloopError) as exc:
        do_import(app, FIXTURES / name)
    (r,) = exc.value.details["report"]["rejections"]
    assert (r["row"], r["field"], r["reason"]) == expected
    assert table_count(app, "customer") == 0


@pytest.mark.parametrize("name, message", [
    ("no-header.csv", "file no-header.csv: no header row naming known salesforce columns (expected e.g. Id, Name,"
                      " BillingCountry); the first line reads 'Alpha Ltd, GB, London'"),
    ("truncated.json", "file truncated.json: not valid JSON (Expecting ',' delimiter at line 1 column 95)"),
])
def test_unreadable_files_are_refused_whole(app, name, message):
    with pytest.raises(CloseloopError) as exc:
        do_import(app, FIXTURES / name)
    assert (exc.value.code, exc.value.message) == ("validation_error", message)


def test_bad_encoding_when_one_is_forced(app, tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("encoding: utf-8\n")
    with pytest.raises(CloseloopError) as exc:
        do_import(app, FIXTURES / "cp1252.csv", mapping=str(mapping))
    assert exc.value.message == ("file cp1252.csv is not utf-8: UnicodeDecodeError at byte 40 (line 2)")
    report = do_import(app, FIXTURES / "cp1252.csv")
    assert report["files"][0]["encoding"] == "cp1252"
    assert app.query("customer", {"external_id": "001A"})["name"] == "Café Noir SARL"


def test_mapping_file_errors_are_listed(app, tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("fields:\n  vat: VAT__c\ncolour: red\n")
    with pytest.raises(CloseloopError) as exc:
        do_import(app, FIXTURES / "salesforce-hierarchy.csv", mapping=str(mapping))
    assert exc.value.details["errors"][0].startswith("unknown key 'colour'")
    assert exc.value.details["errors"][1].startswith("fields.vat: not an account field")
