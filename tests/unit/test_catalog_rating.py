"""Rating: worked examples from published billing documentation, then properties (hypothesis)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from closeloop.catalog.model import PriceTerms, Tier, check_terms
from closeloop.catalog.rating import (
    UsageRecord,
    aggregate,
    breakdown,
    rate,
    rate_exact,
    rate_usage,
    tier_for,
)
from closeloop.core.errors import ValidationError
from closeloop.core.money import round_half_up

D = Decimal


def terms(model: str, *, amount: str | None = None, tiers=(), package_size: int | None = None,
          currency: str = "USD", metric: str | None = None, aggregation: str | None = None,
          period: str = "month") -> PriceTerms:
    return PriceTerms(model=model, currency=currency, period=period, timing="arrears" if metric else "advance",
                      amount=None if amount is None else D(amount),
                      tiers=tuple(Tier(None if u is None else D(u), D(a), D(f)) for u, a, f in tiers),
                      package_size=package_size, metric=metric, aggregation=aggregation)


# --------------------------------------------------------------------------- worked examples


def test_graduated_zuplo_pricing_models_example():
    # Zuplo docs, "Pricing models" (zuplo.com/docs/articles/monetization/pricing-models): tiers
    # 0-1,000 at $0.10, 1,001-10,000 at $0.05, 10,001+ at $0.01; 15,000 units cost
    # (1,000 x 0.10) + (9,000 x 0.05) + (5,000 x 0.01) = $600; volume pricing: 15,000 x 0.01 = $150.
    tiers = (("1000", "0.10", "0"), ("10000", "0.05", "0"), (None, "0.01", "0"))
    assert rate(terms("tiered", tiers=tiers), 15000) == 600_00
    assert rate(terms("volume", tiers=tiers), 15000) == 150_00
    # ... and the per-unit example: 100,000 API calls at $0.001 = $100.
    assert rate(terms("per_unit", amount="0.001"), 100000) == 100_00


def test_graduated_autumn_example():
    # Autumn docs, "Graduated pricing" (docs.useautumn.com): first 1,000 requests $0.01, next 9,000
    # $0.008, above 10,000 $0.005; 15,000 requests = 10 + 72 + 25 = $107.
    tiers = (("1000", "0.01", "0"), ("10000", "0.008", "0"), (None, "0.005", "0"))
    assert rate(terms("tiered", tiers=tiers), 15000) == 107_00
    parts = breakdown(terms("tiered", tiers=tiers), 15000)
    assert [(p.quantity, p.amount) for p in parts] == [(D(1000), D("10.00")), (D(9000), D("72.000")),
                                                       (D(5000), D("25.000"))]


def test_volume_with_flat_fee_lago_example():
    # Lago docs, charge model "Volume" (getlago.com/docs/guide/plans/charges/charge-models/volume):
    # tiers to 10,000 at $0.0010, to 50,000 at $0.0008, to 100,000 at $0.0006, then $0.0004, each with a
    # $10 fixed fee; 65,000 API calls cost 65,000 x $0.0006 + $10 = $49.
    tiers = (("10000", "0.0010", "10"), ("50000", "0.0008", "10"), ("100000", "0.0006", "10"),
             (None, "0.0004", "10"))
    assert rate(terms("volume", tiers=tiers, metric="api_calls", aggregation="sum"), 65000) == 49_00


def test_package_chargebee_example():
    # Chargebee docs, "Package pricing": package of 1,000,000 tokens at $1.25; 10 tokens bill one package
    # ($1.25), 1,000,000 tokens one package ($1.25), 1,500,000 tokens two packages ($2.50).
    t = terms("package", amount="1.25", package_size=1_000_000)
    assert (rate(t, 10), rate(t, 1_000_000), rate(t, 1_500_000)) == (125, 125, 250)
    # Lago's package example without its free units: $5 per 100 units, 201 units = 3 packages = $15.
    assert rate(terms("package", amount="5", package_size=100), 201) == 15_00


def test_slab_and_variable_oracle_banking_example():
    # Oracle Banking Liquidity Management user guide, "Examples for Tier Based Amount": slabs 0-250 at 1,
    # 250-500 at 2, above 500 at 3 per unit; a count of 1,000 costs 250 + 500 + 1,500 = 2,250 USD (slab,
    # i.e. graduated) and 3 x 1,000 = 3,000 USD (variable, i.e. volume).
    tiers = (("250", "1", "0"), ("500", "2", "0"), (None, "3", "0"))
    assert rate(terms("tiered", tiers=tiers), 1000) == 2250_00
    assert rate(terms("volume", tiers=tiers), 1000) == 3000_00


def test_graduated_flat_amount_for_every_tier_reached():
    tiers = (("10", "5.00", "20.00"), ("20", "4.00", "10.00"), (None, "3.00", "5.00"))
    t = terms("tiered", tiers=tiers)
    assert rate(t, 0) == 0  # no tier reached
    assert rate(t, 1) == 25_00  # 1 x 5 + 20
    assert rate(t, 10) == 70_00  # the tenth unit is still in tier 1 (up_to is inclusive)
    assert rate(t, 11) == 84_00  # 50 + 20 + (1 x 4 + 10)
    assert rate(t, 25) == 50_00 + 20_00 + 40_00 + 10_00 + 15_00 + 5_00
    assert rate(terms("volume", tiers=tiers), 10) == 70_00
    assert rate(terms("volume", tiers=tiers), 11) == 54_00  # 11 x 4 + 10
    assert rate(terms("volume", tiers=tiers), 0) == 0


def test_flat_ignores_quantity_and_fractional_quantities_split_at_bounds():
    assert rate(terms("flat", amount="99.00"), 7) == 99_00
    tiers = (("10", "1.00", "0"), (None, "0.50", "0"))
    assert rate(terms("tiered", tiers=tiers), D("10.5")) == 10_25
    assert tier_for(tuple(Tier(D(u) if u else None, D(a)) for u, a, _ in tiers), D("10.0001")) == 1


def test_rounding_is_half_up_once_per_line_after_the_discount():
    t = terms("per_unit", amount="0.333")
    assert rate(t, 3) == 100  # 0.999 -> 1.00
    assert rate(terms("per_unit", amount="0.125"), 1) == 13  # 0.125 -> 0.13 (half up)
    # 3 x 9.99 = 29.97; 15% off = 25.4745 -> 25.47 (one rounding, not 3 x round(8.4915) = 25.47 by luck)
    assert rate(terms("per_unit", amount="9.99"), 3, discount_pct="15") == 25_47
    # 7 x 1.15 at 10% off: exact 7.245 -> 7.25; rounding the unit price first (1.04 x 7 = 7.28) would differ
    assert rate(terms("per_unit", amount="1.15"), 7, discount_pct="10") == 7_25
    assert rate(terms("per_unit", amount="100", currency="JPY"), D("1.5")) == 150
    assert rate(terms("per_unit", amount="1.0005", currency="BHD"), 1) == 1001  # 3 decimals: 1.0005 -> 1.001
    assert rate(terms("per_unit", amount="10"), 1, discount_pct=100) == 0


def test_bad_quantities_and_discounts_are_refused():
    t = terms("per_unit", amount="1")
    with pytest.raises(ValidationError):
        rate(t, -1)
    with pytest.raises(ValidationError):
        rate(t, 1, discount_pct="101")
    with pytest.raises(ValidationError):
        rate(t, 1, discount_pct="-1")


# --------------------------------------------------------------------------- aggregation


def test_aggregations():
    events = [UsageRecord(D("2"), {"user": "a"}), UsageRecord(D("5"), {"user": "b"}), UsageRecord(D("1"), {"user": "a"})]
    assert aggregate("sum", events) == 8
    assert aggregate("count", events) == 3
    assert aggregate("max", events) == 5
    assert aggregate("unique_count", events, "user") == 2
    assert aggregate("unique_count", events) == 2  # distinct property sets
    assert aggregate("unique_count", [UsageRecord(D(1)), UsageRecord(D("1.0")), UsageRecord(D(2))]) == 2
    assert aggregate("unique_count", events + [UsageRecord(D(1), {"other": 1})], "user") == 2
    assert aggregate("max", []) == 0 and aggregate("sum", []) == 0
    with pytest.raises(ValidationError):
        aggregate("median", events)
    t = terms("tiered", tiers=(("5", "1.00", "0"), (None, "0.50", "0")), metric="gb", aggregation="sum")
    assert rate_usage(t, events) == (D(8), 6_50)


# --------------------------------------------------------------------------- properties

amounts = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
cents = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=0, max_value=100000, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def tier_lists(draw) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=50000), min_size=0, max_size=5))))
    tiers = [Tier(D(b), draw(amounts), draw(cents)) for b in bounds]
    tiers.append(Tier(None, draw(amounts), draw(cents)))
    return tuple(tiers)


@given(tier_lists(), quantities, quantities)
@settings(max_examples=300)
def test_graduated_is_monotone_in_quantity(tiers, q1, q2):
    t = PriceTerms("tiered", "USD", "month", "advance", tiers=tiers)
    assert check_terms(t) == []
    lo, hi = sorted((q1, q2))
    assert rate_exact(t, lo) <= rate_exact(t, hi)
    assert rate(t, lo) <= rate(t, hi)


@given(tier_lists(), quantities)
@settings(max_examples=300)
def test_graduated_parts_cover_the_quantity_exactly(tiers, q):
    parts = breakdown(PriceTerms("tiered", "USD", "month", "advance", tiers=tiers), q)
    assert sum((p.quantity for p in parts), D(0)) == q
    assert all(p.quantity > 0 for p in parts)


@given(tier_lists(), quantities)
@settings(max_examples=300)
def test_volume_uses_the_tier_the_total_falls_in(tiers, q):
    assume(q > 0)
    t = PriceTerms("volume", "USD", "month", "advance", tiers=tiers)
    i = tier_for(tiers, q)
    lower = D(0) if i == 0 else tiers[i - 1].up_to
    assert lower < q and (tiers[i].up_to is None or q <= tiers[i].up_to)
    assert rate_exact(t, q) == q * tiers[i].unit_amount + tiers[i].flat_amount


@given(cents, st.integers(min_value=1, max_value=10000), quantities)
@settings(max_examples=300)
def test_package_is_ceil_of_quantity_over_size_times_amount(amount, size, q):
    t = PriceTerms("package", "USD", "month", "advance", amount=amount, package_size=size)
    assert rate(t, q) == round_half_up(D(math.ceil(q / size)) * amount, "USD")


@given(amounts, quantities, st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False))
@settings(max_examples=300)
def test_discount_rounds_once(amount, q, d):
    t = PriceTerms("per_unit", "USD", "month", "advance", amount=amount)
    assert rate(t, q, discount_pct=d) == round_half_up(q * amount * (100 - d) / 100, "USD")
    assert 0 <= rate(t, q, discount_pct=d) <= rate(t, q)


@given(tier_lists(), quantities)
@settings(max_examples=200)
def test_terms_survive_the_event_round_trip(tiers, q):
    t = PriceTerms("tiered", "EUR", "quarter", "advance", tiers=tiers, price_id="p")
    again = PriceTerms.from_dict(t.to_dict())
    assert rate(again, q) == rate(t, q)
    scaled = t.scaled(D("1.05"))
    assert rate_exact(scaled, q) == rate_exact(t, q) * D("1.05")
