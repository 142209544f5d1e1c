"""The tax rules engine (pure): determinations with exact rates, effective dates, held lines,
group rounding and the largest-remainder allocation (hypothesis for the invariants)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.tax.model import (
    Determination,
    Held,
    LineIn,
    Party,
    RulesError,
    allocate_signed,
    buyer_status,
    compute_groups,
    parse_rules,
)
from closeloop.tax.service import RulesEngine, TaxLineInput, TaxRequest, default_rules

DE = Party("DE", tax_id="DE136695976", tax_id_valid=True)
US = Party("US", "NY", tax_id="12-3456789", tax_id_valid=True)
GB = Party("GB", tax_id="GB980780684", tax_id_valid=True)
ON = "2026-01-31"


def det(seller: Party, buyer: Party, code: str = "saas", on: str = ON) -> Determination:
    out = default_rules().determine(seller, buyer, code, on)
    assert isinstance(out, Determination), out
    return out


def held(seller: Party, buyer: Party, code: str = "saas", on: str = ON) -> str:
    out = default_rules().determine(seller, buyer, code, on)
    assert isinstance(out, Held), out
    return out.reason


# --------------------------------------------------------------------------- status


def test_buyer_status() -> None:
    assert buyer_status(Party("FR")) == "consumer"
    assert buyer_status(Party("FR", tax_id="FR40303265045", tax_id_valid=True)) == "business"
    assert buyer_status(Party("FR", tax_id="FR00", tax_id_valid=False)) == "consumer"
    assert buyer_status(Party("FR", tax_exempt=True, exemption_ref="CERT-1")) == "exempt"
    # the flag without its certificate is not applied (the customer master warns about it)
    assert buyer_status(Party("FR", tax_exempt=True)) == "consumer"


# --------------------------------------------------------------------------- EU seller


@pytest.mark.parametrize(
    ("buyer", "code", "treatment", "rate", "category", "jurisdiction", "rule"),
    [
        (Party("DE"), "saas", "standard", "0.19", "S", "DE", "eu_domestic"),
        (Party("DE", tax_id="DE811569869", tax_id_valid=True), "saas", "standard", "0.19", "S", "DE", "eu_domestic"),
        (Party("DE"), "ebooks", "reduced", "0.07", "AA", "DE", "eu_domestic"),
        (Party("FR"), "saas", "standard", "0.20", "S", "FR", "eu_b2c_digital"),
        (Party("HU"), "saas", "standard", "0.27", "S", "HU", "eu_b2c_digital"),
        (Party("FI"), "saas", "standard", "0.255", "S", "FI", "eu_b2c_digital"),
        (Party("FR"), "ebooks", "reduced", "0.055", "AA", "FR", "eu_b2c_digital"),
        (Party("FR"), "services", "standard", "0.19", "S", "DE", "eu_b2c_services"),
        (Party("FR"), "goods", "standard", "0.20", "S", "FR", "eu_b2c_distance_goods"),
        (Party("FR", tax_id="FR40303265045", tax_id_valid=True), "saas", "reverse_charge", "0", "AE", "FR",
         "eu_b2b_reverse_charge"),
        (Party("FR", tax_id="FR40303265045", tax_id_valid=True), "services", "reverse_charge", "0", "AE", "FR",
         "eu_b2b_reverse_charge"),
        (Party("FR", tax_id="FR40303265045", tax_id_valid=True), "goods", "exempt", "0", "K", "FR",
         "eu_intra_community_goods"),
        (Party("US", "NY"), "saas", "out_of_scope", "0", "O", "US-NY", "export_services_eu"),
        (Party("US", "NY"), "goods", "out_of_scope", "0", "G", "US-NY", "export_goods_eu"),
        (Party("GB"), "saas", "standard", "0.20", "S", "GB", "to_uk_consumer_digital"),
        (Party("GB"), "ebooks", "zero", "0", "Z", "GB", "to_uk_consumer_digital"),
        (GB, "saas", "reverse_charge", "0", "AE", "GB", "to_uk_business"),
        (Party("CH", tax_id="CHE-116.281.710", tax_id_valid=True), "saas", "out_of_scope", "0", "O", "CH",
         "export_services_eu"),
        (Party("FR", tax_exempt=True, exemption_ref="CERT-9"), "saas", "exempt", "0", "E", "FR", "exempt_customer"),
        (Party("DE"), "exempt", "exempt", "0", "E", "DE", "exempt_supply"),
    ],
)
def test_eu_seller(buyer, code, treatment, rate, category, jurisdiction, rule) -> None:
    d = det(DE, buyer, code)
    assert (d.treatment, d.rate, d.category, d.jurisdiction, d.rule) == (
        treatment, Decimal(rate), category, jurisdiction, rule)
    assert d.source  # every outcome names its source


def test_reverse_charge_carries_its_mention_and_reason() -> None:
    d = det(DE, Party("FR", tax_id="FR40303265045", tax_id_valid=True))
    assert d.mention == ("Reverse charge: VAT to be accounted for by the customer"
                         " (Article 196 of Directive 2006/112/EC)")
    assert (d.exemption_reason, d.vatex) == ("Reverse charge", "VATEX-EU-AE")


def test_exempt_customer_mention_names_the_certificate() -> None:
    d = det(Party("US", "NY"), Party("US", "NY", tax_exempt=True, exemption_ref="NY-ST-119"))
    assert d.treatment == "exempt" and d.mention == "Tax exempt: exemption certificate NY-ST-119"
    assert d.exemption_reason == "Exempt customer (exemption certificate NY-ST-119)"


def test_reverse_charge_needs_an_eu_vat_id() -> None:
    # A French business registered only for UK VAT: reverse charge needs its EU VAT number.
    reason = held(DE, Party("FR", tax_id="GB980780684", tax_id_valid=True))
    assert "EU VAT identification number is required" in reason and "GB980780684" in reason


# --------------------------------------------------------------------------- effective dates


@pytest.mark.parametrize(
    ("country", "on", "rate"),
    [
        ("DE", "2020-06-30", "0.19"), ("DE", "2020-07-01", "0.16"), ("DE", "2020-12-31", "0.16"),
        ("DE", "2021-01-01", "0.19"),
        ("EE", "2023-12-31", "0.20"), ("EE", "2024-01-01", "0.22"), ("EE", "2025-06-30", "0.22"),
        ("EE", "2025-07-01", "0.24"),
        ("FI", "2024-08-31", "0.24"), ("FI", "2024-09-01", "0.255"),
        ("SK", "2024-12-31", "0.20"), ("SK", "2025-01-01", "0.23"),
        ("RO", "2025-07-31", "0.19"), ("RO", "2025-08-01", "0.21"),
        ("LU", "2023-06-01", "0.16"), ("LU", "2024-01-01", "0.17"),
        ("IE", "2020-10-01", "0.21"), ("IE", "2021-03-01", "0.23"),
    ],
)
def test_rates_are_effective_dated(country, on, rate) -> None:
    seller = Party(country)
    assert det(seller, Party(country), "saas", on).rate == Decimal(rate)


def test_no_rate_before_the_table_starts_is_held() -> None:
    assert "in force on 2019-12-31" in held(DE, Party("DE"), "saas", "2019-12-31")


def test_every_eu_member_has_a_standard_rate_with_a_source() -> None:
    rules = default_rules()
    assert len(rules.groups["EU"]) == 27
    for country in rules.groups["EU"]:
        periods = rules.vat_rates[country]["standard"]
        assert all(p.source and Decimal("0.16") <= p.rate <= Decimal("0.27") for p in periods), country


def test_no_reduced_rate_configured_is_held() -> None:
    assert "no reduced VAT rate for IT" in held(DE, Party("IT"), "ebooks")


# --------------------------------------------------------------------------- UK and US sellers


@pytest.mark.parametrize(
    ("buyer", "code", "treatment", "rate", "category"),
    [
        (Party("GB"), "saas", "standard", "0.20", "S"),
        (GB, "services", "standard", "0.20", "S"),
        (Party("DE", tax_id="DE811569869", tax_id_valid=True), "saas", "reverse_charge", "0", "AE"),
        (Party("FR"), "saas", "standard", "0.20", "S"),
        (Party("SE"), "saas", "standard", "0.25", "S"),
        (Party("FR"), "services", "out_of_scope", "0", "O"),
        (Party("US", "NY"), "saas", "out_of_scope", "0", "O"),
        (Party("AU"), "goods", "out_of_scope", "0", "G"),
    ],
)
def test_uk_seller(buyer, code, treatment, rate, category) -> None:
    d = det(GB, buyer, code)
    assert (d.treatment, d.rate, d.category) == (treatment, Decimal(rate), category)


@pytest.mark.parametrize(
    ("state", "code", "treatment", "rate", "share"),
    [
        ("NY", "saas", "standard", "0.04", "1"),
        ("WA", "saas", "standard", "0.065", "1"),
        ("PA", "saas", "standard", "0.06", "1"),
        ("TX", "saas", "standard", "0.0625", "0.8"),
        ("TX", "goods", "standard", "0.0625", "1"),
        ("CA", "saas", "out_of_scope", "0", "1"),
        ("CA", "goods", "standard", "0.0725", "1"),
        ("NY", "services", "out_of_scope", "0", "1"),
        ("OR", "saas", "out_of_scope", "0", "1"),
        ("MT", "saas", "out_of_scope", "0", "1"),
        ("NH", "saas", "out_of_scope", "0", "1"),
        ("DE", "saas", "out_of_scope", "0", "1"),
        ("AK", "saas", "out_of_scope", "0", "1"),
    ],
)
def test_us_state_sales_tax(state, code, treatment, rate, share) -> None:
    d = det(US, Party("US", state), code)
    assert (d.treatment, d.rate, d.taxable_share, d.jurisdiction) == (
        treatment, Decimal(rate), Decimal(share), f"US-{state}")


def test_us_unknown_jurisdictions_are_held() -> None:
    assert held(US, Party("US")) == "the US customer has no state (region): sales tax depends on it"
    assert held(US, Party("US", "IL")) == "no sales tax rule for the US state IL"
    assert held(US, Party("US", "NY"), "ebooks") == "no sales tax rule for tax code ebooks in US state NY"


def test_us_seller_abroad() -> None:
    assert det(US, Party("FR")).rate == Decimal("0.20")  # B2C digital: the buyer's rate (non-Union OSS)
    assert det(US, Party("FR", tax_id="FR40303265045", tax_id_valid=True)).treatment == "reverse_charge"
    assert det(US, Party("CA", "ON")).treatment == "out_of_scope"


def test_seller_country_without_rules_is_held() -> None:
    assert held(Party("CH"), Party("CH")) == ("no tax rule for a consumer buyer in CH of a seller in CH"
                                              " (tax code saas)")
    assert held(DE, Party("DE"), "hardware").startswith("unknown tax code 'hardware'")
    assert held(DE, Party(None)) == "the customer has no country"


# --------------------------------------------------------------------------- rules validation


def test_rules_errors_are_reported_together() -> None:
    doc = {
        "tax_codes": {"saas": {"kind": "digital"}, "odd": {"kind": "mystery"}},
        "groups": {"EU": ["DE"]},
        "vat_rates": {"DE": {"standard": [{"from": "2020-01-01", "rate": "1.9"}]}},
        "us_states": {"NY": {"taxable": {"saas": {}}, "rates": [{"from": "2005-06-01", "rate": "0.04", "source": "x"}]}},
        "rules": [
            {"id": "a", "when": {"seller_in": "Narnia", "colour": "red"}, "then": {"rate_from": "moon"}},
            {"id": "b", "then": {"treatment": "reverse_charge", "category": "AE"}},
        ],
    }
    with pytest.raises(RulesError) as exc:
        parse_rules(doc)
    text = str(exc.value)
    for needle in (
        "tax_codes.odd.kind", "vat_rates.DE.standard[0]: every rate needs its source",
        "vat_rates.DE.standard[0].rate: '1.9' must be a decimal between 0 and 1", "us_states.NY.taxable.saas: needs its source",
        "rules[0] (a).when: unknown conditions ['colour']", "'Narnia' is neither a group nor a country code",
        "rules[0] (a).then.rate_from", "rules[1] (b).then.reason", "rules[1] (b).then.mention",
        "rules[1] (b).then.source",
    ):
        assert needle in text, needle


def test_local_rates_behind_the_same_interface() -> None:
    doc = yaml.safe_load("""
tax_codes: {saas: {kind: digital}}
groups: {US: [US]}
us_states:
  NY:
    rates: [{from: "2005-06-01", rate: "0.04", source: state}]
    taxable: {saas: {source: taxable}}
    local:
      - {code: NYC, name: New York City, postal_prefixes: ["100", "101", "102"], tax_codes: [saas],
         rates: [{from: "2009-08-01", rate: "0.04875", source: "city 4.5% + MCTD 0.375%"}]}
rules:
  - {id: us, when: {seller_in: US, buyer_in: US}, then: {rate_from: us_state}}
""")
    rules = parse_rules(doc)
    city = rules.determine(US, Party("US", "NY", "10001"), "saas", ON)
    upstate = rules.determine(US, Party("US", "NY", "12207"), "saas", ON)
    assert isinstance(city, Determination) and isinstance(upstate, Determination)
    assert (city.rate, city.jurisdiction) == (Decimal("0.08875"), "US-NY-NYC")
    assert (upstate.rate, upstate.jurisdiction) == (Decimal("0.04"), "US-NY")


# --------------------------------------------------------------------------- group computation


def _d(rate: str, treatment: str = "standard", share: str = "1") -> Determination:
    return Determination(treatment, Decimal(rate), "S", "DE", taxable_share=Decimal(share))


def test_group_rounding_differs_from_per_line_rounding() -> None:
    # Each line alone: 10.01 x 19% = 1.9019 -> 1.90, three times 5.70. The group: 30.03 x 19% = 5.7057 -> 5.71;
    # the extra cent goes to the largest remainder (ties to the first line).
    lines, groups = compute_groups([LineIn(i, 1001, _d("0.19")) for i in (1, 2, 3)])
    assert [g.tax_minor for g in groups] == [571]
    assert [x.tax_minor for x in lines] == [191, 190, 190]
    assert [x.taxable_minor for x in lines] == [1001, 1001, 1001]


def test_groups_per_treatment_and_rate() -> None:
    lines, groups = compute_groups([
        LineIn(1, 10000, _d("0.19")), LineIn(2, 5000, _d("0.07", "reduced")), LineIn(3, 2550, _d("0.19")),
        LineIn(4, 999, Determination("reverse_charge", Decimal(0), "AE", "FR")),
    ])
    assert [(g.treatment, str(g.rate), g.taxable_minor, g.tax_minor, g.line_nos) for g in groups] == [
        ("standard", "0.19", 12550, 2385, (1, 3)),  # 125.50 x 19% = 23.845 -> 23.85
        ("reduced", "0.07", 5000, 350, (2,)),
        ("reverse_charge", "0", 999, 0, (4,)),
    ]
    assert [x.tax_minor for x in lines] == [1900, 350, 485, 0]


def test_negative_lines_in_a_group() -> None:
    # A credit line for the unused part and a charge for the new price: 10.01 - 3.33 = 6.68 x 19% = 1.2692 -> 1.27.
    # Quotas 190.30 and -63.30: floors 190 and -64 leave one cent, which goes to the larger remainder (line 2).
    lines, groups = compute_groups([LineIn(1, 1001, _d("0.19")), LineIn(2, -333, _d("0.19"))])
    assert groups[0].tax_minor == 127
    assert [x.tax_minor for x in lines] == [190, -63]


def test_texas_taxes_eighty_percent_of_saas() -> None:
    # 2 lines of 99.99 SaaS in Texas: taxable 80% of 199.98 = 159.984 -> 159.98; tax 6.25% -> 9.99875 -> 10.00.
    lines, groups = compute_groups([LineIn(1, 9999, _d("0.0625", share="0.8")),
                                    LineIn(2, 9999, _d("0.0625", share="0.8"))])
    assert (groups[0].taxable_minor, groups[0].tax_minor) == (15998, 1000)
    assert [(x.taxable_minor, x.tax_minor) for x in lines] == [(7999, 500), (7999, 500)]


def test_engine_holds_undecidable_lines_and_taxes_the_rest() -> None:
    request = TaxRequest("US01", US, Party("US", "NY"), "C1", "USD", ON,
                         (TaxLineInput(1, 10000, "saas"), TaxLineInput(2, 5000, "ebooks"),
                          TaxLineInput(3, 2500, "services")))
    result = RulesEngine().compute(request)
    assert result.held == ((2, "no sales tax rule for tax code ebooks in US state NY"),)
    assert [(x.line_no, x.treatment, x.tax_minor) for x in result.lines] == [
        (1, "standard", 400), (3, "out_of_scope", 0)]
    assert result.tax_minor == 400


def test_allocate_signed_edge_cases() -> None:
    assert allocate_signed(0, [Decimal(100), Decimal(-100)]) == [0, 0]
    assert allocate_signed(-10, [Decimal(1), Decimal(1), Decimal(1)]) == [-4, -3, -3]
    assert allocate_signed(10, [Decimal(1), Decimal(1), Decimal(1)]) == [4, 3, 3]


nets = st.integers(min_value=-10_000_000, max_value=10_000_000)
rates = st.sampled_from(["0", "0.04", "0.055", "0.065", "0.07", "0.19", "0.2", "0.21", "0.255", "0.27"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(nets, rates), min_size=1, max_size=25))
def test_group_invariants(items) -> None:
    lines, groups = compute_groups([LineIn(i, net, _d(rate)) for i, (net, rate) in enumerate(items, 1)])
    by_no = {x.line_no: x for x in lines}
    assert len(lines) == len(items)
    for g in groups:
        group_nets = [items[n - 1][0] for n in g.line_nos]
        expected = int((Decimal(sum(group_nets)) * g.rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        assert g.tax_minor == expected  # group tax = round(sum of nets x rate)
        assert sum(by_no[n].tax_minor for n in g.line_nos) == g.tax_minor  # lines sum exactly to it
        assert g.taxable_minor == sum(group_nets)
        if all(n >= 0 for n in group_nets) or all(n <= 0 for n in group_nets):
            # one sign: no line's tax strays more than a cent from its exact share
            for n in g.line_nos:
                assert abs(by_no[n].tax_minor - Decimal(by_no[n].taxable_minor) * g.rate) < 2


@settings(max_examples=200, deadline=None)
@given(st.lists(nets, min_size=1, max_size=20), st.sampled_from(["0.8", "0.5", "1"]))
def test_shared_base_invariants(values, share) -> None:
    lines, groups = compute_groups([LineIn(i, v, _d("0.0625", share=share)) for i, v in enumerate(values, 1)])
    [g] = groups
    assert sum(x.taxable_minor for x in lines) == g.taxable_minor
    assert sum(x.tax_minor for x in lines) == g.tax_minor
    assert g.taxable_minor == int((Decimal(sum(values)) * Decimal(share)).quantize(Decimal(1), ROUND_HALF_UP))
