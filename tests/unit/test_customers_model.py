"""Customer master, pure functions: normalisation, tax ids, validation, hierarchy, survivorship, quality."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.core.money import check_currency
from closeloop.customers.model import (
    LEGAL_FORMS,
    FieldOrigin,
    QualityInput,
    address_key,
    ancestors,
    clean,
    creates_cycle,
    descendants,
    domain_of,
    name_key,
    name_tokens,
    normalise_country,
    normalise_email,
    normalise_postal_code,
    normalise_region,
    quality_score,
    source_time,
    stale_fields,
    survive,
    validate_fields,
)
from closeloop.customers.taxid import TaxIdError, check_tax_id

# --------------------------------------------------------------------------- country, region, postcode


@pytest.mark.parametrize("given_value, code", [
    ("US", "US"), ("us", "US"), ("USA", "US"), ("U.S.A.", "US"), ("United States", "US"),
    ("united states of america", "US"), ("UK", "GB"), ("United Kingdom", "GB"), ("Great Britain", "GB"),
    ("DEU", "DE"), ("Germany", "DE"), ("Deutschland", "DE"), ("Canada", "CA"), ("CA", "CA"), ("NI", "NI"),
    ("Netherlands", "NL"), ("Holland", "NL"), ("Côte d'Ivoire", "CI"), ("  france ", "FR"), ("GRC", "GR"),
])
def test_country_spellings_normalise_to_iso_alpha2(given_value, code):
    assert normalise_country(given_value) == code


@pytest.mark.parametrize("value", ["Atlantis", "", "XX", "Narnia", "U"])
def test_unknown_countries_are_none(value):
    assert normalise_country(value) is None


def test_regions_become_subdivision_codes_and_unknown_ones_are_reported():
    assert normalise_region("US", "California") == ("CA", None)
    assert normalise_region("US", "ny") == ("NY", None)
    assert normalise_region("CA", "Ontario") == ("ON", None)
    assert normalise_region("CA", "CN") == ("CN", "'CN' is not a region of CA")
    assert normalise_region("GB", "CHESHIRE") == ("CHESHIRE", None)
    assert normalise_region("DE", "Berlin") == ("BE", None)
    assert normalise_region("US", "  ") == (None, None)


def test_postal_codes():
    assert normalise_postal_code("US", "2203") == ("02203", "ZIP code '2203' lost its leading zeros; read as 02203")
    assert normalise_postal_code("US", "94105-1234") == ("94105-1234", None)
    assert normalise_postal_code("CA", "t2l-2k7") == ("T2L 2K7", None)
    assert normalise_postal_code("GB", "sk4 3px") == ("SK4 3PX", None)
    assert normalise_postal_code("DE", "1011") == ("1011", "'1011' is not a DE postal code")
    assert normalise_postal_code("NI", "00000") == ("00000", None)


def test_email_domain_and_names():
    assert normalise_email(" Billing@ACME.Example.COM ") == "Billing@acme.example.com"
    assert normalise_email("not an email") is None
    assert domain_of("ap@globex.com", None) == "globex.com"
    assert domain_of("someone@gmail.com", "https://www.globex.co.uk/about") == "globex.co.uk"
    assert domain_of(None, "http://www.salesforce.com") == "salesforce.com"
    assert domain_of(None, "not a site") is None
    assert name_tokens("The Globex Corporation, Inc.") == ("globex",)
    assert name_key("Société Générale S.A.") == "societe generale"
    assert name_key("Smith & Jones LLP") == "smith jones"
    assert name_key("Inc.") == "inc"  # nothing but a legal form: kept rather than emptied
    assert address_key("150 Chestnut Street, Suite 3") == "150 chestnut st ste 3"


@given(st.text(max_size=60))
def test_clean_is_idempotent_and_has_no_outer_or_double_spaces(text):
    once = clean(text)
    assert clean(once) == once
    assert once == once.strip() and "  " not in once


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZéèüöäçñßø0123456789 .,-", max_size=40),
       st.sampled_from(["Inc", "Inc.", "LLC", "Ltd", "GmbH", "Corporation", ""]))
def test_name_key_ignores_case_punctuation_and_legal_form(name, form):
    base = name_key(name)
    if base and not set(base.split()) & LEGAL_FORMS:
        assert name_key(f"{name.upper()}, {form}") == base
        assert name_key(base) == base


# --------------------------------------------------------------------------- tax ids


@pytest.mark.parametrize("raw, country, value, scheme", [
    ("DE 136 695 976", "DE", "DE136695976", "eu.vat"),
    ("136695976", "DE", "DE136695976", "eu.vat"),
    ("094259216", "GR", "EL094259216", "eu.vat"),
    ("FR40303265045", "DE", "FR40303265045", "eu.vat"),  # a foreign VAT registration keeps its prefix
    ("GB 980 7806 84", "GB", "GB980780684", "gb.vat"),
    ("980780684", "GB", "GB980780684", "gb.vat"),
    ("042103594", "US", "04-2103594", "us.ein"),
    ("CHE-116.281.710 MWST", "CH", "CHE116281710MWST", "ch.vat"),
])
def test_tax_ids_are_validated_and_normalised(raw, country, value, scheme):
    checked = check_tax_id(raw, country)
    assert (checked.value, checked.check, checked.scheme) == (value, "checksum", scheme)


@pytest.mark.parametrize("raw, country, reason", [
    ("DE136695977", "DE", "checksum does not match (eu.vat)"),
    ("GB980780685", "GB", "checksum does not match (gb.vat)"),
    ("00-0000000", "US", "a component of the number is invalid (us.ein)"),
    ("123-45-6789x", "US", "wrong format (us.ein)"),
    ("12345", "DE", "wrong length (de.vat)"),
])
def test_invalid_tax_ids_say_why(raw, country, reason):
    with pytest.raises(TaxIdError) as exc:
        check_tax_id(raw, country)
    assert exc.value.reason == reason


def test_a_country_without_a_validator_checks_the_format_only():
    assert check_tax_id("NI-1234567", "NI").check in ("format", "checksum")
    with pytest.raises(TaxIdError):
        check_tax_id("!!", "AQ")


# --------------------------------------------------------------------------- validate_fields


def test_validate_fields_collects_every_problem_at_once():
    checked = validate_fields({"name": " ", "country": "Atlantis", "email": "nope", "payment_terms_days": 400,
                               "tax_exempt": "maybe", "status": "merged", "colour": "red"}, creating=True,
                              currencies=check_currency)
    assert [p.to_dict() for p in checked.problems] == [
        {"field": "colour", "reason": "unknown field"},
        {"field": "name", "reason": "must not be empty"},
        {"field": "country", "reason": "'Atlantis' is not an ISO 3166 country"},
        {"field": "email", "reason": "'nope' is not an email address"},
        {"field": "tax_exempt", "reason": "must be true or false"},
        {"field": "payment_terms_days", "reason": "400 must be between 0 and 365"},
        {"field": "status", "reason": "'merged' must be active or inactive (merged is set by customer.merge)"},
    ]


def test_validate_fields_normalises_and_warns():
    checked = validate_fields({"name": "  Globex   LLC ", "country": "United States", "region": "California",
                               "postal_code": "2203", "tax_id": "04-2103594", "currency": "usd",
                               "address": {"street": "1 Main St", "city": "Boston"}, "payment_terms_days": "45"},
                              creating=True, currencies=check_currency)
    assert checked.problems == ()
    assert checked.values == {"name": "Globex LLC", "country": "US", "region": "CA", "postal_code": "02203",
                              "tax_id": "04-2103594", "currency": "USD", "payment_terms_days": 45,
                              "address": {"street": "1 Main St", "city": "Boston"}}
    assert checked.tax_check == "checksum"
    assert [w.field for w in checked.warnings] == ["country", "postal_code"]


def test_creation_requires_name_and_country_updates_do_not():
    assert [p.field for p in validate_fields({}, creating=True).problems] == ["name", "country"]
    assert validate_fields({"email": ""}, creating=False).values == {"email": None}


def test_tax_id_is_checked_against_the_stored_country_on_update():
    bad = validate_fields({"tax_id": "DE136695977"}, creating=False, current_country="DE")
    assert bad.problems[0].to_dict() == {"field": "tax_id", "reason": "'DE136695977' is not a valid tax id for DE:"
                                                                      " checksum does not match (eu.vat)"}
    assert validate_fields({"tax_id": ""}, creating=False, current_country="DE").values == {"tax_id": None}


# --------------------------------------------------------------------------- hierarchy


def test_cycles_ancestors_descendants():
    parent_of = {2: 1, 3: 2, 4: 2, 1: None}
    assert creates_cycle(parent_of, 1, 3) is True
    assert creates_cycle(parent_of, 1, 1) is True
    assert creates_cycle(parent_of, 4, 3) is False
    assert ancestors(parent_of, 3) == [2, 1]
    assert descendants({1: [2], 2: [4, 3]}, 1) == [(2, 1), (3, 2), (4, 2)]


@given(st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=15))
def test_a_tree_built_without_cycles_never_reports_one_for_its_own_edges(parents):
    parent_of: dict[int, int | None] = {0: None}
    for child, p in enumerate(parents, start=1):
        target = p % child  # always an earlier node: a tree
        assert not creates_cycle(parent_of, child, target)
        parent_of[child] = target
    for node in parent_of:
        assert node not in ancestors(parent_of, node)


# --------------------------------------------------------------------------- survivorship

S = {"name": "Globex", "email": None, "phone": "1", "address": {"street": "1 Main"}, "tax_id": "DE1",
     "payment_terms_days": 30}
M = {"name": "Globex Corporation", "email": "ap@globex.com", "phone": "2",
     "address": {"street": "1 Main St", "city": "Boston"}, "tax_id": "DE2", "payment_terms_days": 45}
ORIGIN_S = {f: FieldOrigin("2026-01-01T00:00:00Z", "billing") for f in S}
ORIGIN_M = {f: FieldOrigin("2026-02-01T00:00:00Z", "crm") for f in M}


def _survived(rules, default="survivor"):
    out = survive(rules, default, S, M, ORIGIN_S, ORIGIN_M, ("crm", "billing"), fields=list(S))
    return {s.field: (s.value, s.taken_from) for s in out}


def test_survivorship_rules():
    assert _survived({}) == {"name": ("Globex", "survivor"), "email": ("ap@globex.com", "merged"),
                             "phone": ("1", "survivor"), "address": ({"street": "1 Main"}, "survivor"),
                             "tax_id": ("DE1", "survivor"), "payment_terms_days": (30, "survivor")}
    recent = _survived({}, "most_recent")
    assert recent["phone"] == ("2", "merged") and recent["payment_terms_days"] == (45, "merged")
    complete = _survived({}, "most_complete")
    assert complete["name"] == ("Globex Corporation", "merged")
    assert complete["address"] == ({"street": "1 Main St", "city": "Boston"}, "merged")
    assert _survived({"tax_id": "source_priority"})["tax_id"] == ("DE2", "merged")  # crm ranks above billing


def test_an_empty_value_never_replaces_a_filled_one():
    out = survive({}, "most_recent", {"email": "a@b.com"}, {"email": None}, {}, {}, (), fields=["email"])
    assert out[0].value == "a@b.com"


# --------------------------------------------------------------------------- quality score


def test_quality_score_formula():
    q = QualityInput(records=10, completeness_filled=45, completeness_possible=60, checked=30, valid=27,
                     duplicates=2, parents=4, parents_resolved=3)
    # 0.30 x 0.75 + 0.30 x 0.90 + 0.20 x 0.80 + 0.20 x 0.75 = 0.805
    assert quality_score(q) == {"score": "80.5", "completeness": "75.0", "validity": "90.0", "uniqueness": "80.0",
                                "hierarchy": "75.0"}
    assert quality_score(QualityInput(0, 0, 0, 0, 0, 0, 0, 0))["score"] == "100.0"


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_quality_score_stays_between_0_and_100(a, b, c, d):
    q = QualityInput(records=max(a, 1), completeness_filled=min(a, b), completeness_possible=b, checked=c,
                     valid=min(c, d), duplicates=d, parents=b, parents_resolved=min(a, b))
    score = Decimal(quality_score(q)["score"])
    assert Decimal(0) <= score <= Decimal(100)


# --------------------------------------------------------------------------- source modification times

MOMENTS = st.builds(lambda d, minutes: d.replace(tzinfo=timezone(timedelta(minutes=minutes))),
                    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
                    st.integers(-14 * 60, 14 * 60))


@given(MOMENTS, MOMENTS)
def test_source_times_sort_as_text_in_time_order(a, b):
    ta, tb = source_time(a.isoformat()), source_time(b.isoformat())
    assert (ta < tb, ta == tb) == (a < b, a == b)
    assert source_time(ta) == ta  # already normalised


def test_source_time_reads_salesforce_hubspot_and_webhook_forms():
    expected = "2026-01-05T10:00:00.000000Z"
    for value in ("2026-01-05T10:00:00.000Z", "2026-01-05T10:00:00.000+0000", "2026-01-05T11:00:00+01:00",
                  "2026-01-05 10:00:00", 1767607200, "1767607200000", 1767607200.0):
        assert source_time(value) == expected, value
    assert source_time("2026-01-05") == "2026-01-05T00:00:00.000000Z"
    assert datetime.fromisoformat(source_time(1767607200)) == datetime(2026, 1, 5, 10, tzinfo=UTC)
    for bad in ("", "1/5/2026 10:00 AM", "tomorrow", True, None, "1969-12-31", "9999-12-31T23:59:59-01:00",
                "9" * 14, "x" * 100, float("inf")):
        with pytest.raises(ValueError):
            source_time(bad)


def test_only_values_dated_before_the_stored_time_are_stale():
    stored = {"name": "2026-01-05T10:00:00.000000Z", "country": "2026-01-01T00:00:00.000000Z"}
    assert stale_fields(["name", "country", "website"], "2026-01-03T00:00:00.000000Z", stored) == {
        "name": "2026-01-05T10:00:00.000000Z"}
    assert stale_fields(["name"], "2026-01-05T10:00:00.000000Z", stored) == {}  # the same instant is not older
