"""Bank statement connectors against third-party samples (shared/samples) and hostile files of our own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.collections.connectors.camt import parse_camt
from closeloop.collections.connectors.csv_statement import parse_csv
from closeloop.collections.connectors.mt940 import parse_mt940
from closeloop.collections.model import candidate_references, is_valid_qr, is_valid_rf
from closeloop.core.errors import ValidationError
from tests.sample_files import samples_dir

SAMPLES = samples_dir()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "collections"
needs_samples = pytest.mark.skipif(not (SAMPLES / "camt053").is_dir(), reason="shared/samples not present")


def camt(name: str):
    return parse_camt((SAMPLES / "camt053" / name).read_bytes(), name)


def mt(name: str):
    return parse_mt940((SAMPLES / "mt940" / name).read_bytes(), name)


# --------------------------------------------------------------------------- camt.053 / camt.054 samples


@needs_samples
def test_camt053_v2_batch_of_two_debits():
    (st,) = camt("camt_parser-053-valid_example.xml")
    assert st.format == "camt.053.001.02"
    assert st.account == "DE14740618130000033626" and st.currency == "EUR" and st.servicer == "GENODEF1PFK"
    assert (st.opening_balance, st.closing_balance) == (3306, 2306)
    assert len({ln.entry for ln in st.lines}) == 4 and len(st.lines) == 5
    assert [ln.direction for ln in st.lines].count("credit") == 1
    batch = [ln for ln in st.lines if ln.entry == 4]
    assert [(ln.amount, ln.batch_size) for ln in batch] == [(350, 2), (250, 2)]
    assert [ln.end_to_end for ln in batch] == ["STZV-EtE27122013-11:02-1", "STZV-EtE27122013-11:02-2"]
    credit = next(ln for ln in st.lines if ln.direction == "credit")
    assert (credit.amount, credit.booking_date, credit.payer_name) == (100, "2013-12-27", "Testkonto Nummer 2")
    # opening + credits - debits = closing
    net = sum(ln.amount if ln.direction == "credit" else -ln.amount for ln in st.lines)
    assert st.opening_balance + net == st.closing_balance


@needs_samples
def test_camt053_v4_postfinance_batches_reversals_and_isr_references():
    (st,) = camt("camt_parser-053-valid_example_v4.xml")
    assert st.format == "camt.053.001.04" and st.account == "CH0309000000250090342"
    entries = {}
    for ln in st.lines:
        entries.setdefault(ln.entry, ln.direction)
    assert len(entries) == 13 and list(entries.values()).count("credit") == 5
    assert len(st.lines) == 32
    assert sum(1 for ln in st.lines if ln.reversal) == 2
    assert all(ln.direction == "debit" for ln in st.lines if ln.reversal)
    refs = [r for ln in st.lines for r in ln.references]
    assert len(refs) == 10
    isr = [r for r in refs if len(r) == 27 and r.isdigit()]
    assert len(isr) == 9 and all(is_valid_qr(r) for r in isr)
    batch = [ln for ln in st.lines if ln.entry == 7]
    assert len(batch) == 10 and sum(ln.amount for ln in batch) == 100000
    assert batch[1].payer_name == "Rutschmann Pia" and batch[1].references == ("000000000002016030002820804",)
    assert (st.opening_balance, st.closing_balance) == (32215216, 32268977)


@needs_samples
def test_camt053_v8_rf_and_qr_references():
    (st,) = camt("camt_parser-053-valid_example_v8.xml")
    assert st.format == "camt.053.001.08" and st.currency == "CHF"
    assert [(ln.direction, ln.amount, ln.currency) for ln in st.lines] == [
        ("credit", 47440, "CHF"), ("credit", 8885, "CHF"), ("debit", 2097, "EUR")]
    rf = st.lines[1].references[0]
    assert rf == "RF38000000000000000000552" and is_valid_rf(rf)
    assert ("rf", "000000000000000000552") in candidate_references("", st.lines[1].references)
    qr = st.lines[2].references[0]
    # a hand-edited sample: its check digit is wrong, so cash application reads it as free text only
    assert qr == "000000270148751802165444888" and len(qr) == 27 and not is_valid_qr(qr)
    assert "INVOICE R77561" in st.lines[0].text and st.lines[0].payer_name == "Jon Doe"


@needs_samples
def test_camt054_notifications_with_reversals():
    (nt,) = camt("camt_parser-054-valid_example.xml")
    assert nt.format == "camt.054.001.04"
    assert len({ln.entry for ln in nt.lines}) == 4 and len(nt.lines) == 5
    assert [ln.amount for ln in nt.lines] == [1500, 900, 5656, 600, 1553]
    assert [ln.reversal for ln in nt.lines] == [False, False, False, True, True]
    (v8,) = camt("camt054.v8.xml")
    assert v8.format == "camt.054.001.08" and len(v8.lines) == 3 and {ln.batch_size for ln in v8.lines} == {3}
    assert [(ln.amount, ln.currency) for ln in v8.lines] == [(310, "CHF"), (320, "CHF"), (320, "CHF")]
    assert sum(len(ln.references) for ln in v8.lines) == 4


@needs_samples
def test_genkgo_templates_multi_statement_and_versions():
    sts = camt("camt053.v2.multi.statement.xml")
    assert len(sts) == 2 and [len(s.lines) for s in sts] == [1, 1]
    assert [(s.lines[0].direction, s.lines[0].amount) for s in sts] == [("credit", 885), ("debit", 700)]
    for name, version in (("camt053.v2.with-party-ids.xml", "camt.053.001.02"), ("camt053.v3.xml", "camt.053.001.03"),
                          ("camt053.v8.xml", "camt.053.001.08")):
        (st,) = camt(name)
        assert st.format == version and len(st.lines) == 1
        line = st.lines[0]
        assert (line.direction, line.amount, line.currency) == ("credit", 885, "EUR")
        assert line.references == ("4654654654654654",)
    (v3,) = camt("camt053.v3.xml")
    assert v3.account == "NL26VAYB8060476890"


# --------------------------------------------------------------------------- MT940 samples


@needs_samples
@pytest.mark.parametrize(("name", "count", "credits", "currency", "closing"), [
    ("mt940-ASNB-0708271685_09022020_164516.940.txt", 8, 3, "EUR", 50123),
    ("mt940-betterplace-sepa_snippet.sta", 11, 8, "EUR", -447204909),
    ("mt940-cmxl-mt940.sta", 16, 7, "DEM", 5004000),
    ("mt940-jejik-abnamro.sta", 10, 0, "EUR", 87684),
    ("mt940-jejik-ing.sta", 7, 2, "EUR", 347),
    ("mt940-jejik-rabobank-iban.sta", 4, 0, "EUR", 93000),
    ("mt940-mBank-mt940.sta", 3, 3, "PLN", 43),
])
def test_mt940_samples(name, count, credits, currency, closing):
    (st,) = mt(name)
    assert len(st.lines) == count
    assert sum(1 for ln in st.lines if ln.direction == "credit") == credits
    assert st.lines[0].currency == currency
    assert st.closing_balance == closing


@needs_samples
def test_mt940_details():
    (asn,) = mt("mt940-ASNB-0708271685_09022020_164516.940.txt")
    first = asn.lines[0]
    assert (first.direction, first.amount, first.payer_account, first.payer_name) == (
        "debit", 6500, "NL47INGB9999999999", "hr gjlm paulissen")
    assert "Betaling sieraden" in first.text
    (rabo,) = mt("mt940-jejik-rabobank-iban.sta")
    assert rabo.account == "NL71RABO0123456789" and rabo.opening_balance == 96500
    assert rabo.lines[1].text == "Reference 201301234" and rabo.lines[1].payer_name == "JOHN DOE"
    (bp,) = mt("mt940-betterplace-sepa_snippet.sta")
    assert bp.lines[0].amount == 5099005 and bp.lines[0].text == "Verw CTSc-01 BC-PPP TFNr 22 004"
    assert bp.lines[0].end_to_end == "EndToEndId TFNR 22 004 00001"
    (mbank,) = mt("mt940-mBank-mt940.sta")
    assert [ln.amount for ln in mbank.lines] == [1, 1, 1] and mbank.account == "PL29114010810000267002001002"


# --------------------------------------------------------------------------- hostile and malformed files


@pytest.mark.parametrize(("name", "words"), [
    ("billion_laughs.xml", "unsafe XML"),
    ("xxe.xml", "unsafe XML"),
    ("external_dtd.xml", "unsafe XML"),
    ("truncated.xml", "not well-formed"),
    ("wrong_namespace.xml", "not an ISO 20022 camt.053/camt.054 document"),
    ("camt052_namespace.xml", "not an ISO 20022 camt.053/camt.054 document"),
    ("bad_amount.xml", "is not a decimal number"),
])
def test_hostile_xml_refused_quickly(name, words):
    data = (FIXTURES / name).read_bytes()
    started = time.perf_counter()
    with pytest.raises(ValidationError) as err:
        parse_camt(data, name)
    assert words in err.value.message and name in err.value.message
    assert time.perf_counter() - started < 2  # no entity expansion happened
    assert "root:" not in err.value.message  # /etc/passwd never read


def test_not_xml_and_empty():
    with pytest.raises(ValidationError, match="empty"):
        parse_camt(b"   ", "empty.xml")
    with pytest.raises(ValidationError, match="not well-formed"):
        parse_camt(b"date;amount\n", "x.xml")
    with pytest.raises(ValidationError, match="not an MT940"):
        parse_mt940(b"<xml/>", "x.sta")


def test_csv_with_mapping_and_defaults():
    data = ("Buchungstag;Betrag;Waehrung;Verwendungszweck;Auftraggeber;IBAN\n"
            "05.01.2026;1.234,50;EUR;RE INV-US01-000001;Globex;DE89 3704 0044 0532 0130 00\n"
            "06.01.2026;-12,00;EUR;Gebuehren;Bank;\n").encode("cp1252")
    mapping = {"date": "Buchungstag", "amount": "Betrag", "currency": "Waehrung", "remittance": ["Verwendungszweck"],
               "payer_name": "Auftraggeber", "payer_account": "IBAN",
               "options": {"decimal": ",", "date_format": "%d.%m.%Y"}}
    (st,) = parse_csv(data, "bank.csv", mapping)
    assert [(ln.booking_date, ln.direction, ln.amount) for ln in st.lines] == [
        ("2026-01-05", "credit", 123450), ("2026-01-06", "debit", 1200)]
    assert st.lines[0].payer_account == "DE89370400440532013000"
    (plain,) = parse_csv(b"date,amount,currency,reference\n2026-02-01,99.95,USD,INV-1\n", "plain.csv")
    assert plain.lines[0].amount == 9995 and plain.lines[0].references == ("INV-1",)


def test_csv_bad_rows_refused_with_line_numbers():
    with pytest.raises(ValidationError) as err:
        parse_csv((FIXTURES / "bad_rows.csv").read_bytes(), "bad_rows.csv",
                  {"date": "date", "amount": "amount", "currency": "currency", "remittance": "purpose",
                   "options": {"decimal": ","}})
    assert "line 3" in err.value.message
    with pytest.raises(ValidationError, match="not in the header"):
        parse_csv(b"a,b\n1,2\n", "x.csv", {"date": "Datum", "amount": "b"})


# --------------------------------------------------------------------------- bank CSV amounts: decimal comma or point


def _group(whole: int, sep: str) -> str:
    text = str(whole)
    parts = []
    while len(text) > 3:
        parts.insert(0, text[-3:])
        text = text[:-3]
    return sep.join([text, *parts])


def _csv_amounts(cells: list[str], delimiter: str = ";", mapping: dict | None = None) -> list[int]:
    rows = "".join(f'2026-01-20{delimiter}"{c}"{delimiter}USD\n' for c in cells)
    (st,) = parse_csv(f"date{delimiter}amount{delimiter}currency\n{rows}".encode(), "amounts.csv", mapping)
    return [ln.amount if ln.direction == "credit" else -ln.amount for ln in st.lines]


@given(minor=st.integers(0, 10**14), style=st.sampled_from(["de", "en", "plain_de", "plain_en", "ch"]),
       negative=st.booleans())
def test_csv_amount_in_either_style_reads_as_written(minor, style, negative):
    """Whatever the style, an amount with two decimals reads as the same minor units: never 100 times it."""
    whole, cents = divmod(minor, 100)
    text = {"de": f"{_group(whole, '.')},{cents:02d}", "en": f"{_group(whole, ',')}.{cents:02d}",
            "plain_de": f"{whole},{cents:02d}", "plain_en": f"{whole}.{cents:02d}",
            "ch": f"{_group(whole, chr(39))}.{cents:02d}"}[style]
    if negative and minor:
        text = "-" + text
    assert _csv_amounts([text]) == [-minor if negative and minor else minor]


def test_csv_amount_without_its_own_decimal_mark_takes_the_column_s_or_is_refused():
    assert _csv_amounts(["1.234", "150,00"]) == [123400, 15000]  # the column writes decimal commas
    assert _csv_amounts(["1,234", "150.00"], delimiter=",") == [123400, 15000]
    assert _csv_amounts(["1,234"], mapping={"date": "date", "amount": "amount", "currency": "currency",
                                            "options": {"decimal": "."}}) == [123400]
    assert _csv_amounts(["150", "(12.50)", "7,00-"]) == [15000, -1250, -700]
    with pytest.raises(ValidationError) as err:
        _csv_amounts(["1,234"])
    assert "line 2: column 'amount': amount '1,234' is ambiguous" in err.value.message
    assert "set options.decimal" in err.value.message and err.value.details["line"] == 2
    with pytest.raises(ValidationError) as err:  # mixed styles: each self-evident amount reads, "1.234" cannot
        _csv_amounts(["1.234,56", "1,234.56", "1.234"])
    assert err.value.details["line"] == 4 and "mixes decimal commas and decimal points" in err.value.message


@pytest.mark.parametrize(("cell", "words"), [
    ("1,5,0", "groups its digits wrongly"),
    ("12.34.5", "groups its digits wrongly"),
    ("1.234,5,6", "has ',' twice"),
    ("1e5", "is not a number"),
    ("1,001", "has more decimals than USD allows"),  # the options say decimal comma: 1.001 USD
    ("9" * 16 + ",00", "is out of range"),
])
def test_csv_malformed_amounts_are_refused_naming_line_and_column(cell, words):
    mapping = {"date": "date", "amount": "amount", "currency": "currency", "options": {"decimal": ","}}
    with pytest.raises(ValidationError) as err:
        _csv_amounts([cell], mapping=mapping)
    assert f"line 2: column 'amount': amount {cell!r}" in err.value.message and words in err.value.message


def test_csv_line_ends_huge_cells_nul_and_utf16():
    base = "date;amount;currency;payer\r2026-01-20;150,00;USD;Globex\r"
    (st,) = parse_csv(base.encode(), "cr.csv")
    assert [ln.amount for ln in st.lines] == [15000]
    (st,) = parse_csv(base.encode("utf-16"), "utf16.csv")
    assert [ln.amount for ln in st.lines] == [15000]
    with pytest.raises(ValidationError, match="huge.csv line 2: a cell longer than 1000000 characters"):
        parse_csv(base.replace("Globex", "G" * 1_000_001).encode(), "huge.csv")
    with pytest.raises(ValidationError, match="nul.csv line 2: contains a NUL character"):
        parse_csv(base.replace("Globex", "Glo\x00bex").replace("\r", "\n").encode(), "nul.csv")
    (empty,) = parse_csv(b"date;amount;currency\n", "header_only.csv")
    assert empty.lines == ()
    with pytest.raises(ValidationError, match="no date column"):
        parse_csv(b"when;amount;currency\n", "header_only.csv")


# --------------------------------------------------------------------------- bounds of statement text and amounts


def test_long_names_and_remittance_are_shortened_with_a_note_long_identifiers_refused():
    data = (b'date;amount;currency;payer;purpose;iban\n2026-01-20;150,00;USD;' + b"N" * 500 + b";" + b"R" * 5000
            + b";DE89370400440532013000\n")
    (st,) = parse_csv(data, "long.csv")
    (line,) = st.lines
    assert len(line.payer_name) == 300 and line.payer_name.endswith("\u2026") and len(line.text) == 4000
    assert line.notes == ("payer name shortened from 500 to 300 characters",
                          "remittance shortened from 5000 to 4000 characters")
    with pytest.raises(ValidationError) as err:
        parse_csv(data.replace(b"DE89370400440532013000", b"DE" + b"1" * 80), "long.csv")
    assert "entry 1: payer_account is 82 characters long; at most 64" in err.value.message
    assert err.value.details["field"] == "payer_account"


def test_camt_amounts_out_of_range_or_not_finite_are_refused():
    from tests.security.samples import CAMT053

    for amount, words in (("9" * 400 + ".00", "is out of range"), ("1E+999999", "is out of range"),
                          ("Infinity", "is not a non-negative USD amount"), ("1000000000000000", "is out of range")):
        with pytest.raises(ValidationError) as err:
            parse_camt(CAMT053.replace(b">150.00<", f">{amount}<".encode()), "big.xml")
        assert "statement 1, entry 1: amount" in err.value.message and words in err.value.message
    (st,) = parse_camt(CAMT053.replace(b">150.00<", b">999999999999999.99<"), "max.xml")
    assert st.lines[0].amount == 99999999999999999
