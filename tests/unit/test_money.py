from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop.core.errors import ValidationError
from closeloop.core.money import (
    Money,
    allocate,
    allocate_by_ratios,
    exponent,
    format_minor,
    round_half_up,
    to_minor,
)


def test_exponents_follow_iso_4217():
    assert exponent("USD") == 2
    assert exponent("JPY") == 0
    assert exponent("BHD") == 3
    assert exponent("EUR") == 2


@pytest.mark.parametrize("code", ["usd", "US", "ZZZ", "EURO", ""])
def test_unknown_currency_is_a_validation_error(code):
    with pytest.raises(ValidationError) as exc:
        exponent(code)
    assert exc.value.details["field"] == "currency"


def test_parse_and_format_round_trip():
    assert to_minor("123.45", "USD") == 12345
    assert to_minor("123.4", "USD") == 12340
    assert to_minor("100", "JPY") == 100
    assert to_minor("1.234", "BHD") == 1234
    assert format_minor(12345, "USD") == "123.45"
    assert format_minor(-5, "USD") == "-0.05"
    assert format_minor(100, "JPY") == "100"
    assert format_minor(1234, "BHD") == "1.234"
    assert str(Money.parse("10.50", "EUR")) == "10.50 EUR"


def test_too_many_decimals_names_field_and_record():
    with pytest.raises(ValidationError) as exc:
        to_minor("10.001", "USD", field="lines[0].debit", record="J-1")
    assert exc.value.details["field"] == "lines[0].debit"
    assert exc.value.details["record"] == "J-1"
    assert "more decimals than USD allows" in exc.value.message
    with pytest.raises(ValidationError):
        to_minor("1.5", "JPY")
    with pytest.raises(ValidationError):
        to_minor("abc", "USD")


def test_round_half_up_at_currency_exponent():
    assert round_half_up(Decimal("0.005"), "USD") == 1
    assert round_half_up(Decimal("0.004999"), "USD") == 0
    assert round_half_up(Decimal("-0.005"), "USD") == -1  # half away from zero
    assert round_half_up(Decimal("2.5"), "JPY") == 3
    assert Money(1000, "USD").times(Decimal("0.0825")) == Money(83, "USD")  # 82.5 cents -> 83


def test_money_refuses_mixed_currencies():
    with pytest.raises(ValidationError):
        Money(1, "USD") + Money(1, "EUR")


def test_allocation_examples():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]
    assert allocate(1000, [Decimal("0.5"), Decimal("0.3"), Decimal("0.2")]) == [500, 300, 200]
    assert allocate(5, [3, 3]) == [3, 2]  # tie goes to the earlier weight
    assert allocate(0, [0, 0]) == [0, 0]
    assert allocate_by_ratios(10001, ["1", "1"]) == [5001, 5000]
    # the largest remainder wins: 10 over 0.45/0.45/0.10 -> 4.5, 4.5, 1.0
    assert allocate(10, [45, 45, 10]) == [5, 4, 1]


def test_allocation_refuses_impossible_splits():
    with pytest.raises(ValidationError):
        allocate(10, [0, 0])
    with pytest.raises(ValidationError):
        allocate(10, [])
    with pytest.raises(ValidationError):
        allocate(10, [1, -1])


@given(st.integers(min_value=-10**15, max_value=10**15),
       st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30).filter(lambda w: sum(w) > 0))
def test_allocation_always_sums_exactly_and_is_fair(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    weight_sum = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        exact = Decimal(total) * w / weight_sum
        assert abs(Decimal(part) - exact) < 1  # every part within one minor unit of its exact share
        if w == 0:
            assert part == 0


@given(st.integers(min_value=0, max_value=10**12),
       st.lists(st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False), min_size=1, max_size=12)
       .filter(lambda r: sum(r) > 0))
def test_ratio_allocation_sums_exactly(total, ratios):
    assert sum(allocate_by_ratios(total, ratios)) == total


@given(st.integers(min_value=-10**12, max_value=10**12), st.sampled_from(["USD", "JPY", "BHD", "EUR"]))
def test_format_then_parse_is_identity(minor, currency):
    assert to_minor(format_minor(minor, currency), currency) == minor
