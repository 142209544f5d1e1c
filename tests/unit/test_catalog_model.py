"""Price validation: every problem reported at once, each naming its field."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.catalog.model import PriceTerms, Tier, check_product, check_terms, dec_str, money_str

D = Decimal


def tiered(*tiers, model="tiered", **kw) -> PriceTerms:
    return PriceTerms(model, kw.pop("currency", "USD"), kw.pop("period", "month"), kw.pop("timing", "advance"),
                      tiers=tuple(Tier(None if u is None else D(u), D(a), D(f)) for u, a, f in tiers), **kw)


def fields(t: PriceTerms) -> list[str]:
    return [p.field for p in check_terms(t)]


def test_valid_prices():
    assert fields(tiered(("10", "1", "0"), (None, "0.5", "0"))) == []
    assert fields(PriceTerms("per_unit", "USD", "month", "advance", amount=D("0.0015"))) == []
    assert fields(PriceTerms("usage", "EUR", "month", "arrears", amount=D("0.02"), metric="api_calls",
                             aggregation="sum")) == []
    assert fields(PriceTerms("package", "USD", "month", "arrears", amount=D("5"), package_size=100,
                             metric="sms", aggregation="count")) == []
    assert fields(PriceTerms("flat", "JPY", "one_time", "advance", amount=D("50000"))) == []


def test_overlapping_unsorted_and_bounded_tiers_are_refused_with_the_tier_named():
    problems = check_terms(tiered(("10", "1", "0"), ("10", "0.9", "0"), (None, "0.5", "0")))
    assert [p.field for p in problems] == ["tiers[1].up_to"] and "overlaps" in problems[0].reason
    problems = check_terms(tiered(("100", "1", "0"), ("50", "0.9", "0"), (None, "0.5", "0")))
    assert [p.field for p in problems] == ["tiers[1].up_to"] and "sorted" in problems[0].reason
    problems = check_terms(tiered((None, "1", "0"), ("50", "0.9", "0")))
    assert "tiers[0].up_to" in [p.field for p in problems] and "tiers[1].up_to" in [p.field for p in problems]
    assert fields(tiered(("10", "1", "0"), ("20", "1", "0"))) == ["tiers[1].up_to"]  # last tier bounded
    assert fields(tiered()) == ["tiers"]
    assert fields(tiered(("0", "1", "0"), (None, "1", "0"))) == ["tiers[0].up_to"]
    assert fields(tiered(("10", "-1", "0.001"), (None, "1", "0"))) == ["tiers[0].unit_amount", "tiers[0].flat_amount"]


def test_model_specific_fields():
    assert fields(PriceTerms("per_unit", "USD", "month", "advance")) == ["amount"]
    assert fields(PriceTerms("flat", "USD", "month", "advance", amount=D("9.999"))) == ["amount"]
    assert fields(PriceTerms("package", "USD", "month", "advance", amount=D("5"))) == ["package_size"]
    assert fields(PriceTerms("per_unit", "USD", "month", "advance", amount=D(1), package_size=3)) == ["package_size"]
    assert fields(PriceTerms("usage", "USD", "month", "arrears", amount=D(1))) == ["metric"]
    assert fields(PriceTerms("usage", "USD", "month", "advance", amount=D(1), metric="m", aggregation="sum")) == ["timing"]
    assert fields(PriceTerms("usage", "USD", "one_time", "arrears", amount=D(1), metric="m", aggregation="avg")) == [
        "aggregation", "period"]
    assert fields(PriceTerms("per_unit", "USD", "week", "later", amount=D(1), aggregation="sum")) == [
        "period", "timing", "aggregation"]
    assert fields(PriceTerms("volume", "USD", "month", "advance", amount=D(1),
                             tiers=(Tier(None, D(1)),))) == ["amount"]
    assert fields(PriceTerms("per_unit", "XXQ", "month", "advance", amount=D(1))) == ["currency"]
    assert fields(PriceTerms("bespoke", "USD", "month", "advance", amount=D(1))) == ["model"]


def test_products():
    assert check_product("seat", "Seat", "ratable", D("10"), None) == []
    assert [p.field for p in check_product("a b", "", "monthly", D("-1"), "ZZZ")] == [
        "sku", "name", "treatment", "ssp", "ssp_currency"]


def test_decimal_strings():
    assert dec_str(D("12.50")) == "12.5" and dec_str(D("100.00")) == "100" and dec_str(D("0.0015")) == "0.0015"
    assert dec_str(D("1E+2")) == "100"
    assert money_str(D("8.5"), "USD") == "8.50" and money_str(D("8.4915"), "USD") == "8.4915"
    assert money_str(D("1500"), "JPY") == "1500" and money_str(D("10"), "BHD") == "10.000"


@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=6))
@settings(max_examples=200)
def test_tiers_are_valid_exactly_when_strictly_increasing(bounds):
    t = tiered(*[(str(b), "1", "0") for b in bounds], (None, "1", "0"))
    increasing = all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    assert (check_terms(t) == []) == increasing
