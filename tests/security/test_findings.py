"""Findings of the security review in areas whose engineers are still at work: each test states the behaviour
the area should have and fails today (strict xfail), so the fix is noticed. docs/reliability.md lists them.

The expected behaviour everywhere: a hostile file or body is refused with a CloseloopError (stable code,
the file, record or field named), and nothing of it is written."""

from __future__ import annotations

import json
import time

import pytest

from closeloop.collections.connectors import stripe
from closeloop.core.errors import CloseloopError
from closeloop.customers import webhook as crm_webhook
from tests.security import samples
from tests.security.conftest import attempt

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b'{"records": [{"Id": ' + b"9" * 5000 + b"}]}"


def refused(app, command, payload, **kw) -> CloseloopError:
    with pytest.raises(CloseloopError) as err:
        app.do(command, payload, **kw)
    assert str(err.value.code) == "validation_error", err.value
    return err.value


def xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


# --------------------------------------------------------------------------- customers (CRM import, webhook)
# Fixed: each former finding is now a specific refusal (or a correct reading) and writes nothing.


def test_crm_csv_with_cr_line_ends(app, files):
    data = samples.SALESFORCE_CSV.replace(b"\r\n", b"\r")
    result = app.do("customer.import", {"file": files(data), "format": "salesforce", "source": "crm"})
    assert result["created"] == 3
    # Rows keep their line numbers: a bad third row is named as line 3.
    bad = samples.SALESFORCE_CSV.replace(b'"Germany"', b'"Atlantis"').replace(b"001A00000", b"001C00000")
    out = app.do("customer.import", {"file": files(bad.replace(b"\r\n", b"\r")), "format": "salesforce",
                                     "source": "crm", "accept_valid": True})
    assert [(r["row"], r["field"]) for r in out["rejections"]] == [(3, "country")]


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-be"])
def test_crm_csv_in_utf32_is_read_by_its_byte_order_mark(app, files, codec):
    data = samples.SALESFORCE_CSV.decode().encode(codec)
    if codec == "utf-32-be":
        data = b"\x00\x00\xfe\xff" + data
    preview = app.query("customer_import_preview", {"file": files(data), "format": "salesforce", "source": "crm"})
    assert preview["files"][0]["encoding"] == "utf-32" and preview["created"] == 3
    result = app.do("customer.import", {"file": files(data), "format": "salesforce", "source": "crm"})
    assert result["created"] == 3 and app.query("customer", {"external_id": "001A000002"})["name"] == \
        "Globex Europe GmbH"


def test_crm_csv_in_utf32_without_a_byte_order_mark_is_refused(app, files):
    err = refused(app, "customer.import", {"file": files(samples.SALESFORCE_CSV.decode().encode("utf-32-le")),
                                           "format": "salesforce", "source": "crm"})
    assert "is not text: a NUL byte at offset 1" in err.message and err.details["field"] == "file"


def test_crm_csv_with_a_huge_first_line(app, files):
    err = refused(app, "customer.import", {"file": files(b"A" * 200_000), "format": "salesforce", "source": "crm"})
    assert "no header row naming known salesforce columns" in err.message and len(err.message) < 400
    assert err.details["record"].startswith("input")


def test_crm_csv_with_a_huge_cell_or_a_nul_names_the_line(app, files):
    huge = samples.SALESFORCE_CSV.replace(b"Initech Inc", b"I" * 1_200_000)
    err = refused(app, "customer.import", {"file": files(huge), "format": "salesforce", "source": "crm"})
    assert err.message.endswith("line 4: a cell longer than 1,000,000 characters") and err.details["line"] == 4
    nul = (samples.SALESFORCE_CSV + b'"001A000004","Hooli ' + b"x" * 5000 + b'","","","","","US","",""\r\n'
           b'"001A000005","Hoo\x00li","","","","","US","",""\r\n')  # past the first 4 KiB
    err = refused(app, "customer.import", {"file": files(nul), "format": "salesforce", "source": "crm"})
    assert err.message.endswith("line 6: contains a NUL character (not a text export?)")


def test_crm_tree_json_deeply_nested(app, files):
    err = refused(app, "customer.import", {"file": files(DEEP, ".json"), "format": "salesforce", "source": "crm"})
    assert "nested deeper than 64 levels" in err.message and err.details["record"].endswith(".json")


def test_crm_tree_json_huge_number(app, files):
    err = refused(app, "customer.import", {"file": files(HUGE_INT, ".json"), "format": "salesforce", "source": "crm"})
    assert "not acceptable JSON" in err.message and err.details["record"].endswith(".json")


def test_crm_tree_json_lone_surrogate(app, files):
    data = samples.SALESFORCE_TREE.replace(b"Hooli", b"Hoo\\ud800li", 1)
    err = refused(app, "customer.import", {"file": files(data, ".json"), "format": "salesforce", "source": "crm"})
    assert "unpaired surrogate" in err.message and err.details["field"] == "$.records[0].Name"


def test_crm_tree_json_attributes_not_an_object(app, files):
    data = b'{"records": [{"attributes": "Account", "Id": "001X", "Name": "Hooli", "BillingCountry": "US"}]}'
    err = refused(app, "customer.import", {"file": files(data, ".json"), "format": "salesforce", "source": "crm"})
    assert err.details["field"] == "attributes" and "must be an object" in err.message
    for bad, field in ((b'{"type": "Account", "referenceId": ["r"]}', "attributes.referenceId"),
                       (b'{"type": "Account"}, "Name": {"x": 1}', "Name")):
        data = b'{"records": [{"attributes": ' + bad + b', "Id": "001X", "BillingCountry": "US"}]}'
        err = refused(app, "customer.import", {"file": files(data, ".json"), "format": "salesforce", "source": "crm"})
        assert err.details["field"] == field, err.message


def test_crm_webhook_deep_or_huge_body(app):
    now = int(time.time())
    for body, reason in ((DEEP, "nested deeper than 64 levels"), (b'{"id": ' + b"9" * 5000 + b"}", "not acceptable"),
                         (b'{"id": "e1", "data": {"name": "\\ud800"}}', "unpaired surrogate")):
        with pytest.raises(CloseloopError) as err:
            crm_webhook.receive(app, body, {"X-Closeloop-Signature": crm_webhook.sign("s" * 20, body, now)},
                                secret="s" * 20, now=now)
        assert str(err.value.code) == "validation_error" and reason in err.value.message
        assert err.value.details["record"] == "CRM webhook body" and err.value.details["field"]


# --------------------------------------------------------------------------- contracts (opportunity import)


def test_opportunity_export_with_cr_line_ends_or_a_huge_cell(app, files):
    lines = files(samples.OPPORTUNITY_LINES_CSV)
    first = app.do("opportunity.import", {"file": files(samples.OPPORTUNITIES_CSV), "line_items": lines,
                                          "source": "crm"})
    again = app.do("opportunity.import", {"file": files(samples.OPPORTUNITIES_CSV.replace(b"\r\n", b"\r")),
                                          "line_items": lines, "source": "crm"})
    assert (first["created"], again["unchanged"]) == (1, 1)  # the same export, whatever its line ends
    err = refused(app, "opportunity.import", {"file": files(samples.OPPORTUNITIES_CSV.replace(
        b"Globex seats", b"G" * 200_000)), "line_items": lines, "source": "crm"})
    assert "line 2" in err.message and "name is longer than 255 characters" in err.message
    err = refused(app, "opportunity.import", {"file": files(samples.OPPORTUNITIES_CSV.replace(
        b"Globex seats", b"G" * 1_200_000)), "line_items": lines, "source": "crm"})
    assert err.message.endswith("line 2: a cell longer than 1,000,000 characters")


def test_opportunity_webhook_line_items_not_a_list(app):
    body = {"Id": "006X", "AccountId": "001X", "StageName": "Closed Won", "CloseDate": "2026-03-31",
            "CurrencyIsoCode": "USD"}
    for items, field in ((1, "OpportunityLineItems"), ({"records": "x"}, "OpportunityLineItems.records"),
                         ([{"ProductCode": "SEAT", "Quantity": 1}, 7], "OpportunityLineItems[1]")):
        err = refused(app, "opportunity.webhook", {"body": {**body, "OpportunityLineItems": items}}, source="crm")
        assert err.details["field"] == field and "must be a" in err.message, err.message
    assert app.query("opportunities", {})["count"] == 0


# --------------------------------------------------------------------------- collections (bank files, Stripe)
# Fixed: each test states the behaviour and the specific refusal; a refusal writes nothing (attempt() checks).


def test_bank_csv_decimal_comma_is_not_read_as_thousands(app, us01, files):
    """'150,00' is 150.00 (a thousands separator groups three digits); '1.234,56' and '1,234.56' read as written;
    '1,234' with nothing to tell its decimal mark is refused as ambiguous naming line and column."""
    result = app.do("bank.import", {"format": "csv", "file": files(samples.BANK_CSV), "entity": "US01"})
    payments = app.query("payments", {})["payments"]
    assert result["receipts"] == 1 and payments[0]["amount"] == "150.00", payments
    both = (b"date;amount;currency;purpose\n2026-01-21;1.234,56;USD;a\n2026-01-21;1.234;USD;b\n"
            b"2026-01-21;1,5;USD;c\n")
    assert app.do("bank.import", {"format": "csv", "file": files(both), "entity": "US01"})["receipts"] == 3
    points = b'date,amount,currency,purpose\n2026-01-22,"1,234.56",USD,d\n2026-01-22,"2,000",USD,e\n'
    assert app.do("bank.import", {"format": "csv", "file": files(points), "entity": "US01"})["receipts"] == 2
    amounts = sorted(p["amount"] for p in app.query("payments", {})["payments"])
    assert amounts == ["1.50", "1234.00", "1234.56", "1234.56", "150.00", "2000.00"], amounts
    out = attempt(app, "bank.import", {"format": "csv", "file": files(b"date;amount;currency\n2026-01-23;1,234;USD\n",
                                                                     ".csv"), "entity": "US01"})
    assert out.refused and "line 2: column 'amount': amount '1,234' is ambiguous" in out.error.message, out
    assert out.error.details["line"] == 2
    for amount, words in ((b"1,5,0", "groups its digits wrongly"), (b"150.00", "options.decimal is ','")):
        data = b"date;amount;currency\n2026-01-23;" + amount + b";USD\n"
        out = attempt(app, "bank.import", {"format": "csv", "file": files(data), "entity": "US01",
                                           "mapping": {"date": "date", "amount": "amount", "currency": "currency",
                                                       "options": {"decimal": ","}}})
        assert out.refused and words in out.error.message, (amount, out)


def test_bank_csv_cr_line_ends_or_huge_cell(app, us01, files):
    """CR-only line ends read like any others; a 200,000-character payer name is kept shortened to its column
    with a note; a cell over 1,000,000 characters is refused naming the file and line."""
    out = attempt(app, "bank.import", {"format": "csv", "file": files(samples.BANK_CSV.replace(b"\n", b"\r")),
                                       "entity": "US01"})
    assert not out.refused and out.result["receipts"] == 1, out
    data = samples.BANK_CSV.replace(b"Globex LLC", b"G" * 200_000).replace(b"2026-01-20", b"2026-01-21")
    out = attempt(app, "bank.import", {"format": "csv", "file": files(data), "entity": "US01"})
    assert not out.refused, out
    lines = app.query("bank_lines", {})["lines"]
    long_one = next(ln for ln in lines if ln["payer"] and ln["payer"].startswith("GGG"))
    assert len(long_one["payer"]) == 300 and "payer name shortened from 200000" in long_one["note"]
    out = attempt(app, "bank.import", {"format": "csv", "entity": "US01",
                                       "file": files(samples.BANK_CSV.replace(b"Globex LLC", b"G" * 1_100_000))})
    assert out.refused and "line 2: a cell longer than 1000000 characters" in out.error.message, out


def test_mt940_malformed_amount(app, us01, files):
    data = samples.MT940.replace(b"C150,00NTRF", b"C1,5,0NTRF")
    err = refused(app, "bank.import", {"format": "mt940", "file": files(data, ".sta"), "entity": "US01"})
    assert "line 5: field :61: amount '1,5,0' is not a SWIFT amount" in err.message
    assert (err.details["field"], err.details["line"]) == (":61:", 5)


def test_camt_amount_beyond_64_bits(app, us01, files):
    for amount in (b"9" * 400 + b".00", b"1E+999", b"1000000000000000.00"):
        data = samples.CAMT053.replace(b">150.00<", b">" + amount + b"<")
        out = attempt(app, "bank.import", {"format": "camt053", "file": files(data, ".xml"), "entity": "US01"})
        assert out.refused and "statement 1, entry 1: amount" in out.error.message, out
        assert "is out of range (at most 15 digits before the decimals)" in out.error.message


def test_statement_text_fields_are_bounded_and_clean(app, us01, files):
    """A 2 MB payer name is kept shortened to the 300-character column with a note (a statement is not refused
    for one long name); an over-long identifier is refused naming it; a NUL is refused on either database."""
    long_name = samples.CAMT053.replace(b"<Nm>Globex LLC</Nm>", b"<Nm>" + b"G" * 2_000_000 + b"</Nm>")
    out = attempt(app, "bank.import", {"format": "camt053", "file": files(long_name, ".xml"), "entity": "US01"})
    assert not out.refused and out.result["receipts"] == 1, out
    (line,) = app.query("bank_lines", {})["lines"]
    assert len(line["payer"]) == 300 and line["payer"].endswith("\u2026")
    assert "payer name shortened from 2000000 to 300 characters" in line["note"]
    long_id = samples.CAMT053.replace(b"E2E-1", b"E" * 300).replace(b"STMT-2026-01-20", b"STMT-2")
    out = attempt(app, "bank.import", {"format": "camt053", "file": files(long_id, ".xml"), "entity": "US01"})
    assert out.refused and "end_to_end is 300 characters long; at most 128" in out.error.message, out
    nul = samples.MT940.replace(b"GLOBEX LLC", b"GLOBEX\x00LLC")
    err = refused(app, "bank.import", {"format": "mt940", "file": files(nul, ".sta"), "entity": "US01"})
    assert "line 6: contains a NUL character" in err.message


def _signed(app, event_or_body):
    app.services.config["stripe_webhook_secret"] = "whsec_" + "x" * 20
    body = event_or_body if isinstance(event_or_body, bytes) else json.dumps(event_or_body).encode()
    return {"body": body.decode(), "signature": stripe.sign("whsec_" + "x" * 20, body, int(app.clock.now().timestamp()))}


def test_signed_stripe_event_without_object_id_or_with_a_bad_created(app, us01):
    now = int(app.clock.now().timestamp())
    cases = [
        ({"id": "evt_1", "type": "payment_intent.succeeded", "created": now, "data": {"object": {}}},
         "data.object.id", "is missing"),
        ({"id": "evt_2", "type": "payment_intent.succeeded", "created": [1], "data": {"object": {"id": "pi"}}},
         "created", "must be a Unix timestamp"),
        ({"id": "evt_3", "type": "payment_intent.succeeded", "created": now,
          "data": {"object": {"id": "pi", "amount": "150", "currency": "usd"}}}, "data.object.amount",
         "must be an integer amount"),
        ({"id": "evt_4", "type": "charge.refunded", "created": now,
          "data": {"object": {"id": "ch", "refunds": {"data": [{"id": "re", "amount": 1.5}]}}}},
         "data.object.refunds.data[0].amount", "must be an integer amount"),
    ]
    for event, field, words in cases:
        out = attempt(app, "provider.webhook", _signed(app, event))
        assert out.refused and str(out.error.code) == "validation_error", (event, out)
        assert out.error.details["field"] == field and words in out.error.message, (field, out.error.message)
        assert out.error.details["record"] == event["id"]


def test_signed_stripe_body_deep_or_huge(app, us01):
    for body, words in ((DEEP, "nested deeper than 64 levels"), (b'{"id": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
                        (b'{"id": "evt_\\u0000"}', "NUL")):
        out = attempt(app, "provider.webhook", _signed(app, body))
        assert out.refused and words in out.error.message, out
        assert out.error.details["record"] == "webhook body"


# --------------------------------------------------------------------------- API


def test_api_deeply_nested_body(app, us01):
    from fastapi.testclient import TestClient

    from tests.api.conftest import make_server

    server = make_server(app, {"admin1": (["admin"], [])})
    client = TestClient(server.asgi, raise_server_exceptions=False)
    for content in (DEEP, b'{"code": ' * 70 + b"1" + b"}" * 70):
        response = client.post("/api/v1/commands/entity.create", content=content,
                               headers={**server.headers("admin1"), "Content-Type": "application/json"})
        assert response.status_code == 422, (response.status_code, response.text[:200])
        assert response.json()["code"] == "validation_error"
        assert "nested deeper than 64 levels" in response.json()["message"]
