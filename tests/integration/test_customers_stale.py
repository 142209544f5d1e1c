"""System-of-record governance in time: a value a source dates earlier than what the same source already gave
for that field of the account is stale, is not applied, and is reported (docs/customers.md, "Stale changes")."""

from __future__ import annotations

import pytest

from closeloop.core.errors import CloseloopError

HEADER = '"ID","NAME","BILLINGCOUNTRY","WEBSITE","LASTMODIFIEDDATE","SYSTEMMODSTAMP"\r\n'


def export(tmp_path, name, *rows):
    """A Data Loader account export: rows of (id, name, country, website, LastModifiedDate, SystemModstamp)."""
    path = tmp_path / name
    path.write_text(HEADER + "".join(",".join(f'"{v}"' for v in row) + "\r\n" for row in rows))
    return str(path)


def imported(app, path, **extra):
    return app.do("customer.import", {"file": path, "format": "salesforce", "source": "crm", **extra})


def webhook(app, event_id, occurred_at, **data):
    return app.do("crm.event", {"event": {"id": event_id, "type": "account.upserted", "source": "crm",
                                          "occurred_at": occurred_at, "data": {"external_id": "001A", **data}}},
                  source="crm")


def customer(app):
    return app.query("customer", {"external_id": "001A"})


def count(app, table):
    with app.unit_of_work(write=False) as uow:
        return int(uow.scalar(f"SELECT COUNT(*) FROM {table}"))


def test_an_older_export_keeps_newer_webhook_values_and_applies_its_own_newer_fields(app, tmp_path):
    imported(app, export(tmp_path, "jan1.csv", ("001A", "Globex Inc", "US", "https://globex.example", "2026-01-01T10:00:00.000Z", "")))
    assert webhook(app, "evt-1", "2026-01-05T10:00:00Z", name="Globex Holdings Inc")["outcome"] == "updated"
    # An export taken on January 3rd: its name is older than the webhook's, its website newer than January 1st.
    jan3 = export(tmp_path, "jan3.csv", ("001A", "Globex Inc", "US", "https://globex.example.com",
                                         "2026-01-03T09:00:00.000Z", "2026-01-03T09:30:00.000Z"))
    preview = app.query("customer_import_preview", {"file": jan3, "format": "salesforce", "source": "crm"})
    report = imported(app, jan3)
    assert {k: report[k] for k in ("updated", "stale", "unchanged")} == {"updated": 1, "stale": 0, "unchanged": 0}
    assert report["stale_fields"] == preview["stale_fields"] == [{
        "file": "jan3.csv", "row": 2, "external_id": "001A", "field": "name", "kept": "Globex Holdings Inc",
        "ignored": "Globex Inc", "modified_at": "2026-01-03T09:30:00.000000Z",  # the later of the two columns
        "stored_modified_at": "2026-01-05T10:00:00.000000Z"}]
    assert (customer(app)["name"], customer(app)["website"]) == ("Globex Holdings Inc", "https://globex.example.com")
    history = app.query("customer_history", {"external_id": "001A"})["changes"]
    assert [(c["kind"], c["field"], c["new"]) for c in history] == [
        ("webhook", "name", "Globex Holdings Inc"), ("import", "website", "https://globex.example.com")]


def test_a_row_whose_every_change_is_stale_is_skipped_and_counted_and_writes_nothing(app, tmp_path):
    old = export(tmp_path, "old.csv", ("001A", "Globex Inc", "US", "", "2026-01-01T10:00:00.000Z", ""))
    imported(app, old)
    webhook(app, "evt-1", "2026-01-05T10:00:00Z", name="Globex Holdings Inc")
    before = (count(app, "customer_change"), count(app, "customer_source_stamp"))
    report = imported(app, old)
    assert {k: report[k] for k in ("created", "updated", "unchanged", "stale")} == {
        "created": 0, "updated": 0, "unchanged": 0, "stale": 1}
    assert (count(app, "customer_change"), count(app, "customer_source_stamp")) == before
    assert customer(app)["name"] == "Globex Holdings Inc"
    # A newer export wins again.
    newer = export(tmp_path, "new.csv", ("001A", "Globex Group", "US", "", "2026-01-06T08:00:00.000Z", ""))
    assert imported(app, newer)["updated"] == 1 and customer(app)["name"] == "Globex Group"


def test_an_older_webhook_event_does_not_overwrite_a_newer_export(app, tmp_path):
    imported(app, export(tmp_path, "feb.csv", ("001A", "Globex Inc", "US", "", "2026-02-01T10:00:00.000Z", "")))
    late = webhook(app, "evt-old", "2026-01-20T10:00:00+01:00", name="Globex Old Name", website="https://g.example")
    assert (late["status"], late["outcome"], late["changed"]) == ("applied", "updated", ["website"])
    assert late["stale"] == [{"field": "name", "modified_at": "2026-01-20T09:00:00.000000Z",
                              "stored_modified_at": "2026-02-01T10:00:00.000000Z"}]
    only_stale = webhook(app, "evt-older", "2026-01-10T10:00:00Z", name="Globex Older Name")
    assert (only_stale["outcome"], only_stale["changed"]) == ("stale", [])
    assert customer(app)["name"] == "Globex Inc"


def test_times_are_compared_per_source_and_undated_changes_apply_as_before(app, tmp_path):
    imported(app, export(tmp_path, "crm.csv", ("001A", "Globex Inc", "US", "", "2026-03-01T10:00:00.000Z", "")))
    # billing owns payment terms; its own clock has nothing to do with the CRM's
    out = app.do("customer.upsert", {"external_id": "001A", "payment_terms_days": 45,
                                     "modified_at": "2020-01-01T00:00:00Z"}, source="billing")
    assert out["status"] == "updated" and customer(app)["payment_terms_days"] == 45
    # an undated CRM change is applied (nothing to compare) and records no time
    stamps = count(app, "customer_source_stamp")
    app.do("customer.upsert", {"external_id": "001A", "name": "Globex Undated"}, source="crm")
    assert customer(app)["name"] == "Globex Undated" and count(app, "customer_source_stamp") == stamps


def test_unreadable_modification_times(app, tmp_path):
    report = imported(app, export(tmp_path, "odd.csv", ("001A", "Globex Inc", "US", "", "1/5/2026 10:00 AM", "")))
    assert report["created"] == 1
    assert [(w["field"], w["reason"]) for w in report["warnings"]] == [
        ("last_modified", "'1/5/2026 10:00 AM' is not a timestamp (ISO 8601 such as 2026-01-05T10:00:00Z, or Unix"
                          " time); the row is applied without the stale check")]
    with pytest.raises(CloseloopError) as err:
        webhook(app, "evt-bad", "next tuesday", name="X")
    assert (err.value.code, err.value.details["field"]) == ("validation_error", "event.occurred_at")
    with pytest.raises(CloseloopError) as err:
        app.do("customer.upsert", {"external_id": "001A", "name": "X", "modified_at": "1969-12-31"}, source="crm")
    assert err.value.details["field"] == "modified_at" and "before 1970" in err.value.message


def test_reimporting_the_same_dated_export_writes_nothing_but_its_history(app, tmp_path):
    path = export(tmp_path, "a.csv", ("001A", "Globex Inc", "US", "https://globex.example", "2026-01-01T10:00:00Z", ""))
    imported(app, path)
    assert count(app, "customer_source_stamp") == 3  # name, country, website
    before = {t: count(app, t) for t in ("customer_change", "customer_source_stamp", "event")}
    assert imported(app, path)["unchanged"] == 1
    assert {t: count(app, t) for t in before} == before
